#![no_main]
//! Twilio-style Media Streams JSON text frames, both directions, plus payload decoding.
use voxbridge_proto::twilio::{decode_payload, BotCommand, StreamEvent};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut buf = Vec::new();
    if let Ok(StreamEvent::Media { payload, .. }) = StreamEvent::parse(text) {
        let _ = decode_payload(&payload, &mut buf);
    }
    if let Ok(BotCommand::Media { payload, .. }) = BotCommand::parse(text) {
        let _ = decode_payload(&payload, &mut buf);
    }
});
