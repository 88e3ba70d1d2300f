//! Integration tests against real Postgres, one fresh database per test.

#[path = "../common/mod.rs"]
mod common;

mod api;
mod cli;
mod db_jobs;
mod metrics;
mod ops;
mod ui;
mod worker;
