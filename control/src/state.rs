//! The call state machine, sans-IO: which status may follow which, and what
//! a media hangup cause means in telephony terms.
//!
//! ```text
//!   dialing ──> ringing ──> progressing ──> terminating ──> hangup
//!      │           │  │          └──────────────────────────> hangup
//!      │           │  └──> canceling ──────────────────────> hangup
//!      │           └─────────────────────────────────────────> hangup
//!      ├──> progressing, canceling, hangup
//! ```
//!
//! | from        | allowed next statuses                          |
//! |-------------|------------------------------------------------|
//! | dialing     | ringing, progressing, canceling, hangup        |
//! | ringing     | progressing, canceling, hangup                 |
//! | progressing | terminating, hangup                            |
//! | terminating | hangup                                         |
//! | canceling   | hangup                                         |
//! | hangup      | (final)                                        |
//!
//! Anything else moves backwards or skips a state and is refused. Asking for
//! the status a call already has is a replay and changes nothing.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use voxbridge_contract::events::HangupCause;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            /// The stable name (database value, JSON value).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }

            /// Parses the stable name.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$v),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use string_enum;

string_enum! {
    /// Where a call is in its life.
    CallStatus {
        /// Outbound: the far end is being dialled.
        Dialing = "dialing",
        /// The far end is alerting (inbound calls start here).
        Ringing = "ringing",
        /// Answered: audio flows.
        Progressing = "progressing",
        /// Hangup of an answered call asked for, not yet done.
        Terminating = "terminating",
        /// Hangup of an unanswered call asked for, not yet done.
        Canceling = "canceling",
        /// Over.
        Hangup = "hangup",
    }
}

string_enum! {
    /// Which side ended the call.
    HangupBy {
        /// voxbridge, the bot or the API.
        Local = "local",
        /// The caller or the network.
        Remote = "remote",
    }
}

string_enum! {
    /// Why the call ended, in telephony terms.
    HangupReason {
        /// Ended after being answered, by either side.
        Normal = "normal",
        /// Something broke (protocol error, bot unavailable, overload).
        Failed = "failed",
        /// The callee was busy.
        Busy = "busy",
        /// Hung up before it was answered.
        Cancel = "cancel",
        /// A timer ran out (media timeout).
        Timeout = "timeout",
        /// Nobody answered.
        Noanswer = "noanswer",
        /// Dialling out failed.
        Dialout = "dialout",
    }
}

string_enum! {
    /// Inbound or outbound.
    Direction {
        /// The call came to voxbridge.
        Incoming = "incoming",
        /// voxbridge placed the call.
        Outgoing = "outgoing",
    }
}

/// What asking for a status change means for a call in `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Allowed: apply it.
    Apply,
    /// Already there: a replay, change nothing.
    Replay,
    /// Backwards or skipping: refuse.
    Refuse,
}

/// The transition table (module docs).
pub fn step(from: CallStatus, to: CallStatus) -> Step {
    use CallStatus::*;
    if from == to {
        return Step::Replay;
    }
    let allowed = match from {
        Dialing => matches!(to, Ringing | Progressing | Canceling | Hangup),
        Ringing => matches!(to, Progressing | Canceling | Hangup),
        Progressing => matches!(to, Terminating | Hangup),
        Terminating | Canceling => to == Hangup,
        Hangup => false,
    };
    if allowed {
        Step::Apply
    } else {
        Step::Refuse
    }
}

/// The status an API hangup asks for: canceling before answer, terminating
/// after; `None` when the call is already on its way out.
pub fn hangup_request(from: CallStatus) -> Option<CallStatus> {
    match from {
        CallStatus::Dialing | CallStatus::Ringing => Some(CallStatus::Canceling),
        CallStatus::Progressing => Some(CallStatus::Terminating),
        CallStatus::Terminating | CallStatus::Canceling | CallStatus::Hangup => None,
    }
}

/// Who hung up and why, from the media plane's cause and whether the call
/// had been answered.
pub fn hangup_of(cause: HangupCause, answered: bool) -> (HangupBy, HangupReason) {
    use HangupCause as C;
    let by = match cause {
        C::CallerHangup | C::CallerGone | C::CallerError | C::Malformed => HangupBy::Remote,
        _ => HangupBy::Local,
    };
    let reason = match cause {
        C::MediaTimeout => HangupReason::Timeout,
        C::CallerError
        | C::Malformed
        | C::UnsupportedAudio
        | C::BotUnavailable
        | C::BotDropped
        | C::Overload => HangupReason::Failed,
        _ if !answered => HangupReason::Cancel,
        _ => HangupReason::Normal,
    };
    (by, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CallStatus::*;

    #[test]
    fn table_allows_exactly_the_documented_moves() {
        let allowed = [
            (Dialing, Ringing),
            (Dialing, Progressing),
            (Dialing, Canceling),
            (Dialing, Hangup),
            (Ringing, Progressing),
            (Ringing, Canceling),
            (Ringing, Hangup),
            (Progressing, Terminating),
            (Progressing, Hangup),
            (Terminating, Hangup),
            (Canceling, Hangup),
        ];
        for &from in CallStatus::ALL {
            for &to in CallStatus::ALL {
                let want = if from == to {
                    Step::Replay
                } else if allowed.contains(&(from, to)) {
                    Step::Apply
                } else {
                    Step::Refuse
                };
                assert_eq!(step(from, to), want, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for &s in CallStatus::ALL {
            assert_eq!(CallStatus::parse(s.as_str()), Some(s));
        }
        for &r in HangupReason::ALL {
            assert_eq!(HangupReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(CallStatus::parse("answered"), None);
    }

    #[test]
    fn media_causes_map_to_telephony_reasons() {
        assert_eq!(
            hangup_of(HangupCause::CallerHangup, true),
            (HangupBy::Remote, HangupReason::Normal)
        );
        assert_eq!(
            hangup_of(HangupCause::CallerHangup, false),
            (HangupBy::Remote, HangupReason::Cancel)
        );
        assert_eq!(
            hangup_of(HangupCause::MediaTimeout, true),
            (HangupBy::Local, HangupReason::Timeout)
        );
        assert_eq!(
            hangup_of(HangupCause::BotUnavailable, false),
            (HangupBy::Local, HangupReason::Failed)
        );
        assert_eq!(
            hangup_of(HangupCause::ApiHangup, true),
            (HangupBy::Local, HangupReason::Normal)
        );
    }
}
