//! The JSON form of [`CallEvent`]s and [`CallCommand`]s between a media
//! process and a control process that run apart (they travel over Kafka,
//! see `control/src/link`). In one `voxbridge serve` nothing is encoded.
//!
//! One JSON object per message, tagged by `type` (`created`, `answered`,
//! `hungup`, `transcribe_started`, ... for events; `hangup` for commands). Each event carries an
//! `event_id` chosen by the sender, so a receiver that sees a message twice
//! (Kafka is at-least-once) can tell. Times are milliseconds since the Unix
//! epoch (`at_ms`), durations milliseconds. Unknown fields are ignored, so a
//! newer sender can add fields during a rolling upgrade; an unknown `type`,
//! a missing field or a bad value is an error, never a panic.

use crate::commands::TranscribeDirections;
use crate::error::ContractError;
use crate::events::{CallEvent, CallInfo, HangupCause, RecordingEnd, RtpCallStats, SipCause, Speaker};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A command control gives the media plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CallCommand {
    /// Hang the call up with cause `api_hangup`.
    Hangup {
        /// The call.
        call_id: String,
    },
}

impl CallCommand {
    /// The call the command is for.
    pub fn call_id(&self) -> &str {
        match self {
            CallCommand::Hangup { call_id } => call_id,
        }
    }

    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        // A tagged enum of strings always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses JSON bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, ContractError> {
        serde_json::from_slice(bytes).map_err(|e| ContractError::Wire(format!("call command: {e}")))
    }
}

/// A call event with the id its sender gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireEvent {
    /// Unique per event (a UUID); the same on every redelivery.
    pub event_id: String,
    /// The event.
    pub event: CallEvent,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Msg {
    Created {
        event_id: String,
        call_id: String,
        route: String,
        #[serde(default)]
        caller: Option<String>,
        #[serde(default)]
        callee: Option<String>,
        ingress: String,
        #[serde(default)]
        params: BTreeMap<String, String>,
        at_ms: u64,
    },
    BotConnected {
        event_id: String,
        call_id: String,
        connect_ms: u64,
        attempt: u32,
    },
    BotFailed {
        event_id: String,
        call_id: String,
        reason: String,
        will_retry: bool,
    },
    Answered {
        event_id: String,
        call_id: String,
        at_ms: u64,
    },
    Dtmf {
        event_id: String,
        call_id: String,
        digit: char,
    },
    Transcript {
        event_id: String,
        call_id: String,
        speaker: WireSpeaker,
        text: String,
        #[serde(default)]
        user_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        transcribe_id: Option<String>,
    },
    TranscribeStarted {
        event_id: String,
        call_id: String,
        transcribe_id: String,
        language: String,
        directions: TranscribeDirections,
        at_ms: u64,
    },
    TranscribeCompleted {
        event_id: String,
        call_id: String,
        transcribe_id: String,
        at_ms: u64,
    },
    Ringing {
        event_id: String,
        call_id: String,
        at_ms: u64,
    },
    RecordingStarted {
        event_id: String,
        call_id: String,
        recording_id: String,
        file: String,
        rate: u32,
        at_ms: u64,
    },
    RecordingPaused {
        event_id: String,
        call_id: String,
        recording_id: String,
        paused: bool,
        at_ms: u64,
    },
    RecordingFinished {
        event_id: String,
        call_id: String,
        recording_id: String,
        duration_ms: u64,
        bytes: u64,
        end: RecordingEnd,
        at_ms: u64,
    },
    RtpStats {
        event_id: String,
        call_id: String,
        stats: WireRtpStats,
    },
    Transferred {
        event_id: String,
        call_id: String,
        target: String,
        at_ms: u64,
    },
    TransferFailed {
        event_id: String,
        call_id: String,
        target: String,
        sip: WireSipCause,
        at_ms: u64,
    },
    Speech {
        event_id: String,
        call_id: String,
        speaker: WireSpeaker,
        started: bool,
        offset_ms: u64,
        at_ms: u64,
    },
    AnsweredBy {
        event_id: String,
        call_id: String,
        answered_by: String,
        cause: String,
        after_ms: u64,
        at_ms: u64,
    },
    Hungup {
        event_id: String,
        call_id: String,
        cause: String,
        duration_ms: u64,
        at_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sip: Option<WireSipCause>,
    },
}

