//! Twilio-style Media Streams JSON, both directions.
//!
//! voxbridge plays Twilio's part toward the bot: it sends [`StreamEvent`]s
//! (`connected`, `start`, `media`, `dtmf`, `mark`, `stop`) and receives
//! [`BotCommand`]s (`media`, `mark`, `clear`). Both sides parse and write, so
//! test peers can use the same types. Parsing borrows the base64 payload from
//! the message; [`decode_payload`] decodes it into a caller-owned, reused buffer.

use crate::error::ProtoError;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A number Twilio sends as a string ("1") but that we also accept bare.
pub(crate) fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N<'a> {
        Num(u64),
        Str(&'a str),
        Owned(String),
    }
    Ok(match Option::<N>::deserialize(d)? {
        None => None,
        Some(N::Num(n)) => Some(n),
        Some(N::Str(s)) => s.parse().ok(),
        Some(N::Owned(s)) => s.parse().ok(),
    })
}

/// An optional string borrowed from the message. serde's `borrow` does not
/// reach through `Option<Cow>` (it would allocate every `streamSid`), so the
/// Cow is wrapped in a newtype that does borrow.
pub(crate) fn borrowed_opt<'de: 'a, 'a, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct B<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<B<'a>>::deserialize(d)?.map(|b| b.0))
}

/// `start.mediaFormat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaFormat {
    /// e.g. `audio/x-mulaw`.
    pub encoding: String,
    /// e.g. 8000.
    #[serde(rename = "sampleRate")]
    pub sample_rate: u32,
    /// 1.
    pub channels: u32,
}

/// `start` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartInfo {
    /// Account.
    #[serde(rename = "accountSid", default)]
    pub account_sid: String,
    /// Stream id.
    #[serde(rename = "streamSid", default)]
    pub stream_sid: String,
    /// Call id.
    #[serde(rename = "callSid", default)]
    pub call_sid: String,
    /// Tracks streamed (`inbound`, `outbound`).
    #[serde(default)]
    pub tracks: Vec<String>,
    /// Audio format.
    #[serde(rename = "mediaFormat")]
    pub media_format: MediaFormat,
    /// Parameters passed through from the call setup (caller, callee, ...).
    #[serde(rename = "customParameters", default)]
    pub custom_parameters: BTreeMap<String, String>,
}

/// Events the telephony side sends to the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    /// The WebSocket is up.
    Connected {
        /// Protocol name ("Call").
        protocol: String,
        /// Protocol version.
        version: String,
    },
    /// Stream metadata.
    Start {
        /// Message sequence number.
        sequence: u64,
        /// Everything `start` carries.
        start: StartInfo,
    },
    /// One chunk of audio.
    Media {
        /// Message sequence number.
        sequence: u64,
        /// Stream id.
        stream_sid: Cow<'a, str>,
        /// `inbound` or `outbound`.
        track: Cow<'a, str>,
        /// Chunk counter.
        chunk: u64,
        /// Milliseconds since the stream started.
        timestamp: u64,
        /// Base64 audio (borrowed from the message when it has no escapes).
        payload: Cow<'a, str>,
    },
    /// A key press.
    Dtmf {
        /// Stream id.
        stream_sid: Cow<'a, str>,
        /// The digit.
        digit: Cow<'a, str>,
    },
    /// Audio up to a mark the bot sent has been played.
    Mark {
        /// Stream id.
        stream_sid: Cow<'a, str>,
        /// The bot's label.
        name: Cow<'a, str>,
    },
    /// The stream ended.
    Stop {
        /// Stream id.
        stream_sid: Cow<'a, str>,
        /// Call id.
        call_sid: Cow<'a, str>,
    },
}

