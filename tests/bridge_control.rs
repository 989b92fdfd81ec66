//! Call control through the daemon: DTMF to the bot (pipecat and every JSON
//! dialect), call metadata at start, barge-in, marks echoed only after their
//! audio played, and bot transcripts becoming call events.

mod harness;

use harness::*;
use tokio_tungstenite::tungstenite::Message;
use voxbridge_media::config::{BotProtocolKind, Route, TwilioEncoding};
use voxbridge_media::events::Speaker;
use voxbridge_media::CallEvent;
use voxbridge_proto::audiosocket::Frame;
use voxbridge_proto::pipecat::{InterruptionFrame, Kind, TextFrame, TranscriptionFrame};
use voxbridge_proto::twilio::{self, BotCommand, StreamEvent};

fn twilio_route(url: &str) -> Route {
    Route {
        url: url.into(),
        protocol: BotProtocolKind::Twilio,
        twilio_encoding: Some(TwilioEncoding::L16),
        sample_rate: 8000,
        params: [("campaign".to_string(), "spring".to_string())].into(),
        ..Route::default()
    }
}

async fn twilio_next(bot: &mut BotConn) -> StreamEvent<'static> {
    match bot.recv().await.expect("a message") {
        Message::Text(t) => {
            let s: &'static str = Box::leak(t.as_str().to_string().into_boxed_str());
            StreamEvent::parse(s).expect("valid Twilio event")
        }
        other => panic!("twilio link got {other:?}"),
    }
}

fn twilio_media(pcm: &[i16]) -> Message {
    let raw: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut b64 = String::new();
    twilio::encode_payload(&raw, &mut b64);
    Message::Text(
        BotCommand::Media {
            stream_sid: "MZ".into(),
            payload: b64.into(),
        }
        .to_json()
        .into(),
    )
}

#[tokio::test]
async fn dtmf_reaches_a_pipecat_bot_and_the_event_sink() {
    let mut bot = TestBot::start().await;
    let mut d = Daemon::start(pipecat_route(&bot.url, 16000)).await;
    let mut caller = Caller::connect(d.addr, uuid(10)).await;
    let mut link = bot.accept().await;
    pipecat_next(&mut link).await.expect("start");
    caller.send_raw(&[0x03, 0x00, 0x01, b'7']).await;
    let msg = loop {
        let k = pipecat_next(&mut link).await.expect("dtmf message");
        if let Some(v) = message_json(&k) {
            break v;
        }
    };
    assert_eq!(msg["type"], "voxbridge.dtmf");
    assert_eq!(msg["digit"], "7");
    d.event("dtmf", |e| matches!(e, CallEvent::Dtmf { digit: '7', .. }))
        .await;
}

#[tokio::test]
async fn a_twilio_bot_gets_connected_start_with_metadata_then_media_and_dtmf() {
    let mut bot = TestBot::start().await;
    let d = Daemon::start(twilio_route(&bot.url)).await;
    let mut caller = Caller::connect(d.addr, uuid(11)).await;
    let mut link = bot.accept().await;
    assert!(matches!(
        twilio_next(&mut link).await,
        StreamEvent::Connected { .. }
    ));
    let StreamEvent::Start { start, .. } = twilio_next(&mut link).await else {
        panic!("start second")
    };
    assert_eq!(start.call_sid, "5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a0b");
    assert_eq!(start.custom_parameters["campaign"], "spring");
    assert_eq!(start.media_format.encoding, "audio/x-l16");
    assert_eq!(start.media_format.sample_rate, 8000);
    let speech = speech_8k(1);
    caller.send_audio(&speech).await;
    let StreamEvent::Media { payload, .. } = twilio_next(&mut link).await else {
        panic!("media")
    };
    let mut raw = Vec::new();
    twilio::decode_payload(&payload, &mut raw).expect("base64");
    let got: Vec<i16> = raw
        .chunks_exact(2)
        .map(|p| i16::from_le_bytes([p[0], p[1]]))
        .collect();
    assert_eq!(got, speech, "8 kHz L16 passes bit-exact");
    caller.send_raw(&[0x03, 0x00, 0x01, b'#']).await;
    let StreamEvent::Dtmf { digit, .. } = twilio_next(&mut link).await else {
        panic!("dtmf")
    };
    assert_eq!(digit, "#");
}

