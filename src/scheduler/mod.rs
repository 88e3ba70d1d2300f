//! `ordinaut scheduler`: maintenance services that keep the tables healthy.
//!
//! Every service here is safe to run in any number of processes at once.

pub mod cron;
pub mod rescuer;

pub use rescuer::{Rescuer, RescuerOptions};
