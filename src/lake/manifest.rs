//! The runs ledger: `_manifest/<run>.json`, one file per committed run,
//! written last and atomically. A run that has no entry never happened; the
//! files it left are debris. The lake's state (which raw files are stored,
//! which staging files are live, the current star version) is the fold of
//! the entries in run order.
//!
//! The raw files a run stored are listed beside its entry, in
//! `_manifest/<run>.raw.ndjson` (one file per line), which the entry names
//! with its sha256. Most commands never need that list (build, sync, query),
//! so loading the manifest does not read it: it grows with every file ever
//! ingested, where the entries grow with the runs.
//!
//! Loading does not read every entry either: a checkpoint every few runs
//! holds the fold of the entries before it ([`super::checkpoint`]).

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use super::checkpoint::{self, CHECKPOINT_EVERY, RawRef, RawState, State};
use super::stats::RunStats;
use super::{LakeError, Layout, fsio};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    Ingest,
    Build,
    Reprocess,
    Sync,
    Vacuum,
}

impl std::fmt::Display for RunKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            RunKind::Ingest => "ingest",
            RunKind::Build => "build",
            RunKind::Reprocess => "reprocess",
            RunKind::Sync => "sync",
            RunKind::Vacuum => "vacuum",
        };
        f.write_str(s)
    }
}

/// A raw file as stored: its id is the sha256 of its bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawFile {
    pub sha256: String,
    /// Relative to the lake root.
    pub path: String,
    pub source: String,
    /// What the bytes are, for the parser: `song`, `log`, ...
    pub kind: String,
    /// Where it came from (the path inside the ingested folder or zip).
    pub origin: String,
    pub bytes: u64,
    /// Whose history the file is, when its records do not say (Spotify exports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Set for a small file stored in its run's pack: `path` is the pack and
    /// the file is its `bytes` bytes from here ([`super::raw`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// Where a run's list of raw files is: `_manifest/<run>.raw.ndjson`, written
/// before the entry that names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawIndex {
    /// Relative to the lake root.
    pub path: String,
    pub files: u64,
    /// The raw files' bytes, summed.
    pub bytes: u64,
    /// sha256 of the index file itself.
    pub sha256: String,
    /// The same files' sha256 alone, one per line in the index's order
    /// (`_manifest/<run>.raw.sha256`): what ingest reads to skip files
    /// already stored, a fifth of the index's bytes.
    pub digests: Digests,
}

/// A run's list of raw file digests ([`RawIndex::digests`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    /// Relative to the lake root.
    pub path: String,
    /// sha256 of the list itself.
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagingFile {
    pub table: String,
    pub path: String,
    pub rows: u64,
    /// The rows are in the table's order ([`super::staging::order_of`]),
    /// which lets `build` skip sorting them. Files staged before tunelake sorted
    /// staging say nothing, and are sorted when read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sorted: bool,
}

/// Staging files a run added, or (`replace`) the whole new set of staging.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StagingChange {
    pub replace: bool,
    pub files: Vec<StagingFile>,
    /// Live files the run's files replace: their rows are in a file it
    /// added, which merged them (staging compaction, at ingest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

/// One file of a star table version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StarPart {
    /// `year=YYYY/month=MM`, or `None` for an unpartitioned table.
    pub partition: Option<String>,
    pub path: String,
    pub rows: u64,
    /// sha256 of the file's bytes: equal content, equal hash (builds are deterministic).
    pub sha256: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StarVersion {
    pub version: u64,
    pub tables: BTreeMap<String, Vec<StarPart>>,
    /// The Delta version of each star table that holds exactly these parts
    /// ([`super::delta`]). Empty for a version built before the star was Delta.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub delta: BTreeMap<String, u64>,
}

/// Where every record of a source went, for one stream of one run.
/// `read = plays + Σ filtered + rejected` (events) or `read = kept + rejected`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accounting {
    pub source: String,
    pub stream: String,
    pub files: u64,
    pub files_already_stored: u64,
    /// Files that could not be read (a symlink that loops, or points nowhere):
    /// each is a reject naming the file, and the rest of the source loads.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub files_unreadable: u64,
    pub read: u64,
    pub kept: u64,
    pub plays: u64,
    pub filtered: BTreeMap<String, u64>,
    pub rejected: u64,
    /// Values kept as their text where the source gave a number for a text
    /// field (a song file's `"artist_name": 112`): data, not an error.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub as_text: u64,
    /// Records kept with U+0000 removed from a text value (valid JSON
    /// `"\u0000"`, which PostgreSQL's text cannot hold); each is named in
    /// the run's rejects with `kept`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nul_removed: u64,
    /// The earliest and latest time among the kept records (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
}

impl Accounting {
    pub fn new(source: &str, stream: &str) -> Self {
        Accounting { source: source.into(), stream: stream.into(), ..Default::default() }
    }

    pub fn add(&mut self, other: &Accounting) {
        self.files += other.files;
        self.files_already_stored += other.files_already_stored;
        self.files_unreadable += other.files_unreadable;
        self.read += other.read;
        self.kept += other.kept;
        self.plays += other.plays;
        self.rejected += other.rejected;
        self.as_text += other.as_text;
        self.nul_removed += other.nul_removed;
        for (k, v) in &other.filtered {
            *self.filtered.entry(k.clone()).or_default() += v;
        }
        // RFC 3339 UTC strings of one format order as the times do.
        self.first = [self.first.take(), other.first.clone()].into_iter().flatten().min();
        self.last = [self.last.take(), other.last.clone()].into_iter().flatten().max();
    }

