//! Payload generation and checksums: deterministic bytes from a seed, and FNV-1a 64
//! over what was sent and what came back, so corrupted or crossed payloads fail a run.

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// An incremental FNV-1a 64 hash.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(FNV_OFFSET)
    }
}

impl Fnv {
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        for b in data {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    /// The hash of everything fed so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// FNV-1a 64 of one buffer.
pub fn fnv(data: &[u8]) -> u64 {
    let mut h = Fnv::default();
    h.update(data);
    h.finish()
}

/// A small seeded PRNG (xorshift64*): deterministic payloads and jitter from `--seed`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator; seed 0 is mapped to a fixed non-zero state.
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `len` printable payload bytes derived from `seed`.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len)
        .map(|_| b'a' + (rng.next_u64() % 26) as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
        let mut inc = Fnv::default();
        inc.update(b"foo");
        inc.update(b"bar");
        assert_eq!(inc.finish(), fnv(b"foobar"));
    }

    #[test]
    fn payload_is_deterministic_per_seed() {
        assert_eq!(payload(7, 64), payload(7, 64));
        assert_ne!(payload(7, 64), payload(8, 64));
        assert!(payload(1, 1024).iter().all(u8::is_ascii_lowercase));
    }
}
