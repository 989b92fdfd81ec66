//! `voxbridge bot echo`: a built-in bot that answers over either bot
//! protocol, for demos, tests and `loadgen`.
//!
//! It accepts WebSocket connections from the daemon (with jambonz's
//! subprotocol when asked), tells pipecat from the providers' dialects by
//! the first message (binary vs text; the dialect from the opening's
//! shape), and answers every
//! audio frame with either the same audio (echo, optionally delayed) or a
//! tone of the same length. A [`Probe`] sees each call start and each audio
//! frame arrive, which is how `loadgen` measures caller->bot latency.

use anyhow::Context as _;
use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use voxbridge_codecs::g711;
use voxbridge_media::ws_config;
use voxbridge_proto::pipecat::{self, AudioRawFrame, Kind};
use voxbridge_proto::telephony::{BotCommand, CallerEvent, Dialect, Encoding, StartInfo};
use voxbridge_proto::twilio;

/// jambonz's listen subprotocol.
const JAMBONZ: &str = "audio.jambonz.org";

/// What the bot answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The caller's own audio.
    Echo,
    /// A 440 Hz tone, one frame per frame received.
    Tone,
    /// Echo, plus a greeting (`TextFrame`) when the call starts and, when
    /// the caller stops talking, a `TranscriptionFrame` saying how long the
    /// utterance was (no speech recognition: it shows the transcript path).
    Demo,
}

/// Utterance tracking for [`Mode::Demo`]: a frame is speech when its RMS
/// exceeds -40 dBFS; 300 ms of non-speech ends an utterance.
#[derive(Debug, Default)]
struct Utterances {
    speech_frames: u32,
    quiet_frames: u32,
}

impl Utterances {
    /// Feeds one frame of PCM16 LE; returns an utterance's length (ms) when one ends.
    fn frame(&mut self, pcm: &[u8], frame_ms: u32) -> Option<u32> {
        let n = pcm.len() / 2;
        if n == 0 {
            return None;
        }
        let energy: f64 = pcm
            .chunks_exact(2)
            .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])).powi(2))
            .sum::<f64>()
            / n as f64;
        if energy.sqrt() > 328.0 {
            self.speech_frames += 1;
            self.quiet_frames = 0;
            return None;
        }
        self.quiet_frames += 1;
        if self.speech_frames > 0 && self.quiet_frames * frame_ms >= 300 {
            let ms = self.speech_frames * frame_ms;
            self.speech_frames = 0;
            return Some(ms);
        }
        None
    }
}

/// `voxbridge bot echo` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Address to listen on (the daemon's default route points here).
    #[arg(long, default_value = "127.0.0.1:8765")]
    pub listen: SocketAddr,
    /// Echo or tone.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,
    /// Delay before each answer, milliseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
}

/// Observes the bot's traffic (used by loadgen).
pub trait Probe: Send + Sync + 'static {
    /// A call started; returns a handle for its later audio, if it is one of ours.
    fn started(&self, call_id: &str) -> Option<usize>;
    /// Audio frame number `seq` (from 0) of call `handle` arrived at `at`.
    fn audio(&self, handle: usize, seq: u64, at: Instant);
}

/// `voxbridge bot echo`: runs until Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listen on {}", args.listen))?;
        println!(
            "voxbridge bot: {:?} on ws://{}",
            args.mode,
            listener.local_addr()?
        );
        tokio::select! {
            () = serve(listener, args.mode, Duration::from_millis(args.delay_ms), None) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}

/// Accepts bot links forever.
pub async fn serve(listener: TcpListener, mode: Mode, delay: Duration, probe: Option<Arc<dyn Probe>>) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = sock.set_nodelay(true);
        let probe = probe.clone();
        tokio::spawn(async move {
            if let Err(e) = session(sock, mode, delay, probe).await {
                tracing::debug!(error = %e, "bot session ended");
            }
        });
    }
}

struct Tone {
    phase: f32,
}