    /// The entry of `source` and `stream` in `list`, added empty when missing.
    pub fn of<'a>(list: &'a mut Vec<Accounting>, source: &str, stream: &str) -> &'a mut Accounting {
        match list.iter().position(|a| a.source == source && a.stream == stream) {
            Some(i) => &mut list[i],
            None => {
                list.push(Accounting::new(source, stream));
                list.last_mut().expect("just pushed")
            }
        }
    }

    pub fn filtered_total(&self) -> u64 {
        self.filtered.values().sum()
    }

    /// `read = plays + filtered + rejected` for events, `read = kept + rejected` otherwise.
    pub fn adds_up(&self) -> bool {
        if self.stream == "events" {
            self.read == self.plays + self.filtered_total() + self.rejected
        } else {
            self.read == self.kept + self.rejected
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A rejected record: which file, which line, why. Or, with `kept`, a record
/// kept after a change the reason names (U+0000 removed from a value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    pub file: String,
    pub line: u64,
    pub reason: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kept: bool,
}

impl Reject {
    pub fn new(file: impl Into<String>, line: u64, reason: impl Into<String>) -> Self {
        Reject { file: file.into(), line, reason: reason.into(), kept: false }
    }

    /// U+0000 removed from the values at `paths` of a record that was kept.
    pub fn nul_removed(file: impl Into<String>, line: u64, paths: &[impl AsRef<str>]) -> Self {
        let paths: Vec<&str> = paths.iter().map(AsRef::as_ref).collect();
        let reason = format!("U+0000 removed from {} (the record was kept)", paths.join(", "));
        Reject { file: file.into(), line, reason, kept: true }
    }

    /// What happened to the record: "rejected", or "changed" when it was kept.
    pub fn outcome(&self) -> &'static str {
        if self.kept { "changed" } else { "rejected" }
    }
}

/// The number of rejects kept by name in one entry; the count is always exact.
pub const MAX_REJECTS_KEPT: usize = 1000;

/// One committed run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RunEntry")]
pub struct Run {
    pub id: u64,
    pub kind: RunKind,
    pub started_at: String,
    pub finished_at: String,
    pub command: String,
    /// The raw files this run stores, until [`Manifest::commit`] moves them
    /// to the run's raw index.
    #[serde(skip)]
    pub raw: Vec<RawFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_index: Option<RawIndex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging: Option<StagingChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub star: Option<StarVersion>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounting: Vec<Accounting>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejects: Vec<Reject>,
    /// Figures worth keeping that are specific to the run's kind (match rate, rows sent).
    #[serde(skip_serializing_if = "RunStats::is_empty")]
    pub stats: RunStats,
}

/// A run as its entry spells it, the stats still untyped: [`Run`] is read
/// through it, so its stats are read as its kind records them ([`RunStats::read`]).
#[derive(Deserialize)]
struct RunEntry {
    id: u64,
    kind: RunKind,
    started_at: String,
    finished_at: String,
    command: String,
    #[serde(default)]
    raw_index: Option<RawIndex>,
    #[serde(default)]
    staging: Option<StagingChange>,
    #[serde(default)]
    star: Option<StarVersion>,
    #[serde(default)]
    accounting: Vec<Accounting>,
    #[serde(default)]
    rejects: Vec<Reject>,
    #[serde(default)]
    stats: serde_json::Map<String, serde_json::Value>,
}

impl TryFrom<RunEntry> for Run {
    type Error = String;

    fn try_from(e: RunEntry) -> Result<Self, String> {
        let stats = RunStats::read(e.kind, e.stats).map_err(|why| format!("run {}: {why}", e.id))?;
        Ok(Run {
            id: e.id,
            kind: e.kind,
            started_at: e.started_at,
            finished_at: e.finished_at,
            command: e.command,
            raw: vec![],
            raw_index: e.raw_index,
            staging: e.staging,
            star: e.star,
            accounting: e.accounting,
            rejects: e.rejects,
            stats,
        })
    }
}

impl Run {
    pub fn new(id: u64, kind: RunKind, command: &str, started_at: String) -> Self {
        Run {
            id,
            kind,
            started_at,
            finished_at: String::new(),
            command: command.into(),
            raw: vec![],
            raw_index: None,
            staging: None,
            star: None,
            accounting: vec![],
            rejects: vec![],
            stats: RunStats::of(kind),
        }
    }

    /// The files this (uncommitted) run wrote, relative to the lake root: its
    /// raw files (a pack once), its staging files, and the parts of its star
    /// version that `previous` (the current one) does not name.
    fn written<'a>(&'a self, previous: Option<&'a StarVersion>) -> impl Iterator<Item = &'a str> {
        let before: HashSet<&str> =
            previous.iter().flat_map(|s| s.tables.values().flatten()).map(|p| p.path.as_str()).collect();
        let star = self.star.iter().flat_map(|s| s.tables.values().flatten()).map(|p| p.path.as_str());
        let raw = self.raw.iter().map(|r| r.path.as_str());
        let staging = self.staging.iter().flat_map(|c| &c.files).map(|f| f.path.as_str());
        raw.chain(staging).chain(star.filter(move |p| !before.contains(p)))
    }

    /// How many raw files the run stored.
    pub fn raw_count(&self) -> u64 {
        self.raw.len() as u64 + self.raw_index.as_ref().map_or(0, |i| i.files)
    }
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The committed runs and the state they add up to.
#[derive(Debug)]
pub struct Manifest {
    /// The fold of every committed run.
    state: State,
    /// The runs after the last checkpoint, in order (every run when the lake has none).
    tail: Vec<Run>,
    /// The last checkpoint's raw list, and (on first use) that list with the tail's.
    raw_base: Option<RawRef>,
    raw_state: OnceLock<RawState>,
    layout: Layout,
    /// Every raw file stored, read from the runs' raw indexes on first use.
    raw: OnceLock<Vec<RawFile>>,
    /// The last run's commit, when it is still being made durable on a
    /// thread of its own ([`Manifest::commit_behind`]).
    behind: Mutex<Option<std::thread::JoinHandle<Result<(), LakeError>>>>,
}

/// A copy of the runs; the raw file index is read again on first use.
/// Made after a [`Manifest::commit_behind`], it does not wait for that commit.
impl Clone for Manifest {
    fn clone(&self) -> Self {
        let m = Manifest::new(self.layout.clone(), self.state.clone(), self.raw_base.clone(), self.tail.clone());
        if let Some(raw) = self.raw_state.get() {
            m.raw_state.get_or_init(|| raw.clone());
        }
        m
    }
}

/// Waits for a commit still being made durable; its error can only be logged here.
impl Drop for Manifest {
    fn drop(&mut self) {
        if let Err(e) = self.settle() {
            tracing::error!(error = %e, "a run's commit failed: the lake is as before that run");
        }
    }
}

/// When a commit is durable (see [`Manifest::commit_behind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// When the call that commits returns.
    Wait,
    /// Later, on a thread of its own, while the caller goes on.
    Behind,
}

