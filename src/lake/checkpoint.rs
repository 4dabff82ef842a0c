//! The ledger's checkpoint: the lake's state as of a run, folded from every
//! entry up to it, so that loading the manifest reads one file and the few
//! entries after it instead of the whole history (`run --every 6h` commits
//! about 1,500 runs a year). Every [`CHECKPOINT_EVERY`] runs a commit writes
//! `_manifest/<run>.checkpoint.json`, then points `_manifest/_last_checkpoint`
//! at it; both atomically, after the run's entry. The entries stay: they are
//! the history (`query --as-of`, `vacuum`, `verify` read them), and the state
//! is a function of them, so a checkpoint can always be made again. The list
//! of raw indexes, which grows with every ingest, is a file of its own
//! (`<run>.checkpoint.raw.json`) that only what reads raw files loads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::manifest::{Accounting, MAX_REJECTS_KEPT, RawIndex, Reject, Run, RunKind, StagingFile};
use super::stats::{FileReport, Gap};
use super::{LakeError, Layout, fsio};

/// How many runs a commit lets pass before it writes a checkpoint.
pub const CHECKPOINT_EVERY: usize = 10;

/// A live staging file and the run that added it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveStaging {
    pub run: u64,
    #[serde(flatten)]
    pub file: StagingFile,
}

/// The newest cursor and stored play of one Spotify user's Web API pulls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpotifyCursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_played_ms: Option<i64>,
}

/// What every command reads of the ledger: the fold of the runs in order
/// ([`State::apply`]). Fields that say "since the last reprocess" describe
/// the live staging set, which a reprocess replaces.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// The last run folded in (0 for none); runs are numbered from 1 without gaps.
    pub run: u64,
    /// How many raw files are stored.
    pub raw_files: u64,
    pub staging: Vec<LiveStaging>,
    /// The last run that changed staging, and the last that replaced it whole.
    pub staging_run: u64,
    pub replaced_run: u64,
    /// The build that made the current star version, whole.
    pub last_build: Option<Run>,
    pub last_sync: Option<Run>,
    /// Per source and stream, since the last reprocess.
    pub accounting: Vec<Accounting>,
    /// The first [`MAX_REJECTS_KEPT`] rejects by name since the last reprocess.
    pub rejects: Vec<Reject>,
    /// The per-file import reports (`stats.files`) since the last reprocess.
    pub imported: Vec<FileReport>,
    pub spotify_gaps: Vec<Gap>,
    pub spotify_cursors: BTreeMap<String, SpotifyCursor>,
    pub spotify_not_found: BTreeSet<String>,
    /// The files of the version before the current one and of the version
    /// last synced, by sha256: with the current version's ([`State::parts`]),
    /// what a partition held when it was last sent, which the next sync
    /// compares with. Pruned at each checkpoint to files still there.
    pub previous_parts: BTreeMap<String, String>,
    pub synced_parts: BTreeMap<String, String>,
    /// Runs whose accounting does not add up, in words (for `verify`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bad_accounting: Vec<String>,
}

impl State {
    /// Folds one committed run in.
    pub fn apply(&mut self, run: &Run) {
        self.run = run.id;
        self.raw_files += run.raw_count();
        if let Some(change) = &run.staging {
            if change.replace {
                self.staging.clear();
                self.replaced_run = run.id;
            }
            self.staging.retain(|s| !change.removed.contains(&s.file.path));
            self.staging.extend(change.files.iter().map(|f| LiveStaging { run: run.id, file: f.clone() }));
            self.staging_run = run.id;
        }
        if run.star.is_some() {
            self.previous_parts = self.current_parts().map(|(sha, path)| (sha.into(), path.into())).collect();
            self.last_build = Some(run.clone());
        }
        if run.kind == RunKind::Sync {
            let version = run.stats.sync().map(|s| s.lake_version);
            if self.last_build.as_ref().and_then(|b| b.star.as_ref()).is_some_and(|s| Some(s.version) == version) {
                self.synced_parts = self.current_parts().map(|(sha, path)| (sha.into(), path.into())).collect();
            }
            self.last_sync = Some(run.clone());
        }
        self.fold_accounting(run);
        self.fold_spotify(run);
        for a in run.accounting.iter().filter(|a| !a.adds_up()) {
            self.bad_accounting.push(format!(
                "run {}: {} {} accounting does not add up (read {})",
                run.id, a.source, a.stream, a.read
            ));
        }
    }

