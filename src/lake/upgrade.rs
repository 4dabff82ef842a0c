//! The ledger's format, and the one step that brings an older lake to it.
//! `_manifest/FORMAT` holds the format's number; the lake's first commit
//! writes it. A lake without it that has entries was written by an earlier
//! tunelake, and is upgraded once, under the writer's lock, before anything
//! reads it ([`upgrade`]): so the rest of the code reads one format only.
//!
//! Format 2 differs from what came before in two ways, both in how a run
//! lists the raw files it stored:
//! - the first lakes listed them inline in the entry (`"raw": [...]`); now
//!   they are in a raw index beside it (`_manifest/<run>.raw.ndjson`);
//! - raw indexes came before their digest lists (`<run>.raw.sha256`, what
//!   ingest reads to skip stored files); now every index has one.
//!
//! The upgrade rewrites each such entry (atomically, the same run with its
//! raw files moved into an index and a digest list written beside it), then
//! removes the checkpoints, which folded the old lists and are remade by the
//! next commit, and writes the format last. A crash part way leaves entries
//! of both shapes and no format: the next command upgrades the rest.

use std::path::PathBuf;

use serde_json::Value;

use super::manifest::{self, RawFile};
use super::{LakeError, Layout, fsio};

/// The ledger format this tunelake writes and reads.
pub const FORMAT: u32 = 2;

/// What an upgrade changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Upgraded {
    /// Entries whose inline raw files moved into a raw index.
    pub inline_moved: usize,
    /// Raw indexes that got their digest list.
    pub digests_added: usize,
}

pub fn format_path(layout: &Layout) -> PathBuf {
    layout.manifest_dir().join("FORMAT")
}

/// The format's file as the first commit writes it (path, bytes).
pub fn format_file(layout: &Layout) -> (PathBuf, Vec<u8>) {
    (format_path(layout), format!("{FORMAT}\n").into_bytes())
}

/// Whether the lake needs [`upgrade`]: it has entries and no format, or an
/// older one. A format newer than this tunelake's is an error that says so.
pub fn needed(layout: &Layout) -> Result<bool, LakeError> {
    let path = format_path(layout);
    match std::fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(n) if n == FORMAT => Ok(false),
            Ok(n) if n < FORMAT => Ok(true),
            _ => Err(LakeError::NewerFormat { path, found: text.trim().to_string(), supported: FORMAT }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(!manifest::entry_ids(layout)?.is_empty()),
        Err(e) => Err(LakeError::io("read", &path)(e)),
    }
}

/// Brings the lake's ledger to [`FORMAT`] (see the module). The caller holds
/// the writer's lock.
pub fn upgrade(layout: &Layout) -> Result<Upgraded, LakeError> {
    let mut done = Upgraded::default();
    for id in manifest::entry_ids(layout)? {
        let path = layout.run_entry(id);
        let bytes = std::fs::read(&path).map_err(LakeError::io("read", &path))?;
        let mut entry: Value =
            serde_json::from_slice(&bytes).map_err(|source| LakeError::BadManifest { path: path.clone(), source })?;
        let changed =
            move_inline_raw(layout, id, &mut entry, &mut done)? || add_digests(layout, id, &mut entry, &mut done)?;
        if changed {
            fsio::write_atomic(&path, &serde_json::to_vec_pretty(&entry).expect("an entry serializes"))?;
        }
    }
    remove_checkpoints(layout)?;
    let (path, bytes) = format_file(layout);
    fsio::write_atomic(&path, &bytes)?;
    tracing::info!(lake = %layout.root().display(), ?done, "ledger upgraded to format {FORMAT}");
    Ok(done)
}

/// Moves an entry's inline raw files into a raw index and digest list.
fn move_inline_raw(layout: &Layout, id: u64, entry: &mut Value, done: &mut Upgraded) -> Result<bool, LakeError> {
    let Some(inline) = entry.as_object_mut().and_then(|e| e.remove("raw")) else { return Ok(false) };
    let raw: Vec<RawFile> = serde_json::from_value(inline)
        .map_err(|source| LakeError::BadManifest { path: layout.run_entry(id), source })?;
    if raw.is_empty() {
        return Ok(true);
    }
    let (index, files) = manifest::encode_raw_index(layout, id, &raw);
    for (path, bytes) in &files {
        fsio::write_atomic(path, bytes)?;
    }
    entry["raw_index"] = serde_json::to_value(&index).expect("an index serializes");
    done.inline_moved += 1;
    Ok(true)
}

/// Writes the digest list of an entry's raw index that has none.
fn add_digests(layout: &Layout, id: u64, entry: &mut Value, done: &mut Upgraded) -> Result<bool, LakeError> {
    let Some(index) = entry.get_mut("raw_index") else { return Ok(false) };
    if index.get("digests").is_some_and(|d| !d.is_null()) {
        return Ok(false);
    }
    let field = |name: &str| index.get(name).cloned().unwrap_or_default();
    let (rel, sha256) = (field("path").as_str().unwrap_or_default().to_string(), field("sha256"));
    let files = field("files").as_u64().unwrap_or_default();
    let raw = manifest::read_raw_index_file(layout, &rel, sha256.as_str().unwrap_or_default(), files)?;
    let (fresh, [_, (digests_path, digests_bytes)]) = manifest::encode_raw_index(layout, id, &raw);
    fsio::write_atomic(&digests_path, &digests_bytes)?;
    index["digests"] = serde_json::to_value(&fresh.digests).expect("digests serialize");
    done.digests_added += 1;
    Ok(true)
}

