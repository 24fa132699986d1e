//! thresher: turns raw web corpora into training-ready tokens, as staged,
//! resumable batch jobs whose every record is accounted for.
//!
//! The main type is [`runner::Pipeline`]: built from a [`config::PipelineConfig`],
//! it runs the configured stages (from the `thresher-stages` crate) over shards
//! read through the [`storage::Storage`] trait, and writes outputs, sidecars
//! and manifests (from `thresher-manifests`).
//!
//! ```no_run
//! use thresher::{config::PipelineConfig, runner::{Pipeline, RunOptions}};
//! let config = PipelineConfig::load("examples/quickstart.toml".as_ref())?;
//! let pipeline = Pipeline::new(config)?;
//! pipeline.run(&RunOptions::default())?;
//! # Ok::<(), thresher::Error>(())
//! ```

pub mod bench;
pub mod cli;
pub mod config;
pub mod error;
pub mod eval;
mod global_steps;
pub mod inspect;
mod pack_steps;
pub mod parquet_rows;
pub mod progress;
pub mod readers;
pub mod remote_files;
pub mod report;
pub mod runner;
pub mod shard;
pub mod storage;
pub mod submit;
pub mod web_page;
pub mod writer;

pub use error::{Error, Result};
