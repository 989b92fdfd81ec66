//! The control crate's one error type. The API maps each variant to an HTTP
//! status and a stable JSON code (`api/error.rs`); details go to the log.

/// What went wrong in the control sidecar.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The database is unreachable or failed for a reason that may pass
    /// (connection, pool, lock, serialization, resources): worth retrying.
    #[error("store: {0}")]
    Store(String),
    /// The database refused the statement for what it carries (invalid
    /// text, a constraint): retrying the same write fails the same way.
    #[error("store refused: {0}")]
    Rejected(String),
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
            Some(db) => {
                let code = db.code().code();
                let msg = format!("{code}: {}", db.message().replace('\0', ""));
                if transient_sqlstate(code) {
                    ControlError::Store(msg)
                } else {
                    ControlError::Rejected(msg)
                }
            }
            None => ControlError::Store(e.to_string()),
        }
    }
}

/// SQLSTATE classes that may pass: connection (08), transaction rollback
/// such as serialization failures and deadlocks (40), insufficient
/// resources (53), operator intervention such as a shutdown (57), system
/// errors (58), and internal errors (XX). Every other class answered by the
/// server (data exceptions 22, constraints 23, ...) is about the statement.
fn transient_sqlstate(code: &str) -> bool {
    matches!(code.get(..2), Some("08" | "40" | "53" | "57" | "58" | "XX"))
}

impl From<rusqlite::Error> for ControlError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    C::ConstraintViolation | C::TooBig | C::TypeMismatch | C::ParameterOutOfRange
                ) =>
            {
                ControlError::Rejected(e.to_string())
            }
            _ => ControlError::Store(e.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for ControlError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ControlError::Store(format!("pool: {e}"))
    }
}

/// Shorthand.
pub type Result<T, E = ControlError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    #[test]
    fn data_errors_are_permanent_and_outages_are_not() {
        for code in ["22021", "23505", "42703"] {
            assert!(!super::transient_sqlstate(code), "{code}");
        }
        for code in ["08006", "40001", "40P01", "53300", "57P01", "XX000"] {
            assert!(super::transient_sqlstate(code), "{code}");
        }
    }
}
