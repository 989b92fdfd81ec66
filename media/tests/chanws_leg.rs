//! The Asterisk WebSocket channel leg, sans-IO, driven with the real `Call`
//! and a Twilio-dialect bot on a virtual clock: frames go out one per tick
//! in the channel's format, `MEDIA_XOFF` holds them in order until
//! `MEDIA_XON`, a bot's mark goes to Asterisk as `MARK_MEDIA` behind its
//! audio and back to the bot only on `MEDIA_MARK_PROCESSED`, a barge-in
//! sends `FLUSH_MEDIA` and drops what was held, `DTMF_END` reaches the bot,
//! and text that does not parse is counted. Asterisk-paced (bulk) legs send
//! bursts at once inside media buffering, obey XOFF and keep marks behind
//! their audio.

use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use voxbridge_media::config::{BotProtocolKind, Route, TwilioEncoding};
use voxbridge_media::events::CallInfo;
use voxbridge_media::metrics::Metrics;
use voxbridge_media::sansio::botcodec::Outgoing;
use voxbridge_media::sansio::call::{BotMessage, Call};
use voxbridge_media::sansio::chanws::{ChanWsLeg, Pacing, TextOutcome, BULK_DRAIN_FRAMES, HELD_MAX};
use voxbridge_proto::chanws::{ControlFormat, Event, MediaStart};
use voxbridge_proto::twilio::{self, BotCommand, StreamEvent};

struct Bed {
    now: Instant,
    call: Call,
    leg: ChanWsLeg,
    /// What went to Asterisk, in order.
    to_asterisk: Vec<Outgoing>,
    /// What went to the bot, as text.
    to_bot: Vec<String>,
}

fn start(format: &str, frame: usize) -> MediaStart {
    let text = format!(
        "MEDIA_START connection_id:c1 channel:WebSocket/c1/0x1 channel_id:1733412345.1 format:{format} optimal_frame_size:{frame} ptime:20"
    );
    match Event::parse(&text).expect("MEDIA_START") {
        (Event::MediaStart(m), _) => m,
        other => panic!("{other:?}"),
    }
}

impl Bed {
    fn new(format: &str, frame: usize) -> Bed {
        Bed::paced(format, frame, Pacing::Voxbridge)
    }

    fn paced(format: &str, frame: usize, pacing: Pacing) -> Bed {
        let t0 = Instant::now();
        let route = Route {
            url: "ws://bot.invalid".into(),
            protocol: BotProtocolKind::Twilio,
            twilio_encoding: Some(TwilioEncoding::L16),
            sample_rate: 8000,
            bot_cushion_ms: 0,
            ..Route::default()
        };
        let leg = ChanWsLeg::new(&start(format, frame), ControlFormat::PlainText)
            .expect("leg")
            .with_pacing(pacing);
        let info = CallInfo {
            call_id: "ws-test".into(),
            route: "default".into(),
            ingress: "chanws",
            ..CallInfo::default()
        };
        let mut call = Call::new(
            info,
            Arc::new(route),
            Arc::new(Metrics::default()),
            leg.rate(),
            t0,
            SystemTime::UNIX_EPOCH,
        )
        .expect("call");
        call.enable_leg_requests();
        call.bot_connected(Duration::from_millis(1), t0);
        let mut bed = Bed {
            now: t0,
            call,
            leg,
            to_asterisk: Vec::new(),
            to_bot: Vec::new(),
        };
        bed.drain();
        bed
    }

    /// Everything queued toward Asterisk and the bot.
    fn drain(&mut self) {
        self.leg.pump(&mut self.call);
        while let Some(o) = self.leg.next_out() {
            self.to_asterisk.push(o.clone());
            self.leg.sent_out();
        }
        while let Some(o) = self.call.next_to_bot() {
            if let Outgoing::Text(t) = o {
                self.to_bot.push(String::from_utf8_lossy(t).into_owned());
            }
            self.call.sent_to_bot();
        }
        while self.call.poll_event().is_some() {}
    }

    /// `n` ticks of 20 ms.
    fn ticks(&mut self, n: usize) {
        for _ in 0..n {
            self.now = self.call.poll_timeout();
            if let Some(tick) = self.call.handle_timeout(self.now) {
                self.leg.tick(&mut self.call, tick);
            }
            self.drain();
        }
    }

    fn bot_sends(&mut self, cmd: BotCommand<'_>) {
        let json = cmd.to_json();
        self.call.bot_message(BotMessage::Text(&json), self.now);
        self.drain();
    }

