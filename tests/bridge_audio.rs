//! Audio both ways through the daemon: bit-exact through an 8 kHz echo bot
//! (no resampling anywhere; pipecat frames and every provider dialect), >= 40 dB SNR through bots at 16, 22.05 and
//! 11.025 kHz (resampled up and back down), silence for a silent caller, a
//! clean end when the caller hangs up, and both directions of a call
//! transcribed by a real (offline) speech recognizer.

mod common;
mod harness;

use harness::*;
use std::time::Duration;
use tokio::net::TcpListener;
use voxbridge::bot::{self, Mode};
use voxbridge_media::{CallCommands, CallEvent, HangupCause};
use voxbridge_proto::pipecat::Kind;

/// Starts the built-in echo bot; returns its URL.
async fn echo_bot() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}", l.local_addr().expect("addr"));
    tokio::spawn(bot::serve(l, Mode::Echo, Duration::ZERO, None));
    url
}

/// Collects `n` frames of caller audio.
async fn hear(caller: &mut Caller, frames: usize) -> Vec<i16> {
    let mut out = Vec::with_capacity(frames * 160);
    for _ in 0..frames {
        out.extend(caller.next_audio().await);
    }
    out
}

fn find(haystack: &[i16], needle: &[i16]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn an_8k_echo_round_trip_is_bit_exact() {
    let url = echo_bot().await;
    let mut d = Daemon::start(pipecat_route(&url, 8000)).await;
    let mut caller = Caller::connect(d.addr, uuid(1)).await;
    let speech = speech_8k(100);
    caller.send_audio(&speech).await;
    // Silence until the echo arrives, then the 2 s of speech, then silence.
    let heard = hear(&mut caller, 160).await;
    let at = find(&heard, &speech).expect("the echo is bit-exact somewhere in what the caller heard");
    assert!(
        heard[..at].iter().all(|&s| s == 0),
        "only silence before the echo"
    );
    caller.send_raw(&[0x00, 0x00, 0x00]).await;
    let e = d.event("hangup", |e| matches!(e, CallEvent::Hungup { .. })).await;
    let CallEvent::Hungup { cause, .. } = e else {
        unreachable!()
    };
    assert_eq!(cause, HangupCause::CallerHangup);
    assert_eq!(d.metrics.totals().frames_to_bot, 100);
}

/// voxbridge's echo bot answers in whichever dialect the daemon speaks (it
/// tells it from the start message, as pipecat's runner does): a call
/// through each is bit-exact both ways at 8 kHz in the provider's default
/// encoding (u-law for Twilio, Telnyx and Plivo; linear for Exotel).
#[tokio::test]
async fn an_8k_echo_round_trip_is_bit_exact_in_every_provider_dialect() {
    use voxbridge_media::config::{BotProtocolKind, Route, TwilioEncoding};
    let url = echo_bot().await;
    for (n, kind) in [
        BotProtocolKind::Twilio,
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
        let route = Route {
            protocol: kind,
            twilio_encoding: (kind == BotProtocolKind::Twilio).then_some(TwilioEncoding::Mulaw),
            sample_rate: 8000,
            ..pipecat_route(&url, 8000)
        };
        let d = Daemon::start(route).await;
        let mut caller = Caller::connect(d.addr, uuid(30 + n as u8)).await;
        let speech = speech_8k(50);
        caller.send_audio(&speech).await;
        let heard = hear(&mut caller, 110).await;
        assert!(
            find(&heard, &speech).is_some(),
            "{kind:?}: the echo is bit-exact somewhere in what the caller heard"
        );
        assert_eq!(d.metrics.totals().bot_protocol_errors, 0, "{kind:?}");
    }
}

fn check_args(url: &str, protocol: &str) -> voxbridge::botcheck::Args {
    voxbridge::botcheck::Args {
        url: url.into(),
        protocol: protocol.into(),
        encoding: None,
        sample_rate: 16000,
        answer_timeout_ms: 2000,
    }
}

/// `voxbridge bot check` passes voxbridge's own echo bot in every dialect:
/// every message usable, audio back after the caller spoke.
#[tokio::test]
async fn bot_check_passes_the_echo_bot_in_every_dialect() {
    let url = echo_bot().await;
    for protocol in [
        "pipecat", "twilio", "telnyx", "plivo", "exotel", "vonage", "jambonz", "genesys",
    ] {
        let report = voxbridge::botcheck::check(&check_args(&url, protocol))
            .await
            .expect("check runs");
        assert!(report.passed(), "{protocol}: {report:?}");
        assert!(
            report.messages >= 100,
            "{protocol}: the echo of the call's audio: {report:?}"
        );
        assert!(report.first_audio_ms.is_some(), "{protocol}: {report:?}");
        assert!(report
            .result_line(protocol)
            .starts_with(&format!("RESULT protocol={protocol} messages=")));
    }
}

/// A bot that breaks its dialect fails the check, the message named: a
/// Telnyx bot playing audio with Plivo's `playAudio`, and a binary frame.
#[tokio::test]
async fn bot_check_names_the_message_that_breaks_the_dialect() {
    let mut bot = TestBot::start().await;
    let args = check_args(&bot.url, "telnyx");
    let check = tokio::spawn(async move { voxbridge::botcheck::check(&args).await });
    let mut link = bot.accept().await;
    link.recv().await.expect("connected");
    link.recv().await.expect("start");
    let wrong =
        r#"{"event":"playAudio","media":{"contentType":"audio/x-mulaw","sampleRate":8000,"payload":"//8="}}"#;
    link.send(tokio_tungstenite::tungstenite::Message::Text(wrong.into()))
        .await;
    link.send(tokio_tungstenite::tungstenite::Message::Binary(
        vec![1u8, 2, 3].into(),
    ))
    .await;
    // Then proper audio, so only the two bad messages count.
    let good = r#"{"event":"media","media":{"payload":"//8="}}"#;
    link.send(tokio_tungstenite::tungstenite::Message::Text(good.into()))
        .await;
    let report = within("the check to end", check)
        .await
        .expect("task")
        .expect("check runs");
    assert!(!report.passed());
    assert_eq!(report.violations.len(), 2, "{report:?}");
    assert!(
        report.violations[0].starts_with("message 1:") && report.violations[0].contains("playAudio"),
        "{report:?}"
    );
    assert!(
        report.violations[1].starts_with("message 2:") && report.violations[1].contains("binary"),
        "{report:?}"
    );
    assert!(report.bot_audio_ms > 0.0);
}

#[tokio::test]
async fn a_16k_bot_round_trip_keeps_40_db_snr() {
    round_trip_through_a_bot_at(16000, 2).await;
}

/// Rule: bots at the rates TTS engines speak at work both ways: 22,050 Hz
/// (441 samples per 20 ms) and 11,025 Hz (220.5: frames of 220 and 221
/// samples in turn).
#[tokio::test]
async fn bots_at_22050_and_11025_round_trip_at_40_db_snr() {
    round_trip_through_a_bot_at(22050, 3).await;
    round_trip_through_a_bot_at(11025, 4).await;
}

/// 2 s of telephone-band speech from an 8 kHz caller to a bot at `rate`,
/// which sends each frame straight back; what the caller hears must match
/// what it said at >= 40 dB SNR.
async fn round_trip_through_a_bot_at(rate: u32, call: u8) {
    let mut bot = TestBot::start().await;
    let d = Daemon::start(pipecat_route(&bot.url, rate)).await;
    let mut caller = Caller::connect(d.addr, uuid(call)).await;
    let speech = telephone_band(&speech_8k(100));
    caller.send_audio(&speech).await;
    let mut link = bot.accept().await;
    // Metadata first, then 100 frames of audio at the bot's rate, echoed back as they come.
    let start = pipecat_next(&mut link).await.expect("start");
    assert_eq!(
        message_json(&start).expect("start is a MessageFrame")["sample_rate"],
        rate
    );
    for k in 0..100u64 {
        match pipecat_next(&mut link).await.expect("audio") {
            Kind::Audio(a) => {
                assert_eq!(a.sample_rate, rate);
                assert_eq!(
                    a.audio.len(),
                    voxbridge_codecs::frame_len_at(rate, k) * 2,
                    "frame {k}: 20 ms at {rate} Hz"
                );
                link.send(tokio_tungstenite::tungstenite::Message::Binary(pipecat_bytes(
                    &a.audio, rate,
                )))
                .await;
            }
            other => panic!("expected audio, got {other:?}"),
        }
    }
    let heard = hear(&mut caller, 200).await;
    // What the two resamplers make of the speech on their own. Where the
    // ratio is not an integer (8k <-> 22.05k) their delays add up to a
    // fraction of an 8 kHz sample, which no whole-sample alignment with the
    // original could undo; the daemon's path must add nothing beyond them.
    let expect = if 16000 % rate == 0 || rate % 8000 == 0 {
        speech.clone()
    } else {
        resampled_round_trip(&speech, rate)
    };
    // Align on the constant group delay of the two resamplers, then compare.
    let best = (0..400usize)
        .max_by_key(|&off| {
            let c: i64 = expect
                .iter()
                .zip(heard.iter().skip(off))
                .map(|(&a, &b)| a as i64 * b as i64)
                .sum();
            c
        })
        .expect("offsets");
    let aligned = &heard[best..best + expect.len()];
    let signal: f64 = expect.iter().map(|&s| (s as f64).powi(2)).sum();
    let noise: f64 = expect
        .iter()
        .zip(aligned)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    let snr = 10.0 * (signal / noise.max(1.0)).log10();

    println!("8k -> {rate} Hz bot -> 8k: SNR {snr:.1} dB at offset {best} samples");
    assert!(snr >= 40.0, "SNR {snr:.1} dB");
}

/// `pcm` at 8 kHz through the resamplers a call uses, 8 kHz -> `rate` ->
/// 8 kHz, framed as the daemon frames it, with the delay left in.
fn resampled_round_trip(pcm: &[i16], rate: u32) -> Vec<i16> {
    use voxbridge_codecs::Resampler;
    let mut up = Resampler::new(8000, rate).expect("pair");
    let mut down = Resampler::new(rate, 8000).expect("pair");
    let mut mid = vec![0i16; up.max_output_len()];
    let mut out = vec![0i16; 160];
    let mut heard = Vec::with_capacity(pcm.len());
    for frame in pcm.chunks_exact(160) {
        let n = up.output_len();
        up.process(frame, &mut mid[..n]).expect("frame");
        down.process(&mid[..n], &mut out).expect("frame");
        heard.extend_from_slice(&out);
    }
    heard
}

/// Speech as the telephone network delivers it: sox's steep low-pass at
/// 3.3 kHz (the PSTN passes 300-3,400 Hz). Content near 4 kHz is not speech a
/// call carries, and the bridge's resamplers remove it by design (passband to
/// 0.85 x 4 kHz), so it is kept out of the SNR.
fn telephone_band(pcm: &[i16]) -> Vec<i16> {
    let dir = common::tempdir("band");
    let (src, dst) = (dir.join("in.raw"), dir.join("out.raw"));
    common::write_pcm(&src, pcm);
    let fmt = ["-t", "raw", "-r", "8000", "-e", "signed", "-b", "16", "-c", "1"];
    let mut args: Vec<&str> = fmt.to_vec();
    let (s, o) = (src.to_str().expect("utf-8"), dst.to_str().expect("utf-8"));
    args.push(s);
    args.extend(fmt);
    args.extend([o, "sinc", "-3300"]);
    common::run("sox", &args);
    common::read_pcm(&dst)
}

fn pipecat_bytes(pcm_le: &[u8], rate: u32) -> bytes::Bytes {
    let mut b = bytes::BytesMut::new();
    voxbridge_proto::pipecat::encode_audio(bytes::Bytes::copy_from_slice(pcm_le), rate, &mut b);
    b.freeze()
}

#[tokio::test]
async fn a_silent_caller_still_gets_a_frame_every_tick_and_the_bot_hears_the_hangup() {
    let mut bot = TestBot::start().await;
    let mut d = Daemon::start(pipecat_route(&bot.url, 16000)).await;
    let mut caller = Caller::connect(d.addr, uuid(3)).await;
    let mut link = bot.accept().await;
    let start = message_json(&pipecat_next(&mut link).await.expect("start")).expect("json");
    assert_eq!(start["type"], "voxbridge.start");
    assert_eq!(start["call_id"], "5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a03");
    // The caller sends nothing; it must still hear 20 ms slin frames (Asterisk
    // drops a call after 2 s without any).
    for _ in 0..10 {
        let f = caller.next_audio().await;
        assert_eq!(f.len(), 160);
        assert!(f.iter().all(|&s| s == 0));
    }
    caller.send_raw(&[0x00, 0x00, 0x00]).await;
    let stop = message_json(&pipecat_next(&mut link).await.expect("stop")).expect("json");
    assert_eq!(stop["type"], "voxbridge.stop");
    assert_eq!(stop["cause"], "caller_hangup");
    assert!(link.recv().await.is_none(), "then the link closes");
    d.event("hangup", |e| {
        matches!(
            e,
            CallEvent::Hungup {
                cause: HangupCause::CallerHangup,
                ..
            }
        )
    })
    .await;
    assert_eq!(
        d.metrics.active_calls.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

/// Rule: the caller's last partial frame reaches the bot. Asterisk ends a
/// file with a short AudioSocket frame (178 or 222 bytes); it goes to the
/// bot padded with silence to 20 ms when the call ends, so the bot hears
/// the last 11-14 ms of speech.
#[tokio::test]
async fn the_last_partial_frame_reaches_the_bot_padded_to_20_ms() {
    let mut bot = TestBot::start().await;
    let d = Daemon::start(pipecat_route(&bot.url, 8000)).await;
    let mut caller = Caller::connect(d.addr, uuid(5)).await;
    let mut link = bot.accept().await;
    pipecat_next(&mut link).await.expect("start");
    let speech = speech_8k(3);
    let tail: Vec<i16> = (1..=89).map(|i| i * 100).collect();
    caller.send_audio(&speech).await;
    caller.send_audio(&tail).await; // one frame of 178 bytes
    caller.send_raw(&[0x00, 0x00, 0x00]).await;
    let mut heard = Vec::new();
    while let Some(k) = pipecat_next(&mut link).await {
        if let Kind::Audio(a) = k {
            heard.extend(a.audio.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])));
        }
    }
    assert_eq!(heard.len(), 4 * 160, "three frames and the padded fourth");
    assert_eq!(&heard[..480], &speech[..]);
    assert_eq!(&heard[480..569], &tail[..], "the partial frame's samples");
    assert!(heard[569..].iter().all(|&s| s == 0), "then silence");
}

