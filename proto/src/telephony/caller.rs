//! What the provider (voxbridge, in its part) sends, read as a bot reads
//! it: the dialect is told from the start message's shape, as pipecat's
//! runner tells it (`parse_telephony_websocket`); Vonage's opening is its
//! `websocket:connected` event, jambonz's the metadata object with
//! `callSid` and `sampleRate`. The audio of those two arrives in binary
//! messages, which are not parsed here.

use super::wire::{WireDigit, WireName};
use super::{Dialect, Encoding};
use crate::error::ProtoError;
use crate::twilio::{borrowed_opt, lenient_u64};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// What a start message says about the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartInfo {
    /// Whose dialect the message is in.
    pub dialect: Dialect,
    /// The stream.
    pub stream_id: String,
    /// The call.
    pub call_id: String,
    /// The account (empty when the dialect or message has none).
    pub account_id: String,
    /// The calling party, when the message names it.
    pub from: Option<String>,
    /// The called party, when the message names it.
    pub to: Option<String>,
    /// The payload encoding.
    pub encoding: Encoding,
    /// Its rate.
    pub sample_rate: u32,
    /// Parameters passed through from the call's setup.
    pub params: BTreeMap<String, String>,
}

/// A message from the provider's side of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerEvent<'a> {
    /// The socket is up (Twilio, Telnyx, Exotel).
    Connected,
    /// The stream's metadata (for Vonage its `websocket:connected`, for
    /// jambonz its first text message).
    Start(Box<StartInfo>),
    /// Caller audio, base64 in the start message's encoding.
    Media {
        /// Counts media messages from 1, where the dialect numbers them.
        chunk: Option<u64>,
        /// Base64 audio.
        payload: Cow<'a, str>,
    },
    /// A key the caller pressed.
    Dtmf {
        /// The key.
        digit: Cow<'a, str>,
    },
    /// The audio before a mark the bot sent has been played.
    Mark {
        /// The bot's label.
        name: Cow<'a, str>,
    },
    /// The bot's barge-in was carried out (Plivo's `clearedAudio`,
    /// Vonage's `websocket:cleared`).
    Cleared,
    /// The stream ended (Genesys: `close`, which the bot answers `closed`).
    Stop,
    /// Genesys's keepalive, which the bot answers `pong`.
    Ping,
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    event: Option<Cow<'a, str>>,
    /// jambonz's messages to the bot name themselves in `type`.
    #[serde(rename = "type", borrow, default, deserialize_with = "borrowed_opt")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    media: Option<WireMedia<'a>>,
    #[serde(borrow, default)]
    dtmf: Option<Digit<'a>>,
    /// Vonage's `websocket:dtmf` carries the digit at the top level.
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    digit: Option<Cow<'a, str>>,
    #[serde(default)]
    payload: Option<Value>,
    #[serde(borrow, default)]
    data: Option<WireName<'a>>,
    /// Genesys AudioHook messages carry their protocol version.
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    parameters: Option<WireParameters<'a>>,
    #[serde(borrow, default)]
    mark: Option<WireName<'a>>,
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct WireMedia<'a> {
    #[serde(default, deserialize_with = "lenient_u64")]
    chunk: Option<u64>,
    #[serde(borrow)]
    payload: Cow<'a, str>,
}

/// Genesys's `parameters`: only a `dtmf` message's digit is read here.
#[derive(Deserialize)]
struct WireParameters<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed_opt")]
    digit: Option<Cow<'a, str>>,
}

/// `dtmf` is an object (`{"digit": ...}`) or, on jambonz, the digit itself.
#[derive(Deserialize)]
#[serde(untagged)]
enum Digit<'a> {
    Object(#[serde(borrow)] WireDigit<'a>),
    Bare(#[serde(borrow)] Cow<'a, str>),
}

impl<'a> Digit<'a> {
    fn digit(self) -> Cow<'a, str> {
        match self {
            Digit::Object(d) => d.digit,
            Digit::Bare(d) => d,
        }
    }
}