/// Reads caller frames until one carries `value` in every sample.
async fn until_constant(caller: &mut Caller, value: i16) -> usize {
    let mut frames = 0;
    loop {
        let f = caller.next_audio().await;
        frames += 1;
        if f.iter().all(|&s| s == value) {
            return frames;
        }
    }
}

#[tokio::test]
async fn barge_in_drops_queued_bot_audio_and_what_follows_plays_next() {
    let mut bot = TestBot::start().await;
    let d = Daemon::start(pipecat_route(&bot.url, 8000)).await;
    let mut caller = Caller::connect(d.addr, uuid(12)).await;
    let mut link = bot.accept().await;
    pipecat_next(&mut link).await.expect("start");
    // 2 s of a constant "voice" at once, as TTS does.
    link.send(pipecat_audio(&[1000i16; 16000], 8000)).await;
    until_constant(&mut caller, 1000).await;
    // Interrupt, then a short different sound.
    link.send(pipecat_msg(Kind::Interruption(InterruptionFrame::default())))
        .await;
    link.send(pipecat_audio(&[-2000i16; 800], 8000)).await;
    // Everything after the first frame of the new sound: the new sound, then
    // silence; never the old one again.
    let mut old_after_new = 0;
    let mut old_before_new = 0;
    let mut new_frames = 0;
    for _ in 0..30 {
        let f = caller.next_audio().await;
        if f.iter().all(|&s| s == -2000) {
            new_frames += 1;
        } else if f.iter().all(|&s| s == 1000) {
            if new_frames > 0 {
                old_after_new += 1;
            } else {
                old_before_new += 1;
            }
        }
    }
    assert_eq!(new_frames, 5, "the 100 ms after the interruption plays in full");
    assert_eq!(old_after_new, 0, "no old audio after the new");
    // Old audio still in flight when the bot interrupted (the test reads
    // slower than the daemon writes); nowhere near the 100 frames left of it.
    assert!(
        old_before_new < 25,
        "{old_before_new} old frames after the interruption"
    );
}

#[tokio::test]
async fn a_mark_comes_back_only_after_its_audio_was_sent_to_the_caller() {
    let mut bot = TestBot::start().await;
    let d = Daemon::start(twilio_route(&bot.url)).await;
    let mut caller = Caller::connect(d.addr, uuid(13)).await;
    let mut link = bot.accept().await;
    twilio_next(&mut link).await;
    twilio_next(&mut link).await;
    // 200 ms of audio, then a mark.
    link.send(twilio_media(&[700i16; 1600])).await;
    link.send(Message::Text(
        BotCommand::Mark {
            stream_sid: "MZ".into(),
            name: "greeting-done".into(),
        }
        .to_json()
        .into(),
    ))
    .await;
    let name = loop {
        if let StreamEvent::Mark { name, .. } = twilio_next(&mut link).await {
            break name;
        }
    };
    assert_eq!(name, "greeting-done");
    // Loopback delivers a write before the next one starts, so every frame
    // the daemon wrote before echoing the mark is already readable here.
    let played = caller
        .drain_now()
        .into_iter()
        .filter(|f| matches!(f, Frame::Audio { pcm, .. } if pcm[..2] == 700i16.to_le_bytes()))
        .count();
    assert_eq!(played, 10, "all 10 frames before the mark had been sent");
    drop(d);
}

#[tokio::test]
async fn bot_transcripts_and_text_become_call_events() {
    let mut bot = TestBot::start().await;
    let mut d = Daemon::start(pipecat_route(&bot.url, 16000)).await;
    let _caller = Caller::connect(d.addr, uuid(14)).await;
    let mut link = bot.accept().await;
    pipecat_next(&mut link).await.expect("start");
    link.send(pipecat_msg(Kind::Transcription(TranscriptionFrame {
        text: "I'd like to pay my bill".into(),
        user_id: "caller".into(),
        ..Default::default()
    })))
    .await;
    link.send(pipecat_msg(Kind::Text(TextFrame {
        text: "Sure, one moment.".into(),
        ..Default::default()
    })))
    .await;
    let e = d
        .event("caller transcript", |e| matches!(e, CallEvent::Transcript { .. }))
        .await;
    assert!(
        matches!(&e, CallEvent::Transcript { speaker: Speaker::Caller, text, user_id, .. } if text == "I'd like to pay my bill" && user_id == "caller"),
        "{e:?}"
    );
    let e = d
        .event("bot text", |e| matches!(e, CallEvent::Transcript { .. }))
        .await;
    assert!(
        matches!(&e, CallEvent::Transcript { speaker: Speaker::Bot, text, .. } if text == "Sure, one moment."),
        "{e:?}"
    );
}

