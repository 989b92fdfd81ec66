//! The built-in simulated callee, for tests and `voxbridge demo`. Each
//! attempt does what the target's `vars.sim` says: a comma-separated list
//! of `answer`, `machine`, `busy`, `no_answer` and `fail`, one per attempt
//! (the last one repeats); without it, `default` from the config.
//!
//! - `answer`: after `answer_delay_ms` it connects to the route's
//!   AudioSocket listener as Asterisk would (UUID frame = call id), speaks
//!   its WAV in real-time 20 ms frames (the first `max_talk_ms` of it),
//!   listens `linger_ms` more and hangs up with a hangup frame;
//! - `machine`: answers as a voicemail would: its WAV as the greeting,
//!   300 ms of silence, a 500 ms beep at 1 kHz, then it records (listens)
//!   until the media plane hangs up, a minute at most;
//! - `busy` / `fail`: reports that after `answer_delay_ms`;
//! - `no_answer`: accepts and never connects (the ring timeout ends it).
//!
//! A [`CalleeProbe`] sees every frame sent and heard (the demo's latency
//! figures and WAV).

use super::{DialOutcome, DialRequest, Originator};
use crate::error::{ControlError, Result};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use voxbridge_proto::audiosocket::{AudioSocketCodec, Frame};
use voxbridge_proto::wav::{self, WavEncoding};

/// The speech the callee says when no WAV is configured (8 kHz, see
/// `control/assets/README.md`).
pub const BUILTIN_WAV: &[u8] = include_bytes!("../../assets/callee.wav");

/// `[control.originate.simulated]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatedConfig {
    /// Delay before answering (or reporting busy/failed), ms.
    pub answer_delay_ms: u64,
    /// A mono PCM16 WAV (8 or 16 kHz) to speak; the built-in sentence when absent.
    pub wav: Option<PathBuf>,
    /// Speak at most this much of the WAV, ms (0: all of it).
    pub max_talk_ms: u64,
    /// Listen this long after speaking before hanging up, ms.
    pub linger_ms: u64,
    /// What an attempt does when the target's `vars.sim` says nothing.
    pub default: String,
}

impl Default for SimulatedConfig {
    fn default() -> Self {
        SimulatedConfig {
            answer_delay_ms: 300,
            wav: None,
            max_talk_ms: 0,
            linger_ms: 1500,
            default: "answer".into(),
        }
    }
}

/// What one attempt does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer and speak.
    Answer,
    /// Answer as a voicemail: greet, beep, record.
    Machine,
    /// Busy.
    Busy,
    /// Never answer.
    NoAnswer,
    /// Fail.
    Fail,
}

impl Behaviour {
    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "answer" => Some(Behaviour::Answer),
            "machine" => Some(Behaviour::Machine),
            "busy" => Some(Behaviour::Busy),
            "no_answer" => Some(Behaviour::NoAnswer),
            "fail" => Some(Behaviour::Fail),
            _ => None,
        }
    }

    /// The behaviour of attempt `attempt` (from 1) under script `sim`;
    /// unknown words fall back to `default`.
    pub fn of(sim: Option<&str>, attempt: u32, default: Behaviour) -> Behaviour {
        let Some(sim) = sim else {
            return default;
        };
        let steps: Vec<&str> = sim.split(',').collect();
        let i = (attempt.max(1) as usize - 1).min(steps.len().saturating_sub(1));
        steps.get(i).and_then(|s| Behaviour::parse(s)).unwrap_or(default)
    }
}

/// Sees what the simulated callee sends and hears.
pub trait CalleeProbe: Send + Sync + 'static {
    /// Frame `seq` (from 0) of `call_id` was written to the socket.
    fn sent(&self, call_id: &str, seq: u64, pcm: &[u8], at: Instant);
    /// A frame of bot audio arrived.
    fn heard(&self, call_id: &str, pcm: &[u8], at: Instant);
    /// The call is over (hung up by either side).
    fn ended(&self, call_id: &str);
}

/// The simulated callee.
pub struct SimulatedCallee {
    cfg: SimulatedConfig,
    default: Behaviour,
    /// PCM16 LE and its rate.
    speech: (Bytes, u32),
    running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    probe: OnceLock<Arc<dyn CalleeProbe>>,
}

impl std::fmt::Debug for SimulatedCallee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedCallee").field("cfg", &self.cfg).finish()
    }
}

/// Reads a mono PCM16 WAV at a rate AudioSocket carries.
pub fn load_speech(bytes: &[u8]) -> Result<(Bytes, u32)> {
    let h = wav::parse_header(bytes).map_err(|e| ControlError::Config(format!("callee WAV: {e}")))?;
    if h.encoding != WavEncoding::Pcm16 {
        return Err(ControlError::Config("callee WAV must be PCM16".into()));
    }
    if voxbridge_proto::audiosocket::audio_kind(h.rate).is_none() {
        return Err(ControlError::Config(format!(
            "callee WAV rate {} Hz is not an AudioSocket rate",
            h.rate
        )));
    }
    let end = h
        .data_len
        .map_or(bytes.len(), |n| (h.data_offset + n as usize).min(bytes.len()));
    let pcm = bytes.get(h.data_offset..end).unwrap_or_default();
    Ok((Bytes::copy_from_slice(&pcm[..pcm.len() & !1]), h.rate))
}

