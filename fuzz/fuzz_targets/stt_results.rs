#![no_main]
//! A speech-to-text provider's live-streaming messages (Deepgram's API and
//! voxbridge's own): any text is a result, nothing to do, a refusal or a
//! named error; never a panic.
use voxbridge_proto::stt::{parse_deepgram, parse_plain, SttMessage};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for parsed in [parse_deepgram(text), parse_plain(text)] {
        if let Ok(SttMessage::Result(r)) = parsed {
            let _ = r.start_ms.saturating_add(r.duration_ms);
        }
    }
});