/// The recognizer's process, killed when the test ends (passed or not).
struct Recognizer(std::process::Child);

impl Drop for Recognizer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts tests/interop/stt_server.py (PocketSphinx behind Deepgram's
/// live protocol) knowing `sentences`; returns the process and its URL.
fn start_recognizer(key: &str, sentences: &[&str]) -> (Recognizer, String) {
    use std::io::BufRead;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/stt_server.py");
    let mut cmd = std::process::Command::new(common::stt_python());
    cmd.arg(script).args(["--key", key]);
    for s in sentences {
        cmd.args(["--sentence", s]);
    }
    let mut child = Recognizer(
        cmd.stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the speech recognizer"),
    );
    let out = child.0.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(out);
    let mut line = String::new();
    lines.read_line(&mut line).expect("the recognizer's port line");
    // Its later lines (a summary per stream) are read so that its prints
    // never fail on a closed pipe.
    std::thread::spawn(move || {
        for l in lines.lines().map_while(Result::ok) {
            eprintln!("recognizer: {l}");
        }
    });
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .unwrap_or_else(|| panic!("expected `PORT n`, got {line:?}"))
        .to_owned();
    (child, format!("ws://127.0.0.1:{port}/v1/listen"))
}

/// espeak-ng's `text` as PCM16 at `rate` (resampled by sox: PocketSphinx's
/// grammar search found nothing in ffmpeg's resampling of the same speech).
fn spoken(dir: &std::path::Path, name: &str, text: &str, rate: u32) -> Vec<i16> {
    let raw = dir.join(format!("{name}_{rate}.raw"));
    common::run(
        "espeak-ng",
        &[
            "-v",
            "en-us",
            "-s",
            "150",
            "-w",
            &common::path(dir, &format!("{name}.wav")),
            text,
        ],
    );
    common::run(
        "sox",
        &[
            "-q",
            &common::path(dir, &format!("{name}.wav")),
            "-r",
            &rate.to_string(),
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed",
            "-t",
            "raw",
            &common::path(dir, &format!("{name}_{rate}.raw")),
        ],
    );
    common::read_pcm(&raw)
}

fn transcribed_route(
    bot: &str,
    recognizer: &str,
    key: &str,
    max_reconnects: u32,
) -> voxbridge_media::config::Route {
    use voxbridge_media::config::{Transcribe, TranscribeDirection};
    voxbridge_media::config::Route {
        transcribe: Some(Transcribe {
            url: recognizer.into(),
            protocol: Default::default(),
            key: Some(key.into()),
            language: "en-US".into(),
            directions: vec![TranscribeDirection::In, TranscribeDirection::Out],
            buffer_ms: 10_000,
            max_reconnects,
            auto: true,
        }),
        ..pipecat_route(bot, 16000)
    }
}

const CALLER_SAYS: &str = "I would like to check the status of my order";
const BOT_SAYS: &str = "Please hold while I transfer you";

/// AudioSocket frames of 16 kHz signed linear (type 0x12, as Asterisk's
/// `slin16`), 20 ms each.
fn slin16_frames(pcm: &[i16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pcm.len() * 2 + pcm.len() / 320 * 3 + 3);
    for chunk in pcm.chunks(320) {
        out.push(0x12);
        out.extend_from_slice(&((chunk.len() * 2) as u16).to_be_bytes());
        out.extend(chunk.iter().flat_map(|s| s.to_le_bytes()));
    }
    out
}

// The caller speaks 16 kHz (Asterisk's slin16): PocketSphinx's model is
// wideband and recognises nothing of 8 kHz telephone speech, so both
// directions run at 16 kHz here (a provider's recognizer takes 8 kHz too).
#[tokio::test]
async fn both_directions_are_transcribed_in_order_with_their_place_in_the_call() {
    let dir = common::tempdir("transcribe");
    let caller_speech = spoken(&dir, "caller", CALLER_SAYS, 16000);
    let bot_speech = spoken(&dir, "bot", BOT_SAYS, 16000);
    let (_recognizer, url) = start_recognizer(
        "k-123",
        &[CALLER_SAYS, BOT_SAYS, "Thank you for calling, goodbye"],
    );
    let mut bot = TestBot::start().await;
    let mut d = Daemon::start(transcribed_route(&bot.url, &url, "k-123", 0)).await;
    let mut caller = Caller::connect(d.addr, uuid(60)).await;
    let mut link = bot.accept().await;
    pipecat_next(&mut link).await.expect("start");
    // The call is announced before its transcribe (control stores a
    // transcribe under its call).
    d.event("the call's creation", |e| matches!(e, CallEvent::Created { .. }))
        .await;
    // The caller speaks in real time (a frame every 20 ms, as a phone
    // does), then pauses a second (the recognizer's endpointer needs the
    // quiet); the bot hears all of it before it answers.
    let mut said = caller_speech.clone();
    said.extend(std::iter::repeat_n(0i16, 16000));
    let mut clock = tokio::time::interval(Duration::from_millis(20));
    for frame in slin16_frames(&said).chunks(3 + 640) {
        clock.tick().await;
        caller.send_raw(frame).await;
    }
    let mut heard_by_bot = 0;
    while heard_by_bot < said.len() / 320 * 320 {
        if let Some(Kind::Audio(a)) = pipecat_next(&mut link).await {
            heard_by_bot += a.audio.len() / 2;
        }
    }
    // The bot answers; the caller hears it paced, then a second of quiet.
    for chunk in bot_speech.chunks(640) {
        link.send(pipecat_audio(chunk, 16000)).await;
    }
    // The caller's frames until the bot's answer was heard and a second of
    // quiet followed it (the silence before it is still queued).
    let (mut heard_answer, mut quiet_after) = (0, 0);
    while heard_answer < bot_speech.len() / 640 || quiet_after < 50 {
        if let Some(voxbridge_proto::audiosocket::Frame::Audio { rate, pcm }) = caller.next().await {
            assert_eq!(rate, 16000, "the caller spoke 16 kHz, so it hears 16 kHz");
            if pcm.iter().any(|&b| b != 0) {
                heard_answer += 1;
                quiet_after = 0;
            } else if heard_answer > 0 {
                quiet_after += 1;
            }
        }
    }
    caller.send_raw(&[0x00, 0x00, 0x00]).await;
    // Segments come as the recognizer finds them: during the call, and the
    // last ones after it ended (its audio is flushed with CloseStream).
    // The transcribe's start comes before its segments, its completion
    // after the last one (once the recognizer's stream closed).
    let (mut segments, mut call_ms, mut started, mut completed) = (Vec::new(), None, None, None);
    while completed.is_none() || call_ms.is_none() {
        match d
            .event("transcripts, the transcribe's ends and the hangup", |e| {
                matches!(
                    e,
                    CallEvent::Transcript { .. }
                        | CallEvent::Hungup { .. }
                        | CallEvent::TranscribeStarted { .. }
                        | CallEvent::TranscribeCompleted { .. }
                )
            })
            .await
        {
            CallEvent::TranscribeStarted {
                transcribe_id,
                language,
                directions,
                ..
            } => {
                assert!(started.is_none() && segments.is_empty(), "started once, first");
                assert_eq!(language, "en-US");
                assert_eq!(directions, voxbridge_media::commands::TranscribeDirections::Both);
                started = Some(transcribe_id);
            }
            CallEvent::Transcript {
                speaker,
                text,
                offset_ms,
                transcribe_id,
                ..
            } => {
                assert!(completed.is_none(), "no segment after the completion");
                assert_eq!(transcribe_id, started, "a segment names its transcribe");
                segments.push((
                    speaker,
                    text,
                    offset_ms.expect("a recognizer's segment has its time"),
                ))
            }
            CallEvent::TranscribeCompleted { transcribe_id, .. } => {
                assert_eq!(Some(&transcribe_id), started.as_ref());
                assert!(completed.is_none(), "completed once");
                completed = Some(transcribe_id);
            }
            CallEvent::Hungup { duration, .. } => call_ms = Some(duration.as_millis() as u64),
            _ => {}
        }
    }
    assert_eq!(segments.len(), 2, "{segments:?}");
    let call_ms = call_ms.unwrap_or_default();
    let caller_segment = segments
        .iter()
        .find(|s| s.0 == voxbridge_media::events::Speaker::Caller)
        .expect("the caller's words");
    let bot_segment = segments
        .iter()
        .find(|s| s.0 == voxbridge_media::events::Speaker::Bot)
        .expect("the bot's words");
    assert_eq!(caller_segment.1, CALLER_SAYS.to_lowercase());
    assert_eq!(bot_segment.1, BOT_SAYS.to_lowercase());
    // The caller spoke at once (espeak-ng starts within 200 ms); the bot
    // after hearing all 3.8 s of it: each segment has its own place, inside
    // the call.
    assert!(
        caller_segment.2 < 500,
        "caller's words at {} ms",
        caller_segment.2
    );
    assert!(
        bot_segment.2 >= (said.len() as u64 * 1000 / 16000) && bot_segment.2 < call_ms,
        "bot's words at {} ms in a {call_ms} ms call",
        bot_segment.2
    );
    let m = &d.metrics;
    assert_eq!(
        m.transcribe_segments.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    assert_eq!(
        m.transcribe_dropped_ms.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(
        m.transcribe_failures.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn a_recognizer_that_refuses_the_key_costs_the_call_nothing() {
    let (_recognizer, url) = start_recognizer("right-key", &[CALLER_SAYS]);
    let mut bot = TestBot::start().await;
    let mut d = Daemon::start(transcribed_route(&bot.url, &url, "wrong-key", 0)).await;
    let mut caller = Caller::connect(d.addr, uuid(61)).await;
    let mut link = bot.accept().await;
    pipecat_next(&mut link).await.expect("start");
    let speech = speech_8k(100);
    caller.send_audio(&speech).await;
    let mut heard_by_bot = 0;
    while heard_by_bot < speech.len() * 2 {
        if let Some(Kind::Audio(a)) = pipecat_next(&mut link).await {
            heard_by_bot += a.audio.len() / 2;
        }
    }
    // Half a second of the call at the caller's side, so both directions
    // have audio for the recognizer.
    hear(&mut caller, 25).await;
    // Both directions give up while the call goes on: the transcribe is
    // over then, not only when the call ends.
    let ended = d
        .event("the transcribe's end", |e| {
            matches!(e, CallEvent::TranscribeCompleted { .. })
        })
        .await;
    assert_eq!(
        d.metrics
            .transcribe_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        2,
        "one refused connection per direction, no reconnects configured"
    );
    // The call is free for another transcribe (the API's), which gives up
    // the same way.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let start = voxbridge_media::commands::TranscribeStart {
        transcribe_id: "again".into(),
        language: None,
        directions: Some(voxbridge_media::commands::TranscribeDirections::In),
    };
    d.commands
        .transcribe(ended.call_id(), start, Box::new(move |r| drop(tx.send(r))));
    let running = within("the call to answer", rx)
        .await
        .expect("answered")
        .expect("a given-up transcribe does not hold the call");
    assert_eq!(running.language, "en-US");
    caller.send_audio(&speech_8k(10)).await;
    let again = d
        .event("the second transcribe's end", |e| {
            matches!(e, CallEvent::TranscribeCompleted { .. })
        })
        .await;
    assert!(
        matches!(&again, CallEvent::TranscribeCompleted { transcribe_id, .. } if transcribe_id == "again"),
        "{again:?}"
    );
    hear(&mut caller, 5).await;
    caller.send_raw(&[0x00, 0x00, 0x00]).await;
    let hungup = d.event("hangup", |e| matches!(e, CallEvent::Hungup { .. })).await;
    assert!(
        matches!(
            hungup,
            CallEvent::Hungup {
                cause: HangupCause::CallerHangup,
                ..
            }
        ),
        "{hungup:?}"
    );
    let m = &d.metrics;
    assert_eq!(
        m.transcribe_failures.load(std::sync::atomic::Ordering::Relaxed),
        3,
        "and one more for the second transcribe's one direction"
    );
    assert_eq!(
        m.transcribe_segments.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

/// A shutdown waits for the recognizers: the call has ended, its stream
/// sent `stop`, and the recognizer holds its last result until after the
/// daemon was told to stop; when the daemon's task has finished, that
/// result is out and the transcribe completed (streams run on the
/// daemon's task tracker, not beside it).
#[tokio::test]
async fn a_shutdown_waits_for_the_recognizers_last_results() {
    use voxbridge_media::config::{SttProtocol, Transcribe, TranscribeDirection};
    let mut recognizer = ScriptedRecognizer::start(true).await;
    let mut bot = TestBot::start().await;
    let route = voxbridge_media::config::Route {
        transcribe: Some(Transcribe {
            url: recognizer.url.clone(),
            protocol: SttProtocol::Voxbridge,
            key: None,
            language: "en".into(),
            directions: vec![TranscribeDirection::In],
            buffer_ms: 10_000,
            max_reconnects: 0,
            auto: true,
        }),
        ..pipecat_route(&bot.url, 16000)
    };
    let mut d = Daemon::start(route).await;
    let mut caller = Caller::connect(d.addr, uuid(62)).await;
    let mut link = bot.accept().await;
    pipecat_next(&mut link).await.expect("start");
    caller.send_audio(&speech_8k(10)).await;
    within("the recognizer to be opened", recognizer.opened.recv())
        .await
        .expect("opened");
    caller.send_raw(&[0x00, 0x00, 0x00]).await;
    d.event("the hangup", |e| matches!(e, CallEvent::Hungup { .. }))
        .await;
    d.shutdown.shutdown();
    recognizer.release.send_replace(true);
    within("the daemon to stop", &mut d.task)
        .await
        .expect("daemon task");
    let (mut last_words, mut completed) = (Vec::new(), 0);
    while let Ok(e) = d.events.try_recv() {
        match e {
            CallEvent::Transcript { text, .. } => last_words.push(text),
            CallEvent::TranscribeCompleted { .. } => completed += 1,
            _ => {}
        }
    }
    assert_eq!(last_words, ["goodbye now"]);
    assert_eq!(completed, 1);
}

/// A tmpfs of 32 KiB mounted for one test (half a second of a 16 kHz
/// stereo recording), unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(name: &str) -> SmallDisk {
        let dir = common::tempdir(name);
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=32k", "tmpfs"])
            .arg(&dir)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "a 32 KiB tmpfs could not be mounted at {} (mount needs root, as the CI runs): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A full disk ends a recording, never its call: a route that records
/// every call writes to a 32 KiB tmpfs; the recording ends with
/// `disk_full` once it is full (its file cut to whole frames and its header
/// made to match, so sox reads it), and the call goes on: the bot still
/// hears the caller, and the call ends when the caller hangs up.
#[tokio::test]
async fn a_full_disk_ends_the_recording_and_the_call_goes_on() {
    use voxbridge_media::events::RecordingEnd;
    let disk = SmallDisk::mount("full-disk");
    let mut bot = TestBot::start().await;
    let route = voxbridge_media::config::Route {
        record: true,
        ..pipecat_route(&bot.url, 16000)
    };
    let mut config = one_listener(route);
    config.recording.dir = disk.0.clone();
    let mut d = Daemon::with_config(config).await;
    let mut caller = Caller::connect(d.addr, uuid(64)).await;
    let mut link = bot.accept().await;
    pipecat_next(&mut link).await.expect("start");
    d.event("the recording's start", |e| {
        matches!(e, CallEvent::RecordingStarted { .. })
    })
    .await;
    // Two seconds of speech in real time: four times what the disk holds.
    let speech = speech_8k(100);
    let mut clock = tokio::time::interval(Duration::from_millis(20));
    for frame in speech.chunks(160) {
        clock.tick().await;
        caller.send_audio(frame).await;
    }
    let finished = d
        .event("the recording's end", |e| {
            matches!(e, CallEvent::RecordingFinished { .. })
        })
        .await;
    let CallEvent::RecordingFinished {
        recording_id,
        duration_ms,
        bytes,
        end,
        ..
    } = finished
    else {
        unreachable!("matched above")
    };
    assert_eq!(end, RecordingEnd::DiskFull);
    assert!(bytes <= 32 * 1024 && (bytes - 44) % 4 == 0, "{bytes} bytes");
    assert!(duration_ms > 0, "what fitted was kept");
    let file = disk.0.join(format!("{recording_id}.wav"));
    assert_eq!(std::fs::metadata(&file).expect("the file").len(), bytes);
    let out = common::run("sox", &["--i", "-D", file.to_str().expect("utf-8")]);
    let secs: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("sox's duration");
    assert_eq!(
        (secs * 1000.0).round() as u64,
        duration_ms,
        "sox reads the header as written"
    );
    // The call goes on: everything the caller said reaches the bot, and
    // more after the disk filled.
    let mut heard = 0;
    while heard < 32000 {
        if let Some(Kind::Audio(a)) = pipecat_next(&mut link).await {
            heard += a.audio.len() / 2;
        }
    }
    caller.send_audio(&speech[..1600]).await;
    while heard < 35200 {
        if let Some(Kind::Audio(a)) = pipecat_next(&mut link).await {
            heard += a.audio.len() / 2;
        }
    }
    assert_eq!(
        d.metrics
            .recording_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    caller.send_raw(&[0x00, 0x00, 0x00]).await;
    let hungup = d
        .event("the hangup", |e| matches!(e, CallEvent::Hungup { .. }))
        .await;
    assert!(
        matches!(
            hungup,
            CallEvent::Hungup {
                cause: HangupCause::CallerHangup,
                ..
            }
        ),
        "{hungup:?}"
    );
    d.shutdown.shutdown();
    within("the daemon to stop", d.task).await.expect("daemon task");
}

/// A bot records its call itself (pipecat `voxbridge.recording` messages):
/// `start` makes a recording, `pause` and `resume` are reported, a second
/// `start` while one runs and an unknown action change nothing (the call
/// goes on), and `stop` completes the file (`stopped`), here in Ogg Opus:
/// ffprobe reads it as stereo Opus of the length reported.
#[tokio::test]
async fn a_bot_starts_pauses_and_stops_its_call_s_recording() {
    use voxbridge_media::events::RecordingEnd;
    let dir = common::tempdir("bot-recording");
    let mut bot = TestBot::start().await;
    let mut config = one_listener(pipecat_route(&bot.url, 16000));
    config.recording.dir = dir.clone();
    config.recording.format = voxbridge_media::sansio::recording_file::RecordingFormat::Ogg;
    let mut d = Daemon::with_config(config).await;
    let mut caller = Caller::connect(d.addr, uuid(63)).await;
    let mut link = bot.accept().await;
    pipecat_next(&mut link).await.expect("start");
    let say = |action: &str| {
        let data = format!(r#"{{"type":"voxbridge.recording","action":"{action}"}}"#);
        pipecat_msg(Kind::Message(voxbridge_proto::pipecat::MessageFrame { data }))
    };
    link.send(say("start")).await;
    let started = d
        .event("the recording's start", |e| {
            matches!(e, CallEvent::RecordingStarted { .. })
        })
        .await;
    let CallEvent::RecordingStarted {
        recording_id, rate, ..
    } = started
    else {
        unreachable!("matched above")
    };
    assert_eq!(rate, 16000);
    for action in ["start", "rewind", "pause"] {
        link.send(say(action)).await;
    }
    let paused = d
        .event("the pause", |e| matches!(e, CallEvent::RecordingPaused { .. }))
        .await;
    assert!(
        matches!(paused, CallEvent::RecordingPaused { paused: true, .. }),
        "{paused:?}"
    );
    caller.send_audio(&speech_8k(25)).await;
    link.send(say("resume")).await;
    let resumed = d
        .event("the resume", |e| matches!(e, CallEvent::RecordingPaused { .. }))
        .await;
    assert!(
        matches!(resumed, CallEvent::RecordingPaused { paused: false, .. }),
        "{resumed:?}"
    );
    link.send(say("stop")).await;
    let finished = d
        .event("the recording's end", |e| {
            matches!(e, CallEvent::RecordingFinished { .. } | CallEvent::Hungup { .. })
        })
        .await;
    let CallEvent::RecordingFinished {
        recording_id: finished_id,
        end,
        bytes,
        duration_ms,
        ..
    } = finished
    else {
        panic!("the call ended before its recording: {finished:?}")
    };
    assert_eq!(
        (finished_id.as_str(), end),
        (recording_id.as_str(), RecordingEnd::Stopped)
    );
    let file = dir.join(format!("{recording_id}.opus"));
    assert_eq!(std::fs::metadata(&file).expect("the file").len(), bytes);
    let probe = common::run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,channels",
            "-of",
            "csv=p=0",
            file.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "opus,2");
    // FFmpeg plays exactly the length reported (pre-skip and end trimmed).
    let decoded = dir.join("decoded.raw");
    common::ffmpeg(&format!(
        "-i {} -ar 16000 -f s16le {}",
        file.to_str().expect("utf-8"),
        decoded.to_str().expect("utf-8")
    ));
    let frames = std::fs::metadata(&decoded).expect("decoded").len() / 4;
    assert_eq!(frames, duration_ms * 16, "{frames} stereo frames at 16 kHz");
    caller.send_raw(&[0x00, 0x00, 0x00]).await;
    d.event("the hangup", |e| matches!(e, CallEvent::Hungup { .. }))
        .await;
    d.shutdown.shutdown();
    within("the daemon to stop", d.task).await.expect("daemon task");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tenant's own speech recognizer (`[tenants.<id>.transcribe]`) serves
/// its calls on any route, with its own key; a tenant without one gets
/// the route's.
#[tokio::test]
async fn a_tenant_s_own_recognizer_takes_its_calls() {
    use voxbridge_media::config::{SttProtocol, TenantConfig, Transcribe, TranscribeDirection};
    let recognizer = |url: &str, key: &str| Transcribe {
        url: url.into(),
        protocol: SttProtocol::Voxbridge,
        key: Some(key.into()),
        language: "en".into(),
        directions: vec![TranscribeDirection::In],
        buffer_ms: 10_000,
        max_reconnects: 0,
        auto: true,
    };
    let mut routes_own = ScriptedRecognizer::start(false).await;
    let mut acmes_own = ScriptedRecognizer::start(false).await;
    for (tenant, uuid_n) in [("acme", 65), ("globex", 66)] {
        let mut bot = TestBot::start().await;
        let mut route = pipecat_route(&bot.url, 16000);
        route.transcribe = Some(recognizer(&routes_own.url, "route-key"));
        route.params.insert("customer_id".into(), tenant.into());
        let mut config = one_listener(route);
        config.tenants.insert(
            "acme".into(),
            TenantConfig {
                transcribe: Some(recognizer(&acmes_own.url, "acme-key")),
            },
        );
        let mut d = Daemon::with_config(config).await;
        let mut caller = Caller::connect(d.addr, uuid(uuid_n)).await;
        let mut link = bot.accept().await;
        pipecat_next(&mut link).await.expect("start");
        caller.send_audio(&speech_8k(10)).await;
        let expected = if tenant == "acme" {
            &mut acmes_own
        } else {
            &mut routes_own
        };
        let (auth, opening) = within("the recognizer to be opened", expected.opened.recv())
            .await
            .expect("opened");
        let key = if tenant == "acme" { "acme-key" } else { "route-key" };
        assert_eq!(auth, format!("Bearer {key}"), "{tenant}");
        assert_eq!(opening["type"], "start");
        caller.send_raw(&[0x00, 0x00, 0x00]).await;
        d.event("the hangup", |e| matches!(e, CallEvent::Hungup { .. }))
            .await;
        d.shutdown.shutdown();
        within("the daemon to stop", d.task).await.expect("daemon task");
    }
    assert!(
        routes_own.opened.try_recv().is_err(),
        "acme's call never reached the route's recognizer"
    );
    assert!(
        acmes_own.opened.try_recv().is_err(),
        "globex's call never reached acme's"
    );
}

/// The bot's `voxbridge.vad` message, as (direction, speaking, offset_ms).
fn vad_message(kind: Kind) -> Option<(String, bool, u64)> {
    let v = message_json(&kind)?;
    (v["type"] == "voxbridge.vad").then(|| {
        (
            v["direction"].as_str().unwrap_or_default().to_owned(),
            v["speaking"].as_bool().unwrap_or_default(),
            v["offset_ms"].as_u64().unwrap_or_default(),
        )
    })
}

#[tokio::test]
async fn vad_tells_bot_and_control_when_caller_and_bot_start_and_stop_speaking() {
    use voxbridge_media::events::Speaker;
    let dir = common::tempdir("vad");
    let caller_speech = spoken(&dir, "caller", CALLER_SAYS, 16000);
    let bot_speech = spoken(&dir, "bot", BOT_SAYS, 16000);
    let mut bot = TestBot::start().await;
    let route = voxbridge_media::config::Route {
        vad: Some(voxbridge_media::config::Vad::default()),
        ..pipecat_route(&bot.url, 16000)
    };
    let mut d = Daemon::start(route).await;
    let mut caller = Caller::connect(d.addr, uuid(61)).await;
    let mut link = bot.accept().await;
    pipecat_next(&mut link).await.expect("start");
    // Half a second of quiet, the caller's sentence, a second of quiet, in
    // real time.
    let mut said = vec![0i16; 8000];
    said.extend(&caller_speech);
    said.extend(std::iter::repeat_n(0i16, 16000));
    let mut clock = tokio::time::interval(Duration::from_millis(20));
    for frame in slin16_frames(&said).chunks(3 + 640) {
        clock.tick().await;
        caller.send_raw(frame).await;
    }
    // The bot hears the caller start and stop, between the audio.
    let mut told = Vec::new();
    while told.len() < 2 {
        if let Some(m) = vad_message(pipecat_next(&mut link).await.expect("the link stays up")) {
            told.push(m);
        }
    }
    assert_eq!(
        told.iter().map(|(d, s, _)| (d.as_str(), *s)).collect::<Vec<_>>(),
        [("in", true), ("in", false)]
    );
    assert!(told[0].2 < told[1].2, "{told:?}");
    // The bot answers; the caller hears it paced (the daemon's ticks, its
    // frames queue in the caller's socket), then quiet.
    for chunk in bot_speech.chunks(640) {
        link.send(pipecat_audio(chunk, 16000)).await;
    }
    while told.len() < 4 {
        if let Some(m) = vad_message(pipecat_next(&mut link).await.expect("the link stays up")) {
            told.push(m);
        }
    }
    assert_eq!(
        told[2..]
            .iter()
            .map(|(d, s, _)| (d.as_str(), *s))
            .collect::<Vec<_>>(),
        [("out", true), ("out", false)],
        "{told:?}"
    );
    caller.send_raw(&[0x00, 0x00, 0x00]).await;
    // Control hears the same four changes, in the order they happened,
    // each at the bot's offset.
    let mut events = Vec::new();
    while let CallEvent::Speech {
        speaker,
        started,
        offset_ms,
        ..
    } = d
        .event("speech events and the hangup", |e| {
            matches!(e, CallEvent::Speech { .. } | CallEvent::Hungup { .. })
        })
        .await
    {
        events.push((speaker, started, offset_ms));
    }
    let expected: Vec<(Speaker, bool, u64)> = told
        .iter()
        .map(|(d, s, ms)| (if d == "in" { Speaker::Caller } else { Speaker::Bot }, *s, *ms))
        .collect();
    assert_eq!(events, expected);
}

#[tokio::test]
async fn amd_tells_a_person_from_a_voicemail_to_bot_and_control() {
    let dir = common::tempdir("amd");
    let mut bot = TestBot::start().await;
    let route = voxbridge_media::config::Route {
        amd: Some(voxbridge_media::config::AnsweringMachine {
            calls: voxbridge_media::config::AmdCalls::All,
            ..Default::default()
        }),
        ..pipecat_route(&bot.url, 16000)
    };
    let mut d = Daemon::start(route).await;
    for (n, (said, expected)) in [
        ("Hello?", "human"),
        (
            "Hi, you have reached the voicemail of Mary Smith. Please leave a message after the tone.",
            "machine",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let speech = spoken(&dir, &format!("callee{n}"), said, 16000);
        let mut caller = Caller::connect(d.addr, uuid(70 + n as u8)).await;
        let mut link = bot.accept().await;
        pipecat_next(&mut link).await.expect("start");
        // Half a second of the line, the greeting, then silence: the callee waits.
        let mut audio = vec![0i16; 8000];
        audio.extend(&speech);
        audio.extend(std::iter::repeat_n(0i16, 3 * 16000));
        caller.send_raw(&slin16_frames(&audio)).await;
        let told = loop {
            let kind = pipecat_next(&mut link).await.expect("the link stays up");
            if let Some(v) = message_json(&kind).filter(|v| v["type"] == "voxbridge.amd") {
                break v;
            }
        };
        assert_eq!(told["answered_by"], expected, "{said}: {told}");
        let CallEvent::AnsweredBy {
            answered_by,
            after_ms,
            ..
        } = d
            .event("who answered", |e| matches!(e, CallEvent::AnsweredBy { .. }))
            .await
        else {
            unreachable!("matched")
        };
        assert_eq!(answered_by, expected);
        assert_eq!(Some(after_ms), told["after_ms"].as_u64());
        caller.send_raw(&[0x00, 0x00, 0x00]).await;
        d.event("hangup", |e| matches!(e, CallEvent::Hungup { .. })).await;
    }
}