    /// The accounting, rejects and import reports of the live staging set:
    /// the last reprocess's plus every ingest's after it.
    fn fold_accounting(&mut self, run: &Run) {
        if run.kind == RunKind::Reprocess {
            self.accounting.clear();
            self.rejects.clear();
            self.imported.clear();
        }
        if let Some(s) = run.stats.ingest() {
            self.imported.extend(s.files.iter().cloned());
        }
        if !matches!(run.kind, RunKind::Ingest | RunKind::Reprocess) {
            return;
        }
        let room = MAX_REJECTS_KEPT.saturating_sub(self.rejects.len());
        self.rejects.extend(run.rejects.iter().take(room).cloned());
        for a in &run.accounting {
            Accounting::of(&mut self.accounting, &a.source, &a.stream).add(a);
        }
        self.accounting.sort_by(|a, b| (&a.source, &a.stream).cmp(&(&b.source, &b.stream)));
        if run.kind == RunKind::Reprocess {
            // A reprocess reads every file again: none is "already stored" for it.
            for a in &mut self.accounting {
                a.files_already_stored = 0;
            }
        }
    }

    fn fold_spotify(&mut self, run: &Run) {
        let Some(s) = run.stats.ingest() else { return };
        if let Some(user) = &s.spotify_user {
            let c = self.spotify_cursors.entry(user.clone()).or_default();
            c.after = c.after.max(s.spotify_cursor_after);
            c.last_played_ms = c.last_played_ms.max(s.spotify_last_played_ms);
        }
        self.spotify_gaps.extend(s.spotify_gaps.iter().cloned());
        self.spotify_not_found.extend(s.spotify_not_found.iter().cloned());
    }

    /// Drops the star parts whose files are gone (vacuumed): nothing can be
    /// compared against them any more.
    pub fn prune_parts(&mut self, layout: &Layout) {
        self.previous_parts.retain(|_, path| layout.abs(path).is_file());
        self.synced_parts.retain(|_, path| layout.abs(path).is_file());
    }

    fn current_parts(&self) -> impl Iterator<Item = (&str, &str)> {
        let star = self.last_build.as_ref().and_then(|b| b.star.as_ref());
        star.into_iter().flat_map(|s| s.tables.values().flatten()).map(|p| (p.sha256.as_str(), p.path.as_str()))
    }

    /// The star files a sync may compare with, by sha256: the current
    /// version's, the one before it, and the one last synced. (A database
    /// further behind gets a changed partition whole.)
    pub fn parts(&self) -> BTreeMap<&str, &str> {
        let kept = self.previous_parts.iter().chain(&self.synced_parts).map(|(s, p)| (s.as_str(), p.as_str()));
        kept.chain(self.current_parts()).collect()
    }
}

/// Where the raw files are listed: the state's other half, read on first use.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RawState {
    pub indexes: Vec<RawIndex>,
}

impl RawState {
    pub fn apply(&mut self, run: &Run) {
        self.indexes.extend(run.raw_index.clone());
    }
}

/// A checkpoint's raw list: its file and sha256.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawRef {
    pub run: u64,
    pub sha256: String,
}

/// `_manifest/_last_checkpoint`: which checkpoint is current.
#[derive(Debug, Serialize, Deserialize)]
struct Pointer {
    run: u64,
    /// sha256 of the checkpoint file.
    sha256: String,
    /// sha256 of its raw list.
    raw_sha256: String,
}

fn pointer_path(layout: &Layout) -> PathBuf {
    layout.manifest_dir().join("_last_checkpoint")
}

pub fn checkpoint_path(layout: &Layout, run: u64) -> PathBuf {
    layout.manifest_dir().join(format!("{run:08}.checkpoint.json"))
}

fn raw_path(layout: &Layout, run: u64) -> PathBuf {
    layout.manifest_dir().join(format!("{run:08}.checkpoint.raw.json"))
}

