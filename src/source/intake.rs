//! The one way raw bytes enter the lake, whatever the source. A source finds
//! its files (a Sparkify folder, an export's zip, Web API responses) and
//! offers each one to an [`Intake`], which skips what is stored already
//! (repairing a damaged stored copy from it), stores the rest under raw/,
//! stages it (`stage`, which knows every source's parser), counts every file
//! and record, and commits the run with one ledger entry.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use chrono::{NaiveDate, Utc};
use indicatif::ProgressBar;

use super::stage::{self, Collector, Staged};
use super::{FileReport, IngestMetrics, SourceError, chunks, compact};
use crate::lake::manifest::{Accounting, Commit, MAX_REJECTS_KEPT, RawFile, Reject, Run, RunKind, now_rfc3339};
use crate::lake::stats::{IngestStats, RunStats};
use crate::lake::{Layout, Manifest, fsio, raw, sha256_hex};

/// A file a source found, before its bytes are looked at.
pub(crate) struct Found<'s> {
    /// The file's place in the run, which names its staging files; `None`
    /// takes the next raw file's position in the lake (the Web API's
    /// `/v1/me` responses are ordered by it).
    pub index: Option<usize>,
    /// What the bytes are, for the parser: `song`, `log`, `extended`, ...
    pub kind: &'s str,
    /// Where it came from: the path inside the folder or zip, or the endpoint.
    pub origin: String,
    /// Whose history it is, when its records do not say.
    pub account: Option<String>,
}

/// How a source's files are kept and reported.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keeping {
    /// Small files go into one pack per run ([`raw::Pack`]): a source of
    /// many tiny files (Sparkify's songs) would otherwise cost a file each.
    pub pack_small: bool,
    /// The summary names every file and what became of it (exports).
    pub report_files: bool,
}

/// Stores, stages, counts and commits what a source offers; see the module.
/// Offers may come from several threads at once.
pub(crate) struct Intake<'a> {
    layout: &'a Layout,
    source: &'static str,
    command: String,
    keeping: Keeping,
    today: NaiveDate,
    /// sha256 of every raw file stored before and by this intake.
    known: Mutex<HashSet<String>>,
    /// Stored copies `verify` found damaged: an original that hashes as one replaces it.
    repairs: raw::Repairs<'a>,
    next_index: AtomicUsize,
    bar: ProgressBar,
    part: Part,
    metrics: IngestMetrics,
    /// Figures the source records with the run (the Web API's cursor).
    pub stats: IngestStats,
    /// Commit even with no new raw file (to record stats such as ids found missing).
    pub force: bool,
}

/// What one run gathers until it commits.
struct Part {
    run: u64,
    started: String,
    stored: Mutex<Vec<RawFile>>,
    pack: Option<Mutex<raw::Pack>>,
    /// Writes the files stored alone on a thread of its own; started with the first.
    writer: OnceLock<fsio::RawWriter>,
    out: Mutex<Collector>,
    /// Files whose bytes are stored already: (kind, origin).
    skipped: Mutex<Vec<(String, String)>>,
    /// Files that could not be read: (kind, the reject naming them).
    unreadable: Mutex<Vec<(String, Reject)>>,
}

impl Part {
    fn new(layout: &Layout, source: &str, today: NaiveDate, run: u64, keeping: Keeping) -> Self {
        let pack =
            keeping.pack_small.then(|| Mutex::new(raw::Pack::new(layout, Layout::raw_pack_rel(source, today, run))));
        Part {
            run,
            started: now_rfc3339(),
            stored: Mutex::default(),
            pack,
            writer: OnceLock::new(),
            out: Mutex::new(Collector::new()),
            skipped: Mutex::default(),
            unreadable: Mutex::default(),
        }
    }
}

