//! The store: every SQL statement Ordinaut runs lives under this module, one file per
//! table. Nothing outside `db` names a table.
//!
//! Connections get `search_path` set to the configured schema, so SQL text stays static
//! and one database can hold several installs.
//!
//! Beside the per-table modules: `error` (the store's errors and constraint mapping),
//! `connect` (pools, server selection and re-targeting after a fault) and `schema`
//! (migrations, partitions, readiness).

pub mod attempts;
pub mod audit;
#[doc(hidden)]
pub mod bench;
pub mod bulk;
pub mod connstr;
pub mod due_work;
pub mod events;
pub(crate) mod fault;
pub mod history;
pub mod kinds;
pub mod listen;
pub mod queues;
pub mod schedules;
pub mod sessions;
pub mod stats;
pub mod vacuum;
pub mod workers;
pub mod workflows;

mod connect;
mod error;
mod schema;

pub use connect::{DbConfig, WORKER_STATEMENT_TIMEOUT, connect_like, not_writable, ping};
pub(crate) use error::map_constraint;
pub use error::{Error, Result};
pub use schema::{
    MIGRATOR, Readiness, applied_version, ensure_partitions, is_ready, latest_known_migration,
    migrate, readiness,
};
pub use sqlx::PgPool as Pool;
