//! Call lifecycle events and the one sink they go through.
//!
//! The media plane reports what happened to a call (created, bot connected or
//! failed, answered, DTMF, transcript segments, hung up with cause and
//! duration) as [`CallEvent`]s into an [`EventSink`]. `control/` implements
//! the sink (store + outbox); this module has a log sink and a channel sink
//! for tests. Sinks must not block: `emit` runs on the call's task.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// What a call's own signalling said when it ended (SIP): the status code
/// where one was sent or received for it (`487` for a CANCEL, none for a
/// BYE) and the reason (the BYE's or CANCEL's `Reason` header, RFC 3326,
/// when the caller gave one; else what happened, `BYE`, `no ACK`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SipCause {
    /// SIP status code, when there is one.
    pub code: Option<u16>,
    /// Why, in the signalling's words (at most [`SipCause::MAX_REASON`] bytes).
    pub reason: String,
}

impl SipCause {
    /// The longest reason kept (longer ones are cut at a character boundary).
    pub const MAX_REASON: usize = 200;

    /// A cause with `code` and `reason` (cut to [`SipCause::MAX_REASON`]
    /// bytes, control characters replaced by spaces).
    pub fn new(code: Option<u16>, reason: &str) -> SipCause {
        let mut cut = reason.len().min(Self::MAX_REASON);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        let reason = reason[..cut]
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        SipCause { code, reason }
    }
}

/// Why a call ended. Stable snake_case names (metrics labels, event payloads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HangupCause {
    /// The caller sent a hangup.
    CallerHangup,
    /// The caller's connection closed without a hangup.
    CallerGone,
    /// The caller sent an error frame.
    CallerError,
    /// The caller sent bytes that break the protocol.
    Malformed,
    /// The caller's audio format is not supported.
    UnsupportedAudio,
    /// The bot never answered (connect failed or timed out) and policy is hang up.
    BotUnavailable,
    /// The bot link dropped mid-call and policy is hang up (or reconnects ran out).
    BotDropped,
    /// The bot closed the link normally or asked to hang up.
    BotHangup,
    /// The daemon is shutting down and the grace period ran out.
    Shutdown,
    /// RTP: nothing received for the configured media timeout.
    MediaTimeout,
    /// Hung up through the media plane's HTTP API.
    ApiHangup,
    /// The daemon is at its call limit.
    Overload,
    /// The call was handed on (a SIP REFER the far end carried out).
    Transferred,
    /// A call voxbridge placed reached an answering machine and its route
    /// hangs up on machines (`amd.on_machine = "hangup"`).
    AnsweringMachine,
    /// A call voxbridge placed reached an answering machine, and the
    /// route's message was left after its beep (`amd.on_machine =
    /// "leave_message"`).
    MessageLeft,
}

impl HangupCause {
    /// Every cause, for metrics.
    pub const ALL: [HangupCause; 15] = [
        HangupCause::CallerHangup,
        HangupCause::CallerGone,
        HangupCause::CallerError,
        HangupCause::Malformed,
        HangupCause::UnsupportedAudio,
        HangupCause::BotUnavailable,
        HangupCause::BotDropped,
        HangupCause::BotHangup,
        HangupCause::Shutdown,
        HangupCause::MediaTimeout,
        HangupCause::ApiHangup,
        HangupCause::Overload,
        HangupCause::Transferred,
        HangupCause::AnsweringMachine,
        HangupCause::MessageLeft,
    ];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            HangupCause::CallerHangup => "caller_hangup",
            HangupCause::CallerGone => "caller_gone",
            HangupCause::CallerError => "caller_error",
            HangupCause::Malformed => "malformed",
            HangupCause::UnsupportedAudio => "unsupported_audio",
            HangupCause::BotUnavailable => "bot_unavailable",
            HangupCause::BotDropped => "bot_dropped",
            HangupCause::BotHangup => "bot_hangup",
            HangupCause::Shutdown => "shutdown",
            HangupCause::MediaTimeout => "media_timeout",
            HangupCause::ApiHangup => "api_hangup",
            HangupCause::Overload => "overload",
            HangupCause::Transferred => "transferred",
            HangupCause::AnsweringMachine => "answering_machine",
            HangupCause::MessageLeft => "message_left",
        }
    }

    /// The cause with this stable name.
    pub fn parse(name: &str) -> Option<Self> {
        HangupCause::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Index into [`HangupCause::ALL`].
    pub fn index(self) -> usize {
        HangupCause::ALL.iter().position(|&c| c == self).unwrap_or(0)
    }
}

