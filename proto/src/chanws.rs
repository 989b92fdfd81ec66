//! Asterisk's WebSocket media channel (`chan_websocket`), both sides, sans-IO.
//!
//! Asterisk 20.16+/21.11+/22.6+/23 can carry a channel's media over a
//! WebSocket (subprotocol `media`), either dialling out to us or taking our
//! connection at `/media/<connection id>`. Media travels as binary messages
//! in the channel's format; control travels as text messages, in one of two
//! forms Asterisk is configured for (`control_message_format` in
//! `chan_websocket.conf`, or the dial string's `f()` option):
//!
//! - plain text: a word, then `key:value` pairs separated by spaces
//!   (`MEDIA_START connection_id:... format:slin16 optimal_frame_size:640 ptime:20`),
//!   or a word and one free-form argument (`MARK_MEDIA <id>`);
//! - JSON: `{"event": "...", ...}` from Asterisk, `{"command": "...", ...}` to it.
//!
//! The first text message of a connection is `MEDIA_START`; its form tells
//! which form Asterisk parses our commands in. Facts taken from Asterisk's
//! `channels/chan_websocket.c` (the message layouts, the 128-byte limit on a
//! command, the queue levels); the tests hold the exact strings it writes.
//!
//! Both directions parse and write, so test peers and the load generator can
//! play Asterisk's part with the same types. Nothing here panics on outside
//! text (fuzz target `chanws_text`).

use crate::error::ProtoError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Longest command text Asterisk reads; longer ones it drops with a warning.
pub const MAX_COMMAND_LEN: usize = 128;
/// Frames Asterisk queues from us at most; binary messages beyond are dropped.
pub const QUEUE_LENGTH_MAX: u32 = 1000;
/// Queue length at which Asterisk sends `MEDIA_XOFF`.
pub const QUEUE_XOFF_LEVEL: u32 = 900;
/// Queue length under which Asterisk sends `MEDIA_XON` after an XOFF.
pub const QUEUE_XON_LEVEL: u32 = 800;
/// Longest text message accepted from Asterisk (its largest, `MEDIA_START`
/// with many channel variables, stays far below).
pub const MAX_EVENT_LEN: usize = 64 * 1024;

/// How control messages are written on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ControlFormat {
    /// `WORD key:value ...` (Asterisk's default).
    #[default]
    PlainText,
    /// `{"event": ...}` / `{"command": ...}`.
    Json,
}

/// A channel's media format, from its Asterisk name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaFormat {
    /// G.711 u-law, 8 kHz, one byte per sample.
    Ulaw,
    /// G.711 A-law, 8 kHz, one byte per sample.
    Alaw,
    /// Signed linear 16-bit little-endian at `rate` (`slin`, `slin16`, ...).
    Slin {
        /// Sample rate, Hz.
        rate: u32,
    },
    /// Opus (passed through as packets, one per message).
    Opus,
    /// Any other format name (refused by the leg, kept for the error).
    Other(String),
}

impl MediaFormat {
    /// The format Asterisk calls `name`.
    pub fn from_name(name: &str) -> MediaFormat {
        match name {
            "ulaw" => MediaFormat::Ulaw,
            "alaw" => MediaFormat::Alaw,
            "slin" => MediaFormat::Slin { rate: 8000 },
            "opus" => MediaFormat::Opus,
            other => match other.strip_prefix("slin").and_then(|k| k.parse::<u32>().ok()) {
                // Asterisk's names: slin12, slin16, slin24, slin32, slin44
                // (44.1 kHz), slin48, slin96, slin192.
                Some(44) => MediaFormat::Slin { rate: 44100 },
                Some(k) if [12, 16, 24, 32, 48, 96, 192].contains(&k) => MediaFormat::Slin { rate: k * 1000 },
                _ => MediaFormat::Other(other.to_string()),
            },
        }
    }

    /// Asterisk's name for the format.
    pub fn name(&self) -> String {
        match self {
            MediaFormat::Ulaw => "ulaw".into(),
            MediaFormat::Alaw => "alaw".into(),
            MediaFormat::Slin { rate: 8000 } => "slin".into(),
            MediaFormat::Slin { rate: 44100 } => "slin44".into(),
            MediaFormat::Slin { rate } => format!("slin{}", rate / 1000),
            MediaFormat::Opus => "opus".into(),
            MediaFormat::Other(n) => n.clone(),
        }
    }

