//! The daemon's configuration: TOML file, embedded defaults, env overrides.
//!
//! With no file, `voxbridge serve` listens for AudioSocket on 127.0.0.1:9092,
//! serves /metrics on 127.0.0.1:9100 and sends every call to a pipecat bot at
//! ws://127.0.0.1:8765 at 16 kHz. [`Config::validate`] checks everything at
//! startup so a bad config fails before the first call, with the key named.

use crate::error::ConfigError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Bot wire protocol of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotProtocolKind {
    /// pipecat `ProtobufFrameSerializer` frames (binary).
    Pipecat,
    /// Twilio Media Streams JSON (text).
    Twilio,
    /// Telnyx media streaming JSON (text).
    Telnyx,
    /// Plivo Audio Streams JSON (text).
    Plivo,
    /// Exotel Voicebot stream JSON (text).
    Exotel,
    /// Vonage Voice API WebSocket (binary PCM16, JSON control).
    Vonage,
    /// jambonz `listen` (subprotocol `audio.jambonz.org`; binary PCM16,
    /// JSON control).
    Jambonz,
    /// Genesys Cloud AudioHook (binary PCMU at 8 kHz, JSON control).
    Genesys,
}

impl BotProtocolKind {
    /// The JSON dialect of the protocol; `None` for pipecat's frames.
    pub fn dialect(self) -> Option<voxbridge_proto::telephony::Dialect> {
        use voxbridge_proto::telephony::Dialect;
        match self {
            BotProtocolKind::Pipecat => None,
            BotProtocolKind::Twilio => Some(Dialect::Twilio),
            BotProtocolKind::Telnyx => Some(Dialect::Telnyx),
            BotProtocolKind::Plivo => Some(Dialect::Plivo),
            BotProtocolKind::Exotel => Some(Dialect::Exotel),
            BotProtocolKind::Vonage => Some(Dialect::Vonage),
            BotProtocolKind::Jambonz => Some(Dialect::Jambonz),
            BotProtocolKind::Genesys => Some(Dialect::Genesys),
        }
    }

    /// The configuration name.
    pub fn name(self) -> &'static str {
        self.dialect().map_or("pipecat", |d| d.name())
    }

    /// Every protocol.
    pub const ALL: [BotProtocolKind; 8] = [
        BotProtocolKind::Pipecat,
        BotProtocolKind::Twilio,
        BotProtocolKind::Telnyx,
        BotProtocolKind::Plivo,
        BotProtocolKind::Exotel,
        BotProtocolKind::Vonage,
        BotProtocolKind::Jambonz,
        BotProtocolKind::Genesys,
    ];

    /// The WebSocket subprotocol to offer the bot (jambonz's).
    pub fn subprotocol(self) -> Option<&'static str> {
        self.dialect().and_then(|d| d.subprotocol())
    }
}

/// Audio encoding inside the JSON dialects' `media` payloads (the key is
/// `encoding`, or `twilio_encoding` as before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TwilioEncoding {
    /// G.711 u-law at 8 kHz (Twilio's, Telnyx's `PCMU`, Plivo's `audio/x-mulaw`).
    Mulaw,
    /// G.711 A-law at 8 kHz (Telnyx's `PCMA`).
    Alaw,
    /// 16-bit linear PCM at the route's rate (little-endian; Telnyx's
    /// `L16` in network order).
    L16,
}

impl TwilioEncoding {
    /// The wire format's name for it.
    pub fn wire(self) -> voxbridge_proto::telephony::Encoding {
        use voxbridge_proto::telephony::Encoding;
        match self {
            TwilioEncoding::Mulaw => Encoding::Mulaw,
            TwilioEncoding::Alaw => Encoding::Alaw,
            TwilioEncoding::L16 => Encoding::L16,
        }
    }
}

/// What to do when the bot never answers or drops mid-call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotFailurePolicy {
    /// Hang the caller up with cause `bot_unavailable` / `bot_dropped`.
    Hangup,
    /// Keep the caller (hearing silence) and reconnect every
    /// `reconnect_interval_ms`, up to `max_reconnects` times, then hang up.
    Silence,
}

/// Where a call's audio goes. `Debug` shows the URL without credentials
/// and the parameters' names only (they may carry keys for the bot).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Route {
    /// Bot WebSocket URL (`ws://` or `wss://`; TLS via rustls with webpki roots).
    pub url: String,
    /// Wire protocol.
    pub protocol: BotProtocolKind,
    /// Bot-side sample rate: 8000, 16000 or 24000.
    pub sample_rate: u32,
    /// Payload encoding of the JSON dialects (`encoding`; `mulaw` and
    /// `alaw` force 8 kHz). Unset: what the provider sends by default
    /// (`mulaw` for Telnyx and Plivo, `l16` for Exotel), and `l16` for
    /// Twilio routes as before. See [`Route::encoding`].
    #[serde(alias = "encoding")]
    pub twilio_encoding: Option<TwilioEncoding>,
    /// TCP + TLS + WebSocket handshake deadline.
    pub connect_timeout_ms: u64,
    /// Never answered / dropped policy.
    pub on_bot_failure: BotFailurePolicy,
    /// Pause between reconnect attempts (silence policy).
    pub reconnect_interval_ms: u64,
    /// Reconnect attempts before giving up (silence policy).
    pub max_reconnects: u32,
    /// Cap on bot audio queued for one caller; beyond it the newest audio is dropped and counted.
    pub playout_cap_ms: u32,
    /// Start cushion for bot audio, ms: how long an utterance's first audio
    /// waits before it plays (adapts per call; see `playout`). 0 plays at once.
    pub bot_cushion_ms: u32,
    /// Sent to the bot at start (Twilio `customParameters`, pipecat start message).
    pub params: BTreeMap<String, String>,
    /// Asterisk WebSocket channel calls: `voxbridge` paces the bot's audio
    /// (one frame per tick), or `asterisk` (bursts sent at once inside
    /// media buffering, Asterisk's queue paces).
    pub chanws_pacing: crate::sansio::chanws::Pacing,
    /// Transcription of the route's calls through a speech recognizer
    /// (`[routes.<name>.transcribe]`; off when absent).
    pub transcribe: Option<Transcribe>,
    /// Record every call of the route from its start (`[recording]` says
    /// where); off by default, recordings then start by API or bot.
    pub record: bool,
    /// Voice activity of the route's calls (`[routes.<name>.vad]`): speech
    /// started and stopped, told to the bot and to control; off when absent.
    pub vad: Option<Vad>,
    /// Answering-machine detection on the route's calls that voxbridge
    /// placed (`[routes.<name>.amd]`); off when absent.
    pub amd: Option<AnsweringMachine>,
    /// Noise suppression on the caller's audio at the caller's rate, before
    /// anything else hears it (`voxbridge_codecs::denoise`): the bot,
    /// transcription, recording and the detectors get the filtered audio,
    /// 10 ms later. Off by default.
    pub noise_suppression: bool,
}

/// `[routes.<name>.amd]`: answering-machine detection on the calls of the
/// route that voxbridge placed (`POST /v1/calls`, campaigns): from the
/// callee's first seconds, `human`, `machine` or `not_sure` (see
/// `voxbridge_codecs::vad::Amd`), told to the bot (pipecat `voxbridge.amd`,
/// the JSON dialects' `amd` event) and to control (`call_answered_by`).
/// The rules' settings keep Asterisk's `amd.conf` names and defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnsweringMachine {
    /// Which of the route's calls: `placed` (default), those voxbridge
    /// dialled itself (SIP gateways, Asterisk's media WebSocket), or `all`,
    /// for a route that only carries calls placed elsewhere (an ARI
    /// originate to AudioSocket, the simulated callee).
    pub calls: AmdCalls,
    /// Silence before the first word that means a machine, ms.
    pub initial_silence_ms: u32,
    /// Speech in all that means a machine's greeting, ms.
    pub greeting_ms: u32,
    /// Silence after speech that means a person waiting, ms.
    pub after_greeting_silence_ms: u32,
    /// Longest analysis (then `not_sure`), ms.
    pub total_analysis_ms: u32,
    /// Shortest speech that is a word, ms.
    pub min_word_ms: u32,
    /// Silence that separates words, ms.
    pub between_words_silence_ms: u32,
    /// Words that mean a machine.
    pub max_words: u32,
    /// A word this long means a machine, ms.
    pub max_word_ms: u32,
    /// Tell the bot.
    pub to_bot: bool,
    /// Publish `call_answered_by` to control.
    pub to_control: bool,
    /// What a `machine` verdict does: `continue` (default; the call goes
    /// on and the bot, told, decides), `hangup`, or `leave_message` (wait
    /// for the beep, play `message`, hang up).
    pub on_machine: OnMachine,
    /// The message `leave_message` plays: a WAV file (PCM16, A-law or
    /// u-law, mono, at a standard rate, at most 60 s), read when the
    /// server starts.
    pub message: Option<std::path::PathBuf>,
    /// After the machine verdict, how long to wait for the beep before
    /// leaving the message anyway, ms (some machines never beep).
    pub beep_wait_ms: u32,
    /// `message`'s audio, once read ([`Config::load_messages`]).
    #[serde(skip)]
    pub message_audio: Option<crate::sansio::voicemail::Prompt>,
}

