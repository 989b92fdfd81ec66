//! Property tests of control's decoders of outside input (cursors, times,
//! enum names from query strings) and of the call state machine.

use proptest::prelude::*;
use voxbridge_control::model::PageReq;
use voxbridge_control::state::{step, CallStatus, Step};
use voxbridge_control::time::Millis;

proptest! {
    #[test]
    fn cursors_parse_or_fail_cleanly(limit in any::<Option<u32>>(), cursor in proptest::option::of(".{0,24}")) {
        match PageReq::new(limit, cursor.as_deref()) {
            Ok(p) => {
                prop_assert!((1..=PageReq::MAX).contains(&p.limit));
                if let Some(b) = p.before {
                    prop_assert!(b > 0);
                    prop_assert_eq!(Some(b.to_string()), cursor);
                }
            }
            Err(e) => prop_assert!(e.to_string().starts_with("invalid:")),
        }
    }

    #[test]
    fn issued_cursors_are_accepted(seq in 1i64..999_999_999_999_999_999) {
        let p = PageReq::new(Some(10), Some(&seq.to_string())).expect("a cursor the API issued");
        prop_assert_eq!(p.before, Some(seq));
    }

    #[test]
    fn times_round_trip_and_junk_is_refused(ms in 0i64..253_402_300_799_000, junk in ".{0,40}") {
        let m = Millis(ms);
        prop_assert_eq!(Millis::parse(&m.rfc3339()), Some(m));
        let _ = Millis::parse(&junk);
    }

    #[test]
    fn status_names_from_queries(s in "[a-z_]{0,16}") {
        if let Some(st) = CallStatus::parse(&s) {
            prop_assert_eq!(st.as_str(), s.as_str());
        }
    }

    /// Whatever events arrive, in whatever order, a call only ever moves
    /// forward and never leaves `hangup`.
    #[test]
    fn calls_only_move_forward(asks in proptest::collection::vec(0usize..6, 0..40)) {
        let rank = |s: CallStatus| match s {
            CallStatus::Dialing => 0,
            CallStatus::Ringing => 1,
            CallStatus::Progressing => 2,
            CallStatus::Terminating | CallStatus::Canceling => 3,
            CallStatus::Hangup => 4,
        };
        let mut now = CallStatus::Dialing;
        for a in asks {
            let to = CallStatus::ALL[a];
            if step(now, to) == Step::Apply {
                prop_assert!(rank(to) > rank(now), "{} -> {}", now, to);
                now = to;
            }
        }
    }
}
