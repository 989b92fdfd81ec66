//! The control crate's one error type. The API maps each variant to an HTTP
//! status and a stable JSON code (`api/error.rs`); details go to the log.

/// What went wrong in the control sidecar.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The database refused or failed a statement, or is unreachable.
    #[error("store: {0}")]
    Store(String),
    /// A row read back did not have the shape the code expects (a bug or a
    /// schema drift).
    #[error("store row: {0}")]
    Row(String),
    /// The resource does not exist (or belongs to another tenant).
    #[error("not found")]
    NotFound,
    /// The write conflicts with an existing row.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A call event would move the call backwards or skip a state.
    #[error("call {call_id}: {from} -> {to} is not an allowed transition")]
    Transition {
        /// The call.
        call_id: String,
        /// Its status now.
        from: &'static str,
        /// The status asked for.
        to: &'static str,
    },
    /// The request is well-formed but its values are not acceptable.
    #[error("invalid: {0}")]
    Invalid(String),
    /// Bad configuration (at start).
    #[error("config: {0}")]
    Config(String),
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(String),
}

impl From<tokio_postgres::Error> for ControlError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The server's own message is more useful than the client's summary.
        match e.as_db_error() {
            Some(db) => ControlError::Store(format!("{}: {}", db.code().code(), db.message())),
            None => ControlError::Store(e.to_string()),
        }
    }
}

impl From<rusqlite::Error> for ControlError {
    fn from(e: rusqlite::Error) -> Self {
        ControlError::Store(e.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for ControlError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ControlError::Store(format!("pool: {e}"))
    }
}

/// Shorthand.
pub type Result<T, E = ControlError> = std::result::Result<T, E>;
