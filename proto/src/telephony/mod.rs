//! The Media Streams dialects telephony providers speak to voice bots
//! (Twilio, Telnyx, Plivo, Exotel, Vonage, jambonz, Genesys AudioHook),
//! both directions, so that a bot written for one of them runs behind
//! voxbridge unchanged.
//!
//! voxbridge plays the provider's part: [`Dialect`]'s writers produce the
//! provider's opening messages, `media`, `dtmf`, mark acknowledgements and
//! the end of the stream, and [`BotCommand::parse`] reads what the bot
//! sends. The bot's side is here too ([`CallerEvent::parse`], which tells
//! the dialect from the start message as pipecat's runner does, and
//! [`BotCommand::write`]) for test peers and `voxbridge bot check`.
//! Twilio's messages are written by [`crate::twilio`], byte for byte as
//! before.
//!
//! | dialect | audio to the bot | bot plays audio | barge-in | marks | end |
//! |---|---|---|---|---|---|
//! | twilio | `media`, `streamSid` | `media` | `clear` | `mark` -> `mark` | `stop` |
//! | telnyx | `media`, `stream_id` | `media` | `clear` | `mark` -> `mark` | `stop` |
//! | plivo | `media`, `streamId` | `playAudio` (names its content type) | `clearAudio` -> `clearedAudio` | `checkpoint` -> `playedStream` | the socket closes |
//! | exotel | `media`, `stream_sid` | `media` | `clear` | `mark` -> `mark` | `stop` |
//! | vonage | binary L16 | binary L16 | `{"action":"clear"}` -> `websocket:cleared` | `notify` -> `websocket:notify` | the socket closes |
//! | jambonz | binary L16 | binary L16 | `killAudio` (its dropped marks -> `mark` (`cleared`)) | `mark` -> `mark` (`playout`); `clearMarks` | the socket closes; the bot's `disconnect` hangs up |
//! | genesys | binary PCMU | binary PCMU | `event` `barge_in` | none (`ping` -> `pong` keeps the link) | `close` -> `closed`; the bot's `disconnect` hangs up |
//!
//! The JSON dialects carry audio in base64 payloads: G.711 (`mulaw` at
//! 8 kHz everywhere, `alaw` on Telnyx) or 16-bit linear PCM,
//! little-endian except on Telnyx, whose `L16` is in network order.
//! Vonage, jambonz and Genesys ([`Dialect::binary_audio`]) send audio in
//! binary messages (raw little-endian PCM16; Genesys G.711 u-law) and JSON
//! text only for control; the opening is one text message (Vonage's
//! `websocket:connected`, jambonz's metadata, Genesys AudioHook's `open`,
//! which the bot answers `opened`), and jambonz is reached with the
//! WebSocket subprotocol [`Dialect::subprotocol`]. Genesys's messages carry
//! a sequence number, the last one seen from the bot and the stream's
//! position ([`Ids`]). `dtmf` and `transfer` from the bot are
//! voxbridge extensions accepted in every dialect.

mod bot;
mod caller;
mod wire;
mod write;

pub use bot::{audiohook_seq, BotCommand, RecordingAction};
pub use caller::{CallerEvent, StartInfo};
pub use write::Opening;

use crate::error::ProtoError;

/// A provider's Media Streams dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Twilio Media Streams.
    Twilio,
    /// Telnyx media streaming (Call Control `stream_url`).
    Telnyx,
    /// Plivo Audio Streams (bidirectional).
    Plivo,
    /// Exotel Voicebot applet streams.
    Exotel,
    /// Vonage Voice API WebSocket (`connect` to a `websocket` endpoint).
    Vonage,
    /// jambonz `listen` verb with bidirectional streaming audio.
    Jambonz,
    /// Genesys Cloud AudioHook (protocol version 2), voxbridge in Genesys's
    /// client part.
    Genesys,
}

impl Dialect {
    /// Every dialect.
    pub const ALL: [Dialect; 7] = [
        Dialect::Twilio,
        Dialect::Telnyx,
        Dialect::Plivo,
        Dialect::Exotel,
        Dialect::Vonage,
        Dialect::Jambonz,
        Dialect::Genesys,
    ];

