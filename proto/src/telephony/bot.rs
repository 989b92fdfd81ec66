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
    /// Forget the marks not yet answered: they are never answered
    /// (jambonz's `clearMarks`).
    ClearMarks,
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
    /// Start, stop, pause or resume the call's recording (voxbridge
    /// extension; pause while a caller reads out a card number).
    Recording {
        /// What to do.
        action: RecordingAction,
    },
    /// End the call (jambonz's and Genesys's `disconnect`; elsewhere the
    /// bot closes the socket).
    Hangup,
    /// A protocol answer or notice the call has no use for (Genesys's
    /// `opened`, `pong`, `closed`, `resumed`, an `event` other than a
    /// barge-in): `kind` is its type.
    Notice {
        /// The message's type.
        kind: Cow<'a, str>,
    },
}

/// What a bot asks of the call's recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingAction {
    /// Start recording (the route's `[recording]` settings).
    Start,
    /// Stop: the file is completed.
    Stop,
    /// Record silence until resumed.
    Pause,
    /// Record the call's audio again.
    Resume,
}

impl RecordingAction {
    /// `start`, `stop`, `pause` or `resume`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingAction::Start => "start",
            RecordingAction::Stop => "stop",
            RecordingAction::Pause => "pause",
            RecordingAction::Resume => "resume",
        }
    }

    /// From its name; `None` for another.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "start" => RecordingAction::Start,
            "stop" => RecordingAction::Stop,
            "pause" => RecordingAction::Pause,
            "resume" => RecordingAction::Resume,
            _ => return None,
        })
    }
}

/// A recording message's action (`recording.action`, or `data.action`).
fn recording_action(
    dialect: Dialect,
    event: &str,
    action: Option<&str>,
) -> Result<RecordingAction, ProtoError> {
    let action = action.ok_or_else(|| missing(dialect, event, "an action"))?;
    RecordingAction::parse(action).ok_or_else(|| {
        ProtoError::Json(format!(
            "{} {event:?}: action {action:?} (start, stop, pause or resume)",
            dialect.name()
        ))
    })
}

#[derive(Deserialize)]
struct WireAction<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    action: Option<Cow<'a, str>>,
}

/// The control messages of the binary-audio dialects: Vonage names the
/// command in `action`, jambonz in `type` with its arguments in `data`.
#[derive(Deserialize)]
struct ControlWire<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    action: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow, default, deserialize_with = "borrowed_opt")]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    payload: Option<serde_json::Value>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    digit: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    target: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<ControlData<'a>>,
    /// Vonage's recording message (`{"action": "recording", "recording": {"action": "pause"}}`).
    #[serde(borrow, default)]
    recording: Option<WireAction<'a>>,
    /// Genesys's arguments.
    #[serde(default)]
    parameters: Option<serde_json::Value>,
}

/// The `seq` of a Genesys AudioHook message (what the client's next
/// messages name as `serverseq`).
pub fn audiohook_seq(msg: &str) -> Option<u64> {
    #[derive(Deserialize)]
    struct Seq {
        #[serde(default, deserialize_with = "lenient_u64")]
        seq: Option<u64>,
    }
    serde_json::from_str::<Seq>(msg).ok()?.seq
}

