//! Stage 1: the only code that knows input formats. Each source turns what
//! it reads into raw files (exact bytes, content-addressed) and typed staging
//! Parquet, and commits both with one manifest entry.
//!
//! [`ingest_sparkify`] reads a Sparkify folder; [`reprocess`] re-parses every
//! stored raw file into a fresh staging set, for a parser fix or a new model.
//! These, the export import and the API source (`RawBatch`) hand each raw file's
//! bytes to `stage`, which parses them and writes the staging files.

pub mod chunks;
pub mod compact;
pub mod normalize;
pub mod sparkify;
pub mod spotify_api;
pub mod spotify_auth;
pub mod spotify_export;
mod stage;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::Utc;
use rayon::prelude::*;

use crate::lake::manifest::{Accounting, Commit, MAX_REJECTS_KEPT, RawFile, Reject, Run, RunKind, now_rfc3339};
use crate::lake::{LakeError, Layout, Manifest, fsio, raw, sha256_hex};
use crate::progress;
use stage::{Collector, Staged, stage, stage_log_in_pieces};

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
    #[error(
        "{path}: zip entry {entry} unpacks to more than {limit} bytes, past what a streaming history \
         can be (at most 100 times its packed size, 16 MiB to 1 GiB); it is not imported"
    )]
    ZipEntryTooLarge { path: PathBuf, entry: String, limit: u64 },
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
#[derive(Debug, Clone, Default, serde::Serialize)]
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

/// The accounting of the Sparkify stream a file `kind` feeds, added when missing.
fn stream_of<'a>(accounting: &'a mut Vec<Accounting>, kind: &str) -> &'a mut Accounting {
    let stream = if kind == sparkify::KIND_LOG { "events" } else { "songs" };
    match accounting.iter().position(|a| a.stream == stream) {
        Some(i) => &mut accounting[i],
        None => {
            accounting.push(Accounting::new(sparkify::SOURCE, stream));
            accounting.last_mut().expect("just pushed")
        }
    }
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
    commit: Commit,
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
    // Logs under chunks::STREAM_FROM, read whole, are stored from memory on a
    // thread of their own; two wait at most.
    let raw_writer = fsio::RawWriter::start(2);

    // Stored copies `verify` found damaged: an original that hashes as one replaces it.
    let repairs = raw::Repairs::load(layout)?;
    // A big log is copied into raw/ as it is read, then staged from that
    // copy piece by piece (`chunks`), so memory stays bounded.
    let ingest_big_log = |index: usize, rel: &PathBuf, path: &Path| -> Result<(), SourceError> {
        let t = std::time::Instant::now();
        let incoming = raw::copy_in(path, &layout.abs(&Layout::raw_dir_rel(sparkify::SOURCE, today)))?;
        tracing::debug!(file = %rel.display(), bytes = incoming.bytes, seconds = t.elapsed().as_secs_f64(), "copied into raw/");
        if !seen.lock().expect("seen lock").insert(incoming.sha256.clone()) {
            repairs.offer_copy(incoming)?;
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
    // Input files that cannot be read: each one rejected, the others stored.
    let unreadable = Mutex::new(Vec::<(&'static str, Reject)>::new());
    let ingest_one = |index: usize, rel: &PathBuf, kind: &'static str| -> Result<(), SourceError> {
        let path = dir.join(rel);
        let read = || -> std::io::Result<Option<Vec<u8>>> {
            if kind != sparkify::KIND_LOG {
                return std::fs::read(&path).map(Some);
            }
            let mut file = std::fs::File::open(&path)?;
            let len = file.metadata()?.len();
            if len >= chunks::STREAM_FROM {
                return Ok(None);
            }
            let mut bytes = Vec::with_capacity(len as usize);
            std::io::Read::read_to_end(&mut file, &mut bytes)?;
            Ok(Some(bytes))
        };
        let bytes = match read() {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return ingest_big_log(index, rel, &path),
            Err(e) => {
                let file = rel.to_string_lossy().into_owned();
                let reject = Reject::new(file, 0, format!("cannot read the file: {e}"));
                unreadable.lock().expect("unreadable lock").push((kind, reject));
                bar.inc(1);
                return Ok(());
            }
        };
        let sha = sha256_hex(&bytes);
        if !seen.lock().expect("seen lock").insert(sha.clone()) {
            repairs.offer(&sha, &bytes)?;
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
            raw_writer.write(layout.abs(&raw.path), bytes)?;
            raw_added.lock().expect("raw lock").push(raw);
        }
        bar.inc(1);
        Ok(())
    };
    // Logs first: the few big files start early, and the many small song
    // files fill in behind them. The song files are listed meanwhile, on the
    // other core, instead of before with both cores waiting. One file per
    // task: rayon otherwise hands each thread a run of files to read in order,
    // and the run holding every log file left the other core idle.
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
    raw_writer.finish()?;
    bar.finish_and_clear();
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "ingest sparkify: read, stored and staged");

    let packed = pack.into_inner().expect("pack lock").finish()?;
    let mut raw = raw_added.into_inner().expect("raw lock");
    raw.extend(packed);
    raw.sort_by(|a, b| a.origin.cmp(&b.origin));
    let skipped = skipped.into_inner().expect("skipped lock");
    let Staged { change: staging, mut accounting, mut rejects, .. } =
        out.into_inner().expect("collector lock").finish(layout, run_id, today)?;
    for (kind, n) in &skipped {
        stream_of(&mut accounting, kind).files_already_stored += n;
    }
    repairs.finish()?;
    for (kind, reject) in unreadable.into_inner().expect("unreadable lock") {
        tracing::warn!(file = %reject.file, reason = %reject.reason, "file rejected");
        stream_of(&mut accounting, kind).files_unreadable += 1;
        rejects.push(reject);
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
    let mut staging = staging;
    compact::compact(layout, manifest, run_id, &mut staging)?;
    let mut run = Run::new(run_id, RunKind::Ingest, command, started);
    run.raw = raw;
    run.staging = Some(staging);
    run.accounting = accounting;
    run.rejects = rejects;
    match commit {
        Commit::Wait => manifest.commit(layout, run)?,
        Commit::Behind => manifest.commit_behind(layout, run)?,
    }
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), ?commit, "ingest sparkify: run committed");
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

/// The most bytes a zip entry of `compressed` bytes may unpack to: 100 times
/// its size (JSON history compresses about tenfold), at least 16 MiB, at most
/// 1 GiB. A zip bomb (1 MB of spaces unpacking to 1 GiB) is stopped there,
/// before it fills memory or raw/.
fn unzip_limit(compressed: u64) -> u64 {
    const MIB: u64 = 1 << 20;
    compressed.saturating_mul(100).clamp(16 * MIB, 1024 * MIB)
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
                let f = zip.by_index(*i).map_err(|e| SourceError::Zip { path: self.path.clone(), source: e })?;
                let limit = unzip_limit(f.compressed_size());
                let entry = f.name().map(|n| n.into_owned()).unwrap_or_default();
                // The entry's header may lie about its size: read one byte past the limit at most.
                let mut bytes = Vec::with_capacity(f.size().min(limit) as usize);
                std::io::Read::read_to_end(&mut std::io::Read::take(f, limit + 1), &mut bytes)
                    .map_err(|source| SourceError::Read { path: self.path.clone(), source })?;
                if bytes.len() as u64 > limit {
                    return Err(SourceError::ZipEntryTooLarge { path: self.path.clone(), entry, limit });
                }
                Ok(bytes)
            }
        }
    }
}