/// [`SipCause`] on the wire: `{"code": 487, "reason": "..."}`.
#[derive(Serialize, Deserialize)]
struct WireSipCause {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
    reason: String,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum WireSpeaker {
    Caller,
    Bot,
}

/// [`RtpCallStats`] on the wire (missing fields are zero / absent).
#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct WireRtpStats {
    packets_received: u64,
    packets_lost: i64,
    jitter_ms: u32,
    jitter_buffer_ms: u32,
    late: u64,
    duplicates: u64,
    concealed_frames: u64,
    malformed: u64,
    rtt_ms: Option<u32>,
    remote_fraction_lost: Option<u8>,
    packets_sent: u64,
}

impl From<&RtpCallStats> for WireRtpStats {
    fn from(s: &RtpCallStats) -> Self {
        WireRtpStats {
            packets_received: s.packets_received,
            packets_lost: s.packets_lost,
            jitter_ms: s.jitter_ms,
            jitter_buffer_ms: s.jitter_buffer_ms,
            late: s.late,
            duplicates: s.duplicates,
            concealed_frames: s.concealed_frames,
            malformed: s.malformed,
            rtt_ms: s.rtt_ms,
            remote_fraction_lost: s.remote_fraction_lost,
            packets_sent: s.packets_sent,
        }
    }
}

impl From<WireRtpStats> for RtpCallStats {
    fn from(s: WireRtpStats) -> Self {
        RtpCallStats {
            packets_received: s.packets_received,
            packets_lost: s.packets_lost,
            jitter_ms: s.jitter_ms,
            jitter_buffer_ms: s.jitter_buffer_ms,
            late: s.late,
            duplicates: s.duplicates,
            concealed_frames: s.concealed_frames,
            malformed: s.malformed,
            rtt_ms: s.rtt_ms,
            remote_fraction_lost: s.remote_fraction_lost,
            packets_sent: s.packets_sent,
        }
    }
}

fn ms_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

/// The last millisecond of year 9999: later times cannot be written as
/// RFC 3339 timestamps in control's events.
const MAX_TIME_MS: u64 = 253_402_300_799_999;

fn time_of(ms: u64) -> Result<SystemTime, ContractError> {
    (ms <= MAX_TIME_MS)
        .then(|| UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
        .flatten()
        .ok_or_else(|| ContractError::Wire(format!("time {ms} ms out of range")))
}

/// The ingress names a media process sends (they are `&'static str` in
/// [`CallInfo`]).
fn ingress_of(name: &str) -> Result<&'static str, ContractError> {
    match name {
        "audiosocket" => Ok("audiosocket"),
        "rtp" => Ok("rtp"),
        other => Err(ContractError::Wire(format!("unknown ingress {other:?}"))),
    }
}