/// What a route does with a callee that is an answering machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnMachine {
    /// Nothing: the call goes on (the bot is told and decides).
    Continue,
    /// Hang up at once (cause `answering_machine`).
    Hangup,
    /// Hold the bot's audio back, wait for the beep, play the route's
    /// message, hang up (cause `message_left`).
    LeaveMessage,
}

impl Default for AnsweringMachine {
    fn default() -> AnsweringMachine {
        let d = voxbridge_codecs::vad::AmdConfig::default();
        AnsweringMachine {
            calls: AmdCalls::Placed,
            initial_silence_ms: d.initial_silence_ms,
            greeting_ms: d.greeting_ms,
            after_greeting_silence_ms: d.after_greeting_silence_ms,
            total_analysis_ms: d.total_analysis_ms,
            min_word_ms: d.min_word_ms,
            between_words_silence_ms: d.between_words_silence_ms,
            max_words: d.max_words,
            max_word_ms: d.max_word_ms,
            to_bot: true,
            to_control: true,
            on_machine: OnMachine::Continue,
            message: None,
            beep_wait_ms: 5000,
            message_audio: None,
        }
    }
}

/// The calls of a route that answering-machine detection listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmdCalls {
    /// Calls voxbridge dialled itself (their `direction` is `outgoing`).
    Placed,
    /// Every call of the route.
    All,
}

impl AnsweringMachine {
    /// Whether a call with these start parameters is listened to.
    pub fn listens_to(&self, params: &BTreeMap<String, String>) -> bool {
        self.calls == AmdCalls::All || params.get("direction").is_some_and(|d| d == "outgoing")
    }

    /// The detector's settings.
    pub fn detector_config(&self) -> voxbridge_codecs::vad::AmdConfig {
        voxbridge_codecs::vad::AmdConfig {
            initial_silence_ms: self.initial_silence_ms,
            greeting_ms: self.greeting_ms,
            after_greeting_silence_ms: self.after_greeting_silence_ms,
            total_analysis_ms: self.total_analysis_ms,
            min_word_ms: self.min_word_ms,
            between_words_silence_ms: self.between_words_silence_ms,
            max_words: self.max_words,
            max_word_ms: self.max_word_ms,
        }
    }

    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        self.detector_config().validate().map_err(|e| match e {
            voxbridge_codecs::CodecError::InvalidSetting { name, detail } => {
                ConfigError(format!("{at}.amd.{}: {detail}", name.trim_start_matches("amd.")))
            }
            other => ConfigError(format!("{at}.amd: {other}")),
        })?;
        if !self.to_bot && !self.to_control && self.on_machine == OnMachine::Continue {
            return Err(ConfigError(format!(
                "{at}.amd: to_bot and to_control are both false and on_machine is continue (remove the table to turn it off)"
            )));
        }
        match (self.on_machine, &self.message) {
            (OnMachine::LeaveMessage, None) => {
                return Err(ConfigError(format!(
                    "{at}.amd.on_machine = \"leave_message\" needs message (a WAV file)"
                )))
            }
            (OnMachine::Continue | OnMachine::Hangup, Some(_)) => {
                return Err(ConfigError(format!(
                    "{at}.amd.message is played only with on_machine = \"leave_message\""
                )))
            }
            _ => {}
        }
        if !(500..=30_000).contains(&self.beep_wait_ms) {
            return Err(ConfigError(format!(
                "{at}.amd.beep_wait_ms: {} ms is not between 500 and 30000",
                self.beep_wait_ms
            )));
        }
        Ok(())
    }
}

/// `[routes.<name>.vad]`: voice activity detection on the route's calls
/// (see `voxbridge_codecs::vad`). Each direction's speech start and stop go
/// to the bot (pipecat `voxbridge.vad`, the JSON dialects' `vad` event) and
/// to control (`speech_started`, `speech_ended`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Vad {
    /// `in` (the caller), `out` (what the caller heard: the bot), or both.
    pub directions: Vec<TranscribeDirection>,
    /// Speech for this long (within the last `start_ms + 40` ms) starts an
    /// utterance.
    pub start_ms: u32,
    /// Silence for this long ends it.
    pub stop_ms: u32,
    /// Hold back the caller's frames that may be the bot's echo on the line
    /// (no louder than what the caller heard in the last 400 ms, less
    /// `echo_return_loss_db`), so the bot's own voice never counts as the
    /// caller speaking. Off for lines without echo (a browser with echo
    /// cancellation) where the caller should interrupt more easily.
    pub echo_gate: bool,
    /// How much quieter than what was played the echo comes back at least,
    /// dB (6: ITU-T G.168's minimum for a line). A caller must be about
    /// this close to the bot's level to interrupt it.
    pub echo_return_loss_db: f32,
    /// Tell the bot.
    pub to_bot: bool,
    /// Publish `speech_started` / `speech_ended` to control.
    pub to_control: bool,
}

impl Default for Vad {
    fn default() -> Vad {
        let d = voxbridge_codecs::vad::VadConfig::default();
        Vad {
            directions: both_directions(),
            start_ms: d.start_ms,
            stop_ms: d.stop_ms,
            echo_gate: true,
            echo_return_loss_db: 6.0,
            to_bot: true,
            to_control: true,
        }
    }
}

impl Vad {
    /// The detector's settings; an error names what is wrong.
    pub fn detector_config(&self) -> Result<voxbridge_codecs::vad::VadConfig, String> {
        let config = voxbridge_codecs::vad::VadConfig {
            start_ms: self.start_ms,
            stop_ms: self.stop_ms,
        };
        config.validate().map_err(|e| match e {
            voxbridge_codecs::CodecError::InvalidSetting { name, detail } => {
                format!("{}: {detail}", name.trim_start_matches("vad."))
            }
            other => other.to_string(),
        })?;
        Ok(config)
    }

    /// Whether `d` is watched.
    pub fn wants(&self, d: TranscribeDirection) -> bool {
        self.directions.contains(&d)
    }

    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        self.detector_config()
            .map_err(|e| ConfigError(format!("{at}.vad.{e}")))?;
        if self.directions.is_empty() {
            return Err(ConfigError(format!("{at}.vad.directions: name in, out or both")));
        }
        if !(0.0..=40.0).contains(&self.echo_return_loss_db) {
            return Err(ConfigError(format!(
                "{at}.vad.echo_return_loss_db: {} (0 to 40)",
                self.echo_return_loss_db
            )));
        }
        if !self.to_bot && !self.to_control {
            return Err(ConfigError(format!(
                "{at}.vad: to_bot and to_control are both false (remove the table to turn it off)"
            )));
        }
        Ok(())
    }
}

/// `[recording]`: where call recordings go and how long they stay.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Directory of the recording files (made when missing; default
    /// `voxbridge-data/recordings`, beside the embedded store); the control
    /// sidecar serves them from here, so a control node that runs apart
    /// needs the same directory (a shared volume).
    pub dir: std::path::PathBuf,
    /// `wav` (stereo PCM16) or `ogg` (stereo Ogg Opus, `.opus`, about a
    /// twelfth of the size at 16 kHz).
    pub format: crate::sansio::recording_file::RecordingFormat,
    /// Audio a recording's writer holds while the disk is slow, ms; more is
    /// dropped (silence in the file, counted), the call never waits.
    pub buffer_ms: u32,
    /// Recordings older than this many days are deleted (file and record);
    /// 0 keeps them.
    pub retention_days: u32,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            dir: "voxbridge-data/recordings".into(),
            format: crate::sansio::recording_file::RecordingFormat::Wav,
            buffer_ms: 5000,
            retention_days: 0,
        }
    }
}

/// A speech recognizer the route's calls are streamed to, over its
/// live-streaming WebSocket API (Deepgram's protocol, `/v1/listen`, or
/// voxbridge's own).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transcribe {
    /// `ws://` or `wss://` URL of the live endpoint, e.g.
    /// `wss://api.deepgram.com/v1/listen`; for `deepgram` voxbridge adds
    /// `encoding`, `sample_rate`, `channels` and `language` to its query.
    pub url: String,
    /// `deepgram` (Deepgram's live API, which most providers copy) or
    /// `voxbridge` (voxbridge's own: a `start` message with the rate and
    /// language, `transcript` messages back; see `voxbridge_proto::stt` and
    /// the OpenAPI schemas `PlainClient`/`PlainServer`).
    #[serde(default)]
    pub protocol: SttProtocol,
    /// Sent as `Authorization: Token <key>` (`deepgram`) or `Bearer <key>`
    /// (`voxbridge`); none when absent.
    pub key: Option<crate::secret::Secret>,
    /// The recognizer's language (Deepgram: the `language` query
    /// parameter; voxbridge: the `start` message's); the API may ask for
    /// another per transcribe.
    #[serde(default = "default_language")]
    pub language: String,
    /// `in` (the caller), `out` (what the caller heard), or both.
    #[serde(default = "both_directions")]
    pub directions: Vec<TranscribeDirection>,
    /// Audio held per direction while the recognizer is away (connecting,
    /// reconnecting), ms; beyond it the oldest is dropped and counted.
    #[serde(default = "default_transcribe_buffer_ms")]
    pub buffer_ms: u32,
    /// Reconnects per direction after the recognizer drops, before the
    /// direction's transcription gives up for the call.
    #[serde(default = "default_transcribe_reconnects")]
    pub max_reconnects: u32,
    /// Whether every call of the route is transcribed from its start
    /// (`true`), or only when the API asks (`POST
    /// /v1/calls/{id}/transcribes`; the recognizer is then only named here).
    #[serde(default = "default_true")]
    pub auto: bool,
}

