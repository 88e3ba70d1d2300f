//! Ordinaut: a job queue and scheduler whose only dependency is PostgreSQL.
//!
//! The crate is the whole product: the `ordinaut` binary is a thin shell over
//! [`cli`]. Rust programs can also embed a [`worker::Worker`] with their own
//! [`worker::Handlers`] and enqueue through [`db::due_work::enqueue_many`].

pub mod api;
pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod db;
pub mod healthcheck;
pub mod kinds;
pub mod metrics;
pub mod model;
pub mod otel;
pub mod pg_local;
pub mod scheduler;
pub mod shutdown;
pub mod telemetry;
pub mod worker;
