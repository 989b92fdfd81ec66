//! The bot link's message layer, sans-IO: call events in, WebSocket payloads
//! out, and bot messages in, typed inputs out.
//!
//! Two protocols: pipecat Protobuf frames (binary; call metadata, DTMF and
//! the end of the call travel as `MessageFrame` JSON with `type`
//! `voxbridge.start` / `voxbridge.dtmf` / `voxbridge.stop`, which pipecat's
//! serializer hands to the pipeline as transport messages) and Twilio-style
//! Media Streams JSON (text; `connected`, `start`, `media`, `dtmf`, `mark`,
//! `stop`). Per-frame output is written into one `BytesMut` arena and split
//! off as `Bytes`, so once the arena's first block is recycled no frame
//! allocates; bot audio is decoded into a reused sample buffer.

use crate::config::{BotProtocolKind, TwilioEncoding};
use crate::error::MediaError;
use crate::events::{CallInfo, HangupCause, Speaker};
use bytes::{Bytes, BytesMut};
use std::fmt::Write as _;
use voxbridge_codecs::{frame, g711};
use voxbridge_proto::pipecat::{self, Kind, MessageFrame};
use voxbridge_proto::twilio::{self, BotCommand, MediaFormat, StartInfo, StreamEvent};

/// Arena size; one pipecat 24 kHz frame is ~1 KB, a Twilio one ~1.3 KB, a
/// 48 kHz one ~2 KB. Each message is copied into the WebSocket's buffer as
/// it is sent, so the arena is free again by the next frame and a few
/// frames' worth is enough (it is resident for every call: 64 KiB here made
/// a quarter of a call's memory, and 8 KiB an eighth of an RTP call's).
const ARENA: usize = 4 * 1024;

/// Makes room for `need` bytes before writing a message. Called before the
/// next message is built, when the socket has copied and dropped the earlier
/// ones, so `reserve` finds the block unshared and reclaims it in place
/// instead of allocating (reserving right after a split never could).
fn ensure(buf: &mut BytesMut, need: usize, block: usize) {
    if buf.capacity() - buf.len() < need {
        buf.reserve(block.max(need));
    }
}

/// A WebSocket payload to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A text message (UTF-8 guaranteed by construction).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
}

/// What a bot message means for the call.
#[derive(Debug, PartialEq, Eq)]
pub enum BotInput<'a> {
    /// Audio to play: PCM16 samples at `rate`.
    Audio {
        /// Samples (borrowed from the codec's reused buffer).
        pcm: &'a [i16],
        /// Their rate.
        rate: u32,
    },
    /// Barge-in: drop queued audio.
    Clear,
    /// Echo this name back once the audio before it has played.
    Mark(String),
    /// A transcript segment.
    Transcript {
        /// Who spoke.
        speaker: Speaker,
        /// Words.
        text: String,
        /// Bot's user id field.
        user_id: String,
    },
    /// The bot asks to end the call.
    Hangup,
    /// The bot asks to hand the call on to a person (pipecat
    /// `voxbridge.transfer` message with `target`, Twilio-style
    /// `transfer`): a number or a `sip:` URI.
    Transfer(String),
    /// The bot asks for a key press to be played to the caller
    /// (pipecat `voxbridge.dtmf` message with `digit`, Twilio-style `dtmf`).
    Dtmf(char),
    /// Understood and not needed (pipecat frames voxbridge has no use for).
    Ignored,
}

/// Per-call bot message codec.
#[derive(Debug)]
pub struct BotCodec {
    kind: BotProtocolKind,
    encoding: TwilioEncoding,
    rate: u32,
    call_id: String,
    stream_sid: String,
    seq: u64,
    chunk: u64,
    arena: BytesMut,
    pcm: BytesMut,
    b64: String,
    raw: Vec<u8>,
    samples: Vec<i16>,
}

