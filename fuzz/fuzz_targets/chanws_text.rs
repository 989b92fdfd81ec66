#![no_main]
//! Asterisk chan_websocket text messages: events as voxbridge reads them,
//! commands as a test peer playing Asterisk reads them, in both forms.
use voxbridge_proto::chanws::{Command, ControlFormat, Event};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((event, format)) = Event::parse(text) {
        let mut out = String::new();
        event.write(format, "1", &mut out);
        assert!(Event::parse(&out).is_ok(), "what we write parses: {out:?}");
    }
    let _ = Command::parse(text, ControlFormat::PlainText);
    let _ = Command::parse(text, ControlFormat::Json);
});
