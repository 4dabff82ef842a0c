//! Stage 1: the only code that knows input formats. Each source turns what
//! it reads into raw files (exact bytes, content-addressed) and typed staging
//! Parquet, and commits both with one manifest entry.
//!
//! [`ingest_sparkify`] reads a Sparkify folder; [`reprocess`] re-parses every
//! stored raw file into a fresh staging set, for a parser fix or a new model.

pub mod chunks;
pub mod normalize;
pub mod sparkify;
pub mod spotify_api;
pub mod spotify_auth;
pub mod spotify_export;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{NaiveDate, Utc};
use datafusion::arrow::record_batch::RecordBatch;
use rayon::prelude::*;

use crate::lake::manifest::{
    Accounting, MAX_REJECTS_KEPT, RawFile, Reject, Run, RunKind, StagingChange, StagingFile, now_rfc3339,
};
use crate::lake::{LakeError, Layout, Manifest, fsio, parquet, raw, sha256_hex, staging};
use crate::progress;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: cannot read")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a Sparkify folder: expected `song_data/` and `log_data/` inside it")]
    NotSparkifyDir { path: PathBuf },
    #[error(
        "{path}: raw file is corrupt (sha256 {actual}, expected {expected}); restore it from a backup \
         or re-ingest the original"
    )]
    RawCorrupt { path: PathBuf, expected: String, actual: String },
    #[error("{path}: no parser for raw files of source `{source_name}`, kind `{kind}`")]
    UnknownKind { path: PathBuf, source_name: String, kind: String },
    #[error("{path}: cannot read the zip")]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    #[error(
        "{path}: no streaming history found: expected files such as Streaming_History_Audio_*.json, \
         endsong_N.json or StreamingHistory_music_N.json (anywhere inside the zip or folder)"
    )]
    NoHistory { path: PathBuf },
    #[error(
        "{path}: cannot tell whose history this is (no Userdata.json, no `username` in the records); \
         pass --user <your Spotify username>"
    )]
    NoAccount { path: PathBuf },
    #[error("{0}")]
    Config(String),
    #[error("not logged in to Spotify: run `tunelake auth spotify` first")]
    NotLoggedIn,
    #[error(
        "Spotify no longer accepts the saved login (refresh tokens expire six months after consent): \
         run `tunelake auth spotify` again"
    )]
    Reauth,
    #[error("Spotify login failed: {0}")]
    Auth(String),
    #[error("{endpoint}: request failed: {message}")]
    Http { endpoint: String, message: String },
    #[error("{endpoint}: Spotify answered HTTP {status}")]
    Api { endpoint: String, status: u16 },
    #[error(transparent)]
    Lake(#[from] LakeError),
}

/// What an ingest or reprocess did, for the one-line summary and `status`.
#[derive(Debug, Clone, Default)]
pub struct IngestMetrics {
    pub run: u64,
    /// False when nothing new was found and no run was committed.
    pub committed: bool,
    pub files_new: u64,
    pub files_already_stored: u64,
    pub bytes_new: u64,
    pub accounting: Vec<Accounting>,
    pub rejects: Vec<Reject>,
    pub staging_files: usize,
    /// Per input file, for sources whose report lists files (Spotify exports).
    pub files: Vec<FileReport>,
}

impl IngestMetrics {
    pub fn stream(&self, stream: &str) -> Accounting {
        self.accounting.iter().find(|a| a.stream == stream).cloned().unwrap_or_default()
    }
}

/// Gathers what parallel parsing produces into one run's staging change.
struct Collector {
    accounting: BTreeMap<(String, String), Accounting>,
    rejects: Vec<Reject>,
    files: Vec<StagingFile>,
    /// Song rows not yet in `song_batches`.
    songs: Vec<sparkify::SongRow>,
    /// Song rows as Arrow batches of [`SONG_BATCH_ROWS`], more compact than
    /// rows of strings kept until the run's end.
    song_batches: Vec<RecordBatch>,
    per_file: Vec<FileReport>,
    /// Rows of small per-response tables (the API's), written as one file per table.
    batches: BTreeMap<&'static str, Vec<RecordBatch>>,
}

/// One input file in an import report: what was read from it and what became of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

