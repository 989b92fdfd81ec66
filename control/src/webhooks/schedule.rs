//! When a failed delivery is tried again, sans-IO: exponential backoff from
//! `base` doubling per failure up to `cap`, each delay scaled by a random
//! factor in [0.8, 1.2) so retries of many deliveries spread out, and a
//! delivery gives up once `max_age` has passed since its first attempt
//! (defaults: 5 s, 1 h, 25 h: about 30 attempts over a day).

use std::time::Duration;

/// The retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub base: Duration,
    /// Longest delay.
    pub cap: Duration,
    /// Give up after this long since the first attempt.
    pub max_age: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(5),
            cap: Duration::from_secs(3600),
            max_age: Duration::from_secs(25 * 3600),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again after this delay.
    RetryIn(Duration),
    /// Stop: the delivery failed for good.
    GiveUp,
}

impl Backoff {
    /// After `failures` failed attempts (1 after the first), the first
    /// having been `age` ago; `jitter` in [0, 1).
    pub fn next(&self, failures: u32, age: Duration, jitter: f64) -> Next {
        if age >= self.max_age {
            return Next::GiveUp;
        }
        let exp = failures.saturating_sub(1).min(30);
        let raw = self.base.saturating_mul(1u32 << exp.min(20)).min(self.cap);
        let factor = 0.8 + 0.4 * jitter.clamp(0.0, 0.999_999);
        Next::RetryIn(raw.mul_f64(factor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_gives_up_after_max_age() {
        let b = Backoff::default();
        let at = |n, jitter| b.next(n, Duration::ZERO, jitter);
        assert_eq!(at(1, 0.5), Next::RetryIn(Duration::from_secs(5)));
        assert_eq!(at(2, 0.5), Next::RetryIn(Duration::from_secs(10)));
        assert_eq!(at(3, 0.5), Next::RetryIn(Duration::from_secs(20)));
        assert_eq!(at(40, 0.5), Next::RetryIn(Duration::from_secs(3600)));
        assert_eq!(at(1, 0.0), Next::RetryIn(Duration::from_secs(4)));
        assert!(matches!(at(1, 0.999), Next::RetryIn(d) if d < Duration::from_secs(6)));
        assert_eq!(b.next(3, Duration::from_secs(25 * 3600), 0.5), Next::GiveUp);
    }

    #[test]
    fn retries_span_at_least_a_day() {
        let b = Backoff::default();
        let (mut age, mut attempts) = (Duration::ZERO, 1u32);
        while let Next::RetryIn(d) = b.next(attempts, age, 0.0) {
            age += d;
            attempts += 1;
        }
        assert!(age >= Duration::from_secs(24 * 3600), "{age:?}");
        assert!((20..60).contains(&attempts), "{attempts} attempts");
    }
}