/// What makes a run's commit durable, in order: the files it wrote, its raw
/// index (when it stored raw files), its entry, which names them all, then
/// the checkpoint, when one is due.
struct Durable {
    root: PathBuf,
    files: Vec<String>,
    /// The ledger's format ([`super::upgrade::FORMAT`]), with a lake's first commit.
    format: Option<(PathBuf, Vec<u8>)>,
    raw_index: Option<[(PathBuf, Vec<u8>); 2]>,
    entry: (PathBuf, Vec<u8>),
    checkpoint: Option<[(PathBuf, Vec<u8>); 3]>,
}

impl Durable {
    fn write(self) -> Result<(), LakeError> {
        fsio::sync_files(&self.root, self.files.iter().map(String::as_str))?;
        for (path, bytes) in self.format.iter().chain(self.raw_index.iter().flatten()) {
            fsio::write_atomic(path, bytes)?;
        }
        fsio::write_atomic(&self.entry.0, &self.entry.1)?;
        self.checkpoint.as_ref().map_or(Ok(()), checkpoint::write)
    }
}

impl Manifest {
    /// Reads the ledger: the last checkpoint and the entries after it, or
    /// every entry when there is no checkpoint. A missing lake is an empty manifest.
    pub fn load(layout: &Layout) -> Result<Self, LakeError> {
        upgrade_if_needed(layout)?;
        let Some((state, raw)) = checkpoint::read(layout)? else { return Manifest::replay(layout) };
        // Runs are numbered without gaps: the entries after the checkpoint are
        // the next ids, up to the first that is not there.
        let mut m = Manifest::new(layout.clone(), state, Some(raw), vec![]);
        while let Some(run) = read_entry(layout, m.next_run_id())? {
            m.fold(run);
        }
        Ok(m)
    }

    /// Reads every entry, ignoring the checkpoint (what `verify` compares it with).
    pub fn replay(layout: &Layout) -> Result<Self, LakeError> {
        upgrade_if_needed(layout)?;
        let mut m = Manifest::new(layout.clone(), State::default(), None, vec![]);
        for id in entry_ids(layout)? {
            m.fold(read_entry(layout, id)?.ok_or_else(|| vanished(layout, id))?);
        }
        Ok(m)
    }

    fn fold(&mut self, run: Run) {
        self.state.apply(&run);
        self.tail.push(run);
    }

    pub fn next_run_id(&self) -> u64 {
        self.state.run + 1
    }

    /// How many runs were committed.
    pub fn run_count(&self) -> u64 {
        self.state.run
    }

    /// What the runs add up to.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The last `n` runs, oldest first; those before the last checkpoint are read from their entries.
    pub fn recent(&self, n: usize) -> Result<Vec<Run>, LakeError> {
        self.settle()?;
        let first = self.next_run_id().saturating_sub(n as u64).max(1);
        let from_disk = first..self.tail.first().map_or(self.next_run_id(), |r| r.id);
        let mut runs = vec![];
        for id in from_disk {
            runs.extend(read_entry(&self.layout, id)?);
        }
        runs.extend(self.tail.iter().filter(|r| r.id >= first).cloned());
        Ok(runs)
    }

    /// Every committed run, oldest first, read from the entries: for what
    /// needs the history rather than the state (`query --as-of`, `vacuum`).
    pub fn history(&self) -> Result<Vec<Run>, LakeError> {
        self.settle()?;
        let before = self.tail.first().map_or(self.next_run_id(), |r| r.id);
        let mut runs = vec![];
        for id in entry_ids(&self.layout)?.into_iter().filter(|id| *id < before) {
            runs.push(read_entry(&self.layout, id)?.ok_or_else(|| vanished(&self.layout, id))?);
        }
        runs.extend(self.tail.iter().cloned());
        Ok(runs)
    }

    fn new(layout: Layout, state: State, raw_base: Option<RawRef>, tail: Vec<Run>) -> Self {
        let (raw, raw_state, behind) = (OnceLock::new(), OnceLock::new(), Mutex::new(None));
        Manifest { state, tail, raw_base, raw_state, layout, raw, behind }
    }

    /// Where every raw file is listed: the checkpoint's list (read now, the
    /// first time) and the runs' after it.
    fn raw_state(&self) -> Result<&RawState, LakeError> {
        if let Some(r) = self.raw_state.get() {
            return Ok(r);
        }
        let mut r = match &self.raw_base {
            Some(base) => checkpoint::read_raw(&self.layout, base)?,
            None => RawState::default(),
        };
        for run in &self.tail {
            r.apply(run);
        }
        Ok(self.raw_state.get_or_init(|| r))
    }

    /// Commits a run: after this returns, the run happened.
    pub fn commit(&mut self, layout: &Layout, run: Run) -> Result<(), LakeError> {
        self.commit_now(layout, run, false)
    }