    fn asterisk_says(&mut self, text: &str) -> TextOutcome {
        let out = self.leg.text(&mut self.call, text, self.now);
        self.drain();
        out
    }

    fn frames(&self) -> Vec<&Bytes> {
        self.to_asterisk
            .iter()
            .filter_map(|o| match o {
                Outgoing::Binary(b) => Some(b),
                Outgoing::Text(_) => None,
            })
            .collect()
    }

    /// What went to Asterisk since `from`: texts as they are, binary
    /// messages as their length.
    fn wire(&self, from: usize) -> Vec<String> {
        self.to_asterisk[from..]
            .iter()
            .map(|o| match o {
                Outgoing::Text(t) => String::from_utf8_lossy(t).into_owned(),
                Outgoing::Binary(b) => format!("<{}>", b.len()),
            })
            .collect()
    }

    fn bot_marks(&self) -> Vec<String> {
        self.to_bot
            .iter()
            .filter_map(|t| match StreamEvent::parse(t) {
                Ok(StreamEvent::Mark { name, .. }) => Some(name.into_owned()),
                _ => None,
            })
            .collect()
    }
}

/// A bot's Twilio mark named `name`.
fn mark(name: &str) -> BotCommand<'static> {
    BotCommand::Mark {
        stream_sid: "MZ".into(),
        name: name.to_string().into(),
    }
}

/// `ms` of 8 kHz bot audio (a ramp, so frames can be told apart) as a Twilio media command.
fn bot_audio(ms: usize, first: i16) -> BotCommand<'static> {
    let pcm: Vec<i16> = (0..ms * 8).map(|i| first.wrapping_add(i as i16)).collect();
    let raw: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut b64 = String::new();
    twilio::encode_payload(&raw, &mut b64);
    BotCommand::Media {
        stream_sid: "MZ".into(),
        payload: b64.into(),
    }
}

#[test]
fn one_frame_per_tick_in_the_channels_format() {
    let mut bed = Bed::new("slin", 320);
    bed.ticks(10);
    assert_eq!(bed.frames().len(), 10);
    assert!(bed.frames().iter().all(|f| f.len() == 320), "20 ms of 8 kHz slin");
    let mut ulaw = Bed::new("ulaw", 160);
    ulaw.leg.binary(&mut ulaw.call, &[0xFF; 160], ulaw.now);
    ulaw.ticks(3);
    assert!(ulaw.frames().iter().all(|f| f.len() == 160), "20 ms of u-law");
}

#[test]
fn xoff_holds_frames_in_order_until_xon() {
    let mut bed = Bed::new("slin", 320);
    bed.bot_sends(bot_audio(400, 0));
    bed.ticks(2);
    let before = bed.frames().len();
    assert_eq!(bed.asterisk_says("MEDIA_XOFF"), TextOutcome::Ok);
    bed.ticks(10);
    assert_eq!(bed.frames().len(), before, "nothing sent during XOFF");
    assert_eq!(bed.leg.held_frames(), 10);
    bed.asterisk_says("MEDIA_XON");
    let frames = bed.frames();
    assert_eq!(frames.len(), before + 10, "the held frames went out at XON");
    // In order, nothing lost: the bot's ramp continues across the XOFF.
    let samples: Vec<i16> = frames
        .iter()
        .flat_map(|f| f.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])))
        .collect();
    let first = samples.iter().position(|&s| s != 0).expect("bot audio played");
    let played = &samples[first..];
    assert!(
        played.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "continuous ramp"
    );
    assert_eq!(bed.leg.counters().xoffs, 1);
}

#[test]
fn xoff_past_the_cap_drops_and_counts() {
    let mut bed = Bed::new("slin", 320);
    bed.asterisk_says("MEDIA_XOFF");
    bed.ticks(HELD_MAX + 5);
    assert_eq!(bed.leg.held_frames(), HELD_MAX);
    assert_eq!(bed.leg.counters().held_dropped, 5);
}

