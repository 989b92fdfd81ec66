#![no_main]
//! A bot's side of a call: arbitrary messages (pipecat or one of the JSON
//! dialects with one of its encodings, by the first byte) through the media crate's bot codec into a call pipeline,
//! with pacer ticks between them. Nothing a bot sends may panic the call or
//! change the caller's frame size.
use voxbridge_media::config::{BotProtocolKind, TwilioEncoding};
use voxbridge_media::sansio::botcodec::{BotCodec, BotInput};
use voxbridge_media::sansio::pipeline::Pipeline;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let (kind, enc) = match mode % 8 {
        0 => (BotProtocolKind::Pipecat, TwilioEncoding::L16),
        1 => (BotProtocolKind::Twilio, TwilioEncoding::L16),
        2 => (BotProtocolKind::Twilio, TwilioEncoding::Mulaw),
        3 => (BotProtocolKind::Telnyx, TwilioEncoding::L16),
        4 => (BotProtocolKind::Telnyx, TwilioEncoding::Alaw),
        5 => (BotProtocolKind::Plivo, TwilioEncoding::Mulaw),
        6 => (BotProtocolKind::Plivo, TwilioEncoding::L16),
        _ => (BotProtocolKind::Exotel, TwilioEncoding::L16),
    };
    let rate = if enc == TwilioEncoding::L16 { 16000 } else { 8000 };
    let mut codec = BotCodec::new(kind, enc, rate, "fuzz");
    let Ok(mut p) = Pipeline::new(8000, rate, 1000) else {
        return;
    };
    // Messages: 2-byte length prefix, then the bytes.
    while rest.len() >= 2 {
        let len = (u16::from_le_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        let msg = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let input = match kind {
            BotProtocolKind::Pipecat => codec.decode_binary(bytes::Bytes::copy_from_slice(msg)),
            _ => match std::str::from_utf8(msg) {
                Ok(s) => codec.decode_text(s),
                Err(_) => continue,
            },
        };
        match input {
            Ok(BotInput::Audio { pcm, rate }) => {
                let _ = p.bot_audio(pcm, rate);
            }
            Ok(BotInput::Clear) => p.clear(),
            Ok(BotInput::Mark(m)) => p.mark(m),
            _ => {}
        }
        let (frame, _) = p.tick();
        assert_eq!(frame.len(), 160);
        while p.poll_mark().is_some() {}
    }
});