/// A bot written for Telnyx, Plivo, Exotel, Vonage or jambonz, through the
/// daemon: the provider's opening (start with the call's metadata; for
/// jambonz over its subprotocol), the caller's audio bit-exact in the
/// provider's default encoding (binary PCM for Vonage and jambonz), DTMF,
/// the bot's audio played to the caller, its mark echoed only after that
/// audio was sent, and its barge-in (which Plivo and Vonage answer).
#[tokio::test]
async fn bots_of_every_provider_dialect_get_the_call_and_are_heard() {
    use voxbridge_proto::telephony::{self, CallerEvent, Dialect};
    for (n, kind) in [
        BotProtocolKind::Telnyx,
        BotProtocolKind::Plivo,
        BotProtocolKind::Exotel,
        BotProtocolKind::Vonage,
        BotProtocolKind::Jambonz,
        BotProtocolKind::Genesys,
    ]
    .into_iter()
    .enumerate()
    {
        let dialect = kind.dialect().expect("a provider dialect");
        let mut bot = TestBot::start().await;
        let d = Daemon::start(Route {
            protocol: kind,
            sample_rate: 8000,
            // The provider's default: mulaw for Telnyx and Plivo, l16 for the others.
            twilio_encoding: None,
            ..twilio_route(&bot.url)
        })
        .await;
        let mut caller = Caller::connect(d.addr, uuid(40 + n as u8)).await;
        let mut link = bot.accept().await;
        assert_eq!(link.protocol.as_deref(), dialect.subprotocol(), "{dialect:?}");
        let start = loop {
            let t = link
                .recv()
                .await
                .expect("a message")
                .into_text()
                .expect("text")
                .to_string();
            match CallerEvent::parse(&t).expect("valid") {
                CallerEvent::Start(s) => break s,
                CallerEvent::Connected => {}
                other => panic!("{dialect:?}: {other:?} before start"),
            }
        };
        assert_eq!(start.dialect, dialect);
        let default = if matches!(dialect, Dialect::Telnyx | Dialect::Plivo | Dialect::Genesys) {
            telephony::Encoding::Mulaw
        } else {
            telephony::Encoding::L16
        };
        assert_eq!(
            (start.encoding, start.sample_rate),
            (default, 8000),
            "{dialect:?}"
        );
        assert_eq!(
            start.call_id,
            format!("5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a{:02x}", 40 + n)
        );
        assert_eq!(start.params["campaign"], "spring", "{dialect:?}");
        let wire = start.encoding;
        let from_le = |raw: &[u8]| -> Vec<i16> {
            raw.chunks_exact(2)
                .map(|p| i16::from_le_bytes([p[0], p[1]]))
                .collect()
        };
        let decode = |payload: &str| {
            let mut raw = Vec::new();
            twilio::decode_payload(payload, &mut raw).expect("base64");
            match wire {
                telephony::Encoding::Mulaw => raw
                    .iter()
                    .map(|&c| voxbridge_codecs::g711::ulaw_to_linear(c))
                    .collect::<Vec<i16>>(),
                _ => from_le(&raw),
            }
        };
        let encode = |pcm: &[i16]| {
            let raw: Vec<u8> = match wire {
                telephony::Encoding::Mulaw => pcm
                    .iter()
                    .map(|&s| voxbridge_codecs::g711::linear_to_ulaw(s))
                    .collect(),
                _ => pcm.iter().flat_map(|s| s.to_le_bytes()).collect(),
            };
            let mut b64 = String::new();
            twilio::encode_payload(&raw, &mut b64);
            b64
        };
        let speech = speech_8k(1);
        caller.send_audio(&speech).await;
        caller.send_raw(&[0x03, 0x00, 0x01, b'4']).await;
        let (mut heard, mut digit) = (None, None);
        while heard.is_none() || digit.is_none() {
            match link.recv().await {
                Some(Message::Binary(b)) if dialect.binary_audio() => {
                    heard.get_or_insert_with(|| match wire {
                        telephony::Encoding::Mulaw => b
                            .iter()
                            .map(|&c| voxbridge_codecs::g711::ulaw_to_linear(c))
                            .collect(),
                        _ => from_le(&b),
                    });
                }
                Some(Message::Text(t)) => match CallerEvent::parse(t.as_str()).expect("valid") {
                    CallerEvent::Media { payload, .. } if heard.is_none() => heard = Some(decode(&payload)),
                    CallerEvent::Dtmf { digit: k } => digit = Some(k.into_owned()),
                    _ => {}
                },
                Some(other) => panic!("{dialect:?}: unexpected {other:?}"),
                None => panic!("{dialect:?}: link closed"),
            }
        }
        assert_eq!(
            heard.as_deref(),
            Some(&speech[..]),
            "{dialect:?}: caller audio bit-exact"
        );
        assert_eq!(digit.as_deref(), Some("4"), "{dialect:?}");

        // A value G.711 carries exactly, so the caller must hear it as sent.
        let voice = voxbridge_codecs::g711::ulaw_to_linear(voxbridge_codecs::g711::linear_to_ulaw(700));
        if dialect == Dialect::Genesys {
            let ulaw = vec![voxbridge_codecs::g711::linear_to_ulaw(voice); 1600];
            link.send(Message::Binary(ulaw.into())).await;
        } else if dialect.binary_audio() {
            let pcm: Vec<u8> = [voice; 1600].iter().flat_map(|s| s.to_le_bytes()).collect();
            link.send(Message::Binary(pcm.into())).await;
        } else {
            let media = telephony::BotCommand::Media {
                payload: encode(&[voice; 1600]).into(),
                encoding: Some(wire),
                sample_rate: Some(8000),
            };
            let m = media.write(dialect, &start.stream_id).expect("JSON audio");
            link.send(Message::Text(m.into())).await;
        }
        // Vonage's marks are JSON payloads (`notify`), carried as JSON text.
        let label = if dialect == Dialect::Vonage {
            r#"{"said":"hello"}"#
        } else {
            "said-hello"
        };
        let mark = telephony::BotCommand::Mark { name: label.into() };
        // Genesys has no marks: its bot's audio is seen at the caller.
        let Some(m) = mark.write(dialect, &start.stream_id) else {
            let mut heard_voice = 0;
            while heard_voice < 10 {
                if let Some(Frame::Audio { pcm, .. }) = caller.next().await {
                    heard_voice += usize::from(pcm[..2] == voice.to_le_bytes());
                }
            }
            drop(d);
            continue;
        };
        link.send(Message::Text(m.into())).await;
        loop {
            match link.recv().await.expect("the mark comes back") {
                Message::Text(t) => {
                    if let CallerEvent::Mark { name } = CallerEvent::parse(t.as_str()).expect("valid") {
                        assert_eq!(name, label);
                        break;
                    }
                }
                Message::Binary(_) => {}
                other => panic!("{dialect:?}: unexpected {other:?}"),
            }
        }
        let played = caller
            .drain_now()
            .into_iter()
            .filter(|f| matches!(f, Frame::Audio { pcm, .. } if pcm[..2] == voice.to_le_bytes()))
            .count();
        assert_eq!(
            played, 10,
            "{dialect:?}: the 200 ms before the mark had been sent to the caller"
        );

        let clear = telephony::BotCommand::Clear
            .write(dialect, &start.stream_id)
            .expect("clear");
        link.send(Message::Text(clear.into())).await;
        if matches!(dialect, Dialect::Plivo | Dialect::Vonage) {
            loop {
                if let Message::Text(t) = link.recv().await.expect("the barge-in is answered") {
                    if CallerEvent::parse(t.as_str()).expect("valid") == CallerEvent::Cleared {
                        break;
                    }
                }
            }
        }
        drop(d);
    }
}
