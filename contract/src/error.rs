//! The one error type of the contract crate.

/// A call event or command between a media and a control process that could
/// not be decoded (the message says which part and why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContractError {
    /// The JSON wire form was wrong.
    #[error("wire: {0}")]
    Wire(String),
}
