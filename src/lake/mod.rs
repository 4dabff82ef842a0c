//! Stage 2: the only code that touches the lake on disk.
//!
//! ```text
//! <lake>/raw/<source>/ingest_date=YYYY-MM-DD/<sha256>.json   exact bytes received, never rewritten
//! <lake>/raw/<source>/ingest_date=YYYY-MM-DD/pack-<run>.raw   a run's small files, concatenated ([`raw`])
//! <lake>/staging/<table>/date=YYYY-MM-DD/part-<run>-<n>.parquet
//! <lake>/star/<table>/[year=YYYY/month=MM/]part-<version>.parquet
//! <lake>/star/<table>/_delta_log/                            the star table as a Delta table ([`delta`])
//! <lake>/_manifest/<run>.json                                 one file per committed run
//! <lake>/_manifest/<run>.raw.ndjson                           the raw files that run stored
//! <lake>/_manifest/<run>.checkpoint.json                      the state as of that run ([`checkpoint`])
//! <lake>/state/                                               cursors and tokens (0600)
//! ```
//!
//! Every file is written to a temp file beside its target, fsynced and renamed
//! ([`fsio`]); a run's manifest entry is written last and is its commit
//! ([`manifest`]); one writer at a time holds [`lock::LakeLock`].

pub mod checkpoint;
pub mod crash_point;
pub mod delta;
pub mod events;
pub mod fsio;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod parquet;
pub mod raw;
pub mod remote;
pub mod staging;
pub mod stats;
pub mod upgrade;
pub mod vacuum;
pub mod verify;

use std::path::PathBuf;

pub use layout::Layout;
pub use lock::LakeLock;
pub use manifest::{Manifest, Run, RunKind};

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("{path}: {op} failed")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    // No advice to remove the lock file: the kernel drops the lock when its
    // holder dies, and removing it under a live holder lets two writers in.
    #[error("the lake at {lake} is locked by another run ({holder}, {lock}); wait for it to finish")]
    Locked { lake: PathBuf, lock: PathBuf, holder: String },
    #[error(
        "{path}: this lake's ledger is format {found}, newer than this tunelake reads ({supported}); \
         use the tunelake that wrote it, or a newer one"
    )]
    NewerFormat { path: PathBuf, found: String, supported: u32 },
    #[error("{path}: manifest entry is not valid")]
    BadManifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: cannot write Parquet")]
    ParquetWrite {
        path: PathBuf,
        #[source]
        source: datafusion::parquet::errors::ParquetError,
    },
    #[error("{path}: cannot read Parquet")]
    ParquetRead {
        path: PathBuf,
        #[source]
        source: datafusion::parquet::errors::ParquetError,
    },
    #[error("{path}: {what}; `tunelake reprocess` rewrites staging from raw")]
    Corrupt { path: PathBuf, what: String },
    #[error("{path}: {what}; this list of a run's raw files is damaged: restore `_manifest/` from a backup")]
    BadRawIndex { path: PathBuf, what: String },
    #[error("star/{table}: Delta Lake {what} failed")]
    Delta {
        table: String,
        what: &'static str,
        #[source]
        source: Box<deltalake_core::DeltaTableError>,
    },
    #[error("the lake has {problems} problem(s), each listed above with the command that repairs it")]
    Damaged { problems: usize },
    #[error("{path}: cannot read Parquet batch")]
    ArrowRead {
        path: PathBuf,
        #[source]
        source: datafusion::arrow::error::ArrowError,
    },
}

impl LakeError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| LakeError::Io { op, path, source }
    }
}

/// The id of a raw file, a migration or a Parquet part: sha256 of the bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
