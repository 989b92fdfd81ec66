//! Outbound campaigns: a list of targets (the outplan) dialled through the
//! configured [`crate::originate::Originator`] under a retry policy, pacing
//! limits and a time-of-day window in each target's time zone.
//!
//! ```text
//! campaign: pending ──start──> running <──start/pause──> paused
//!                                 │  └──(no target left)──> completed
//!           pending, running, paused ──stop──> stopped
//! target:   pending ──dial──> dialing ──call ends──> pending (retry due later)
//!                                              └───> completed (answered, or tries used up)
//! ```
//!
//! An attempt a voicemail answered (the route's answering-machine
//! detection said `machine`) has its own result, `machine`, and its own
//! retry rule: by default none, as for a person; set `retry.machine` to
//! call again later hoping for the person.
//!
//! The rules are sans-IO here ([`pacing`], [`window`], [`after_attempt`]);
//! the store applies them in transactions (`store/campaigns.rs`) and the
//! [`scheduler`] drives running campaigns. A target's result is decided in
//! the same transaction as its call's hangup, so a crash can never leave a
//! call ended and its target still dialing.

pub mod pacing;
pub mod scheduler;
pub mod targets_in;
pub mod window;

use crate::time::Millis;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

crate::state::string_enum! {
    /// Where a campaign is in its life.
    CampaignStatus {
        /// Created, not started.
        Pending = "pending",
        /// The scheduler dials its due targets.
        Running = "running",
        /// Nothing new is dialled; calls in progress finish.
        Paused = "paused",
        /// Every target is completed.
        Completed = "completed",
        /// Stopped by request; pending targets stay undialled.
        Stopped = "stopped",
    }
}

crate::state::string_enum! {
    /// Where a target is.
    TargetStatus {
        /// Waiting for its turn (or its retry time).
        Pending = "pending",
        /// A call to it is in progress.
        Dialing = "dialing",
        /// Done: answered, or its retries are used up.
        Completed = "completed",
    }
}

crate::state::string_enum! {
    /// How one dial attempt ended.
    DialResult {
        /// The callee answered (a person, or not known to be a machine).
        Answered = "answered",
        /// An answering machine answered (the route's detection said so).
        Machine = "machine",
        /// The callee was busy.
        Busy = "busy",
        /// Nobody answered in time.
        NoAnswer = "no_answer",
        /// The call could not be placed or broke before answer.
        Failed = "failed",
    }
}

impl CampaignStatus {
    /// Whether `self -> to` is allowed through the API (`start`, `pause`,
    /// `stop`); `completed` is only ever set by the scheduler.
    pub fn may_become(self, to: CampaignStatus) -> bool {
        use CampaignStatus::*;
        match to {
            Running => matches!(self, Pending | Paused),
            Paused => self == Running,
            Stopped => matches!(self, Pending | Running | Paused),
            Completed | Pending => false,
        }
    }
}

/// Retries after one kind of result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Attempts that may end this way before the target is given up (1: no retry).
    #[serde(deserialize_with = "crate::model::lenient_u32")]
    #[schema(minimum = 1, maximum = 20)]
    pub max_tries: u32,
    /// Wait before the next attempt, seconds.
    #[serde(deserialize_with = "crate::model::lenient_u32")]
    #[schema(minimum = 0, maximum = 604800)]
    pub interval_s: u32,
}

/// Retries per result (an answered target is done).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// After a busy signal.
    pub busy: Retry,
    /// After no answer.
    pub no_answer: Retry,
    /// After a failed attempt.
    pub failed: Retry,
    /// After an answering machine answered (default: no retry).
    pub machine: Retry,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            busy: Retry {
                max_tries: 3,
                interval_s: 300,
            },
            no_answer: Retry {
                max_tries: 3,
                interval_s: 600,
            },
            failed: Retry {
                max_tries: 2,
                interval_s: 60,
            },
            machine: Retry {
                max_tries: 1,
                interval_s: 3600,
            },
        }
    }
}

impl RetryPolicy {
    fn of(&self, r: DialResult) -> Option<Retry> {
        match r {
            DialResult::Answered => None,
            DialResult::Busy => Some(self.busy),
            DialResult::NoAnswer => Some(self.no_answer),
            DialResult::Failed => Some(self.failed),
            DialResult::Machine => Some(self.machine),
        }
    }

    /// Checks the bounds in the schema.
    pub fn validate(&self) -> Result<(), String> {
        for (name, r) in [
            ("busy", self.busy),
            ("no_answer", self.no_answer),
            ("failed", self.failed),
            ("machine", self.machine),
        ] {
            if !(1..=20).contains(&r.max_tries) {
                return Err(format!("retry.{name}.max_tries must be 1-20"));
            }
            if r.interval_s > 604_800 {
                return Err(format!("retry.{name}.interval_s must be at most 604800"));
            }
        }
        Ok(())
    }
}

