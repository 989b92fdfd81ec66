//! The egress clock of a call: one tick every 20 ms on a monotonic clock.
//!
//! Sans-IO: the driver sleeps until [`Pacer::next_deadline`] and calls
//! [`Pacer::poll`] with the time it woke. A wake-up late by less than a period
//! is one tick (its lateness reported); a wake-up late by more skips the missed
//! ticks instead of sending them back to back, so the caller never gets a
//! burst. Deadlines stay on the original grid, so lateness never accumulates.

use std::time::{Duration, Instant};

/// A due tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Index of this tick on the grid (0 at the start).
    pub index: u64,
    /// How late the wake-up was against this tick's deadline.
    pub lateness: Duration,
    /// Ticks skipped before this one because the wake-up came too late.
    pub skipped: u64,
}

/// Fixed-period tick source on a monotonic clock.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    period: Duration,
    next: u64,
    skipped_total: u64,
}

impl Pacer {
    /// Ticks at `start`, `start + period`, ... (`period` must be non-zero; 20 ms for calls).
    pub fn new(start: Instant, period: Duration) -> Self {
        Pacer {
            start,
            period: period.max(Duration::from_micros(1)),
            next: 0,
            skipped_total: 0,
        }
    }

    /// When the next tick is due.
    pub fn next_deadline(&self) -> Instant {
        self.deadline(self.next)
    }

    fn deadline(&self, index: u64) -> Instant {
        self.start + self.period.saturating_mul(index.min(u32::MAX as u64) as u32)
    }

    /// The tick due at `now`, if any. Never returns more than one tick per call
    /// and never two ticks for the same grid slot.
    pub fn poll(&mut self, now: Instant) -> Option<Tick> {
        let due = self.deadline(self.next);
        if now < due {
            return None;
        }
        // The latest grid slot at or before `now`.
        let behind = ((now - due).as_nanos() / self.period.as_nanos()) as u64;
        let index = self.next + behind;
        self.next = index + 1;
        self.skipped_total += behind;
        Some(Tick {
            index,
            lateness: now - self.deadline(index),
            skipped: behind,
        })
    }

    /// Ticks skipped so far.
    pub fn skipped_total(&self) -> u64 {
        self.skipped_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Duration = Duration::from_millis(20);

    #[test]
    fn on_time_wakeups_give_one_tick_each() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, P);
        for i in 0..500u32 {
            let now = t0 + P * i + Duration::from_micros(300);
            let tick = p.poll(now).expect("due");
            assert_eq!((tick.index, tick.skipped), (i as u64, 0));
            assert_eq!(tick.lateness, Duration::from_micros(300));
            assert_eq!(p.poll(now), None, "no second tick for the same slot");
            assert_eq!(p.next_deadline(), t0 + P * (i + 1));
        }
    }

    #[test]
    fn a_long_stall_skips_instead_of_bursting() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, P);
        p.poll(t0).expect("tick 0");
        // Woken 95 ms late: slots 1..=4 are past; only slot 4 is played, 1-3 skipped.
        let tick = p.poll(t0 + Duration::from_millis(95)).expect("due");
        assert_eq!((tick.index, tick.skipped), (4, 3));
        assert_eq!(tick.lateness, Duration::from_millis(15));
        assert_eq!(p.poll(t0 + Duration::from_millis(99)), None);
        assert_eq!(p.next_deadline(), t0 + Duration::from_millis(100), "grid kept");
        assert_eq!(p.skipped_total(), 3);
    }

    #[test]
    fn early_wakeups_give_nothing() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0 + P, P);
        assert_eq!(p.poll(t0), None);
        assert!(p.poll(t0 + P).is_some());
    }
}