/// Messages the bot sends to the telephony side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotCommand<'a> {
    /// Audio to play (base64 in the format of `start.mediaFormat`).
    Media {
        /// Stream id.
        stream_sid: Cow<'a, str>,
        /// Base64 audio.
        payload: Cow<'a, str>,
    },
    /// Tell me when the audio sent so far has been played.
    Mark {
        /// Stream id.
        stream_sid: Cow<'a, str>,
        /// Label to echo back.
        name: Cow<'a, str>,
    },
    /// Barge-in: drop all audio queued for playback.
    Clear {
        /// Stream id.
        stream_sid: Cow<'a, str>,
    },
    /// Play a key press to the caller (voxbridge extension, same shape as the
    /// inbound `dtmf` event; RTP callers get RFC 4733 events).
    Dtmf {
        /// Stream id.
        stream_sid: Cow<'a, str>,
        /// The key: 0-9, *, #, A-D.
        digit: Cow<'a, str>,
    },
    /// Hand the call on to a person (voxbridge extension:
    /// `{"event": "transfer", "transfer": {"target": ...}}`; a SIP call
    /// is transferred by REFER).
    Transfer {
        /// Stream id.
        stream_sid: Cow<'a, str>,
        /// A number or a `sip:` URI.
        target: Cow<'a, str>,
    },
}

/// The shape every message shares; fields absent in a type stay `None`.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(rename = "streamSid", borrow, default, deserialize_with = "borrowed_opt")]
    stream_sid: Option<Cow<'a, str>>,
    #[serde(rename = "sequenceNumber", default, deserialize_with = "lenient_u64")]
    sequence: Option<u64>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    protocol: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    version: Option<Cow<'a, str>>,
    #[serde(default)]
    start: Option<StartInfo>,
    #[serde(borrow, default)]
    media: Option<WireMedia<'a>>,
    #[serde(borrow, default)]
    dtmf: Option<WireDtmf<'a>>,
    #[serde(borrow, default)]
    mark: Option<WireMark<'a>>,
    #[serde(borrow, default)]
    transfer: Option<WireTransfer<'a>>,
    #[serde(borrow, default)]
    stop: Option<WireStop<'a>>,
}

#[derive(Deserialize)]
struct WireMedia<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    track: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient_u64")]
    chunk: Option<u64>,
    #[serde(default, deserialize_with = "lenient_u64")]
    timestamp: Option<u64>,
    #[serde(borrow)]
    payload: Cow<'a, str>,
}

#[derive(Deserialize)]
struct WireDtmf<'a> {
    #[serde(borrow)]
    digit: Cow<'a, str>,
}

#[derive(Deserialize)]
struct WireTransfer<'a> {
    #[serde(borrow)]
    target: Cow<'a, str>,
}

#[derive(Deserialize)]
struct WireMark<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

#[derive(Deserialize)]
struct WireStop<'a> {
    #[serde(rename = "callSid", borrow, default, deserialize_with = "borrowed_opt")]
    call_sid: Option<Cow<'a, str>>,
}

fn json_err(e: serde_json::Error) -> ProtoError {
    ProtoError::Json(e.to_string())
}

fn missing(what: &'static str) -> ProtoError {
    ProtoError::Json(format!("missing {what}"))
}

impl<'a> StreamEvent<'a> {
    /// Parses a message from the telephony side.
    pub fn parse(msg: &'a str) -> Result<Self, ProtoError> {
        let w: Wire<'a> = serde_json::from_str(msg).map_err(json_err)?;
        let sid = |w: &Wire<'a>| w.stream_sid.clone().unwrap_or(Cow::Borrowed(""));
        Ok(match &*w.event {
            "connected" => StreamEvent::Connected {
                protocol: w.protocol.as_deref().unwrap_or("Call").to_string(),
                version: w.version.as_deref().unwrap_or("1.0.0").to_string(),
            },
            "start" => StreamEvent::Start {
                sequence: w.sequence.unwrap_or(0),
                start: w.start.ok_or_else(|| missing("start"))?,
            },
            "media" => {
                let stream_sid = sid(&w);
                let m = w.media.ok_or_else(|| missing("media"))?;
                StreamEvent::Media {
                    sequence: w.sequence.unwrap_or(0),
                    stream_sid,
                    track: m.track.unwrap_or(Cow::Borrowed("inbound")),
                    chunk: m.chunk.unwrap_or(0),
                    timestamp: m.timestamp.unwrap_or(0),
                    payload: m.payload,
                }
            }
            "dtmf" => StreamEvent::Dtmf {
                stream_sid: sid(&w),
                digit: w.dtmf.ok_or_else(|| missing("dtmf"))?.digit,
            },
            "mark" => StreamEvent::Mark {
                stream_sid: sid(&w),
                name: w.mark.ok_or_else(|| missing("mark"))?.name,
            },
            "stop" => StreamEvent::Stop {
                stream_sid: sid(&w),
                call_sid: w.stop.and_then(|s| s.call_sid).unwrap_or(Cow::Borrowed("")),
            },
            other => return Err(ProtoError::Json(format!("unknown event {other:?}"))),
        })
    }