impl BotCodec {
    /// A codec for one call sending audio at `rate` Hz.
    pub fn new(kind: BotProtocolKind, encoding: TwilioEncoding, rate: u32, call_id: &str) -> Self {
        // Stream ids are ours: hex only, so they never need JSON escaping.
        let sid: String = call_id.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        BotCodec {
            kind,
            encoding,
            rate,
            call_id: call_id.to_string(),
            stream_sid: format!("MZ{sid}"),
            seq: 0,
            chunk: 0,
            arena: BytesMut::with_capacity(ARENA),
            pcm: BytesMut::with_capacity(ARENA / 4),
            b64: String::with_capacity(2048),
            raw: Vec::with_capacity(4096),
            samples: Vec::with_capacity(1024),
        }
    }

    /// The Twilio stream id of this call.
    pub fn stream_sid(&self) -> &str {
        &self.stream_sid
    }

    fn take(&mut self) -> Bytes {
        self.arena.split().freeze()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The messages that open the link (metadata first, before any audio).
    pub fn start(&mut self, info: &CallInfo) -> Vec<Outgoing> {
        match self.kind {
            BotProtocolKind::Pipecat => {
                let v = serde_json::json!({
                    "type": "voxbridge.start",
                    "call_id": info.call_id,
                    "route": info.route,
                    "caller": info.caller,
                    "callee": info.callee,
                    "ingress": info.ingress,
                    "params": info.params,
                    "sample_rate": self.rate,
                });
                vec![self.message(v)]
            }
            BotProtocolKind::Twilio => {
                let mut params = info.params.clone();
                if let Some(c) = &info.caller {
                    params.insert("caller".into(), c.clone());
                }
                if let Some(c) = &info.callee {
                    params.insert("callee".into(), c.clone());
                }
                let connected = StreamEvent::Connected {
                    protocol: "Call".into(),
                    version: "1.0.0".into(),
                }
                .to_json();
                let seq = self.next_seq();
                let start = StreamEvent::Start {
                    sequence: seq,
                    start: StartInfo {
                        account_sid: String::new(),
                        stream_sid: self.stream_sid.clone(),
                        call_sid: info.call_id.clone(),
                        tracks: vec!["inbound".into()],
                        media_format: self.media_format(),
                        custom_parameters: params,
                    },
                }
                .to_json();
                vec![Outgoing::Text(connected.into()), Outgoing::Text(start.into())]
            }
        }
    }

    fn media_format(&self) -> MediaFormat {
        let encoding = match self.encoding {
            TwilioEncoding::Mulaw => "audio/x-mulaw",
            TwilioEncoding::L16 => "audio/x-l16",
        };
        MediaFormat {
            encoding: encoding.into(),
            sample_rate: self.rate,
            channels: 1,
        }
    }

    fn message(&mut self, v: serde_json::Value) -> Outgoing {
        ensure(&mut self.arena, 4096, ARENA);
        pipecat::encode(
            Kind::Message(MessageFrame { data: v.to_string() }),
            &mut self.arena,
        );
        Outgoing::Binary(self.take())
    }

    /// One 20 ms frame of caller audio at the bot's rate.
    pub fn audio(&mut self, pcm: &[i16]) -> Outgoing {
        match self.kind {
            BotProtocolKind::Pipecat => {
                ensure(&mut self.pcm, pcm.len() * 2, ARENA / 4);
                ensure(&mut self.arena, pcm.len() * 2 + 64, ARENA);
                // One resize and codecs' conversion loop, which the compiler
                // vectorises (a `put_i16_le` per sample checked capacity 320
                // times a frame: ~1 us).
                let start = self.pcm.len();
                self.pcm.resize(start + pcm.len() * 2, 0);
                frame::write_le(pcm, &mut self.pcm[start..]);
                let samples = self.pcm.split().freeze();
                pipecat::encode_audio(samples, self.rate, &mut self.arena);
                Outgoing::Binary(self.take())
            }
            BotProtocolKind::Twilio => {
                self.raw.clear();
                match self.encoding {
                    TwilioEncoding::Mulaw => {
                        self.raw.resize(pcm.len(), 0);
                        g711::encode_ulaw(pcm, &mut self.raw);
                    }
                    TwilioEncoding::L16 => {
                        self.raw.resize(pcm.len() * 2, 0);
                        frame::write_le(pcm, &mut self.raw);
                    }
                }
                twilio::encode_payload(&self.raw, &mut self.b64);
                let seq = self.next_seq();
                self.chunk += 1;
                ensure(&mut self.arena, self.b64.len() + 256, ARENA);
                let ts_ms = (self.chunk - 1) * 20;
                // Hand-written so no per-frame String or serde_json::Value is built.
                let _ = write!(
                    self.arena,
                    r#"{{"event":"media","sequenceNumber":"{seq}","streamSid":"{}","media":{{"track":"inbound","chunk":"{}","timestamp":"{ts_ms}","payload":""#,
                    self.stream_sid, self.chunk
                );
                self.arena.extend_from_slice(self.b64.as_bytes());
                self.arena.extend_from_slice(b"\"}}");
                Outgoing::Text(self.take())
            }
        }
    }

    /// A key press.
    pub fn dtmf(&mut self, digit: char) -> Outgoing {
        match self.kind {
            BotProtocolKind::Pipecat => self.message(serde_json::json!({
                "type": "voxbridge.dtmf",
                "call_id": self.call_id,
                "digit": digit.to_string(),
            })),
            BotProtocolKind::Twilio => Outgoing::Text(
                StreamEvent::Dtmf {
                    stream_sid: self.stream_sid.as_str().into(),
                    digit: digit.to_string().into(),
                }
                .to_json()
                .into(),
            ),
        }
    }

    /// The audio before mark `name` has been played (Twilio echoes marks;
    /// pipecat has no marks, so nothing is sent).
    pub fn mark_played(&mut self, name: &str) -> Option<Outgoing> {
        match self.kind {
            BotProtocolKind::Pipecat => None,
            BotProtocolKind::Twilio => Some(Outgoing::Text(
                StreamEvent::Mark {
                    stream_sid: self.stream_sid.as_str().into(),
                    name: name.into(),
                }
                .to_json()
                .into(),
            )),
        }
    }

    /// The call ended.
    pub fn stop(&mut self, cause: HangupCause) -> Outgoing {
        match self.kind {
            BotProtocolKind::Pipecat => self.message(serde_json::json!({
                "type": "voxbridge.stop",
                "call_id": self.call_id,
                "cause": cause.as_str(),
            })),
            BotProtocolKind::Twilio => Outgoing::Text(
                StreamEvent::Stop {
                    stream_sid: self.stream_sid.as_str().into(),
                    call_sid: self.call_id.as_str().into(),
                }
                .to_json()
                .into(),
            ),
        }
    }

    /// A binary message from the bot.
    pub fn decode_binary(&mut self, msg: Bytes) -> Result<BotInput<'_>, MediaError> {
        if self.kind != BotProtocolKind::Pipecat {
            return Err(MediaError::BotProtocol(
                "binary message on a Twilio-style link".into(),
            ));
        }
        Ok(match pipecat::decode(msg)? {
            Kind::Audio(a) => {
                if a.num_channels > 1 {
                    return Err(MediaError::BotProtocol(format!(
                        "{} channel audio (mono only)",
                        a.num_channels
                    )));
                }
                let (le, rate) = pipecat::audio_pcm(&a)?;
                if le.len() % 2 != 0 {
                    return Err(MediaError::BotProtocol(format!(
                        "odd PCM16 byte count {}",
                        le.len()
                    )));
                }
                self.samples.resize(le.len() / 2, 0);
                frame::read_le(&le, &mut self.samples);
                BotInput::Audio {
                    pcm: &self.samples,
                    rate,
                }
            }
            Kind::Interruption(_) => BotInput::Clear,
            Kind::Transcription(t) => BotInput::Transcript {
                speaker: Speaker::Caller,
                text: t.text,
                user_id: t.user_id,
            },
            Kind::Text(t) => BotInput::Transcript {
                speaker: Speaker::Bot,
                text: t.text,
                user_id: String::new(),
            },
            Kind::Message(m) => {
                let v: serde_json::Value =
                    serde_json::from_str(&m.data).map_err(|e| MediaError::BotProtocol(e.to_string()))?;
                match v.get("type").and_then(|t| t.as_str()) {
                    Some("voxbridge.hangup") => BotInput::Hangup,
                    Some("voxbridge.transfer") => match v.get("target").and_then(|t| t.as_str()) {
                        Some(t) if !t.trim().is_empty() => BotInput::Transfer(t.trim().to_owned()),
                        _ => {
                            return Err(MediaError::BotProtocol(
                                "voxbridge.transfer without a target".into(),
                            ))
                        }
                    },
                    Some("voxbridge.dtmf") => {
                        BotInput::Dtmf(one_digit(v.get("digit").and_then(|d| d.as_str()).unwrap_or(""))?)
                    }
                    _ => BotInput::Ignored,
                }
            }
        })
    }