impl Tone {
    fn fill(&mut self, rate: u32, samples: usize, out: &mut BytesMut) {
        let step = 2.0 * std::f32::consts::PI * 440.0 / rate.max(1) as f32;
        for _ in 0..samples {
            let s = (self.phase.sin() * 8000.0) as i16;
            out.extend_from_slice(&s.to_le_bytes());
            self.phase = (self.phase + step) % (2.0 * std::f32::consts::PI);
        }
    }
}

/// A Genesys AudioHook server's answer of type `kind` (`opened`, `pong`,
/// `closed`); nothing in the other dialects.
fn notice(dialect: Dialect, kind: &str) -> Option<Message> {
    if dialect != Dialect::Genesys {
        return None;
    }
    BotCommand::Notice { kind: kind.into() }
        .write(dialect, "")
        .map(|m| Message::Text(m.into()))
}

/// The tone (PCM16 LE in `pcm`) in the stream's encoding, into `out`.
fn encode_tone(s: &StartInfo, pcm: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let samples = pcm.chunks_exact(2).map(|p| i16::from_le_bytes([p[0], p[1]]));
    match s.encoding {
        Encoding::Mulaw => out.extend(samples.map(g711::linear_to_ulaw)),
        Encoding::Alaw => out.extend(samples.map(g711::linear_to_alaw)),
        Encoding::L16 if s.dialect.l16_big_endian() => out.extend(samples.flat_map(i16::to_be_bytes)),
        Encoding::L16 => out.extend_from_slice(pcm),
    }
}

/// A jambonz listen stream asks for its subprotocol; a bot's server that
/// speaks it says so.
// The callback's type is tungstenite's (its error is a whole HTTP response).
#[allow(clippy::result_large_err)]
fn accept_jambonz(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    let offered = req
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == JAMBONZ);
    if offered {
        resp.headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(JAMBONZ));
    }
    Ok(resp)
}

