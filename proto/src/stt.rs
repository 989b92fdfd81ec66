//! Speech-to-text providers' live-streaming messages, sans-IO.
//!
//! The Deepgram live-streaming API (`/v1/listen` over WebSocket), the one
//! most providers copy: the client sends binary frames of linear16 audio at
//! the `sample_rate` of the URL and, at the end, `{"type":"CloseStream"}`;
//! the server answers JSON text messages. A `Results` message carries
//! `is_final`, `start` and `duration` (seconds since the stream began) and
//! `channel.alternatives[0].transcript`; `Metadata`, `SpeechStarted` and
//! `UtteranceEnd` carry nothing a transcript needs. Field names and message
//! types are Deepgram's documented ones.
//!
//! voxbridge's own protocol ([`PlainClient`], [`PlainServer`]), for a
//! recognizer written to voxbridge rather than to a vendor: the client
//! opens with a `start` text message (encoding, rate, language, direction),
//! sends binary frames of little-endian linear16 mono audio, and ends with
//! `stop`; the server sends `transcript` messages (words, `final`,
//! `start_ms` and `duration_ms` since the stream's first sample), may send
//! `error` (the stream is then over), and closes after the last result
//! once `stop` came. Unknown message types are ignored both ways. The
//! control API's OpenAPI document carries these as schemas.

use crate::ProtoError;
use serde::{Deserialize, Serialize};

/// What the client sends when the audio ends: the server flushes what it
/// holds, sends its last results and a `Metadata` message, and closes.
pub const CLOSE_STREAM: &str = r#"{"type":"CloseStream"}"#;

/// One server message.
#[derive(Debug, Clone, PartialEq)]
pub enum SttMessage {
    /// A transcription result for a stretch of the stream.
    Result(SttResult),
    /// Anything else (`Metadata`, `SpeechStarted`, `UtteranceEnd`, types a
    /// newer server adds): nothing to do.
    Other,
    /// The recognizer refuses to go on, and says why (voxbridge's protocol).
    Refused(String),
}

/// A transcription result.
#[derive(Debug, Clone, PartialEq)]
pub struct SttResult {
    /// The words (the first alternative; may be empty).
    pub transcript: String,
    /// Final for its stretch (an interim result is replaced by later ones).
    pub is_final: bool,
    /// Start of the stretch, ms since the stream's first sample.
    pub start_ms: u64,
    /// Its length, ms.
    pub duration_ms: u64,
}

/// Only the type: other messages' fields (`channel` is an array in
/// `SpeechStarted`) are not a result's.
#[derive(Deserialize)]
struct Kind {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    is_final: bool,
    start: Option<f64>,
    duration: Option<f64>,
    channel: Option<Channel>,
}

#[derive(Deserialize)]
struct Channel {
    #[serde(default)]
    alternatives: Vec<Alternative>,
}

#[derive(Deserialize)]
struct Alternative {
    #[serde(default)]
    transcript: String,
}

/// Seconds as whole milliseconds; `None` for what is not a time (negative,
/// not finite, beyond ten years).
fn millis(seconds: f64) -> Option<u64> {
    (seconds.is_finite() && (0.0..=315_360_000.0).contains(&seconds))
        .then(|| (seconds * 1000.0).round() as u64)
}

/// Decodes one text message of the Deepgram live API.
pub fn parse_deepgram(text: &str) -> Result<SttMessage, ProtoError> {
    let bad = |e: serde_json::Error| ProtoError::Stt(format!("message: {e}"));
    let kind: Kind = serde_json::from_str(text).map_err(bad)?;
    if kind.kind.as_deref() != Some("Results") {
        return Ok(SttMessage::Other);
    }
    let m: Message = serde_json::from_str(text).map_err(bad)?;
    let field = |v: Option<f64>, name: &str| {
        v.and_then(millis)
            .ok_or_else(|| ProtoError::Stt(format!("result: `{name}` is not a time in seconds")))
    };
    let start_ms = field(m.start, "start")?;
    let duration_ms = field(m.duration, "duration")?;
    let transcript = m
        .channel
        .and_then(|c| c.alternatives.into_iter().next())
        .map(|a| a.transcript)
        .unwrap_or_default();
    Ok(SttMessage::Result(SttResult {
        transcript,
        is_final: m.is_final,
        start_ms,
        duration_ms,
    }))
}

