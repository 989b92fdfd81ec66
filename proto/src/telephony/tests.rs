use super::*;
use proptest::prelude::*;
use std::borrow::Cow;
use std::collections::BTreeMap;

const IDS: Ids<'static> = Ids {
    stream_id: "5a5a0001",
    call_id: "call-\"1\"",
    account_id: "AC9",
    peer_seq: 3,
    position_ms: 1240,
};

fn opening(d: Dialect, encoding: Encoding, rate: u32, params: &BTreeMap<String, String>) -> Vec<String> {
    d.opening(&Opening {
        ids: IDS,
        seq: 1,
        from: Some("+15550100"),
        to: Some("+15550199"),
        encoding,
        sample_rate: rate,
        params,
    })
}

#[test]
fn every_dialect_opens_with_a_start_a_bot_recognises() {
    let params = BTreeMap::from([("lang".to_string(), "de".to_string())]);
    for (d, enc, rate) in [
        (Dialect::Twilio, Encoding::Mulaw, 8000),
        (Dialect::Telnyx, Encoding::L16, 16000),
        (Dialect::Plivo, Encoding::Mulaw, 8000),
        (Dialect::Exotel, Encoding::L16, 8000),
        (Dialect::Vonage, Encoding::L16, 16000),
        (Dialect::Jambonz, Encoding::L16, 8000),
        (Dialect::Genesys, Encoding::Mulaw, 8000),
    ] {
        let msgs = opening(d, enc, rate, &params);
        let start = msgs
            .iter()
            .find_map(|m| match CallerEvent::parse(m).expect("parses") {
                CallerEvent::Start(s) => Some(s),
                CallerEvent::Connected => None,
                other => panic!("{d:?}: {other:?} before the start"),
            })
            .expect("a start message");
        assert_eq!(start.dialect, d);
        assert_eq!(start.call_id, IDS.call_id, "{d:?}: escaped and read back");
        if d == Dialect::Vonage {
            // Vonage names neither a stream nor an account: the call id
            // names both, the route's customer_id parameter the account.
            assert_eq!(start.stream_id, IDS.call_id);
        } else {
            assert_eq!(start.stream_id, IDS.stream_id, "{d:?}");
            assert_eq!(start.account_id, IDS.account_id, "{d:?}");
        }
        assert_eq!((start.encoding, start.sample_rate), (enc, rate), "{d:?}");
        assert_eq!(start.from.as_deref(), Some("+15550100"), "{d:?}");
        assert_eq!(start.to.as_deref(), Some("+15550199"), "{d:?}");
        assert_eq!(start.params.get("lang").map(String::as_str), Some("de"), "{d:?}");
    }
}

#[test]
fn media_dtmf_marks_and_the_end_read_back_in_every_dialect() {
    for d in Dialect::ALL {
        let mut out = String::new();
        if d.binary_audio() {
            assert!(d.write_media(&mut out, IDS.stream_id, 7, 3, 40, "AAEC").is_err());
        } else {
            d.write_media(&mut out, IDS.stream_id, 7, 3, 40, "AAEC")
                .expect("write");
            assert_eq!(
                CallerEvent::parse(&out).expect("media parses"),
                CallerEvent::Media {
                    chunk: Some(3),
                    payload: Cow::Borrowed("AAEC")
                },
                "{d:?}: {out}"
            );
            let v: serde_json::Value = serde_json::from_str(&out).expect("json");
            let key = d.stream_key().expect("JSON dialects name the stream");
            assert_eq!(v[key], IDS.stream_id, "{d:?} names the stream its way");
        }
        assert!(matches!(
            CallerEvent::parse(&d.dtmf(IDS, 8, '#')).expect("dtmf"),
            CallerEvent::Dtmf { digit } if digit == "#"
        ));
        // Vonage's marks are JSON payloads, carried as their JSON text.
        let mark = mark_name(d, "end of greeting");
        match d.mark_played(IDS, 9, &mark) {
            Some(m) => assert!(matches!(
                CallerEvent::parse(&m).expect("mark"),
                CallerEvent::Mark { name } if name == mark
            )),
            None => assert_eq!(d, Dialect::Genesys, "only Genesys has no marks"),
        }
        match d.cleared(IDS, 10) {
            Some(m) => assert_eq!(CallerEvent::parse(&m).expect("cleared"), CallerEvent::Cleared),
            None => assert!(!matches!(d, Dialect::Plivo | Dialect::Vonage)),
        }
        match d.stop(IDS, 11, "hangup") {
            Some(m) => assert_eq!(CallerEvent::parse(&m).expect("stop"), CallerEvent::Stop),
            None => assert!(
                matches!(d, Dialect::Plivo | Dialect::Vonage | Dialect::Jambonz),
                "{d:?} ends with a message"
            ),
        }
    }
}

