//! What the scrub shares: a pace that keeps reads under a rate, a uniform random sample of a
//! stream of unknown length, and re-reading a stream into blake3.

use std::time::{Duration, Instant};

use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Keeps the bytes read per second under a rate, by sleeping once ahead of it.
pub(super) struct Pace {
    bytes_per_sec: Option<u64>,
    start: Instant,
    bytes: u64,
}

impl Pace {
    /// `mb_per_sec`: MB (10^6 bytes) per second; `None` or 0: no limit.
    pub fn new(mb_per_sec: Option<u64>) -> Self {
        Self {
            // A rate beyond any disk's (saturated) is no limit in effect.
            bytes_per_sec: mb_per_sec
                .filter(|&r| r > 0)
                .map(|r| r.saturating_mul(1_000_000)),
            start: Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `n` bytes read, and waits until reading them kept to the rate.
    pub async fn spent(&mut self, n: u64) {
        self.bytes += n;
        let Some(rate) = self.bytes_per_sec else {
            return;
        };
        let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// A uniform random sample of at most `size` items of a stream (reservoir sampling).
pub(super) struct Reservoir<T> {
    size: usize,
    seen: u64,
    items: Vec<T>,
}

impl<T> Reservoir<T> {
    pub fn new(size: u64) -> Self {
        Self {
            size: usize::try_from(size).unwrap_or(usize::MAX),
            seen: 0,
            items: Vec::new(),
        }
    }

    pub fn offer(&mut self, item: T) {
        self.seen += 1;
        if self.items.len() < self.size {
            self.items.push(item);
            return;
        }
        let j = rand::rng().random_range(0..self.seen);
        if let Ok(j) = usize::try_from(j)
            && j < self.size
        {
            self.items[j] = item;
        }
    }

    pub fn into_items(self) -> Vec<T> {
        self.items
    }
}

/// Reads `body` to its end into blake3 at `pace`; its hex digest and length.
pub(super) async fn blake3_of(
    mut body: impl AsyncRead + Unpin,
    pace: &mut Pace,
) -> std::io::Result<(String, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = body.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
        pace.spent(n as u64).await;
    }
    Ok((hasher.finalize().to_hex().to_string(), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rate no multiplication can hold (the API fuzzer sent one) is no limit, not a panic.
    #[tokio::test]
    async fn a_rate_too_large_to_count_in_bytes_is_no_limit() {
        let mut pace = Pace::new(Some(u64::MAX));
        pace.spent(1 << 40).await;
        assert_eq!(pace.bytes(), 1 << 40);
        let mut none = Pace::new(Some(0));
        none.spent(5).await;
        assert_eq!(none.bytes(), 5);
    }

    #[test]
    fn a_reservoir_keeps_at_most_its_size_and_everything_when_fewer() {
        let mut r = Reservoir::new(3);
        for i in 0..2 {
            r.offer(i);
        }
        assert_eq!(r.into_items(), [0, 1]);
        let mut r = Reservoir::new(3);
        for i in 0..1000 {
            r.offer(i);
        }
        let items = r.into_items();
        assert_eq!(items.len(), 3);
        assert!(items.iter().all(|i| (0..1000).contains(i)));
    }

    #[test]
    fn a_reservoir_samples_every_position() {
        // Over many draws of 1 from 4, each position is picked (a biased sampler that always
        // kept the first or the last would not).
        let mut picked = [0u32; 4];
        for _ in 0..400 {
            let mut r = Reservoir::new(1);
            for i in 0..4 {
                r.offer(i);
            }
            picked[r.into_items()[0]] += 1;
        }
        assert!(picked.iter().all(|&n| n > 40), "{picked:?}");
    }

    #[tokio::test]
    async fn the_pace_holds_reads_to_the_rate() {
        let mut pace = Pace::new(Some(1));
        let start = Instant::now();
        // 300 kB at 1 MB/s takes at least 0.3 s.
        for _ in 0..3 {
            pace.spent(100_000).await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(290),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(pace.bytes(), 300_000);
        let mut free = Pace::new(None);
        let start = Instant::now();
        free.spent(1 << 40).await;
        assert!(start.elapsed() < Duration::from_millis(100));
    }
}