impl std::fmt::Debug for Transcribe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcribe")
            .field("url", &crate::secret::redact_url(&self.url))
            .field("protocol", &self.protocol)
            .field("key", &self.key)
            .field("language", &self.language)
            .field("directions", &self.directions)
            .field("buffer_ms", &self.buffer_ms)
            .field("max_reconnects", &self.max_reconnects)
            .field("auto", &self.auto)
            .finish()
    }
}

/// The protocol a speech recognizer speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SttProtocol {
    /// Deepgram's live-streaming API.
    #[default]
    Deepgram,
    /// voxbridge's own (`voxbridge_proto::stt::PlainClient`).
    Voxbridge,
}

/// A direction of a call's audio to transcribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TranscribeDirection {
    /// The caller's speech.
    In,
    /// What the caller heard (the bot).
    Out,
}

fn default_language() -> String {
    "en".into()
}

fn both_directions() -> Vec<TranscribeDirection> {
    vec![TranscribeDirection::In, TranscribeDirection::Out]
}

fn default_transcribe_buffer_ms() -> u32 {
    10_000
}

fn default_transcribe_reconnects() -> u32 {
    3
}

fn default_true() -> bool {
    true
}

impl Transcribe {
    /// Whether `d` is transcribed.
    pub fn wants(&self, d: TranscribeDirection) -> bool {
        self.directions.contains(&d)
    }

    /// The configured directions as one value (both when none is named;
    /// validation refuses that).
    pub fn direction_set(&self) -> voxbridge_contract::commands::TranscribeDirections {
        use voxbridge_contract::commands::TranscribeDirections;
        TranscribeDirections::from_flags(
            self.wants(TranscribeDirection::In),
            self.wants(TranscribeDirection::Out),
        )
        .unwrap_or(TranscribeDirections::Both)
    }

    /// Checks the settings; `at` names the section in errors
    /// (`routes.<name>` or `tenants.<id>`).
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let bad = |what: String| Err(ConfigError(format!("{at}.transcribe.{what}")));
        if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
            return bad(format!(
                "url: {:?} is not a ws:// or wss:// URL",
                crate::secret::redact_url(&self.url)
            ));
        }
        if self.directions.is_empty() {
            return bad("directions: name \"in\", \"out\" or both".into());
        }
        if !voxbridge_contract::commands::is_language_tag(&self.language) {
            return bad(format!("language: {:?} is not a language tag", self.language));
        }
        if self.buffer_ms < 1000 {
            return bad(format!("buffer_ms: {} (at least 1000)", self.buffer_ms));
        }
        Ok(())
    }
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("url", &crate::secret::redact_url(&self.url))
            .field("protocol", &self.protocol)
            .field("sample_rate", &self.sample_rate)
            .field("twilio_encoding", &self.twilio_encoding)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("on_bot_failure", &self.on_bot_failure)
            .field("reconnect_interval_ms", &self.reconnect_interval_ms)
            .field("max_reconnects", &self.max_reconnects)
            .field("playout_cap_ms", &self.playout_cap_ms)
            .field("bot_cushion_ms", &self.bot_cushion_ms)
            .field("params", &self.params.keys().collect::<Vec<_>>())
            .field("chanws_pacing", &self.chanws_pacing)
            .field("transcribe", &self.transcribe)
            .field("record", &self.record)
            .field("vad", &self.vad)
            .field("amd", &self.amd)
            .field("noise_suppression", &self.noise_suppression)
            .finish()
    }
}

impl Default for Route {
    fn default() -> Self {
        Route {
            url: "ws://127.0.0.1:8765".into(),
            protocol: BotProtocolKind::Pipecat,
            sample_rate: 16000,
            twilio_encoding: None,
            connect_timeout_ms: 3000,
            on_bot_failure: BotFailurePolicy::Hangup,
            reconnect_interval_ms: 1000,
            max_reconnects: 5,
            playout_cap_ms: crate::sansio::playout::DEFAULT_CAPACITY_MS,
            bot_cushion_ms: crate::sansio::playout::DEFAULT_CUSHION_MS,
            params: BTreeMap::new(),
            chanws_pacing: crate::sansio::chanws::Pacing::Voxbridge,
            transcribe: None,
            record: false,
            vad: None,
            amd: None,
            noise_suppression: false,
        }
    }
}

impl Route {
    /// The rate audio is exchanged with the bot at.
    pub fn bot_rate(&self) -> u32 {
        match (self.protocol, self.encoding()) {
            (BotProtocolKind::Pipecat, _) | (_, TwilioEncoding::L16) => self.sample_rate,
            (_, TwilioEncoding::Mulaw | TwilioEncoding::Alaw) => 8000,
        }
    }

    /// The payload encoding the route's JSON dialect uses: the configured
    /// one, or the provider's default.
    pub fn encoding(&self) -> TwilioEncoding {
        self.twilio_encoding.unwrap_or(match self.protocol {
            BotProtocolKind::Telnyx | BotProtocolKind::Plivo | BotProtocolKind::Genesys => {
                TwilioEncoding::Mulaw
            }
            BotProtocolKind::Pipecat
            | BotProtocolKind::Twilio
            | BotProtocolKind::Exotel
            | BotProtocolKind::Vonage
            | BotProtocolKind::Jambonz => TwilioEncoding::L16,
        })
    }

    /// Connect deadline.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let bad = |what: String| Err(ConfigError(format!("routes.{name}.{what}")));
        if !(self.url.starts_with("ws://") || self.url.starts_with("wss://")) {
            return bad(format!("url: {:?} is not a ws:// or wss:// URL", self.url));
        }
        if !voxbridge_codecs::STANDARD_RATES.contains(&self.sample_rate) {
            return bad(format!(
                "sample_rate: {} (use one of {:?})",
                self.sample_rate,
                voxbridge_codecs::STANDARD_RATES
            ));
        }
        if self.connect_timeout_ms == 0 {
            return bad("connect_timeout_ms: must be > 0".into());
        }
        if self.bot_cushion_ms > crate::sansio::playout::MAX_CUSHION_MS {
            return bad(format!(
                "bot_cushion_ms: {} (at most {})",
                self.bot_cushion_ms,
                crate::sansio::playout::MAX_CUSHION_MS
            ));
        }
        if self.playout_cap_ms < 100 {
            return bad(format!("playout_cap_ms: {} (at least 100)", self.playout_cap_ms));
        }
        if let Some(dialect) = self.protocol.dialect() {
            if let Err(e) = dialect.check(self.encoding().wire(), self.bot_rate()) {
                return bad(format!(
                    "encoding: {e} (set encoding and sample_rate to one it carries)"
                ));
            }
        }
        if let Some(t) = &self.transcribe {
            t.validate(&format!("routes.{name}"))?;
        }
        if let Some(v) = &self.vad {
            v.validate(&format!("routes.{name}"))?;
        }
        if let Some(a) = &self.amd {
            a.validate(&format!("routes.{name}"))?;
        }
        Ok(())
    }
}

/// `[tenants.<customer id>]`: what a tenant's calls (those whose route, or
/// media API token, names that `customer_id`) take in place of their
/// route's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    /// The tenant's own speech recognizer (its URL, key, protocol,
    /// language, directions, `auto`): used instead of the route's for its
    /// calls, on every route.
    pub transcribe: Option<Transcribe>,
}

/// One AudioSocket listener and the route its calls take.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioSocketListener {
    /// Address to listen on (Asterisk connects here).
    pub listen: SocketAddr,
    /// Route name.
    #[serde(default = "default_route_name")]
    pub route: String,
}

/// One listener for Asterisk's WebSocket media channel (`chan_websocket`,
/// Asterisk dialling us: `websocket_client.conf` or ARI `externalMedia`
/// with `connection_type=client`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChanWsListener {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Route of calls whose URL names none (`?route=<name>` or a last path
    /// segment that is a route's name picks another).
    #[serde(default = "default_route_name")]
    pub route: String,
}

fn addr_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    if s == "off" {
        return Ok(None);
    }
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

fn default_route_name() -> String {
    "default".into()
}

