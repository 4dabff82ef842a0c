//! The ledger's checkpoint: the lake's state as of a run, folded from every
//! entry up to it, so that loading the manifest reads one file and the few
//! entries after it instead of the whole history (`run --every 6h` commits
//! about 1,500 runs a year). Every [`CHECKPOINT_EVERY`] runs a commit writes
//! `_manifest/<run>.checkpoint.json`, then points `_manifest/_last_checkpoint`
//! at it; both atomically, after the run's entry. The entries stay: they are
//! the history (`query --as-of`, `vacuum`, `verify` read them), and the state
//! is a function of them, so a checkpoint can always be made again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::manifest::{Accounting, MAX_REJECTS_KEPT, RawFile, RawIndex, Reject, Run, RunKind, StagingFile};
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
    /// The last run folded in (0 for none), and how many runs that is.
    pub run: u64,
    pub runs: u64,
    /// Raw files listed inline by entries written before raw indexes existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub raw_inline: Vec<RawFile>,
    pub raw_indexes: Vec<RawIndex>,
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
    pub imported: Vec<serde_json::Value>,
    pub spotify_gaps: Vec<serde_json::Value>,
    pub spotify_cursors: BTreeMap<String, SpotifyCursor>,
    pub spotify_not_found: BTreeSet<String>,
    /// Every star part file a build named, by sha256: what a partition held
    /// when it was last synced. Pruned at each checkpoint to files still there.
    pub parts: BTreeMap<String, String>,
    /// Runs whose accounting does not add up, in words (for `verify`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bad_accounting: Vec<String>,
}

impl State {
    /// Folds one committed run in.
    pub fn apply(&mut self, run: &Run) {
        self.run = run.id;
        self.runs += 1;
        self.raw_inline.extend(run.raw.iter().cloned());
        self.raw_indexes.extend(run.raw_index.clone());
        if let Some(change) = &run.staging {
            if change.replace {
                self.staging.clear();
                self.replaced_run = run.id;
            }
            self.staging.extend(change.files.iter().map(|f| LiveStaging { run: run.id, file: f.clone() }));
            self.staging_run = run.id;
        }
        if let Some(star) = &run.star {
            self.parts.extend(star.tables.values().flatten().map(|p| (p.sha256.clone(), p.path.clone())));
            self.last_build = Some(run.clone());
        }
        if run.kind == RunKind::Sync {
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
        if let Some(files) = run.stats.get("files").and_then(|f| f.as_array()) {
            self.imported.extend(files.iter().cloned());
        }
        if !matches!(run.kind, RunKind::Ingest | RunKind::Reprocess) {
            return;
        }
        let room = MAX_REJECTS_KEPT.saturating_sub(self.rejects.len());
        self.rejects.extend(run.rejects.iter().take(room).cloned());
        for a in &run.accounting {
            match self.accounting.iter_mut().find(|b| b.source == a.source && b.stream == a.stream) {
                Some(b) => b.add(a),
                None => {
                    let mut b = Accounting::new(&a.source, &a.stream);
                    b.add(a);
                    self.accounting.push(b);
                }
            }
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
        let stat = |k: &str| run.stats.get(k);
        if let Some(user) = stat("spotify_user").and_then(|v| v.as_str()) {
            let c = self.spotify_cursors.entry(user.to_string()).or_default();
            c.after = c.after.max(stat("spotify_cursor_after").and_then(|v| v.as_i64()));
            c.last_played_ms = c.last_played_ms.max(stat("spotify_last_played_ms").and_then(|v| v.as_i64()));
        }
        if let Some(gaps) = stat("spotify_gaps").and_then(|g| g.as_array()) {
            self.spotify_gaps.extend(gaps.iter().cloned());
        }
        if let Some(missing) = stat("spotify_not_found").and_then(|v| v.as_array()) {
            self.spotify_not_found.extend(missing.iter().filter_map(|m| m.as_str()).map(String::from));
        }
    }

    /// Drops the star parts whose files are gone (vacuumed): nothing can be
    /// compared against them any more.
    pub fn prune_parts(&mut self, layout: &Layout) {
        self.parts.retain(|_, path| layout.abs(path).is_file());
    }
}

/// `_manifest/_last_checkpoint`: which checkpoint is current.
#[derive(Debug, Serialize, Deserialize)]
struct Pointer {
    run: u64,
    /// sha256 of the checkpoint file.
    sha256: String,
}

fn pointer_path(layout: &Layout) -> PathBuf {
    layout.manifest_dir().join("_last_checkpoint")
}

pub fn checkpoint_path(layout: &Layout, run: u64) -> PathBuf {
    layout.manifest_dir().join(format!("{run:08}.checkpoint.json"))
}

/// Whether `name` (a file in `_manifest/`) is a checkpoint older than the
/// current one, which nothing reads any more (`vacuum` removes it).
pub fn is_superseded(layout: &Layout, name: &str) -> bool {
    let Some(run) = name.strip_suffix(".checkpoint.json").and_then(|r| r.parse::<u64>().ok()) else {
        return false;
    };
    let current = std::fs::read(pointer_path(layout)).ok().and_then(|b| serde_json::from_slice::<Pointer>(&b).ok());
    current.is_some_and(|p| run < p.run)
}

/// The checkpoint of `state` to write after its run's entry: the two files'
/// paths and bytes, in the order they are written.
pub fn encode(layout: &Layout, state: &State) -> [(PathBuf, Vec<u8>); 2] {
    let mut state = state.clone();
    state.prune_parts(layout);
    let bytes = serde_json::to_vec(&state).expect("a state serializes");
    let pointer = Pointer { run: state.run, sha256: super::sha256_hex(&bytes) };
    let pointer = serde_json::to_vec(&pointer).expect("a pointer serializes");
    [(checkpoint_path(layout, state.run), bytes), (pointer_path(layout), pointer)]
}

/// The current checkpoint, if the lake has one it can use. A damaged one
/// is not an error: the entries hold the same state, and the caller reads
/// them all instead (the next commit writes a good checkpoint).
pub fn read(layout: &Layout) -> Result<Option<State>, LakeError> {
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
    match serde_json::from_slice(&bytes) {
        Ok(state) => Ok(Some(state)),
        Err(e) => damaged(&path, format!("not a checkpoint ({e})")),
    }
}

/// Writes a checkpoint [`encode`] made, durably, checkpoint first.
pub fn write(files: &[(PathBuf, Vec<u8>); 2]) -> Result<(), LakeError> {
    for (path, bytes) in files {
        fsio::write_atomic(path, bytes)?;
    }
    Ok(())
}
