#![no_main]
//! The providers' Media Streams JSON text frames (Twilio's own types, and
//! every dialect of `telephony`, Vonage's, jambonz's and Genesys's control messages
//! included), both directions, plus payload decoding.
use voxbridge_proto::telephony::{self, CallerEvent, Dialect};
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
    for d in Dialect::ALL {
        if let Ok(telephony::BotCommand::Media { payload, .. }) = telephony::BotCommand::parse(d, text) {
            let _ = decode_payload(&payload, &mut buf);
        }
    }
    if let Ok(CallerEvent::Media { payload, .. }) = CallerEvent::parse(text) {
        let _ = decode_payload(&payload, &mut buf);
    }
});