#[derive(Deserialize, Default)]
struct ControlData<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    digit: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    target: Option<Cow<'a, str>>,
    #[serde(rename = "audioContent", borrow, default, deserialize_with = "borrowed_opt")]
    audio_content: Option<Cow<'a, str>>,
    #[serde(
        rename = "audioContentType",
        borrow,
        default,
        deserialize_with = "borrowed_opt"
    )]
    audio_content_type: Option<Cow<'a, str>>,
    #[serde(rename = "sampleRate", default, deserialize_with = "lenient_u64")]
    sample_rate: Option<u64>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    action: Option<Cow<'a, str>>,
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
    #[serde(borrow, default)]
    recording: Option<WireAction<'a>>,
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
        if dialect.binary_audio() {
            return Self::parse_control(dialect, msg);
        }
        let w: Wire<'a> = serde_json::from_str(msg).map_err(|e| ProtoError::Json(e.to_string()))?;
        let event = &*w.event;
        let (media, clear, mark) = match dialect {
            Dialect::Plivo => ("playAudio", "clearAudio", "checkpoint"),
            _ => ("media", "clear", "mark"),
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
            let sample_rate = rate_of(dialect, event, m.sample_rate)?;
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
        } else if event == "recording" {
            let action = w.recording.as_ref().and_then(|r| r.action.as_deref());
            BotCommand::Recording {
                action: recording_action(dialect, event, action)?,
            }
        } else {
            return Err(ProtoError::Json(format!(
                "unknown {} bot event {event:?}",
                dialect.name()
            )));
        })
    }

    /// A Vonage or jambonz control message (their audio is binary).
    fn parse_control(dialect: Dialect, msg: &'a str) -> Result<Self, ProtoError> {
        let w: ControlWire<'a> = serde_json::from_str(msg).map_err(|e| ProtoError::Json(e.to_string()))?;
        let (key, command) = match dialect {
            Dialect::Vonage => ("action", w.action),
            _ => ("type", w.kind),
        };
        let command =
            command.ok_or_else(|| ProtoError::Json(format!("{} message without {key:?}", dialect.name())))?;
        let event = &*command;
        let data = w.data.unwrap_or_default();
        Ok(match (dialect, event) {
            (Dialect::Vonage, "clear") | (Dialect::Jambonz, "killAudio") => BotCommand::Clear,
            (Dialect::Jambonz, "clearMarks") => BotCommand::ClearMarks,
            (Dialect::Vonage, "notify") => {
                let payload = w.payload.ok_or_else(|| missing(dialect, event, "a payload"))?;
                // The payload is kept as JSON text and handed back as JSON.
                BotCommand::Mark {
                    name: Cow::Owned(payload.to_string()),
                }
            }
            (Dialect::Jambonz, "mark") => BotCommand::Mark {
                name: data.name.ok_or_else(|| missing(dialect, event, "data.name"))?,
            },
            (Dialect::Jambonz | Dialect::Genesys, "disconnect") => BotCommand::Hangup,
            (Dialect::Genesys, "event") => {
                let barge_in = w
                    .parameters
                    .as_ref()
                    .and_then(|p| p.get("entities"))
                    .and_then(|e| e.as_array())
                    .is_some_and(|e| {
                        e.iter()
                            .any(|e| e.get("type").and_then(|t| t.as_str()) == Some("barge_in"))
                    });
                if barge_in {
                    BotCommand::Clear
                } else {
                    BotCommand::Notice {
                        kind: command.clone(),
                    }
                }
            }
            (Dialect::Genesys, "opened" | "pong" | "closed" | "resumed" | "paused" | "update") => {
                BotCommand::Notice {
                    kind: command.clone(),
                }
            }
            (Dialect::Genesys, "error") => {
                let says = w
                    .parameters
                    .as_ref()
                    .and_then(|p| p.get("message"))
                    .map(|m| m.to_string());
                return Err(ProtoError::Json(format!(
                    "genesys error from the bot: {}",
                    says.as_deref().unwrap_or("(no message)")
                )));
            }
            (Dialect::Jambonz, "playAudio") => {
                let kind = data.audio_content_type.as_deref().unwrap_or("raw");
                if kind != "raw" {
                    return Err(ProtoError::Json(format!(
                        "jambonz \"playAudio\": audioContentType {kind:?} (voxbridge plays \"raw\" PCM16)"
                    )));
                }
                BotCommand::Media {
                    payload: data
                        .audio_content
                        .ok_or_else(|| missing(dialect, event, "data.audioContent"))?,
                    encoding: Some(Encoding::L16),
                    sample_rate: rate_of(dialect, event, data.sample_rate)?,
                }
            }
            (Dialect::Vonage, "dtmf") => BotCommand::Dtmf {
                digit: w.digit.ok_or_else(|| missing(dialect, event, "digit"))?,
            },
            (Dialect::Vonage, "transfer") => BotCommand::Transfer {
                target: w.target.ok_or_else(|| missing(dialect, event, "target"))?,
            },
            (Dialect::Jambonz, "dtmf") => BotCommand::Dtmf {
                digit: data.digit.ok_or_else(|| missing(dialect, event, "data.digit"))?,
            },
            (Dialect::Vonage, "recording") => BotCommand::Recording {
                action: recording_action(
                    dialect,
                    event,
                    w.recording.as_ref().and_then(|r| r.action.as_deref()),
                )?,
            },
            (Dialect::Jambonz, "recording") => BotCommand::Recording {
                action: recording_action(dialect, event, data.action.as_deref())?,
            },
            (Dialect::Jambonz, "transfer") => BotCommand::Transfer {
                target: data
                    .target
                    .ok_or_else(|| missing(dialect, event, "data.target"))?,
            },
            _ => {
                return Err(ProtoError::Json(format!(
                    "unknown {} bot {key} {event:?}",
                    dialect.name()
                )))
            }
        })
    }

    /// Writes the message as a bot on a `dialect` stream named `stream_id`
    /// sends it (for test bots and the conformance kit). `None` for Vonage
    /// audio, which travels only as binary PCM.
    pub fn write(&self, dialect: Dialect, stream_id: &str) -> Option<String> {
        if dialect.binary_audio() {
            return self.write_control(dialect);
        }
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
            BotCommand::Recording { action } => {
                json!({"event": "recording", "recording": {"action": action.as_str()}})
            }
            BotCommand::Hangup | BotCommand::ClearMarks | BotCommand::Notice { .. } => return None,
        };
        // Telnyx's own bots send no stream id; the others name the stream.
        if let (Some(key), false) = (dialect.stream_key(), dialect == Dialect::Telnyx) {
            v[key] = json!(stream_id);
        }
        Some(v.to_string())
    }

    fn write_control(&self, dialect: Dialect) -> Option<String> {
        let v = match (dialect, self) {
            // A Genesys bot's messages, numbered as a first one.
            (Dialect::Genesys, BotCommand::Clear) => {
                audiohook_server("event", json!({"entities": [{"type": "barge_in", "data": {}}]}))
            }
            (Dialect::Genesys, BotCommand::Hangup) => audiohook_server(
                "disconnect",
                json!({"reason": "completed", "outputVariables": {"action": "finished"}}),
            ),
            (Dialect::Genesys, BotCommand::Notice { kind }) => audiohook_server(kind, json!({})),
            (Dialect::Genesys, _) => return None,
            (_, BotCommand::Notice { .. }) => return None,
            (Dialect::Vonage, BotCommand::Media { .. } | BotCommand::Hangup | BotCommand::ClearMarks) => {
                return None
            }
            (Dialect::Vonage, BotCommand::Clear) => json!({"action": "clear"}),
            (Dialect::Vonage, BotCommand::Mark { name }) => {
                let payload = serde_json::from_str::<serde_json::Value>(name).unwrap_or_else(|_| json!(name));
                json!({"action": "notify", "payload": payload})
            }
            (Dialect::Vonage, BotCommand::Dtmf { digit }) => json!({"action": "dtmf", "digit": digit}),
            (Dialect::Vonage, BotCommand::Transfer { target }) => {
                json!({"action": "transfer", "target": target})
            }
            (Dialect::Vonage, BotCommand::Recording { action }) => {
                json!({"action": "recording", "recording": {"action": action.as_str()}})
            }
            (
                _,
                BotCommand::Media {
                    payload, sample_rate, ..
                },
            ) => json!({"type": "playAudio", "data": {
                "audioContent": payload, "audioContentType": "raw", "sampleRate": sample_rate.unwrap_or(8000),
            }}),
            (_, BotCommand::Clear) => json!({"type": "killAudio"}),
            (_, BotCommand::ClearMarks) => json!({"type": "clearMarks"}),
            (_, BotCommand::Mark { name }) => json!({"type": "mark", "data": {"name": name}}),
            (_, BotCommand::Dtmf { digit }) => json!({"type": "dtmf", "data": {"digit": digit}}),
            (_, BotCommand::Transfer { target }) => json!({"type": "transfer", "data": {"target": target}}),
            (_, BotCommand::Recording { action }) => {
                json!({"type": "recording", "data": {"action": action.as_str()}})
            }
            (_, BotCommand::Hangup) => json!({"type": "disconnect"}),
        };
        Some(v.to_string())
    }
}

/// An AudioHook message from the server (the bot).
fn audiohook_server(kind: &str, parameters: serde_json::Value) -> serde_json::Value {
    json!({"version": "2", "type": kind, "seq": 1, "clientseq": 1, "id": "", "parameters": parameters})
}

/// A message's `sampleRate`, which must fit a u32.
fn rate_of(dialect: Dialect, event: &str, rate: Option<u64>) -> Result<Option<u32>, ProtoError> {
    rate.map(|r| {
        u32::try_from(r).map_err(|_| {
            ProtoError::Json(format!(
                "{} {event:?}: sampleRate {r} out of range",
                dialect.name()
            ))
        })
    })
    .transpose()
}
