//! tunelake keeps listening history in a file-based lake and exports it to PostgreSQL.
//!
//! ```text
//!  sources (source/)          lake (lake/)                                    outputs
//!  spotify web api  ─┐
//!  spotify export    ├ingest─► raw/       exact bytes, content-addressed
//!  sparkify logs    ─┘         staging/   typed Parquet ─build (model/)─► star/ Parquet ─┬─ query (model/)
//!                              _manifest/ one entry per run: the commit point             └─ sync (sink/) ─► PostgreSQL
//!                              state/     Spotify tokens (0600)
//! ```
//!
//! Every source offers its files to one intake (`source::Intake`), which
//! stores, skips, stages, counts and commits for all of them. A run's entry
//! records what it did in typed statistics ([`lake::stats`]); the ledger has
//! one format, and an older lake is upgraded once ([`lake::upgrade`]).
//!
//! Stages talk only through the lake: `source`, `model` and `sink` use
//! `lake`, never each other (a build announces its files to the sink through
//! [`lake::events`]); `report` reads through `model`'s queries; `cli` wires
//! them together. tests/it/architecture.rs holds the code to it. The SQL that builds
//! and describes the star schema lives in `sql/` ([`sql`]).

pub mod cli;
pub mod config;
pub mod error;
pub mod lake;
pub mod model;
pub mod progress;
pub mod report;
pub mod sink;
pub mod source;
pub mod sql;
pub mod status;

pub use error::{Error, Result};