    /// Writes the message as JSON.
    pub fn to_json(&self) -> String {
        let v = match self {
            StreamEvent::Connected { protocol, version } => {
                serde_json::json!({"event": "connected", "protocol": protocol, "version": version})
            }
            StreamEvent::Start { sequence, start } => serde_json::json!({
                "event": "start", "sequenceNumber": sequence.to_string(),
                "streamSid": start.stream_sid, "start": start,
            }),
            StreamEvent::Media {
                sequence,
                stream_sid,
                track,
                chunk,
                timestamp,
                payload,
            } => serde_json::json!({
                "event": "media", "sequenceNumber": sequence.to_string(), "streamSid": stream_sid,
                "media": {"track": track, "chunk": chunk.to_string(), "timestamp": timestamp.to_string(), "payload": payload},
            }),
            StreamEvent::Dtmf { stream_sid, digit } => serde_json::json!({
                "event": "dtmf", "streamSid": stream_sid, "dtmf": {"track": "inbound_track", "digit": digit},
            }),
            StreamEvent::Mark { stream_sid, name } => {
                serde_json::json!({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})
            }
            StreamEvent::Stop { stream_sid, call_sid } => serde_json::json!({
                "event": "stop", "streamSid": stream_sid, "stop": {"callSid": call_sid},
            }),
        };
        v.to_string()
    }
}

impl<'a> BotCommand<'a> {
    /// Parses a message from the bot.
    pub fn parse(msg: &'a str) -> Result<Self, ProtoError> {
        let w: Wire<'a> = serde_json::from_str(msg).map_err(json_err)?;
        let stream_sid = w.stream_sid.unwrap_or(Cow::Borrowed(""));
        Ok(match &*w.event {
            "media" => BotCommand::Media {
                stream_sid,
                payload: w.media.ok_or_else(|| missing("media"))?.payload,
            },
            "mark" => BotCommand::Mark {
                stream_sid,
                name: w.mark.ok_or_else(|| missing("mark"))?.name,
            },
            "clear" => BotCommand::Clear { stream_sid },
            "dtmf" => BotCommand::Dtmf {
                stream_sid,
                digit: w.dtmf.ok_or_else(|| missing("dtmf"))?.digit,
            },
            "transfer" => BotCommand::Transfer {
                stream_sid,
                target: w.transfer.ok_or_else(|| missing("transfer"))?.target,
            },
            other => return Err(ProtoError::Json(format!("unknown bot event {other:?}"))),
        })
    }

    /// Writes the message as JSON.
    pub fn to_json(&self) -> String {
        match self {
            BotCommand::Media { stream_sid, payload } => {
                serde_json::json!({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})
            }
            BotCommand::Mark { stream_sid, name } => {
                serde_json::json!({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})
            }
            BotCommand::Clear { stream_sid } => {
                serde_json::json!({"event": "clear", "streamSid": stream_sid})
            }
            BotCommand::Dtmf { stream_sid, digit } => {
                serde_json::json!({"event": "dtmf", "streamSid": stream_sid, "dtmf": {"digit": digit}})
            }
            BotCommand::Transfer { stream_sid, target } => {
                serde_json::json!({"event": "transfer", "streamSid": stream_sid, "transfer": {"target": target}})
            }
        }
        .to_string()
    }
}

/// Decodes a base64 payload into `out` (cleared first; its capacity is reused).
pub fn decode_payload(payload: &str, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    out.clear();
    base64::engine::general_purpose::STANDARD
        .decode_vec(payload, out)
        .map_err(|e| ProtoError::Base64(e.to_string()))
}

