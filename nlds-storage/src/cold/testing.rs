//! Test helpers shared by the cold-store backends' tests.

const MOD_ADLER: u32 = 65521;

/// A reference adler32 (RFC 1950), independent of the crate and of any server, to check the
/// checksums a store reports.
#[derive(Clone, Copy)]
pub struct RefAdler(u32, u32);

impl RefAdler {
    pub fn new() -> Self {
        Self(1, 0)
    }

    pub fn update(&mut self, data: &[u8]) {
        for &x in data {
            self.0 = (self.0 + u32::from(x)) % MOD_ADLER;
            self.1 = (self.1 + self.0) % MOD_ADLER;
        }
    }

    pub fn sum(self) -> u32 {
        (self.1 << 16) | self.0
    }
}

/// The reference adler32 of `data`.
pub fn ref_adler32(data: &[u8]) -> u32 {
    let mut a = RefAdler::new();
    a.update(data);
    a.sum()
}