#[test]
fn a_mark_returns_to_the_bot_only_once_asterisk_played_it() {
    let mut bed = Bed::new("slin", 320);
    bed.bot_sends(bot_audio(100, 1000));
    bed.bot_sends(mark("greeting"));
    bed.ticks(10);
    // The mark follows the audio's last frame toward Asterisk...
    let mark_at = bed
        .to_asterisk
        .iter()
        .position(|o| matches!(o, Outgoing::Text(t) if &t[..] == b"MARK_MEDIA m1"))
        .expect("MARK_MEDIA sent");
    let audio_frames_before = bed.to_asterisk[..mark_at]
        .iter()
        .filter(|o| matches!(o, Outgoing::Binary(b) if b.chunks_exact(2).any(|s| s != [0, 0])))
        .count();
    assert_eq!(
        audio_frames_before, 5,
        "all 100 ms of the bot's audio went before the mark"
    );
    // ...and is not echoed before Asterisk says it was played.
    assert!(bed.bot_marks().is_empty(), "{:?}", bed.to_bot);
    bed.asterisk_says("MEDIA_MARK_PROCESSED m1");
    assert_eq!(bed.bot_marks(), vec!["greeting".to_string()]);
    // A stray or repeated report changes nothing and is counted.
    bed.asterisk_says("MEDIA_MARK_PROCESSED m1");
    assert_eq!(bed.bot_marks().len(), 1);
    assert_eq!(bed.leg.counters().stray_marks, 1);
}

#[test]
fn a_channel_that_refuses_marks_gets_them_echoed_as_their_audio_goes() {
    let mut bed = Bed::new("slin", 320);
    bed.bot_sends(bot_audio(40, 1));
    bed.bot_sends(mark("first"));
    bed.ticks(5);
    assert!(bed.bot_marks().is_empty());
    // Asterisk in passthrough mode refuses the command (chan_websocket.c's text).
    bed.asterisk_says(
        "ERROR channel_id:1733412345.1 error_text:MARK_MEDIA not supported in passthrough mode",
    );
    assert_eq!(bed.bot_marks(), vec!["first".to_string()]);
    bed.bot_sends(bot_audio(40, 1));
    bed.bot_sends(mark("second"));
    bed.ticks(5);
    assert_eq!(bed.bot_marks(), vec!["first".to_string(), "second".to_string()]);
}

#[test]
fn barge_in_flushes_asterisk_and_drops_what_was_held() {
    let mut bed = Bed::new("slin", 320);
    bed.bot_sends(bot_audio(1000, 1));
    bed.bot_sends(mark("long"));
    bed.asterisk_says("MEDIA_XOFF");
    bed.ticks(5);
    assert_eq!(bed.leg.held_frames(), 5);
    let sent = bed.to_asterisk.len();
    bed.bot_sends(BotCommand::Clear {
        stream_sid: "MZ".into(),
    });
    assert_eq!(bed.leg.held_frames(), 0, "held frames dropped");
    // The flush goes first, even during XOFF; the mark of the dropped audio
    // follows it and comes back once Asterisk reports it (its queue is empty now).
    let after_clear: Vec<String> = bed.to_asterisk[sent..]
        .iter()
        .map(|o| match o {
            Outgoing::Text(t) => String::from_utf8_lossy(t).into_owned(),
            Outgoing::Binary(_) => "<frame>".into(),
        })
        .collect();
    assert_eq!(after_clear, ["FLUSH_MEDIA", "MARK_MEDIA m1"]);
    assert!(bed.bot_marks().is_empty());
    bed.asterisk_says("MEDIA_XON");
    bed.ticks(2);
    bed.asterisk_says("MEDIA_MARK_PROCESSED m1");
    assert_eq!(bed.bot_marks(), vec!["long".to_string()]);
    // After the flush, only silence plays.
    let after: Vec<&Bytes> = bed.frames().into_iter().rev().take(2).collect();
    assert!(
        after.iter().all(|f| f.iter().all(|&b| b == 0)),
        "silence after the barge-in"
    );
}

#[test]
fn dtmf_reaches_the_bot_and_bad_text_is_counted() {
    let mut bed = Bed::new("slin16", 640);
    assert_eq!(
        bed.asterisk_says("DTMF_END digit:7 channel_id:1733412345.1"),
        TextOutcome::Ok
    );
    let dtmf: Vec<String> = bed
        .to_bot
        .iter()
        .filter_map(|t| match StreamEvent::parse(t) {
            Ok(StreamEvent::Dtmf { digit, .. }) => Some(digit.into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(dtmf, vec!["7".to_string()]);
    assert!(matches!(
        bed.asterisk_says("this is not an event"),
        TextOutcome::Bad(_)
    ));
    assert!(matches!(
        bed.asterisk_says("ERROR channel_id:1 error_text:MARK_MEDIA not supported in passthrough mode"),
        TextOutcome::AsteriskError(t) if t.contains("passthrough")
    ));
    assert!(matches!(
        bed.asterisk_says("SOMETHING_NEWER"),
        TextOutcome::Unknown(_)
    ));
    let c = bed.leg.counters();
    assert_eq!((c.bad_text, c.asterisk_errors, c.unknown_events), (1, 1, 1));
}

#[test]
fn formats_voxbridge_cannot_reframe_are_refused() {
    for (format, frame) in [("opus", 0), ("g729", 20), ("slin16", 600)] {
        assert!(
            ChanWsLeg::new(&start(format, frame), ControlFormat::PlainText).is_err(),
            "{format}/{frame}"
        );
    }
}

fn samples(frames: &[&Bytes]) -> Vec<i16> {
    frames
        .iter()
        .flat_map(|f| f.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])))
        .collect()
}