impl<'a> Intake<'a> {
    /// An intake of `source`'s files into the next run of `manifest`; `bar`
    /// moves by one for every file offered.
    pub fn new(
        layout: &'a Layout,
        manifest: &Manifest,
        source: &'static str,
        command: &str,
        keeping: Keeping,
        bar: ProgressBar,
    ) -> Result<Self, SourceError> {
        let today = Utc::now().date_naive();
        Ok(Intake {
            layout,
            source,
            command: command.into(),
            keeping,
            today,
            known: Mutex::new(manifest.raw_shas()?),
            repairs: raw::Repairs::load(layout)?,
            next_index: AtomicUsize::new(manifest.raw_count() as usize),
            bar,
            part: Part::new(layout, source, today, manifest.next_run_id(), keeping),
            metrics: IngestMetrics::default(),
            stats: IngestStats::default(),
            force: false,
        })
    }

    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }

    /// Stores and stages `bytes` unless the same bytes are stored already;
    /// whether they were new.
    pub fn offer(&self, found: Found<'_>, bytes: Vec<u8>) -> Result<bool, SourceError> {
        let sha = sha256_hex(&bytes);
        if !self.known.lock().expect("known lock").insert(sha.clone()) {
            self.repairs.offer(&sha, &bytes)?;
            self.skip(found);
            return Ok(false);
        }
        let index = self.index_of(&found);
        let raw = self.raw_file(found, sha, bytes.len() as u64);
        stage::stage(self.layout, self.part.run, index, &raw, &bytes, &self.part.out)?;
        match &self.part.pack {
            Some(pack) if bytes.len() < raw::PACK_BELOW => pack.lock().expect("pack lock").add(raw, bytes)?,
            _ => {
                // Made durable with the run's other files when it commits (`fsio::sync_files`).
                let writer = self.part.writer.get_or_init(|| fsio::RawWriter::start(2));
                writer.write(self.layout.abs(&raw.path), bytes)?;
                self.part.stored.lock().expect("stored lock").push(raw);
            }
        }
        self.bar.inc(1);
        Ok(true)
    }

    /// Offers the file at `path`: read whole, or, for a file too big to hold
    /// that can be staged in pieces (a Sparkify log from [`chunks::STREAM_FROM`]),
    /// copied into raw/ as it is read and staged from that copy, so memory
    /// stays bounded. A file that cannot be read is rejected by name and the
    /// others go on.
    pub fn offer_file(&self, path: &Path, found: Found<'_>) -> Result<bool, SourceError> {
        let in_pieces = stage::in_pieces(self.source, found.kind);
        let read = || -> std::io::Result<Option<Vec<u8>>> {
            let mut file = std::fs::File::open(path)?;
            let len = file.metadata()?.len();
            if in_pieces && len >= chunks::STREAM_FROM {
                return Ok(None);
            }
            let mut bytes = Vec::with_capacity(len as usize);
            file.read_to_end(&mut bytes)?;
            Ok(Some(bytes))
        };
        match read() {
            Ok(Some(bytes)) => self.offer(found, bytes),
            Ok(None) => self.offer_big_file(path, found),
            Err(e) => {
                let reject = Reject::new(found.origin, 0, format!("cannot read the file: {e}"));
                self.part.unreadable.lock().expect("unreadable lock").push((found.kind.to_string(), reject));
                self.bar.inc(1);
                Ok(false)
            }
        }
    }

    fn offer_big_file(&self, path: &Path, found: Found<'_>) -> Result<bool, SourceError> {
        let t = std::time::Instant::now();
        let incoming = raw::copy_in(path, &self.layout.abs(&Layout::raw_dir_rel(self.source, self.today)))?;
        tracing::debug!(file = %found.origin, bytes = incoming.bytes, seconds = t.elapsed().as_secs_f64(), "copied into raw/");
        if !self.known.lock().expect("known lock").insert(incoming.sha256.clone()) {
            self.repairs.offer_copy(incoming)?;
            self.skip(found);
            return Ok(false);
        }
        let index = self.index_of(&found);
        let raw = self.raw_file(found, incoming.sha256.clone(), incoming.bytes);
        incoming.keep(&self.layout.abs(&raw.path))?;
        // Moves the bar by piece, having counted the file as one step.
        stage::stage_log_in_pieces(self.layout, (self.part.run, index), &raw, false, &self.part.out, &self.bar)?;
        tracing::debug!(file = %raw.origin, seconds = t.elapsed().as_secs_f64(), "staged in pieces");
        self.part.stored.lock().expect("stored lock").push(raw);
        Ok(true)
    }

    fn index_of(&self, found: &Found<'_>) -> usize {
        found.index.unwrap_or_else(|| self.next_index.fetch_add(1, Ordering::Relaxed))
    }

    fn raw_file(&self, found: Found<'_>, sha256: String, bytes: u64) -> RawFile {
        RawFile {
            path: Layout::raw_rel(self.source, self.today, &sha256),
            sha256,
            source: self.source.into(),
            kind: found.kind.into(),
            origin: found.origin,
            bytes,
            account: found.account,
            offset: None,
        }
    }

    fn skip(&self, found: Found<'_>) {
        self.part.skipped.lock().expect("skipped lock").push((found.kind.to_string(), found.origin));
        self.bar.inc(1);
    }

    /// Commits what was offered since the last commit as one run, unless it
    /// stored nothing new and has nothing else to record; the next offers go
    /// into the run after it. An interrupted import keeps what it committed.
    pub fn commit(&mut self, manifest: &mut Manifest, how: Commit) -> Result<(), SourceError> {
        let part = self.take_part();
        self.commit_part(part, manifest, how)?;
        self.part = Part::new(self.layout, self.source, self.today, manifest.next_run_id(), self.keeping);
        Ok(())
    }

    /// Commits the last run and says what the whole intake did.
    pub fn finish(mut self, manifest: &mut Manifest, how: Commit) -> Result<IngestMetrics, SourceError> {
        let part = self.take_part();
        self.commit_part(part, manifest, how)?;
        self.repairs.finish()?;
        self.bar.finish_and_clear();
        self.metrics.files.sort_by(|a, b| a.origin.cmp(&b.origin));
        Ok(self.metrics)
    }

    /// The run gathered so far, leaving an empty one that writes nothing.
    fn take_part(&mut self) -> Part {
        std::mem::replace(&mut self.part, Part::new(self.layout, self.source, self.today, 0, self.keeping))
    }

    fn commit_part(&mut self, part: Part, manifest: &mut Manifest, how: Commit) -> Result<(), SourceError> {
        if let Some(writer) = part.writer.into_inner() {
            writer.finish()?;
        }
        let mut stored = part.stored.into_inner().expect("stored lock");
        if let Some(pack) = part.pack {
            stored.extend(pack.into_inner().expect("pack lock").finish()?);
        }
        stored.sort_by(|a, b| a.origin.cmp(&b.origin));
        let mut staged = part.out.into_inner().expect("collector lock").finish(self.layout, part.run, self.today)?;
        let skipped = part.skipped.into_inner().expect("skipped lock");
        self.count_skipped_and_unreadable(
            &mut staged,
            &skipped,
            part.unreadable.into_inner().expect("unreadable lock"),
        );
        self.add_to_metrics(part.run, &staged, &stored, &skipped);
        if stored.is_empty() && !self.force && self.stats == IngestStats::default() {
            // Nothing new: nothing to commit, and the lake is left exactly as it was.
            return Ok(());
        }
        let Staged { change: mut staging, accounting, rejects, files } = staged;
        compact::compact(self.layout, manifest, part.run, &mut staging)?;
        let mut run = Run::new(part.run, RunKind::Ingest, &self.command, part.started);
        run.raw = stored;
        // A run that staged nothing leaves staging as it was (and the star up to date).
        run.staging = (!staging.files.is_empty()).then_some(staging);
        run.accounting = accounting;
        run.rejects = rejects;
        let files = if self.keeping.report_files { files } else { vec![] };
        run.stats = RunStats::Ingest(IngestStats { files, ..self.stats.clone() });
        match how {
            Commit::Wait => manifest.commit(self.layout, run)?,
            Commit::Behind => manifest.commit_behind(self.layout, run)?,
        }
        self.metrics.committed = true;
        self.metrics.run = part.run;
        Ok(())
    }

    /// Adds the files found stored already and those that could not be read
    /// to the accounting of the streams they feed, and the latter to the rejects.
    fn count_skipped_and_unreadable(
        &self,
        staged: &mut Staged,
        skipped: &[(String, String)],
        unreadable: Vec<(String, Reject)>,
    ) {
        for (kind, _) in skipped {
            if let Some(stream) = stage::stream_of(self.source, kind) {
                Accounting::of(&mut staged.accounting, self.source, stream).files_already_stored += 1;
            }
        }
        for (kind, reject) in unreadable {
            tracing::warn!(file = %reject.file, reason = %reject.reason, "file rejected");
            if let Some(stream) = stage::stream_of(self.source, &kind) {
                Accounting::of(&mut staged.accounting, self.source, stream).files_unreadable += 1;
            }
            staged.rejects.push(reject);
        }
    }

    /// Adds one run's figures to the whole intake's.
    fn add_to_metrics(&mut self, run: u64, staged: &Staged, stored: &[RawFile], skipped: &[(String, String)]) {
        let m = &mut self.metrics;
        if !m.committed {
            m.run = run;
        }
        m.files_new += stored.len() as u64;
        m.files_already_stored += skipped.len() as u64;
        m.bytes_new += stored.iter().map(|r| r.bytes).sum::<u64>();
        for acc in &staged.accounting {
            Accounting::of(&mut m.accounting, &acc.source, &acc.stream).add(acc);
        }
        let room = MAX_REJECTS_KEPT.saturating_sub(m.rejects.len());
        m.rejects.extend(staged.rejects.iter().take(room).cloned());
        m.staging_files += staged.change.files.len();
        m.files.extend(staged.files.iter().cloned());
        if self.keeping.report_files {
            let already = |(kind, origin): &(String, String)| FileReport {
                origin: origin.clone(),
                kind: kind.clone(),
                already_stored: true,
                ..FileReport::default()
            };
            m.files.extend(skipped.iter().map(already));
        }
    }
}
