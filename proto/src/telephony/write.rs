//! What voxbridge, in the provider's part, writes to the bot.

use super::{Dialect, Encoding, Ids};
use crate::twilio::{MediaFormat, StartInfo as TwilioStart, StreamEvent};
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write;

/// What the opening messages tell the bot.
#[derive(Debug, Clone, Copy)]
pub struct Opening<'a> {
    /// The stream's names.
    pub ids: Ids<'a>,
    /// The start message's sequence number (1 on a first connect; a
    /// reconnected bot link continues the count).
    pub seq: u64,
    /// The calling party.
    pub from: Option<&'a str>,
    /// The called party.
    pub to: Option<&'a str>,
    /// The payload encoding both ways.
    pub encoding: Encoding,
    /// Its rate.
    pub sample_rate: u32,
    /// Parameters from the call's setup and the route.
    pub params: &'a BTreeMap<String, String>,
}

impl Dialect {
    /// The messages that open the stream, in order.
    pub fn opening(self, o: &Opening<'_>) -> Vec<String> {
        let Ids {
            stream_id,
            call_id,
            account_id,
            ..
        } = o.ids;
        let (from, to) = (o.from.unwrap_or_default(), o.to.unwrap_or_default());
        match self {
            Dialect::Twilio => {
                let mut params = o.params.clone();
                if let Some(c) = o.from {
                    params.insert("caller".into(), c.into());
                }
                if let Some(c) = o.to {
                    params.insert("callee".into(), c.into());
                }
                let connected = StreamEvent::Connected {
                    protocol: "Call".into(),
                    version: "1.0.0".into(),
                };
                let start = StreamEvent::Start {
                    sequence: o.seq,
                    start: TwilioStart {
                        account_sid: account_id.into(),
                        stream_sid: stream_id.into(),
                        call_sid: call_id.into(),
                        tracks: vec!["inbound".into()],
                        media_format: MediaFormat {
                            encoding: o.encoding.content_type().into(),
                            sample_rate: o.sample_rate,
                            channels: 1,
                        },
                        custom_parameters: params,
                    },
                };
                vec![connected.to_json(), start.to_json()]
            }
            Dialect::Telnyx => vec![
                json!({"event": "connected", "version": "1.0.0"}).to_string(),
                json!({
                    "event": "start", "sequence_number": o.seq.to_string(), "stream_id": stream_id,
                    "start": {
                        "user_id": account_id, "call_control_id": call_id, "client_state": "",
                        "from": from, "to": to, "custom_parameters": o.params,
                        "media_format": {"encoding": o.encoding.telnyx_name(), "sample_rate": o.sample_rate, "channels": 1},
                    },
                })
                .to_string(),
            ],
            Dialect::Plivo => {
                // Plivo hands the XML's extra headers over as one string.
                let mut headers = o.params.clone();
                if let Some(c) = o.from {
                    headers.insert("caller".into(), c.into());
                }
                if let Some(c) = o.to {
                    headers.insert("callee".into(), c.into());
                }
                vec![json!({
                    "event": "start", "sequenceNumber": o.seq,
                    "start": {
                        "callId": call_id, "streamId": stream_id, "accountId": account_id,
                        "tracks": ["inbound"],
                        "mediaFormat": {"encoding": o.encoding.content_type(), "sampleRate": o.sample_rate},
                    },
                    "extra_headers": json!(headers).to_string(),
                })
                .to_string()]
            }
            Dialect::Exotel => vec![
                json!({"event": "connected"}).to_string(),
                json!({
                    "event": "start", "sequence_number": o.seq, "stream_sid": stream_id,
                    "start": {
                        "stream_sid": stream_id, "call_sid": call_id, "account_sid": account_id,
                        "from": from, "to": to, "custom_parameters": o.params,
                        "media_format": {
                            "encoding": "base64", "sample_rate": o.sample_rate.to_string(),
                            "bit_rate": format!("{}kbps", o.sample_rate * 16 / 1000),
                        },
                    },
                })
                .to_string(),
            ],
            Dialect::Vonage => {
                // Vonage hands the NCCO endpoint's `headers` over as
                // top-level keys beside the content type.
                let mut v = serde_json::Map::new();
                for (k, val) in o.params {
                    v.insert(k.clone(), json!(val));
                }
                for (k, val) in [("call_id", Some(call_id)), ("caller", o.from), ("callee", o.to)] {
                    if let Some(val) = val {
                        v.insert(k.into(), json!(val));
                    }
                }
                v.insert("event".into(), json!("websocket:connected"));
                v.insert(
                    "content-type".into(),
                    json!(format!("audio/l16;rate={}", o.sample_rate)),
                );
                vec![serde_json::Value::Object(v).to_string()]
            }
            Dialect::Jambonz => {
                // The call's attributes as jambonz's webhooks carry them,
                // then the listen verb's `metadata` (the route's
                // parameters), which may add keys but not replace these.
                let mut v = serde_json::Map::new();
                v.insert("sampleRate".into(), json!(o.sample_rate));
                v.insert("mixType".into(), json!("mono"));
                v.insert("callSid".into(), json!(call_id));
                v.insert("callId".into(), json!(stream_id));
                v.insert("accountSid".into(), json!(account_id));
                v.insert("direction".into(), json!("inbound"));
                v.insert("from".into(), json!(from));
                v.insert("to".into(), json!(to));
                for (k, val) in o.params {
                    v.entry(k.clone()).or_insert_with(|| json!(val));
                }
                vec![serde_json::Value::Object(v).to_string()]
            }
            // The conversation is the call; the route's parameters are
            // the Architect flow's input variables.
            Dialect::Genesys => vec![audiohook(
                "open",
                o.seq,
                o.ids,
                json!({
                    "organizationId": account_id,
                    "conversationId": call_id,
                    "participant": {"id": call_id, "ani": from, "aniName": "", "dnis": to},
                    "media": [{"type": "audio", "format": "PCMU", "channels": ["external"], "rate": o.sample_rate}],
                    "language": o.params.get("language").map_or("en-US", String::as_str),
                    "inputVariables": o.params,
                    "customConfig": {},
                }),
            )],
        }
    }

