#![no_main]
//! A speech-to-text provider's live-streaming messages (Deepgram's API):
//! any text is a result, nothing to do, or a named error; never a panic.
use voxbridge_proto::stt::{parse_deepgram, SttMessage};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(SttMessage::Result(r)) = parse_deepgram(text) {
        let _ = r.start_ms.saturating_add(r.duration_ms);
    }
});
