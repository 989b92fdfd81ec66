//! The commands control/ may give the media plane. The media plane
//! implements them (its call registry); control calls them in one process,
//! or sends them as [`crate::event_wire::CallCommand`]s to a media process.

use std::collections::BTreeMap;

/// What control/ may ask of running calls.
pub trait CallCommands: Send + Sync + 'static {
    /// Hangs a running call up with cause `api_hangup`; `false` if no call
    /// with that id runs here.
    fn hangup(&self, call_id: &str) -> bool;

    /// Starts a call whose media the media plane fetches itself: it
    /// connects to Asterisk's WebSocket channel in server mode (ARI
    /// `externalMedia` with `connection_type=server`) and runs the call on
    /// `dial.route`. Returns once the connection attempt is under way;
    /// `done` hears `Ok` when Asterisk's `MEDIA_START` arrived (the call
    /// runs and its events follow) or why it did not. `Err` says why it
    /// cannot start here (no such route, over `max_calls`, shutting down,
    /// a media plane in another process); `done` is then never called.
    fn dial_asterisk_media(&self, dial: AsteriskMediaDial, done: DialDone) -> Result<(), String> {
        drop(done);
        Err(format!(
            "call {}: this media plane cannot dial Asterisk's media WebSocket",
            dial.call_id
        ))
    }

    /// Places a call on a SIP trunk (`dial.gateway` of the media plane's
    /// `[[sip.gateways]]`) and, once it is answered, runs it on
    /// `dial.route`. Returns once the dial is under way; `events` hears
    /// [`SipDialEvent::Ringing`] (at most once), then exactly one of
    /// [`SipDialEvent::Answered`] (the call runs and its events follow) and
    /// [`SipDialEvent::Failed`]. `Err` says why it cannot start here (SIP
    /// off, no such gateway or route, a bad destination, shutting down);
    /// `events` is then never called.
    fn dial_sip(&self, dial: SipDial, events: SipDialEvents) -> Result<(), String> {
        drop(events);
        Err(format!(
            "call {}: this media plane cannot place SIP calls",
            dial.call_id
        ))
    }

    /// Hands a running SIP call on to `target` (a number at the caller's
    /// side, or a `sip:` URI) by a blind transfer (SIP REFER). `done`
    /// hears `Ok` once the REFER is on its way; when the far end reports the new call up
    /// the call emits `Transferred` and ends with cause `transferred`; a
    /// refused transfer leaves the call as it was. `Err` says why not (no
    /// such call here, not a SIP call, a transfer already under way, a bad
    /// target). `Ok` and `Err` come through `done`; it is called at once
    /// when this media plane cannot transfer at all.
    fn transfer(&self, call_id: &str, target: &str, done: DialDone) {
        let _ = target;
        done(Err(format!(
            "call {call_id}: this media plane cannot transfer calls"
        )));
    }

    /// Gives up a call placed by [`CallCommands::dial_sip`] that is not
    /// answered yet (SIP CANCEL; one just answered is hung up). `false`
    /// when this media plane places no such call.
    fn cancel_dial(&self, _call_id: &str) -> bool {
        false
    }

    /// Starts transcribing a running call with its route's speech
    /// recognizer (`[routes.<name>.transcribe]`). `done` hears `Ok` once the
    /// recognizer streams are started, with the language and directions
    /// taken (a `TranscribeStarted` event follows,
    /// then `Transcript`s and, when stopped or at the call's end,
    /// `TranscribeCompleted`), or why not (no such call here, its route has
    /// no recognizer, a transcribe already runs on it). It is called at
    /// once when this media plane cannot transcribe on command.
    fn transcribe(&self, call_id: &str, start: TranscribeStart, done: TranscribeDone) {
        let _ = start;
        done(Err(format!(
            "call {call_id}: this media plane cannot start transcription on command"
        )));
    }

    /// Stops the transcribe running on a call: the audio queued is sent,
    /// the recognizer's last results come as `Transcript`s, then
    /// `TranscribeCompleted`. `done` hears `Ok` once stopping, or why not
    /// (no such call here, no transcribe runs on it).
    fn stop_transcribe(&self, call_id: &str, done: DialDone) {
        done(Err(format!(
            "call {call_id}: this media plane cannot stop transcription on command"
        )));
    }

    /// Starts, stops, pauses or resumes a running call's recording.
    /// `done` hears the recording as the command left it (a start: once
    /// its file is made and `RecordingStarted` is out; `RecordingPaused`
    /// or, once the file is complete, `RecordingFinished` follow the
    /// others), or why not (no such call here, the file cannot be made,
    /// one already runs, none runs). It is called at once when this media
    /// plane cannot record.
    fn record(&self, call_id: &str, command: RecordCommand, done: RecordDone) {
        let _ = command;
        done(Err(format!(
            "call {call_id}: this media plane cannot record calls on command"
        )));
    }
}