    /// Sample rate, Hz (`None` for an unknown format).
    pub fn rate(&self) -> Option<u32> {
        match self {
            MediaFormat::Ulaw | MediaFormat::Alaw => Some(8000),
            MediaFormat::Slin { rate } => Some(*rate),
            MediaFormat::Opus => Some(48000),
            MediaFormat::Other(_) => None,
        }
    }

    /// Bytes of `ms` milliseconds of audio, for the formats Asterisk re-frames
    /// (G.711 and signed linear); `None` for packetised ones (Opus).
    pub fn bytes_for_ms(&self, ms: u32) -> Option<usize> {
        let per_sample = match self {
            MediaFormat::Ulaw | MediaFormat::Alaw => 1,
            MediaFormat::Slin { .. } => 2,
            _ => return None,
        };
        Some((self.rate()? as u64 * ms as u64 / 1000) as usize * per_sample)
    }
}

/// `MEDIA_START`: the first text message of every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaStart {
    /// The connection id (`MEDIA_WEBSOCKET_CONNECTION_ID`).
    pub connection_id: String,
    /// Channel name, e.g. `WebSocket/media_connection1/0x7f3c...`.
    pub channel: String,
    /// Channel unique id.
    pub channel_id: String,
    /// Media format name (see [`MediaFormat::from_name`]).
    pub format: String,
    /// Bytes per media frame Asterisk plays every `ptime` (0 in passthrough).
    pub optimal_frame_size: usize,
    /// Frame duration, ms.
    pub ptime: u32,
    /// The channel's variables (JSON form only; empty in plain text).
    pub channel_variables: BTreeMap<String, String>,
}

impl MediaStart {
    /// The media format.
    pub fn media_format(&self) -> MediaFormat {
        MediaFormat::from_name(&self.format)
    }
}

/// Asterisk's queue, as `STATUS` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStatus {
    /// Frames queued.
    pub queue_length: u32,
    /// XON level.
    pub xon_level: u32,
    /// XOFF level.
    pub xoff_level: u32,
    /// XOFF in force.
    pub queue_full: bool,
    /// Between `START_MEDIA_BUFFERING` and `STOP_MEDIA_BUFFERING`.
    pub bulk_media: bool,
    /// Between `PAUSE_MEDIA` and `CONTINUE_MEDIA`.
    pub media_paused: bool,
}

/// A text message from Asterisk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The channel is ready; media may flow.
    MediaStart(MediaStart),
    /// Asterisk's queue reached its XOFF level: send no media until XON.
    MediaXoff,
    /// The queue fell below its XON level: media may flow again.
    MediaXon,
    /// The queue ran empty after `REPORT_QUEUE_DRAINED`.
    QueueDrained,
    /// The media before a `MARK_MEDIA` was played.
    MarkProcessed {
        /// The mark's id (empty when the command carried none).
        correlation_id: String,
    },
    /// The bulk media of a `START_MEDIA_BUFFERING` ... `STOP_MEDIA_BUFFERING` was played.
    BufferingCompleted {
        /// The id given to `STOP_MEDIA_BUFFERING`.
        correlation_id: String,
    },
    /// The caller pressed a key.
    DtmfEnd {
        /// The key.
        digit: char,
    },
    /// The answer to `GET_STATUS`.
    Status(QueueStatus),
    /// Asterisk refused a command.
    Error {
        /// Its text.
        text: String,
    },
    /// An event this version does not know (newer Asterisk); counted, ignored.
    Unknown {
        /// The event's name.
        name: String,
    },
}

/// A text message to Asterisk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Answer the channel (when dialled with `n`, no auto-answer).
    Answer,
    /// Hang the channel up.
    Hangup,
    /// What follows is bulk media for Asterisk to pace (partial frames kept).
    StartMediaBuffering,
    /// End of bulk media; Asterisk reports `MEDIA_BUFFERING_COMPLETED` once played.
    StopMediaBuffering {
        /// Echoed in `MEDIA_BUFFERING_COMPLETED`.
        correlation_id: Option<String>,
    },
    /// Report `MEDIA_MARK_PROCESSED` once the media queued so far was played.
    MarkMedia {
        /// Echoed in `MEDIA_MARK_PROCESSED`.
        correlation_id: Option<String>,
    },
    /// Drop every queued frame (barge-in).
    FlushMedia,
    /// Ask for `STATUS`.
    GetStatus,
    /// Send `QUEUE_DRAINED` when the queue next runs empty.
    ReportQueueDrained,
    /// Stop playing the queue (silence instead) until `CONTINUE_MEDIA`.
    PauseMedia,
    /// Play the queue again.
    ContinueMedia,
}