/// Files committed together: an interrupted import keeps what it committed
/// and the next run skips those files (they are stored) and does the rest.
const EXPORT_FILES_PER_COMMIT: usize = 4;

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
    let repairs = raw::Repairs::load(layout)?;
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
            repairs.offer(&raw.sha256, &bytes)?;
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
    repairs.finish()?;
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
        let mut change = staged.change;
        compact::compact(self.layout, manifest, self.run, &mut change)?;
        run.staging = (!change.files.is_empty()).then_some(change);
        run.accounting = staged.accounting.clone();
        run.rejects = staged.rejects;
        run.stats = self.stats;
        manifest.commit(self.layout, run)?;
        Ok(staged.accounting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 24: a small zip unpacking to 1 GiB of spaces was imported whole,
    /// into memory and into raw/ for good.
    #[test]
    fn issue_24_a_zip_entry_that_unpacks_past_its_limit_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("my_spotify_data.zip");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("Spotify Extended Streaming History/Streaming_History_Audio_2024.json", deflated).unwrap();
        let spaces = vec![b' '; 1 << 20];
        for _ in 0..40 {
            std::io::Write::write_all(&mut zip, &spaces).unwrap();
        }
        zip.finish().unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20, "40 MiB of spaces pack small");

        let layout = Layout::new(dir.path().join("lake"));
        let mut manifest = Manifest::load(&layout).unwrap();
        let err = ingest_spotify_export(&layout, &mut manifest, &path, Some("me"), "test").unwrap_err().to_string();
        assert!(err.contains("Streaming_History_Audio_2024.json") && err.contains("16777216 bytes"), "{err}");
        assert!(Manifest::load(&layout).unwrap().run_count() == 0, "nothing committed");
        assert!(!dir.path().join("lake/raw").exists(), "nothing stored");
        assert_eq!(unzip_limit(10 << 20), 1000 << 20);
        assert_eq!(unzip_limit(100 << 20), 1 << 30);
    }
}