    /// Makes the files `run` wrote durable ahead of its commit, for a run
    /// that names them elsewhere first (a build's Delta commits).
    pub fn sync_written(&self, layout: &Layout, run: &Run) -> Result<(), LakeError> {
        self.settle()?;
        fsio::sync_files(layout.root(), run.written(self.star()))
    }

    /// Commits a run whose files [`Manifest::sync_written`] made durable.
    pub fn commit_synced(&mut self, layout: &Layout, run: Run) -> Result<(), LakeError> {
        self.commit_now(layout, run, true)
    }

    fn commit_now(&mut self, layout: &Layout, run: Run, files_synced: bool) -> Result<(), LakeError> {
        self.settle()?;
        let (run, raw, state, raw_state, mut durable) = self.prepare(layout, run)?;
        if files_synced {
            durable.files.clear();
        }
        durable.write()?;
        self.remember(run, raw, state, raw_state);
        Ok(())
    }

    /// Commits a run whose files are made durable on a thread of its own,
    /// while the caller goes on (`tunelake run` builds meanwhile). The run is in this manifest at
    /// once; it happened once [`Manifest::settle`] returns, which the next
    /// commit, every read of the lake's raw indexes, and dropping the
    /// manifest wait for. A crash before that leaves the lake as before the
    /// run, and nothing committed after it either. After an error from
    /// `settle`, this manifest holds a run the lake does not: load it again.
    pub fn commit_behind(&mut self, layout: &Layout, run: Run) -> Result<(), LakeError> {
        self.settle()?;
        let (run, raw, state, raw_state, durable) = self.prepare(layout, run)?;
        let thread = std::thread::Builder::new()
            .name("tunelake-commit".into())
            .spawn(move || durable.write())
            .map_err(|source| LakeError::Io { op: "start a thread to commit", path: layout.root().into(), source })?;
        *self.behind.lock().expect("commit lock") = Some(thread);
        self.remember(run, raw, state, raw_state);
        Ok(())
    }

    /// Waits for the commit [`Manifest::commit_behind`] left going, if any; its error.
    pub fn settle(&self) -> Result<(), LakeError> {
        let thread = self.behind.lock().expect("commit lock").take();
        match thread {
            Some(thread) => thread.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
            None => Ok(()),
        }
    }

    /// `run` as committed, its raw files, the state after it (with the raw
    /// list when a checkpoint is due), and what makes it durable.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        layout: &Layout,
        mut run: Run,
    ) -> Result<(Run, Vec<RawFile>, State, Option<(RawState, RawRef)>, Durable), LakeError> {
        // Every file the run wrote is durable before the entry that names it.
        let files = run.written(self.star()).map(str::to_string).collect();
        run.finished_at = now_rfc3339();
        let raw = std::mem::take(&mut run.raw);
        let raw_index = (!raw.is_empty()).then(|| {
            let (index, files) = encode_raw_index(layout, run.id, &raw);
            run.raw_index = Some(index);
            files
        });
        let entry = (layout.run_entry(run.id), serde_json::to_vec_pretty(&run).expect("a run serializes"));
        let mut state = self.state.clone();
        state.apply(&run);
        let (mut raw_state, mut checkpoint) = (None, None);
        if self.tail.len() + 1 >= CHECKPOINT_EVERY {
            let mut r = self.raw_state()?.clone();
            r.apply(&run);
            let files = checkpoint::encode(layout, &state, &r);
            raw_state = Some((r, RawRef { run: state.run, sha256: super::sha256_hex(&files[1].1) }));
            checkpoint = Some(files);
        }
        let format = (run.id == 1).then(|| super::upgrade::format_file(layout));
        let durable = Durable { root: layout.root().to_path_buf(), files, format, raw_index, entry, checkpoint };
        Ok((run, raw, state, raw_state, durable))
    }

    /// Takes a committed run in; `checkpointed` is the raw list when its commit wrote a checkpoint.
    fn remember(&mut self, run: Run, raw: Vec<RawFile>, state: State, checkpointed: Option<(RawState, RawRef)>) {
        if let Some(all) = self.raw.get_mut() {
            all.extend(raw);
        }
        match checkpointed {
            Some((raw_state, raw_ref)) => {
                self.tail.clear();
                self.raw_base = Some(raw_ref);
                self.raw_state = OnceLock::from(raw_state);
            }
            None => {
                if let Some(r) = self.raw_state.get_mut() {
                    r.apply(&run);
                }
                self.tail.push(run);
            }
        }
        self.state = state;
    }

    /// Every raw file stored, in commit order. The first call reads the raw
    /// indexes (tens of MB for a long history); later calls reuse what it read.
    pub fn raw_files(&self) -> Result<&[RawFile], LakeError> {
        if let Some(all) = self.raw.get() {
            return Ok(all);
        }
        self.settle()?;
        let mut all = vec![];
        for index in &self.raw_state()?.indexes {
            all.extend(read_raw_index(&self.layout, index)?);
        }
        Ok(self.raw.get_or_init(|| all))
    }

    /// The sha256 of every raw file stored, from each run's digest list
    /// rather than its raw index.
    pub fn raw_shas(&self) -> Result<HashSet<String>, LakeError> {
        self.settle()?;
        if let Some(all) = self.raw.get() {
            return Ok(all.iter().map(|f| f.sha256.clone()).collect());
        }
        let mut shas: HashSet<String> = HashSet::with_capacity(self.raw_count() as usize);
        for index in &self.raw_state()?.indexes {
            read_digests(&self.layout, index, &mut shas)?;
        }
        Ok(shas)
    }

    /// How many raw files are stored (without reading a raw index).
    pub fn raw_count(&self) -> u64 {
        self.state.raw_files
    }

    /// The live staging files of `table`.
    pub fn staging_files(&self, table: &str) -> Vec<&StagingFile> {
        self.state.staging.iter().map(|s| &s.file).filter(|f| f.table == table).collect()
    }

    /// The live staging files that runs after `run` added.
    pub fn staged_after(&self, run: u64) -> HashSet<&str> {
        self.state.staging.iter().filter(|s| s.run > run).map(|s| s.file.path.as_str()).collect()
    }

    /// The id of the last run that changed staging (0 if none).
    pub fn staging_run(&self) -> u64 {
        self.state.staging_run
    }

    /// The current star version, if anything was built.
    pub fn star(&self) -> Option<&StarVersion> {
        self.last_build().and_then(|r| r.star.as_ref())
    }

    /// The build that made the current star version.
    pub fn last_build(&self) -> Option<&Run> {
        self.state.last_build.as_ref()
    }

    /// The last sync.
    pub fn last_sync(&self) -> Option<&Run> {
        self.state.last_sync.as_ref()
    }

    /// Every path any committed run still names (raw, live staging, current star).
    pub fn live_paths(&self) -> Result<HashSet<String>, LakeError> {
        let mut live: HashSet<String> = self.raw_files()?.iter().map(|f| f.path.clone()).collect();
        for index in &self.raw_state()?.indexes {
            live.insert(index.path.clone());
            live.insert(index.digests.path.clone());
        }
        live.extend(self.state.staging.iter().map(|s| s.file.path.clone()));
        if let Some(star) = self.star() {
            for parts in star.tables.values() {
                live.extend(parts.iter().map(|p| p.path.clone()));
            }
        }
        Ok(live)
    }
}