impl Command {
    /// The command's word.
    pub fn word(&self) -> &'static str {
        match self {
            Command::Answer => "ANSWER",
            Command::Hangup => "HANGUP",
            Command::StartMediaBuffering => "START_MEDIA_BUFFERING",
            Command::StopMediaBuffering { .. } => "STOP_MEDIA_BUFFERING",
            Command::MarkMedia { .. } => "MARK_MEDIA",
            Command::FlushMedia => "FLUSH_MEDIA",
            Command::GetStatus => "GET_STATUS",
            Command::ReportQueueDrained => "REPORT_QUEUE_DRAINED",
            Command::PauseMedia => "PAUSE_MEDIA",
            Command::ContinueMedia => "CONTINUE_MEDIA",
        }
    }

    fn correlation_id(&self) -> Option<&str> {
        match self {
            Command::StopMediaBuffering { correlation_id } | Command::MarkMedia { correlation_id } => {
                correlation_id.as_deref()
            }
            _ => None,
        }
    }

    /// Writes the command into `out` (cleared first). A command longer than
    /// [`MAX_COMMAND_LEN`] is an error: Asterisk would drop it.
    pub fn write(&self, format: ControlFormat, out: &mut String) -> Result<(), ProtoError> {
        out.clear();
        let id = self.correlation_id();
        match format {
            ControlFormat::PlainText => {
                out.push_str(self.word());
                if let Some(id) = id {
                    out.push(' ');
                    out.push_str(id);
                }
            }
            ControlFormat::Json => {
                #[derive(Serialize)]
                struct J<'a> {
                    command: &'a str,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    correlation_id: Option<&'a str>,
                }
                let j = J {
                    command: self.word(),
                    correlation_id: id,
                };
                let s = serde_json::to_string(&j).map_err(|e| ProtoError::Json(e.to_string()))?;
                out.push_str(&s);
            }
        }
        if out.len() > MAX_COMMAND_LEN {
            return Err(ProtoError::LengthTooLarge {
                len: out.len(),
                max: MAX_COMMAND_LEN,
            });
        }
        Ok(())
    }

    /// Parses a command as Asterisk does (test peers play Asterisk's part):
    /// surrounding whitespace stripped; plain text is a word and an optional
    /// argument after the first space.
    pub fn parse(text: &str, format: ControlFormat) -> Result<Command, ProtoError> {
        let text = text.trim();
        let (word, arg) = match format {
            ControlFormat::PlainText => match text.split_once(' ') {
                Some((w, a)) => (w.to_string(), Some(a.to_string())),
                None => (text.to_string(), None),
            },
            ControlFormat::Json => {
                #[derive(Deserialize)]
                struct J {
                    command: String,
                    correlation_id: Option<String>,
                }
                let j: J = serde_json::from_str(text).map_err(|e| ProtoError::Json(e.to_string()))?;
                (j.command, j.correlation_id)
            }
        };
        Ok(match word.as_str() {
            "ANSWER" => Command::Answer,
            "HANGUP" => Command::Hangup,
            "START_MEDIA_BUFFERING" => Command::StartMediaBuffering,
            "STOP_MEDIA_BUFFERING" => Command::StopMediaBuffering { correlation_id: arg },
            "MARK_MEDIA" => Command::MarkMedia { correlation_id: arg },
            "FLUSH_MEDIA" => Command::FlushMedia,
            "GET_STATUS" => Command::GetStatus,
            "REPORT_QUEUE_DRAINED" => Command::ReportQueueDrained,
            "PAUSE_MEDIA" => Command::PauseMedia,
            "CONTINUE_MEDIA" => Command::ContinueMedia,
            other => return Err(ProtoError::ChanWs(format!("unknown command {other:?}"))),
        })
    }
}