#[test]
fn asterisk_paced_bursts_go_at_once_inside_media_buffering() {
    let mut bed = Bed::paced("slin", 320, Pacing::Asterisk);
    bed.ticks(3);
    assert!(
        bed.to_asterisk.is_empty(),
        "no silence is sent when Asterisk paces"
    );
    // 1 s of bot audio goes at once, 25 frames per message, no tick needed.
    bed.bot_sends(bot_audio(1000, 1));
    assert_eq!(bed.wire(0), ["START_MEDIA_BUFFERING", "<8000>", "<8000>"]);
    // The next tick finds nothing more: the burst is over.
    bed.ticks(1);
    assert_eq!(bed.wire(3), ["STOP_MEDIA_BUFFERING"]);
    let played = samples(&bed.frames());
    assert_eq!(played.len(), 8000);
    assert!(
        played.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "in order, whole"
    );
    bed.ticks(5);
    assert_eq!(bed.to_asterisk.len(), 4, "quiet after the burst");
}

#[test]
fn asterisk_paced_legs_hold_audio_in_the_call_during_xoff() {
    // A bot that sends 10 s at once, while Asterisk's queue is full.
    let mut bed = Bed::paced("slin", 320, Pacing::Asterisk);
    bed.asterisk_says("MEDIA_XOFF");
    bed.bot_sends(bot_audio(10_000, 1));
    bed.ticks(10);
    assert!(bed.frames().is_empty(), "nothing sent during XOFF");
    assert_eq!(
        bed.leg.held_frames(),
        0,
        "the audio waits in the call, not the leg"
    );
    bed.asterisk_says("MEDIA_XON");
    // At most BULK_DRAIN_FRAMES wait for the socket per wake-up.
    assert_eq!(samples(&bed.frames()).len(), BULK_DRAIN_FRAMES * 160);
    // A second XOFF mid-burst holds the rest again.
    bed.asterisk_says("MEDIA_XOFF");
    bed.ticks(5);
    assert_eq!(samples(&bed.frames()).len(), BULK_DRAIN_FRAMES * 160);
    bed.asterisk_says("MEDIA_XON");
    // 50 frames per tick while the socket takes them.
    bed.ticks(10);
    let played = samples(&bed.frames());
    assert_eq!(played.len(), 10_000 * 8, "all 10 s went, none dropped");
    assert!(played.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
}

#[test]
fn asterisk_paced_marks_follow_their_audio_and_barge_in_flushes() {
    let mut bed = Bed::paced("slin", 320, Pacing::Asterisk);
    bed.bot_sends(bot_audio(100, 1));
    bed.bot_sends(mark("first"));
    bed.bot_sends(bot_audio(100, 1));
    assert_eq!(
        bed.wire(0),
        ["START_MEDIA_BUFFERING", "<1600>", "MARK_MEDIA m1", "<1600>"]
    );
    assert!(bed.bot_marks().is_empty(), "not played yet");
    bed.asterisk_says("MEDIA_MARK_PROCESSED m1");
    assert_eq!(bed.bot_marks(), vec!["first".to_string()]);
    // Barge-in: Asterisk's queue is flushed (ending its buffering); the
    // next utterance starts a new buffering.
    bed.bot_sends(bot_audio(3000, 1));
    let before = bed.to_asterisk.len();
    bed.bot_sends(BotCommand::Clear {
        stream_sid: "MZ".into(),
    });
    assert_eq!(bed.wire(before), ["FLUSH_MEDIA"]);
    bed.ticks(3);
    assert_eq!(
        bed.to_asterisk.len(),
        before + 1,
        "the rest of the burst was dropped"
    );
    bed.bot_sends(bot_audio(40, 1));
    assert_eq!(bed.wire(before + 1), ["START_MEDIA_BUFFERING", "<640>"]);
}

/// One message of a capture from a real Asterisk (tests/fixtures/asterisk/).
enum Captured {
    FromAsterisk(CapturedMessage),
    ToAsterisk(CapturedMessage),
}

enum CapturedMessage {
    Text(String),
    Binary(usize),
}

fn capture(jsonl: &str) -> Vec<Captured> {
    jsonl
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            let msg = match v["kind"].as_str()? {
                "text" => CapturedMessage::Text(v["text"].as_str()?.to_string()),
                "binary" => CapturedMessage::Binary(v["len"].as_u64()? as usize),
                _ => return None,
            };
            match v["dir"].as_str()? {
                "in" => Some(Captured::FromAsterisk(msg)),
                "out" => Some(Captured::ToAsterisk(msg)),
                _ => None,
            }
        })
        .collect()
}

