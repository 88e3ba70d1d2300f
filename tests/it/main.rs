//! Integration tests against real Postgres, one fresh database per test.

#[path = "../common/mod.rs"]
mod common;

mod api;
mod cli;
mod db_jobs;
mod docs;
mod fencing;
mod http_kind;
mod kinds;
mod layout;
mod maintenance;
mod metrics;
mod ops;
mod otel;
mod poison;
mod search;
mod stats;
mod ui;
mod ui_live;
mod worker;
mod workflows;