/// Who said a transcript segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// The caller (the bot's speech-to-text).
    Caller,
    /// The bot (what it says).
    Bot,
}

/// Metadata of a call as known at its start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInfo {
    /// voxbridge's call id (for AudioSocket: the stream UUID).
    pub call_id: String,
    /// Route name from the config.
    pub route: String,
    /// Calling number, if the ingress knows it.
    pub caller: Option<String>,
    /// Called number, if the ingress knows it.
    pub callee: Option<String>,
    /// Ingress kind ("audiosocket", "rtp").
    pub ingress: &'static str,
    /// Route parameters passed to the bot.
    pub params: BTreeMap<String, String>,
}

/// Per-call RTP figures (from the receiver, the jitter buffer and RTCP).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtpCallStats {
    /// RTP packets received (valid).
    pub packets_received: u64,
    /// Packets lost per sequence numbers (RFC 3550 cumulative; negative with duplicates).
    pub packets_lost: i64,
    /// Interarrival jitter, ms (RFC 3550).
    pub jitter_ms: u32,
    /// Jitter buffer's current deliberate delay, ms.
    pub jitter_buffer_ms: u32,
    /// Packets that arrived after their playout point.
    pub late: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Frames concealed (loss, lateness).
    pub concealed_frames: u64,
    /// Datagrams that were not usable RTP (malformed, unknown payload type).
    pub malformed: u64,
    /// Round-trip time from the peer's RTCP reports, ms.
    pub rtt_ms: Option<u32>,
    /// Fraction lost reported by the peer for what voxbridge sent, 1/256.
    pub remote_fraction_lost: Option<u8>,
    /// RTP packets sent.
    pub packets_sent: u64,
}

