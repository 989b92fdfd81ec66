//! Pacing, sans-IO: at most `n` call starts in any window of `window_ms`,
//! where `n / window_ms` is the campaign's calls per second (`n` is the
//! whole part of the rate, at least 1: 2.5/s is 2 starts per 800 ms, 0.5/s
//! is 1 start per 2,000 ms). The campaign keeps its last `n` start times;
//! a start is allowed when fewer than `n` of them fall in the window ending
//! now. So any `n + 1` consecutive starts span at least `window_ms`, which
//! is what the campaign tests check from the calls' start times.
//!
//! A sliding window rather than a token bucket: a bucket of depth `n` lets
//! `2n` starts through in one second (a full bucket, then its refill).

/// The limit of one campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Starts allowed per window.
    pub n: usize,
    /// The window, ms.
    pub window_ms: i64,
}

impl Pacing {
    /// From calls per second in thousandths (`2500` = 2.5/s); at least 10
    /// (0.01/s).
    pub fn from_cps_milli(cps_milli: i64) -> Self {
        let cps_milli = cps_milli.max(10);
        let n = (cps_milli / 1000).max(1);
        // ceil(n * 1000 / cps) in ms, so the rate is never exceeded.
        let window_ms = (n * 1_000_000 + cps_milli - 1) / cps_milli;
        Pacing {
            n: n as usize,
            window_ms,
        }
    }

    /// How many calls may start at `now`, given the recent start times.
    pub fn room(&self, recent: &[i64], now: i64) -> usize {
        let in_window = recent.iter().filter(|&&t| t > now - self.window_ms).count();
        self.n.saturating_sub(in_window)
    }

    /// Records a start at `now`, keeping the last `n`.
    pub fn record(&self, recent: &mut Vec<i64>, now: i64) {
        recent.push(now);
        if recent.len() > self.n {
            let extra = recent.len() - self.n;
            recent.drain(..extra);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rates_become_windows() {
        assert_eq!(
            Pacing::from_cps_milli(1000),
            Pacing {
                n: 1,
                window_ms: 1000
            }
        );
        assert_eq!(Pacing::from_cps_milli(2500), Pacing { n: 2, window_ms: 800 });
        assert_eq!(
            Pacing::from_cps_milli(500),
            Pacing {
                n: 1,
                window_ms: 2000
            }
        );
        assert_eq!(
            Pacing::from_cps_milli(50_000),
            Pacing {
                n: 50,
                window_ms: 1000
            }
        );
        assert_eq!(
            Pacing::from_cps_milli(3000),
            Pacing {
                n: 3,
                window_ms: 1000
            }
        );
    }

    proptest! {
        /// Whatever the asking times, `n + 1` consecutive starts span at
        /// least the window.
        #[test]
        fn never_exceeds_the_rate(cps_milli in 10i64..100_000, steps in proptest::collection::vec(0i64..400, 1..300)) {
            let p = Pacing::from_cps_milli(cps_milli);
            let mut recent = Vec::new();
            let mut starts = Vec::new();
            let mut now = 0;
            for s in steps {
                now += s;
                for _ in 0..p.room(&recent, now) {
                    p.record(&mut recent, now);
                    starts.push(now);
                }
            }
            for w in starts.windows(p.n + 1) {
                prop_assert!(w[p.n] - w[0] >= p.window_ms, "{:?} in {:?}", w, p);
            }
        }
    }
}