/// RTP ingress: where sessions get their ports and how they behave.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtpConfig {
    /// Address RTP sockets bind to.
    pub bind_ip: std::net::IpAddr,
    /// Address written into SDP answers (`c=`); `bind_ip` when absent (set it
    /// when binding 0.0.0.0 or behind NAT).
    pub advertise_ip: Option<std::net::IpAddr>,
    /// First port of the range (even; RTP on even ports, RTCP on the next odd one).
    pub port_min: u16,
    /// Last port of the range.
    pub port_max: u16,
    /// Shared-port mode: when not 0, every session receives RTP on this one
    /// port (RTCP on the next) instead of a pair of its own, told apart by
    /// the caller's address and SSRC, with batched `recvmmsg`/`sendmmsg`
    /// I/O. Sessions must then name the caller's address (SDP `c=`/`m=` or
    /// plain `remote`).
    pub shared_port: u16,
    /// Symmetric RTP: send to wherever the first valid packet came from and
    /// ignore other sources (needed behind NAT); off sends to the negotiated address.
    pub symmetric: bool,
    /// Hang up with cause `media_timeout` when nothing arrives for this long.
    pub media_timeout_ms: u64,
    /// Route RTP calls take unless the request names one.
    pub route: String,
    /// Opus encoder complexity, 0-10: each step costs CPU per call (see
    /// benches/RESULTS.md for the cost and quality at 0 and 5).
    pub opus_complexity: u8,
    /// Opus in-band FEC in what voxbridge sends (lets the caller rebuild a
    /// lost packet; costs a second, low-rate encode per frame). Sized by the
    /// loss the caller's RTCP receiver reports give: none until a report
    /// says packets are lost.
    pub opus_fec: bool,
    /// Codecs accepted, in voxbridge's order of preference for plain sessions
    /// (`pcmu`, `pcma`, `g722`, `opus`); offers are answered in their own order.
    pub codecs: Vec<String>,
}

impl Default for RtpConfig {
    fn default() -> Self {
        RtpConfig {
            bind_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            advertise_ip: None,
            port_min: 40000,
            port_max: 49999,
            shared_port: 0,
            symmetric: true,
            media_timeout_ms: 30_000,
            route: default_route_name(),
            opus_complexity: 1,
            opus_fec: true,
            codecs: ["opus", "g722", "pcmu", "pcma"].map(String::from).to_vec(),
        }
    }
}

impl RtpConfig {
    /// The codecs as negotiable values (validated by [`Config::validate`]).
    pub fn allowed_codecs(&self) -> Vec<voxbridge_proto::sdp::AudioCodec> {
        self.codecs
            .iter()
            .filter_map(|c| voxbridge_proto::sdp::AudioCodec::from_name(c))
            .collect()
    }

    fn validate(&self, routes: &BTreeMap<String, Route>) -> Result<(), ConfigError> {
        let bad = |what: String| Err(ConfigError(format!("rtp.{what}")));
        if self.port_min > self.port_max || self.port_max - self.port_min < 1 {
            return bad(format!(
                "port_min/port_max: {}-{} holds no RTP/RTCP pair",
                self.port_min, self.port_max
            ));
        }
        if self.shared_port == u16::MAX {
            return bad("shared_port: 65535 leaves no port for RTCP".into());
        }
        if self.opus_complexity > 10 {
            return bad(format!("opus_complexity: {} (0-10)", self.opus_complexity));
        }
        if self.media_timeout_ms < 1000 {
            return bad(format!(
                "media_timeout_ms: {} (at least 1000)",
                self.media_timeout_ms
            ));
        }
        // The implicit default may be absent when RTP is not used; a route
        // named explicitly must exist.
        if self.route != default_route_name() && !routes.contains_key(&self.route) {
            return bad(format!("route: {:?} is not defined", self.route));
        }
        for c in &self.codecs {
            if voxbridge_proto::sdp::AudioCodec::from_name(c).is_none() {
                return bad(format!("codecs: unknown codec {c:?} (pcmu, pcma, g722, opus)"));
            }
        }
        if self.codecs.is_empty() {
            return bad("codecs: empty".into());
        }
        Ok(())
    }
}

/// The SIP trunk endpoint: voxbridge answers INVITEs itself and each call
/// becomes an RTP session (ports, codecs and media timeout from `[rtp]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP address to listen on (`0.0.0.0:5060` for a trunk); SIP is off
    /// when absent.
    pub listen: Option<SocketAddr>,
    /// TCP address to listen on as well (`0.0.0.0:5060`); needs `listen`.
    pub tcp_listen: Option<SocketAddr>,
    /// TLS address to listen on as well (`0.0.0.0:5061`); needs `listen`,
    /// `tls_cert` and `tls_key`.
    pub tls_listen: Option<SocketAddr>,
    /// PEM file with the TLS certificate chain, the server's first.
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM file with the TLS private key (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<std::path::PathBuf>,
    /// TCP and TLS connections open at once at most; more are closed at
    /// accept and counted (`voxbridge_sip_total{event="overloaded"}`).
    pub max_connections: usize,
    /// `host:port` written into our `Via` and `Contact` (set it when
    /// listening on 0.0.0.0 or behind NAT); the listen address when absent.
    /// Over TCP and TLS its host goes with the port of that listener.
    pub advertise: Option<String>,
    /// Route every SIP call takes.
    pub route: String,
    /// `Retry-After` seconds on a `503` (call limit, no RTP port, rate limit).
    pub retry_after_s: u32,
    /// Source networks allowed to reach the endpoint (`"10.0.0.0/8"`,
    /// `"192.0.2.7"`); empty lets everyone in. Others are dropped
    /// unanswered and counted.
    pub allow: Vec<String>,
    /// New INVITEs a second, on average, before `503` (0: no limit).
    pub invite_rate: f64,
    /// INVITEs admitted at once before the rate applies.
    pub invite_burst: f64,
    /// Route rules, first match wins; `route` when none matches.
    pub routes: Vec<SipRouteConfig>,
    /// Digest authentication of new INVITEs (off when absent).
    pub auth: Option<SipAuthConfig>,
    /// Send `180 Ringing` after `100 Trying` while the call and its bot
    /// link are made (on by default; off for trunks that want `100` then
    /// `200` only).
    pub ringing: bool,
    /// Early media: when above 0, a call's media is set up in a `183
    /// Session Progress` with the SDP answer (the bot's audio reaches the
    /// caller before the answer: an announcement the caller is not billed
    /// for) and the `200 OK` follows this many milliseconds later (0: off,
    /// the `200` at once; at most 60,000).
    pub early_media_ms: u32,
    /// A session timer (RFC 4028, seconds) for callers that ask for none:
    /// the caller refreshes when it supports `timer`, else voxbridge does
    /// by UPDATE when the caller takes it; a session not refreshed in time
    /// ends with BYE. 0 (the default): only callers that ask get a timer.
    /// At least 90 when set; 1800 is RFC 4028's recommendation.
    pub session_expires_s: u32,
    /// Trunks voxbridge places calls on (`originator = "sip"` in control);
    /// the first is the default.
    pub gateways: Vec<SipGatewayConfig>,
}

/// One `[[sip.gateways]]` entry: a trunk or PBX voxbridge places calls on.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipGatewayConfig {
    /// The name calls pick it by (`vars.gateway`, `[control.originate.sip] gateway`).
    pub name: String,
    /// `host:port` the INVITEs go to (a host name is resolved at each dial).
    pub address: String,
    /// `udp`, `tcp` or `tls` (a connection opened on demand and kept; TLS
    /// checks the gateway's certificate: `tls_ca`, `tls_server_name`).
    #[serde(default = "default_gateway_transport")]
    pub transport: String,
    /// With `tls`: a PEM file of the CAs that sign the gateway's
    /// certificate (a private PKI); the public web PKI's roots when absent.
    pub tls_ca: Option<std::path::PathBuf>,
    /// With `tls`: the name the gateway's certificate must carry (a DNS
    /// name or an IP address); the address's host when absent.
    pub tls_server_name: Option<String>,
    /// Host of the Request-URI, `To` and `From` (`trunk.example`); the
    /// address's host when absent.
    pub domain: Option<String>,
    /// `From` user when the call has no caller id.
    #[serde(default = "default_gateway_from_user")]
    pub from_user: String,
    /// Digest user name for the gateway's challenges (with `password`).
    pub username: Option<String>,
    /// Digest password.
    pub password: Option<crate::secret::Secret>,
    /// Register with it (voxbridge as an extension of a PBX, or a trunk
    /// that sends calls where its users registered).
    #[serde(default)]
    pub register: bool,
    /// The registered user (the extension); `username`, else `from_user`.
    pub register_user: Option<String>,
    /// The registration interval asked for, seconds (refreshed at half of
    /// what the registrar grants).
    #[serde(default = "default_register_expires")]
    pub register_expires_s: u32,
}

fn default_register_expires() -> u32 {
    600
}

fn default_gateway_transport() -> String {
    "udp".into()
}

fn default_gateway_from_user() -> String {
    "voxbridge".into()
}

impl std::fmt::Debug for SipGatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipGatewayConfig")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("transport", &self.transport)
            .field("tls_ca", &self.tls_ca)
            .field("tls_server_name", &self.tls_server_name)
            .field("domain", &self.domain)
            .field("from_user", &self.from_user)
            .field("username", &self.username)
            .field("register", &self.register)
            .field("register_user", &self.register_user)
            .field("register_expires_s", &self.register_expires_s)
            .finish_non_exhaustive()
    }
}