/// Attempts of one target so far, by result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Tries {
    /// Busy.
    pub busy: u32,
    /// No answer.
    pub no_answer: u32,
    /// Failed.
    pub failed: u32,
    /// Answered by a machine.
    pub machine: u32,
}

impl Tries {
    /// Counts one more attempt that ended with `r`.
    pub fn add(&mut self, r: DialResult) {
        match r {
            DialResult::Answered => {}
            DialResult::Busy => self.busy += 1,
            DialResult::NoAnswer => self.no_answer += 1,
            DialResult::Failed => self.failed += 1,
            DialResult::Machine => self.machine += 1,
        }
    }

    fn of(&self, r: DialResult) -> u32 {
        match r {
            DialResult::Answered => 0,
            DialResult::Busy => self.busy,
            DialResult::NoAnswer => self.no_answer,
            DialResult::Failed => self.failed,
            DialResult::Machine => self.machine,
        }
    }
}

/// What happens to a target after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Done (answered, or no tries left for this result).
    Done,
    /// Dial again at this time.
    RetryAt(Millis),
}

/// The retry rule: `tries` already counts the attempt that just ended with
/// `result`; another attempt follows while that result's count is below its
/// `max_tries`.
pub fn after_attempt(result: DialResult, tries: &Tries, policy: &RetryPolicy, now: Millis) -> Next {
    match policy.of(result) {
        Some(r) if tries.of(result) < r.max_tries => {
            Next::RetryAt(Millis(now.0 + i64::from(r.interval_s) * 1000))
        }
        _ => Next::Done,
    }
}

/// The result of an attempt, from its call as it ended.
pub fn result_of(call: &crate::model::Call) -> DialResult {
    use crate::state::HangupReason as R;
    if call.tm_progressing.is_some() {
        return if call.answered_by.as_deref() == Some("machine") {
            DialResult::Machine
        } else {
            DialResult::Answered
        };
    }
    match call.hangup_reason {
        Some(R::Busy) => DialResult::Busy,
        Some(R::Noanswer | R::Cancel | R::Timeout) => DialResult::NoAnswer,
        _ => DialResult::Failed,
    }
}

/// Hours of the day when targets may be called, in each target's zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Opens, `HH:MM` (24 h).
    #[schema(example = "09:00", pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub start: String,
    /// Closes, `HH:MM`; earlier than `start` means the window spans
    /// midnight, equal to it means always open.
    #[schema(example = "20:00", pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub end: String,
}

/// What a client gives to create a campaign.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    /// Display name (1-200 characters, not all blank).
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub name: String,
    /// Media route (bot) the calls use; default `default`.
    #[serde(default)]
    #[schema(max_length = 128)]
    pub route: Option<String>,
    /// Caller id presented to targets.
    #[serde(default)]
    #[schema(max_length = 128)]
    pub source: Option<String>,
    /// Calls in progress at most (1-1000, default 10).
    #[serde(default, deserialize_with = "crate::model::lenient_opt_u32")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_concurrent: Option<u32>,
    /// Call starts per second at most (0.01-100, default 1).
    #[serde(default)]
    #[schema(minimum = 0.01, maximum = 100)]
    pub calls_per_second: Option<f64>,
    /// Time-of-day window; always open when absent.
    #[serde(default)]
    pub window: Option<Window>,
    /// Zone of targets that name none (IANA, default `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Retries per result.
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
}

/// A campaign.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Campaign {
    /// Campaign id.
    pub id: String,
    /// Owner.
    pub customer_id: String,
    /// Display name.
    pub name: String,
    /// Status.
    pub status: CampaignStatus,
    /// Media route of its calls.
    pub route: String,
    /// Caller id.
    pub source: String,
    /// Calls in progress at most.
    pub max_concurrent: u32,
    /// Call starts per second at most.
    pub calls_per_second: f64,
    /// Time-of-day window, if any.
    pub window: Option<Window>,
    /// Zone of targets that name none.
    pub timezone: String,
    /// Retries per result.
    pub retry: RetryPolicy,
    /// Dial attempts made.
    pub dialed: i64,
    /// Attempts answered (by a person, or not known to be a machine).
    pub answered: i64,
    /// Attempts an answering machine answered.
    pub machine: i64,
    /// Attempts that ended unanswered (busy, no answer, failed).
    pub failed: i64,
    /// Calls in progress now.
    pub active: i64,
    /// Targets not yet completed.
    pub remaining: i64,
    /// Created.
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: Millis,
    /// First started.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub tm_start: Option<Millis>,
    /// Completed or stopped.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub tm_end: Option<Millis>,
    /// Last change.
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: Millis,
}