/// Replays what a real Asterisk sent into the leg: every text message is
/// understood (none unknown, none refused), the frames are its optimal
/// frame size but the last of the prompt (a short one), DTMF reaches the
/// bot, XOFF/XON are obeyed, and the probe's own mark (not ours) is a
/// stray. And every command the probe sent parses as Asterisk read it.
fn replay(jsonl: &str, control: ControlFormat) {
    let messages = capture(jsonl);
    let mut bed = Bed::new("slin16", 640);
    let mut texts = 0;
    let mut frames = Vec::new();
    for m in &messages {
        match m {
            Captured::FromAsterisk(CapturedMessage::Text(t)) => {
                texts += 1;
                let (event, format) = Event::parse(t).expect("Asterisk's text parses");
                assert_eq!(format, control, "{t}");
                if let Event::MediaStart(start) = event {
                    assert_eq!(
                        (start.format.as_str(), start.optimal_frame_size, start.ptime),
                        ("slin16", 640, 20)
                    );
                    continue;
                }
                assert!(!matches!(event, Event::Unknown { .. }), "{t}");
                let outcome = bed.asterisk_says(t);
                assert_eq!(outcome, TextOutcome::Ok, "{t}");
            }
            Captured::FromAsterisk(CapturedMessage::Binary(len)) => {
                frames.push(*len);
                let audio = vec![1u8; *len];
                bed.leg.binary(&mut bed.call, &audio, bed.now);
                bed.drain();
            }
            Captured::ToAsterisk(CapturedMessage::Text(t)) => {
                // The probe's deliberately unknown command (Asterisk only
                // logs a warning for it) must be refused; the rest parse.
                let parsed = voxbridge_proto::chanws::Command::parse(t, control);
                assert_eq!(parsed.is_err(), t.contains("NOT_A_COMMAND"), "{t}");
            }
            Captured::ToAsterisk(CapturedMessage::Binary(_)) => {}
        }
    }
    assert!(texts >= 10, "the capture has Asterisk's events");
    let (last, whole) = frames.split_last().expect("caller audio");
    assert!(whole.iter().all(|&l| l == 640), "20 ms of slin16 per message");
    assert!(*last < 640, "the prompt ends with a short frame ({last} bytes)");
    let dtmf: String = bed
        .to_bot
        .iter()
        .filter_map(|t| match StreamEvent::parse(t) {
            Ok(StreamEvent::Dtmf { digit, .. }) => Some(digit.into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(dtmf, "12#");
    let c = bed.leg.counters();
    assert_eq!((c.xoffs, c.bad_text, c.unknown_events, c.odd_bytes), (1, 0, 0, 0));
    assert!(!bed.leg.xoff(), "XON came after the XOFF");
    assert_eq!(c.stray_marks, 1, "the probe's mark is not one of ours");
}

#[test]
fn a_real_asterisk_dialling_us_plain_text() {
    replay(
        include_str!("../../tests/fixtures/asterisk/dial_us_plain.jsonl"),
        ControlFormat::PlainText,
    );
}

#[test]
fn a_real_asterisk_dialling_us_json() {
    replay(
        include_str!("../../tests/fixtures/asterisk/dial_us_json.jsonl"),
        ControlFormat::Json,
    );
}

#[test]
fn a_real_asterisk_we_dialled_in_server_mode() {
    replay(
        include_str!("../../tests/fixtures/asterisk/server_mode.jsonl"),
        ControlFormat::PlainText,
    );
}
