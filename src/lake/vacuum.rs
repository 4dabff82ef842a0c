//! `tunelake vacuum`: removes files no committed run names — temp files and
//! the output of crashed runs, staging replaced by a reprocess, star versions
//! older than the current one. A raw file a committed run names is never removed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{LakeError, Layout, Manifest};

#[derive(Debug, Clone, Default)]
pub struct VacuumMetrics {
    pub files: Vec<PathBuf>,
    pub bytes: u64,
    pub dry_run: bool,
}

pub fn vacuum(layout: &Layout, manifest: &Manifest, dry_run: bool) -> Result<VacuumMetrics, LakeError> {
    let live: HashSet<PathBuf> = manifest.live_paths()?.iter().map(|p| layout.abs(p)).collect();
    let mut metrics = VacuumMetrics { dry_run, ..Default::default() };
    for top in ["staging", "star"] {
        walk(&layout.abs(top), &mut |path, len| {
            if !live.contains(path) {
                metrics.files.push(path.to_path_buf());
                metrics.bytes += len;
            }
        })?;
    }
    // A raw file no entry names was written by a run that never committed.
    walk(&layout.abs("raw"), &mut |path, len| {
        if !live.contains(path) {
            metrics.files.push(path.to_path_buf());
            metrics.bytes += len;
        }
    })?;
    // Temp files beside manifest entries are debris too, and so is the raw
    // index (and digest list) of a run that crashed before its entry.
    walk(&layout.manifest_dir(), &mut |path, len| {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with(super::fsio::TMP_PREFIX)
            || ((name.ends_with(".raw.ndjson") || name.ends_with(".raw.sha256")) && !live.contains(path))
        {
            metrics.files.push(path.to_path_buf());
            metrics.bytes += len;
        }
    })?;
    metrics.files.sort();
    if !dry_run {
        for f in &metrics.files {
            std::fs::remove_file(f).map_err(LakeError::io("remove", f))?;
        }
    }
    Ok(metrics)
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