/// Removes every checkpoint: the next load reads the entries, and the next
/// commit writes a checkpoint of the upgraded ledger.
fn remove_checkpoints(layout: &Layout) -> Result<(), LakeError> {
    let dir = layout.manifest_dir();
    let pointer = dir.join("_last_checkpoint");
    match std::fs::remove_file(&pointer) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LakeError::io("remove", &pointer)(e)),
    }
    for e in std::fs::read_dir(&dir).map_err(LakeError::io("list", &dir))? {
        let path = e.map_err(LakeError::io("list", &dir))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.ends_with(".checkpoint.json") || name.ends_with(".checkpoint.raw.json") {
            std::fs::remove_file(&path).map_err(LakeError::io("remove", &path))?;
        }
    }
    fsio::sync_dir(&dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::Manifest;
    use crate::lake::manifest::tests::raw;
    use crate::lake::manifest::{Run, RunKind, now_rfc3339};
    use std::fs;

    /// A lake as the first releases left it: run 1 lists its raw file inline,
    /// run 2 has a raw index but no digest list, 12 runs in all with a
    /// checkpoint folded from those, and no format.
    fn legacy_lake(layout: &Layout) {
        let mut m = Manifest::load(layout).unwrap();
        for id in 1..=12 {
            let mut run = Run::new(id, RunKind::Ingest, "ingest", now_rfc3339());
            run.raw = vec![raw(&format!("r{id}a")), raw(&format!("r{id}b"))];
            for r in &run.raw {
                fsio::write_atomic(&layout.abs(&r.path), b"x").unwrap();
            }
            m.commit(layout, run).unwrap();
        }
        assert!(layout.manifest_dir().join("_last_checkpoint").exists(), "a checkpoint was due");
        let mut one: Value = serde_json::from_slice(&fs::read(layout.run_entry(1)).unwrap()).unwrap();
        let listed = manifest::read_raw_index_file(
            layout,
            "_manifest/00000001.raw.ndjson",
            one["raw_index"]["sha256"].as_str().unwrap(),
            2,
        )
        .unwrap();
        one.as_object_mut().unwrap().remove("raw_index");
        one["raw"] = serde_json::to_value(&listed).unwrap();
        fs::write(layout.run_entry(1), serde_json::to_vec(&one).unwrap()).unwrap();
        fs::remove_file(layout.abs("_manifest/00000001.raw.ndjson")).unwrap();
        fs::remove_file(layout.abs("_manifest/00000001.raw.sha256")).unwrap();
        let mut two: Value = serde_json::from_slice(&fs::read(layout.run_entry(2)).unwrap()).unwrap();
        two["raw_index"].as_object_mut().unwrap().remove("digests");
        fs::write(layout.run_entry(2), serde_json::to_vec(&two).unwrap()).unwrap();
        fs::remove_file(layout.abs("_manifest/00000002.raw.sha256")).unwrap();
        fs::remove_file(format_path(layout)).unwrap();
    }

    #[test]
    fn a_lake_of_the_first_format_is_upgraded_once_and_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        legacy_lake(&layout);
        assert!(needed(&layout).unwrap());
        let expected: Vec<String> = (1..=12).flat_map(|id| [format!("r{id}a"), format!("r{id}b")]).collect();

        // Loading (what every command does) upgrades it first.
        let m = Manifest::load(&layout).unwrap();
        assert_eq!(fs::read_to_string(format_path(&layout)).unwrap(), "2\n");
        assert!(!needed(&layout).unwrap());
        let shas: Vec<String> = m.raw_files().unwrap().iter().map(|f| f.sha256.clone()).collect();
        assert_eq!(shas, expected, "every raw file, in commit order");
        assert_eq!(m.raw_shas().unwrap().len(), 24);
        assert_eq!(m.run_count(), 12);
        let one = fs::read_to_string(layout.run_entry(1)).unwrap();
        assert!(one.contains("00000001.raw.ndjson") && !one.contains("\"raw\""), "{one}");
        assert_eq!(fs::read_to_string(layout.abs("_manifest/00000001.raw.sha256")).unwrap(), "r1a\nr1b\n");
        assert_eq!(fs::read_to_string(layout.abs("_manifest/00000002.raw.sha256")).unwrap(), "r2a\nr2b\n");
        assert!(!layout.manifest_dir().join("_last_checkpoint").exists(), "remade by the next commit");

        // Once: a second upgrade finds nothing to change; the next commit checkpoints again.
        assert_eq!(upgrade(&layout).unwrap(), Upgraded::default());
        let mut m = Manifest::load(&layout).unwrap();
        m.commit(&layout, Run::new(13, RunKind::Ingest, "ingest", now_rfc3339())).unwrap();
        assert!(layout.manifest_dir().join("_last_checkpoint").exists());
        let again: Vec<String> =
            Manifest::load(&layout).unwrap().raw_files().unwrap().iter().map(|f| f.sha256.clone()).collect();
        assert_eq!(again, expected);
    }

    #[test]
    fn the_upgrade_says_what_it_changed_and_a_newer_format_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        legacy_lake(&layout);
        assert_eq!(upgrade(&layout).unwrap(), Upgraded { inline_moved: 1, digests_added: 1 });

        fs::write(format_path(&layout), "3\n").unwrap();
        let err = Manifest::load(&layout).unwrap_err().to_string();
        assert!(
            err.contains("_manifest/FORMAT") && err.contains("format 3, newer than this tunelake reads (2)"),
            "{err}"
        );
    }
}