impl SipGatewayConfig {
    /// The host of the URIs voxbridge writes for calls through it.
    pub fn domain(&self) -> &str {
        self.domain
            .as_deref()
            .unwrap_or_else(|| match self.address.rsplit_once(':') {
                Some((host, port)) if port.parse::<u16>().is_ok() => host,
                _ => &self.address,
            })
    }

    /// Where its messages go: `addr` over its transport.
    pub fn peer(&self, addr: std::net::SocketAddr) -> crate::sansio::sip::Peer {
        use voxbridge_proto::sip::Transport;
        let transport = if self.transport.eq_ignore_ascii_case("tcp") {
            Transport::Tcp
        } else if self.transport.eq_ignore_ascii_case("tls") {
            Transport::Tls
        } else {
            Transport::Udp
        };
        crate::sansio::sip::Peer { transport, addr }
    }

    /// True when calls and registrations go over TLS.
    pub fn is_tls(&self) -> bool {
        self.transport.eq_ignore_ascii_case("tls")
    }

    /// The name its TLS certificate must carry.
    pub fn tls_server_name(&self) -> &str {
        self.tls_server_name
            .as_deref()
            .unwrap_or_else(|| match self.address.rsplit_once(':') {
                Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
                None => &self.address,
            })
    }

    /// The user a registration registers (the extension).
    pub fn register_user(&self) -> &str {
        self.register_user
            .as_deref()
            .or(self.username.as_deref())
            .unwrap_or(&self.from_user)
    }

    fn validate(&self, i: usize) -> Result<(), ConfigError> {
        let bad = |what: String| Err(ConfigError(format!("sip.gateways[{i}].{what}")));
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return bad(format!("name: {:?} (letters, digits, '-', '_', '.')", self.name));
        }
        match self.address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
            _ => return bad(format!("address: {:?} is not host:port", self.address)),
        }
        if !["udp", "tcp", "tls"]
            .iter()
            .any(|t| self.transport.eq_ignore_ascii_case(t))
        {
            return bad(format!(
                "transport: {:?} (\"udp\", \"tcp\" or \"tls\")",
                self.transport
            ));
        }
        if !self.is_tls() && (self.tls_ca.is_some() || self.tls_server_name.is_some()) {
            return bad("tls_ca, tls_server_name: only with transport = \"tls\"".into());
        }
        let token =
            |v: &str| !v.is_empty() && !v.contains([' ', ';', ',', '<', '>', '"', '@', ':', '\r', '\n']);
        if !token(self.domain()) {
            return bad(format!("domain: {:?} is not a host", self.domain()));
        }
        if !token(&self.from_user) {
            return bad(format!("from_user: {:?} is not a SIP user", self.from_user));
        }
        if !token(self.register_user()) {
            return bad(format!(
                "register_user: {:?} is not a SIP user",
                self.register_user()
            ));
        }
        if self.register && !(60..=86_400).contains(&self.register_expires_s) {
            return bad(format!(
                "register_expires_s: {} (60 to 86400)",
                self.register_expires_s
            ));
        }
        match (&self.username, &self.password) {
            (Some(u), Some(p)) if !u.is_empty() && !p.expose().is_empty() && !u.contains(['"', '\\']) => {
                Ok(())
            }
            (None, None) => Ok(()),
            _ => bad("username, password: both (not empty, no quotes) or neither".into()),
        }
    }
}

/// `[sip.auth]`: every new INVITE must answer a digest challenge (SHA-256
/// or MD5) for one of these users.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipAuthConfig {
    /// The realm in the challenge.
    #[serde(default = "default_sip_realm")]
    pub realm: String,
    /// Passwords by user name.
    pub users: BTreeMap<String, crate::secret::Secret>,
    /// Challenges sent, in order of preference (`"MD5"`, `"SHA-256"`);
    /// only these are accepted. MD5 comes first by default because many
    /// UAs read only the first challenge (sipp 3.6 gives up on a first
    /// SHA-256 one); put `"SHA-256"` first, or alone, for UAs that read
    /// them all (RFC 8760).
    #[serde(default = "default_sip_algorithms")]
    pub algorithms: Vec<String>,
}

fn default_sip_realm() -> String {
    "voxbridge".into()
}

fn default_sip_algorithms() -> Vec<String> {
    vec!["MD5".into(), "SHA-256".into()]
}

fn sip_algorithm(name: &str) -> Option<voxbridge_proto::sip::auth::Algorithm> {
    use voxbridge_proto::sip::auth::Algorithm;
    [Algorithm::Md5, Algorithm::Sha256]
        .into_iter()
        .find(|a| a.token().eq_ignore_ascii_case(name))
}

impl std::fmt::Debug for SipAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipAuthConfig")
            .field("realm", &self.realm)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

/// One `[[sip.routes]]` rule: the conditions given must all hold. `user`,
/// `from` and `to` match the user part exactly, or as a prefix when they
/// end in `*`; `source` is a network.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipRouteConfig {
    /// Request-URI user (the number dialled).
    pub user: Option<String>,
    /// `From` user (the caller).
    pub from: Option<String>,
    /// `To` user.
    pub to: Option<String>,
    /// Source network (`"192.0.2.0/24"`).
    pub source: Option<String>,
    /// The route the call takes.
    pub route: String,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: None,
            tcp_listen: None,
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            max_connections: 1024,
            advertise: None,
            route: default_route_name(),
            retry_after_s: 5,
            allow: Vec::new(),
            invite_rate: 500.0,
            invite_burst: 1000.0,
            routes: Vec::new(),
            auth: None,
            ringing: true,
            early_media_ms: 0,
            session_expires_s: 0,
            gateways: Vec::new(),
        }
    }
}

impl SipConfig {
    /// `allow` as networks (validated by [`Config::validate`]).
    pub fn allow_cidrs(&self) -> Vec<crate::sansio::sip::Cidr> {
        self.allow
            .iter()
            .filter_map(|a| crate::sansio::sip::Cidr::parse(a).ok())
            .collect()
    }

    /// `auth` as the UAS takes it.
    pub fn digest_auth(&self) -> Option<crate::sansio::sip::DigestAuth> {
        self.auth.as_ref().map(|a| crate::sansio::sip::DigestAuth {
            realm: a.realm.clone(),
            users: a
                .users
                .iter()
                .map(|(u, p)| (u.clone(), p.expose().to_owned()))
                .collect(),
            algorithms: a.algorithms.iter().filter_map(|n| sip_algorithm(n)).collect(),
        })
    }

    /// `routes` as rules (validated by [`Config::validate`]).
    pub fn route_rules(&self) -> Vec<crate::sansio::sip::RouteRule> {
        self.routes
            .iter()
            .map(|r| crate::sansio::sip::RouteRule {
                user: r.user.clone(),
                from: r.from.clone(),
                to: r.to.clone(),
                source: r
                    .source
                    .as_deref()
                    .and_then(|s| crate::sansio::sip::Cidr::parse(s).ok()),
                route: r.route.clone(),
            })
            .collect()
    }