impl FileReport {
    fn new(raw: &RawFile, acc: &Accounting, already_stored: bool) -> Self {
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

impl Collector {
    fn new() -> Self {
        Collector {
            accounting: BTreeMap::new(),
            rejects: vec![],
            files: vec![],
            songs: vec![],
            song_batches: vec![],
            per_file: vec![],
            batches: BTreeMap::new(),
        }
    }

    fn account(&mut self, acc: Accounting, rejects: Vec<Reject>) {
        let room = MAX_REJECTS_KEPT.saturating_sub(self.rejects.len());
        self.rejects.extend(rejects.into_iter().take(room));
        self.accounting
            .entry((acc.source.clone(), acc.stream.clone()))
            .or_insert_with(|| Accounting::new(&acc.source, &acc.stream))
            .add(&acc);
    }

    fn add_songs(&mut self, rows: Vec<sparkify::SongRow>) {
        self.songs.extend(rows);
        if self.songs.len() >= SONG_BATCH_ROWS {
            self.song_batches.push(sparkify::songs_batch(&std::mem::take(&mut self.songs)));
        }
    }

    /// Writes the song rows gathered so far and returns the staging change.
    fn finish(mut self, layout: &Layout, run: u64, date: NaiveDate) -> Result<Staged, LakeError> {
        if !self.songs.is_empty() {
            self.song_batches.push(sparkify::songs_batch(&std::mem::take(&mut self.songs)));
        }
        if !self.song_batches.is_empty() {
            // Sorted so that a reprocess writes the same rows in the same order.
            let songs = sparkify::sorted_songs(std::mem::take(&mut self.song_batches));
            let mut offset = 0;
            for n in 0.. {
                let chunk = songs.slice(offset, (songs.num_rows() - offset).min(100_000));
                let rel = Layout::staging_rel(sparkify::STG_SONGS, date, run, n);
                let w = parquet::write_staging(&layout.abs(&rel), sparkify::STG_SONGS, &chunk.schema(), [&chunk])?;
                self.files.push(StagingFile {
                    table: sparkify::STG_SONGS.into(),
                    path: rel,
                    rows: w.rows,
                    sorted: false,
                });
                offset += chunk.num_rows();
                if offset == songs.num_rows() {
                    break;
                }
            }
        }
        for (table, batches) in &self.batches {
            let rel = Layout::staging_rel(table, date, run, 0);
            let w = parquet::write_staging(&layout.abs(&rel), table, &batches[0].schema(), batches.iter())?;
            self.files.push(StagingFile { table: table.to_string(), path: rel, rows: w.rows, sorted: false });
        }
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        let change = StagingChange { replace: false, files: self.files };
        Ok(Staged {
            change,
            accounting: self.accounting.into_values().collect(),
            rejects: self.rejects,
            files: self.per_file,
        })
    }
}

/// What a batch of raw files became in staging.
struct Staged {
    change: StagingChange,
    accounting: Vec<Accounting>,
    rejects: Vec<Reject>,
    files: Vec<FileReport>,
}

/// Writes one date of a Sparkify log's events (`batch`, in staging order) to `rel`.
fn write_events(layout: &Layout, rel: String, batch: &RecordBatch) -> Result<StagingFile, SourceError> {
    let w = parquet::write_staging(&layout.abs(&rel), sparkify::STG_EVENTS, &batch.schema(), [batch])?;
    Ok(StagingFile { table: sparkify::STG_EVENTS.into(), path: rel, rows: w.rows, sorted: true })
}

/// Stages the big Sparkify log `raw` from its copy in the lake, piece by
/// piece ([`chunks::LineChunks`]): as many pieces at once as there are
/// threads are parsed, then their dates are written, also at once. With
/// `verify`, what it reads must have `raw`'s sha256 (reprocess: the copy may
/// have changed since it was stored); ingest, which has just hashed the
/// bytes as it wrote the copy, does not hash them again.
///
/// A date that goes on into the next piece is held back and written once,
/// as one sorted file: two files of one date would overlap wherever a
/// piece ended inside a run of events of one millisecond, and overlapping
/// files are sorted again by every build (1M events in one file: a build
/// of 445 MB instead of 270 MB). A log in time order so gets one file per
/// date, like the Sparkify day files; memory holds the parsed pieces and
/// one date. `bar` counted the file as one step: it moves by piece instead.
fn stage_log_in_pieces(
    layout: &Layout,
    (run, index): (u64, usize),
    raw: &RawFile,
    verify: bool,
    out: &Mutex<Collector>,
    bar: &indicatif::ProgressBar,
) -> Result<(), SourceError> {
    let path = layout.abs(&raw.path);
    let read_err = |source| SourceError::Read { path: path.clone(), source };
    let file = std::fs::File::open(&path).map_err(read_err)?;
    let mut pieces = match verify {
        true => chunks::LineChunks::hashing(file, chunks::PIECE),
        false => chunks::LineChunks::new(file, chunks::PIECE),
    };
    let at_once = rayon::current_num_threads();
    let (mut held, mut written) = (BTreeMap::new(), 0);
    // Pieces hold at most chunks::PIECE bytes, so there are at least this many.
    let mut steps = raw.bytes.div_ceil(chunks::PIECE as u64).max(1);
    bar.inc_length(steps - 1);
    let mut staged = 0;
    loop {
        let mut group = Vec::with_capacity(at_once);
        while group.len() < at_once {
            match pieces.next_piece().map_err(read_err)? {
                Some(p) => group.push(p),
                None => break,
            }
        }
        let end = group.len() < at_once;
        stage_pieces(layout, (run, index), raw, &group, (&mut held, &mut written), end, out)?;
        staged += group.len() as u64;
        if staged > steps {
            bar.inc_length(staged - steps);
            steps = staged;
        }
        bar.inc(group.len() as u64);
        if end {
            bar.inc(steps - staged);
            break;
        }
    }
    match pieces.sha256() {
        Some(actual) if actual != raw.sha256 => {
            Err(SourceError::RawCorrupt { path, expected: raw.sha256.clone(), actual })
        }
        _ => Ok(()),
    }
}

/// Parses `group` (pieces of one log, in order) at once, adds their rows to
/// `held`, and writes every date held but the last piece's last (all of them
/// at the `end` of the file), at once: file `index` of run `run`, its staging
/// files numbered on from `written`.
fn stage_pieces(
    layout: &Layout,
    (run, index): (u64, usize),
    raw: &RawFile,
    group: &[chunks::Piece],
    (held, written): (&mut BTreeMap<NaiveDate, Vec<RecordBatch>>, &mut usize),
    end: bool,
    out: &Mutex<Collector>,
) -> Result<(), SourceError> {
    let parsed: Vec<_> =
        group.par_iter().map(|p| sparkify::parse_log_lines(&p.bytes, p.first_line, &raw.sha256, &raw.origin)).collect();
    // (date, its rows)
    let mut ready = vec![];
    for parsed in parsed {
        let last = parsed.by_date.keys().next_back().copied();
        for (date, batch) in parsed.by_date {
            held.entry(date).or_default().push(batch);
        }
        let done: Vec<NaiveDate> = held.keys().copied().filter(|d| Some(*d) != last).collect();
        ready.extend(done.into_iter().map(|d| (d, held.remove(&d).unwrap_or_default())));
        out.lock().expect("collector lock").account(parsed.accounting, parsed.rejects);
    }
    if end {
        ready.extend(std::mem::take(held));
    }
    let first = std::mem::replace(written, *written + ready.len());
    let files: Vec<StagingFile> = (ready.into_par_iter().enumerate())
        .map(|(i, (date, batches))| {
            let number = first + i;
            let rel = Layout::staging_piece_rel(sparkify::STG_EVENTS, date, run, index, number);
            write_events(layout, rel, &sparkify::events_in_order(&batches))
        })
        .collect::<Result<_, _>>()?;
    out.lock().expect("collector lock").files.extend(files);
    Ok(())
}

/// Parses one raw file's bytes and writes its staging files (logs) or keeps
/// its rows for [`Collector::finish`] (songs, which are small and many).
/// Staging files are written without their own fsync: every caller makes
/// them durable with one `fsio::sync_files` when it commits (`Manifest::commit`).
fn stage(
    layout: &Layout,
    run: u64,
    index: usize,
    raw: &RawFile,
    bytes: &[u8],
    out: &Mutex<Collector>,
) -> Result<(), SourceError> {
    match (raw.source.as_str(), raw.kind.as_str()) {
        (sparkify::SOURCE, sparkify::KIND_LOG) => {
            let parsed = sparkify::parse_log(bytes, &raw.sha256, &raw.origin);
            let files = (parsed.by_date.iter())
                .map(|(date, batch)| {
                    write_events(layout, Layout::staging_rel(sparkify::STG_EVENTS, *date, run, index), batch)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut c = out.lock().expect("collector lock");
            c.files.extend(files);
            c.account(parsed.accounting, parsed.rejects);
        }
        (sparkify::SOURCE, sparkify::KIND_SONG) => {
            let parsed = sparkify::parse_songs(bytes, &raw.sha256, &raw.origin);
            let mut c = out.lock().expect("collector lock");
            c.add_songs(parsed.rows);
            c.account(parsed.accounting, parsed.rejects);
        }
        (spotify_export::SOURCE, kind) => {
            let account = raw.account.as_deref().unwrap_or_default();
            let parsed = spotify_export::parse(kind, bytes, account, &raw.sha256, &raw.origin);
            let mut file = None;
            if parsed.batch.num_rows() > 0 {
                let date = Utc::now().date_naive();
                let rel = Layout::staging_rel(spotify_export::STG_STREAMS, date, run, index);
                let w = parquet::write_staging(
                    &layout.abs(&rel),
                    spotify_export::STG_STREAMS,
                    &parsed.batch.schema(),
                    [&parsed.batch],
                )?;
                file = Some(StagingFile {
                    table: spotify_export::STG_STREAMS.into(),
                    path: rel,
                    rows: w.rows,
                    sorted: false,
                });
            }
            let mut c = out.lock().expect("collector lock");
            c.files.extend(file);
            c.per_file.push(FileReport::new(raw, &parsed.accounting, false));
            c.account(parsed.accounting, parsed.rejects);
        }
        (spotify_api::SOURCE, kind) => {
            let mut acc = Accounting::new(spotify_api::SOURCE, kind);
            acc.files = 1;
            let mut rejects = vec![];
            let (table, batch) = match kind {
                spotify_api::KIND_ME => match spotify_api::parse_me(bytes, index as i64, &raw.sha256) {
                    Ok((_, b)) => (staging::STG_SPOTIFY_API_USERS, Some(b)),
                    Err(reason) => {
                        rejects.push(Reject { file: raw.origin.clone(), line: 1, reason });
                        (staging::STG_SPOTIFY_API_USERS, None)
                    }
                },
                spotify_api::KIND_RECENT => {
                    let user = raw.account.as_deref().unwrap_or_default();
                    match spotify_api::parse_page(bytes, user, &raw.sha256) {
                        Ok(page) => {
                            acc.read = (page.played_ms.len() + page.rejected.len()) as u64;
                            acc.plays = page.played_ms.len() as u64;
                            rejects.extend(page.rejected.into_iter().map(|(line, reason)| Reject {
                                file: raw.origin.clone(),
                                line,
                                reason,
                            }));
                            (staging::STG_SPOTIFY_API_PLAYS, Some(page.plays))
                        }
                        Err(reason) => {
                            acc.read = 1;
                            rejects.push(Reject { file: raw.origin.clone(), line: 0, reason });
                            (staging::STG_SPOTIFY_API_PLAYS, None)
                        }
                    }
                }
                _ => match spotify_api::parse_entity(kind, bytes, &raw.sha256) {
                    Ok(b) => (staging::STG_SPOTIFY_API_ENTITIES, Some(b)),
                    Err(reason) => {
                        rejects.push(Reject { file: raw.origin.clone(), line: 1, reason });
                        (staging::STG_SPOTIFY_API_ENTITIES, None)
                    }
                },
            };
            if kind != spotify_api::KIND_RECENT {
                acc.read = 1;
            }
            acc.rejected = rejects.len() as u64;
            acc.kept = acc.read - acc.rejected;
            let mut c = out.lock().expect("collector lock");
            if let Some(b) = batch.filter(|b| b.num_rows() > 0) {
                c.batches.entry(table).or_default().push(b);
            }
            c.account(acc, rejects);
        }
        (s, k) => {
            return Err(SourceError::UnknownKind {
                path: layout.abs(&raw.path),
                source_name: s.into(),
                kind: k.into(),
            });
        }
    }
    Ok(())
}

/// Every `*.json` file under `dir`, sorted, as paths relative to `base`.
fn json_files(base: &Path, dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| SourceError::Read { path: d.clone(), source })?;
        for e in entries {
            let e = e.map_err(|source| SourceError::Read { path: d.clone(), source })?;
            let path = e.path();
            let ft = e.file_type().map_err(|source| SourceError::Read { path: path.clone(), source })?;
            if ft.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "json") {
                out.push(path.strip_prefix(base).unwrap_or(&path).to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `tunelake ingest sparkify <dir>`: stores every new file's bytes under
/// raw/, parses it into staging, and commits. Files already stored (same
/// sha256) are skipped and counted.
pub fn ingest_sparkify(
    layout: &Layout,
    manifest: &mut Manifest,
    dir: &Path,
    command: &str,
) -> Result<IngestMetrics, SourceError> {
    let song_dir = dir.join("song_data");
    let log_dir = dir.join("log_data");
    if !song_dir.is_dir() && !log_dir.is_dir() {
        return Err(SourceError::NotSparkifyDir { path: dir.into() });
    }
    let t0 = std::time::Instant::now();
    let logs = if log_dir.is_dir() { json_files(dir, &log_dir)? } else { vec![] };
    tracing::info!(dir = %dir.display(), logs = logs.len(), seconds = t0.elapsed().as_secs_f64(), "ingest sparkify: logs listed, reading");
    let started = now_rfc3339();
    let run_id = manifest.next_run_id();
    let today = Utc::now().date_naive();
    let known: HashSet<String> = manifest.raw_shas()?;
    let seen = Mutex::new(known);
    let raw_added = Mutex::new(Vec::<RawFile>::new());
    // Files under raw::PACK_BELOW go into one pack for the run.
    let pack = Mutex::new(raw::Pack::new(layout, Layout::raw_pack_rel(sparkify::SOURCE, today, run_id)));
    let skipped = Mutex::new(BTreeMap::<&str, u64>::new());
    let out = Mutex::new(Collector::new());
    let bar = progress::bar(logs.len() as u64, "ingest sparkify");

    // A big log is copied into raw/ as it is read, then staged from that
    // copy piece by piece (`chunks`), so memory stays bounded.
    let ingest_big_log = |index: usize, rel: &PathBuf, path: &Path| -> Result<(), SourceError> {
        let t = std::time::Instant::now();
        let incoming = raw::copy_in(path, &layout.abs(&Layout::raw_dir_rel(sparkify::SOURCE, today)))?;
        tracing::debug!(file = %rel.display(), bytes = incoming.bytes, seconds = t.elapsed().as_secs_f64(), "copied into raw/");
        if !seen.lock().expect("seen lock").insert(incoming.sha256.clone()) {
            *skipped.lock().expect("skipped lock").entry(sparkify::KIND_LOG).or_default() += 1;
            bar.inc(1);
            return Ok(());
        }
        let raw = RawFile {
            path: Layout::raw_rel(sparkify::SOURCE, today, &incoming.sha256),
            sha256: incoming.sha256.clone(),
            source: sparkify::SOURCE.into(),
            kind: sparkify::KIND_LOG.into(),
            origin: rel.to_string_lossy().into_owned(),
            bytes: incoming.bytes,
            account: None,
            offset: None,
        };
        incoming.keep(&layout.abs(&raw.path))?;
        stage_log_in_pieces(layout, (run_id, index), &raw, false, &out, &bar)?;
        tracing::debug!(file = %rel.display(), seconds = t.elapsed().as_secs_f64(), "staged in pieces");
        raw_added.lock().expect("raw lock").push(raw);
        Ok(())
    };
    let ingest_one = |index: usize, rel: &PathBuf, kind: &'static str| -> Result<(), SourceError> {
        let path = dir.join(rel);
        let read_err = |source| SourceError::Read { path: path.clone(), source };
        let bytes = if kind == sparkify::KIND_LOG {
            let mut file = std::fs::File::open(&path).map_err(read_err)?;
            let len = file.metadata().map_err(read_err)?.len();
            if len >= chunks::STREAM_FROM {
                return ingest_big_log(index, rel, &path);
            }
            let mut bytes = Vec::with_capacity(len as usize);
            std::io::Read::read_to_end(&mut file, &mut bytes).map_err(read_err)?;
            bytes
        } else {
            std::fs::read(&path).map_err(read_err)?
        };
        let sha = sha256_hex(&bytes);
        if !seen.lock().expect("seen lock").insert(sha.clone()) {
            *skipped.lock().expect("skipped lock").entry(kind).or_default() += 1;
            bar.inc(1);
            return Ok(());
        }
        let raw = RawFile {
            path: Layout::raw_rel(sparkify::SOURCE, today, &sha),
            sha256: sha,
            source: sparkify::SOURCE.into(),
            kind: kind.to_string(),
            origin: rel.to_string_lossy().into_owned(),
            bytes: bytes.len() as u64,
            account: None,
            offset: None,
        };
        stage(layout, run_id, index, &raw, &bytes, &out)?;
        if bytes.len() < raw::PACK_BELOW {
            pack.lock().expect("pack lock").add(raw, bytes)?;
        } else {
            // Made durable with the run's other files when it commits (`fsio::sync_files`).
            fsio::write_deferred(&layout.abs(&raw.path), &bytes)?;
            raw_added.lock().expect("raw lock").push(raw);
        }
        bar.inc(1);
        Ok(())
    };
    // Logs first: the few big files start early, and the many small song
    // files fill in behind them. The song files are listed meanwhile, on the
    // other core (1M events: 15,151 files in 0.1 s, 5M: 75,757 in 0.5 s, which
    // kept both cores waiting). One file per task: rayon otherwise hands each
    // thread a run of files to read in order, and the run holding every log
    // file left the other core idle (1M events: 3.8 s, against 1.9 s for the
    // logs alone).
    let (logs_done, songs) = rayon::join(
        || logs.par_iter().with_max_len(1).enumerate().try_for_each(|(i, rel)| ingest_one(i, rel, sparkify::KIND_LOG)),
        || {
            let songs = if song_dir.is_dir() { json_files(dir, &song_dir)? } else { vec![] };
            bar.inc_length(songs.len() as u64);
            tracing::debug!(songs = songs.len(), seconds = t0.elapsed().as_secs_f64(), "ingest sparkify: songs listed");
            Ok::<_, SourceError>(songs)
        },
    );
    let songs = songs?;
    logs_done?;
    songs
        .par_iter()
        .with_max_len(1)
        .enumerate()
        .try_for_each(|(i, rel)| ingest_one(logs.len() + i, rel, sparkify::KIND_SONG))?;
    bar.finish_and_clear();
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "ingest sparkify: read, stored and staged");

    let packed = pack.into_inner().expect("pack lock").finish()?;
    let mut raw = raw_added.into_inner().expect("raw lock");
    raw.extend(packed);
    raw.sort_by(|a, b| a.origin.cmp(&b.origin));
    let skipped = skipped.into_inner().expect("skipped lock");
    let Staged { change: staging, mut accounting, rejects, .. } =
        out.into_inner().expect("collector lock").finish(layout, run_id, today)?;
    for (kind, n) in &skipped {
        let stream = if *kind == sparkify::KIND_LOG { "events" } else { "songs" };
        match accounting.iter_mut().find(|a| a.stream == stream) {
            Some(a) => a.files_already_stored += n,
            None => {
                let mut a = Accounting::new(sparkify::SOURCE, stream);
                a.files_already_stored = *n;
                accounting.push(a);
            }
        }
    }
    let mut metrics = IngestMetrics {
        run: run_id,
        committed: false,
        files_new: raw.len() as u64,
        files_already_stored: skipped.values().sum(),
        bytes_new: raw.iter().map(|r| r.bytes).sum(),
        accounting: accounting.clone(),
        rejects: rejects.clone(),
        staging_files: staging.files.len(),
        files: vec![],
    };
    if raw.is_empty() {
        // Nothing new: nothing to commit, and the lake is left exactly as it was.
        return Ok(metrics);
    }
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "ingest sparkify: songs staged, small files packed");
    let mut run = Run::new(run_id, RunKind::Ingest, command, started);
    run.raw = raw;
    run.staging = Some(staging);
    run.accounting = accounting;
    run.rejects = rejects;
    manifest.commit(layout, run)?;
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "ingest sparkify: files synced, run committed");
    metrics.committed = true;
    Ok(metrics)
}

/// `tunelake reprocess`: parses every stored raw file again into a new
/// staging set that replaces the old one. Raw files are checked against
/// their sha256 first.
pub fn reprocess(layout: &Layout, manifest: &mut Manifest, command: &str) -> Result<IngestMetrics, SourceError> {
    let started = now_rfc3339();
    let run_id = manifest.next_run_id();
    let today = Utc::now().date_naive();
    // In commit order: a raw file's position is its sequence number (the API's /v1/me fetches use it).
    let raws: Vec<RawFile> = manifest.raw_files()?.to_vec();
    let out = Mutex::new(Collector::new());
    let bar = progress::bar(raws.len() as u64, "reprocess");
    raws.par_iter().with_max_len(1).enumerate().try_for_each(|(index, raw)| -> Result<(), SourceError> {
        if raw.offset.is_none()
            && (raw.source.as_str(), raw.kind.as_str()) == (sparkify::SOURCE, sparkify::KIND_LOG)
            && raw.bytes >= chunks::STREAM_FROM
        {
            // Checked as it is read: a mismatch fails the run before its commit.
            return stage_log_in_pieces(layout, (run_id, index), raw, true, &out, &bar);
        }
        let bytes = raw::read(layout, raw)?;
        let actual = sha256_hex(&bytes);
        if actual != raw.sha256 {
            let path = match raw.offset {
                Some(offset) => {
                    format!("{} (bytes {offset}..{} of the pack: {})", raw.path, offset + raw.bytes, raw.origin)
                }
                None => raw.path.clone(),
            };
            return Err(SourceError::RawCorrupt { path: layout.abs(&path), expected: raw.sha256.clone(), actual });
        }
        stage(layout, run_id, index, raw, &bytes, &out)?;
        bar.inc(1);
        Ok(())
    })?;
    bar.finish_and_clear();
    let Staged { change: mut staging, accounting, rejects, files } =
        out.into_inner().expect("collector lock").finish(layout, run_id, today)?;
    staging.replace = true;
    let metrics = IngestMetrics {
        run: run_id,
        committed: true,
        files_new: 0,
        files_already_stored: raws.len() as u64,
        bytes_new: 0,
        accounting: accounting.clone(),
        rejects: rejects.clone(),
        staging_files: staging.files.len(),
        files,
    };
    let mut run = Run::new(run_id, RunKind::Reprocess, command, started);
    if !metrics.files.is_empty() {
        run.stats.insert("files".into(), serde_json::to_value(&metrics.files).expect("reports serialize"));
    }
    run.staging = Some(staging);
    run.accounting = accounting;
    run.rejects = rejects;
    manifest.commit(layout, run)?;
    Ok(metrics)
}

/// A history file found in an export, and how to read it.
enum ExportEntry {
    File(PathBuf),
    Zip(usize),
}

/// Files of an export: a `.zip`, a folder, or one `.json` file.
struct Export {
    path: PathBuf,
    /// (name inside the export, kind, where to read it), sorted by name.
    history: Vec<(String, &'static str, ExportEntry)>,
    userdata: Option<ExportEntry>,
    zip: Option<zip::ZipArchive<std::fs::File>>,
}

impl Export {
    fn open(path: &Path) -> Result<Self, SourceError> {
        let read_err = |source| SourceError::Read { path: path.into(), source };
        let mut export = Export { path: path.into(), history: vec![], userdata: None, zip: None };
        let add = |name: String, entry: ExportEntry, export: &mut Export| match spotify_export::classify(&name) {
            Some(spotify_export::FileKind::History(kind)) => export.history.push((name, kind, entry)),
            Some(spotify_export::FileKind::Userdata) => export.userdata = Some(entry),
            None => {}
        };
        if path.is_dir() {
            let mut stack = vec![path.to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).map_err(|source| SourceError::Read { path: d.clone(), source })? {
                    let p = e.map_err(|source| SourceError::Read { path: d.clone(), source })?.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else {
                        let name = p.strip_prefix(path).unwrap_or(&p).to_string_lossy().into_owned();
                        add(name, ExportEntry::File(p), &mut export);
                    }
                }
            }
        } else if path.extension().is_some_and(|x| x.eq_ignore_ascii_case("zip")) {
            let file = std::fs::File::open(path).map_err(read_err)?;
            let mut zip = zip::ZipArchive::new(file).map_err(|e| SourceError::Zip { path: path.into(), source: e })?;
            for i in 0..zip.len() {
                let f = zip.by_index(i).map_err(|e| SourceError::Zip { path: path.into(), source: e })?;
                if f.is_file() {
                    let name = f.name().map_err(|e| SourceError::Zip { path: path.into(), source: e })?.into_owned();
                    add(name, ExportEntry::Zip(i), &mut export);
                }
            }
            export.zip = Some(zip);
        } else if path.is_file() {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            add(name, ExportEntry::File(path.into()), &mut export);
        } else {
            return Err(read_err(std::io::Error::from(std::io::ErrorKind::NotFound)));
        }
        export.history.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(export)
    }

    fn read(&mut self, entry: &ExportEntry) -> Result<Vec<u8>, SourceError> {
        match entry {
            ExportEntry::File(p) => std::fs::read(p).map_err(|source| SourceError::Read { path: p.clone(), source }),
            ExportEntry::Zip(i) => {
                let zip = self.zip.as_mut().expect("zip entries come from a zip");
                let mut f = zip.by_index(*i).map_err(|e| SourceError::Zip { path: self.path.clone(), source: e })?;
                let mut bytes = Vec::with_capacity(f.size() as usize);
                std::io::Read::read_to_end(&mut f, &mut bytes)
                    .map_err(|source| SourceError::Read { path: self.path.clone(), source })?;
                Ok(bytes)
            }
        }
    }
}

/// Files committed together: an interrupted import keeps what it committed
/// and the next run skips those files (they are stored) and does the rest.
const EXPORT_FILES_PER_COMMIT: usize = 4;

/// Song rows an ingest gathers before it turns them into an Arrow batch.
const SONG_BATCH_ROWS: usize = 8192;

/// `tunelake ingest spotify-export <zip | folder | file>`.
pub fn ingest_spotify_export(
    layout: &Layout,
    manifest: &mut Manifest,
    path: &Path,
    user: Option<&str>,
    command: &str,
) -> Result<IngestMetrics, SourceError> {
    let mut export = Export::open(path)?;
    if export.history.is_empty() {
        return Err(SourceError::NoHistory { path: path.into() });
    }
    tracing::info!(path = %path.display(), files = export.history.len(), "ingest spotify-export: reading");
    let account = match user {
        Some(u) => Some(u.to_string()),
        None => match export.userdata.take() {
            Some(entry) => spotify_export::userdata_username(&export.read(&entry)?),
            None => None,
        },
    };

    let today = Utc::now().date_naive();
    let history = std::mem::take(&mut export.history);
    let bar = progress::bar(history.len() as u64, "ingest export");
    let mut known: HashSet<String> = manifest.raw_shas()?;
    let mut metrics = IngestMetrics::default();
    let mut pending: Vec<RawFile> = vec![];
    let mut out = Mutex::new(Collector::new());
    let mut run_id = manifest.next_run_id();
    let mut started = now_rfc3339();

    let commit = |manifest: &mut Manifest,
                  pending: &mut Vec<RawFile>,
                  out: &mut Mutex<Collector>,
                  run_id: &mut u64,
                  started: &mut String,
                  metrics: &mut IngestMetrics|
     -> Result<(), SourceError> {
        let collector = std::mem::replace(out, Mutex::new(Collector::new()));
        let staged = collector.into_inner().expect("collector lock").finish(layout, *run_id, today)?;
        merge_into(metrics, &staged);
        if pending.is_empty() {
            return Ok(());
        }
        let mut run = Run::new(*run_id, RunKind::Ingest, command, std::mem::take(started));
        run.raw = std::mem::take(pending);
        run.staging = Some(staged.change);
        run.accounting = staged.accounting;
        run.rejects = staged.rejects;
        run.stats.insert("files".into(), serde_json::to_value(&staged.files).expect("reports serialize"));
        manifest.commit(layout, run)?;
        metrics.committed = true;
        metrics.run = *run_id;
        *run_id = manifest.next_run_id();
        *started = now_rfc3339();
        Ok(())
    };

    for (index, (name, kind, entry)) in history.iter().enumerate() {
        bar.set_message(name.rsplit('/').next().unwrap_or(name).to_string());
        let bytes = export.read(entry)?;
        let sha = sha256_hex(&bytes);
        let account = match &account {
            Some(a) => a.clone(),
            None => spotify_export::first_username(&bytes)
                .ok_or_else(|| SourceError::NoAccount { path: path.join(name) })?,
        };
        let raw = RawFile {
            path: Layout::raw_rel(spotify_export::SOURCE, today, &sha),
            sha256: sha.clone(),
            source: spotify_export::SOURCE.into(),
            kind: kind.to_string(),
            origin: name.clone(),
            bytes: bytes.len() as u64,
            account: Some(account),
            offset: None,
        };
        if !known.insert(sha) {
            metrics.files_already_stored += 1;
            metrics
                .files
                .push(FileReport { already_stored: true, ..FileReport::new(&raw, &Accounting::default(), true) });
            bar.inc(1);
            continue;
        }
        fsio::write_atomic(&layout.abs(&raw.path), &bytes)?;
        stage(layout, run_id, index, &raw, &bytes, &out)?;
        metrics.files_new += 1;
        metrics.bytes_new += raw.bytes;
        pending.push(raw);
        if pending.len() >= EXPORT_FILES_PER_COMMIT {
            commit(manifest, &mut pending, &mut out, &mut run_id, &mut started, &mut metrics)?;
        }
        bar.inc(1);
    }
    commit(manifest, &mut pending, &mut out, &mut run_id, &mut started, &mut metrics)?;
    bar.finish_and_clear();
    Ok(metrics)
}

/// Adds one committed chunk's figures to the whole import's.
fn merge_into(metrics: &mut IngestMetrics, staged: &Staged) {
    for acc in &staged.accounting {
        match metrics.accounting.iter_mut().find(|a| a.source == acc.source && a.stream == acc.stream) {
            Some(a) => a.add(acc),
            None => metrics.accounting.push(acc.clone()),
        }
    }
    let room = MAX_REJECTS_KEPT.saturating_sub(metrics.rejects.len());
    metrics.rejects.extend(staged.rejects.iter().take(room).cloned());
    metrics.staging_files += staged.change.files.len();
    metrics.files.extend(staged.files.iter().cloned());
}

/// Raw responses stored one by one and committed together (the API source):
/// each is written to raw/ and staged as it arrives; the manifest entry, with
/// whatever `stats` the caller adds (a cursor), is the commit.
pub(crate) struct RawBatch<'a> {
    layout: &'a Layout,
    command: String,
    run: u64,
    started: String,
    raws: Vec<RawFile>,
    /// sha256 of every raw file stored before and in this batch.
    known: HashSet<String>,
    next_index: usize,
    out: Mutex<Collector>,
    pub stats: BTreeMap<String, serde_json::Value>,
    /// Commit even with no new raw file (to record stats such as ids found missing).
    pub force: bool,
}

impl<'a> RawBatch<'a> {
    pub fn new(layout: &'a Layout, manifest: &Manifest, command: &str) -> Result<Self, LakeError> {
        Ok(RawBatch {
            layout,
            command: command.into(),
            run: manifest.next_run_id(),
            started: now_rfc3339(),
            raws: vec![],
            known: manifest.raw_shas()?,
            next_index: manifest.raw_count() as usize,
            out: Mutex::new(Collector::new()),
            stats: BTreeMap::new(),
            force: false,
        })
    }