/// The JSON form of every event (fields absent from an event are `None`).
#[derive(Deserialize, Serialize, Default)]
struct JsonEvent {
    event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    optimal_frame_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ptime: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel_variables: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xon_level: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xoff_level: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_full: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bulk_media: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    media_paused: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_text: Option<String>,
}

fn bad(what: impl Into<String>) -> ProtoError {
    ProtoError::ChanWs(what.into())
}

fn digit_of(s: &str) -> Result<char, ProtoError> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_digit() || "*#ABCDabcd".contains(c) => Ok(c.to_ascii_uppercase()),
        _ => Err(bad(format!("DTMF_END digit {s:?}"))),
    }
}

impl Event {
    /// Parses a text message from Asterisk, in either form (JSON when it
    /// starts with `{`); returns the event and the form it came in.
    pub fn parse(text: &str) -> Result<(Event, ControlFormat), ProtoError> {
        if text.len() > MAX_EVENT_LEN {
            return Err(ProtoError::LengthTooLarge {
                len: text.len(),
                max: MAX_EVENT_LEN,
            });
        }
        let text = text.trim();
        if text.starts_with('{') {
            Ok((Self::parse_json(text)?, ControlFormat::Json))
        } else {
            Ok((Self::parse_plain(text)?, ControlFormat::PlainText))
        }
    }

