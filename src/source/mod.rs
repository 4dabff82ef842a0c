//! Stage 1: the only code that knows input formats. Each source turns what
//! it reads into raw files (exact bytes, content-addressed) and typed staging
//! Parquet, and commits both with one manifest entry.
//!
//! A source finds its files and offers each one to an `Intake`, the one
//! path that stores, skips, stages, counts and commits for all of them:
//! [`ingest_sparkify`] walks a Sparkify folder, [`ingest_spotify_export`] an
//! export's zip or folder, and `spotify_api::pull` offers Web API responses.
//! [`reprocess`] re-parses every stored raw file into a fresh staging set,
//! for a parser fix or a new model.

pub mod chunks;
pub mod compact;
mod intake;
pub mod normalize;
pub mod sparkify;
pub mod spotify_api;
pub mod spotify_auth;
pub mod spotify_export;
mod stage;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::Utc;
use rayon::prelude::*;

use crate::lake::manifest::{Accounting, Commit, RawFile, Reject, Run, RunKind, now_rfc3339};
pub use crate::lake::stats::FileReport;
use crate::lake::stats::{IngestStats, RunStats};
use crate::lake::{LakeError, Layout, Manifest, raw, sha256_hex};
use crate::progress;
pub(crate) use intake::{Found, Intake, Keeping};
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
    let bar = progress::bar(logs.len() as u64, "ingest sparkify");
    let keeping = Keeping { pack_small: true, report_files: false };
    let intake = Intake::new(layout, manifest, sparkify::SOURCE, command, keeping, bar)?;
    let offer = |index: usize, rel: &PathBuf, kind: &'static str| {
        let found = Found { index: Some(index), kind, origin: rel.to_string_lossy().into_owned(), account: None };
        intake.offer_file(&dir.join(rel), found).map(drop)
    };
    // Logs first: the few big files start early, and the many small song
    // files fill in behind them. The song files are listed meanwhile, on the
    // other core, instead of before with both cores waiting. One file per
    // task: rayon otherwise hands each thread a run of files to read in order,
    // and the run holding every log file left the other core idle.
    let (logs_done, songs) = rayon::join(
        || logs.par_iter().with_max_len(1).enumerate().try_for_each(|(i, rel)| offer(i, rel, sparkify::KIND_LOG)),
        || {
            let songs = if song_dir.is_dir() { json_files(dir, &song_dir)? } else { vec![] };
            intake.bar().inc_length(songs.len() as u64);
            tracing::debug!(songs = songs.len(), seconds = t0.elapsed().as_secs_f64(), "ingest sparkify: songs listed");
            Ok::<_, SourceError>(songs)
        },
    );
    let songs = songs?;
    logs_done?;
    (songs.par_iter().with_max_len(1).enumerate())
        .try_for_each(|(i, rel)| offer(logs.len() + i, rel, sparkify::KIND_SONG))?;
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), "ingest sparkify: read, stored and staged");
    let metrics = intake.finish(manifest, commit)?;
    tracing::debug!(seconds = t0.elapsed().as_secs_f64(), ?commit, "ingest sparkify: run committed");
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
    run.stats = RunStats::Ingest(IngestStats { files: metrics.files.clone(), ..IngestStats::default() });
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

    /// Whose export it is: `user` when given, else its Userdata.json's
    /// username; `None` leaves it to each file's records.
    fn account(&mut self, user: Option<&str>) -> Result<Option<String>, SourceError> {
        Ok(match user {
            Some(u) => Some(u.to_string()),
            None => match self.userdata.take() {
                Some(entry) => spotify_export::userdata_username(&self.read(&entry)?),
                None => None,
            },
        })
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
    let account = export.account(user)?;
    let history = std::mem::take(&mut export.history);
    let bar = progress::bar(history.len() as u64, "ingest export");
    let keeping = Keeping { pack_small: false, report_files: true };
    let mut intake = Intake::new(layout, manifest, spotify_export::SOURCE, command, keeping, bar)?;
    let mut uncommitted = 0;
    for (name, kind, entry) in &history {
        intake.bar().set_message(name.rsplit('/').next().unwrap_or(name).to_string());
        let bytes = export.read(entry)?;
        let account = match &account {
            Some(a) => a.clone(),
            None => spotify_export::first_username(&bytes)
                .ok_or_else(|| SourceError::NoAccount { path: path.join(name) })?,
        };
        let found = Found { index: None, kind, origin: name.clone(), account: Some(account) };
        uncommitted += intake.offer(found, bytes)? as usize;
        if uncommitted >= EXPORT_FILES_PER_COMMIT {
            intake.commit(manifest, Commit::Wait)?;
            uncommitted = 0;
        }
    }
    intake.finish(manifest, Commit::Wait)
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
