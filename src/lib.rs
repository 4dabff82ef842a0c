//! tunelake keeps listening history in a file-based lake and exports it to PostgreSQL.
//!
//! ```text
//!  sources               lake (files on disk)                             outputs
//!  sparkify logs ─ingest─► raw/      exact bytes, content-addressed
//!  (source/)              staging/  typed Parquet by date ─build─► star/ Parquet ─┬─ query (model/)
//!                         _manifest/ one entry per run: the commit point            └─ sync ─► PostgreSQL (sink/)
//!                         (lake/)     (model/: DataFusion over sql/model/)
//! ```
//!
//! Stages talk only through the lake: `source`, `model` and `sink` use
//! `lake`, never each other; `cli` wires them together.

pub mod cli;
pub mod config;
pub mod error;
pub mod lake;
pub mod model;
pub mod progress;
pub mod sink;
pub mod source;
pub mod sql;
pub mod status;

pub use error::{Error, Result};