fn mark_name(d: Dialect, name: &str) -> String {
    if d == Dialect::Vonage {
        serde_json::json!({ "name": name }).to_string()
    } else {
        name.to_string()
    }
}

#[test]
fn twilio_media_is_written_as_before() {
    let mut out = String::new();
    Dialect::Twilio
        .write_media(&mut out, "MZ1", 2, 1, 0, "AA==")
        .expect("write");
    assert_eq!(
        out,
        r#"{"event":"media","sequenceNumber":"2","streamSid":"MZ1","media":{"track":"inbound","chunk":"1","timestamp":"0","payload":"AA=="}}"#
    );
}

#[test]
fn what_bots_send_round_trips_in_every_dialect() {
    for d in Dialect::ALL {
        let names_format = matches!(d, Dialect::Plivo | Dialect::Jambonz);
        let commands = [
            BotCommand::Media {
                payload: "AAEC".into(),
                encoding: names_format.then_some(Encoding::L16),
                sample_rate: names_format.then_some(16000),
            },
            BotCommand::Clear,
            BotCommand::Mark {
                name: mark_name(d, "m1").into(),
            },
            BotCommand::Dtmf { digit: "7".into() },
            BotCommand::Transfer {
                target: "sip:desk@pbx".into(),
            },
            BotCommand::Recording {
                action: RecordingAction::Pause,
            },
            BotCommand::Hangup,
            BotCommand::ClearMarks,
        ];
        for c in commands {
            match c.write(d, "S1") {
                Some(wire) => assert_eq!(BotCommand::parse(d, &wire).expect("parses"), c, "{d:?}: {wire}"),
                // Only these travel otherwise: Vonage audio as binary, a
                // hang-up (but jambonz's) as the socket's close.
                None => assert!(
                    match d {
                        Dialect::Vonage => {
                            matches!(
                                c,
                                BotCommand::Media { .. } | BotCommand::Hangup | BotCommand::ClearMarks
                            )
                        }
                        Dialect::Jambonz => false,
                        // Genesys bots play audio and barge in, hang up, and nothing else.
                        Dialect::Genesys => !matches!(c, BotCommand::Clear | BotCommand::Hangup),
                        // Only jambonz has clearMarks.
                        _ => matches!(c, BotCommand::Hangup | BotCommand::ClearMarks),
                    },
                    "{d:?} cannot write {c:?}"
                ),
            }
        }
    }
}