    /// Stores and stages one response, unless the same bytes are stored already.
    pub fn add(
        &mut self,
        source: &str,
        kind: &str,
        origin: &str,
        account: Option<&str>,
        bytes: &[u8],
    ) -> Result<(), SourceError> {
        let sha = sha256_hex(bytes);
        if !self.known.insert(sha.clone()) {
            return Ok(());
        }
        let raw = RawFile {
            path: Layout::raw_rel(source, Utc::now().date_naive(), &sha),
            sha256: sha,
            source: source.into(),
            kind: kind.into(),
            origin: origin.into(),
            bytes: bytes.len() as u64,
            account: account.map(String::from),
            offset: None,
        };
        fsio::write_atomic(&self.layout.abs(&raw.path), bytes)?;
        stage(self.layout, self.run, self.next_index, &raw, bytes, &self.out)?;
        self.next_index += 1;
        self.raws.push(raw);
        Ok(())
    }

    /// Commits the batch (unless it holds nothing to record); returns its accounting.
    pub fn commit(self, manifest: &mut Manifest) -> Result<Vec<Accounting>, SourceError> {
        let staged =
            self.out.into_inner().expect("collector lock").finish(self.layout, self.run, Utc::now().date_naive())?;
        if self.raws.is_empty() && !self.force && self.stats.is_empty() {
            return Ok(staged.accounting);
        }
        let mut run = Run::new(self.run, RunKind::Ingest, &self.command, self.started);
        run.raw = self.raws;
        // A run that staged nothing leaves staging as it was (and the star up to date).
        run.staging = (!staged.change.files.is_empty()).then_some(staged.change);
        run.accounting = staged.accounting.clone();
        run.rejects = staged.rejects;
        run.stats = self.stats;
        manifest.commit(self.layout, run)?;
        Ok(staged.accounting)
    }
}
