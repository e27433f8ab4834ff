use sqlx::error::ErrorKind;

/// Everything the store can fail with. `NotFound` and `Conflict` carry a message meant for the
/// API client; the others are operator problems.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The database has migrations this binary does not know: refusing to run rather than
    /// write rows a newer schema would misread.
    #[error("{0}")]
    NewerSchema(String),
    #[error("store database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored value this binary cannot read back (an unknown status, a malformed id...).
    #[error("{0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Which constraint, if any, a failed statement broke: how unique and foreign-key violations
/// become `Conflict` and `NotFound` without a racy read before the write.
pub(crate) fn violation(err: &sqlx::Error) -> Option<ErrorKind> {
    err.as_database_error().map(|db| db.kind())
}
