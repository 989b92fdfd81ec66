#![no_main]
//! Call events and commands between media and control processes (Kafka
//! message payloads): any bytes decode to a value or an error; a decoded
//! event re-encodes to bytes that decode to the same event.
use voxbridge_media::event_wire::{CallCommand, WireEvent};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(e) = WireEvent::decode(data) {
        let again = WireEvent::decode(&e.encode()).expect("an encoded event decodes");
        assert_eq!(again, e);
    }
    if let Ok(c) = CallCommand::decode(data) {
        assert_eq!(
            CallCommand::decode(&c.encode()).expect("an encoded command decodes"),
            c
        );
    }
});