    /// The name used in configuration (`protocol = "telnyx"`).
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Twilio => "twilio",
            Dialect::Telnyx => "telnyx",
            Dialect::Plivo => "plivo",
            Dialect::Exotel => "exotel",
            Dialect::Vonage => "vonage",
            Dialect::Jambonz => "jambonz",
            Dialect::Genesys => "genesys",
        }
    }

    /// Whether audio travels raw in binary messages (PCM16 little-endian,
    /// or u-law on Genesys) rather than base64 inside JSON.
    pub fn binary_audio(self) -> bool {
        matches!(self, Dialect::Vonage | Dialect::Jambonz | Dialect::Genesys)
    }

    /// The WebSocket subprotocol the provider offers when it dials the bot.
    pub fn subprotocol(self) -> Option<&'static str> {
        (self == Dialect::Jambonz).then_some("audio.jambonz.org")
    }

    /// The dialect of a configuration name.
    pub fn from_name(name: &str) -> Option<Dialect> {
        Dialect::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Whether the dialect carries `encoding` at `rate` Hz; the error says
    /// what it carries instead.
    pub fn check(self, encoding: Encoding, rate: u32) -> Result<(), ProtoError> {
        let ok = match (self, encoding) {
            (Dialect::Exotel | Dialect::Vonage | Dialect::Jambonz, Encoding::Mulaw) => false,
            (Dialect::Genesys, Encoding::Mulaw) => rate == 8000,
            (Dialect::Genesys, _) => false,
            (_, Encoding::Mulaw) => rate == 8000,
            (Dialect::Telnyx, Encoding::Alaw) => rate == 8000,
            (_, Encoding::Alaw) => false,
            // voxbridge's own extension of Twilio's format: any rate.
            (Dialect::Twilio, Encoding::L16) => rate > 0,
            (Dialect::Telnyx | Dialect::Plivo, Encoding::L16) => matches!(rate, 8000 | 16000),
            (Dialect::Exotel | Dialect::Vonage, Encoding::L16) => matches!(rate, 8000 | 16000 | 24000),
            (Dialect::Jambonz, Encoding::L16) => matches!(rate, 8000 | 16000 | 24000 | 48000),
        };
        if ok {
            return Ok(());
        }
        let carries = match self {
            Dialect::Twilio => "mulaw at 8000 Hz or l16",
            Dialect::Telnyx => "mulaw or alaw at 8000 Hz, or l16 at 8000 or 16000 Hz",
            Dialect::Plivo => "mulaw at 8000 Hz or l16 at 8000 or 16000 Hz",
            Dialect::Exotel | Dialect::Vonage => "l16 at 8000, 16000 or 24000 Hz",
            Dialect::Jambonz => "l16 at 8000, 16000, 24000 or 48000 Hz",
            Dialect::Genesys => "mulaw at 8000 Hz",
        };
        Err(ProtoError::Json(format!(
            "{} carries {carries}, not {} at {rate} Hz",
            self.name(),
            encoding.name()
        )))
    }

    /// The key that names the stream in this dialect's messages (none in
    /// the binary-audio dialects).
    pub(crate) fn stream_key(self) -> Option<&'static str> {
        match self {
            Dialect::Twilio => Some("streamSid"),
            Dialect::Telnyx => Some("stream_id"),
            Dialect::Plivo => Some("streamId"),
            Dialect::Exotel => Some("stream_sid"),
            Dialect::Vonage | Dialect::Jambonz | Dialect::Genesys => None,
        }
    }

    /// How 16-bit linear audio is ordered on this dialect's wire.
    pub fn l16_big_endian(self) -> bool {
        self == Dialect::Telnyx
    }
}

/// Audio inside a `media` payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// G.711 u-law, 8 kHz.
    Mulaw,
    /// G.711 A-law, 8 kHz.
    Alaw,
    /// 16-bit linear PCM (byte order: [`Dialect::l16_big_endian`]).
    L16,
}

impl Encoding {
    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Mulaw => "mulaw",
            Encoding::Alaw => "alaw",
            Encoding::L16 => "l16",
        }
    }

    /// Bytes per sample on the wire.
    pub fn bytes_per_sample(self) -> usize {
        match self {
            Encoding::Mulaw | Encoding::Alaw => 1,
            Encoding::L16 => 2,
        }
    }

    /// The MIME-style name Twilio and Plivo use (`audio/x-mulaw`).
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Mulaw => "audio/x-mulaw",
            Encoding::Alaw => "audio/x-alaw",
            Encoding::L16 => "audio/x-l16",
        }
    }

    /// The encoding a content type names (`audio/x-mulaw`, `audio/x-l16`).
    pub fn from_content_type(name: &str) -> Option<Encoding> {
        // Parameters (`audio/x-l16;rate=16000`) do not change the encoding.
        let base = name.split(';').next().unwrap_or_default().trim();
        [Encoding::Mulaw, Encoding::Alaw, Encoding::L16]
            .into_iter()
            .find(|e| e.content_type().eq_ignore_ascii_case(base))
    }

    /// Telnyx's codec name (`PCMU`, `PCMA`, `L16`).
    pub(crate) fn telnyx_name(self) -> &'static str {
        match self {
            Encoding::Mulaw => "PCMU",
            Encoding::Alaw => "PCMA",
            Encoding::L16 => "L16",
        }
    }
}

/// The names a stream goes by in its messages, and where it is (which only
/// Genesys's messages say). `stream_id` goes into every `media` message as
/// written, so it must need no JSON escaping (the writers check it in
/// debug builds); the others are escaped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ids<'a> {
    /// The stream.
    pub stream_id: &'a str,
    /// The call (what the provider's call-control API takes).
    pub call_id: &'a str,
    /// The account the call belongs to (may be empty).
    pub account_id: &'a str,
    /// The sequence number of the last message the bot sent (Genesys's
    /// `serverseq`; 0 before any).
    pub peer_seq: u64,
    /// Audio sent so far, ms (Genesys's `position`).
    pub position_ms: u64,
}

#[cfg(test)]
mod tests;