/// What voxbridge sends a recognizer in its own protocol (text messages;
/// the audio goes between `start` and `stop` as binary frames of
/// little-endian linear16 mono samples).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PlainClient {
    /// The first message of a stream.
    Start {
        /// Always `linear16`.
        encoding: String,
        /// Samples per second of the audio frames.
        sample_rate: u32,
        /// Always 1.
        channels: u8,
        /// A language tag such as `en` or `en-US`.
        language: String,
        /// `in` (the caller's speech) or `out` (what the caller heard).
        direction: String,
        /// The call.
        call_id: String,
        /// The transcribe (one session; its streams and reconnects share it).
        transcribe_id: String,
    },
    /// No more audio: send the last results, then close.
    Stop,
}

/// What a recognizer sends voxbridge in voxbridge's protocol (text
/// messages; other types are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PlainServer {
    /// Words heard in a stretch of the stream.
    Transcript {
        /// The words (may be empty).
        text: String,
        /// Final for its stretch; an interim result (`false`) is replaced
        /// by later ones and not stored.
        #[serde(rename = "final")]
        is_final: bool,
        /// Start of the stretch, ms since the stream's first sample.
        start_ms: u64,
        /// Its length, ms.
        #[serde(default)]
        duration_ms: u64,
    },
    /// The recognizer will not go on (a bad key, an unknown language);
    /// voxbridge counts it and reconnects as for a dropped connection.
    Error {
        /// Why.
        message: String,
    },
}

/// The opening message of voxbridge's protocol, as JSON text.
pub fn plain_start(
    sample_rate: u32,
    language: &str,
    direction: &str,
    call_id: &str,
    transcribe_id: &str,
) -> String {
    let start = PlainClient::Start {
        encoding: "linear16".into(),
        sample_rate,
        channels: 1,
        language: language.into(),
        direction: direction.into(),
        call_id: call_id.into(),
        transcribe_id: transcribe_id.into(),
    };
    // A tagged enum of strings and numbers always serialises.
    serde_json::to_string(&start).unwrap_or_default()
}

/// The closing message of voxbridge's protocol.
pub const PLAIN_STOP: &str = r#"{"type":"stop"}"#;