impl SimulatedCallee {
    /// Loads the WAV and checks the default behaviour.
    pub fn new(cfg: &SimulatedConfig) -> Result<Self> {
        let default = Behaviour::parse(&cfg.default).ok_or_else(|| {
            ControlError::Config(format!(
                "[control.originate.simulated] default {:?}: use answer, machine, busy, no_answer or fail",
                cfg.default
            ))
        })?;
        let speech = match &cfg.wav {
            Some(p) => {
                let b =
                    std::fs::read(p).map_err(|e| ControlError::Config(format!("{}: {e}", p.display())))?;
                load_speech(&b)?
            }
            None => load_speech(BUILTIN_WAV)?,
        };
        Ok(SimulatedCallee {
            cfg: cfg.clone(),
            default,
            speech,
            running: Mutex::new(HashMap::new()),
            probe: OnceLock::new(),
        })
    }

    /// Sets the probe (the first one set stays).
    pub fn set_probe(&self, probe: Arc<dyn CalleeProbe>) {
        let _ = self.probe.set(probe);
    }

    /// The speech's length, ms.
    pub fn speech_ms(&self) -> u64 {
        let (pcm, rate) = &self.speech;
        (pcm.len() as u64 / 2) * 1000 / u64::from(*rate).max(1)
    }
}

#[async_trait]
impl Originator for SimulatedCallee {
    fn name(&self) -> &'static str {
        "simulated"
    }

    async fn originate(&self, req: &DialRequest) -> DialOutcome {
        let sim = req.vars.get("sim").and_then(|v| v.as_str());
        let delay = Duration::from_millis(self.cfg.answer_delay_ms);
        match Behaviour::of(sim, req.attempt, self.default) {
            Behaviour::NoAnswer => DialOutcome::Accepted,
            Behaviour::Busy => {
                tokio::time::sleep(delay).await;
                DialOutcome::Busy
            }
            Behaviour::Fail => {
                tokio::time::sleep(delay).await;
                DialOutcome::Failed("simulated failure".into())
            }
            answer @ (Behaviour::Answer | Behaviour::Machine) => {
                let Some(addr) = req.audiosocket else {
                    return DialOutcome::Failed(format!("no AudioSocket listener for route {:?}", req.route));
                };
                let machine = answer == Behaviour::Machine;
                let max_talk = Duration::from_millis(self.cfg.max_talk_ms);
                let leg = Leg {
                    call_id: req.call_id.clone(),
                    // A voicemail's greeting is cut, not its beep.
                    speech: if machine {
                        with_beep(&self.speech, max_talk)
                    } else {
                        self.speech.clone()
                    },
                    max_talk: if machine { Duration::ZERO } else { max_talk },
                    linger: if machine {
                        VOICEMAIL_RECORDS
                    } else {
                        Duration::from_millis(self.cfg.linger_ms)
                    },
                    probe: self.probe.get().cloned(),
                };
                let id = req.call_id.clone();
                let task = tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let call_id = leg.call_id.clone();
                    if let Err(e) = leg.run(addr).await {
                        tracing::warn!(call_id, error = %e, "simulated callee: call ended with an error");
                    }
                });
                let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
                running.retain(|_, t| !t.is_finished());
                running.insert(id, task.abort_handle());
                DialOutcome::Accepted
            }
        }
    }

    async fn cancel(&self, call_id: &str) {
        let task = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(call_id);
        if let Some(t) = task {
            t.abort();
        }
    }
}

/// How long a simulated voicemail records after its beep at most.
const VOICEMAIL_RECORDS: Duration = Duration::from_secs(60);

/// A voicemail's greeting: `speech` (its first `max_talk`, unless zero),
/// 300 ms of silence, a 500 ms beep at 1 kHz (PCM16 LE at its rate).
fn with_beep((pcm, rate): &(Bytes, u32), max_talk: Duration) -> (Bytes, u32) {
    let mut greeting = pcm.len();
    if !max_talk.is_zero() {
        greeting = greeting.min((max_talk.as_millis() as usize * *rate as usize / 1000) * 2);
    }
    let mut out = BytesMut::from(&pcm[..greeting]);
    out.resize(out.len() + (*rate as usize * 3 / 10) * 2, 0);
    let w = std::f64::consts::TAU * 1000.0 / f64::from(*rate);
    for i in 0..*rate as usize / 2 {
        out.extend_from_slice(&((8000.0 * (w * i as f64).sin()) as i16).to_le_bytes());
    }
    (out.freeze(), *rate)
}

/// One answered call.
struct Leg {
    call_id: String,
    speech: (Bytes, u32),
    max_talk: Duration,
    linger: Duration,
    probe: Option<Arc<dyn CalleeProbe>>,
}