    /// A text message from the bot.
    pub fn decode_text(&mut self, msg: &str) -> Result<BotInput<'_>, MediaError> {
        if self.kind != BotProtocolKind::Twilio {
            return Err(MediaError::BotProtocol("text message on a pipecat link".into()));
        }
        Ok(match BotCommand::parse(msg)? {
            BotCommand::Media { payload, .. } => {
                twilio::decode_payload(&payload, &mut self.raw)?;
                // Each branch sizes `samples` and overwrites all of it (a
                // resize to the same length as last frame fills nothing).
                match self.encoding {
                    TwilioEncoding::Mulaw => {
                        self.samples.resize(self.raw.len(), 0);
                        g711::decode_ulaw(&self.raw, &mut self.samples);
                    }
                    TwilioEncoding::L16 => {
                        if self.raw.len() % 2 != 0 {
                            return Err(MediaError::BotProtocol(format!(
                                "odd PCM16 byte count {}",
                                self.raw.len()
                            )));
                        }
                        self.samples.resize(self.raw.len() / 2, 0);
                        frame::read_le(&self.raw, &mut self.samples);
                    }
                }
                BotInput::Audio {
                    pcm: &self.samples,
                    rate: self.rate,
                }
            }
            BotCommand::Mark { name, .. } => BotInput::Mark(name.into_owned()),
            BotCommand::Clear { .. } => BotInput::Clear,
            BotCommand::Dtmf { digit, .. } => BotInput::Dtmf(one_digit(&digit)?),
            BotCommand::Transfer { target, .. } if !target.trim().is_empty() => {
                BotInput::Transfer(target.trim().to_owned())
            }
            BotCommand::Transfer { .. } => {
                return Err(MediaError::BotProtocol("transfer without a target".into()))
            }
        })
    }
}

