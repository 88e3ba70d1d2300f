//! The kinds registry: which kinds the running workers serve, published by the workers
//! and read by the API and the CLI. The kinds themselves, as `ordinaut.toml` declares
//! them, are configuration ([`crate::config::kinds`]) and are re-exported here.

pub mod registry;

pub use crate::config::kinds::*;
