#![no_main]
//! `/v1/ws` client messages: any text gets a reply (never a panic), and a
//! session never holds a topic of a customer other than its own.
use voxbridge_control::live::LiveSession;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut s = LiveSession::new(Some("c1".into()), false);
    for line in text.split('\n') {
        let _ = s.on_text(line).to_json();
    }
    assert!(s.topics().all(|t| t.customer_id == "c1"));
});