/// Encodes audio bytes as base64 into `out` (cleared first; capacity reused).
pub fn encode_payload(audio: &[u8], out: &mut String) {
    out.clear();
    base64::engine::general_purpose::STANDARD.encode_string(audio, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Shapes as in Twilio's Media Streams documentation (values shortened).
    const START: &str = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{"caller":"+15550100"}},"streamSid":"MZ1"}"#;
    const MEDIA: &str = r#"{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"no+JhoaJjpzS"},"streamSid":"MZ1"}"#;

    #[test]
    fn documented_messages_parse() {
        let StreamEvent::Start { sequence, start } = StreamEvent::parse(START).expect("valid") else {
            panic!()
        };
        assert_eq!(sequence, 1);
        assert_eq!(start.media_format.sample_rate, 8000);
        assert_eq!(start.custom_parameters["caller"], "+15550100");
        let StreamEvent::Media {
            payload,
            chunk,
            timestamp,
            ..
        } = StreamEvent::parse(MEDIA).expect("valid")
        else {
            panic!()
        };
        assert!(
            matches!(payload, Cow::Borrowed(_)),
            "payload is borrowed from the message"
        );
        assert_eq!((chunk, timestamp), (1, 5));
        let mut buf = Vec::with_capacity(64);
        decode_payload(&payload, &mut buf).expect("base64");
        assert_eq!(buf.len(), 9);
        assert_eq!(
            BotCommand::parse(r#"{"event":"clear","streamSid":"MZ1"}"#).expect("valid"),
            BotCommand::Clear {
                stream_sid: "MZ1".into()
            }
        );
        assert_eq!(
            BotCommand::parse(r#"{"event":"transfer","streamSid":"MZ1","transfer":{"target":"+15550123"}}"#)
                .expect("valid"),
            BotCommand::Transfer {
                stream_sid: "MZ1".into(),
                target: "+15550123".into()
            }
        );
        assert!(BotCommand::parse(r#"{"event":"transfer","streamSid":"MZ1"}"#).is_err());
    }

    #[test]
    fn bad_messages_are_errors() {
        assert!(StreamEvent::parse("{").is_err());
        assert!(StreamEvent::parse(r#"{"event":"bogus"}"#).is_err());
        assert!(StreamEvent::parse(r#"{"event":"media"}"#).is_err());
        assert!(BotCommand::parse(r#"{"event":"start"}"#).is_err());
        let mut buf = Vec::new();
        assert!(decode_payload("not base64!!", &mut buf).is_err());
    }

    proptest! {
        #[test]
        fn events_round_trip(sid in "[A-Za-z0-9]{0,34}", audio in prop::collection::vec(any::<u8>(), 0..400), seq in any::<u32>(), name in ".*", digit in "[0-9*#]") {
            let mut b64 = String::new();
            encode_payload(&audio, &mut b64);
            let events = vec![
                StreamEvent::Media { sequence: seq as u64, stream_sid: sid.clone().into(), track: "inbound".into(), chunk: 7, timestamp: 140, payload: b64.clone().into() },
                StreamEvent::Dtmf { stream_sid: sid.clone().into(), digit: digit.into() },
                StreamEvent::Mark { stream_sid: sid.clone().into(), name: name.clone().into() },
                StreamEvent::Stop { stream_sid: sid.clone().into(), call_sid: "CA".into() },
            ];
            for e in events {
                let json = e.to_json();
                prop_assert_eq!(StreamEvent::parse(&json).expect("valid"), e);
            }
            for c in [BotCommand::Media { stream_sid: sid.clone().into(), payload: b64.clone().into() }, BotCommand::Mark { stream_sid: sid.clone().into(), name: name.clone().into() }, BotCommand::Transfer { stream_sid: sid.clone().into(), target: name.into() }, BotCommand::Clear { stream_sid: sid.into() }] {
                let json = c.to_json();
                prop_assert_eq!(BotCommand::parse(&json).expect("valid"), c);
            }
            let mut back = Vec::new();
            decode_payload(&b64, &mut back).expect("base64");
            prop_assert_eq!(back, audio);
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".*") {
            let _ = StreamEvent::parse(&s);
            let _ = BotCommand::parse(&s);
        }
    }
}