    fn validate(&self, routes: &BTreeMap<String, Route>) -> Result<(), ConfigError> {
        if self.listen.is_none() {
            if self.tcp_listen.is_some() || self.tls_listen.is_some() {
                return Err(ConfigError(
                    "sip.tcp_listen and sip.tls_listen need sip.listen (UDP is always on)".into(),
                ));
            }
            return Ok(());
        }
        if self.tls_listen.is_some() && (self.tls_cert.is_none() || self.tls_key.is_none()) {
            return Err(ConfigError(
                "sip.tls_listen needs sip.tls_cert and sip.tls_key (PEM files)".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError("sip.max_connections: 1 or more".into()));
        }
        if !routes.contains_key(&self.route) {
            return Err(ConfigError(format!("sip.route: {:?} is not defined", self.route)));
        }
        for (i, r) in self.routes.iter().enumerate() {
            if !routes.contains_key(&r.route) {
                return Err(ConfigError(format!(
                    "sip.routes[{i}].route: {:?} is not defined",
                    r.route
                )));
            }
            if let Some(src) = &r.source {
                crate::sansio::sip::Cidr::parse(src)
                    .map_err(|e| ConfigError(format!("sip.routes[{i}].source: {e}")))?;
            }
        }
        for a in &self.allow {
            crate::sansio::sip::Cidr::parse(a).map_err(|e| ConfigError(format!("sip.allow: {e}")))?;
        }
        if !(self.invite_rate >= 0.0 && self.invite_rate.is_finite()) {
            return Err(ConfigError(format!(
                "sip.invite_rate: {} (0 or more)",
                self.invite_rate
            )));
        }
        if let Some(auth) = &self.auth {
            if auth.users.is_empty() || auth.users.values().any(|p| p.expose().is_empty()) {
                return Err(ConfigError(
                    "sip.auth.users: at least one user, none with an empty password".into(),
                ));
            }
            if auth.algorithms.is_empty() || auth.algorithms.iter().any(|a| sip_algorithm(a).is_none()) {
                return Err(ConfigError(format!(
                    "sip.auth.algorithms: {:?} (one or more of \"MD5\", \"SHA-256\")",
                    auth.algorithms
                )));
            }
            if auth.realm.is_empty() || auth.realm.contains(['"', '\\', '\r', '\n']) {
                return Err(ConfigError(format!(
                    "sip.auth.realm: {:?} (no quotes or backslashes)",
                    auth.realm
                )));
            }
        }
        if self.session_expires_s != 0 && self.session_expires_s < 90 {
            return Err(ConfigError(format!(
                "sip.session_expires_s: {} (0 for off, else at least 90: RFC 4028's Min-SE)",
                self.session_expires_s
            )));
        }
        if self.early_media_ms > 60_000 {
            return Err(ConfigError(format!(
                "sip.early_media_ms: {} (at most 60000)",
                self.early_media_ms
            )));
        }
        if !(self.invite_burst >= 0.0 && self.invite_burst.is_finite()) {
            return Err(ConfigError(format!(
                "sip.invite_burst: {} (0 or more)",
                self.invite_burst
            )));
        }
        if let Some(a) = &self.advertise {
            if a.is_empty() || a.contains([' ', ';', ',', '<', '>', '"']) {
                return Err(ConfigError(format!("sip.advertise: {a:?} is not a host[:port]")));
            }
        }
        for (i, g) in self.gateways.iter().enumerate() {
            g.validate(i)?;
            if self.gateways[..i].iter().any(|o| o.name == g.name) {
                return Err(ConfigError(format!("sip.gateways[{i}].name: {:?} twice", g.name)));
            }
        }
        Ok(())
    }
}

/// Limits and timers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Concurrent calls; more are refused (counted, cause `overload`).
    pub max_calls: usize,
    /// A connection must send its UUID within this time.
    pub uuid_timeout_ms: u64,
    /// On shutdown, calls may go on this long before being hung up.
    pub shutdown_grace_ms: u64,
    /// Largest AudioSocket payload accepted.
    pub max_frame_bytes: usize,
    /// AudioSocket: a caller that sends nothing this long is hung up (cause
    /// `media_timeout`). Asterisk sends a frame every 20 ms, silence included.
    pub media_timeout_ms: u64,
    /// AudioSocket: a frame whose header arrived must be complete within
    /// this time, else the call ends as malformed.
    pub frame_timeout_ms: u64,
    /// AudioSocket: the caller socket's kernel send buffer, bytes. A caller
    /// that stops reading fills it, and is dropped (cause `caller_gone`)
    /// once it has taken nothing for 2 s more; a smaller buffer finds it
    /// sooner (32 KiB hold about 1 s of 16 kHz audio).
    pub send_buffer_bytes: usize,
    /// HTTP listeners (REST API, media API, metrics): request headers must
    /// arrive within this, which is also how long a kept-alive connection
    /// may sit idle.
    pub http_header_timeout_ms: u64,
    /// HTTP listeners: a request (with its body) must be answered within this.
    pub http_request_timeout_ms: u64,
    /// HTTP listeners: open connections per client address.
    pub http_max_connections_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_calls: 10_000,
            uuid_timeout_ms: 2000,
            shutdown_grace_ms: 30_000,
            max_frame_bytes: voxbridge_proto::audiosocket::DEFAULT_MAX_PAYLOAD,
            media_timeout_ms: 30_000,
            frame_timeout_ms: 2_000,
            send_buffer_bytes: 32 * 1024,
            http_header_timeout_ms: 10_000,
            http_request_timeout_ms: 30_000,
            http_max_connections_per_ip: 1024,
        }
    }
}

/// `[media_api]`: who may use the RTP session API, and where it is served.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaApiConfig {
    /// A listener of its own for the session API; absent: served beside
    /// `/metrics` on `metrics_listen`.
    pub listen: Option<SocketAddr>,
    /// The credentials (`Authorization: Bearer <token>`). With none, every
    /// session request is refused (401).
    pub tokens: Vec<MediaApiToken>,
}

/// One credential of the media API (an edge: an SBC, RTPEngine, ARI).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaApiToken {
    /// Name, for logs.
    pub name: String,
    /// The bearer token (at least 16 characters).
    pub token: crate::secret::Secret,
    /// The tenant whose calls this edge creates (its sessions carry
    /// `customer_id` = this, whatever the request says). Absent: the
    /// route's tenant, and a request may not name one.
    pub customer_id: Option<String>,
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// AudioSocket listeners.
    pub audiosocket: Vec<AudioSocketListener>,
    /// Asterisk WebSocket channel listeners (none by default).
    pub chan_websocket: Vec<ChanWsListener>,
    /// RTP ingress (sessions are created through the HTTP API).
    pub rtp: RtpConfig,
    /// Where /metrics and the media API (`/v1/rtp/sessions`) are served;
    /// `"off"` in the file disables both.
    #[serde(deserialize_with = "addr_or_off")]
    pub metrics_listen: Option<SocketAddr>,
    /// Tokio worker threads (0: one per core available to the process).
    pub workers: usize,
    /// Routes by name; `default` is used when a listener names none.
    pub routes: BTreeMap<String, Route>,
    /// Limits.
    pub limits: Limits,
    /// The RTP session API's credentials and listener.
    pub media_api: MediaApiConfig,
    /// SIP trunk endpoint (off unless `sip.listen` is set).
    pub sip: SipConfig,
    /// Call recordings.
    pub recording: RecordingConfig,
    /// Per-tenant settings, by customer id.
    pub tenants: BTreeMap<String, TenantConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            audiosocket: vec![AudioSocketListener {
                listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
                route: default_route_name(),
            }],
            chan_websocket: Vec::new(),
            rtp: RtpConfig::default(),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9100))),
            workers: 0,
            routes: BTreeMap::from([(default_route_name(), Route::default())]),
            limits: Limits::default(),
            media_api: MediaApiConfig::default(),
            sip: SipConfig::default(),
            recording: RecordingConfig::default(),
            tenants: BTreeMap::new(),
        }
    }
}

/// Environment variables that override the file (applied by [`Config::apply_env`]).
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    (
        "VOXBRIDGE_AUDIOSOCKET_LISTEN",
        "address of the first AudioSocket listener",
    ),
    (
        "VOXBRIDGE_CHANWS_LISTEN",
        "address of an Asterisk WebSocket channel listener (route default)",
    ),
    ("VOXBRIDGE_METRICS_LISTEN", "/metrics address, or 'off'"),
    ("VOXBRIDGE_BOT_URL", "url of the default route"),
    (
        "VOXBRIDGE_BOT_PROTOCOL",
        "protocol of the default route (pipecat|twilio|telnyx|plivo|exotel|vonage|jambonz|genesys)",
    ),
    (
        "VOXBRIDGE_VAD",
        "voice activity on the default route: on (every key at its default) or off",
    ),
    ("VOXBRIDGE_WORKERS", "tokio worker threads"),
    ("VOXBRIDGE_MAX_CALLS", "call limit"),
    (
        "VOXBRIDGE_OPUS_COMPLEXITY",
        "Opus encoder complexity of RTP legs (0-10)",
    ),
    ("VOXBRIDGE_OPUS_FEC", "Opus in-band FEC of RTP legs (1 on, 0 off)"),
    (
        "VOXBRIDGE_RTP_SHARED_PORT",
        "shared RTP port for every session (0 off)",
    ),
    (
        "VOXBRIDGE_MEDIA_API_TOKEN",
        "a media API token (named \"env\", the route's tenant)",
    ),
];