/// One target of a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Target {
    /// Target id.
    pub id: String,
    /// Its campaign.
    pub campaign_id: String,
    /// Number or address dialled.
    pub destination: String,
    /// IANA zone its window is read in.
    pub timezone: String,
    /// Free-form values passed to the originator with every attempt.
    #[schema(value_type = Object)]
    pub vars: serde_json::Value,
    /// Status.
    pub status: TargetStatus,
    /// Attempts made.
    pub dial_count: u32,
    /// Attempts by result.
    pub tries: Tries,
    /// Result of the last attempt.
    pub result: Option<DialResult>,
    /// The last attempt's call.
    pub call_id: Option<String>,
    /// When it may be dialled next (pending targets).
    #[schema(value_type = String, format = DateTime)]
    pub next_dial_at: Millis,
    /// When it was last dialled.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_dial_time: Option<Millis>,
    /// Created.
    #[schema(value_type = String, format = DateTime)]
    pub tm_create: Millis,
    /// Last change.
    #[schema(value_type = String, format = DateTime)]
    pub tm_update: Millis,
}

/// A target as a client adds it.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTarget {
    /// Number or address to dial (1-64 characters, no blanks or control characters).
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[^\\s\\u0000-\\u001F\\u007F-\\u009F\\u200B-\\u200D\\u202A-\\u202E\\u2060\\u2066-\\u2069\\uFEFF]+$"
    )]
    pub destination: String,
    /// IANA zone; the campaign's when absent.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Values passed to the originator (an object).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub vars: Option<serde_json::Value>,
}

/// A campaign's figures, counted from its targets.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CampaignStats {
    /// The campaign (with its running totals).
    pub campaign: Campaign,
    /// Targets by status.
    pub targets: std::collections::BTreeMap<String, i64>,
    /// Completed targets by final result.
    pub results: std::collections::BTreeMap<String, i64>,
}

/// Checks a spec's values; returns the time zone it defaults to.
pub fn validate(spec: &CampaignSpec) -> Result<(), String> {
    if spec.name.trim().is_empty() || spec.name.chars().count() > 200 {
        return Err("name must be 1-200 characters".into());
    }
    if spec.max_concurrent.is_some_and(|c| !(1..=1000).contains(&c)) {
        return Err("max_concurrent must be 1-1000".into());
    }
    if spec
        .calls_per_second
        .is_some_and(|c| !c.is_finite() || !(0.01..=100.0).contains(&c))
    {
        return Err("calls_per_second must be 0.01-100".into());
    }
    if let Some(w) = &spec.window {
        window::parse(w)?;
    }
    if let Some(tz) = &spec.timezone {
        window::check_zone(tz)?;
    }
    if let Some(r) = &spec.retry {
        r.validate()?;
    }
    for (what, v) in [("route", &spec.route), ("source", &spec.source)] {
        if v.as_ref().is_some_and(|s| s.chars().count() > 128) {
            return Err(format!("{what} longer than 128 characters"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_follow_the_policy_per_result() {
        let p = RetryPolicy::default();
        let now = Millis(1_000);
        let mut t = Tries::default();
        t.add(DialResult::Busy);
        assert_eq!(
            after_attempt(DialResult::Busy, &t, &p, now),
            Next::RetryAt(Millis(301_000))
        );
        t.add(DialResult::Busy);
        t.add(DialResult::Busy);
        assert_eq!(after_attempt(DialResult::Busy, &t, &p, now), Next::Done);
        // A different result has its own count.
        t.add(DialResult::Failed);
        assert_eq!(
            after_attempt(DialResult::Failed, &t, &p, now),
            Next::RetryAt(Millis(61_000))
        );
        assert_eq!(after_attempt(DialResult::Answered, &t, &p, now), Next::Done);
        // A machine: no retry by default, its own count when asked for.
        t.add(DialResult::Machine);
        assert_eq!(after_attempt(DialResult::Machine, &t, &p, now), Next::Done);
        let p = RetryPolicy {
            machine: Retry {
                max_tries: 2,
                interval_s: 7200,
            },
            ..p
        };
        assert_eq!(
            after_attempt(DialResult::Machine, &t, &p, now),
            Next::RetryAt(Millis(7_201_000))
        );
        t.add(DialResult::Machine);
        assert_eq!(after_attempt(DialResult::Machine, &t, &p, now), Next::Done);
    }

    #[test]
    fn api_moves_follow_the_campaign_table() {
        use CampaignStatus::*;
        assert!(Pending.may_become(Running));
        assert!(Paused.may_become(Running));
        assert!(Running.may_become(Paused));
        assert!(!Pending.may_become(Paused));
        assert!(!Completed.may_become(Running));
        assert!(!Stopped.may_become(Running));
        assert!(!Running.may_become(Completed));
    }
}