/// Upgrades a lake an earlier tunelake wrote before reading it
/// ([`super::upgrade`]); taking the writer's lock does it.
fn upgrade_if_needed(layout: &Layout) -> Result<(), LakeError> {
    if super::upgrade::needed(layout)? {
        super::LakeLock::acquire(layout, "upgrade")?;
    }
    Ok(())
}

/// The ids of every committed entry (`NNNNNNNN.json`), in order.
pub(super) fn entry_ids(layout: &Layout) -> Result<Vec<u64>, LakeError> {
    let dir = layout.manifest_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(LakeError::io("list", &dir)(e)),
    };
    let mut ids = vec![];
    for entry in entries {
        let entry = entry.map_err(LakeError::io("list", &dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Only `NNNNNNNN.json` is an entry; temp files are debris.
        if let Some(stem) = name.strip_suffix(".json")
            && stem.len() == 8
            && stem.bytes().all(|b| b.is_ascii_digit())
        {
            ids.push(stem.parse::<u64>().expect("eight digits parse"));
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Run `id`'s entry, or `None` if it has none.
fn read_entry(layout: &Layout, id: u64) -> Result<Option<Run>, LakeError> {
    let path = layout.run_entry(id);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LakeError::io("read", &path)(e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|source| LakeError::BadManifest { path, source })
}

fn vanished(layout: &Layout, id: u64) -> LakeError {
    let path = layout.run_entry(id);
    LakeError::io("read", &path)(std::io::Error::new(std::io::ErrorKind::NotFound, "the entry vanished while read"))
}

/// Writes `_manifest/<run>.raw.ndjson`, one raw file per line, durably.
/// A run's raw index and digest list: their entry in the run, and the two
/// files to write (absolute path, bytes).
pub(super) fn encode_raw_index(layout: &Layout, run: u64, raw: &[RawFile]) -> (RawIndex, [(PathBuf, Vec<u8>); 2]) {
    let mut bytes = Vec::with_capacity(raw.len() * 300);
    for f in raw {
        serde_json::to_writer(&mut bytes, f).expect("a raw file serializes");
        bytes.push(b'\n');
    }
    let mut digests = Vec::with_capacity(raw.len() * 65);
    for f in raw {
        digests.extend_from_slice(f.sha256.as_bytes());
        digests.push(b'\n');
    }
    let (rel, digests_rel) = (Layout::raw_index_rel(run), Layout::raw_digests_rel(run));
    let index = RawIndex {
        path: rel.clone(),
        files: raw.len() as u64,
        bytes: raw.iter().map(|f| f.bytes).sum(),
        sha256: super::sha256_hex(&bytes),
        digests: Digests { path: digests_rel.clone(), sha256: super::sha256_hex(&digests) },
    };
    (index, [(layout.abs(&rel), bytes), (layout.abs(&digests_rel), digests)])
}

/// Adds the digests of `index`'s raw files to `shas`, from its digest list.
fn read_digests(layout: &Layout, index: &RawIndex, shas: &mut HashSet<String>) -> Result<(), LakeError> {
    let digests = &index.digests;
    let path = layout.abs(&digests.path);
    let bytes = fs::read(&path).map_err(LakeError::io("read", &path))?;
    let bad = |what: String| LakeError::BadRawIndex { path: path.clone(), what };
    let actual = super::sha256_hex(&bytes);
    if actual != digests.sha256 {
        return Err(bad(format!("digest list has sha256 {actual}, its manifest entry says {}", digests.sha256)));
    }
    let text = std::str::from_utf8(&bytes).map_err(|e| bad(format!("digest list is not text: {e}")))?;
    let mut lines = 0;
    for line in text.lines() {
        shas.insert(line.to_string());
        lines += 1;
    }
    if lines != index.files {
        return Err(bad(format!("digest list has {lines} lines, its manifest entry says {} files", index.files)));
    }
    Ok(())
}

fn read_raw_index(layout: &Layout, index: &RawIndex) -> Result<Vec<RawFile>, LakeError> {
    read_raw_index_file(layout, &index.path, &index.sha256, index.files)
}

/// The raw index at `rel`, which its entry says has `sha256` and lists `files` files.
pub(super) fn read_raw_index_file(
    layout: &Layout,
    rel: &str,
    sha256: &str,
    files: u64,
) -> Result<Vec<RawFile>, LakeError> {
    let path = layout.abs(rel);
    let bytes = fs::read(&path).map_err(LakeError::io("read", &path))?;
    let actual = super::sha256_hex(&bytes);
    if actual != sha256 {
        return Err(LakeError::BadRawIndex {
            path,
            what: format!("raw index has sha256 {actual}, its manifest entry says {sha256}"),
        });
    }
    let mut raw = Vec::with_capacity(files as usize);
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        raw.push(serde_json::from_slice(line).map_err(|source| LakeError::BadManifest { path: path.clone(), source })?);
    }
    if raw.len() as u64 != files {
        return Err(LakeError::BadRawIndex {
            path,
            what: format!("raw index lists {} files, its manifest entry says {files}", raw.len()),
        });
    }
    Ok(raw)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::lake::stats::{BuildStats, IngestStats, SyncStats};
    use std::collections::BTreeSet;

    /// Writes each of `paths` (relative to the lake root), as a run would before its commit.
    fn touch<'a>(layout: &Layout, paths: impl IntoIterator<Item = &'a str>) {
        for p in paths {
            fsio::write_deferred(&layout.abs(p), b"x").unwrap();
        }
    }

    #[test]
    fn replace_drops_older_staging_and_entries_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let mut m = Manifest::load(&layout).unwrap();
        assert_eq!(m.next_run_id(), 1);
        touch(&layout, ["a", "b", "c"]);
        let file = |p: &str| StagingFile { table: "t".into(), path: p.into(), rows: 1, sorted: false };
        let mut r1 = Run::new(1, RunKind::Ingest, "ingest", now_rfc3339());
        r1.staging = Some(StagingChange { replace: false, files: vec![file("a"), file("b")], removed: vec![] });
        m.commit(&layout, r1).unwrap();
        let mut r2 = Run::new(2, RunKind::Reprocess, "reprocess", now_rfc3339());
        r2.staging = Some(StagingChange { replace: true, files: vec![file("c")], removed: vec![] });
        m.commit(&layout, r2).unwrap();
        // A temp file left by a crash is not an entry.
        fs::write(layout.manifest_dir().join(".tmp-xyz"), b"{}").unwrap();
        let m = Manifest::load(&layout).unwrap();
        assert_eq!(m.run_count(), 2);
        let live: Vec<_> = m.staging_files("t").iter().map(|f| f.path.clone()).collect();
        assert_eq!(live, vec!["c"]);
        assert_eq!(m.next_run_id(), 3);
    }

    pub(crate) fn raw(sha: &str) -> RawFile {
        RawFile {
            sha256: sha.into(),
            path: format!("raw/s/ingest_date=2026-01-01/{sha}.json"),
            source: "s".into(),
            kind: "log".into(),
            origin: format!("{sha}.json"),
            bytes: 10,
            account: None,
            offset: None,
        }
    }

    #[test]
    fn raw_files_live_in_an_index_beside_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let mut m = Manifest::load(&layout).unwrap();
        let mut r1 = Run::new(1, RunKind::Ingest, "ingest", now_rfc3339());
        r1.raw = vec![raw("a1")];
        let mut r2 = Run::new(2, RunKind::Ingest, "ingest", now_rfc3339());
        r2.raw = vec![raw("b2"), raw("c3")];
        touch(&layout, r1.raw.iter().chain(&r2.raw).map(|r| r.path.as_str()));
        m.commit(&layout, r1).unwrap();
        m.commit(&layout, r2).unwrap();
        let entry = fs::read_to_string(layout.run_entry(2)).unwrap();
        assert!(!entry.contains("\"b2\""), "the entry does not list its raw files: {entry}");
        assert!(entry.contains("00000002.raw.ndjson"), "{entry}");
        assert_eq!(m.recent(1).unwrap()[0].raw_count(), 2);
        assert_eq!(fs::read_to_string(dir.path().join("_manifest/FORMAT")).unwrap(), "2\n", "the first commit");

        let m = Manifest::load(&layout).unwrap();
        assert!(m.raw.get().is_none(), "loading reads no raw index");
        let shas: Vec<&str> = m.raw_files().unwrap().iter().map(|f| f.sha256.as_str()).collect();
        assert_eq!(shas, ["a1", "b2", "c3"]);
        let live = m.live_paths().unwrap();
        assert!(
            live.contains("_manifest/00000002.raw.ndjson") && live.contains("raw/s/ingest_date=2026-01-01/a1.json")
        );

        // Ingest reads the digest lists only: the same shas, no raw index parsed.
        let digests = dir.path().join("_manifest/00000002.raw.sha256");
        assert_eq!(fs::read_to_string(&digests).unwrap(), "b2\nc3\n");
        assert_eq!(m.raw_count(), 3);
        let fresh = Manifest::load(&layout).unwrap();
        let shas = fresh.raw_shas().unwrap();
        assert_eq!(shas, HashSet::from(["a1", "b2", "c3"].map(String::from)));
        assert!(fresh.raw.get().is_none(), "raw_shas read no raw index");
        assert!(live.contains("_manifest/00000002.raw.sha256"), "{live:?}");
        // A digest list that does not match its entry is an error that names it.
        fs::write(&digests, "b2\nc4\n").unwrap();
        let err = Manifest::load(&layout).unwrap().raw_shas().unwrap_err().to_string();
        assert!(err.contains("00000002.raw.sha256") && err.contains("digest list has sha256"), "{err}");

        // A raw index that does not match its entry is an error that names it.
        let index = dir.path().join("_manifest/00000002.raw.ndjson");
        let text = fs::read_to_string(&index).unwrap().replace("c3", "c4");
        fs::write(&index, text).unwrap();
        let err = Manifest::load(&layout).unwrap().raw_files().unwrap_err().to_string();
        assert!(err.contains("00000002.raw.ndjson") && err.contains("raw index has sha256"), "{err}");
    }

    #[test]
    fn a_commit_syncs_the_files_the_run_wrote_and_refuses_a_run_naming_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let mut m = Manifest::load(&layout).unwrap();
        let part = |path: &str| StarPart { partition: None, path: path.into(), rows: 1, sha256: "s".into() };
        let star = |version, paths: &[&str]| StarVersion {
            version,
            delta: BTreeMap::new(),
            tables: BTreeMap::from([("t".to_string(), paths.iter().map(|p| part(p)).collect())]),
        };
        let mut r1 = Run::new(1, RunKind::Build, "build", now_rfc3339());
        r1.star = Some(star(1, &["star/t/part-1", "star/u/part-1"]));
        touch(&layout, ["star/t/part-1", "star/u/part-1"]);
        m.commit(&layout, r1).unwrap();
        // A run's files: its raw files (a pack once), its staging, and the star parts that are new.
        let mut r2 = Run::new(2, RunKind::Ingest, "ingest", now_rfc3339());
        let mut packed = [raw("p1"), raw("p2")];
        for r in &mut packed {
            r.path = "raw/s/pack-2.raw".into();
        }
        r2.raw = [raw("a"), packed[0].clone(), packed[1].clone()].into();
        r2.staging = Some(StagingChange {
            replace: false,
            files: vec![StagingFile { table: "t".into(), path: "staging/t/p".into(), rows: 1, sorted: false }],
            removed: vec![],
        });
        r2.star = Some(star(2, &["star/t/part-1", "star/t/part-2"]));
        let written: BTreeSet<&str> = r2.written(m.star()).collect();
        let want = ["raw/s/ingest_date=2026-01-01/a.json", "raw/s/pack-2.raw", "staging/t/p", "star/t/part-2"];
        assert_eq!(written, BTreeSet::from(want));
        // A file the run names but did not write: the commit fails, and nothing is committed.
        touch(&layout, want);
        fs::remove_file(layout.abs("staging/t/p")).unwrap();
        let err = m.commit(&layout, r2.clone()).unwrap_err().to_string();
        assert!(err.contains("fsync") && err.contains("staging/t/p"), "{err}");
        assert_eq!(Manifest::load(&layout).unwrap().run_count(), 1);
        touch(&layout, ["staging/t/p"]);
        m.commit(&layout, r2).unwrap();
        assert_eq!(Manifest::load(&layout).unwrap().run_count(), 2);
    }

    #[test]
    fn a_commit_behind_is_in_memory_at_once_and_on_disk_once_settled() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let mut m = Manifest::load(&layout).unwrap();
        let staged = |id: u64, path: &str| {
            let mut r = Run::new(id, RunKind::Ingest, "ingest", now_rfc3339());
            r.raw = vec![raw(&format!("r{id}"))];
            r.staging = Some(StagingChange {
                replace: false,
                files: vec![StagingFile { table: "t".into(), path: path.into(), rows: 1, sorted: false }],
                removed: vec![],
            });
            touch(&layout, r.raw.iter().map(|f| f.path.as_str()));
            r
        };
        touch(&layout, ["staging/t/1", "staging/t/2"]);
        m.commit_behind(&layout, staged(1, "staging/t/1")).unwrap();
        assert_eq!(m.next_run_id(), 2, "the run counts in memory before it is durable");
        assert_eq!(m.staging_files("t").len(), 1);
        // The next commit waits for it: both are on disk, in order, with the raw index.
        m.commit(&layout, staged(2, "staging/t/2")).unwrap();
        let loaded = Manifest::load(&layout).unwrap();
        assert_eq!(loaded.history().unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(loaded.raw_files().unwrap().len(), 2);
        // A run naming a file that is not there: the error comes from `settle`, and nothing is committed.
        m.commit_behind(&layout, staged(3, "staging/t/missing")).unwrap();
        let err = m.settle().unwrap_err().to_string();
        assert!(err.contains("fsync") && err.contains("staging/t/missing"), "{err}");
        assert_eq!(Manifest::load(&layout).unwrap().run_count(), 2);
        // Dropping the manifest waits for a commit still going.
        let mut m = Manifest::load(&layout).unwrap();
        touch(&layout, ["staging/t/4"]);
        m.commit_behind(&layout, staged(3, "staging/t/4")).unwrap();
        drop(m);
        assert_eq!(Manifest::load(&layout).unwrap().run_count(), 3);
    }

    fn star_part(v: u64) -> StarPart {
        StarPart { partition: None, path: format!("star/t/part-{v}"), rows: v, sha256: format!("s{v}") }
    }

    /// Run `id` of [`mixed_history`]: its files written, not committed.
    fn mixed_run(layout: &Layout, id: u64) -> Run {
        let kind = match id % 4 {
            _ if id == 12 => RunKind::Reprocess,
            0 => RunKind::Build,
            3 => RunKind::Sync,
            _ => RunKind::Ingest,
        };
        let mut r = Run::new(id, kind, "test", now_rfc3339());
        match kind {
            RunKind::Ingest | RunKind::Reprocess => {
                r.raw = vec![raw(&format!("r{id}"))];
                let path = format!("staging/t/{id}");
                touch(layout, [path.as_str()]);
                let file = StagingFile { table: "t".into(), path, rows: 1, sorted: true };
                r.staging =
                    Some(StagingChange { replace: kind == RunKind::Reprocess, files: vec![file], removed: vec![] });
                let mut a = Accounting::new("s", "events");
                (a.read, a.plays) = (id, id);
                r.accounting = vec![a];
                r.rejects = vec![Reject::new(format!("f{id}"), id, "bad")];
                r.stats = RunStats::Ingest(IngestStats {
                    spotify_user: Some("u".into()),
                    spotify_cursor_after: Some(id as i64 * 10),
                    ..IngestStats::default()
                });
            }
            RunKind::Build => {
                touch(layout, [star_part(id).path.as_str()]);
                r.star = Some(StarVersion {
                    version: id,
                    delta: BTreeMap::new(),
                    tables: BTreeMap::from([("t".to_string(), vec![star_part(id)])]),
                });
                r.stats = RunStats::Build(BuildStats { staging_run: id - 1, ..BuildStats::default() });
            }
            _ => r.stats = RunStats::Sync(SyncStats { lake_version: id - 3, ..SyncStats::default() }),
        }
        touch(layout, r.raw.iter().map(|f| f.path.as_str()));
        r
    }

    /// 25 runs of every kind (a reprocess at 12, builds every fourth, syncs
    /// after them), committed alternately now and behind: checkpoints at 10 and 20.
    fn mixed_history(layout: &Layout) -> Manifest {
        let mut m = Manifest::load(layout).unwrap();
        for id in 1..=25u64 {
            let r = mixed_run(layout, id);
            if id % 2 == 0 { m.commit_behind(layout, r).unwrap() } else { m.commit(layout, r).unwrap() }
        }
        m.settle().unwrap();
        m
    }

    fn state_of(m: &Manifest) -> serde_json::Value {
        serde_json::to_value(m.state()).unwrap()
    }

    #[test]
    fn loading_reads_the_last_checkpoint_and_the_entries_after_it_and_gets_the_same_state() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let m = mixed_history(&layout);
        let loaded = Manifest::load(&layout).unwrap();
        assert_eq!(
            loaded.tail.iter().map(|r| r.id).collect::<Vec<_>>(),
            [21, 22, 23, 24, 25],
            "read after run 20's checkpoint"
        );
        assert_eq!(state_of(&loaded), state_of(&m), "the loaded state is the committed one");
        assert!(loaded.raw_state.get().is_none(), "loading reads no raw list");
        // The fold: staging since the reprocess (run 12), accounting and rejects since it too, the last build and sync.
        let s = loaded.state();
        assert_eq!((s.run, s.staging_run, s.replaced_run), (25, 25, 12));
        let live: Vec<u64> = s.staging.iter().map(|l| l.run).collect();
        assert_eq!(live, [12, 13, 14, 17, 18, 21, 22, 25]);
        assert_eq!(loaded.staged_after(20), HashSet::from(["staging/t/21", "staging/t/22", "staging/t/25"]));
        assert_eq!(s.accounting[0].read, live.iter().sum::<u64>());
        assert_eq!(s.rejects.len(), live.len());
        assert_eq!(loaded.star().unwrap().version, 24);
        assert_eq!(loaded.last_sync().unwrap().id, 23);
        assert_eq!(s.spotify_cursors["u"].after, Some(250));
        assert_eq!(loaded.raw_count(), 14);
        assert_eq!(loaded.raw_shas().unwrap().len(), 14);
        assert!(loaded.raw_state.get().is_some());
        // A damaged raw list is an error that names it, when raw files are asked for.
        let raw_list = layout.manifest_dir().join("00000020.checkpoint.raw.json");
        let kept_raw = fs::read(&raw_list).unwrap();
        fs::write(&raw_list, b"{}").unwrap();
        let err = Manifest::load(&layout).unwrap().raw_files().unwrap_err().to_string();
        assert!(err.contains("00000020.checkpoint.raw.json") && err.contains("sha256"), "{err}");
        fs::write(&raw_list, kept_raw).unwrap();
        let parts: Vec<&str> = s.parts().into_keys().collect();
        assert_eq!(parts, ["s20", "s24"], "the current version's parts, the previous and the last synced one's");
        assert_eq!(loaded.recent(7).unwrap().iter().map(|r| r.id).collect::<Vec<_>>(), [19, 20, 21, 22, 23, 24, 25]);
        assert_eq!(loaded.history().unwrap().len(), 25);
    }

    #[test]
    fn without_a_good_checkpoint_every_entry_is_read_and_the_next_commit_writes_one() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let m = mixed_history(&layout);
        let pointer = layout.manifest_dir().join("_last_checkpoint");
        let kept = fs::read(&pointer).unwrap();
        fs::remove_file(&pointer).unwrap();
        let replayed = Manifest::load(&layout).unwrap();
        assert_eq!(replayed.tail.len(), 25);
        assert_eq!(state_of(&replayed), state_of(&m));
        fs::write(&pointer, &kept).unwrap();
        fs::write(checkpoint::checkpoint_path(&layout, 20), b"not a checkpoint").unwrap();
        assert_eq!(state_of(&Manifest::load(&layout).unwrap()), state_of(&m));
        // The next commit writes a checkpoint again, and the older one is superseded.
        let mut replayed = replayed;
        replayed.commit(&layout, Run::new(26, RunKind::Sync, "test", now_rfc3339())).unwrap();
        assert!(checkpoint::checkpoint_path(&layout, 26).is_file());
        let current = checkpoint::current(&layout);
        assert_eq!(current, Some(26));
        assert!(checkpoint::is_superseded("00000020.checkpoint.json", current));
        assert!(checkpoint::is_superseded("00000020.checkpoint.raw.json", current));
        assert!(!checkpoint::is_superseded("00000026.checkpoint.json", current));
        let loaded = Manifest::load(&layout).unwrap();
        assert!(loaded.tail.is_empty());
        assert_eq!(loaded.last_sync().unwrap().id, 26);

        // A vacuumed part drops out of the parts at the next checkpoint.
        fs::remove_file(layout.abs("star/t/part-20")).unwrap();
        let mut m = loaded;
        for id in 27..=36 {
            m.commit(&layout, Run::new(id, RunKind::Sync, "test", now_rfc3339())).unwrap();
        }
        let loaded = Manifest::load(&layout).unwrap();
        assert!(loaded.tail.is_empty());
        assert_eq!(loaded.state().parts().into_keys().collect::<Vec<_>>(), ["s24"]);
    }
}
