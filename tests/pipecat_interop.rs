//! Wire compatibility with pipecat itself: frames voxbridge writes are read by
//! pipecat's `ProtobufFrameSerializer` and its telephony serializers (Twilio,
//! Telnyx, Plivo, Exotel; PyPI `pipecat-ai`), and frames pipecat writes are
//! read by voxbridge, including an InterruptionFrame and audio wrapped in a
//! WAV header. A wire change that breaks pipecat fails here.
//!
//! Python comes from the venv `scripts/setup.sh` builds (or `VOXBRIDGE_INTEROP_PYTHON`).

mod common;

use bytes::{Bytes, BytesMut};
use common::tempdir;
use std::path::Path;
use voxbridge_codecs::g711;
use voxbridge_media::config::{BotProtocolKind, TwilioEncoding};
use voxbridge_media::events::CallInfo;
use voxbridge_media::sansio::botcodec::{BotCodec, BotInput, Outgoing};
use voxbridge_proto::pipecat::{self, Kind};
use voxbridge_proto::twilio::{self, BotCommand, StreamEvent};

fn pb_file(dir: &Path, name: &str, kind: Kind) {
    let mut buf = BytesMut::new();
    pipecat::encode(kind, &mut buf);
    std::fs::write(dir.join(name), &buf).expect("write");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn read_frame(dir: &Path, name: &str) -> Kind {
    pipecat::decode(Bytes::from(
        std::fs::read(dir.join(name)).expect("pipecat wrote it"),
    ))
    .expect("decodes")
}

#[test]
fn pipecat_reads_our_frames_and_we_read_pipecats() {
    let py = common::interop_python();
    let dir = tempdir("pipecat");

    // 20 ms of 16 kHz PCM16.
    let pcm: Vec<u8> = (0..320i32)
        .flat_map(|i| (((i * 97) % 2000 - 1000) as i16).to_le_bytes())
        .collect();
    let ulaw: Vec<u8> = (0..160u32).map(|i| (i * 37 % 256) as u8).collect();
    let mut ulaw_pcm = vec![0i16; 160];
    g711::decode_ulaw(&ulaw, &mut ulaw_pcm);
    let ulaw_pcm_bytes: Vec<u8> = ulaw_pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    let message = serde_json::json!({"type": "dtmf", "digit": "5", "call_id": "c1"});

    pb_file(
        &dir,
        "vb_text.bin",
        Kind::Text(pipecat::TextFrame {
            text: "hello from voxbridge".into(),
            ..Default::default()
        }),
    );
    let mut audio = BytesMut::new();
    pipecat::encode_audio(Bytes::from(pcm.clone()), 16000, &mut audio);
    std::fs::write(dir.join("vb_audio.bin"), &audio).expect("write");
    pb_file(
        &dir,
        "vb_transcription.bin",
        Kind::Transcription(pipecat::TranscriptionFrame {
            text: "the caller said this".into(),
            user_id: "caller".into(),
            timestamp: "2026-11-24T09:00:00Z".into(),
            ..Default::default()
        }),
    );
    pb_file(
        &dir,
        "vb_message.bin",
        Kind::Message(pipecat::MessageFrame {
            data: message.to_string(),
        }),
    );
    pb_file(
        &dir,
        "vb_interruption.bin",
        Kind::Interruption(pipecat::InterruptionFrame::default()),
    );
    let mut b64 = String::new();
    twilio::encode_payload(&ulaw, &mut b64);
    let media = StreamEvent::Media {
        sequence: 3,
        stream_sid: "MZ1".into(),
        track: "inbound".into(),
        chunk: 1,
        timestamp: 20,
        payload: b64.into(),
    };
    std::fs::write(dir.join("vb_twilio_media.json"), media.to_json()).expect("write");
    let dtmf = StreamEvent::Dtmf {
        stream_sid: "MZ1".into(),
        digit: "5".into(),
    };
    std::fs::write(dir.join("vb_twilio_dtmf.json"), dtmf.to_json()).expect("write");
    let expect = serde_json::json!({
        "text": "hello from voxbridge",
        "audio_hex": hex(&pcm),
        "transcript": "the caller said this",
        "message": message,
        "ulaw_pcm_hex": hex(&ulaw_pcm_bytes),
    });
    std::fs::write(dir.join("vb_expect.json"), expect.to_string()).expect("write");

    common::run_interop(
        &py,
        "pipecat_check.py",
        &[dir.as_os_str()],
        "pipecat rejected our frames",
    );

    // pipecat -> voxbridge
    let Kind::Audio(a) = read_frame(&dir, "pc_audio.bin") else {
        panic!("not audio")
    };
    assert_eq!((a.sample_rate, a.num_channels), (16000, 1));
    let (samples, rate) = pipecat::audio_pcm(&a).expect("pcm");
    assert_eq!((&samples[..], rate), (&pcm[..], 16000));
    let Kind::Audio(a) = read_frame(&dir, "pc_audio_wav.bin") else {
        panic!("not audio")
    };
    assert!(a.audio.starts_with(b"RIFF"), "pipecat wrapped the audio in WAV");
    let (samples, rate) = pipecat::audio_pcm(&a).expect("pcm");
    assert_eq!((&samples[..], rate), (&pcm[..], 24000), "WAV header stripped");
    assert!(matches!(read_frame(&dir, "pc_text.bin"), Kind::Text(t) if t.text == "hello from pipecat"));
    assert!(
        matches!(read_frame(&dir, "pc_transcription.bin"), Kind::Transcription(t) if t.text == "I need help" && t.user_id == "u1")
    );
    assert!(matches!(
        read_frame(&dir, "pc_interruption.bin"),
        Kind::Interruption(_)
    ));
    let Kind::Message(m) = read_frame(&dir, "pc_message.bin") else {
        panic!("not a message")
    };
    let v: serde_json::Value = serde_json::from_str(&m.data).expect("JSON");
    assert_eq!(v["type"], "bot-tts-text");

    let media = std::fs::read_to_string(dir.join("pc_twilio_media.json")).expect("read");
    let BotCommand::Media { stream_sid, payload } = BotCommand::parse(&media).expect("parses") else {
        panic!("not media")
    };
    assert_eq!(stream_sid, "MZ1");
    let mut codes = Vec::new();
    twilio::decode_payload(&payload, &mut codes).expect("base64");
    let mut back = vec![0i16; codes.len()];
    g711::decode_ulaw(&codes, &mut back);
    assert_eq!(
        back, ulaw_pcm,
        "pipecat's u-law of our decoded PCM decodes back to it"
    );
    let clear = std::fs::read_to_string(dir.join("pc_twilio_clear.json")).expect("read");
    assert_eq!(
        BotCommand::parse(&clear).expect("parses"),
        BotCommand::Clear {
            stream_sid: "MZ1".into()
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Text of a message the codec wrote.
fn text_of(o: Outgoing) -> String {
    match o {
        Outgoing::Text(b) => String::from_utf8(b.to_vec()).expect("UTF-8"),
        Outgoing::Binary(_) => panic!("a JSON dialect wrote binary"),
    }
}

/// The provider dialects against pipecat 1.14 itself: its runner's
/// `parse_telephony_websocket` reads voxbridge's opening messages as the
/// provider's (right dialect, call and stream ids), the dialect's own
/// pipecat serializer decodes voxbridge's media and DTMF to the PCM and key
/// voxbridge sent, and what that serializer writes (audio, barge-in) is
/// decoded by voxbridge's codec to the PCM pipecat was given.
#[test]
fn pipecat_serializers_of_every_provider_dialect_speak_with_voxbridge() {
    let py = common::interop_python();
    let dir = tempdir("dialects");
    // (pipecat 1.14's Telnyx serializer carries PCMU and PCMA only; Telnyx's
    // network-order L16 is checked in voxbridge's own tests.)
    let cases = [
        ("twilio", BotProtocolKind::Twilio, TwilioEncoding::Mulaw, 8000),
        ("telnyx", BotProtocolKind::Telnyx, TwilioEncoding::Mulaw, 8000),
        ("telnyx_alaw", BotProtocolKind::Telnyx, TwilioEncoding::Alaw, 8000),
        ("plivo", BotProtocolKind::Plivo, TwilioEncoding::Mulaw, 8000),
        ("exotel", BotProtocolKind::Exotel, TwilioEncoding::L16, 8000),
        ("exotel_16k", BotProtocolKind::Exotel, TwilioEncoding::L16, 16000),
        ("vonage", BotProtocolKind::Vonage, TwilioEncoding::L16, 16000),
        ("vonage_8k", BotProtocolKind::Vonage, TwilioEncoding::L16, 8000),
        ("genesys", BotProtocolKind::Genesys, TwilioEncoding::Mulaw, 8000),
    ];
    let info = CallInfo {
        call_id: "7f3e2a10-5b6c-4d8e-9f00-aa11bb22cc33".into(),
        route: "default".into(),
        caller: Some("+15550100".into()),
        callee: Some("+15550199".into()),
        ingress: "sip",
        params: [("account_sid".to_string(), "AC77".to_string())].into(),
    };
    let mut expect = serde_json::Map::new();
    let mut codecs = Vec::new();
    for (name, kind, enc, rate) in cases {
        let mut codec = BotCodec::new(kind, enc, rate, &info.call_id);
        let opening: Vec<String> = codec.start(&info).into_iter().map(text_of).collect();
        // 20 ms of a ramp; what the bot must get back is it after the
        // encoding (G.711 is lossy once, then exact).
        let n = (rate / 50) as usize;
        let sent: Vec<i16> = (0..n as i32).map(|i| ((i * 211) % 16000 - 8000) as i16).collect();
        let heard: Vec<i16> = match enc {
            TwilioEncoding::Mulaw => sent
                .iter()
                .map(|&s| g711::ulaw_to_linear(g711::linear_to_ulaw(s)))
                .collect(),
            TwilioEncoding::Alaw => sent
                .iter()
                .map(|&s| g711::alaw_to_linear(g711::linear_to_alaw(s)))
                .collect(),
            TwilioEncoding::L16 => sent.clone(),
        };
        let (media_key, media) = match codec.audio(&sent) {
            Outgoing::Binary(b) => ("media_hex", hex(&b)),
            text => ("media", text_of(text)),
        };
        let dtmf = text_of(codec.dtmf('7'));
        let mut case = serde_json::json!({
            "dialect": kind.name(),
            "encoding": enc.wire().name(),
            "rate": rate,
            "call_id": info.call_id,
            "stream_id": codec.stream_sid(),
            "opening": opening,
            "dtmf": dtmf,
            "pcm_hex": hex(&heard.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>()),
        });
        case[media_key] = media.into();
        expect.insert(name.into(), case);
        codecs.push((name, codec, heard));
    }
    std::fs::write(
        dir.join("dialects.json"),
        serde_json::Value::Object(expect).to_string(),
    )
    .expect("write");
    common::run_interop(
        &py,
        "dialect_check.py",
        &[dir.as_os_str()],
        "pipecat rejected a dialect",
    );
    let answers: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("pipecat.json")).expect("pipecat wrote its answers"))
            .expect("JSON");
    for (name, mut codec, heard) in codecs {
        let a = &answers[name];
        let decoded = match a["media_hex"].as_str() {
            Some(h) => {
                let raw: Vec<u8> = (0..h.len() / 2)
                    .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("hex"))
                    .collect();
                codec.decode_binary(raw.into())
            }
            None => codec.decode_text(a["media"].as_str().expect("pipecat serialized audio")),
        };
        match decoded.expect("voxbridge reads pipecat's audio") {
            BotInput::Audio { pcm, .. } => assert_eq!(pcm, &heard[..], "{name}: pipecat's audio back"),
            other => panic!("{name}: {other:?}"),
        }
        if let Some(opened) = a["opened"].as_str() {
            assert_eq!(
                codec
                    .decode_text(opened)
                    .expect("voxbridge reads pipecat's opened"),
                BotInput::Ignored,
                "{name}: {opened}"
            );
        }
        let clear = a["clear"].as_str().expect("pipecat serialized the interruption");
        assert_eq!(
            codec.decode_text(clear).expect("reads"),
            BotInput::Clear,
            "{name}: {clear}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `voxbridge bot check` against a real pipecat bot in every dialect:
/// pipecat's WebSocket server transport with the dialect's own serializer
/// and a pipeline that plays back what it hears
/// (tests/interop/pipecat_echo_bot.py). Every message it sends is one a
/// call can use, and its audio comes back after the caller spoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_check_passes_a_real_pipecat_bot_in_every_dialect() {
    let py = common::interop_python();
    for (protocol, rate, encoding) in [
        ("pipecat", 16000, None),
        ("twilio", 8000, Some("mulaw")),
        ("telnyx", 8000, Some("mulaw")),
        ("plivo", 8000, Some("mulaw")),
        ("exotel", 8000, Some("l16")),
        ("vonage", 16000, Some("l16")),
        ("genesys", 8000, Some("mulaw")),
    ] {
        let (mut bot, port, _) =
            common::spawn_listening(&py, "pipecat_echo_bot.py", &[protocol, &rate.to_string()]);
        let args = voxbridge::botcheck::Args {
            url: format!("ws://127.0.0.1:{port}"),
            protocol: protocol.into(),
            encoding: encoding.map(str::to_owned),
            sample_rate: rate,
            answer_timeout_ms: 3000,
        };
        let report = voxbridge::botcheck::check(&args).await.expect("the check runs");
        let _ = bot.kill();
        let _ = bot.wait();
        assert!(report.passed(), "{protocol}: {report:?}");
        assert!(report.first_audio_ms.is_some(), "{protocol}: {report:?}");
        assert!(
            report.bot_audio_ms >= 1000.0,
            "{protocol}: pipecat played the call back: {report:?}"
        );
    }
}

/// The JSON Schemas published under proto/schema/ say what voxbridge's
/// parser says: every message voxbridge writes as the provider fits the
/// dialect's provider schema, and what a bot may send is valid by the
/// dialect's bot schema exactly when a call can use it (checked with
/// jsonschema_rs from the control venv, tests/interop/schema_check.py).
#[test]
fn published_dialect_schemas_agree_with_voxbridge() {
    use voxbridge_proto::telephony::{BotCommand, Dialect, Encoding};
    let py = common::control_python();
    let info = CallInfo {
        call_id: "c-1".into(),
        route: "default".into(),
        caller: Some("+15550100".into()),
        callee: Some("+15550199".into()),
        ingress: "sip",
        params: [("customer_id".to_string(), "acme".to_string())].into(),
    };
    let mut corpus = Vec::new();
    for kind in [
        BotProtocolKind::Twilio,
        BotProtocolKind::Telnyx,
        BotProtocolKind::Plivo,
        BotProtocolKind::Exotel,
        BotProtocolKind::Vonage,
        BotProtocolKind::Jambonz,
        BotProtocolKind::Genesys,
    ] {
        let d = kind.dialect().expect("a provider dialect");
        let provider = format!("telephony-{}.provider.json", d.name());
        let bot = format!("telephony-{}.bot.json", d.name());
        let enc = if matches!(
            d,
            Dialect::Telnyx | Dialect::Plivo | Dialect::Twilio | Dialect::Genesys
        ) {
            TwilioEncoding::Mulaw
        } else {
            TwilioEncoding::L16
        };
        let mut codec = BotCodec::new(kind, enc, 8000, &info.call_id);
        let mut ours: Vec<Outgoing> = codec.start(&info);
        ours.push(codec.audio(&[100i16; 160]));
        ours.push(codec.dtmf('#'));
        ours.extend(codec.mark_played(r#"{"m":1}"#));
        ours.extend(codec.mark_cleared("m2"));
        ours.extend(codec.keepalive());
        ours.extend(codec.cleared());
        ours.extend(codec.stop(voxbridge_media::HangupCause::CallerHangup));
        // (Binary audio has no schema.)
        for o in ours.into_iter().filter(|o| matches!(o, Outgoing::Text(_))) {
            corpus.push(serde_json::json!({"schema": provider, "message": text_of(o), "valid": true}));
        }
        let mut bot_side: Vec<String> = [
            BotCommand::Media {
                payload: "AAECAw==".into(),
                encoding: Some(Encoding::Mulaw),
                sample_rate: Some(8000),
            },
            BotCommand::Clear,
            BotCommand::Mark { name: "m".into() },
            BotCommand::Dtmf { digit: "5".into() },
            BotCommand::Transfer {
                target: "sip:desk@pbx".into(),
            },
            BotCommand::Hangup,
            BotCommand::ClearMarks,
        ]
        .iter()
        .filter_map(|c| c.write(d, "S"))
        .collect();
        // And what a call can use in one dialect and not in another, or in none
        // (payloads of whole 16-bit samples: the schemas do not count bytes).
        bot_side.extend(
            [
                r#"{"event":"media","media":{"payload":"AAECAw=="}}"#,
                r#"{"event":"playAudio","media":{"payload":"AAECAw=="}}"#,
                r#"{"event":"clear"}"#,
                r#"{"event":"clearAudio"}"#,
                r#"{"event":"mark"}"#,
                r#"{"event":"checkpoint","name":"x"}"#,
                r#"{"event":"dtmf","dtmf":{"digit":"55"}}"#,
                r#"{"event":"transfer","transfer":{"target":"  "}}"#,
                r#"{"event":"stop"}"#,
                r#"{"media":{"payload":"AAECAw=="}}"#,
                r#"{"action":"clear"}"#,
                r#"{"action":"notify","payload":{"n":1}}"#,
                r#"{"action":"notify"}"#,
                r#"{"action":"dtmf","digit":"x"}"#,
                r#"{"action":"transfer","target":"+15550123"}"#,
                r#"{"type":"killAudio"}"#,
                r#"{"type":"disconnect"}"#,
                r#"{"type":"mark","data":{}}"#,
                r#"{"type":"playAudio","data":{"audioContent":"AAECAw==","audioContentType":"raw","sampleRate":16000}}"#,
                r#"{"type":"playAudio","data":{"audioContent":"AAECAw==","audioContentType":"wav"}}"#,
                r#"{"type":"dtmf","data":{"digit":"*"}}"#,
                r#"{"type":"dtmf","digit":"*"}"#,
                r#"{"type":"clearMarks"}"#,
                r#"{"version":"2","type":"opened","seq":1,"clientseq":1,"id":"s","parameters":{}}"#,
                r#"{"version":"2","type":"event","seq":2,"parameters":{"entities":[{"type":"barge_in","data":{}}]}}"#,
                r#"{"version":"2","type":"disconnect","seq":3,"parameters":{"reason":"completed"}}"#,
                r#"{"version":"2","type":"error","seq":4,"parameters":{"code":500,"message":"x"}}"#,
                r#"{"version":"2","type":"dtmf","seq":5,"parameters":{"digit":"1"}}"#,
            ]
            .map(String::from),
        );
        for m in bot_side {
            let valid = codec.decode_text(&m).is_ok();
            corpus.push(serde_json::json!({"schema": bot, "message": m, "valid": valid}));
        }
    }
    let dir = tempdir("schemas");
    std::fs::write(
        dir.join("corpus.json"),
        serde_json::Value::from(corpus).to_string(),
    )
    .expect("write");
    let corpus = dir.join("corpus.json");
    common::run_interop(
        &py,
        "schema_check.py",
        &[corpus.as_os_str()],
        "a schema disagrees with voxbridge",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