/// What to do with a call's recording ([`CallCommands::record`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordCommand {
    /// Start recording, the file named after `recording_id`.
    Start {
        /// The recording's id (its record in control/); events carry it.
        recording_id: String,
    },
    /// Stop: the file is completed and `RecordingFinished` follows.
    Stop,
    /// Record silence instead of the call's audio (a card number is read
    /// out) until resumed.
    Pause,
    /// Record the call's audio again.
    Resume,
}

/// How a [`CallCommands::record`] went: the recording as the command left
/// it, or why not.
pub type RecordDone = Box<dyn FnOnce(Result<RecordingInfo, String>) + Send>;

/// A call's recording, as a [`CallCommands::record`] left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingInfo {
    /// Its id.
    pub recording_id: String,
    /// The file's name in the recordings directory.
    pub file: String,
    /// Sample rate of the file, Hz.
    pub rate: u32,
    /// Whether it is paused.
    pub paused: bool,
}

/// How a [`CallCommands::transcribe`] went: the language and directions
/// the transcribe runs with, or why it did not start.
pub type TranscribeDone = Box<dyn FnOnce(Result<TranscribeRunning, String>) + Send>;

/// A transcribe that started: what it runs with (the route's where the
/// request named nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscribeRunning {
    /// The recognizer's language.
    pub language: String,
    /// Which audio.
    pub directions: TranscribeDirections,
}

/// A transcribe to start on a running call ([`CallCommands::transcribe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscribeStart {
    /// The transcribe's id (its record in control/); events carry it.
    pub transcribe_id: String,
    /// The recognizer's `language`; the route's when `None`.
    pub language: Option<String>,
    /// Which of the call's audio: the caller's (`inbound`), what the caller
    /// heard (`outbound`); the route's when `None`.
    pub directions: Option<TranscribeDirections>,
}

/// Whether `s` can be a recognizer's `language` (a BCP 47-like tag: 1-35
/// ASCII letters, digits and `-`, as `en`, `en-US`, `zh-Hans-CN`); it goes
/// into a URL's query as it is.
pub fn is_language_tag(s: &str) -> bool {
    !s.is_empty() && s.len() <= 35 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Which directions of a call's audio a transcribe takes; `in`, `out` or
/// `both` in JSON (the event wire, the control API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TranscribeDirections {
    /// The caller's speech only.
    In,
    /// What the caller heard (the bot) only.
    Out,
    /// Both, each as its own stream.
    Both,
}

impl TranscribeDirections {
    /// `in`, `out` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            TranscribeDirections::In => "in",
            TranscribeDirections::Out => "out",
            TranscribeDirections::Both => "both",
        }
    }

    /// From the two flags; `None` when neither is set.
    pub fn from_flags(inbound: bool, outbound: bool) -> Option<Self> {
        match (inbound, outbound) {
            (true, true) => Some(TranscribeDirections::Both),
            (true, false) => Some(TranscribeDirections::In),
            (false, true) => Some(TranscribeDirections::Out),
            (false, false) => None,
        }
    }

    /// (`in`, `out`) as flags.
    pub fn flags(self) -> (bool, bool) {
        match self {
            TranscribeDirections::In => (true, false),
            TranscribeDirections::Out => (false, true),
            TranscribeDirections::Both => (true, true),
        }
    }
}

/// A call for the media plane to place on a SIP trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipDial {
    /// The call's id (the stored outbound call's).
    pub call_id: String,
    /// The media route (bot) the answered call runs on.
    pub route: String,
    /// The gateway's name; the first configured one when `None`.
    pub gateway: Option<String>,
    /// A number (the Request-URI's user at the gateway's domain) or a
    /// `sip:` URI.
    pub destination: String,
    /// Caller id (the `From` user); the gateway's `from_user` when `None`.
    pub caller: Option<String>,
    /// Added to the route's parameters (the bot's start message).
    pub params: BTreeMap<String, String>,
    /// Given up (CANCEL) when not answered within this.
    pub ring_timeout: std::time::Duration,
}

/// What happened to a [`SipDial`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipDialEvent {
    /// `180 Ringing` or `183 Session Progress` came.
    Ringing,
    /// The callee answered; the call runs.
    Answered,
    /// The call will not be answered: the SIP code of the final response
    /// (`486` busy, `487` cancelled, `408` no answer in time, ...) when
    /// there was one, and the reason.
    Failed {
        /// The final response's code.
        code: Option<u16>,
        /// Its reason phrase, or what went wrong.
        reason: String,
    },
}

/// Hears what happens to a [`CallCommands::dial_sip`].
pub type SipDialEvents = Box<dyn FnMut(SipDialEvent) + Send>;

/// How a [`CallCommands::dial_asterisk_media`] (or another command that
/// answers later) went.
pub type DialDone = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A call for the media plane to connect to Asterisk's WebSocket channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsteriskMediaDial {
    /// The call's id (the stored outbound call's).
    pub call_id: String,
    /// The media route (bot).
    pub route: String,
    /// `ws(s)://<asterisk>:8088/media/<MEDIA_WEBSOCKET_CONNECTION_ID>`.
    pub url: String,
    /// Added to the route's parameters (the bot's start message).
    pub params: BTreeMap<String, String>,
}