impl Config {
    /// Parses TOML (missing keys take the embedded defaults).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string()))
    }

    /// Applies [`ENV_OVERRIDES`] read through `get` (so tests need not touch the process env).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let parse_addr = |k: &str, v: &str| {
            v.parse::<SocketAddr>()
                .map_err(|e| ConfigError(format!("{k}={v:?}: {e}")))
        };
        if let Some(v) = get("VOXBRIDGE_AUDIOSOCKET_LISTEN") {
            let addr = parse_addr("VOXBRIDGE_AUDIOSOCKET_LISTEN", &v)?;
            match self.audiosocket.first_mut() {
                Some(l) => l.listen = addr,
                None => self.audiosocket.push(AudioSocketListener {
                    listen: addr,
                    route: default_route_name(),
                }),
            }
        }
        if let Some(v) = get("VOXBRIDGE_CHANWS_LISTEN") {
            let addr = parse_addr("VOXBRIDGE_CHANWS_LISTEN", &v)?;
            match self.chan_websocket.first_mut() {
                Some(l) => l.listen = addr,
                None => self.chan_websocket.push(ChanWsListener {
                    listen: addr,
                    route: default_route_name(),
                }),
            }
        }
        if let Some(v) = get("VOXBRIDGE_MEDIA_API_TOKEN") {
            self.media_api.tokens.push(MediaApiToken {
                name: "env".into(),
                token: v.into(),
                customer_id: None,
            });
        }
        if let Some(v) = get("VOXBRIDGE_METRICS_LISTEN") {
            self.metrics_listen = if v == "off" {
                None
            } else {
                Some(parse_addr("VOXBRIDGE_METRICS_LISTEN", &v)?)
            };
        }
        let route = self.routes.entry(default_route_name()).or_default();
        if let Some(v) = get("VOXBRIDGE_BOT_URL") {
            route.url = v;
        }
        if let Some(v) = get("VOXBRIDGE_BOT_PROTOCOL") {
            route.protocol = match BotProtocolKind::ALL.into_iter().find(|k| k.name() == v) {
                Some(k) => k,
                None => {
                    return Err(ConfigError(format!(
                        "VOXBRIDGE_BOT_PROTOCOL={v:?}: use pipecat, twilio, telnyx, plivo, exotel, vonage, jambonz or genesys"
                    )))
                }
            };
        }
        if let Some(v) = get("VOXBRIDGE_VAD") {
            route.vad = match v.as_str() {
                "on" | "1" => Some(Vad::default()),
                "off" | "0" | "" => None,
                _ => return Err(ConfigError(format!("VOXBRIDGE_VAD={v:?}: use on or off"))),
            };
        }
        let num = |k: &str| -> Result<Option<usize>, ConfigError> {
            get(k)
                .map(|v| v.parse().map_err(|e| ConfigError(format!("{k}={v:?}: {e}"))))
                .transpose()
        };
        if let Some(n) = num("VOXBRIDGE_WORKERS")? {
            self.workers = n;
        }
        if let Some(n) = num("VOXBRIDGE_MAX_CALLS")? {
            self.limits.max_calls = n;
        }
        if let Some(n) = num("VOXBRIDGE_OPUS_COMPLEXITY")? {
            self.rtp.opus_complexity = n.min(u8::MAX as usize) as u8;
        }
        if let Some(n) = num("VOXBRIDGE_OPUS_FEC")? {
            self.rtp.opus_fec = n != 0;
        }
        if let Some(n) = num("VOXBRIDGE_RTP_SHARED_PORT")? {
            self.rtp.shared_port = u16::try_from(n)
                .map_err(|_| ConfigError(format!("VOXBRIDGE_RTP_SHARED_PORT={n}: not a port")))?;
        }
        Ok(())
    }

    /// Reads the messages routes leave on answering machines
    /// (`amd.message`, relative to the working directory) that are not
    /// read yet.
    pub fn load_messages(&mut self) -> Result<(), ConfigError> {
        for (name, route) in &mut self.routes {
            let Some(amd) = route.amd.as_mut() else { continue };
            let Some(path) = amd.message.as_ref().filter(|_| amd.message_audio.is_none()) else {
                continue;
            };
            let bad = |detail: String| {
                ConfigError(format!("routes.{name}.amd.message {}: {detail}", path.display()))
            };
            let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            amd.message_audio = Some(crate::sansio::voicemail::Prompt::from_wav(&bytes).map_err(bad)?);
        }
        Ok(())
    }

    /// Checks every route and that each listener's route exists.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, r) in &self.routes {
            r.validate(name)?;
        }
        for l in &self.audiosocket {
            if !self.routes.contains_key(&l.route) {
                return Err(ConfigError(format!(
                    "audiosocket listener {} names route {:?}, which is not defined",
                    l.listen, l.route
                )));
            }
        }
        for l in &self.chan_websocket {
            if !self.routes.contains_key(&l.route) {
                return Err(ConfigError(format!(
                    "chan_websocket listener {} names route {:?}, which is not defined",
                    l.listen, l.route
                )));
            }
        }
        self.rtp.validate(&self.routes)?;
        self.sip.validate(&self.routes)?;
        for (id, t) in &self.tenants {
            if let Some(t) = &t.transcribe {
                t.validate(&format!("tenants.{id}"))?;
            }
        }
        if !(100..=60_000).contains(&self.recording.buffer_ms) {
            return Err(ConfigError(format!(
                "recording.buffer_ms: {} (100 to 60000)",
                self.recording.buffer_ms
            )));
        }
        if self.limits.max_calls == 0 {
            return Err(ConfigError("limits.max_calls: must be > 0".into()));
        }
        if self.limits.media_timeout_ms < 1000 {
            return Err(ConfigError(format!(
                "limits.media_timeout_ms: {} (at least 1000)",
                self.limits.media_timeout_ms
            )));
        }
        if self.limits.frame_timeout_ms < 100 {
            return Err(ConfigError(format!(
                "limits.frame_timeout_ms: {} (at least 100)",
                self.limits.frame_timeout_ms
            )));
        }
        if self.limits.http_header_timeout_ms == 0
            || self.limits.http_request_timeout_ms == 0
            || self.limits.http_max_connections_per_ip == 0
        {
            return Err(ConfigError(
                "limits.http_header_timeout_ms, http_request_timeout_ms and http_max_connections_per_ip must be > 0"
                    .into(),
            ));
        }
        for (i, t) in self.media_api.tokens.iter().enumerate() {
            if t.token.expose().chars().count() < 16 {
                return Err(ConfigError(format!(
                    "media_api.tokens {:?}: the token must be at least 16 characters",
                    t.name
                )));
            }
            if self.media_api.tokens[..i].iter().any(|o| o.token == t.token) {
                return Err(ConfigError(format!(
                    "media_api.tokens {:?}: the same token twice",
                    t.name
                )));
            }
        }
        if self.limits.send_buffer_bytes < 4096 {
            return Err(ConfigError(format!(
                "limits.send_buffer_bytes: {} (at least 4096)",
                self.limits.send_buffer_bytes
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_embedded_defaults() {
        let c = Config::from_toml("").expect("parses");
        c.validate().expect("valid");
        assert_eq!(c.audiosocket[0].listen.port(), 9092);
        assert_eq!(c.routes["default"].bot_rate(), 16000);
    }

    #[test]
    fn routes_and_listeners_parse() {
        let c = Config::from_toml(
            r#"
            [[audiosocket]]
            listen = "0.0.0.0:9093"
            route = "sales"
            [routes.sales]
            url = "wss://bot.example/ws"
            protocol = "twilio"
            twilio_encoding = "mulaw"
            on_bot_failure = "silence"
            params = { campaign = "spring" }
            "#,
        )
        .expect("parses");
        c.validate().expect("valid");
        let r = &c.routes["sales"];
        assert_eq!(r.bot_rate(), 8000, "mulaw forces 8 kHz");
        assert_eq!(r.on_bot_failure, BotFailurePolicy::Silence);
        assert_eq!(r.params["campaign"], "spring");
    }

    #[test]
    fn provider_dialects_default_to_their_encoding_and_refuse_what_they_cannot_carry() {
        let route = |body: &str| {
            let c = Config::from_toml(&format!("[routes.default]\n{body}")).expect("parses");
            c.validate().map(|()| c.routes["default"].clone())
        };
        let telnyx = route(r#"protocol = "telnyx""#).expect("valid");
        assert_eq!(
            (telnyx.encoding(), telnyx.bot_rate()),
            (TwilioEncoding::Mulaw, 8000)
        );
        let plivo = route("protocol = \"plivo\"\nencoding = \"l16\"").expect("valid");
        assert_eq!((plivo.encoding(), plivo.bot_rate()), (TwilioEncoding::L16, 16000));
        let exotel = route("protocol = \"exotel\"\nsample_rate = 8000").expect("valid");
        assert_eq!(
            (exotel.encoding(), exotel.bot_rate()),
            (TwilioEncoding::L16, 8000)
        );
        let twilio = route(r#"protocol = "twilio""#).expect("valid");
        assert_eq!(
            twilio.encoding(),
            TwilioEncoding::L16,
            "Twilio routes keep their default"
        );
        let e = route("protocol = \"exotel\"\nencoding = \"mulaw\"").expect_err("Exotel streams PCM");
        assert!(e.to_string().contains("routes.default.encoding"), "{e}");
        let e = route("protocol = \"plivo\"\nencoding = \"l16\"\nsample_rate = 24000")
            .expect_err("Plivo: 8 or 16 kHz");
        assert!(e.to_string().contains("plivo carries"), "{e}");
        assert!(route("protocol = \"twilio\"\nencoding = \"alaw\"").is_err());
        let vonage = route(r#"protocol = "vonage""#).expect("valid");
        assert_eq!(
            (vonage.encoding(), vonage.bot_rate()),
            (TwilioEncoding::L16, 16000)
        );
        let e = route("protocol = \"vonage\"\nsample_rate = 48000").expect_err("Vonage: up to 24 kHz");
        assert!(e.to_string().contains("vonage carries"), "{e}");
        let jambonz = route("protocol = \"jambonz\"\nsample_rate = 48000").expect("valid");
        assert_eq!(jambonz.protocol.subprotocol(), Some("audio.jambonz.org"));
        assert!(route("protocol = \"jambonz\"\nencoding = \"mulaw\"").is_err());
        let genesys = route(r#"protocol = "genesys""#).expect("valid");
        assert_eq!(
            (genesys.encoding(), genesys.bot_rate()),
            (TwilioEncoding::Mulaw, 8000)
        );
        assert!(route("protocol = \"genesys\"\nencoding = \"l16\"").is_err());
    }

    #[test]
    fn sip_section_parses_and_mistakes_name_the_key() {
        let c = Config::from_toml(
            r#"
            [sip]
            listen = "0.0.0.0:5060"
            allow = ["192.0.2.0/24", "198.51.100.7"]
            invite_rate = 50
            [sip.auth]
            users = { trunk1 = "s3cret" }
            [[sip.routes]]
            user = "+4930*"
            source = "192.0.2.0/24"
            route = "berlin"
            [[sip.gateways]]
            name = "carrier"
            address = "sbc.carrier.example:5060"
            username = "acme"
            password = "gw-secret"
            [routes.default]
            url = "ws://bot/default"
            [routes.berlin]
            url = "ws://bot/berlin"
            "#,
        )
        .expect("parses");
        c.validate().expect("valid");
        assert_eq!(c.sip.allow_cidrs().len(), 2);
        assert_eq!(c.sip.route_rules()[0].route, "berlin");
        let auth = c.sip.digest_auth().expect("auth on");
        assert_eq!(
            (auth.realm.as_str(), auth.users["trunk1"].as_str()),
            ("voxbridge", "s3cret")
        );
        assert!(
            !format!("{:?}", c.sip).contains("s3cret") && !format!("{:?}", c.sip).contains("gw-secret"),
            "passwords stay out of logs"
        );
        assert_eq!(c.sip.gateways[0].domain(), "sbc.carrier.example");
        assert_eq!(c.sip.gateways[0].from_user, "voxbridge");
        for (toml, key) in [
            (
                "[sip]\nlisten = \"127.0.0.1:5060\"\nallow = [\"10.0.0.0/33\"]",
                "sip.allow",
            ),
            (
                "[sip]\nlisten = \"127.0.0.1:5060\"\n[[sip.routes]]\nroute = \"nope\"",
                "sip.routes[0].route",
            ),
            (
                "[sip]\nlisten = \"127.0.0.1:5060\"\nsession_expires_s = 89",
                "sip.session_expires_s",
            ),
            (
                "[sip]\nlisten = \"127.0.0.1:5060\"\ninvite_rate = -1",
                "sip.invite_rate",
            ),
            (
                "[sip]\nlisten = \"127.0.0.1:5060\"\nearly_media_ms = 60001",
                "sip.early_media_ms",
            ),
            ("[sip]\ntcp_listen = \"127.0.0.1:5060\"", "sip.tcp_listen"),
            (
                "[sip]\nlisten = \"127.0.0.1:5060\"\n[[sip.gateways]]\nname = \"t\"\naddress = \"trunk\"",
                "sip.gateways[0].address",
            ),
            (
                "[sip]\nlisten = \"127.0.0.1:5060\"\n[[sip.gateways]]\nname = \"t\"\naddress = \"trunk:5060\"\nusername = \"u\"",
                "sip.gateways[0].username",
            ),
            (
                "[sip]\nlisten = \"127.0.0.1:5060\"\n[[sip.gateways]]\nname = \"t\"\naddress = \"trunk:5060\"\ntransport = \"sctp\"",
                "sip.gateways[0].transport",
            ),
            (
                "[sip]\nlisten = \"127.0.0.1:5060\"\n[[sip.gateways]]\nname = \"t\"\naddress = \"trunk:5060\"\ntls_ca = \"ca.pem\"",
                "sip.gateways[0].tls_ca",
            ),
            (
                "[sip]\nlisten = \"127.0.0.1:5060\"\n[[sip.gateways]]\nname = \"t\"\naddress = \"a:5060\"\n[[sip.gateways]]\nname = \"t\"\naddress = \"b:5060\"",
                "sip.gateways[1].name",
            ),
            (
                "[sip]\nlisten = \"127.0.0.1:5060\"\ntls_listen = \"127.0.0.1:5061\"",
                "sip.tls_listen",
            ),
        ] {
            let err = Config::from_toml(toml)
                .expect("parses")
                .validate()
                .expect_err("invalid");
            assert!(err.to_string().contains(key), "{toml}: {err}");
        }
    }

    #[test]
    fn mistakes_name_the_key() {
        let e = Config::from_toml("[limits]\nmax_cals = 3").expect_err("unknown key");
        assert!(e.to_string().contains("max_cals"), "{e}");
        let c = Config::from_toml("[routes.default]\nsample_rate = 9000").expect("parses");
        let e = c.validate().expect_err("bad rate");
        assert!(e.to_string().contains("routes.default.sample_rate"), "{e}");
        let c =
            Config::from_toml("[[audiosocket]]\nlisten = \"127.0.0.1:1\"\nroute = \"nope\"").expect("parses");
        assert!(c.validate().expect_err("no route").to_string().contains("nope"));
        let c = Config::from_toml("metrics_listen = \"off\"").expect("parses");
        assert_eq!(c.metrics_listen, None);
    }

    #[test]
    fn env_overrides_apply() {
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "VOXBRIDGE_BOT_URL" => Some("ws://10.0.0.1:9000/bot".into()),
            "VOXBRIDGE_METRICS_LISTEN" => Some("off".into()),
            "VOXBRIDGE_MAX_CALLS" => Some("7".into()),
            _ => None,
        })
        .expect("applies");
        assert_eq!(c.routes["default"].url, "ws://10.0.0.1:9000/bot");
        assert_eq!(c.metrics_listen, None);
        assert_eq!(c.limits.max_calls, 7);
        assert!(c
            .apply_env(|k| (k == "VOXBRIDGE_WORKERS").then(|| "x".into()))
            .is_err());
    }

    #[test]
    fn a_routes_voice_activity_is_read_checked_and_set_by_env() {
        let c = Config::from_toml("[routes.default.vad]\ndirections = [\"in\"]\nstop_ms = 800\n")
            .expect("parses");
        c.validate().expect("valid");
        let vad = c.routes["default"].vad.as_ref().expect("set");
        assert_eq!(vad.detector_config().expect("valid").stop_ms, 800);
        assert!(vad.wants(TranscribeDirection::In) && !vad.wants(TranscribeDirection::Out));
        for (toml, says) in [
            ("start_ms = 0", "routes.default.vad.start_ms: 0 ms"),
            ("directions = []", "routes.default.vad.directions"),
            (
                "echo_return_loss_db = -3.0",
                "routes.default.vad.echo_return_loss_db: -3",
            ),
            ("to_bot = false\nto_control = false", "both false"),
        ] {
            let c = Config::from_toml(&format!("[routes.default.vad]\n{toml}\n")).expect("parses");
            let e = c.validate().expect_err(toml).0;
            assert!(e.contains(says), "{toml}: {e}");
        }
        let mut c = Config::default();
        c.apply_env(|k| (k == "VOXBRIDGE_VAD").then(|| "on".into()))
            .expect("applies");
        assert_eq!(c.routes["default"].vad.as_ref().map(|v| v.stop_ms), Some(600));
        c.apply_env(|k| (k == "VOXBRIDGE_VAD").then(|| "off".into()))
            .expect("applies");
        assert!(c.routes["default"].vad.is_none());
        assert!(c
            .apply_env(|k| (k == "VOXBRIDGE_VAD").then(|| "loud".into()))
            .is_err());
    }

    #[test]
    fn a_routes_answering_machine_detection_is_read_and_checked() {
        let c = Config::from_toml("[routes.default.amd]\ngreeting_ms = 1200\n").expect("parses");
        c.validate().expect("valid");
        let amd = c.routes["default"].amd.as_ref().expect("set");
        assert_eq!(amd.detector_config().greeting_ms, 1200);
        assert_eq!(
            amd.detector_config().after_greeting_silence_ms,
            800,
            "Asterisk's default"
        );
        for (toml, says) in [
            ("max_words = 0", "routes.default.amd.max_words"),
            ("greeting_ms = 9000", "routes.default.amd.greeting_ms: 9000 ms"),
            ("to_bot = false\nto_control = false", "both false"),
            ("on_machine = \"leave_message\"", "needs message"),
            ("message = \"m.wav\"", "only with on_machine = \"leave_message\""),
            ("beep_wait_ms = 100", "routes.default.amd.beep_wait_ms: 100 ms"),
            ("on_machine = \"voicemail\"", "unknown variant"),
        ] {
            let e = match Config::from_toml(&format!("[routes.default.amd]\n{toml}\n")) {
                Ok(c) => c.validate().expect_err(toml).0,
                Err(e) => e.0,
            };
            assert!(e.contains(says), "{toml}: {e}");
        }
    }

    #[test]
    fn a_message_to_leave_is_read_at_start_and_a_missing_one_names_its_route() {
        let dir = std::env::temp_dir().join(format!("voxbridge-config-message-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("message.wav");
        let mut wav =
            voxbridge_proto::wav::write_header(voxbridge_proto::wav::WavEncoding::Ulaw, 8000, 800).to_vec();
        wav.extend(std::iter::repeat_n(0xffu8, 800));
        std::fs::write(&path, wav).expect("write");
        let toml = |p: &std::path::Path| {
            format!(
                "[routes.out.amd]\non_machine = \"leave_message\"\nmessage = {:?}\n",
                p.display().to_string()
            )
        };
        let mut c = Config::from_toml(&toml(&path)).expect("parses");
        c.load_messages().expect("read");
        let amd = c.routes["out"].amd.as_ref().expect("set");
        assert_eq!(amd.message_audio.as_ref().map(|p| p.duration_ms()), Some(100));
        let mut c = Config::from_toml(&toml(&dir.join("missing.wav"))).expect("parses");
        let e = c.load_messages().expect_err("no such file").0;
        assert!(e.starts_with("routes.out.amd.message"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
