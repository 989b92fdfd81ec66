//! The one error type of the media crate.

use voxbridge_codecs::CodecError;
use voxbridge_proto::ProtoError;

/// What can go wrong in the media engine: bad configuration (at startup),
/// bad bytes from a caller or a bot (per call: logged, counted, the call ends
/// or the message is dropped), and I/O.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The configuration is invalid; the daemon refuses to start.
    #[error("config: {0}")]
    Config(String),
    /// A wire format error from a peer.
    #[error(transparent)]
    Proto(#[from] ProtoError),
    /// A DSP error (unsupported rate, frame length).
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The bot sent something we cannot use.
    #[error("bot protocol: {0}")]
    BotProtocol(String),
    /// The bot stopped reading: its link's write buffer is full.
    #[error("bot stopped reading: {unsent} bytes queued and unsent")]
    BotStalled {
        /// Bytes waiting for the bot.
        unsent: usize,
    },
    /// The bot link could not be set up.
    #[error("bot connect: {0}")]
    BotConnect(String),
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
    #[error("wire: {0}")]
    Wire(String),
    /// Socket I/O.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}
