//! What each kind of run records besides its files, in its entry's `stats`:
//! a struct per kind, so a misspelt field does not compile, and an entry
//! whose stats hold a field this tunelake does not know is refused by name
//! when read (`deny_unknown_fields`) instead of read as a default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::manifest::{Accounting, RawFile, RunKind};

/// What a run of each kind records; see the module.
#[derive(Debug, Clone, PartialEq)]
pub enum RunStats {
    /// Ingest and reprocess runs.
    Ingest(IngestStats),
    Build(BuildStats),
    Sync(SyncStats),
    Vacuum(VacuumStats),
}

/// An ingest's or reprocess's figures: the files an export import reported,
/// and where a Web API pull got to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestStats {
    /// Per input file (Spotify exports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileReport>,
    /// The Web API user whose responses the run stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spotify_user: Option<String>,
    /// The cursor the next pull asks after, and the newest play stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spotify_cursor_after: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spotify_last_played_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spotify_gaps: Vec<Gap>,
    /// Why Spotify stopped the pull early, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Tracks, albums and artists looked up, and those Spotify no longer has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spotify_enriched: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spotify_not_found: Vec<String>,
}

/// A build's figures: what the next build compares with (the staging run
/// and model it built from, the month counts), and the match rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildStats {
    pub staging_run: u64,
    /// A fingerprint of the SQL and options the star was built with.
    pub model_hash: String,
    #[serde(default)]
    pub plays: u64,
    /// Sparkify plays matched to a song of the catalogue.
    #[serde(default)]
    pub matched: u64,
    #[serde(default)]
    pub duration_tolerance_s: f64,
    /// Duplicate plays dropped, by kind.
    #[serde(default)]
    pub duplicates: BTreeMap<String, u64>,
    #[serde(default)]
    pub months_computed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_months_because: Option<String>,
    /// Per month, the counts its computation gave; `None` for a build made
    /// before builds went month by month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub months: Option<BTreeMap<String, BTreeMap<String, i64>>>,
}

/// A sync's figures: which star version went where, and how much was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncStats {
    pub lake_version: u64,
    /// The database, without its password.
    pub target: String,
    #[serde(default)]
    pub parts_sent: u64,
    #[serde(default)]
    pub rows_sent: u64,
}

/// A vacuum's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VacuumStats {
    pub files_removed: u64,
    pub bytes_removed: u64,
}

/// One input file in an import report: what was read from it and what became of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReport {
    pub origin: String,
    pub kind: String,
    pub already_stored: bool,
    pub read: u64,
    pub kept: u64,
    pub plays: u64,
    pub rejected: u64,
    pub first: Option<String>,
    pub last: Option<String>,
}

impl FileReport {
    /// What became of the stored file `raw`, whose records `acc` counts.
    pub fn new(raw: &RawFile, acc: &Accounting, already_stored: bool) -> Self {
        FileReport {
            origin: raw.origin.clone(),
            kind: raw.kind.clone(),
            already_stored,
            read: acc.read,
            kept: acc.kept,
            plays: acc.plays,
            rejected: acc.rejected,
            first: acc.first.clone(),
            last: acc.last.clone(),
        }
    }
}

impl std::fmt::Display for FileReport {
    /// `read 5, imported 2, plays 2, rejected 3, <first> .. <last>`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.already_stored {
            return f.write_str("already stored");
        }
        write!(
            f,
            "read {}, imported {}, plays {}, rejected {}, {} .. {}",
            self.read,
            self.kept,
            self.plays,
            self.rejected,
            self.first.as_deref().unwrap_or("-"),
            self.last.as_deref().unwrap_or("-")
        )
    }
}

/// A stretch of time whose Web API plays may be lost: a full page that did
/// not reach back to the last stored play.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub user: String,
    /// The last play stored before (RFC 3339).
    pub from: String,
    /// The oldest play of the page that came next.
    pub to: String,
}

