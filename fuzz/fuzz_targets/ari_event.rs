#![no_main]
//! Asterisk ARI: the events WebSocket's messages and the `externalMedia`
//! answer, as the ARI originator's websocket mode reads them.
use voxbridge_control::originate::ari_media::{connection_id_of, outcome_of_cause, AriEvent};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(AriEvent::ChannelDestroyed { cause, cause_txt, .. }) = AriEvent::parse(text) {
        let _ = outcome_of_cause(cause, &cause_txt);
    }
    if let Ok(id) = connection_id_of(text) {
        assert!(
            id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{id:?}"
        );
    }
});