/// Decodes one text message of voxbridge's own protocol.
pub fn parse_plain(text: &str) -> Result<SttMessage, ProtoError> {
    let bad = |e: serde_json::Error| ProtoError::Stt(format!("message: {e}"));
    let kind: Kind = serde_json::from_str(text).map_err(bad)?;
    if !matches!(kind.kind.as_deref(), Some("transcript" | "error")) {
        return Ok(SttMessage::Other);
    }
    Ok(match serde_json::from_str(text).map_err(bad)? {
        PlainServer::Transcript {
            text,
            is_final,
            start_ms,
            duration_ms,
        } => SttMessage::Result(SttResult {
            transcript: text,
            is_final,
            start_ms,
            duration_ms,
        }),
        PlainServer::Error { message } => SttMessage::Refused(message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_final_result_gives_its_words_and_times() {
        let msg = r#"{"type":"Results","channel_index":[0,1],"duration":1.25,"start":3.5,
            "is_final":true,"speech_final":true,
            "channel":{"alternatives":[{"transcript":"check my order","confidence":0.93,"words":[]}]},
            "metadata":{"request_id":"x"}}"#;
        assert_eq!(
            parse_deepgram(msg).expect("parses"),
            SttMessage::Result(SttResult {
                transcript: "check my order".into(),
                is_final: true,
                start_ms: 3500,
                duration_ms: 1250,
            })
        );
    }

    #[test]
    fn other_messages_are_nothing_to_do_and_garbage_is_an_error() {
        for m in [
            r#"{"type":"Metadata","request_id":"r","duration":0.0,"channels":0}"#,
            r#"{"type":"SpeechStarted","channel":[0],"timestamp":1.0}"#,
            r#"{"type":"UtteranceEnd","channel":[0,1],"last_word_end":2.1}"#,
        ] {
            assert_eq!(parse_deepgram(m).expect(m), SttMessage::Other);
        }
        for bad in [
            "",
            "not json",
            r#"{"type":"Results","start":-1,"duration":1}"#,
            r#"{"type":"Results","duration":1}"#,
            r#"{"type":"Results","start":1,"duration":1,"channel":{"alternatives":[{"transcript":7}]}}"#,
        ] {
            assert!(parse_deepgram(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_plain_protocol_reads_results_errors_and_ignores_the_rest() {
        let msg = r#"{"type":"transcript","text":"check my order","final":true,"start_ms":3500,"duration_ms":1250,"extra":1}"#;
        assert_eq!(
            parse_plain(msg).expect("parses"),
            SttMessage::Result(SttResult {
                transcript: "check my order".into(),
                is_final: true,
                start_ms: 3500,
                duration_ms: 1250,
            })
        );
        assert_eq!(
            parse_plain(r#"{"type":"error","message":"bad key"}"#).expect("parses"),
            SttMessage::Refused("bad key".into())
        );
        assert_eq!(
            parse_plain(r#"{"type":"speech_started"}"#).expect("parses"),
            SttMessage::Other
        );
        for bad in [
            "",
            "[]",
            r#"{"type":"transcript","text":"x","final":true}"#,
            r#"{"type":"transcript","text":"x","final":true,"start_ms":-5}"#,
            r#"{"type":"error"}"#,
        ] {
            assert!(parse_plain(bad).is_err(), "{bad}");
        }
        let start: serde_json::Value =
            serde_json::from_str(&plain_start(16000, "en-US", "in", "c1", "t1")).expect("json");
        assert_eq!(start["type"], "start");
        assert_eq!(start["sample_rate"], 16000);
        assert_eq!(start["encoding"], "linear16");
        let stop: PlainClient = serde_json::from_str(PLAIN_STOP).expect("stop");
        assert_eq!(stop, PlainClient::Stop);
    }

    proptest! {
        /// No panic on any text.
        #[test]
        fn never_panics(text in ".{0,200}") {
            let _ = parse_deepgram(&text);
            let _ = parse_plain(&text);
        }

        /// A plain result as a recognizer writes it parses back to what was written.
        #[test]
        fn plain_results_round_trip(
            words in "\\PC{0,40}",
            is_final in any::<bool>(),
            start_ms in any::<u64>(),
            duration_ms in any::<u64>(),
        ) {
            let msg = serde_json::to_string(&PlainServer::Transcript {
                text: words.clone(), is_final, start_ms, duration_ms,
            }).expect("serialises");
            prop_assert_eq!(
                parse_plain(&msg).expect("parses"),
                SttMessage::Result(SttResult { transcript: words, is_final, start_ms, duration_ms })
            );
        }

        /// A result written as the server writes it parses back to what was written.
        #[test]
        fn results_round_trip(
            words in "[a-z ']{0,40}",
            is_final in any::<bool>(),
            start_ms in 0u64..10_000_000,
            duration_ms in 0u64..100_000,
        ) {
            let msg = serde_json::json!({
                "type": "Results",
                "start": start_ms as f64 / 1000.0,
                "duration": duration_ms as f64 / 1000.0,
                "is_final": is_final,
                "channel": {"alternatives": [{"transcript": words, "confidence": 0.5}]},
            })
            .to_string();
            prop_assert_eq!(
                parse_deepgram(&msg).expect("parses"),
                SttMessage::Result(SttResult { transcript: words, is_final, start_ms, duration_ms })
            );
        }
    }
}