impl RunStats {
    /// Empty stats of a run of `kind`.
    pub fn of(kind: RunKind) -> Self {
        match kind {
            RunKind::Ingest | RunKind::Reprocess => RunStats::Ingest(IngestStats::default()),
            RunKind::Build => RunStats::Build(BuildStats::default()),
            RunKind::Sync => RunStats::Sync(SyncStats::default()),
            RunKind::Vacuum => RunStats::Vacuum(VacuumStats::default()),
        }
    }

    /// Reads an entry's `stats` (a JSON object, empty when the entry has none)
    /// as a run of `kind` records them.
    pub fn read(kind: RunKind, stats: serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        let value = serde_json::Value::Object(stats);
        let typed = match kind {
            RunKind::Ingest | RunKind::Reprocess => serde_json::from_value(value).map(RunStats::Ingest),
            RunKind::Build => serde_json::from_value(value).map(RunStats::Build),
            RunKind::Sync => serde_json::from_value(value).map(RunStats::Sync),
            RunKind::Vacuum => serde_json::from_value(value).map(RunStats::Vacuum),
        };
        typed.map_err(|e| format!("{kind} stats: {e}"))
    }

    /// Nothing to write: an ingest that recorded nothing beyond its files.
    pub fn is_empty(&self) -> bool {
        matches!(self, RunStats::Ingest(s) if *s == IngestStats::default())
    }

    pub fn ingest(&self) -> Option<&IngestStats> {
        match self {
            RunStats::Ingest(s) => Some(s),
            _ => None,
        }
    }

    pub fn build(&self) -> Option<&BuildStats> {
        match self {
            RunStats::Build(s) => Some(s),
            _ => None,
        }
    }

    pub fn sync(&self) -> Option<&SyncStats> {
        match self {
            RunStats::Sync(s) => Some(s),
            _ => None,
        }
    }

    pub fn vacuum(&self) -> Option<&VacuumStats> {
        match self {
            RunStats::Vacuum(s) => Some(s),
            _ => None,
        }
    }
}

impl Serialize for RunStats {
    /// As the kind's own struct: the entry's `kind` says which.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RunStats::Ingest(s) => s.serialize(serializer),
            RunStats::Build(s) => s.serialize(serializer),
            RunStats::Sync(s) => s.serialize(serializer),
            RunStats::Vacuum(s) => s.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::manifest::Run;

    #[test]
    fn stats_are_read_by_the_runs_kind_and_an_unknown_field_is_refused_by_name() {
        let entry = |kind: &str, stats: &str| {
            format!(
                r#"{{"id": 7, "kind": "{kind}", "started_at": "", "finished_at": "", "command": "c", "stats": {stats}}}"#
            )
        };
        let sync: Run =
            serde_json::from_str(&entry("sync", r#"{"lake_version": 5, "target": "db", "rows_sent": 9}"#)).unwrap();
        assert_eq!(
            sync.stats.sync(),
            Some(&SyncStats { lake_version: 5, target: "db".into(), parts_sent: 0, rows_sent: 9 })
        );
        assert_eq!(sync.stats.build(), None);
        let written = serde_json::to_string(&sync).unwrap();
        assert!(
            written.contains(r#""stats":{"lake_version":5,"target":"db","parts_sent":0,"rows_sent":9}"#),
            "{written}"
        );

        let err = serde_json::from_str::<Run>(&entry("build", r#"{"staging_run": 3, "model_hsh": "x"}"#)).unwrap_err();
        assert!(err.to_string().contains("run 7: build stats: unknown field `model_hsh`"), "{err}");
        let err = serde_json::from_str::<Run>(&entry("vacuum", r#"{"files_removed": 1}"#)).unwrap_err();
        assert!(err.to_string().contains("run 7: vacuum stats: missing field `bytes_removed`"), "{err}");

        // An ingest that recorded nothing writes no stats, and reads back the same.
        let ingest: Run =
            serde_json::from_str(r#"{"id": 1, "kind": "ingest", "started_at": "", "finished_at": "", "command": "c"}"#)
                .unwrap();
        assert!(ingest.stats.is_empty());
        assert!(!serde_json::to_string(&ingest).unwrap().contains("stats"));
    }
}