/// A DTMF key from a bot message: exactly one of 0-9, *, #, A-D.
fn one_digit(s: &str) -> Result<char, MediaError> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if voxbridge_proto::dtmf::event_of(c).is_some() => Ok(c),
        _ => Err(MediaError::BotProtocol(format!("{s:?} is not a DTMF digit"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxbridge_proto::pipecat::{AudioRawFrame, InterruptionFrame, TranscriptionFrame};

    fn info() -> CallInfo {
        CallInfo {
            call_id: "0123-abcd".into(),
            route: "default".into(),
            caller: Some("+15550100".into()),
            ingress: "audiosocket",
            ..Default::default()
        }
    }

    fn text(o: Outgoing) -> String {
        match o {
            Outgoing::Text(b) => String::from_utf8(b.to_vec()).expect("utf8"),
            Outgoing::Binary(_) => panic!("binary"),
        }
    }

    #[test]
    fn twilio_start_and_media_parse_as_twilio_messages() {
        let mut c = BotCodec::new(BotProtocolKind::Twilio, TwilioEncoding::Mulaw, 8000, "0123-abcd");
        let start = c.start(&info());
        assert_eq!(start.len(), 2);
        let s = text(start[1].clone());
        let StreamEvent::Start { start, .. } = StreamEvent::parse(&s).expect("start parses") else {
            panic!("{s}")
        };
        assert_eq!(start.custom_parameters["caller"], "+15550100");
        assert_eq!(start.media_format.encoding, "audio/x-mulaw");
        let m = text(c.audio(&[1000i16; 160]));
        let StreamEvent::Media { payload, chunk, .. } = StreamEvent::parse(&m).expect("media parses") else {
            panic!("{m}")
        };
        assert_eq!(chunk, 1);
        let mut raw = Vec::new();
        twilio::decode_payload(&payload, &mut raw).expect("base64");
        assert_eq!(raw.len(), 160);
        assert_eq!(raw[0], g711::linear_to_ulaw(1000));
    }

    #[test]
    fn twilio_bot_commands_decode() {
        let mut c = BotCodec::new(BotProtocolKind::Twilio, TwilioEncoding::L16, 16000, "x");
        let mut payload = String::new();
        twilio::encode_payload(&[1, 0, 2, 0], &mut payload);
        let media = BotCommand::Media {
            stream_sid: "MZ".into(),
            payload: payload.into(),
        }
        .to_json();
        assert_eq!(
            c.decode_text(&media).expect("media"),
            BotInput::Audio {
                pcm: &[1, 2],
                rate: 16000
            }
        );
        let clear = BotCommand::Clear {
            stream_sid: "MZ".into(),
        }
        .to_json();
        assert_eq!(c.decode_text(&clear).expect("clear"), BotInput::Clear);
        assert!(c.decode_text("{\"event\":\"nope\"}").is_err());
        assert!(c.decode_binary(Bytes::from_static(b"\x00")).is_err());
    }

    #[test]
    fn pipecat_frames_decode_and_audio_round_trips() {
        let mut c = BotCodec::new(BotProtocolKind::Pipecat, TwilioEncoding::L16, 16000, "x");
        let Outgoing::Binary(up) = c.audio(&[7i16; 320]) else {
            panic!("binary")
        };
        let Kind::Audio(a) = pipecat::decode(up).expect("decodes") else {
            panic!("audio")
        };
        assert_eq!(a.sample_rate, 16000);
        assert_eq!(a.audio.len(), 640);
        let mut buf = BytesMut::new();
        pipecat::encode(
            Kind::Audio(AudioRawFrame {
                audio: Bytes::from_static(&[1, 0, 255, 255]),
                sample_rate: 24000,
                num_channels: 1,
                ..Default::default()
            }),
            &mut buf,
        );
        assert_eq!(
            c.decode_binary(buf.split().freeze()).expect("audio"),
            BotInput::Audio {
                pcm: &[1, -1],
                rate: 24000
            }
        );
        pipecat::encode(Kind::Interruption(InterruptionFrame::default()), &mut buf);
        assert_eq!(
            c.decode_binary(buf.split().freeze()).expect("int"),
            BotInput::Clear
        );
        pipecat::encode(
            Kind::Transcription(TranscriptionFrame {
                text: "hello".into(),
                ..Default::default()
            }),
            &mut buf,
        );
        assert!(matches!(
            c.decode_binary(buf.split().freeze()).expect("tr"),
            BotInput::Transcript { speaker: Speaker::Caller, ref text, .. } if text == "hello"
        ));
        pipecat::encode(
            Kind::Message(MessageFrame {
                data: r#"{"type":"voxbridge.hangup"}"#.into(),
            }),
            &mut buf,
        );
        assert_eq!(
            c.decode_binary(buf.split().freeze()).expect("msg"),
            BotInput::Hangup
        );
    }

    #[test]
    fn pipecat_start_is_a_message_frame_with_the_metadata() {
        let mut c = BotCodec::new(BotProtocolKind::Pipecat, TwilioEncoding::L16, 16000, "0123-abcd");
        let out = c.start(&info());
        let Outgoing::Binary(b) = &out[0] else { panic!() };
        let Kind::Message(m) = pipecat::decode(b.clone()).expect("decodes") else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_str(&m.data).expect("json");
        assert_eq!(v["type"], "voxbridge.start");
        assert_eq!(v["call_id"], "0123-abcd");
        assert_eq!(v["caller"], "+15550100");
        assert_eq!(v["sample_rate"], 16000);
    }
}