/// Something that happened to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallEvent {
    /// A caller connected and identified the call.
    Created {
        /// The call.
        info: CallInfo,
        /// Wall-clock time.
        at: SystemTime,
    },
    /// The bot link is up (after `connect_time`).
    BotConnected {
        /// Call id.
        call_id: String,
        /// Time to connect (TCP + TLS + WebSocket handshake).
        connect_time: Duration,
        /// 0 for the first connect, n for the n-th reconnect.
        attempt: u32,
    },
    /// The bot link failed to come up or dropped.
    BotFailed {
        /// Call id.
        call_id: String,
        /// Why.
        reason: String,
        /// Whether the call keeps going (silence policy) or hangs up.
        will_retry: bool,
    },
    /// Audio flows both ways (first bot link up).
    Answered {
        /// Call id.
        call_id: String,
        /// Wall-clock time.
        at: SystemTime,
    },
    /// The caller pressed a key.
    Dtmf {
        /// Call id.
        call_id: String,
        /// `0-9 * # A-D`.
        digit: char,
    },
    /// A transcript segment from the bot (its STT of the caller, or its own text).
    Transcript {
        /// Call id.
        call_id: String,
        /// Who spoke.
        speaker: Speaker,
        /// The words.
        text: String,
        /// The bot's user id field, if any.
        user_id: String,
        /// Where the words start in the call: ms since the call was created,
        /// from a speech recognizer's segment times; `None` for what a bot
        /// reports (stored at the time it arrives).
        offset_ms: Option<u64>,
        /// The transcribe (speech recognizer session) that heard it; `None`
        /// for what a bot reports.
        transcribe_id: Option<String>,
    },
    /// A speech recognizer started transcribing the call (by route config
    /// or on command).
    TranscribeStarted {
        /// Call id.
        call_id: String,
        /// The transcribe's id.
        transcribe_id: String,
        /// The recognizer's language.
        language: String,
        /// `in`, `out` or `both`.
        directions: crate::commands::TranscribeDirections,
        /// Wall-clock time.
        at: SystemTime,
    },
    /// A transcribe ended (stopped on command, the call ended, or its
    /// recognizer gave up) and its last segments are out.
    TranscribeCompleted {
        /// Call id.
        call_id: String,
        /// The transcribe's id.
        transcribe_id: String,
        /// Wall-clock time.
        at: SystemTime,
    },
    /// The call's recording started: a stereo WAV file (caller left, what
    /// the caller heard right) named `file` in the recordings directory.
    RecordingStarted {
        /// Call id.
        call_id: String,
        /// The recording's id.
        recording_id: String,
        /// The file's name in the recordings directory.
        file: String,
        /// Sample rate of the file, Hz.
        rate: u32,
        /// Wall-clock time.
        at: SystemTime,
    },
    /// The recording was paused (silence is recorded in its place) or
    /// resumed, by the API or the bot.
    RecordingPaused {
        /// Call id.
        call_id: String,
        /// The recording's id.
        recording_id: String,
        /// `true` paused, `false` resumed.
        paused: bool,
        /// Wall-clock time.
        at: SystemTime,
    },
    /// The recording's file is complete (or as complete as it could be).
    RecordingFinished {
        /// Call id.
        call_id: String,
        /// The recording's id.
        recording_id: String,
        /// Audio in the file, ms.
        duration_ms: u64,
        /// Size of the file, bytes.
        bytes: u64,
        /// Why it ended.
        end: RecordingEnd,
        /// Wall-clock time.
        at: SystemTime,
    },
    /// RTP reception and transmission figures (every RTCP interval, 5 s, and at the end).
    RtpStats {
        /// Call id.
        call_id: String,
        /// The figures.
        stats: RtpCallStats,
    },
    /// The far end of a call voxbridge placed is ringing (SIP 180 or 183).
    /// It comes before the call's `Created`, on the same ordered path, so
    /// control never sees the answer before the ringing.
    Ringing {
        /// Call id.
        call_id: String,
        /// Wall-clock time.
        at: SystemTime,
    },
    /// The call was handed on to `target` (SIP REFER: the far end said the
    /// new call is up); its `Hungup` with cause `transferred` follows.
    Transferred {
        /// Call id.
        call_id: String,
        /// Where to (the REFER's `Refer-To`).
        target: String,
        /// Wall-clock time.
        at: SystemTime,
    },
    /// A transfer of the call to `target` failed at the far end (SIP REFER
    /// refused, or a failure in its NOTIFY); the call goes on.
    TransferFailed {
        /// Call id.
        call_id: String,
        /// Where the call was to go.
        target: String,
        /// What the far end said.
        sip: SipCause,
        /// Wall-clock time.
        at: SystemTime,
    },
    /// Voice activity (a route's `vad`): `speaker` started speaking
    /// (`started`) or stopped, `offset_ms` into the call (the frame that
    /// decided it).
    Speech {
        /// Call id.
        call_id: String,
        /// Whose speech: the caller's, or the bot's as the caller heard it.
        speaker: Speaker,
        /// Started (`true`) or stopped.
        started: bool,
        /// Time in the call, ms.
        offset_ms: u64,
        /// Wall-clock time.
        at: SystemTime,
    },
    /// Answering-machine detection on a call voxbridge placed (a route's
    /// `amd`): who answered, by which rule, decided this long after the
    /// answer.
    AnsweredBy {
        /// Call id.
        call_id: String,
        /// `human`, `machine` or `not_sure`.
        answered_by: String,
        /// The rule that decided (`human`, `long_greeting`, `max_words`,
        /// `max_word_length`, `initial_silence`, `too_long`).
        cause: String,
        /// From the answer to the decision, ms.
        after_ms: u64,
        /// Wall-clock time.
        at: SystemTime,
    },
    /// The call ended.
    Hungup {
        /// Call id.
        call_id: String,
        /// Why.
        cause: HangupCause,
        /// What the SIP signalling said, for a SIP call its signalling ended.
        sip: Option<SipCause>,
        /// Time from created to hung up.
        duration: Duration,
        /// Wall-clock time.
        at: SystemTime,
    },
}

