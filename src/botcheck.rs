//! `voxbridge bot check`: the conformance kit for bot authors. It plays
//! voxbridge's side of one call against a bot, in the bot's dialect, and
//! checks everything the bot sends.
//!
//! The scripted caller: the opening (the dialect's start message with call
//! metadata), 2 s of real speech (the bundled sample) paced at 20 ms, a
//! DTMF key, silence while the bot answers, 0.5 s of speech again while the
//! bot talks (a barge-in), then the end of the call (the dialect's stop,
//! then a normal close). Every message the bot sends is decoded exactly as
//! a call decodes it ([`BotCodec`], [`Pipeline`]): one voxbridge could not
//! use is a violation, reported with its number and the reason. Also
//! reported: the time from the end of the caller's speech to the bot's
//! first audio, and how much audio the bot sent.
//!
//! Ends with `RESULT protocol=<p> messages=<n> violations=<n>
//! first_audio_ms=<ms|none> bot_audio_ms=<ms>`; exits non-zero on a
//! violation or when the bot sent no audio at all.

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use voxbridge_media::config::{BotProtocolKind, Route, TwilioEncoding};
use voxbridge_media::events::CallInfo;
use voxbridge_media::sansio::botcodec::{BotCodec, BotInput, Outgoing};
use voxbridge_media::sansio::pipeline::Pipeline;
use voxbridge_media::HangupCause;

/// `voxbridge bot check` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The bot's WebSocket URL.
    pub url: String,
    /// The bot's dialect: pipecat, twilio, telnyx, plivo, exotel, vonage, jambonz or genesys.
    #[arg(long, default_value = "pipecat")]
    pub protocol: String,
    /// Payload encoding of a JSON dialect (mulaw, alaw, l16); default: the provider's.
    #[arg(long)]
    pub encoding: Option<String>,
    /// The rate audio is exchanged at (l16 and pipecat; mulaw and alaw are 8 kHz).
    #[arg(long, default_value_t = 16000)]
    pub sample_rate: u32,
    /// How long to wait for the bot's answer after the caller stops talking.
    #[arg(long, default_value_t = 5000)]
    pub answer_timeout_ms: u64,
}

/// What a check found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    /// Messages the bot sent (pings, pongs and its close not counted).
    pub messages: u64,
    /// What voxbridge could not use, each with the message's number.
    pub violations: Vec<String>,
    /// From the end of the caller's speech to the bot's first audio after it.
    pub first_audio_ms: Option<f64>,
    /// Bot audio received, ms.
    pub bot_audio_ms: f64,
    /// Marks and barge-ins the bot sent.
    pub marks: u64,
    /// Barge-ins (clear) the bot sent.
    pub clears: u64,
}

impl Report {
    /// The last line of the command's output.
    pub fn result_line(&self, protocol: &str) -> String {
        let first = self
            .first_audio_ms
            .map_or_else(|| "none".to_string(), |ms| format!("{ms:.1}"));
        format!(
            "RESULT protocol={protocol} messages={} violations={} first_audio_ms={first} bot_audio_ms={:.0}",
            self.messages,
            self.violations.len(),
            self.bot_audio_ms
        )
    }

    /// Whether the bot passed: no violation and some audio.
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.bot_audio_ms > 0.0
    }
}

/// The route a check plays: what a daemon with this route would speak.
pub fn route_of(args: &Args) -> anyhow::Result<Route> {
    let protocol = BotProtocolKind::ALL
        .into_iter()
        .find(|k| k.name() == args.protocol)
        .with_context(|| {
            format!(
                "--protocol {:?}: use pipecat, twilio, telnyx, plivo, exotel, vonage, jambonz or genesys",
                args.protocol
            )
        })?;
    let encoding = match args.encoding.as_deref() {
        None => None,
        Some("mulaw") => Some(TwilioEncoding::Mulaw),
        Some("alaw") => Some(TwilioEncoding::Alaw),
        Some("l16") => Some(TwilioEncoding::L16),
        Some(other) => anyhow::bail!("--encoding {other:?}: use mulaw, alaw or l16"),
    };
    let route = Route {
        url: args.url.clone(),
        protocol,
        twilio_encoding: encoding,
        sample_rate: args.sample_rate,
        ..Route::default()
    };
    let mut config = voxbridge_media::Config::default();
    config.routes.insert("check".into(), route.clone());
    config.validate().context("the check's route")?;
    Ok(route)
}

/// `voxbridge bot check`: prints the findings and the RESULT line.
pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(check(&args))?;
    for v in &report.violations {
        println!("violation: {v}");
    }
    println!("{}", report.result_line(&args.protocol));
    if !report.passed() {
        anyhow::bail!(
            "the bot broke the {} protocol ({} violations{})",
            args.protocol,
            report.violations.len(),
            if report.bot_audio_ms > 0.0 {
                ""
            } else {
                ", no audio"
            }
        );
    }
    Ok(())
}

/// The caller's speech: the bundled sample, 8 kHz.
fn speech() -> Vec<i16> {
    const SAMPLE: &[u8] = include_bytes!("../samples/hello_8k.ul");
    SAMPLE
        .iter()
        .map(|&c| voxbridge_codecs::g711::ulaw_to_linear(c))
        .collect()
}

fn to_message(o: Outgoing) -> Message {
    match o {
        Outgoing::Text(b) => Message::Text(String::from_utf8_lossy(&b).into_owned().into()),
        Outgoing::Binary(b) => Message::Binary(b),
    }
}