impl WireEvent {
    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        let id = self.event_id.clone();
        let msg = match &self.event {
            CallEvent::Created { info, at } => Msg::Created {
                event_id: id,
                call_id: info.call_id.clone(),
                route: info.route.clone(),
                caller: info.caller.clone(),
                callee: info.callee.clone(),
                ingress: info.ingress.to_owned(),
                params: info.params.clone(),
                at_ms: ms_of(*at),
            },
            CallEvent::BotConnected {
                call_id,
                connect_time,
                attempt,
            } => Msg::BotConnected {
                event_id: id,
                call_id: call_id.clone(),
                connect_ms: connect_time.as_millis().min(u64::MAX as u128) as u64,
                attempt: *attempt,
            },
            CallEvent::BotFailed {
                call_id,
                reason,
                will_retry,
            } => Msg::BotFailed {
                event_id: id,
                call_id: call_id.clone(),
                reason: reason.clone(),
                will_retry: *will_retry,
            },
            CallEvent::Answered { call_id, at } => Msg::Answered {
                event_id: id,
                call_id: call_id.clone(),
                at_ms: ms_of(*at),
            },
            CallEvent::Dtmf { call_id, digit } => Msg::Dtmf {
                event_id: id,
                call_id: call_id.clone(),
                digit: *digit,
            },
            CallEvent::Transcript {
                call_id,
                speaker,
                text,
                user_id,
                offset_ms,
                transcribe_id,
            } => Msg::Transcript {
                event_id: id,
                call_id: call_id.clone(),
                speaker: match speaker {
                    Speaker::Caller => WireSpeaker::Caller,
                    Speaker::Bot => WireSpeaker::Bot,
                },
                text: text.clone(),
                user_id: user_id.clone(),
                offset_ms: *offset_ms,
                transcribe_id: transcribe_id.clone(),
            },
            CallEvent::TranscribeStarted {
                call_id,
                transcribe_id,
                language,
                directions,
                at,
            } => Msg::TranscribeStarted {
                event_id: id,
                call_id: call_id.clone(),
                transcribe_id: transcribe_id.clone(),
                language: language.clone(),
                directions: *directions,
                at_ms: ms_of(*at),
            },
            CallEvent::TranscribeCompleted {
                call_id,
                transcribe_id,
                at,
            } => Msg::TranscribeCompleted {
                event_id: id,
                call_id: call_id.clone(),
                transcribe_id: transcribe_id.clone(),
                at_ms: ms_of(*at),
            },
            CallEvent::Ringing { call_id, at } => Msg::Ringing {
                event_id: id,
                call_id: call_id.clone(),
                at_ms: ms_of(*at),
            },
            CallEvent::RecordingStarted {
                call_id,
                recording_id,
                file,
                rate,
                at,
            } => Msg::RecordingStarted {
                event_id: id,
                call_id: call_id.clone(),
                recording_id: recording_id.clone(),
                file: file.clone(),
                rate: *rate,
                at_ms: ms_of(*at),
            },
            CallEvent::RecordingPaused {
                call_id,
                recording_id,
                paused,
                at,
            } => Msg::RecordingPaused {
                event_id: id,
                call_id: call_id.clone(),
                recording_id: recording_id.clone(),
                paused: *paused,
                at_ms: ms_of(*at),
            },
            CallEvent::RecordingFinished {
                call_id,
                recording_id,
                duration_ms,
                bytes,
                end,
                at,
            } => Msg::RecordingFinished {
                event_id: id,
                call_id: call_id.clone(),
                recording_id: recording_id.clone(),
                duration_ms: *duration_ms,
                bytes: *bytes,
                end: *end,
                at_ms: ms_of(*at),
            },
            CallEvent::RtpStats { call_id, stats } => Msg::RtpStats {
                event_id: id,
                call_id: call_id.clone(),
                stats: stats.into(),
            },
            CallEvent::Transferred { call_id, target, at } => Msg::Transferred {
                event_id: id,
                call_id: call_id.clone(),
                target: target.clone(),
                at_ms: ms_of(*at),
            },
            CallEvent::TransferFailed {
                call_id,
                target,
                sip,
                at,
            } => Msg::TransferFailed {
                event_id: id,
                call_id: call_id.clone(),
                target: target.clone(),
                sip: WireSipCause {
                    code: sip.code,
                    reason: sip.reason.clone(),
                },
                at_ms: ms_of(*at),
            },
            CallEvent::Speech {
                call_id,
                speaker,
                started,
                offset_ms,
                at,
            } => Msg::Speech {
                event_id: id,
                call_id: call_id.clone(),
                speaker: match speaker {
                    Speaker::Caller => WireSpeaker::Caller,
                    Speaker::Bot => WireSpeaker::Bot,
                },
                started: *started,
                offset_ms: *offset_ms,
                at_ms: ms_of(*at),
            },
            CallEvent::AnsweredBy {
                call_id,
                answered_by,
                cause,
                after_ms,
                at,
            } => Msg::AnsweredBy {
                event_id: id,
                call_id: call_id.clone(),
                answered_by: answered_by.clone(),
                cause: cause.clone(),
                after_ms: *after_ms,
                at_ms: ms_of(*at),
            },
            CallEvent::Hungup {
                call_id,
                cause,
                duration,
                at,
                sip,
            } => Msg::Hungup {
                event_id: id,
                call_id: call_id.clone(),
                cause: cause.as_str().to_owned(),
                duration_ms: duration.as_millis().min(u64::MAX as u128) as u64,
                at_ms: ms_of(*at),
                sip: sip.as_ref().map(|s| WireSipCause {
                    code: s.code,
                    reason: s.reason.clone(),
                }),
            },
        };
        // Strings, numbers and maps of strings always serialise.
        serde_json::to_vec(&msg).unwrap_or_default()
    }

    /// Parses JSON bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, ContractError> {
        let msg: Msg =
            serde_json::from_slice(bytes).map_err(|e| ContractError::Wire(format!("call event: {e}")))?;
        Ok(match msg {
            Msg::Created {
                event_id,
                call_id,
                route,
                caller,
                callee,
                ingress,
                params,
                at_ms,
            } => WireEvent {
                event_id,
                event: CallEvent::Created {
                    info: CallInfo {
                        call_id,
                        route,
                        caller,
                        callee,
                        ingress: ingress_of(&ingress)?,
                        params,
                    },
                    at: time_of(at_ms)?,
                },
            },
            Msg::BotConnected {
                event_id,
                call_id,
                connect_ms,
                attempt,
            } => WireEvent {
                event_id,
                event: CallEvent::BotConnected {
                    call_id,
                    connect_time: Duration::from_millis(connect_ms),
                    attempt,
                },
            },
            Msg::BotFailed {
                event_id,
                call_id,
                reason,
                will_retry,
            } => WireEvent {
                event_id,
                event: CallEvent::BotFailed {
                    call_id,
                    reason,
                    will_retry,
                },
            },
            Msg::Answered {
                event_id,
                call_id,
                at_ms,
            } => WireEvent {
                event_id,
                event: CallEvent::Answered {
                    call_id,
                    at: time_of(at_ms)?,
                },
            },
            Msg::Dtmf {
                event_id,
                call_id,
                digit,
            } => WireEvent {
                event_id,
                event: CallEvent::Dtmf { call_id, digit },
            },
            Msg::Transcript {
                event_id,
                call_id,
                speaker,
                text,
                user_id,
                offset_ms,
                transcribe_id,
            } => WireEvent {
                event_id,
                event: CallEvent::Transcript {
                    call_id,
                    speaker: match speaker {
                        WireSpeaker::Caller => Speaker::Caller,
                        WireSpeaker::Bot => Speaker::Bot,
                    },
                    text,
                    user_id,
                    offset_ms,
                    transcribe_id,
                },
            },
            Msg::TranscribeStarted {
                event_id,
                call_id,
                transcribe_id,
                language,
                directions,
                at_ms,
            } => WireEvent {
                event_id,
                event: CallEvent::TranscribeStarted {
                    call_id,
                    transcribe_id,
                    language,
                    directions,
                    at: time_of(at_ms)?,
                },
            },
            Msg::TranscribeCompleted {
                event_id,
                call_id,
                transcribe_id,
                at_ms,
            } => WireEvent {
                event_id,
                event: CallEvent::TranscribeCompleted {
                    call_id,
                    transcribe_id,
                    at: time_of(at_ms)?,
                },
            },
            Msg::Ringing {
                event_id,
                call_id,
                at_ms,
            } => WireEvent {
                event_id,
                event: CallEvent::Ringing {
                    call_id,
                    at: time_of(at_ms)?,
                },
            },
            Msg::RecordingStarted {
                event_id,
                call_id,
                recording_id,
                file,
                rate,
                at_ms,
            } => WireEvent {
                event_id,
                event: CallEvent::RecordingStarted {
                    call_id,
                    recording_id,
                    file,
                    rate,
                    at: time_of(at_ms)?,
                },
            },
            Msg::RecordingPaused {
                event_id,
                call_id,
                recording_id,
                paused,
                at_ms,
            } => WireEvent {
                event_id,
                event: CallEvent::RecordingPaused {
                    call_id,
                    recording_id,
                    paused,
                    at: time_of(at_ms)?,
                },
            },
            Msg::RecordingFinished {
                event_id,
                call_id,
                recording_id,
                duration_ms,
                bytes,
                end,
                at_ms,
            } => WireEvent {
                event_id,
                event: CallEvent::RecordingFinished {
                    call_id,
                    recording_id,
                    duration_ms,
                    bytes,
                    end,
                    at: time_of(at_ms)?,
                },
            },
            Msg::RtpStats {
                event_id,
                call_id,
                stats,
            } => WireEvent {
                event_id,
                event: CallEvent::RtpStats {
                    call_id,
                    stats: stats.into(),
                },
            },
            Msg::Transferred {
                event_id,
                call_id,
                target,
                at_ms,
            } => WireEvent {
                event_id,
                event: CallEvent::Transferred {
                    call_id,
                    target,
                    at: time_of(at_ms)?,
                },
            },
            Msg::TransferFailed {
                event_id,
                call_id,
                target,
                sip,
                at_ms,
            } => WireEvent {
                event_id,
                event: CallEvent::TransferFailed {
                    call_id,
                    target,
                    sip: SipCause::new(sip.code, &sip.reason),
                    at: time_of(at_ms)?,
                },
            },
            Msg::Speech {
                event_id,
                call_id,
                speaker,
                started,
                offset_ms,
                at_ms,
            } => WireEvent {
                event_id,
                event: CallEvent::Speech {
                    call_id,
                    speaker: match speaker {
                        WireSpeaker::Caller => Speaker::Caller,
                        WireSpeaker::Bot => Speaker::Bot,
                    },
                    started,
                    offset_ms,
                    at: time_of(at_ms)?,
                },
            },
            Msg::AnsweredBy {
                event_id,
                call_id,
                answered_by,
                cause,
                after_ms,
                at_ms,
            } => WireEvent {
                event_id,
                event: CallEvent::AnsweredBy {
                    call_id,
                    answered_by,
                    cause,
                    after_ms,
                    at: time_of(at_ms)?,
                },
            },
            Msg::Hungup {
                event_id,
                call_id,
                cause,
                duration_ms,
                at_ms,
                sip,
            } => WireEvent {
                event_id,
                event: CallEvent::Hungup {
                    call_id,
                    cause: HangupCause::parse(&cause)
                        .ok_or_else(|| ContractError::Wire(format!("unknown hangup cause {cause:?}")))?,
                    duration: Duration::from_millis(duration_ms),
                    at: time_of(at_ms)?,
                    sip: sip.map(|s| SipCause::new(s.code, &s.reason)),
                },
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn samples() -> Vec<CallEvent> {
        let mut params = BTreeMap::new();
        params.insert("customer_id".to_owned(), "acme".to_owned());
        vec![
            CallEvent::Created {
                info: CallInfo {
                    call_id: "c1".into(),
                    route: "default".into(),
                    caller: Some("+15550100".into()),
                    callee: None,
                    ingress: "rtp",
                    params,
                },
                at: at(1_764_000_000_123),
            },
            CallEvent::BotConnected {
                call_id: "c1".into(),
                connect_time: Duration::from_millis(12),
                attempt: 1,
            },
            CallEvent::BotFailed {
                call_id: "c1".into(),
                reason: "refused".into(),
                will_retry: true,
            },
            CallEvent::Answered {
                call_id: "c1".into(),
                at: at(1_764_000_000_500),
            },
            CallEvent::Dtmf {
                call_id: "c1".into(),
                digit: '#',
            },
            CallEvent::Transcript {
                call_id: "c1".into(),
                speaker: Speaker::Bot,
                text: "hello \"there\"".into(),
                user_id: String::new(),
                offset_ms: None,
                transcribe_id: None,
            },
            CallEvent::Transcript {
                call_id: "c1".into(),
                speaker: Speaker::Caller,
                text: "check my order".into(),
                user_id: String::new(),
                offset_ms: Some(3_500),
                transcribe_id: Some("t1".into()),
            },
            CallEvent::TranscribeStarted {
                call_id: "c1".into(),
                transcribe_id: "t1".into(),
                language: "en-US".into(),
                directions: TranscribeDirections::Both,
                at: at(1_764_000_000_600),
            },
            CallEvent::TranscribeCompleted {
                call_id: "c1".into(),
                transcribe_id: "t1".into(),
                at: at(1_764_000_009_600),
            },
            CallEvent::Ringing {
                call_id: "c1".into(),
                at: at(1_764_000_000_050),
            },
            CallEvent::RecordingStarted {
                call_id: "c1".into(),
                recording_id: "r1".into(),
                file: "r1.wav".into(),
                rate: 16000,
                at: at(1_764_000_000_700),
            },
            CallEvent::RecordingPaused {
                call_id: "c1".into(),
                recording_id: "r1".into(),
                paused: true,
                at: at(1_764_000_001_700),
            },
            CallEvent::RecordingFinished {
                call_id: "c1".into(),
                recording_id: "r1".into(),
                duration_ms: 9_000,
                bytes: 576_044,
                end: RecordingEnd::DiskFull,
                at: at(1_764_000_009_700),
            },
            CallEvent::RtpStats {
                call_id: "c1".into(),
                stats: RtpCallStats {
                    packets_received: 500,
                    packets_lost: -1,
                    rtt_ms: Some(3),
                    ..RtpCallStats::default()
                },
            },
            CallEvent::Hungup {
                call_id: "c1".into(),
                cause: HangupCause::MediaTimeout,
                duration: Duration::from_millis(61_020),
                at: at(1_764_000_061_143),
                sip: None,
            },
            CallEvent::Hungup {
                call_id: "c2".into(),
                cause: HangupCause::CallerHangup,
                duration: Duration::from_millis(1_000),
                at: at(1_764_000_061_143),
                sip: Some(SipCause::new(Some(487), "Request Terminated")),
            },
        ]
    }

    #[test]
    fn every_event_kind_round_trips() {
        for (i, event) in samples().into_iter().enumerate() {
            let w = WireEvent {
                event_id: format!("e{i}"),
                event,
            };
            assert_eq!(WireEvent::decode(&w.encode()).expect("decodes"), w);
        }
    }

    #[test]
    fn unknown_fields_are_ignored_and_bad_values_refused() {
        let newer = br#"{"type":"answered","event_id":"e","call_id":"c","at_ms":5,"added_later":1}"#;
        assert!(WireEvent::decode(newer).is_ok());
        for bad in [
            &br#"{"type":"teleported","event_id":"e","call_id":"c"}"#[..],
            br#"{"type":"answered","event_id":"e","call_id":"c"}"#,
            br#"{"type":"hungup","event_id":"e","call_id":"c","cause":"bored","duration_ms":1,"at_ms":1}"#,
            br#"{"type":"created","event_id":"e","call_id":"c","route":"r","ingress":"carrier-pigeon","at_ms":1}"#,
            br#"{"type":"answered","event_id":"e","call_id":"c","at_ms":18446744073709551615}"#,
            b"\xff\x00",
            b"",
        ] {
            assert!(matches!(WireEvent::decode(bad), Err(ContractError::Wire(_))), "{bad:?}");
        }
    }

    #[test]
    fn commands_round_trip_and_refuse_garbage() {
        let c = CallCommand::Hangup { call_id: "c9".into() };
        assert_eq!(CallCommand::decode(&c.encode()).expect("decodes"), c);
        assert_eq!(c.encode(), br#"{"type":"hangup","call_id":"c9"}"#);
        assert!(CallCommand::decode(br#"{"type":"reboot"}"#).is_err());
    }

    proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = WireEvent::decode(&bytes);
            let _ = CallCommand::decode(&bytes);
        }

        #[test]
        fn hangups_round_trip(id in "[a-z0-9-]{1,40}", text in ".{0,60}", ms in 0u64..4_000_000_000_000, cause in 0usize..HangupCause::ALL.len()) {
            for event in [
                CallEvent::Hungup { call_id: id.clone(), cause: HangupCause::ALL[cause], duration: Duration::from_millis(ms / 7), at: at(ms), sip: None },
                CallEvent::Hungup { call_id: id.clone(), cause: HangupCause::ALL[cause], duration: Duration::ZERO, at: at(ms), sip: Some(SipCause::new((ms % 2 == 0).then_some(487), &text)) },
                CallEvent::Transcript { call_id: id.clone(), speaker: Speaker::Caller, text: text.clone(), user_id: text.clone(), offset_ms: (ms % 3 == 0).then_some(ms / 3), transcribe_id: (ms % 2 == 0).then(|| text.clone()) },
                CallEvent::Transferred { call_id: id.clone(), target: text.clone(), at: at(ms) },
                CallEvent::TransferFailed { call_id: id.clone(), target: text.clone(), sip: SipCause::new((ms % 2 == 0).then_some(486), &text), at: at(ms) },
                CallEvent::Speech { call_id: id.clone(), speaker: if ms % 2 == 0 { Speaker::Caller } else { Speaker::Bot }, started: ms % 3 == 0, offset_ms: ms / 5, at: at(ms) },
                CallEvent::AnsweredBy { call_id: id.clone(), answered_by: text.clone(), cause: text.clone(), after_ms: ms / 3, at: at(ms) },
            ] {
                let w = WireEvent { event_id: id.clone(), event };
                prop_assert_eq!(WireEvent::decode(&w.encode()).expect("decodes"), w);
            }
        }
    }
}
