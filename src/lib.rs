#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod active;
mod admin;
mod batch;
mod budget;
mod call;
mod chunk_key;
mod chunk_meta;
mod chunks;
mod client;
mod command;
mod config;
mod connection;
mod deployment;
mod error;
mod fill;
mod frame;
mod health;
mod lane;
mod latency;
mod lmcache_config;
mod pending;
mod pool;
mod priority;
#[cfg(test)]
mod properties;
mod queue;
mod race;
mod reader;
mod request;
mod resp;
mod sentinel;
mod settle;
mod shared;
mod slot;
mod slot_map;
mod split;
mod stats;
mod telemetry;
mod tls;
mod topology;
mod unit;
mod url;
mod value;
mod wake;
mod worker;

pub use admin::{NodeConnection, Reply, Shard};
pub use call::{Call, Interrupt};
pub use chunk_key::{ChunkKey, Dtype};
pub use chunk_meta::{ChunkMeta, DtypeCode, MemoryFormat};
pub use chunks::{Chunk, ChunkStore, Layout, PendingChunks, SplitNaming};
pub use client::Client;
pub use config::{Config, Mode, ReadFrom};
pub use error::{Error, Result};
pub use fill::FillResult;
pub use frame::FRAME_HEADER;
pub use latency::Latency;
pub use lmcache_config::LmcacheConfig;
pub use pending::PendingGet;
pub use priority::Priority;
pub use sentinel::{SentinelAnswer, SentinelReplica, SentinelView};
pub use slot::{SLOTS, Slot, hash_tag};
pub use stats::{NodeStats, Stats};
pub use url::redact_url;

#[doc(hidden)]
pub mod bench_support;
