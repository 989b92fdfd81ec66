//! Deterministic pseudo-random numbers for tests (xorshift64, 13/7/17), so
//! a failure reproduces from its seed on every machine. Included by
//! `#[path]` from the root tests and from media/tests (the simulator).

/// A seeded xorshift64 generator.
pub struct Rng(pub u64);

#[allow(dead_code)]
impl Rng {
    /// A generator from `seed` (0 is replaced: xorshift would stay at 0).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// `true` with `percent` % chance.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Uniform in [-x, +x].
    pub fn spread(&mut self, x: f64) -> f64 {
        (self.unit() * 2.0 - 1.0) * x
    }
}
