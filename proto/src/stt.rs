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

use crate::ProtoError;
use serde::Deserialize;

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

    proptest! {
        /// No panic on any text.
        #[test]
        fn never_panics(text in ".{0,200}") {
            let _ = parse_deepgram(&text);
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