async fn session(
    sock: TcpStream,
    mode: Mode,
    delay: Duration,
    probe: Option<Arc<dyn Probe>>,
) -> anyhow::Result<()> {
    let mut ws =
        tokio_tungstenite::accept_hdr_async_with_config(sock, accept_jambonz, Some(ws_config())).await?;
    let mut handle: Option<usize> = None;
    let mut seq = 0u64;
    let mut tone = Tone { phase: 0.0 };
    let mut buf = BytesMut::with_capacity(4096);
    let mut b64 = String::new();
    let mut raw = Vec::new();
    let mut start: Option<Box<StartInfo>> = None;
    let mut pending: VecDeque<(Instant, Message)> = VecDeque::new();
    let mut utterances = Utterances::default();
    loop {
        let next_due = pending.front().map(|(t, _)| *t);
        let msg = tokio::select! {
            m = ws.next() => match m {
                Some(Ok(m)) => m,
                _ => return Ok(()),
            },
            () = async {
                match next_due {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = Instant::now();
                while pending.front().is_some_and(|(t, _)| *t <= now) {
                    if let Some((_, m)) = pending.pop_front() {
                        ws.feed(m).await?;
                    }
                }
                ws.flush().await?;
                continue;
            }
        };
        let now = Instant::now();
        let reply = match msg {
            // Vonage and jambonz: raw PCM16 at the stream's rate.
            Message::Binary(b) if start.as_ref().is_some_and(|s| s.dialect.binary_audio()) => {
                if let (Some(p), Some(h)) = (&probe, handle) {
                    p.audio(h, seq, now);
                }
                seq += 1;
                match (mode, &start) {
                    (Mode::Tone, Some(s)) => {
                        buf.clear();
                        tone.fill(s.sample_rate, b.len() / s.encoding.bytes_per_sample(), &mut buf);
                        encode_tone(s, &buf, &mut raw);
                        Some(Message::Binary(raw.clone().into()))
                    }
                    _ => Some(Message::Binary(b)),
                }
            }
            Message::Binary(b) => match pipecat::decode(b.clone()) {
                Ok(Kind::Audio(a)) => {
                    if let (Some(p), Some(h)) = (&probe, handle) {
                        p.audio(h, seq, now);
                    }
                    seq += 1;
                    if mode == Mode::Demo {
                        let frame_ms = (a.audio.len() as u32 / 2) * 1000 / a.sample_rate.max(1);
                        if let Some(ms) = utterances.frame(&a.audio, frame_ms.max(1)) {
                            pipecat::encode(
                                Kind::Transcription(pipecat::TranscriptionFrame {
                                    text: format!("[spoke for {:.1} s]", f64::from(ms) / 1000.0),
                                    user_id: "caller".into(),
                                    ..Default::default()
                                }),
                                &mut buf,
                            );
                            ws.feed(Message::Binary(buf.split().freeze())).await?;
                        }
                    }
                    match mode {
                        // The frame is already an AudioRawFrame: send it back as is.
                        Mode::Echo | Mode::Demo => Some(Message::Binary(b)),
                        Mode::Tone => {
                            let (pcm, rate) = pipecat::audio_pcm(&a)?;
                            let mut out = BytesMut::with_capacity(pcm.len());
                            tone.fill(rate, pcm.len() / 2, &mut out);
                            pipecat::encode(
                                Kind::Audio(AudioRawFrame {
                                    audio: out.freeze(),
                                    sample_rate: rate,
                                    num_channels: 1,
                                    ..Default::default()
                                }),
                                &mut buf,
                            );
                            Some(Message::Binary(buf.split().freeze()))
                        }
                    }
                }
                Ok(Kind::Message(m)) => {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&m.data) {
                        if v["type"] == "voxbridge.start" {
                            let id = v["call_id"].as_str().unwrap_or_default();
                            handle = probe.as_ref().and_then(|p| p.started(id));
                            if mode == Mode::Demo {
                                pipecat::encode(
                                    Kind::Text(pipecat::TextFrame {
                                        text: "Hello, this is the voxbridge demo bot. I repeat what you say."
                                            .into(),
                                        ..Default::default()
                                    }),
                                    &mut buf,
                                );
                                ws.send(Message::Binary(buf.split().freeze())).await?;
                            }
                        }
                    }
                    None
                }
                _ => None,
            },
            Message::Text(t) => match CallerEvent::parse(t.as_str()) {
                Ok(CallerEvent::Start(s)) => {
                    handle = probe.as_ref().and_then(|p| p.started(&s.call_id));
                    let dialect = s.dialect;
                    start = Some(s);
                    // A Genesys AudioHook server answers the client's open.
                    notice(dialect, "opened")
                }
                Ok(CallerEvent::Ping) => start.as_ref().and_then(|s| notice(s.dialect, "pong")),
                Ok(CallerEvent::Stop) => start.as_ref().and_then(|s| notice(s.dialect, "closed")),
                Ok(CallerEvent::Media { payload, .. }) => {
                    let Some(s) = &start else {
                        anyhow::bail!("media before the start message");
                    };
                    if let (Some(p), Some(h)) = (&probe, handle) {
                        p.audio(h, seq, now);
                    }
                    seq += 1;
                    let answer = match mode {
                        Mode::Echo | Mode::Demo => payload,
                        Mode::Tone => {
                            twilio::decode_payload(&payload, &mut raw)?;
                            let samples = raw.len() / s.encoding.bytes_per_sample();
                            buf.clear();
                            tone.fill(s.sample_rate, samples, &mut buf);
                            encode_tone(s, &buf, &mut raw);
                            twilio::encode_payload(&raw, &mut b64);
                            b64.as_str().into()
                        }
                    };
                    let media = BotCommand::Media {
                        payload: answer,
                        encoding: Some(s.encoding),
                        sample_rate: Some(s.sample_rate),
                    };
                    media
                        .write(s.dialect, &s.stream_id)
                        .map(|m| Message::Text(m.into()))
                }
                _ => None,
            },
            Message::Close(_) => return Ok(()),
            _ => None,
        };
        if let Some(r) = reply {
            if delay.is_zero() {
                ws.send(r).await?;
            } else {
                pending.push_back((now + delay, r));
            }
        }
    }
}
