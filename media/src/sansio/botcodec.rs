//! The bot link's message layer, sans-IO: call events in, WebSocket payloads
//! out, and bot messages in, typed inputs out.
//!
//! pipecat Protobuf frames (binary; call metadata, DTMF and the end of the
//! call travel as `MessageFrame` JSON with `type` `voxbridge.start` /
//! `voxbridge.dtmf` / `voxbridge.stop`, which pipecat's serializer hands to
//! the pipeline as transport messages), or one of the providers' Media
//! Streams dialects (see `voxbridge_proto::telephony`): JSON text with
//! base64 audio (Twilio, Telnyx, Plivo, Exotel), or raw audio in binary
//! messages with JSON control (Vonage and jambonz PCM16, Genesys AudioHook
//! u-law). Per-frame output is written into one
//! `BytesMut` arena and split off as `Bytes`, so once the arena's first
//! block is recycled no frame allocates; bot audio is decoded into a reused
//! sample buffer.

use crate::config::{BotProtocolKind, TwilioEncoding};
use crate::error::MediaError;
use crate::events::{CallInfo, HangupCause, Speaker};
use bytes::{Bytes, BytesMut};
use voxbridge_codecs::{frame, g711};
use voxbridge_proto::pipecat::{self, Kind, MessageFrame};
use voxbridge_proto::telephony::{BotCommand, Dialect, Encoding, Ids, Opening, RecordingAction};
use voxbridge_proto::twilio;

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
    /// Forget the marks not yet answered (jambonz's `clearMarks`).
    ClearMarks,
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
    /// The bot starts, stops, pauses or resumes the call's recording
    /// (pipecat `voxbridge.recording` message with `action`, Twilio-style
    /// `recording`).
    Recording(RecordingAction),
    /// Understood and not needed (pipecat frames voxbridge has no use for).
    Ignored,
}

/// Per-call bot message codec.
#[derive(Debug)]
pub struct BotCodec {
    /// The JSON dialect; `None` for pipecat's Protobuf frames.
    dialect: Option<Dialect>,
    encoding: Encoding,
    rate: u32,
    call_id: String,
    account_id: String,
    stream_sid: String,
    seq: u64,
    /// The last sequence number the bot's messages carried (Genesys).
    peer_seq: u64,
    chunk: u64,
    arena: BytesMut,
    pcm: BytesMut,
    /// Scratch of the JSON dialects (base64 text, raw payload bytes): made
    /// at their first use and kept, so a pipecat call never holds them.
    b64: String,
    raw: Vec<u8>,
    samples: Vec<i16>,
}

impl BotCodec {
    /// A codec for one call sending audio at `rate` Hz.
    pub fn new(kind: BotProtocolKind, encoding: TwilioEncoding, rate: u32, call_id: &str) -> Self {
        // Stream ids are ours: hex only, so they never need JSON escaping.
        let sid: String = call_id.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        let dialect = kind.dialect();
        BotCodec {
            dialect,
            encoding: encoding.wire(),
            rate,
            call_id: call_id.to_string(),
            account_id: String::new(),
            stream_sid: match dialect {
                Some(Dialect::Twilio) | None => format!("MZ{sid}"),
                Some(_) if sid.is_empty() => "0".into(),
                Some(_) => sid,
            },
            seq: 0,
            peer_seq: 0,
            chunk: 0,
            arena: BytesMut::with_capacity(ARENA),
            pcm: BytesMut::with_capacity(ARENA / 4),
            b64: String::new(),
            raw: Vec::new(),
            samples: Vec::with_capacity(1024),
        }
    }

    /// The stream id of this call in its JSON dialect.
    pub fn stream_sid(&self) -> &str {
        &self.stream_sid
    }