impl CallEvent {
    /// The call this event belongs to.
    pub fn call_id(&self) -> &str {
        match self {
            CallEvent::Created { info, .. } => &info.call_id,
            CallEvent::BotConnected { call_id, .. }
            | CallEvent::BotFailed { call_id, .. }
            | CallEvent::Answered { call_id, .. }
            | CallEvent::Dtmf { call_id, .. }
            | CallEvent::Transcript { call_id, .. }
            | CallEvent::TranscribeStarted { call_id, .. }
            | CallEvent::TranscribeCompleted { call_id, .. }
            | CallEvent::RecordingStarted { call_id, .. }
            | CallEvent::RecordingPaused { call_id, .. }
            | CallEvent::RecordingFinished { call_id, .. }
            | CallEvent::RtpStats { call_id, .. }
            | CallEvent::Transferred { call_id, .. }
            | CallEvent::TransferFailed { call_id, .. }
            | CallEvent::Speech { call_id, .. }
            | CallEvent::AnsweredBy { call_id, .. }
            | CallEvent::Ringing { call_id, .. }
            | CallEvent::Hungup { call_id, .. } => call_id,
        }
    }
}

/// Why a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RecordingEnd {
    /// Stopped on command (API or bot).
    Stopped,
    /// The call ended.
    CallEnded,
    /// The disk filled up: the file holds what was written before; the
    /// call went on.
    DiskFull,
    /// Another write error: as `disk_full`.
    Failed,
}

impl RecordingEnd {
    /// `stopped`, `call_ended`, `disk_full` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingEnd::Stopped => "stopped",
            RecordingEnd::CallEnded => "call_ended",
            RecordingEnd::DiskFull => "disk_full",
            RecordingEnd::Failed => "failed",
        }
    }
}

/// Where call events go. `emit` must not block (it runs on the call's task).
pub trait EventSink: Send + Sync + 'static {
    /// Takes one event.
    fn emit(&self, event: CallEvent);
}

/// The operator's log of calls: one `info` line when a call starts and one
/// when it ends (with its cause and duration), a `warn` line for each bot
/// failure, everything else at `debug`. `serve` puts it beside whatever
/// other sink is on (the control sidecar, the media link), so the log says
/// the same whatever the deployment.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogSink;

impl EventSink for LogSink {
    fn emit(&self, event: CallEvent) {
        match &event {
            CallEvent::Created { info, .. } => tracing::info!(
                call_id = info.call_id,
                route = info.route,
                ingress = info.ingress,
                caller = info.caller.as_deref().unwrap_or(""),
                callee = info.callee.as_deref().unwrap_or(""),
                "call started"
            ),
            CallEvent::Hungup {
                call_id,
                cause,
                duration,
                sip,
                ..
            } => tracing::info!(
                call_id,
                cause = cause.as_str(),
                duration_ms = duration.as_millis() as u64,
                sip_code = sip.as_ref().and_then(|s| s.code),
                sip_reason = sip.as_ref().map(|s| s.reason.as_str()),
                "call ended"
            ),
            CallEvent::BotFailed {
                call_id,
                reason,
                will_retry,
            } => tracing::warn!(call_id, reason, will_retry, "bot link failed"),
            other => tracing::debug!(call_id = other.call_id(), event = ?other, "call event"),
        }
    }
}

/// Sends events into an unbounded channel (tests, and a simple fan-out). An
/// unbounded channel because a sink must never block a call; consumers that
/// fall behind grow memory, so production sinks bound and count instead.
#[derive(Debug, Clone)]
pub struct ChannelSink(pub mpsc::UnboundedSender<CallEvent>);

impl ChannelSink {
    /// A sink and the receiving end.
    pub fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<CallEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Arc::new(ChannelSink(tx)), rx)
    }
}

impl EventSink for ChannelSink {
    fn emit(&self, event: CallEvent) {
        // A dropped receiver means nobody listens any more; that is fine.
        let _ = self.0.send(event);
    }
}

/// Sends each event to several sinks.
pub struct FanOut(pub Vec<Arc<dyn EventSink>>);

impl EventSink for FanOut {
    fn emit(&self, event: CallEvent) {
        if let Some((last, rest)) = self.0.split_last() {
            for s in rest {
                s.emit(event.clone());
            }
            last.emit(event);
        }
    }
}