/// The run of the current checkpoint, if there is one.
pub fn current(layout: &Layout) -> Option<u64> {
    let bytes = std::fs::read(pointer_path(layout)).ok()?;
    serde_json::from_slice::<Pointer>(&bytes).ok().map(|p| p.run)
}

/// Whether `name` (a file in `_manifest/`) is a checkpoint older than the
/// `current` one, which nothing reads any more (`vacuum` removes it).
pub fn is_superseded(name: &str, current: Option<u64>) -> bool {
    let stem = name.strip_suffix(".checkpoint.json").or_else(|| name.strip_suffix(".checkpoint.raw.json"));
    let run = stem.and_then(|r| r.parse::<u64>().ok());
    matches!((run, current), (Some(run), Some(current)) if run < current)
}

/// The checkpoint of `state` and `raw` to write after its run's entry: the
/// files' paths and bytes, in the order they are written (the pointer last).
pub fn encode(layout: &Layout, state: &State, raw: &RawState) -> [(PathBuf, Vec<u8>); 3] {
    let mut state = state.clone();
    state.prune_parts(layout);
    let bytes = serde_json::to_vec(&state).expect("a state serializes");
    let raw_bytes = serde_json::to_vec(raw).expect("a raw list serializes");
    let pointer =
        Pointer { run: state.run, sha256: super::sha256_hex(&bytes), raw_sha256: super::sha256_hex(&raw_bytes) };
    let pointer = serde_json::to_vec(&pointer).expect("a pointer serializes");
    [
        (checkpoint_path(layout, state.run), bytes),
        (raw_path(layout, state.run), raw_bytes),
        (pointer_path(layout), pointer),
    ]
}

/// The current checkpoint, if the lake has one it can use. A damaged one
/// is not an error: the entries hold the same state, and the caller reads
/// them all instead (the next commit writes a good checkpoint).
pub fn read(layout: &Layout) -> Result<Option<(State, RawRef)>, LakeError> {
    let path = pointer_path(layout);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LakeError::io("read", &path)(e)),
    };
    let damaged = |path: &std::path::Path, what: String| {
        tracing::warn!(path = %path.display(), "{what}: reading every ledger entry instead");
        Ok(None)
    };
    let pointer: Pointer = match serde_json::from_slice(&bytes) {
        Ok(p) => p,
        Err(e) => return damaged(&path, format!("not a checkpoint pointer ({e})")),
    };
    let path = checkpoint_path(layout, pointer.run);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return damaged(&path, "missing".into()),
        Err(e) => return Err(LakeError::io("read", &path)(e)),
    };
    let actual = super::sha256_hex(&bytes);
    if actual != pointer.sha256 {
        return damaged(&path, format!("sha256 {actual}, _last_checkpoint says {}", pointer.sha256));
    }
    if !raw_path(layout, pointer.run).is_file() {
        return damaged(&raw_path(layout, pointer.run), "missing".into());
    }
    match serde_json::from_slice(&bytes) {
        Ok(state) => Ok(Some((state, RawRef { run: pointer.run, sha256: pointer.raw_sha256 }))),
        Err(e) => damaged(&path, format!("not a checkpoint ({e})")),
    }
}

/// A checkpoint's raw list. Damage here is an error: the caller asked for raw files.
pub fn read_raw(layout: &Layout, r: &RawRef) -> Result<RawState, LakeError> {
    let path = raw_path(layout, r.run);
    let bytes = std::fs::read(&path).map_err(LakeError::io("read", &path))?;
    let actual = super::sha256_hex(&bytes);
    if actual != r.sha256 {
        return Err(LakeError::BadRawIndex {
            path,
            what: format!("checkpoint raw list has sha256 {actual}, _last_checkpoint says {}", r.sha256),
        });
    }
    serde_json::from_slice(&bytes).map_err(|source| LakeError::BadManifest { path, source })
}

/// Writes a checkpoint [`encode`] made, durably, checkpoint first.
pub fn write(files: &[(PathBuf, Vec<u8>); 3]) -> Result<(), LakeError> {
    for (path, bytes) in files {
        fsio::write_atomic(path, bytes)?;
    }
    Ok(())
}