fn uuid_bytes(call_id: &str) -> std::io::Result<[u8; 16]> {
    let hex: String = call_id.chars().filter(|c| *c != '-').collect();
    let mut out = [0u8; 16];
    if hex.len() != 32 {
        return Err(std::io::Error::other(format!(
            "call id {call_id:?} is not a UUID"
        )));
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(i * 2..i * 2 + 2).unwrap_or("zz"), 16)
            .map_err(|_| std::io::Error::other(format!("call id {call_id:?} is not a UUID")))?;
    }
    Ok(out)
}

impl Leg {
    async fn run(self, addr: std::net::SocketAddr) -> std::io::Result<()> {
        let result = self.talk(addr).await;
        if let Some(p) = &self.probe {
            p.ended(&self.call_id);
        }
        result
    }

    async fn talk(&self, addr: std::net::SocketAddr) -> std::io::Result<()> {
        let codec = AudioSocketCodec::new(64 * 1024);
        let mut sock = TcpStream::connect(addr).await?;
        sock.set_nodelay(true)?;
        let mut out = BytesMut::with_capacity(1024);
        let encode = |f: &Frame, out: &mut BytesMut| {
            codec
                .encode_any(f, out)
                .map_err(|e| std::io::Error::other(e.to_string()))
        };
        encode(&Frame::Uuid(uuid_bytes(&self.call_id)?), &mut out)?;
        sock.write_all(&out.split()).await?;
        let (pcm, rate) = &self.speech;
        let frame_bytes = (*rate as usize / 50) * 2;
        let mut talk = pcm.len();
        if !self.max_talk.is_zero() {
            talk = talk.min((self.max_talk.as_millis() as usize * *rate as usize / 1000) * 2);
        }
        let frames = talk.div_ceil(frame_bytes);
        let linger_frames = (self.linger.as_millis() / 20) as usize;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut inbuf = BytesMut::with_capacity(8192);
        let mut silence = BytesMut::new();
        silence.resize(frame_bytes, 0);
        let silence = silence.freeze();
        for seq in 0..frames + linger_frames {
            // Read what arrived meanwhile until the next 20 ms tick.
            loop {
                tokio::select! {
                    biased;
                    _ = tick.tick() => break,
                    r = sock.read_buf(&mut inbuf) => {
                        if r? == 0 {
                            return Ok(()); // media hung up
                        }
                        while let Some(f) = codec.decode_frame(&mut inbuf).map_err(|e| std::io::Error::other(e.to_string()))? {
                            match f {
                                Frame::Audio { pcm, .. } => {
                                    if let Some(p) = &self.probe {
                                        p.heard(&self.call_id, &pcm, Instant::now());
                                    }
                                }
                                Frame::Hangup | Frame::Error(_) => return Ok(()),
                                _ => {}
                            }
                        }
                    }
                }
            }
            let chunk = if seq < frames {
                let from = seq * frame_bytes;
                let mut c = pcm.slice(from..(from + frame_bytes).min(talk));
                if c.len() < frame_bytes {
                    let mut padded = BytesMut::from(&c[..]);
                    padded.resize(frame_bytes, 0);
                    c = padded.freeze();
                }
                c
            } else {
                silence.clone()
            };
            encode(
                &Frame::Audio {
                    rate: *rate,
                    pcm: chunk.clone(),
                },
                &mut out,
            )?;
            sock.write_all(&out.split()).await?;
            if let Some(p) = &self.probe {
                p.sent(&self.call_id, seq as u64, &chunk, Instant::now());
            }
        }
        encode(&Frame::Hangup, &mut out)?;
        sock.write_all(&out.split()).await?;
        // Wait for the daemon to close (it hangs up on our hangup frame).
        let mut sink = [0u8; 4096];
        while tokio::time::timeout(Duration::from_secs(2), sock.read(&mut sink))
            .await
            .is_ok_and(|r| r.is_ok_and(|n| n > 0))
        {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_pick_one_step_per_attempt() {
        let d = Behaviour::Answer;
        assert_eq!(Behaviour::of(None, 1, d), Behaviour::Answer);
        assert_eq!(Behaviour::of(Some("busy,answer"), 1, d), Behaviour::Busy);
        assert_eq!(Behaviour::of(Some("busy,answer"), 2, d), Behaviour::Answer);
        assert_eq!(Behaviour::of(Some("busy,no_answer"), 7, d), Behaviour::NoAnswer);
        assert_eq!(Behaviour::of(Some("machine,answer"), 1, d), Behaviour::Machine);
        assert_eq!(
            Behaviour::of(Some("nonsense"), 1, Behaviour::Fail),
            Behaviour::Fail
        );
    }

    #[test]
    fn the_builtin_speech_loads() {
        let (pcm, rate) = load_speech(BUILTIN_WAV).expect("valid WAV");
        assert_eq!(rate, 8000);
        assert!(pcm.len() > 8000 * 2 * 2, "at least 2 s");
    }

    #[test]
    fn call_ids_become_uuid_bytes() {
        let id = "0123abcd-0000-4000-8000-00000000ffff";
        let b = uuid_bytes(id).expect("uuid");
        assert_eq!(Frame::uuid_string(&b), id);
        assert!(uuid_bytes("not-a-uuid").is_err());
    }
}
