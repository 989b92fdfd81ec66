//! What a bot sends, in each dialect: parsed by voxbridge, written by test
//! bots and the conformance kit.

use super::wire::{WireDigit, WireName};
use super::{Dialect, Encoding};
use crate::error::ProtoError;
use crate::twilio::{borrowed_opt, lenient_u64};
use serde::Deserialize;
use serde_json::json;
use std::borrow::Cow;

/// A message from the bot. Strings borrow from the message when they have
/// no JSON escapes, so parsing a `media` message does not allocate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotCommand<'a> {
    /// Audio to play: base64 in the stream's encoding, or in the one the
    /// message names (Plivo's `playAudio` carries `contentType` and
    /// `sampleRate`).
    Media {
        /// Base64 audio.
        payload: Cow<'a, str>,
        /// The encoding the message names, if it names one.
        encoding: Option<Encoding>,
        /// The rate the message names, if it names one.
        sample_rate: Option<u32>,
    },
    /// Tell me when the audio sent so far has been played.
    Mark {
        /// Label to echo back.
        name: Cow<'a, str>,
    },
    /// Barge-in: drop all audio queued for playback.
    Clear,
    /// Play a key press to the caller (voxbridge extension).
    Dtmf {
        /// 0-9, *, #, A-D.
        digit: Cow<'a, str>,
    },
    /// Hand the call on to a person (voxbridge extension).
    Transfer {
        /// A number or a `sip:` URI.
        target: Cow<'a, str>,
    },
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    media: Option<WireMedia<'a>>,
    #[serde(borrow, default)]
    mark: Option<WireName<'a>>,
    /// Plivo's `checkpoint` names itself at the top level.
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    dtmf: Option<WireDigit<'a>>,
    #[serde(borrow, default)]
    transfer: Option<WireTarget<'a>>,
}

#[derive(Deserialize)]
struct WireMedia<'a> {
    #[serde(borrow)]
    payload: Cow<'a, str>,
    #[serde(rename = "contentType", borrow, default, deserialize_with = "borrowed_opt")]
    content_type: Option<Cow<'a, str>>,
    #[serde(rename = "sampleRate", default, deserialize_with = "lenient_u64")]
    sample_rate: Option<u64>,
}

#[derive(Deserialize)]
struct WireTarget<'a> {
    #[serde(borrow)]
    target: Cow<'a, str>,
}

fn missing(dialect: Dialect, event: &str, what: &str) -> ProtoError {
    ProtoError::Json(format!("{} {event:?} without {what}", dialect.name()))
}

impl<'a> BotCommand<'a> {
    /// Parses a message a bot sent on a `dialect` stream. An event the
    /// dialect does not have is an error that names it.
    pub fn parse(dialect: Dialect, msg: &'a str) -> Result<Self, ProtoError> {
        let w: Wire<'a> = serde_json::from_str(msg).map_err(|e| ProtoError::Json(e.to_string()))?;
        let event = &*w.event;
        let (media, clear, mark) = match dialect {
            Dialect::Plivo => ("playAudio", "clearAudio", "checkpoint"),
            Dialect::Twilio | Dialect::Telnyx | Dialect::Exotel => ("media", "clear", "mark"),
        };
        Ok(if event == media {
            let m = w.media.ok_or_else(|| missing(dialect, event, "media"))?;
            let encoding = match m.content_type.as_deref() {
                Some(ct) => Some(Encoding::from_content_type(ct).ok_or_else(|| {
                    ProtoError::Json(format!(
                        "{} {event:?}: unknown contentType {ct:?}",
                        dialect.name()
                    ))
                })?),
                None => None,
            };
            let sample_rate = match m.sample_rate {
                Some(r) => Some(u32::try_from(r).map_err(|_| {
                    ProtoError::Json(format!(
                        "{} {event:?}: sampleRate {r} out of range",
                        dialect.name()
                    ))
                })?),
                None => None,
            };
            BotCommand::Media {
                payload: m.payload,
                encoding,
                sample_rate,
            }
        } else if event == clear {
            BotCommand::Clear
        } else if event == mark {
            let name = match dialect {
                Dialect::Plivo => w.name,
                _ => w.mark.map(|m| m.name),
            };
            BotCommand::Mark {
                name: name.ok_or_else(|| missing(dialect, event, "a name"))?,
            }
        } else if event == "dtmf" {
            BotCommand::Dtmf {
                digit: w.dtmf.ok_or_else(|| missing(dialect, event, "dtmf.digit"))?.digit,
            }
        } else if event == "transfer" {
            BotCommand::Transfer {
                target: w
                    .transfer
                    .ok_or_else(|| missing(dialect, event, "transfer.target"))?
                    .target,
            }
        } else {
            return Err(ProtoError::Json(format!(
                "unknown {} bot event {event:?}",
                dialect.name()
            )));
        })
    }

    /// Writes the message as a bot on a `dialect` stream named `stream_id`
    /// sends it (for test bots and the conformance kit).
    pub fn write(&self, dialect: Dialect, stream_id: &str) -> String {
        let key = dialect.stream_key();
        let mut v = match self {
            BotCommand::Media {
                payload,
                encoding,
                sample_rate,
            } => match dialect {
                Dialect::Plivo => json!({
                    "event": "playAudio",
                    "media": {
                        "contentType": encoding.unwrap_or(Encoding::Mulaw).content_type(),
                        "sampleRate": sample_rate.unwrap_or(8000),
                        "payload": payload,
                    },
                }),
                _ => json!({"event": "media", "media": {"payload": payload}}),
            },
            BotCommand::Clear => match dialect {
                Dialect::Plivo => json!({"event": "clearAudio"}),
                _ => json!({"event": "clear"}),
            },
            BotCommand::Mark { name } => match dialect {
                Dialect::Plivo => json!({"event": "checkpoint", "name": name}),
                _ => json!({"event": "mark", "mark": {"name": name}}),
            },
            BotCommand::Dtmf { digit } => json!({"event": "dtmf", "dtmf": {"digit": digit}}),
            BotCommand::Transfer { target } => json!({"event": "transfer", "transfer": {"target": target}}),
        };
        // Telnyx's own bots send no stream id; the others name the stream.
        if dialect != Dialect::Telnyx {
            v[key] = json!(stream_id);
        }
        v.to_string()
    }
}
