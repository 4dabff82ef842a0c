//! `tunelake vacuum`: removes files no committed run needs: temp files and
//! the output of crashed runs, staging replaced by a reprocess, and star
//! files that no version within the retention needs. A star file is kept
//! while any of these names it: the current version; a version that was
//! current less than `retain` ago (a reader that started on it, tunelake's
//! `query --as-of` or another engine's, still finds its files); the version
//! PostgreSQL last got (the next sync sends only what differs from it); the
//! latest version of its Delta table, or a version a Delta commit replaced
//! less than `retain` ago. A raw file a committed run names is
//! never removed, and neither is a Delta log nor a ledger entry; a ledger
//! checkpoint is removed once a newer one is current.

use super::stats::{RunStats, VacuumStats};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{LakeError, Layout, Manifest};

#[derive(Debug, Clone, Default)]
pub struct VacuumMetrics {
    /// Each file removed (or, on a dry run, to remove) and its bytes.
    pub files: Vec<(PathBuf, u64)>,
    pub bytes: u64,
    pub dry_run: bool,
}

/// Records a vacuum in the ledger: how many files and bytes it removed.
pub fn record(layout: &Layout, manifest: &mut Manifest, m: &VacuumMetrics, command: &str) -> Result<(), LakeError> {
    let mut run =
        super::Run::new(manifest.next_run_id(), super::RunKind::Vacuum, command, super::manifest::now_rfc3339());
    run.stats = RunStats::Vacuum(VacuumStats { files_removed: m.files.len() as u64, bytes_removed: m.bytes });
    manifest.commit(layout, run)
}

/// What a vacuum keeps besides what the ledger names as current.
#[derive(Debug, Clone)]
pub struct VacuumOptions {
    /// Star versions that stopped being current less than this long ago keep their files.
    pub retain: chrono::Duration,
    pub dry_run: bool,
    /// Files the star's Delta tables name in their latest version or removed
    /// within the retention ([`super::delta::live_files`]).
    pub delta_live: HashSet<String>,
}

/// The star files a vacuum must keep (relative paths): see the module's comment.
fn star_kept(manifest: &Manifest, retain: chrono::Duration) -> Result<HashSet<String>, LakeError> {
    let cutoff = (chrono::Utc::now() - retain).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let history = manifest.history()?;
    let builds: Vec<&super::Run> = history.iter().filter(|r| r.star.is_some()).collect();
    let synced = manifest.last_sync().and_then(|r| r.stats.sync()).map(|s| s.lake_version);
    let mut kept = HashSet::new();
    for (i, build) in builds.iter().enumerate() {
        let star = build.star.as_ref().expect("filtered");
        // A version is needed until the build after it finished, and for `retain` after that.
        let replaced_at = builds.get(i + 1).map(|next| next.finished_at.as_str());
        let needed = replaced_at.is_none_or(|t| t > cutoff.as_str()) || Some(star.version) == synced;
        if needed {
            kept.extend(star.tables.values().flatten().map(|p| p.path.clone()));
        }
    }
    Ok(kept)
}

pub fn vacuum(layout: &Layout, manifest: &Manifest, opts: &VacuumOptions) -> Result<VacuumMetrics, LakeError> {
    let mut live: HashSet<PathBuf> = manifest.live_paths()?.iter().map(|p| layout.abs(p)).collect();
    live.extend(star_kept(manifest, opts.retain)?.iter().map(|p| layout.abs(p)));
    live.extend(opts.delta_live.iter().map(|p| layout.abs(p)));
    let mut metrics = VacuumMetrics { dry_run: opts.dry_run, ..Default::default() };
    let mut found = |path: &Path, len: u64| {
        metrics.files.push((path.to_path_buf(), len));
        metrics.bytes += len;
    };
    for top in ["staging", "star", "raw"] {
        // A raw file no entry names was written by a run that never committed.
        walk(&layout.abs(top), &mut |path, len| {
            if !live.contains(path) && !in_delta_log(path) {
                found(path, len);
            }
        })?;
    }
    // Temp files beside manifest entries are debris too, and so is the raw
    // index (and digest list) of a run that crashed before its entry.
    let checkpoint = super::checkpoint::current(layout);
    walk(&layout.manifest_dir(), &mut |path, len| {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with(super::fsio::TMP_PREFIX)
            || super::checkpoint::is_superseded(&name, checkpoint)
            || ((name.ends_with(".raw.ndjson") || name.ends_with(".raw.sha256")) && !live.contains(path))
        {
            found(path, len);
        }
    })?;
    metrics.files.sort();
    if !opts.dry_run {
        for (f, _) in &metrics.files {
            std::fs::remove_file(f).map_err(LakeError::io("remove", f))?;
        }
    }
    Ok(metrics)
}

/// Whether `path` is part of a Delta table's log, which delta-rs keeps (and checkpoints) itself.
fn in_delta_log(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == "_delta_log")
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path, u64)) -> Result<(), LakeError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(LakeError::io("list", dir)(e)),
    };
    for e in entries {
        let e = e.map_err(LakeError::io("list", dir))?;
        let path = e.path();
        let meta = e.metadata().map_err(LakeError::io("stat", &path))?;
        if meta.is_dir() {
            walk(&path, f)?;
        } else {
            f(&path, meta.len());
        }
    }
    Ok(())
}
