#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod batch;
mod client;
mod config;
mod connection;
mod error;
mod pool;
mod queue;
mod request;
mod slot;
mod stats;
mod topology;
mod worker;

pub use client::{Call, Client, PendingGet};
pub use config::{Config, Mode};
pub use error::{Error, Result};
pub use request::Priority;
pub use slot::{SLOTS, Slot, hash_tag};
pub use stats::{NodeStats, Stats};