fn bad(what: String) -> ProtoError {
    ProtoError::Json(what)
}

impl<'a> CallerEvent<'a> {
    /// Parses a message from the provider's side, in any dialect.
    pub fn parse(msg: &'a str) -> Result<Self, ProtoError> {
        let w: Wire<'a> = serde_json::from_str(msg).map_err(|e| bad(e.to_string()))?;
        let Some(event) = w.event else {
            if w.version.is_some() && w.kind.is_some() {
                return match w.kind.as_deref() {
                    Some("open") => Ok(CallerEvent::Start(Box::new(genesys_start(msg)?))),
                    Some("dtmf") => Ok(CallerEvent::Dtmf {
                        digit: w
                            .parameters
                            .and_then(|p| p.digit)
                            .ok_or_else(|| bad("genesys dtmf without parameters.digit".into()))?,
                    }),
                    Some("close") => Ok(CallerEvent::Stop),
                    Some("ping") => Ok(CallerEvent::Ping),
                    other => Err(bad(format!("unknown genesys client message type {other:?}"))),
                };
            }
            return match w.kind.as_deref() {
                Some("mark") => Ok(CallerEvent::Mark {
                    name: w
                        .data
                        .ok_or_else(|| bad("jambonz mark without data.name".into()))?
                        .name,
                }),
                Some(other) => Err(bad(format!("unknown provider message type {other:?}"))),
                None => Ok(CallerEvent::Start(Box::new(jambonz_start(msg)?))),
            };
        };
        Ok(match &*event {
            "connected" => CallerEvent::Connected,
            "websocket:connected" => CallerEvent::Start(Box::new(vonage_start(msg)?)),
            "start" => CallerEvent::Start(Box::new(start(msg)?)),
            "media" => {
                let m = w.media.ok_or_else(|| bad("media without media".into()))?;
                CallerEvent::Media {
                    chunk: m.chunk,
                    payload: m.payload,
                }
            }
            "dtmf" => CallerEvent::Dtmf {
                digit: w
                    .dtmf
                    .ok_or_else(|| bad("dtmf without dtmf.digit".into()))?
                    .digit(),
            },
            "websocket:dtmf" => CallerEvent::Dtmf {
                digit: w
                    .digit
                    .ok_or_else(|| bad("websocket:dtmf without digit".into()))?,
            },
            "websocket:notify" => CallerEvent::Mark {
                name: Cow::Owned(
                    w.payload
                        .ok_or_else(|| bad("websocket:notify without payload".into()))?
                        .to_string(),
                ),
            },
            "websocket:cleared" => CallerEvent::Cleared,
            "mark" => CallerEvent::Mark {
                name: w.mark.ok_or_else(|| bad("mark without mark.name".into()))?.name,
            },
            "playedStream" => CallerEvent::Mark {
                name: w.name.ok_or_else(|| bad("playedStream without a name".into()))?,
            },
            "clearedAudio" => CallerEvent::Cleared,
            "stop" => CallerEvent::Stop,
            other => return Err(bad(format!("unknown provider event {other:?}"))),
        })
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(v: &Value, key: &str) -> Option<u32> {
    match v.get(key)? {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    let parsed;
    let v = match v {
        // Plivo's extra headers arrive as a JSON string.
        Some(Value::String(s)) => {
            parsed = serde_json::from_str::<Value>(s).ok();
            parsed.as_ref()
        }
        other => other,
    };
    let Some(Value::Object(m)) = v else {
        return BTreeMap::new();
    };
    m.iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

/// String values of `v` except the `known` keys (the parameters a
/// Vonage or jambonz opening carries beside its own fields).
fn other_strings(v: &Value, known: &[&str]) -> BTreeMap<String, String> {
    let Value::Object(m) = v else {
        return BTreeMap::new();
    };
    m.iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

/// Vonage's `websocket:connected`: the content type names the rate, the
/// NCCO's headers sit beside it.
fn vonage_start(msg: &str) -> Result<StartInfo, ProtoError> {
    let v: Value = serde_json::from_str(msg).map_err(|e| bad(e.to_string()))?;
    let content_type = text(&v, "content-type").unwrap_or_default();
    let mut parts = content_type.split(';').map(str::trim);
    if !parts.next().is_some_and(|t| t.eq_ignore_ascii_case("audio/l16")) {
        return Err(bad(format!(
            "vonage websocket:connected: content-type {content_type:?} is not audio/l16"
        )));
    }
    let rate = parts
        .find_map(|p| p.strip_prefix("rate="))
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| bad(format!("vonage websocket:connected: no rate in {content_type:?}")))?;
    let params = other_strings(&v, &["event", "content-type"]);
    let call_id = params.get("call_id").cloned().unwrap_or_default();
    Ok(StartInfo {
        dialect: Dialect::Vonage,
        stream_id: call_id.clone(),
        call_id,
        account_id: params.get("customer_id").cloned().unwrap_or_default(),
        from: params.get("caller").cloned(),
        to: params.get("callee").cloned(),
        encoding: Encoding::L16,
        sample_rate: rate,
        params,
    })
}

/// jambonz's metadata: the call's attributes and `sampleRate`.
fn jambonz_start(msg: &str) -> Result<StartInfo, ProtoError> {
    let v: Value = serde_json::from_str(msg).map_err(|e| bad(e.to_string()))?;
    let call_id = text(&v, "callSid")
        .ok_or_else(|| bad("message of no known dialect (no event, no callSid)".into()))?;
    let sample_rate =
        number(&v, "sampleRate").ok_or_else(|| bad("jambonz metadata without sampleRate".into()))?;
    if let Some(mix) = text(&v, "mixType").filter(|m| m != "mono") {
        return Err(bad(format!("jambonz metadata: mixType {mix:?} (mono only)")));
    }
    const KNOWN: [&str; 8] = [
        "sampleRate",
        "mixType",
        "callSid",
        "callId",
        "accountSid",
        "direction",
        "from",
        "to",
    ];
    Ok(StartInfo {
        dialect: Dialect::Jambonz,
        stream_id: text(&v, "callId").unwrap_or_else(|| call_id.clone()),
        call_id,
        account_id: text(&v, "accountSid").unwrap_or_default(),
        from: text(&v, "from"),
        to: text(&v, "to"),
        encoding: Encoding::L16,
        sample_rate,
        params: other_strings(&v, &KNOWN),
    })
}

/// Genesys AudioHook's `open`: the session, the conversation, the caller
/// and the media offered.
fn genesys_start(msg: &str) -> Result<StartInfo, ProtoError> {
    let v: Value = serde_json::from_str(msg).map_err(|e| bad(e.to_string()))?;
    let p = v
        .get("parameters")
        .ok_or_else(|| bad("genesys open without parameters".into()))?;
    let media = p
        .get("media")
        .and_then(|m| m.as_array())
        .and_then(|m| m.first())
        .ok_or_else(|| bad("genesys open without media".into()))?;
    let format = text(media, "format").unwrap_or_default();
    if format != "PCMU" {
        return Err(bad(format!("genesys open: media format {format:?} (PCMU only)")));
    }
    let participant = p.get("participant").cloned().unwrap_or(Value::Null);
    Ok(StartInfo {
        dialect: Dialect::Genesys,
        stream_id: text(&v, "id").ok_or_else(|| bad("genesys open without id".into()))?,
        call_id: text(p, "conversationId")
            .ok_or_else(|| bad("genesys open without conversationId".into()))?,
        account_id: text(p, "organizationId").unwrap_or_default(),
        from: text(&participant, "ani").filter(|a| !a.is_empty()),
        to: text(&participant, "dnis").filter(|d| !d.is_empty()),
        encoding: Encoding::Mulaw,
        sample_rate: number(media, "rate").unwrap_or(8000),
        params: string_map(p.get("inputVariables")),
    })
}

/// Reads a start message, telling the dialect from its keys.
fn start(msg: &str) -> Result<StartInfo, ProtoError> {
    let v: Value = serde_json::from_str(msg).map_err(|e| bad(e.to_string()))?;
    let s = v.get("start").ok_or_else(|| bad("start without start".into()))?;
    let has = |k: &str| s.get(k).is_some();
    let dialect = if has("streamSid") && has("callSid") {
        Dialect::Twilio
    } else if v.get("stream_id").is_some() && has("call_control_id") {
        Dialect::Telnyx
    } else if has("streamId") && has("callId") {
        Dialect::Plivo
    } else if has("stream_sid") && has("call_sid") && has("account_sid") {
        Dialect::Exotel
    } else {
        return Err(bad("start message of no known dialect".into()));
    };
    let need =
        |v: &Value, k: &str| text(v, k).ok_or_else(|| bad(format!("{} start without {k}", dialect.name())));
    let format_of = |key: &str| s.get(key).cloned().unwrap_or(Value::Null);
    let unknown = |what: &str| bad(format!("{} start: unknown encoding {what:?}", dialect.name()));
    let info = match dialect {
        Dialect::Twilio => {
            let f = format_of("mediaFormat");
            let enc = text(&f, "encoding").unwrap_or_default();
            let params = string_map(s.get("customParameters"));
            StartInfo {
                dialect,
                stream_id: need(s, "streamSid")?,
                call_id: need(s, "callSid")?,
                account_id: text(s, "accountSid").unwrap_or_default(),
                from: params.get("caller").cloned(),
                to: params.get("callee").cloned(),
                encoding: Encoding::from_content_type(&enc).ok_or_else(|| unknown(&enc))?,
                sample_rate: number(&f, "sampleRate").unwrap_or(8000),
                params,
            }
        }
        Dialect::Telnyx => {
            let f = format_of("media_format");
            let enc = text(&f, "encoding").unwrap_or_default();
            StartInfo {
                dialect,
                stream_id: need(&v, "stream_id")?,
                call_id: need(s, "call_control_id")?,
                account_id: text(s, "user_id").unwrap_or_default(),
                from: text(s, "from"),
                to: text(s, "to"),
                encoding: [Encoding::Mulaw, Encoding::Alaw, Encoding::L16]
                    .into_iter()
                    .find(|e| e.telnyx_name() == enc)
                    .ok_or_else(|| unknown(&enc))?,
                sample_rate: number(&f, "sample_rate").unwrap_or(8000),
                params: string_map(s.get("custom_parameters")),
            }
        }
        Dialect::Plivo => {
            let f = format_of("mediaFormat");
            let enc = text(&f, "encoding").unwrap_or_default();
            let params = string_map(v.get("extra_headers"));
            StartInfo {
                dialect,
                stream_id: need(s, "streamId")?,
                call_id: need(s, "callId")?,
                account_id: text(s, "accountId").unwrap_or_default(),
                from: params.get("caller").cloned(),
                to: params.get("callee").cloned(),
                encoding: Encoding::from_content_type(&enc).ok_or_else(|| unknown(&enc))?,
                sample_rate: number(&f, "sampleRate").unwrap_or(8000),
                params,
            }
        }
        Dialect::Exotel => {
            let f = format_of("media_format");
            StartInfo {
                dialect,
                stream_id: need(s, "stream_sid")?,
                call_id: need(s, "call_sid")?,
                account_id: text(s, "account_sid").unwrap_or_default(),
                from: text(s, "from"),
                to: text(s, "to"),
                // Exotel streams raw 16-bit PCM ("base64" names the transfer encoding).
                encoding: Encoding::L16,
                sample_rate: number(&f, "sample_rate").unwrap_or(8000),
                params: string_map(s.get("custom_parameters")),
            }
        }
        Dialect::Vonage | Dialect::Jambonz | Dialect::Genesys => {
            return Err(bad(format!("a {} stream has no start message", dialect.name())))
        }
    };
    Ok(info)
}
