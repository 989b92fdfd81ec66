#![no_main]
//! Bulk campaign targets (`POST /v1/campaigns/{id}/targets`): any bytes as
//! CSV or JSON give a list or an error, never a panic, and every target
//! accepted has a usable destination and a known time zone.
use voxbridge_control::campaign::{targets_in, window};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
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