    /// Writes one `media` message carrying `b64` (already base64) into
    /// `out`, with no allocation: the per-frame path. `chunk` counts media
    /// messages from 1; `ts_ms` is the audio's time since the stream began.
    /// The binary-audio dialects have no such message (an error).
    pub fn write_media<W: Write>(
        self,
        out: &mut W,
        stream_id: &str,
        seq: u64,
        chunk: u64,
        ts_ms: u64,
        b64: &str,
    ) -> std::fmt::Result {
        debug_assert!(
            !stream_id.contains(['"', '\\']) && !stream_id.contains(char::is_control),
            "stream ids are written unescaped"
        );
        match self {
            Dialect::Twilio => write!(
                out,
                r#"{{"event":"media","sequenceNumber":"{seq}","streamSid":"{stream_id}","media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{ts_ms}","payload":""#
            )?,
            Dialect::Telnyx => write!(
                out,
                r#"{{"event":"media","sequence_number":"{seq}","stream_id":"{stream_id}","media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{ts_ms}","payload":""#
            )?,
            Dialect::Plivo => write!(
                out,
                r#"{{"event":"media","sequenceNumber":{seq},"streamId":"{stream_id}","media":{{"track":"inbound","timestamp":"{ts_ms}","chunk":{chunk},"payload":""#
            )?,
            Dialect::Exotel => write!(
                out,
                r#"{{"event":"media","sequence_number":{seq},"stream_sid":"{stream_id}","media":{{"chunk":{chunk},"timestamp":"{ts_ms}","payload":""#
            )?,
            Dialect::Vonage | Dialect::Jambonz | Dialect::Genesys => return Err(std::fmt::Error),
        }
        out.write_str(b64)?;
        out.write_str("\"}}")
    }

    /// A key the caller pressed.
    pub fn dtmf(self, ids: Ids<'_>, seq: u64, digit: char) -> String {
        let digit = digit.to_string();
        match self {
            Dialect::Twilio => StreamEvent::Dtmf {
                stream_sid: ids.stream_id.into(),
                digit: digit.into(),
            }
            .to_json(),
            Dialect::Telnyx => json!({
                "event": "dtmf", "sequence_number": seq.to_string(), "stream_id": ids.stream_id,
                "dtmf": {"digit": digit},
            })
            .to_string(),
            Dialect::Plivo => json!({
                "event": "dtmf", "sequenceNumber": seq, "streamId": ids.stream_id,
                "dtmf": {"track": "inbound", "digit": digit},
            })
            .to_string(),
            Dialect::Exotel => json!({
                "event": "dtmf", "sequence_number": seq, "stream_sid": ids.stream_id,
                "dtmf": {"duration": "100", "digit": digit},
            })
            .to_string(),
            Dialect::Vonage => {
                json!({"event": "websocket:dtmf", "digit": digit, "duration": 100}).to_string()
            }
            // jambonz gives the duration in 8 kHz samples.
            Dialect::Jambonz => json!({"event": "dtmf", "dtmf": digit, "duration": 800}).to_string(),
            Dialect::Genesys => audiohook("dtmf", seq, ids, json!({"digit": digit})),
        }
    }

    /// The audio sent before the bot's mark `name` has been played, where
    /// the dialect has marks (Genesys has none).
    pub fn mark_played(self, ids: Ids<'_>, seq: u64, name: &str) -> Option<String> {
        Some(match self {
            Dialect::Twilio => StreamEvent::Mark {
                stream_sid: ids.stream_id.into(),
                name: name.into(),
            }
            .to_json(),
            Dialect::Telnyx => json!({
                "event": "mark", "sequence_number": seq.to_string(), "stream_id": ids.stream_id,
                "mark": {"name": name},
            })
            .to_string(),
            Dialect::Plivo => json!({
                "event": "playedStream", "sequenceNumber": seq, "streamId": ids.stream_id, "name": name,
            })
            .to_string(),
            Dialect::Exotel => json!({
                "event": "mark", "sequence_number": seq, "stream_sid": ids.stream_id,
                "mark": {"name": name},
            })
            .to_string(),
            // A Vonage `notify` carries any JSON as its payload; voxbridge
            // keeps it as text (see `BotCommand::parse`) and hands it back.
            Dialect::Vonage => {
                let payload = serde_json::from_str::<serde_json::Value>(name).unwrap_or_else(|_| json!(name));
                json!({"event": "websocket:notify", "payload": payload}).to_string()
            }
            Dialect::Jambonz => {
                json!({"type": "mark", "data": {"name": name, "event": "playout"}}).to_string()
            }
            Dialect::Genesys => return None,
        })
    }