    fn parse_json(text: &str) -> Result<Event, ProtoError> {
        let j: JsonEvent = serde_json::from_str(text).map_err(|e| ProtoError::Json(e.to_string()))?;
        let need = |v: Option<String>, k: &str| v.ok_or_else(|| bad(format!("{} without {k}", j.event)));
        Ok(match j.event.as_str() {
            "MEDIA_START" => Event::MediaStart(MediaStart {
                connection_id: need(j.connection_id.clone(), "connection_id")?,
                channel: need(j.channel.clone(), "channel")?,
                channel_id: need(j.channel_id.clone(), "channel_id")?,
                format: need(j.format.clone(), "format")?,
                optimal_frame_size: j.optimal_frame_size.unwrap_or(0) as usize,
                ptime: j.ptime.unwrap_or(20),
                channel_variables: j
                    .channel_variables
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| match v {
                        serde_json::Value::String(s) => (k, s),
                        other => (k, other.to_string()),
                    })
                    .collect(),
            }),
            "MEDIA_XOFF" => Event::MediaXoff,
            "MEDIA_XON" => Event::MediaXon,
            "QUEUE_DRAINED" => Event::QueueDrained,
            "MEDIA_MARK_PROCESSED" => Event::MarkProcessed {
                correlation_id: j.correlation_id.unwrap_or_default(),
            },
            "MEDIA_BUFFERING_COMPLETED" => Event::BufferingCompleted {
                correlation_id: j.correlation_id.unwrap_or_default(),
            },
            "DTMF_END" => Event::DtmfEnd {
                digit: digit_of(&need(j.digit.clone(), "digit")?)?,
            },
            "STATUS" => Event::Status(QueueStatus {
                queue_length: j.queue_length.unwrap_or(0),
                xon_level: j.xon_level.unwrap_or(QUEUE_XON_LEVEL),
                xoff_level: j.xoff_level.unwrap_or(QUEUE_XOFF_LEVEL),
                queue_full: j.queue_full.unwrap_or(false),
                bulk_media: j.bulk_media.unwrap_or(false),
                media_paused: j.media_paused.unwrap_or(false),
            }),
            "ERROR" => Event::Error {
                text: j.error_text.unwrap_or_default(),
            },
            "" => return Err(bad("JSON message without an event")),
            other => Event::Unknown { name: other.into() },
        })
    }

    fn parse_plain(text: &str) -> Result<Event, ProtoError> {
        let (word, rest) = match text.split_once(' ') {
            Some((w, r)) => (w, r.trim()),
            None => (text, ""),
        };
        // `key:value` pairs, split at the first colon of each token.
        let pairs = || rest.split(' ').filter_map(|t| t.split_once(':'));
        let field = |k: &str| pairs().find(|(key, _)| *key == k).map(|(_, v)| v);
        let need = |k: &str| field(k).ok_or_else(|| bad(format!("{word} without {k}")));
        let number = |k: &str| -> Result<u64, ProtoError> {
            need(k)?
                .parse::<u64>()
                .map_err(|_| bad(format!("{word}: {k} is not a number")))
        };
        let flag = |k: &str| field(k) == Some("true");
        Ok(match word {
            "MEDIA_START" => Event::MediaStart(MediaStart {
                connection_id: need("connection_id")?.into(),
                channel: need("channel")?.into(),
                channel_id: need("channel_id")?.into(),
                format: need("format")?.into(),
                optimal_frame_size: number("optimal_frame_size")? as usize,
                ptime: number("ptime")?.min(1000) as u32,
                channel_variables: BTreeMap::new(),
            }),
            "MEDIA_XOFF" => Event::MediaXoff,
            "MEDIA_XON" => Event::MediaXon,
            "QUEUE_DRAINED" => Event::QueueDrained,
            // The id is everything after the first space (it may hold spaces).
            "MEDIA_MARK_PROCESSED" => Event::MarkProcessed {
                correlation_id: rest.into(),
            },
            "MEDIA_BUFFERING_COMPLETED" => Event::BufferingCompleted {
                correlation_id: rest.into(),
            },
            "DTMF_END" => Event::DtmfEnd {
                digit: digit_of(need("digit")?)?,
            },
            "STATUS" => Event::Status(QueueStatus {
                queue_length: number("queue_length")?.min(u32::MAX as u64) as u32,
                xon_level: number("xon_level")?.min(u32::MAX as u64) as u32,
                xoff_level: number("xoff_level")?.min(u32::MAX as u64) as u32,
                queue_full: flag("queue_full"),
                bulk_media: flag("bulk_media"),
                media_paused: flag("media_paused"),
            }),
            // The text runs to the end of the message.
            "ERROR" => Event::Error {
                text: rest
                    .split_once("error_text:")
                    .map(|(_, t)| t.to_string())
                    .unwrap_or_else(|| rest.to_string()),
            },
            "" => return Err(bad("empty text message")),
            other if other.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') => {
                Event::Unknown { name: other.into() }
            }
            other => return Err(bad(format!("not an event: {:?}", truncate(other, 40)))),
        })
    }

    /// Writes the event as Asterisk does (for test peers and the load
    /// generator), for the channel `channel_id`, into `out` (cleared first).
    pub fn write(&self, format: ControlFormat, channel_id: &str, out: &mut String) {
        out.clear();
        match format {
            ControlFormat::PlainText => self.write_plain(channel_id, out),
            ControlFormat::Json => {
                let j = self.to_json(channel_id);
                // Serialising a struct of strings, numbers and maps cannot fail.
                if let Ok(s) = serde_json::to_string(&j) {
                    out.push_str(&s);
                }
            }
        }
    }

    fn write_plain(&self, channel_id: &str, out: &mut String) {
        match self {
            Event::MediaStart(m) => {
                let _ = write!(
                    out,
                    "MEDIA_START connection_id:{} channel:{} channel_id:{} format:{} optimal_frame_size:{} ptime:{}",
                    m.connection_id, m.channel, m.channel_id, m.format, m.optimal_frame_size, m.ptime
                );
            }
            Event::MediaXoff => out.push_str("MEDIA_XOFF"),
            Event::MediaXon => out.push_str("MEDIA_XON"),
            Event::QueueDrained => out.push_str("QUEUE_DRAINED"),
            Event::MarkProcessed { correlation_id } => {
                out.push_str("MEDIA_MARK_PROCESSED");
                if !correlation_id.is_empty() {
                    out.push(' ');
                    out.push_str(correlation_id);
                }
            }
            Event::BufferingCompleted { correlation_id } => {
                out.push_str("MEDIA_BUFFERING_COMPLETED");
                if !correlation_id.is_empty() {
                    out.push(' ');
                    out.push_str(correlation_id);
                }
            }
            Event::DtmfEnd { digit } => {
                let _ = write!(out, "DTMF_END digit:{digit} channel_id:{channel_id}");
            }
            Event::Status(s) => {
                let _ = write!(
                    out,
                    "STATUS channel_id:{channel_id} queue_length:{} xon_level:{} xoff_level:{} queue_full:{} bulk_media:{} media_paused:{}",
                    s.queue_length, s.xon_level, s.xoff_level, s.queue_full, s.bulk_media, s.media_paused
                );
            }
            Event::Error { text } => {
                let _ = write!(out, "ERROR channel_id:{channel_id} error_text:{text}");
            }
            Event::Unknown { name } => out.push_str(name),
        }
    }

    fn to_json(&self, channel_id: &str) -> JsonEvent {
        let mut j = JsonEvent {
            channel_id: Some(channel_id.to_string()),
            ..JsonEvent::default()
        };
        match self {
            Event::MediaStart(m) => {
                j.event = "MEDIA_START".into();
                j.connection_id = Some(m.connection_id.clone());
                j.channel = Some(m.channel.clone());
                j.channel_id = Some(m.channel_id.clone());
                j.format = Some(m.format.clone());
                j.optimal_frame_size = Some(m.optimal_frame_size as u64);
                j.ptime = Some(m.ptime);
                j.channel_variables = Some(
                    m.channel_variables
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                        .collect(),
                );
            }
            Event::MediaXoff => j.event = "MEDIA_XOFF".into(),
            Event::MediaXon => j.event = "MEDIA_XON".into(),
            Event::QueueDrained => j.event = "QUEUE_DRAINED".into(),
            Event::MarkProcessed { correlation_id } => {
                j.event = "MEDIA_MARK_PROCESSED".into();
                j.correlation_id = Some(correlation_id.clone());
            }
            Event::BufferingCompleted { correlation_id } => {
                j.event = "MEDIA_BUFFERING_COMPLETED".into();
                j.correlation_id = Some(correlation_id.clone());
            }
            Event::DtmfEnd { digit } => {
                j.event = "DTMF_END".into();
                j.digit = Some(digit.to_string());
            }
            Event::Status(s) => {
                j.event = "STATUS".into();
                j.queue_length = Some(s.queue_length);
                j.xon_level = Some(s.xon_level);
                j.xoff_level = Some(s.xoff_level);
                j.queue_full = Some(s.queue_full);
                j.bulk_media = Some(s.bulk_media);
                j.media_paused = Some(s.media_paused);
            }
            Event::Error { text } => {
                j.event = "ERROR".into();
                j.error_text = Some(text.clone());
            }
            Event::Unknown { name } => j.event = name.clone(),
        }
        j
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The exact strings chan_websocket.c writes (its format strings filled
    // in), plain text and JSON (ast_json compact: no spaces).
    const PLAIN_START: &str = "MEDIA_START connection_id:media_connection1 channel:WebSocket/media_connection1/0x7f2b4c00a1b0 channel_id:1733412345.12 format:slin16 optimal_frame_size:640 ptime:20";
    const JSON_START: &str = r#"{"event":"MEDIA_START","connection_id":"7a0b3c2e-6f0f-4d65-9b1c-0d4d3b6a1f11","channel":"WebSocket/INCOMING/0x7f2b4c00a1b0","channel_id":"1733412345.13","format":"ulaw","optimal_frame_size":160,"ptime":20,"channel_variables":{"CALLERID":"100","ROUTE":"sales"}}"#;

    #[test]
    fn media_start_in_both_forms() {
        let (e, f) = Event::parse(PLAIN_START).expect("plain");
        assert_eq!(f, ControlFormat::PlainText);
        let Event::MediaStart(m) = e else { panic!("{e:?}") };
        assert_eq!(m.connection_id, "media_connection1");
        assert_eq!(m.channel, "WebSocket/media_connection1/0x7f2b4c00a1b0");
        assert_eq!(m.channel_id, "1733412345.12");
        assert_eq!(m.media_format(), MediaFormat::Slin { rate: 16000 });
        assert_eq!((m.optimal_frame_size, m.ptime), (640, 20));

        let (e, f) = Event::parse(JSON_START).expect("json");
        assert_eq!(f, ControlFormat::Json);
        let Event::MediaStart(m) = e else { panic!("{e:?}") };
        assert_eq!(m.media_format(), MediaFormat::Ulaw);
        assert_eq!(m.optimal_frame_size, 160);
        assert_eq!(
            m.channel_variables.get("ROUTE").map(String::as_str),
            Some("sales")
        );
    }

    #[test]
    fn events_asterisk_writes() {
        let cases: &[(&str, Event)] = &[
            ("MEDIA_XOFF", Event::MediaXoff),
            ("MEDIA_XON", Event::MediaXon),
            ("QUEUE_DRAINED", Event::QueueDrained),
            ("MEDIA_MARK_PROCESSED m7", Event::MarkProcessed { correlation_id: "m7".into() }),
            ("MEDIA_MARK_PROCESSED", Event::MarkProcessed { correlation_id: "".into() }),
            ("MEDIA_BUFFERING_COMPLETED b1", Event::BufferingCompleted { correlation_id: "b1".into() }),
            ("DTMF_END digit:5 channel_id:1733412345.12", Event::DtmfEnd { digit: '5' }),
            (
                "STATUS channel_id:1733412345.12 queue_length:12 xon_level:800 xoff_level:900 queue_full:false bulk_media:true media_paused:false",
                Event::Status(QueueStatus { queue_length: 12, xon_level: 800, xoff_level: 900, queue_full: false, bulk_media: true, media_paused: false }),
            ),
            (
                "ERROR channel_id:1733412345.12 error_text:FLUSH_MEDIA not supported in passthrough mode",
                Event::Error { text: "FLUSH_MEDIA not supported in passthrough mode".into() },
            ),
            (r#"{"event":"MEDIA_XOFF","channel_id":"1733412345.12"}"#, Event::MediaXoff),
            (
                r#"{"event":"MEDIA_MARK_PROCESSED","channel_id":"1733412345.12","correlation_id":"m7"}"#,
                Event::MarkProcessed { correlation_id: "m7".into() },
            ),
            (r##"{"event":"DTMF_END","channel_id":"1733412345.12","digit":"#"}"##, Event::DtmfEnd { digit: '#' }),
            (
                r#"{"event":"STATUS","channel_id":"1","queue_length":901,"xon_level":800,"xoff_level":900,"queue_full":true,"bulk_media":false,"media_paused":true}"#,
                Event::Status(QueueStatus { queue_length: 901, xon_level: 800, xoff_level: 900, queue_full: true, bulk_media: false, media_paused: true }),
            ),
            ("SOMETHING_NEW", Event::Unknown { name: "SOMETHING_NEW".into() }),
        ];
        for (text, want) in cases {
            let (got, _) = Event::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(&got, want, "{text}");
        }
    }

    #[test]
    fn events_round_trip_in_both_forms() {
        let (start, _) = Event::parse(JSON_START).expect("json");
        let events = [
            start,
            Event::MediaXoff,
            Event::MarkProcessed {
                correlation_id: "m 1".into(),
            },
            Event::DtmfEnd { digit: '9' },
            Event::Status(QueueStatus {
                queue_length: 3,
                xon_level: 800,
                xoff_level: 900,
                ..Default::default()
            }),
            Event::Error {
                text: "it broke: badly".into(),
            },
        ];
        let mut out = String::new();
        for format in [ControlFormat::PlainText, ControlFormat::Json] {
            for e in &events {
                e.write(format, "1733412345.12", &mut out);
                let (back, f) = Event::parse(&out).unwrap_or_else(|err| panic!("{out}: {err}"));
                assert_eq!(f, format);
                match (e, &back) {
                    // Plain text carries no channel variables.
                    (Event::MediaStart(a), Event::MediaStart(b)) if format == ControlFormat::PlainText => {
                        assert_eq!(a.format, b.format);
                        assert_eq!(a.connection_id, b.connection_id);
                    }
                    _ => assert_eq!(e, &back, "{out}"),
                }
            }
        }
    }

    #[test]
    fn commands_in_both_forms_and_the_length_limit() {
        let mut out = String::new();
        let mark = Command::MarkMedia {
            correlation_id: Some("m12".into()),
        };
        mark.write(ControlFormat::PlainText, &mut out).expect("plain");
        assert_eq!(out, "MARK_MEDIA m12");
        mark.write(ControlFormat::Json, &mut out).expect("json");
        assert_eq!(out, r#"{"command":"MARK_MEDIA","correlation_id":"m12"}"#);
        Command::FlushMedia
            .write(ControlFormat::Json, &mut out)
            .expect("json");
        assert_eq!(out, r#"{"command":"FLUSH_MEDIA"}"#);
        for c in [
            Command::Answer,
            Command::Hangup,
            Command::StartMediaBuffering,
            Command::StopMediaBuffering {
                correlation_id: Some("b 2".into()),
            },
            mark.clone(),
            Command::FlushMedia,
            Command::GetStatus,
            Command::ReportQueueDrained,
            Command::PauseMedia,
            Command::ContinueMedia,
        ] {
            for f in [ControlFormat::PlainText, ControlFormat::Json] {
                c.write(f, &mut out).expect("fits");
                assert_eq!(Command::parse(&out, f).expect("parses"), c, "{out}");
            }
        }
        let long = Command::MarkMedia {
            correlation_id: Some("x".repeat(130)),
        };
        assert!(matches!(
            long.write(ControlFormat::PlainText, &mut out),
            Err(ProtoError::LengthTooLarge {
                max: MAX_COMMAND_LEN,
                ..
            })
        ));
    }

    #[test]
    fn formats_and_frame_sizes_match_asterisks() {
        // optimal_frame_size = default_ms * minimum_bytes / minimum_ms.
        for (name, bytes) in [
            ("ulaw", 160),
            ("alaw", 160),
            ("slin", 320),
            ("slin16", 640),
            ("slin24", 960),
            ("slin48", 1920),
        ] {
            let f = MediaFormat::from_name(name);
            assert_eq!(f.bytes_for_ms(20), Some(bytes), "{name}");
            assert_eq!(f.name(), name);
        }
        assert_eq!(MediaFormat::from_name("opus").bytes_for_ms(20), None);
        assert_eq!(MediaFormat::from_name("g729"), MediaFormat::Other("g729".into()));
        assert_eq!(
            MediaFormat::from_name("slin7"),
            MediaFormat::Other("slin7".into())
        );
    }

    proptest::proptest! {
        // Any text: an event or an error, never a panic; what parses as an
        // event writes back to text that parses to the same event.
        #[test]
        fn any_text_parses_or_is_refused(text in "(MEDIA_[A-Z_]{0,12}|DTMF_END|STATUS|ERROR|\\{)?.{0,200}") {
            if let Ok((e, f)) = Event::parse(&text) {
                let mut out = String::new();
                e.write(f, "1", &mut out);
                let (back, g) = Event::parse(&out).expect("what we write parses");
                proptest::prop_assert_eq!(g, f);
                proptest::prop_assert_eq!(back, e);
            }
            let _ = Command::parse(&text, ControlFormat::PlainText);
            let _ = Command::parse(&text, ControlFormat::Json);
        }

        #[test]
        // Ids up to 60 characters: with the JSON form's 46 bytes around them
        // they stay within Asterisk's 128 (longer ones are refused, see
        // commands_in_both_forms_and_the_length_limit).
        fn marks_round_trip(id in "[A-Za-z0-9 ._:-]{1,60}", json in proptest::bool::ANY) {
            let f = if json { ControlFormat::Json } else { ControlFormat::PlainText };
            let id = id.trim().to_string();
            proptest::prop_assume!(!id.is_empty());
            let mut out = String::new();
            let c = Command::MarkMedia { correlation_id: Some(id.clone()) };
            c.write(f, &mut out).expect("fits in 128 bytes");
            proptest::prop_assert_eq!(Command::parse(&out, f).expect("parses"), c);
            Event::MarkProcessed { correlation_id: id.clone() }.write(f, "1", &mut out);
            let (back, _) = Event::parse(&out).expect("parses");
            proptest::prop_assert_eq!(back, Event::MarkProcessed { correlation_id: id });
        }
    }

    #[test]
    fn bad_text_is_an_error_not_a_panic() {
        for text in [
            "",
            "   ",
            "MEDIA_START connection_id:x",
            "MEDIA_START connection_id:a channel:b channel_id:c format:slin16 optimal_frame_size:big ptime:20",
            "DTMF_END digit:55 channel_id:1",
            "DTMF_END channel_id:1",
            "hello there",
            "{",
            r#"{"event":"DTMF_END","digit":"x"}"#,
            r#"{"no_event":1}"#,
            r#"{"event":"MEDIA_START"}"#,
        ] {
            assert!(Event::parse(text).is_err(), "{text:?} should be refused");
        }
        assert!(Event::parse(&"A".repeat(MAX_EVENT_LEN + 1)).is_err());
        assert!(Command::parse("DANCE", ControlFormat::PlainText).is_err());
        assert!(Command::parse("{}", ControlFormat::Json).is_err());
    }
}