    fn ids(&self) -> Ids<'_> {
        Ids {
            stream_id: &self.stream_sid,
            call_id: &self.call_id,
            account_id: &self.account_id,
            peer_seq: self.peer_seq,
            position_ms: self.chunk * 20,
        }
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
        match self.dialect {
            None => {
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
            Some(dialect) => {
                // The account a provider-compatible hang-up names: the
                // call's tenant, as the control plane bills it.
                if let Some(account) = info.params.get("customer_id").or(info.params.get("account_sid")) {
                    self.account_id.clone_from(account);
                }
                let seq = self.next_seq();
                let opening = Opening {
                    ids: self.ids(),
                    seq,
                    from: info.caller.as_deref(),
                    to: info.callee.as_deref(),
                    encoding: self.encoding,
                    sample_rate: self.rate,
                    params: &info.params,
                };
                dialect
                    .opening(&opening)
                    .into_iter()
                    .map(|m| Outgoing::Text(m.into()))
                    .collect()
            }
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
        match self.dialect {
            Some(d) if d.binary_audio() => {
                self.chunk += 1;
                let width = self.encoding.bytes_per_sample();
                ensure(&mut self.pcm, pcm.len() * width, ARENA / 4);
                let start = self.pcm.len();
                self.pcm.resize(start + pcm.len() * width, 0);
                encode_raw(self.encoding, false, pcm, &mut self.pcm[start..]);
                Outgoing::Binary(self.pcm.split().freeze())
            }
            None => {
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
            Some(dialect) => {
                self.raw.clear();
                self.raw.resize(pcm.len() * self.encoding.bytes_per_sample(), 0);
                encode_raw(self.encoding, dialect.l16_big_endian(), pcm, &mut self.raw);
                twilio::encode_payload(&self.raw, &mut self.b64);
                let seq = self.next_seq();
                self.chunk += 1;
                ensure(&mut self.arena, self.b64.len() + 256, ARENA);
                let ts_ms = (self.chunk - 1) * 20;
                // Written in place: no per-frame String or serde_json::Value.
                let _ = dialect.write_media(
                    &mut self.arena,
                    &self.stream_sid,
                    seq,
                    self.chunk,
                    ts_ms,
                    &self.b64,
                );
                Outgoing::Text(self.take())
            }
        }
    }

    /// A key press.
    pub fn dtmf(&mut self, digit: char) -> Outgoing {
        let seq = self.next_seq();
        match self.dialect {
            None => self.message(serde_json::json!({
                "type": "voxbridge.dtmf",
                "call_id": self.call_id,
                "digit": digit.to_string(),
            })),
            Some(d) => Outgoing::Text(d.dtmf(self.ids(), seq, digit).into()),
        }
    }

    /// A transfer of the call (the bot's or the API's) failed at the far
    /// end and the call goes on: the bot is told in the shape its dialect
    /// asks for a transfer in (voxbridge's extension, as
    /// [`BotInput::Transfer`]), with the target and the SIP status and
    /// reason: pipecat a `voxbridge.transfer_failed` message, jambonz
    /// `{"type":"transferFailed","data":{..}}`, the other JSON dialects
    /// `{"event":"transferFailed","transferFailed":{..}}` (with `streamSid`
    /// on Twilio's). Genesys AudioHook gets nothing: its bots are servers
    /// of Genesys's sequenced protocol, which has no such message.
    pub fn transfer_failed(&mut self, target: &str, code: Option<u16>, reason: &str) -> Option<Outgoing> {
        let what = serde_json::json!({"target": target, "code": code, "reason": reason});
        self.extension_event("voxbridge.transfer_failed", "transferFailed", what)
    }

    /// Voice activity (a route's `vad`): `direction` (`in` the caller,
    /// `out` the bot as the caller heard it) started or stopped speaking
    /// `offset_ms` into the call: pipecat a `voxbridge.vad` message,
    /// jambonz `{"type":"vad","data":{..}}`, the other JSON dialects
    /// `{"event":"vad","vad":{..}}`; Genesys AudioHook nothing.
    pub fn vad(&mut self, direction: &str, speaking: bool, offset_ms: u64) -> Option<Outgoing> {
        let what = serde_json::json!({"direction": direction, "speaking": speaking, "offset_ms": offset_ms});
        self.extension_event("voxbridge.vad", "vad", what)
    }

    /// Answering-machine detection (a route's `amd`, on a call voxbridge
    /// placed): who answered (`human`, `machine`, `not_sure`), by which
    /// rule, how long after the answer: pipecat a `voxbridge.amd` message,
    /// jambonz `{"type":"amd","data":{..}}`, the other JSON dialects
    /// `{"event":"amd","amd":{..}}`; Genesys AudioHook nothing.
    pub fn amd(&mut self, answered_by: &str, cause: &str, after_ms: u64) -> Option<Outgoing> {
        let what = serde_json::json!({"answered_by": answered_by, "cause": cause, "after_ms": after_ms});
        self.extension_event("voxbridge.amd", "amd", what)
    }

    /// One of voxbridge's own events, `what` (a JSON object) in each
    /// dialect's shape: pipecat a `MessageFrame` of type `pipecat_type`
    /// with the call id and `what`'s fields, jambonz
    /// `{"type":name,"data":what}`, Twilio `{"event":name,"streamSid":..,
    /// name:what}`, the other JSON dialects `{"event":name,name:what}`,
    /// Genesys AudioHook nothing (its protocol has no such messages).
    fn extension_event(
        &mut self,
        pipecat_type: &str,
        name: &str,
        what: serde_json::Value,
    ) -> Option<Outgoing> {
        let event = match self.dialect {
            None => {
                let mut v = serde_json::json!({"type": pipecat_type, "call_id": self.call_id});
                if let (Some(m), serde_json::Value::Object(fields)) = (v.as_object_mut(), what) {
                    m.extend(fields);
                }
                return Some(self.message(v));
            }
            Some(Dialect::Genesys) => return None,
            Some(Dialect::Jambonz) => serde_json::json!({"type": name, "data": what}),
            Some(Dialect::Twilio) => serde_json::json!({
                "event": name,
                "streamSid": self.stream_sid,
                name: what,
            }),
            Some(_) => serde_json::json!({"event": name, name: what}),
        };
        Some(Outgoing::Text(event.to_string().into()))
    }

    /// The audio before mark `name` has been played (the JSON dialects
    /// echo marks; pipecat has no marks, so nothing is sent).
    pub fn mark_played(&mut self, name: &str) -> Option<Outgoing> {
        let d = self.dialect?;
        let seq = self.seq + 1;
        let m = d.mark_played(self.ids(), seq, name)?;
        self.seq = seq;
        Some(Outgoing::Text(m.into()))
    }

    /// When this dialect's keepalive goes out (first after the link is up,
    /// then how often), if it has one (Genesys's `ping`).
    pub fn keepalive_schedule(&self) -> Option<(std::time::Duration, std::time::Duration)> {
        self.dialect?.keepalive_schedule()
    }

    /// The dialect's keepalive message, if it has one (written in place,
    /// as the media messages are).
    pub fn keepalive(&mut self) -> Option<Outgoing> {
        let d = self.dialect?;
        let seq = self.seq + 1;
        ensure(&mut self.arena, 256, ARENA);
        let ids = Ids {
            stream_id: &self.stream_sid,
            call_id: &self.call_id,
            account_id: &self.account_id,
            peer_seq: self.peer_seq,
            position_ms: self.chunk * 20,
        };
        if d.write_keepalive(&mut self.arena, ids, seq)?.is_err() {
            self.arena.clear();
            return None;
        }
        self.seq = seq;
        Some(Outgoing::Text(self.take()))
    }

    /// A barge-in dropped the audio before mark `name`: the dialect's own
    /// answer for that (jambonz's `cleared`), or `None` where it answers
    /// such a mark as played ([`BotCodec::mark_played`]).
    pub fn mark_cleared(&mut self, name: &str) -> Option<Outgoing> {
        let m = self.dialect?.mark_cleared(name)?;
        Some(Outgoing::Text(m.into()))
    }

    /// The bot's barge-in was carried out, where the dialect answers it
    /// (Plivo's `clearedAudio`).
    pub fn cleared(&mut self) -> Option<Outgoing> {
        let d = self.dialect?;
        let seq = self.seq + 1;
        let m = d.cleared(self.ids(), seq)?;
        self.seq = seq;
        Some(Outgoing::Text(m.into()))
    }

    /// The call ended: the message that says so, where the protocol has one
    /// (Plivo's streams end with the socket).
    pub fn stop(&mut self, cause: HangupCause) -> Option<Outgoing> {
        let seq = self.next_seq();
        match self.dialect {
            None => Some(self.message(serde_json::json!({
                "type": "voxbridge.stop",
                "call_id": self.call_id,
                "cause": cause.as_str(),
            }))),
            Some(d) => d
                .stop(self.ids(), seq, cause.as_str())
                .map(|m| Outgoing::Text(m.into())),
        }
    }

    /// A binary message from the bot.
    pub fn decode_binary(&mut self, msg: Bytes) -> Result<BotInput<'_>, MediaError> {
        if self.dialect.is_some_and(Dialect::binary_audio) {
            // Raw audio at the stream's rate: PCM16 little-endian, or u-law.
            decode_raw(self.encoding, false, &msg, &mut self.samples)?;
            return Ok(BotInput::Audio {
                pcm: &self.samples,
                rate: self.rate,
            });
        }
        if let Some(d) = self.dialect {
            return Err(MediaError::BotProtocol(format!(
                "binary message on a {} link (its messages are JSON text)",
                d.name()
            )));
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
                    Some("voxbridge.recording") => {
                        let action = v.get("action").and_then(|a| a.as_str()).unwrap_or("");
                        BotInput::Recording(RecordingAction::parse(action).ok_or_else(|| {
                            MediaError::BotProtocol(format!(
                                "voxbridge.recording: action {action:?} (start, stop, pause or resume)"
                            ))
                        })?)
                    }
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
        let Some(dialect) = self.dialect else {
            return Err(MediaError::BotProtocol("text message on a pipecat link".into()));
        };
        if dialect == Dialect::Genesys {
            // The client's next messages name it as `serverseq`.
            if let Some(seq) = voxbridge_proto::telephony::audiohook_seq(msg) {
                self.peer_seq = seq;
            }
        }
        Ok(match BotCommand::parse(dialect, msg)? {
            BotCommand::Media {
                payload,
                encoding,
                sample_rate,
            } => {
                // Plivo's playAudio names its own format; the others play
                // in the stream's.
                let encoding = encoding.unwrap_or(self.encoding);
                let rate = match encoding {
                    Encoding::Mulaw | Encoding::Alaw => 8000,
                    Encoding::L16 => sample_rate.unwrap_or(self.rate),
                };
                twilio::decode_payload(&payload, &mut self.raw)?;
                decode_raw(encoding, dialect.l16_big_endian(), &self.raw, &mut self.samples)?;
                BotInput::Audio {
                    pcm: &self.samples,
                    rate,
                }
            }
            BotCommand::Mark { name } => BotInput::Mark(name.into_owned()),
            BotCommand::Clear => BotInput::Clear,
            BotCommand::ClearMarks => BotInput::ClearMarks,
            BotCommand::Dtmf { digit } => BotInput::Dtmf(one_digit(&digit)?),
            BotCommand::Transfer { target } if !target.trim().is_empty() => {
                BotInput::Transfer(target.trim().to_owned())
            }
            BotCommand::Transfer { .. } => {
                return Err(MediaError::BotProtocol("transfer without a target".into()))
            }
            BotCommand::Hangup => BotInput::Hangup,
            BotCommand::Recording { action } => BotInput::Recording(action),
            BotCommand::Notice { .. } => BotInput::Ignored,
        })
    }
}

/// Encodes `pcm` in `encoding` into `out`, sized for it (one byte a
/// sample for G.711, two for L16).
fn encode_raw(encoding: Encoding, big_endian: bool, pcm: &[i16], out: &mut [u8]) {
    match encoding {
        Encoding::Mulaw => g711::encode_ulaw(pcm, out),
        Encoding::Alaw => g711::encode_alaw(pcm, out),
        Encoding::L16 if big_endian => {
            frame::write_be(pcm, out);
        }
        Encoding::L16 => {
            frame::write_le(pcm, out);
        }
    }
}

/// Decodes `raw` audio in `encoding` into `samples`, sized to fit and all
/// overwritten (a resize to last frame's length fills nothing).
fn decode_raw(
    encoding: Encoding,
    big_endian: bool,
    raw: &[u8],
    samples: &mut Vec<i16>,
) -> Result<(), MediaError> {
    match encoding {
        Encoding::Mulaw => {
            samples.resize(raw.len(), 0);
            g711::decode_ulaw(raw, samples);
        }
        Encoding::Alaw => {
            samples.resize(raw.len(), 0);
            g711::decode_alaw(raw, samples);
        }
        Encoding::L16 => {
            if raw.len() % 2 != 0 {
                return Err(MediaError::BotProtocol(format!(
                    "odd PCM16 byte count {}",
                    raw.len()
                )));
            }
            samples.resize(raw.len() / 2, 0);
            if big_endian {
                frame::read_be(raw, samples);
            } else {
                frame::read_le(raw, samples);
            }
        }
    }
    Ok(())
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
    use voxbridge_proto::telephony::CallerEvent;
    use voxbridge_proto::twilio::{BotCommand as TwilioCommand, StreamEvent};

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
        let media = TwilioCommand::Media {
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
        let clear = TwilioCommand::Clear {
            stream_sid: "MZ".into(),
        }
        .to_json();
        assert_eq!(c.decode_text(&clear).expect("clear"), BotInput::Clear);
        assert!(c.decode_text("{\"event\":\"nope\"}").is_err());
        assert!(c.decode_binary(Bytes::from_static(b"\x00")).is_err());
    }

    /// Caller audio of one codec, as the bot side reads it back: the
    /// dialect's start, then the PCM of its first media message.
    fn bot_side_reads(
        c: &mut BotCodec,
        pcm: &[i16],
    ) -> (Box<voxbridge_proto::telephony::StartInfo>, Vec<i16>) {
        let start = c
            .start(&info())
            .into_iter()
            .find_map(|o| match CallerEvent::parse(&text(o)).expect("parses") {
                CallerEvent::Start(s) => Some(s),
                _ => None,
            })
            .expect("a start");
        let m = text(c.audio(pcm));
        let CallerEvent::Media { payload, .. } = CallerEvent::parse(&m).expect("media parses") else {
            panic!("{m}")
        };
        let mut raw = Vec::new();
        twilio::decode_payload(&payload, &mut raw).expect("base64");
        let mut back = vec![0i16; raw.len() / start.encoding.bytes_per_sample()];
        match (start.encoding, start.dialect.l16_big_endian()) {
            (Encoding::Mulaw, _) => g711::decode_ulaw(&raw, &mut back),
            (Encoding::Alaw, _) => g711::decode_alaw(&raw, &mut back),
            (Encoding::L16, true) => _ = frame::read_be(&raw, &mut back),
            (Encoding::L16, false) => _ = frame::read_le(&raw, &mut back),
        }
        (start, back)
    }

    #[test]
    fn every_dialect_carries_caller_audio_in_its_encoding() {
        let ramp: Vec<i16> = (0..480).map(|i| (i * 61 - 15000) as i16).collect();
        for (kind, enc, rate) in [
            (BotProtocolKind::Telnyx, TwilioEncoding::L16, 16000),
            (BotProtocolKind::Telnyx, TwilioEncoding::Alaw, 8000),
            (BotProtocolKind::Plivo, TwilioEncoding::Mulaw, 8000),
            (BotProtocolKind::Plivo, TwilioEncoding::L16, 16000),
            (BotProtocolKind::Exotel, TwilioEncoding::L16, 8000),
            (BotProtocolKind::Twilio, TwilioEncoding::L16, 24000),
        ] {
            let mut c = BotCodec::new(kind, enc, rate, "0123-abcd");
            let pcm = &ramp[..(rate / 50) as usize];
            let (start, back) = bot_side_reads(&mut c, pcm);
            assert_eq!(Some(start.dialect), kind.dialect());
            assert_eq!(
                (start.encoding, start.sample_rate),
                (enc.wire(), rate),
                "{kind:?}"
            );
            assert_eq!(start.call_id, "0123-abcd");
            assert_eq!(start.from.as_deref(), Some("+15550100"), "{kind:?}");
            assert_eq!(back.len(), pcm.len(), "{kind:?}");
            if enc == TwilioEncoding::L16 {
                assert_eq!(back, pcm, "{kind:?}: linear audio is exact (byte order right)");
            } else {
                let worst = back.iter().zip(pcm).map(|(a, b)| (a - b).abs()).max();
                assert!(
                    worst.is_some_and(|w| w < 600),
                    "{kind:?}: G.711 within a step: {worst:?}"
                );
            }
        }
    }

    #[test]
    fn plivo_plays_what_playaudio_names_and_answers_barge_in_and_checkpoints() {
        let mut c = BotCodec::new(BotProtocolKind::Plivo, TwilioEncoding::Mulaw, 8000, "abc");
        let mut payload = String::new();
        twilio::encode_payload(&[1, 0, 2, 0], &mut payload);
        let play = BotCommand::Media {
            payload: payload.as_str().into(),
            encoding: Some(Encoding::L16),
            sample_rate: Some(16000),
        }
        .write(Dialect::Plivo, "abc")
        .expect("Plivo writes audio as JSON");
        assert_eq!(
            c.decode_text(&play).expect("playAudio"),
            BotInput::Audio {
                pcm: &[1, 2],
                rate: 16000
            }
        );
        let checkpoint = BotCommand::Mark {
            name: "greeting".into(),
        }
        .write(Dialect::Plivo, "abc")
        .expect("checkpoint");
        assert_eq!(
            c.decode_text(&checkpoint).expect("checkpoint"),
            BotInput::Mark("greeting".into())
        );
        let played = text(c.mark_played("greeting").expect("Plivo answers checkpoints"));
        assert!(played.contains("\"playedStream\""), "{played}");
        let cleared = text(c.cleared().expect("Plivo answers clearAudio"));
        assert_eq!(
            CallerEvent::parse(&cleared).expect("parses"),
            CallerEvent::Cleared
        );
        assert!(
            c.stop(HangupCause::CallerHangup).is_none(),
            "Plivo streams end by closing"
        );
        assert!(c
            .decode_text(r#"{"event":"media","media":{"payload":""}}"#)
            .is_err());
        let mut t = BotCodec::new(BotProtocolKind::Telnyx, TwilioEncoding::Mulaw, 8000, "abc");
        assert!(t.cleared().is_none(), "Telnyx does not answer clear");
        assert!(t.stop(HangupCause::CallerHangup).is_some());
    }

    #[test]
    fn vonage_and_jambonz_carry_raw_pcm_both_ways_and_json_control() {
        for (kind, rate) in [(BotProtocolKind::Vonage, 16000), (BotProtocolKind::Jambonz, 8000)] {
            let dialect = kind.dialect().expect("a dialect");
            let mut c = BotCodec::new(kind, TwilioEncoding::L16, rate, "0123-abcd");
            let start = c.start(&info());
            assert_eq!(start.len(), 1, "{kind:?}: one opening text message");
            let CallerEvent::Start(s) = CallerEvent::parse(&text(start[0].clone())).expect("parses") else {
                panic!("{kind:?}: no start")
            };
            assert_eq!(
                (s.dialect, s.sample_rate, s.call_id.as_str()),
                (dialect, rate, "0123-abcd")
            );
            let pcm: Vec<i16> = (0..(rate / 50) as i16).map(|i| i * 97 - 9000).collect();
            let Outgoing::Binary(up) = c.audio(&pcm) else {
                panic!("{kind:?}: audio is binary")
            };
            let mut back = vec![0i16; up.len() / 2];
            frame::read_le(&up, &mut back);
            assert_eq!(back, pcm, "{kind:?}: little-endian, exact");
            assert_eq!(
                c.decode_binary(Bytes::from_static(&[1, 0, 255, 255]))
                    .expect("audio"),
                BotInput::Audio { pcm: &[1, -1], rate }
            );
            assert!(
                c.decode_binary(Bytes::from_static(&[1])).is_err(),
                "odd byte count"
            );
            let clear = BotCommand::Clear.write(dialect, "").expect("clear");
            assert_eq!(c.decode_text(&clear).expect("clear"), BotInput::Clear);
            let mark = if dialect == Dialect::Vonage {
                r#"{"n":1}"#
            } else {
                "m1"
            };
            let m = BotCommand::Mark { name: mark.into() }
                .write(dialect, "")
                .expect("mark");
            assert_eq!(c.decode_text(&m).expect("mark"), BotInput::Mark(mark.into()));
            let played = text(c.mark_played(mark).expect("marks are answered"));
            assert_eq!(
                CallerEvent::parse(&played).expect("parses"),
                CallerEvent::Mark { name: mark.into() },
                "{kind:?}: {played}"
            );
            assert!(
                c.stop(HangupCause::CallerHangup).is_none(),
                "{kind:?}: ends by closing"
            );
            let dtmf = text(c.dtmf('9'));
            assert!(
                matches!(CallerEvent::parse(&dtmf).expect("dtmf"), CallerEvent::Dtmf { digit } if digit == "9")
            );
        }
        let mut v = BotCodec::new(BotProtocolKind::Vonage, TwilioEncoding::L16, 16000, "x");
        let cleared = text(v.cleared().expect("Vonage answers clear"));
        assert_eq!(
            CallerEvent::parse(&cleared).expect("parses"),
            CallerEvent::Cleared
        );
        let mut j = BotCodec::new(BotProtocolKind::Jambonz, TwilioEncoding::L16, 8000, "x");
        assert_eq!(
            j.decode_text(r#"{"type":"disconnect"}"#).expect("disconnect"),
            BotInput::Hangup
        );
        assert!(j.decode_text(r#"{"event":"media"}"#).is_err(), "not jambonz");
    }

    #[test]
    fn genesys_opens_carries_ulaw_both_ways_and_closes() {
        let mut c = BotCodec::new(BotProtocolKind::Genesys, TwilioEncoding::Mulaw, 8000, "0123-abcd");
        let open = c.start(&info());
        assert_eq!(open.len(), 1);
        let CallerEvent::Start(s) = CallerEvent::parse(&text(open[0].clone())).expect("open parses") else {
            panic!("no open")
        };
        assert_eq!(
            (s.dialect, s.encoding, s.call_id.as_str()),
            (Dialect::Genesys, Encoding::Mulaw, "0123-abcd")
        );
        let Outgoing::Binary(up) = c.audio(&[1000i16; 160]) else {
            panic!("audio is binary")
        };
        assert_eq!((up.len(), up[0]), (160, g711::linear_to_ulaw(1000)));
        let ulaw = Bytes::from(vec![g711::linear_to_ulaw(-700); 160]);
        assert_eq!(
            c.decode_binary(ulaw).expect("audio"),
            BotInput::Audio {
                pcm: &[g711::ulaw_to_linear(g711::linear_to_ulaw(-700)); 160],
                rate: 8000
            }
        );
        let opened = r#"{"version":"2","type":"opened","seq":5,"clientseq":1,"id":"x","parameters":{}}"#;
        assert_eq!(c.decode_text(opened).expect("opened"), BotInput::Ignored);
        let dtmf: serde_json::Value = serde_json::from_str(&text(c.dtmf('3'))).expect("json");
        assert_eq!(
            (
                &dtmf["type"],
                &dtmf["serverseq"],
                &dtmf["position"],
                &dtmf["parameters"]["digit"]
            ),
            (&"dtmf".into(), &5.into(), &"PT0.020S".into(), &"3".into()),
            "numbered after the bot's opened, positioned after one frame"
        );
        assert!(c.mark_played("m").is_none(), "Genesys has no marks");
        let close = text(c.stop(HangupCause::CallerHangup).expect("close"));
        assert_eq!(CallerEvent::parse(&close).expect("close"), CallerEvent::Stop);
        let disconnect = r#"{"version":"2","type":"disconnect","seq":6,"parameters":{"reason":"completed"}}"#;
        assert_eq!(c.decode_text(disconnect).expect("disconnect"), BotInput::Hangup);
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

    #[test]
    fn who_answered_is_told_in_each_dialects_shape() {
        let mut c = BotCodec::new(BotProtocolKind::Pipecat, TwilioEncoding::L16, 16000, "0123-abcd");
        let Some(Outgoing::Binary(b)) = c.amd("machine", "long_greeting", 2100) else {
            panic!("pipecat is told")
        };
        let Kind::Message(m) = pipecat::decode(b).expect("decodes") else {
            panic!("a message frame")
        };
        let v: serde_json::Value = serde_json::from_str(&m.data).expect("json");
        assert_eq!(
            (
                v["type"].as_str(),
                v["answered_by"].as_str(),
                v["after_ms"].as_u64()
            ),
            (Some("voxbridge.amd"), Some("machine"), Some(2100))
        );
        let mut t = BotCodec::new(BotProtocolKind::Telnyx, TwilioEncoding::Mulaw, 8000, "abc");
        let v: serde_json::Value =
            serde_json::from_str(&text(t.amd("human", "human", 1700).expect("told"))).expect("json");
        assert_eq!(
            (v["event"].as_str(), v["amd"]["cause"].as_str()),
            (Some("amd"), Some("human"))
        );
    }

    #[test]
    fn voice_activity_is_told_in_each_dialects_shape() {
        let mut c = BotCodec::new(BotProtocolKind::Pipecat, TwilioEncoding::L16, 16000, "0123-abcd");
        let Some(Outgoing::Binary(b)) = c.vad("in", true, 1240) else {
            panic!("pipecat is told")
        };
        let Kind::Message(m) = pipecat::decode(b).expect("decodes") else {
            panic!("a message frame")
        };
        let v: serde_json::Value = serde_json::from_str(&m.data).expect("json");
        assert_eq!(v["type"], "voxbridge.vad");
        assert_eq!(
            (
                v["direction"].as_str(),
                v["speaking"].as_bool(),
                v["offset_ms"].as_u64()
            ),
            (Some("in"), Some(true), Some(1240))
        );
        assert_eq!(v["call_id"], "0123-abcd");

        let mut t = BotCodec::new(BotProtocolKind::Twilio, TwilioEncoding::Mulaw, 8000, "0123-abcd");
        let v: serde_json::Value =
            serde_json::from_str(&text(t.vad("out", false, 99).expect("Twilio-style is told")))
                .expect("json");
        assert_eq!(v["event"], "vad");
        assert_eq!(v["streamSid"], t.stream_sid());
        assert_eq!(
            (v["vad"]["direction"].as_str(), v["vad"]["speaking"].as_bool()),
            (Some("out"), Some(false))
        );
        let mut j = BotCodec::new(BotProtocolKind::Jambonz, TwilioEncoding::L16, 8000, "abc");
        let v: serde_json::Value =
            serde_json::from_str(&text(j.vad("in", true, 5).expect("jambonz is told"))).expect("json");
        assert_eq!(
            (v["type"].as_str(), v["data"]["offset_ms"].as_u64()),
            (Some("vad"), Some(5))
        );
        let mut p = BotCodec::new(BotProtocolKind::Plivo, TwilioEncoding::Mulaw, 8000, "abc");
        let v: serde_json::Value =
            serde_json::from_str(&text(p.vad("in", true, 5).expect("Plivo is told"))).expect("json");
        assert_eq!(
            (v["event"].as_str(), v["vad"]["speaking"].as_bool()),
            (Some("vad"), Some(true))
        );
        let mut g = BotCodec::new(BotProtocolKind::Genesys, TwilioEncoding::Mulaw, 8000, "abc");
        assert!(g.vad("in", true, 5).is_none(), "AudioHook has no word for it");
    }

    #[test]
    fn a_failed_transfer_is_told_in_the_dialects_that_can_ask_for_one() {
        let mut c = BotCodec::new(BotProtocolKind::Pipecat, TwilioEncoding::L16, 16000, "0123-abcd");
        let Some(Outgoing::Binary(b)) = c.transfer_failed("+15550123", Some(486), "Busy Here") else {
            panic!("pipecat is told")
        };
        let Kind::Message(m) = pipecat::decode(b).expect("decodes") else {
            panic!("a message frame")
        };
        let v: serde_json::Value = serde_json::from_str(&m.data).expect("json");
        assert_eq!(v["type"], "voxbridge.transfer_failed");
        assert_eq!(
            (v["target"].as_str(), v["code"].as_u64()),
            (Some("+15550123"), Some(486))
        );
        assert_eq!(v["reason"], "Busy Here");

        let mut t = BotCodec::new(BotProtocolKind::Twilio, TwilioEncoding::Mulaw, 8000, "0123-abcd");
        let said = text(
            t.transfer_failed("sip:desk@pbx", None, "no answer to REFER")
                .expect("Twilio-style is told"),
        );
        let v: serde_json::Value = serde_json::from_str(&said).expect("json");
        assert_eq!(v["event"], "transferFailed");
        assert_eq!(v["streamSid"], t.stream_sid());
        assert_eq!(v["transferFailed"]["target"], "sip:desk@pbx");
        assert!(v["transferFailed"]["code"].is_null());

        let mut p = BotCodec::new(BotProtocolKind::Plivo, TwilioEncoding::Mulaw, 8000, "abc");
        let said = text(p.transfer_failed("+1", Some(486), "Busy").expect("Plivo is told"));
        let v: serde_json::Value = serde_json::from_str(&said).expect("json");
        assert_eq!(
            (v["event"].as_str(), v["transferFailed"]["code"].as_u64()),
            (Some("transferFailed"), Some(486))
        );
        let mut j = BotCodec::new(BotProtocolKind::Jambonz, TwilioEncoding::L16, 8000, "abc");
        let said = text(
            j.transfer_failed("+1", Some(486), "Busy")
                .expect("jambonz is told"),
        );
        let v: serde_json::Value = serde_json::from_str(&said).expect("json");
        assert_eq!(
            (v["type"].as_str(), v["data"]["reason"].as_str()),
            (Some("transferFailed"), Some("Busy"))
        );
        let mut g = BotCodec::new(BotProtocolKind::Genesys, TwilioEncoding::Mulaw, 8000, "abc");
        assert!(
            g.transfer_failed("+1", Some(486), "Busy").is_none(),
            "AudioHook has no word for it"
        );
    }
}
