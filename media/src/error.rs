//! The one error type of the media crate.

use voxbridge_codecs::CodecError;
use voxbridge_proto::ProtoError;

/// A configuration the daemon refuses to start with: which key, and why.
/// Apart from [`MediaError`]'s runtime errors, as rustls and rubato keep
/// construction errors apart from what happens while running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config: {0}")]
pub struct ConfigError(pub String);

/// What can go wrong in the media engine: bad configuration (at startup),
/// bad bytes from a caller or a bot (per call: logged, counted, the call ends
/// or the message is dropped), and I/O.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The configuration is invalid; the daemon refuses to start.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A wire format error from a peer.
    #[error(transparent)]
    Proto(#[from] ProtoError),
    /// A DSP error (unsupported rate, frame length).
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The bot sent something we cannot use.
    #[error("bot protocol: {0}")]
    BotProtocol(String),
    /// The bot link failed (see [`BotLinkError`]).
    #[error(transparent)]
    BotLink(#[from] BotLinkError),
    /// A caller leg broke its protocol (first frame not a UUID, ...).
    #[error("caller protocol: {0}")]
    CallerProtocol(String),
    /// An RTP session request that is wrong (the reason says why).
    #[error("session: {0}")]
    Session(String),
    /// An RTP session request that is fine but cannot be served now
    /// (shutting down, call limit, no free port).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A call event or command between a media and a control process that
    /// could not be decoded (see [`crate::event_wire`]).
    #[error(transparent)]
    Wire(#[from] voxbridge_contract::ContractError),
    /// Socket I/O.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// How a bot link fails; each one goes through the route's `on_bot_failure`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BotLinkError {
    /// No answer to the connect within the route's `connect_timeout_ms`.
    #[error("bot connect: {url}: no answer within {timeout_ms} ms")]
    ConnectTimeout {
        /// The bot URL, credentials redacted.
        url: String,
        /// The deadline.
        timeout_ms: u64,
    },
    /// The connect was refused or the handshake failed.
    #[error("bot connect: {url}: {reason}")]
    Connect {
        /// The bot URL, credentials redacted.
        url: String,
        /// What the network or the WebSocket handshake said.
        reason: String,
    },
    /// The bot stopped reading: its link's write buffer is full.
    #[error("bot stopped reading: {unsent} bytes queued and unsent")]
    Stalled {
        /// Bytes waiting for the bot.
        unsent: usize,
    },
    /// The bot closed its WebSocket with a code other than 1000.
    #[error("bot closed the link with code {code}{}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    Closed {
        /// The close code.
        code: u16,
        /// The close reason the bot gave.
        reason: String,
    },
    /// The connection broke (reset, closed without a close frame, a write
    /// the socket refused).
    #[error("bot link dropped: {0}")]
    Dropped(String),
}
