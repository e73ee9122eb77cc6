use super::*;

#[test]
fn part_sizes_respect_s3_limits() {
    assert_eq!(part_size(16 << 20, 100 << 20), 16 << 20);
    assert_eq!(part_size(1 << 20, 100 << 20), 5 << 20);
    // 1 TiB in 16 MiB parts would be 65 536 parts: raised to stay within 10 000.
    let p = part_size(16 << 20, 1 << 40) as u64;
    assert!((1u64 << 40).div_ceil(p) <= MAX_PARTS, "{p}");
    assert_eq!(p % (1 << 20), 0);
    assert!(p <= MAX_PART);
}

#[test]
fn small_reads_hash_what_they_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let (bytes, read) = read_small(File::open(&path).unwrap(), data.len() as u64, 65_536).unwrap();
    assert_eq!(&bytes[..], &data[..]);
    assert_eq!(read.len, data.len() as u64);
    assert_eq!(read.blake3, blake3::hash(&data).to_hex().to_string());
    // A file larger than announced is noticed (one byte over), never read whole.
    let (bytes, read) = read_small(File::open(&path).unwrap(), 1000, 65_536).unwrap();
    assert_eq!(bytes.len(), 1001);
    assert_eq!(read.len, 1001);
}