#[test]
fn pipecat_serializers_messages_parse() {
    // The shapes pipecat 1.14's serializers write (tests/dialects.rs checks
    // the real ones); payload "AAEC".
    let cases = [
        (
            Dialect::Telnyx,
            r#"{"event": "media", "media": {"payload": "AAEC"}}"#,
            BotCommand::Media {
                payload: "AAEC".into(),
                encoding: None,
                sample_rate: None,
            },
        ),
        (Dialect::Telnyx, r#"{"event": "clear"}"#, BotCommand::Clear),
        (
            Dialect::Plivo,
            r#"{"event": "playAudio", "media": {"contentType": "audio/x-mulaw", "sampleRate": 8000, "payload": "AAEC"}, "streamId": "s"}"#,
            BotCommand::Media {
                payload: "AAEC".into(),
                encoding: Some(Encoding::Mulaw),
                sample_rate: Some(8000),
            },
        ),
        (
            Dialect::Plivo,
            r#"{"event": "clearAudio", "streamId": "s"}"#,
            BotCommand::Clear,
        ),
        (
            Dialect::Exotel,
            r#"{"event": "clear", "streamSid": "s"}"#,
            BotCommand::Clear,
        ),
        (
            Dialect::Exotel,
            r#"{"event": "media", "streamSid": "s", "media": {"payload": "AAEC"}}"#,
            BotCommand::Media {
                payload: "AAEC".into(),
                encoding: None,
                sample_rate: None,
            },
        ),
        (Dialect::Vonage, r#"{"action": "clear"}"#, BotCommand::Clear),
        (
            Dialect::Vonage,
            r#"{"action": "notify", "payload": {"event": "end"}}"#,
            BotCommand::Mark {
                name: r#"{"event":"end"}"#.into(),
            },
        ),
        (Dialect::Jambonz, r#"{"type": "killAudio"}"#, BotCommand::Clear),
        (
            Dialect::Jambonz,
            r#"{"type": "clearMarks"}"#,
            BotCommand::ClearMarks,
        ),
        (Dialect::Jambonz, r#"{"type": "disconnect"}"#, BotCommand::Hangup),
        (
            Dialect::Jambonz,
            r#"{"type": "playAudio", "data": {"audioContent": "AAEC", "audioContentType": "raw", "sampleRate": "16000"}}"#,
            BotCommand::Media {
                payload: "AAEC".into(),
                encoding: Some(Encoding::L16),
                sample_rate: Some(16000),
            },
        ),
    ];
    for (d, msg, want) in cases {
        assert_eq!(BotCommand::parse(d, msg).expect("parses"), want, "{d:?}: {msg}");
    }
}

#[test]
fn another_dialects_events_are_named_errors() {
    let e = BotCommand::parse(Dialect::Plivo, r#"{"event":"media","media":{"payload":""}}"#)
        .expect_err("Plivo bots play audio with playAudio");
    assert!(
        e.to_string().contains("plivo") && e.to_string().contains("media"),
        "{e}"
    );
    let e = BotCommand::parse(Dialect::Telnyx, r#"{"event":"playAudio","media":{"payload":""}}"#)
        .expect_err("not Telnyx");
    assert!(e.to_string().contains("telnyx"), "{e}");
    let e = BotCommand::parse(
        Dialect::Plivo,
        r#"{"event":"playAudio","media":{"contentType":"audio/ogg","payload":""}}"#,
    )
    .expect_err("unknown content type");
    assert!(e.to_string().contains("audio/ogg"), "{e}");
    assert!(BotCommand::parse(Dialect::Exotel, r#"{"event":"mark"}"#).is_err());
    assert!(BotCommand::parse(Dialect::Plivo, r#"{"event":"checkpoint"}"#).is_err());
    assert!(CallerEvent::parse(r#"{"event":"start","start":{}}"#).is_err());
    let e = BotCommand::parse(Dialect::Vonage, r#"{"event":"clear"}"#).expect_err("Vonage names actions");
    assert!(e.to_string().contains("vonage message without \"action\""), "{e}");
    let e = BotCommand::parse(
        Dialect::Jambonz,
        r#"{"type":"playAudio","data":{"audioContent":"","audioContentType":"wav"}}"#,
    )
    .expect_err("raw only");
    assert!(e.to_string().contains("wav"), "{e}");
    assert!(BotCommand::parse(Dialect::Vonage, r#"{"action":"notify"}"#).is_err());
    let e = CallerEvent::parse(r#"{"event":"websocket:connected","content-type":"audio/x-mulaw"}"#)
        .expect_err("Vonage streams L16");
    assert!(e.to_string().contains("audio/l16"), "{e}");
    let e =
        CallerEvent::parse(r#"{"callSid":"c","sampleRate":8000,"mixType":"stereo"}"#).expect_err("mono only");
    assert!(e.to_string().contains("stereo"), "{e}");
    assert!(CallerEvent::parse(r#"{"hello":"there"}"#).is_err());
    let e = BotCommand::parse(
        Dialect::Genesys,
        r#"{"version":"2","type":"error","parameters":{"code":500,"message":"boom"}}"#,
    )
    .expect_err("a bot's error");
    assert!(e.to_string().contains("boom"), "{e}");
    let e = CallerEvent::parse(r#"{"version":"2","type":"open","id":"s","parameters":{"conversationId":"c","media":[{"type":"audio","format":"L16","rate":8000}]}}"#)
        .expect_err("PCMU only");
    assert!(e.to_string().contains("PCMU"), "{e}");
}

#[test]
fn only_genesys_has_a_keepalive_written_as_audiohook_ping() {
    let ids = Ids {
        stream_id: "sess-1",
        call_id: "c",
        account_id: "a",
        peer_seq: 4,
        position_ms: 61_020,
    };
    let mut out = String::new();
    assert!(Dialect::Genesys
        .write_keepalive(&mut out, ids, 9)
        .is_some_and(|r| r.is_ok()));
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        v,
        serde_json::json!({"version": "2", "type": "ping", "seq": 9, "serverseq": 4, "id": "sess-1",
            "position": "PT61.020S", "parameters": {}})
    );
    assert!(Dialect::Genesys.keepalive_schedule().is_some());
    for d in Dialect::ALL.into_iter().filter(|d| *d != Dialect::Genesys) {
        assert!(d.write_keepalive(&mut out, ids, 1).is_none() && d.keepalive_schedule().is_none());
    }
}

#[test]
fn genesys_messages_are_numbered_and_positioned() {
    let open = &opening(Dialect::Genesys, Encoding::Mulaw, 8000, &BTreeMap::new())[0];
    let v: serde_json::Value = serde_json::from_str(open).expect("json");
    assert_eq!(v["version"], "2");
    assert_eq!((v["seq"].as_u64(), v["serverseq"].as_u64()), (Some(1), Some(3)));
    assert_eq!(v["position"], "PT1.240S");
    assert_eq!(v["parameters"]["media"][0]["format"], "PCMU");
    let pong = r#"{"version":"2","type":"pong","seq":7,"clientseq":2,"id":"s","parameters":{}}"#;
    assert_eq!(audiohook_seq(pong), Some(7));
    assert_eq!(
        BotCommand::parse(Dialect::Genesys, pong).expect("pong"),
        BotCommand::Notice { kind: "pong".into() }
    );
    let barge =
        r#"{"version":"2","type":"event","seq":8,"parameters":{"entities":[{"type":"barge_in","data":{}}]}}"#;
    assert_eq!(
        BotCommand::parse(Dialect::Genesys, barge).expect("event"),
        BotCommand::Clear
    );
    assert!(BotCommand::parse(
        Dialect::Genesys,
        r#"{"version":"2","type":"dtmf","parameters":{"digit":"1"}}"#
    )
    .is_err());
    assert_eq!(
        CallerEvent::parse(r#"{"version":"2","type":"ping","seq":4,"id":"s","parameters":{}}"#)
            .expect("ping"),
        CallerEvent::Ping
    );
}

#[test]
fn each_dialect_checks_its_encodings() {
    assert!(Dialect::Telnyx.check(Encoding::Alaw, 8000).is_ok());
    assert!(Dialect::Telnyx.check(Encoding::L16, 16000).is_ok());
    assert!(Dialect::Telnyx.check(Encoding::L16, 24000).is_err());
    assert!(Dialect::Twilio.check(Encoding::Alaw, 8000).is_err());
    assert!(
        Dialect::Twilio.check(Encoding::L16, 22050).is_ok(),
        "Twilio l16 at any rate, as before"
    );
    assert!(Dialect::Plivo.check(Encoding::Mulaw, 16000).is_err());
    let e = Dialect::Exotel
        .check(Encoding::Mulaw, 8000)
        .expect_err("Exotel is PCM only");
    assert!(e.to_string().contains("exotel carries l16"), "{e}");
    assert!(Dialect::Vonage.check(Encoding::L16, 16000).is_ok());
    assert!(Dialect::Vonage.check(Encoding::L16, 48000).is_err());
    assert!(Dialect::Jambonz.check(Encoding::L16, 48000).is_ok());
    assert!(Dialect::Jambonz.check(Encoding::Mulaw, 8000).is_err());
    assert_eq!(Dialect::Jambonz.subprotocol(), Some("audio.jambonz.org"));
    assert!(Dialect::Genesys.check(Encoding::Mulaw, 8000).is_ok());
    assert!(Dialect::Genesys.check(Encoding::L16, 8000).is_err());
    assert_eq!(Dialect::from_name("plivo"), Some(Dialect::Plivo));
    assert_eq!(
        Encoding::from_content_type("audio/x-l16;rate=16000"),
        Some(Encoding::L16)
    );
}

proptest! {
    #[test]
    fn parsers_never_panic(s in ".{0,300}") {
        for d in Dialect::ALL {
            let _ = BotCommand::parse(d, &s);
        }
        let _ = CallerEvent::parse(&s);
    }

    #[test]
    fn json_shaped_input_never_panics(event in "(media|playAudio|clear|clearAudio|mark|checkpoint|start|stop|dtmf|transfer|notify|killAudio|clearMarks|disconnect|websocket:connected|websocket:dtmf|websocket:notify|open|opened|event|error|ping|close)",
                                      key in "(event|action|type|callSid|version)",
                                      body in prop::collection::vec((any::<u8>(), "[a-zA-Z_]{1,12}", ".{0,20}"), 0..6)) {
        let mut v = serde_json::json!({ key: event });
        for (kind, k, val) in body {
            v[k.clone()] = match kind % 5 {
                0 => serde_json::json!(val),
                1 => serde_json::json!({"payload": val, "name": val, "digit": val, "sampleRate": val, "audioContent": val, "audioContentType": val}),
                3 => serde_json::json!({"content-type": val, "sampleRate": kind, "mixType": val, "type": val, "version": "2", "entities": [{"type": val}], "media": [{"format": val, "rate": kind}], "conversationId": val}),
                2 => serde_json::json!({"streamSid": val, "callSid": val, "call_control_id": val, "streamId": val, "callId": val, "stream_sid": val, "call_sid": val, "account_sid": val}),
                _ => serde_json::json!(kind),
            };
        }
        let s = v.to_string();
        for d in Dialect::ALL {
            let _ = BotCommand::parse(d, &s);
        }
        let _ = CallerEvent::parse(&s);
    }
}