/// One call against the bot at `args.url`.
pub async fn check(args: &Args) -> anyhow::Result<Report> {
    let route = route_of(args)?;
    let rate = route.bot_rate();
    let mut request = args
        .url
        .as_str()
        .into_client_request()
        .with_context(|| format!("{}: not a WebSocket URL", args.url))?;
    if let Some(p) = route.protocol.subprotocol() {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(p));
    }
    let (ws, _) = tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(request))
        .await
        .with_context(|| format!("{}: no answer within 5 s", args.url))?
        .with_context(|| format!("connect to {}", args.url))?;
    let (mut tx, mut rx) = ws.split();
    let call_id = "b07c4ec5-0000-4000-8000-000000000001";
    let mut codec = BotCodec::new(route.protocol, route.encoding(), rate, call_id);
    // The bot's audio goes through a call's pipeline, which checks its rate.
    let mut down = Pipeline::new(8000, rate, 60_000)?;
    let mut up = Pipeline::new(8000, rate, 60_000)?;
    let info = CallInfo {
        call_id: call_id.into(),
        route: "check".into(),
        caller: Some("+15550100".into()),
        callee: Some("+15550199".into()),
        ingress: "check",
        params: [("customer_id".to_string(), "check".to_string())].into(),
    };
    for m in codec.start(&info) {
        tx.send(to_message(m)).await?;
    }

    let speech = speech();
    let talk = speech.len().min(100 * 160);
    let barge = speech.len().min(25 * 160);
    let silence = [0i16; 160];
    let mut report = Report::default();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut frame = 0usize;
    let mut speech_ended: Option<Instant> = None;
    let mut answer_deadline: Option<Instant> = None;
    let mut heard_at: Option<Instant> = None;
    let mut barge_from: Option<usize> = None;
    let mut to_bot = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                let pcm: &[i16] = if frame * 160 < talk {
                    &speech[frame * 160..(frame + 1) * 160]
                } else if let Some(b) = barge_from.filter(|b| (frame - b) * 160 < barge) {
                    &speech[(frame - b) * 160..(frame - b + 1) * 160]
                } else {
                    &silence
                };
                frame += 1;
                to_bot.clear();
                up.caller_pcm(pcm, |f| to_bot.push(to_message(codec.audio(f))));
                for m in to_bot.drain(..) {
                    tx.feed(m).await?;
                }
                if frame * 160 == talk {
                    speech_ended = Some(now);
                    answer_deadline = Some(now + Duration::from_millis(args.answer_timeout_ms));
                    tx.feed(to_message(codec.dtmf('5'))).await?;
                }
                tx.flush().await?;
                // The bot answered (or never will): talk over it, then hang up.
                let answered = heard_at.is_some_and(|t| now >= t + Duration::from_millis(500));
                if barge_from.is_none() && (answered || answer_deadline.is_some_and(|d| now >= d)) {
                    barge_from = Some(frame);
                }
                if barge_from.is_some_and(|b| (frame - b) * 160 >= barge + 20 * 160) {
                    break;
                }
            }
            m = rx.next() => {
                let now = Instant::now();
                let Some(m) = m else {
                    report.violations.push("the bot closed the connection mid-call (no close frame)".into());
                    return Ok(report);
                };
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        report.violations.push(format!("the WebSocket broke: {e}"));
                        return Ok(report);
                    }
                };
                let n = report.messages + 1;
                let decoded = match &m {
                    Message::Text(t) => codec.decode_text(t.as_str()),
                    Message::Binary(b) => codec.decode_binary(b.clone()),
                    Message::Close(c) => {
                        let code = c.as_ref().map(|c| u16::from(c.code));
                        if code != Some(1000) {
                            report.violations.push(format!("the bot closed mid-call with {code:?} (a failure to voxbridge)"));
                        }
                        return Ok(report);
                    }
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                };
                report.messages = n;
                match decoded {
                    Ok(BotInput::Audio { pcm, rate }) => {
                        report.bot_audio_ms += pcm.len() as f64 * 1000.0 / f64::from(rate.max(1));
                        if let Err(e) = down.bot_audio(pcm, rate) {
                            report.violations.push(format!("message {n}: {e}"));
                        }
                        if let (Some(end), None) = (speech_ended, report.first_audio_ms) {
                            report.first_audio_ms = Some(now.duration_since(end).as_secs_f64() * 1000.0);
                        }
                        if speech_ended.is_some() && heard_at.is_none() {
                            heard_at = Some(now);
                        }
                    }
                    Ok(BotInput::Mark(_)) => report.marks += 1,
                    Ok(BotInput::Clear) => report.clears += 1,
                    Ok(_) => {}
                    Err(e) => report.violations.push(format!("message {n}: {e}")),
                }
            }
        }
    }
    if let Some(stop) = codec.stop(HangupCause::CallerHangup) {
        tx.send(to_message(stop)).await?;
    }
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "call ended".into(),
    };
    tx.send(Message::Close(Some(close))).await?;
    // Whatever the bot still sends before its close is checked too.
    let drain = async {
        while let Some(Ok(m)) = rx.next().await {
            let n = report.messages + 1;
            let decoded = match &m {
                Message::Text(t) => codec.decode_text(t.as_str()).map(|_| ()),
                Message::Binary(b) => codec.decode_binary(b.clone()).map(|_| ()),
                _ => continue,
            };
            report.messages = n;
            if let Err(e) = decoded {
                report.violations.push(format!("message {n}: {e}"));
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    Ok(report)
}
