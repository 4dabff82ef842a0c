//! How a raw file's bytes become staging files: [`stage`] parses one file
//! and writes its staging Parquet (logs, exports) or keeps its rows for the
//! run's end (songs, API responses), [`stage_log_in_pieces`] does the same
//! for a log too big to read whole, and [`Collector`] gathers what parallel
//! parsing produces (accounting, rejects, files) into one run's staging
//! change. Staging files are written without an fsync of their own: the
//! commit makes them durable (`fsio::sync_files` in `Manifest::commit`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{NaiveDate, Utc};
use datafusion::arrow::record_batch::RecordBatch;
use rayon::prelude::*;

use super::{FileReport, SourceError, chunks, sparkify, spotify_api, spotify_export};
use crate::lake::manifest::{Accounting, MAX_REJECTS_KEPT, RawFile, Reject, StagingChange, StagingFile};
use crate::lake::{LakeError, Layout, parquet, staging};

/// Gathers what parallel parsing produces into one run's staging change.
pub(super) struct Collector {
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

impl Collector {
    pub(super) fn new() -> Self {
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
    pub(super) fn finish(mut self, layout: &Layout, run: u64, date: NaiveDate) -> Result<Staged, LakeError> {
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
        let change = StagingChange { replace: false, files: self.files, removed: vec![] };
        Ok(Staged {
            change,
            accounting: self.accounting.into_values().collect(),
            rejects: self.rejects,
            files: self.per_file,
        })
    }
}

/// What a batch of raw files became in staging.
pub(super) struct Staged {
    pub(super) change: StagingChange,
    pub(super) accounting: Vec<Accounting>,
    pub(super) rejects: Vec<Reject>,
    pub(super) files: Vec<FileReport>,
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
/// files are sorted again by every build, at a cost in memory. A log in time order so gets one file per
/// date, like the Sparkify day files; memory holds the parsed pieces and
/// one date. `bar` counted the file as one step: it moves by piece instead.
pub(super) fn stage_log_in_pieces(
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
    // About this many pieces (one holds at most chunks::PIECE bytes, unless a
    // line is longer); the count is corrected as they come.
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

/// The accounting stream a file of `source` and `kind` feeds, where the
/// source counts files stored already or unreadable by stream (Sparkify);
/// the others name each file in their report instead.
pub(super) fn stream_of(source: &str, kind: &str) -> Option<&'static str> {
    match (source, kind) {
        (sparkify::SOURCE, sparkify::KIND_LOG) => Some("events"),
        (sparkify::SOURCE, _) => Some("songs"),
        _ => None,
    }
}

/// Whether a file of `source` and `kind` can be staged piece by piece
/// ([`stage_log_in_pieces`]) when it is too big to read whole.
pub(super) fn in_pieces(source: &str, kind: &str) -> bool {
    (source, kind) == (sparkify::SOURCE, sparkify::KIND_LOG)
}

/// Parses one raw file's bytes and writes its staging files (logs) or keeps
/// its rows for [`Collector::finish`] (songs, which are small and many).
/// Staging files are written without their own fsync: every caller makes
/// them durable with one `fsio::sync_files` when it commits (`Manifest::commit`).
pub(super) fn stage(
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
            let (table, batch, acc, rejects) = parse_api(raw, kind, index, bytes);
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

/// One Web API response: its staging table, its rows, and its accounting
/// and rejects (the items kept with U+0000 removed among them).
fn parse_api(
    raw: &RawFile,
    kind: &str,
    index: usize,
    bytes: &[u8],
) -> (&'static str, Option<RecordBatch>, Accounting, Vec<Reject>) {
    let mut acc = Accounting::new(spotify_api::SOURCE, kind);
    acc.files = 1;
    let (mut rejects, mut changed) = (vec![], vec![]);
    let origin = || raw.origin.clone();
    let (table, batch) = match kind {
        spotify_api::KIND_ME => match spotify_api::parse_me(bytes, index as i64, &raw.sha256) {
            Ok((_, b, nul_paths)) => {
                changed.extend((!nul_paths.is_empty()).then(|| Reject::nul_removed(origin(), 1, &nul_paths)));
                (staging::STG_SPOTIFY_API_USERS, Some(b))
            }
            Err(reason) => {
                rejects.push(Reject::new(origin(), 1, reason));
                (staging::STG_SPOTIFY_API_USERS, None)
            }
        },
        spotify_api::KIND_RECENT => {
            let user = raw.account.as_deref().unwrap_or_default();
            match spotify_api::parse_page(bytes, user, &raw.sha256) {
                Ok(page) => {
                    acc.read = (page.played_ms.len() + page.rejected.len()) as u64;
                    acc.plays = page.played_ms.len() as u64;
                    rejects.extend(page.rejected.into_iter().map(|(line, why)| Reject::new(origin(), line, why)));
                    changed.extend(page.nul_removed.iter().map(|(line, p)| Reject::nul_removed(origin(), *line, p)));
                    (staging::STG_SPOTIFY_API_PLAYS, Some(page.plays))
                }
                Err(reason) => {
                    acc.read = 1;
                    rejects.push(Reject::new(origin(), 0, reason));
                    (staging::STG_SPOTIFY_API_PLAYS, None)
                }
            }
        }
        _ => match spotify_api::parse_entity(kind, bytes, &raw.sha256) {
            Ok((b, nul_paths)) => {
                changed.extend((!nul_paths.is_empty()).then(|| Reject::nul_removed(origin(), 1, &nul_paths)));
                (staging::STG_SPOTIFY_API_ENTITIES, Some(b))
            }
            Err(reason) => {
                rejects.push(Reject::new(origin(), 1, reason));
                (staging::STG_SPOTIFY_API_ENTITIES, None)
            }
        },
    };
    if kind != spotify_api::KIND_RECENT {
        acc.read = 1;
    }
    acc.rejected = rejects.len() as u64;
    acc.kept = acc.read - acc.rejected;
    acc.nul_removed = changed.len() as u64;
    rejects.extend(changed);
    (table, batch, acc, rejects)
}

/// Song rows an ingest gathers before it turns them into an Arrow batch.
const SONG_BATCH_ROWS: usize = 8192;
