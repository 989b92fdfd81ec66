//! When to connect to the bot, when to try again and when to give up: a
//! route's `on_bot_failure` policy as a sans-IO state machine. The driver
//! hands in what happened to the link and the time; the policy says whether
//! to connect now, wait (and until when: [`BotPolicy::poll_timeout`]) or
//! hang up. No clock is read here, so a minute of a failing bot runs in
//! microseconds in a test.

use crate::config::{BotFailurePolicy, Route};
use std::time::{Duration, Instant};

/// Where the bot link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A connect is under way (`attempt` 0 is the first of the call or
    /// after a drop; the n-th reconnect is attempt n).
    Connecting { attempt: u32 },
    /// The link is up.
    Up,
    /// Waiting to try again at `until`.
    Waiting { until: Instant, attempt: u32 },
}

/// What the policy decided after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Keep the caller on silence and connect again at `at`.
    RetryAt { at: Instant },
    /// Give up: the call ends.
    HangUp,
}

/// The bot link's policy for one call.
#[derive(Debug, Clone)]
pub(crate) struct BotPolicy {
    state: State,
    ever_connected: bool,
    retry: bool,
    interval: Duration,
    max_reconnects: u32,
}

impl BotPolicy {
    /// A call that starts by connecting to its route's bot.
    pub(crate) fn new(route: &Route) -> Self {
        BotPolicy {
            state: State::Connecting { attempt: 0 },
            ever_connected: false,
            retry: route.on_bot_failure == BotFailurePolicy::Silence,
            interval: Duration::from_millis(route.reconnect_interval_ms),
            max_reconnects: route.max_reconnects,
        }
    }

    /// The connect under way succeeded. Returns its attempt number and
    /// whether this is the call's first link (the call is answered then).
    pub(crate) fn connected(&mut self) -> (u32, bool) {
        let attempt = match self.state {
            State::Connecting { attempt } => attempt,
            _ => 0,
        };
        self.state = State::Up;
        let first = !self.ever_connected;
        self.ever_connected = true;
        (attempt, first)
    }

    /// The connect under way failed, or the link went down (a drop starts
    /// the count of reconnects afresh).
    pub(crate) fn failed(&mut self, now: Instant) -> AfterFailure {
        let attempt = match self.state {
            State::Connecting { attempt } => attempt,
            State::Up | State::Waiting { .. } => 0,
        };
        if !self.retry || attempt >= self.max_reconnects {
            return AfterFailure::HangUp;
        }
        let at = now + self.interval;
        self.state = State::Waiting {
            until: at,
            attempt: attempt + 1,
        };
        AfterFailure::RetryAt { at }
    }

    /// When the policy next wants to act (a reconnect), if it waits.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Waiting { until, .. } => Some(until),
            _ => None,
        }
    }

    /// The time is `now`: `true` when a connect should start now.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> bool {
        match self.state {
            State::Waiting { until, attempt } if now >= until => {
                self.state = State::Connecting { attempt };
                true
            }
            _ => false,
        }
    }

    /// The link is up.
    #[cfg(test)]
    fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// The call has had a bot link at some point (so it was answered).
    pub(crate) fn ever_connected(&self) -> bool {
        self.ever_connected
    }

    /// A connect is under way.
    #[cfg(test)]
    fn is_connecting(&self) -> bool {
        matches!(self.state, State::Connecting { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(policy: BotFailurePolicy, max_reconnects: u32) -> Route {
        Route {
            on_bot_failure: policy,
            reconnect_interval_ms: 1000,
            max_reconnects,
            ..Route::default()
        }
    }

    #[test]
    fn under_the_hangup_policy_the_first_failure_ends_the_call() {
        let t0 = Instant::now();
        let mut p = BotPolicy::new(&route(BotFailurePolicy::Hangup, 5));
        assert_eq!(p.failed(t0), AfterFailure::HangUp);
        let mut p = BotPolicy::new(&route(BotFailurePolicy::Hangup, 5));
        assert_eq!(p.connected(), (0, true));
        assert_eq!(p.failed(t0), AfterFailure::HangUp, "a drop too");
    }

    #[test]
    fn under_the_silence_policy_reconnects_run_on_the_interval_until_the_limit() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut p = BotPolicy::new(&route(BotFailurePolicy::Silence, 3));
        let mut now = t0;
        for attempt in 1..=3u32 {
            assert_eq!(p.failed(now), AfterFailure::RetryAt { at: now + s });
            assert_eq!(p.poll_timeout(), Some(now + s));
            assert!(!p.handle_timeout(now + s / 2), "not before the interval");
            now += s;
            assert!(p.handle_timeout(now), "attempt {attempt} starts on time");
            assert!(p.is_connecting() && p.poll_timeout().is_none());
        }
        assert_eq!(
            p.failed(now),
            AfterFailure::HangUp,
            "three reconnects, then give up"
        );
        assert!(!p.ever_connected());
    }

    #[test]
    fn a_link_that_came_up_counts_its_reconnects_afresh_after_a_drop() {
        let t0 = Instant::now();
        let mut p = BotPolicy::new(&route(BotFailurePolicy::Silence, 1));
        assert_eq!(p.connected(), (0, true));
        assert!(p.is_up());
        assert!(matches!(p.failed(t0), AfterFailure::RetryAt { .. }));
        assert!(p.handle_timeout(t0 + Duration::from_secs(1)));
        assert_eq!(
            p.connected(),
            (1, false),
            "reconnect 1; the call was answered before"
        );
        // Dropped again: one more reconnect allowed, as after the first drop.
        assert!(matches!(p.failed(t0), AfterFailure::RetryAt { .. }));
        assert!(p.handle_timeout(t0 + Duration::from_secs(1)));
        assert_eq!(p.failed(t0), AfterFailure::HangUp, "its one reconnect failed");
    }
}
