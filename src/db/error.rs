//! The store's errors, by what the caller can do about them, and the mapping of
//! constraint violations to the field they concern.

use super::{connstr, fault};

/// Store errors, by what the caller can do about them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such job (or queue, worker).
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The row is not in a state that allows this transition.
    #[error("{0}")]
    Conflict(String),
    /// The caller's input was refused by a constraint.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The database was migrated by a newer Ordinaut.
    #[error(
        "database schema is at migration {found}, newer than this ordinaut knows (up to {known}); upgrade ordinaut"
    )]
    SchemaTooNew { found: i64, known: i64 },
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The connection string does not parse.
    #[error(transparent)]
    ConnStr(#[from] connstr::ConnStrError),
    /// No listed server could be reached, or none satisfies `target_session_attrs`.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else from the database or the network.
    #[error(transparent)]
    Sqlx(sqlx::Error),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Error {
        // Every store call passes here: a fault seen anywhere retires the process's
        // pooled connections and makes the pools look for the primary again.
        fault::observe(&e);
        Error::Sqlx(e)
    }
}

impl Error {
    /// True when a server answered but none is a writable primary (a standby, a
    /// read-only or recovering server, or no listed server satisfying
    /// `target_session_attrs`): a process starting now waits for one instead of exiting.
    pub fn waits_for_primary(&self) -> bool {
        fn refused(e: &sqlx::Error) -> bool {
            matches!(e, sqlx::Error::Database(d)
                if d.code().is_some_and(|c| c == "25006" || c == "57P03"))
        }
        match self {
            Error::Unavailable(_) => true,
            Error::Sqlx(e) => refused(e),
            Error::Migrate(sqlx::migrate::MigrateError::Execute(e))
            | Error::Migrate(sqlx::migrate::MigrateError::ExecuteMigration(e, _)) => refused(e),
            _ => false,
        }
    }

    /// True when the database is unreachable, shutting down, read-only or in recovery:
    /// worth retrying later, not the caller's mistake.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Unavailable(_) => true,
            Error::Sqlx(e) => fault::classify(e) != fault::Kind::None,
            _ => false,
        }
    }
}

/// Result alias for the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps a unique/check violation to a caller-facing error by constraint name.
pub(crate) fn map_constraint(error: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &error
        && let Some(constraint) = db.constraint()
    {
        let (field, reason) = match constraint {
            "due_work_priority_range" => ("priority", "out of range -100..=100"),
            "due_work_max_attempts_range" | "queues_max_attempts_range" => {
                ("max_attempts", "out of range 1..=1000")
            }
            "due_work_timeout_positive" | "queues_timeout_positive" => {
                ("timeout", "must be positive")
            }
            "queues_backoff_base_positive" | "queues_backoff_max_positive" => {
                ("backoff", "must be positive")
            }
            _ => return Error::Sqlx(error),
        };
        return Error::Invalid {
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
    }
    Error::Sqlx(error)
}
