//! What a write sent against what the store reports: sizes, CRC32C of the whole object and of
//! each part, and the encodings S3 uses for them.

use super::ChecksumType;

/// What a write sent: its size, the CRC32C of all its bytes and of each part (none for a single
/// PutObject).
#[derive(Debug)]
pub(super) struct Written {
    pub(super) size: u64,
    pub(super) full: u32,
    pub(super) parts: Vec<u32>,
}

/// What HeadObject (checksum mode) reports after a write.
#[derive(Debug)]
pub(super) struct Reported<'a> {
    pub(super) size: Option<i64>,
    pub(super) crc32c: Option<&'a str>,
    pub(super) checksum_type: Option<&'a ChecksumType>,
}

/// Compares what the store reports with what was written; the error says what differs.
pub(super) fn check_reported(
    reported: &Reported<'_>,
    written: &Written,
    verify_multipart: bool,
) -> Result<(), String> {
    if reported.size.and_then(|s| u64::try_from(s).ok()) != Some(written.size) {
        return Err(format!(
            "the store holds {} bytes, {} were written",
            reported
                .size
                .map_or_else(|| "an unknown number of".to_owned(), |s| s.to_string()),
            written.size
        ));
    }
    // A store that keeps no checksum validated the one sent with every request.
    let Some(value) = reported.crc32c else {
        return Ok(());
    };
    let (encoded, count) = split_part_count(value);
    let actual = decode_crc(encoded).ok_or_else(|| format!("unreadable CRC32C {value:?}"))?;
    let full_object = written.parts.is_empty()
        || matches!(reported.checksum_type, Some(ChecksumType::FullObject));
    let expected = if full_object {
        if count.is_some() {
            return Err(format!(
                "the store reports a multipart checksum {value:?} for a full-object one"
            ));
        }
        written.full
    } else {
        if !verify_multipart {
            return Ok(());
        }
        if let Some(n) = count
            && n != written.parts.len()
        {
            return Err(format!(
                "the store reports {n} part(s), {} were written",
                written.parts.len()
            ));
        }
        composite_crc32c(&written.parts)
    };
    if actual == expected {
        Ok(())
    } else {
        Err(format!(
            "the store reports CRC32C {value:?}, {} was computed over the stream{}",
            encode_crc(expected),
            if full_object {
                ""
            } else {
                " (composite of the parts)"
            }
        ))
    }
}

/// S3's composite checksum of a multipart object: the CRC32C of the big-endian part CRC32Cs.
pub(super) fn composite_crc32c(parts: &[u32]) -> u32 {
    let bytes: Vec<u8> = parts.iter().flat_map(|c| c.to_be_bytes()).collect();
    crc32c::crc32c(&bytes)
}

/// `"abcd==-3"` → (`"abcd=="`, `Some(3)`); a value without a part count is returned whole.
pub(super) fn split_part_count(value: &str) -> (&str, Option<usize>) {
    match value.rsplit_once('-') {
        Some((encoded, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (encoded, n.parse().ok())
        }
        _ => (value, None),
    }
}

/// A multipart upload's ETag: `"<hex>-<parts>"`.
pub(super) fn is_multipart_etag(etag: Option<&str>) -> bool {
    etag.is_some_and(|e| split_part_count(e.trim_matches('"')).1.is_some())
}

pub(super) fn encode_crc(crc: u32) -> String {
    aws_smithy_types::base64::encode(crc.to_be_bytes())
}

pub(super) fn decode_crc(encoded: &str) -> Option<u32> {
    let bytes = aws_smithy_types::base64::decode(encoded).ok()?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}