    /// When a dialect's keepalive goes out: first this long after the link
    /// is up, then this often (Genesys AudioHook's `ping`, which a client
    /// sends a second after `open` and every 5 s after, as Genesys's
    /// reference client does). `None`: the dialect has none.
    pub fn keepalive_schedule(self) -> Option<(std::time::Duration, std::time::Duration)> {
        use std::time::Duration;
        (self == Dialect::Genesys).then_some((Duration::from_secs(1), Duration::from_secs(5)))
    }

    /// Writes the dialect's keepalive (Genesys's `ping`, which the bot
    /// answers `pong`), numbered `seq`, into `out` with no allocation (it
    /// goes out every few seconds of every call); `None` where the dialect
    /// has none.
    pub fn write_keepalive<W: Write>(self, out: &mut W, ids: Ids<'_>, seq: u64) -> Option<std::fmt::Result> {
        debug_assert!(
            !ids.stream_id.contains(['"', '\\']) && !ids.stream_id.contains(char::is_control),
            "stream ids are written unescaped"
        );
        (self == Dialect::Genesys).then(|| {
            write!(
                out,
                r#"{{"version":"2","type":"ping","seq":{seq},"serverseq":{},"id":"{}","position":"PT{}.{:03}S","parameters":{{}}}}"#,
                ids.peer_seq,
                ids.stream_id,
                ids.position_ms / 1000,
                ids.position_ms % 1000
            )
        })
    }

    /// The answer to a mark whose audio a barge-in dropped, where the
    /// dialect tells it apart from a played one (jambonz's `cleared`);
    /// elsewhere such a mark is answered as played, as Twilio does.
    pub fn mark_cleared(self, name: &str) -> Option<String> {
        match self {
            Dialect::Jambonz => {
                Some(json!({"type": "mark", "data": {"name": name, "event": "cleared"}}).to_string())
            }
            _ => None,
        }
    }

    /// The answer to the bot's barge-in, where the dialect has one (Plivo's
    /// `clearedAudio`, Vonage's `websocket:cleared`).
    pub fn cleared(self, ids: Ids<'_>, seq: u64) -> Option<String> {
        match self {
            Dialect::Plivo => Some(
                json!({"event": "clearedAudio", "sequenceNumber": seq, "streamId": ids.stream_id})
                    .to_string(),
            ),
            Dialect::Vonage => Some(json!({"event": "websocket:cleared"}).to_string()),
            _ => None,
        }
    }

    /// The end of the stream, where the dialect says it in a message (Plivo,
    /// Vonage and jambonz only close the socket; Genesys sends `close`, which
    /// the bot answers `closed`).
    pub fn stop(self, ids: Ids<'_>, seq: u64, reason: &str) -> Option<String> {
        match self {
            Dialect::Twilio => Some(
                StreamEvent::Stop {
                    stream_sid: ids.stream_id.into(),
                    call_sid: ids.call_id.into(),
                }
                .to_json(),
            ),
            Dialect::Telnyx => Some(
                json!({
                    "event": "stop", "sequence_number": seq.to_string(), "stream_id": ids.stream_id,
                    "stop": {"user_id": ids.account_id, "call_control_id": ids.call_id, "reason": reason},
                })
                .to_string(),
            ),
            Dialect::Plivo | Dialect::Vonage | Dialect::Jambonz => None,
            Dialect::Genesys => Some(audiohook("close", seq, ids, json!({"reason": "end"}))),
            Dialect::Exotel => Some(
                json!({
                    "event": "stop", "sequence_number": seq, "stream_sid": ids.stream_id,
                    "stop": {"call_sid": ids.call_id, "account_sid": ids.account_id, "reason": reason},
                })
                .to_string(),
            ),
        }
    }
}

/// An AudioHook (protocol version 2) message from the client: its sequence
/// number, the last one seen from the bot, the session and the position in
/// the audio (ISO 8601, `PT1.240S`).
fn audiohook(kind: &str, seq: u64, ids: Ids<'_>, parameters: serde_json::Value) -> String {
    json!({
        "version": "2", "type": kind, "seq": seq, "serverseq": ids.peer_seq, "id": ids.stream_id,
        "position": format!("PT{}.{:03}S", ids.position_ms / 1000, ids.position_ms % 1000),
        "parameters": parameters,
    })
    .to_string()
}
