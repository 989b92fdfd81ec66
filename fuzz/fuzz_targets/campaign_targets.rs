#![no_main]
//! Bulk campaign targets (`POST /v1/campaigns/{id}/targets`): any bytes as
//! CSV or JSON give a list or an error, never a panic, and every target
//! accepted has a usable destination and a known time zone. The same bytes
//! as a provider's call-flow document (TwiML or Plivo XML, whose `<Dial>`
//! the provider-compatible transfers follow) give a target or none.
use voxbridge_control::api::dial_document::dial_target;
use voxbridge_control::campaign::{targets_in, window};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(target) = dial_target(&String::from_utf8_lossy(data)) {
        assert!(!target.is_empty() && target == target.trim());
    }
    for parsed in [
        targets_in::from_csv(data, "UTC"),
        targets_in::from_json(data, "UTC"),
    ] {
        if let Ok(targets) = parsed {
            assert!(!targets.is_empty() && targets.len() <= targets_in::MAX_TARGETS);
            for t in targets {
                assert!(!t.destination.is_empty() && t.destination.len() <= 64);
                assert!(window::check_zone(&t.timezone).is_ok());
            }
        }
    }
});
