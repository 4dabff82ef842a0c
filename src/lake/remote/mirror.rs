//! The cache and the bucket brought level: [`Remote::pull`] before a command,
//! [`Remote::push`] after a writing one.
//!
//! `.remote/synced.json` in the cache records, for each file the two share,
//! its local size and mtime and the object's ETag: a pull downloads what the
//! bucket changed, a push uploads what the cache changed, and neither reads a
//! file it does not send. A push goes in the order of the commit protocol:
//! the runs' data files (in parallel), then the Delta log in the order it was
//! written (its commits with `If-None-Match: *`), then the ledger's files and
//! last its entries, in run order, also conditional.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};

use super::{Remote, RemoteError};
use crate::lake::{LakeError, crash_point, fsio};

/// The cache's own lock file: local processes sharing a cache take turns.
pub const CACHE_LOCK: &str = ".remote/LOCK";
const RECORD: &str = ".remote/synced.json";
/// Files up to this size go in one PUT; bigger ones in parts of this size,
/// read from disk as they are sent.
pub(super) const PART: usize = 8 << 20;
/// Transfers in flight at once.
pub(super) const PARALLEL: usize = 8;

/// What the cache last shared with the bucket, per lake-relative path.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Record {
    files: BTreeMap<String, Synced>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Synced {
    size: u64,
    mtime_ns: i64,
    e_tag: Option<String>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct TransferMetrics {
    pub files: usize,
    pub bytes: u64,
    pub removed: usize,
}

/// Where a file goes in a push, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Phase {
    /// Raw, staging, star files and Delta checkpoints: parallel, overwriting debris.
    Data,
    /// `_delta_log/`, in the order written; commits are conditional.
    DeltaLog,
    /// The ledger's index and checkpoint files.
    Ledger,
    /// `_manifest/<run>.json`: each run's commit, conditional, in run order.
    Entry,
    /// `_manifest/_last_checkpoint`, which names a checkpoint of a committed run.
    Pointer,
}

pub(super) fn phase(rel: &str) -> Phase {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if let Some(rest) = rel.strip_prefix("_manifest/") {
        if is_entry(rest) {
            Phase::Entry
        } else if rest == "_last_checkpoint" {
            Phase::Pointer
        } else {
            Phase::Ledger
        }
    } else if rel.contains("/_delta_log/") && !name.ends_with(".parquet") {
        Phase::DeltaLog
    } else {
        Phase::Data
    }
}

/// `00000007.json`: a ledger entry.
fn is_entry(name: &str) -> bool {
    name.len() == 13 && name.ends_with(".json") && name[..8].bytes().all(|b| b.is_ascii_digit())
}

/// A Delta commit, `<20 digits>.json`, which no two writers may both create.
pub(super) fn is_delta_commit(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    rel.contains("/_delta_log/")
        && name.len() == 25
        && name.ends_with(".json")
        && name[..20].bytes().all(|b| b.is_ascii_digit())
}

/// Files that never leave this machine (tokens, cursors, locks, the record)
/// or are not yet files (temp files of tunelake, delta-rs and object_store).
pub fn local_only(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    rel.starts_with(".remote/")
        || rel.starts_with("state/")
        || rel == "_manifest/LOCK"
        || name.starts_with('.')
        || name.starts_with(fsio::TMP_PREFIX)
        || name.contains('#')
        || name.ends_with(".tmp")
}

/// A local file's size and mtime (ns): changed when either is.
type Stamp = (u64, i64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.mtime() * 1_000_000_000 + m.mtime_nsec()))
}

/// Every file under `root`, lake-relative, that is the lake's to share.
fn walk(root: &Path) -> Result<Vec<String>, LakeError> {
    let mut out = vec![];
    let mut dirs = vec![String::new()];
    while let Some(rel_dir) = dirs.pop() {
        let dir = root.join(&rel_dir);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(LakeError::io("list", &dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(LakeError::io("list", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel_dir.is_empty() { name } else { format!("{rel_dir}/{name}") };
            let kind = entry.file_type().map_err(LakeError::io("stat", entry.path()))?;
            if kind.is_dir() {
                if !matches!(rel.as_str(), ".remote" | "state") {
                    dirs.push(rel);
                }
            } else if kind.is_file() && !local_only(&rel) {
                out.push(rel);
            }
        }
    }
    out.sort();
    Ok(out)
}

impl Remote {
    fn read_record(&self) -> Result<Record, RemoteError> {
        let path = self.cache.abs(RECORD);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Record::default()),
            Err(e) => Err(LakeError::io("read", &path)(e).into()),
        }
    }

    fn write_record(&self, record: &Record) -> Result<(), RemoteError> {
        let bytes = serde_json::to_vec(record).expect("a record serializes");
        Ok(fsio::write_atomic(&self.cache.abs(RECORD), &bytes)?)
    }

    /// Pulls for a command that only reads; when a writer on this machine
    /// holds the cache, reads it as it is (that writer pulled it).
    pub fn refresh(&self) -> Result<(), RemoteError> {
        std::fs::create_dir_all(self.cache.root()).map_err(LakeError::io("create directory", self.cache.root()))?;
        match crate::lake::LakeLock::acquire_at(&self.cache.root().join(CACHE_LOCK), "pull") {
            Ok(_lock) => self.pull().map(|_| ()),
            Err(LakeError::Locked { holder, .. }) => {
                tracing::warn!(%holder, "the cache is in use; reading it without pulling");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Brings the cache level with the bucket: downloads what is new or
    /// changed there, removes what a vacuum elsewhere removed there.
    pub fn pull(&self) -> Result<TransferMetrics, RemoteError> {
        let mut record = self.read_record()?;
        let listing: Vec<object_store::ObjectMeta> =
            self.rt.block_on(self.store.list(Some(&self.prefix)).try_collect()).map_err(self.store_err("list", ""))?;
        let mut present = HashSet::new();
        let mut wanted = vec![];
        for meta in listing {
            let Some(rel) = self.rel(&meta.location).filter(|r| !local_only(r)) else { continue };
            present.insert(rel.clone());
            let local = stamp(&self.cache.abs(&rel));
            let known = record.files.get(&rel);
            if known.is_some_and(|s| s.e_tag == meta.e_tag && local == Some((s.size, s.mtime_ns))) {
                continue;
            }
            if known.is_none() && local.is_some() && (phase(&rel) == Phase::Entry || is_delta_commit(&rel)) {
                // A commit made here and not pushed yet: the same bytes, or a conflict.
                if !self.rt.block_on(self.same_bytes(&rel))? {
                    let cache = self.cache.root().to_path_buf();
                    return Err(RemoteError::Diverged { url: self.url.to_string(), cache, key: rel });
                }
            }
            wanted.push(rel);
        }
        let mut m = TransferMetrics::default();
        let got: Vec<(String, Synced)> = self.rt.block_on(
            futures::stream::iter(wanted.into_iter().map(|rel| async move {
                let synced = self.download(&rel).await?;
                Ok::<_, RemoteError>((rel, synced))
            }))
            .buffer_unordered(PARALLEL)
            .try_collect(),
        )?;
        for (rel, synced) in got {
            m.files += 1;
            m.bytes += synced.size;
            record.files.insert(rel, synced);
        }
        let gone: Vec<String> = record.files.keys().filter(|r| !present.contains(*r)).cloned().collect();
        for rel in gone {
            let synced = record.files.remove(&rel).expect("listed");
            let path = self.cache.abs(&rel);
            if stamp(&path) == Some((synced.size, synced.mtime_ns)) {
                std::fs::remove_file(&path).map_err(LakeError::io("remove", &path))?;
                m.removed += 1;
            }
        }
        self.write_record(&record)?;
        Ok(m)
    }

    /// Streams one object into the cache: a temp file, fsynced, renamed.
    async fn download(&self, rel: &str) -> Result<Synced, RemoteError> {
        let path = self.cache.abs(rel);
        let dir = path.parent().expect("a lake file has a folder");
        std::fs::create_dir_all(dir).map_err(LakeError::io("create directory", dir))?;
        let got = self.store.get(&self.key(rel)).await.map_err(self.store_err("download", rel))?;
        let e_tag = got.meta.e_tag.clone();
        let mut stream = got.into_stream();
        let tmp = tempfile::Builder::new()
            .prefix(fsio::TMP_PREFIX)
            .tempfile_in(dir)
            .map_err(LakeError::io("create temp file in", dir))?;
        let (mut file, tmp_path) = tmp.into_parts();
        while let Some(chunk) = stream.try_next().await.map_err(self.store_err("download", rel))? {
            file.write_all(&chunk).map_err(LakeError::io("write", &path))?;
        }
        file.sync_all().map_err(LakeError::io("fsync", &path))?;
        tmp_path.persist(&path).map_err(|e| LakeError::Io {
            op: "rename into place",
            path: path.clone(),
            source: e.error,
        })?;
        let (size, mtime_ns) = stamp(&path)
            .ok_or_else(|| LakeError::io("stat", &path)(std::io::Error::from(std::io::ErrorKind::NotFound)))?;
        Ok(Synced { size, mtime_ns, e_tag })
    }

    /// Publishes what the cache committed since the last push, in the commit protocol's order.
    pub fn push(&self) -> Result<TransferMetrics, RemoteError> {
        let mut record = self.read_record()?;
        let root = self.cache.root().to_path_buf();
        let mut changed: BTreeMap<Phase, Vec<(String, Stamp)>> = BTreeMap::new();
        for rel in walk(&root)? {
            let Some(now) = stamp(&root.join(&rel)) else { continue };
            if record.files.get(&rel).is_some_and(|s| (s.size, s.mtime_ns) == now) {
                continue;
            }
            changed.entry(phase(&rel)).or_default().push((rel, now));
        }
        let mut m = TransferMetrics::default();
        for (phase, mut files) in changed {
            let sent: Vec<(String, Synced)> = match phase {
                Phase::Data | Phase::Ledger => self.rt.block_on(
                    futures::stream::iter(files.into_iter().map(|(rel, now)| self.upload(rel, now)))
                        .buffer_unordered(PARALLEL)
                        .try_collect(),
                )?,
                // One at a time, in the order they were made (dimensions before fact_plays; run order).
                Phase::DeltaLog | Phase::Entry | Phase::Pointer => {
                    files.sort_by(|a, b| (a.1.1, &a.0).cmp(&(b.1.1, &b.0)));
                    let mut sent = vec![];
                    for (rel, now) in files {
                        sent.push(self.rt.block_on(self.upload(rel, now))?);
                    }
                    sent
                }
            };
            for (rel, synced) in sent {
                m.files += 1;
                m.bytes += synced.size;
                record.files.insert(rel, synced);
            }
            self.write_record(&record)?;
        }
        Ok(m)
    }

    /// Uploads one file; a commit (ledger entry or Delta commit) only if
    /// nothing holds its name, or the same bytes already do (a push cut short).
    async fn upload(&self, rel: String, now: Stamp) -> Result<(String, Synced), RemoteError> {
        let path = self.cache.abs(&rel);
        let key = self.key(&rel);
        let commit = phase(&rel) == Phase::Entry || is_delta_commit(&rel);
        let result = if is_delta_commit(&rel) {
            let bytes = std::fs::read(&path).map_err(LakeError::io("read", &path))?;
            if !self.delta_commit(&rel, bytes).await? {
                self.same_or_lost(&rel).await?;
            }
            Ok(self.store.head(&key).await.map_err(self.store_err("read", &rel))?.e_tag)
        } else if commit || now.0 as usize <= PART {
            let bytes = std::fs::read(&path).map_err(LakeError::io("read", &path))?;
            let mode = if commit { PutMode::Create } else { PutMode::Overwrite };
            let put = self.store.put_opts(&key, PutPayload::from(bytes), PutOptions { mode, ..Default::default() });
            match put.await {
                Err(object_store::Error::AlreadyExists { .. }) => {
                    self.same_or_lost(&rel).await?;
                    let head = self.store.head(&key).await.map_err(self.store_err("read", &rel))?;
                    Ok(head.e_tag)
                }
                r => r.map(|r| r.e_tag).map_err(self.store_err("upload", &rel)),
            }
        } else {
            self.upload_parts(&rel, &path).await
        }?;
        crash_point::passed(format_args!("uploaded {rel}"));
        Ok((rel, Synced { size: now.0, mtime_ns: now.1, e_tag: result }))
    }

    /// Writes a Delta commit through delta-rs's own log store, which puts it
    /// only if no commit of that version exists (`If-None-Match: *`); false if one does.
    async fn delta_commit(&self, rel: &str, bytes: Vec<u8>) -> Result<bool, RemoteError> {
        use deltalake_core::kernel::transaction::TransactionError;
        use deltalake_core::logstore::{CommitOrBytes, StorageConfig, default_logstore};
        let (table, name) = rel.split_once("/_delta_log/").expect("a Delta commit's path");
        let version = name[..20].parse().expect("a Delta commit is named by its version");
        let table_store =
            std::sync::Arc::new(object_store::prefix::PrefixStore::new(self.store.clone(), self.key(table)));
        let location = url::Url::parse(&format!("{}/{table}", self.url)).expect("a bucket URL with a path");
        let log = default_logstore(table_store, self.store.clone(), &location, &StorageConfig::default());
        match log.write_commit_entry(version, CommitOrBytes::LogBytes(bytes.into()), uuid::Uuid::nil()).await {
            Ok(()) => Ok(true),
            Err(TransactionError::VersionAlreadyExists(_)) => Ok(false),
            Err(e) => Err(RemoteError::Store {
                url: self.url.to_string(),
                op: "commit",
                key: rel.to_string(),
                message: super::redact(&e.to_string()),
            }),
        }
    }

    /// Whether the object `rel` holds the cache's bytes of it.
    async fn same_bytes(&self, rel: &str) -> Result<bool, RemoteError> {
        let path = self.cache.abs(rel);
        let local = std::fs::read(&path).map_err(LakeError::io("read", &path))?;
        let remote =
            async { self.store.get(&self.key(rel)).await?.bytes().await }.await.map_err(self.store_err("read", rel))?;
        Ok(local == remote)
    }

    /// A commit found already there: fine if it is ours (a push cut short), else another writer's.
    async fn same_or_lost(&self, rel: &str) -> Result<(), RemoteError> {
        if self.same_bytes(rel).await? {
            Ok(())
        } else {
            Err(RemoteError::Lost { url: self.url.to_string(), key: rel.to_string() })
        }
    }

    /// A big file in parts, read as they are sent (at most four parts in flight).
    async fn upload_parts(&self, rel: &str, path: &Path) -> Result<Option<String>, RemoteError> {
        let upload = self.store.put_multipart(&self.key(rel)).await.map_err(self.store_err("upload", rel))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut file = std::fs::File::open(path).map_err(LakeError::io("open", path))?;
        let mut buf = vec![0u8; PART];
        loop {
            let n = file.read(&mut buf).map_err(LakeError::io("read", path))?;
            if n == 0 {
                break;
            }
            w.wait_for_capacity(4).await.map_err(self.store_err("upload", rel))?;
            w.write(&buf[..n]);
        }
        Ok(w.finish().await.map_err(self.store_err("upload", rel))?.e_tag)
    }

    /// Removes objects from the bucket (what a vacuum removed from the cache).
    pub fn delete(&self, rels: &[String]) -> Result<usize, RemoteError> {
        let mut record = self.read_record()?;
        self.rt.block_on(
            futures::stream::iter(rels.iter().map(|rel| async move {
                match self.store.delete(&self.key(rel)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(self.store_err("delete", rel)(e)),
                }
            }))
            .buffer_unordered(PARALLEL)
            .try_collect::<Vec<()>>(),
        )?;
        for rel in rels {
            record.files.remove(rel);
        }
        self.write_record(&record)?;
        Ok(rels.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_go_in_the_commit_protocols_order() {
        assert_eq!(phase("raw/sparkify/ingest_date=2026-12-03/pack-00000001.raw"), Phase::Data);
        assert_eq!(phase("star/fact_plays/year=2018/month=11/part-00000002.parquet"), Phase::Data);
        assert_eq!(phase("star/fact_plays/_delta_log/00000000000000000010.checkpoint.parquet"), Phase::Data);
        assert_eq!(phase("star/fact_plays/_delta_log/00000000000000000003.json"), Phase::DeltaLog);
        assert_eq!(phase("star/fact_plays/_delta_log/_last_checkpoint"), Phase::DeltaLog);
        assert_eq!(phase("_manifest/00000002.raw.ndjson"), Phase::Ledger);
        assert_eq!(phase("_manifest/00000002.checkpoint.json"), Phase::Ledger);
        assert_eq!(phase("_manifest/00000002.json"), Phase::Entry);
        assert_eq!(phase("_manifest/_last_checkpoint"), Phase::Pointer);
        assert!(Phase::Data < Phase::DeltaLog && Phase::DeltaLog < Phase::Ledger && Phase::Entry < Phase::Pointer);
        assert!(is_delta_commit("star/dim_users/_delta_log/00000000000000000003.json"));
        assert!(!is_delta_commit("star/dim_users/_delta_log/_last_checkpoint"));
    }

    /// A remote on an in-memory store with a cache in `dir`.
    fn in_memory(dir: &Path) -> Remote {
        Remote {
            url: super::super::RemoteUrl::parse("s3://music/lake").unwrap(),
            store: std::sync::Arc::new(object_store::memory::InMemory::new()),
            prefix: "lake".into(),
            cache: crate::lake::Layout::new(dir),
            rt: super::super::runtime().unwrap(),
        }
    }

    #[test]
    fn a_ledger_entry_or_delta_commit_another_writer_put_first_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let remote = in_memory(dir.path());
        let put = |rel: &str, bytes: &[u8]| {
            remote.rt.block_on(remote.store.put(&remote.key(rel), bytes.to_vec().into())).unwrap();
        };
        let write = |rel: &str, bytes: &[u8]| fsio::write_atomic(&dir.path().join(rel), bytes).unwrap();
        let entry = "_manifest/00000001.json";
        let commit = "star/fact_plays/_delta_log/00000000000000000000.json";
        write("raw/s/d/ab.json", b"raw");
        write(commit, b"{\"ours\":1}");
        write(entry, b"{\"run\":\"ours\"}");
        // The same bytes already there (a push cut short): fine.
        put(commit, b"{\"ours\":1}");
        put(entry, b"{\"run\":\"theirs\"}");
        let err = remote.push().unwrap_err();
        assert!(
            matches!(&err, RemoteError::Lost { key, .. } if key == entry),
            "the other writer's entry stands: {err}"
        );
        let got = remote.rt.block_on(async { remote.store.get(&remote.key(entry)).await?.bytes().await }).unwrap();
        assert_eq!(&got[..], b"{\"run\":\"theirs\"}");
        // What went before the entry was sent (debris until an entry names it).
        let raw = remote.rt.block_on(async { remote.store.get(&remote.key("raw/s/d/ab.json")).await?.bytes().await });
        assert_eq!(&raw.unwrap()[..], b"raw");
        // And a pull now refuses the cache by name.
        let err = remote.pull().unwrap_err();
        assert!(matches!(&err, RemoteError::Diverged { key, .. } if key == entry), "{err}");
    }

    #[test]
    fn a_delta_commit_of_a_version_another_writer_made_stops_the_push_before_any_entry() {
        let dir = tempfile::tempdir().unwrap();
        let remote = in_memory(dir.path());
        let commit = "star/dim_users/_delta_log/00000000000000000001.json";
        fsio::write_atomic(&dir.path().join(commit), b"{\"ours\":1}").unwrap();
        fsio::write_atomic(&dir.path().join("_manifest/00000003.json"), b"{}").unwrap();
        remote.rt.block_on(remote.store.put(&remote.key(commit), b"{\"theirs\":1}".to_vec().into())).unwrap();
        let err = remote.push().unwrap_err();
        assert!(matches!(&err, RemoteError::Lost { key, .. } if key == commit), "{err}");
        let entry = remote.rt.block_on(remote.store.head(&remote.key("_manifest/00000003.json")));
        assert!(entry.is_err(), "no ledger entry goes up after a lost commit");
    }

    #[test]
    fn a_pull_downloads_what_changed_and_removes_what_a_vacuum_elsewhere_removed() {
        let dir = tempfile::tempdir().unwrap();
        let remote = in_memory(dir.path());
        let put = |rel: &str, bytes: &[u8]| {
            remote.rt.block_on(remote.store.put(&remote.key(rel), bytes.to_vec().into())).unwrap();
        };
        put("raw/s/d/a.json", b"a");
        put("star/t/_delta_log/_last_checkpoint", b"{\"version\":10}");
        put("state/spotify_token.json", b"never pulled");
        let m = remote.pull().unwrap();
        assert_eq!((m.files, m.bytes, m.removed), (2, 15, 0));
        assert!(!dir.path().join("state/spotify_token.json").exists());
        // Nothing changed: nothing moves.
        assert_eq!(remote.pull().unwrap().files, 0);
        assert_eq!(remote.push().unwrap().files, 0);
        put("star/t/_delta_log/_last_checkpoint", b"{\"version\":20}");
        remote.rt.block_on(remote.store.delete(&remote.key("raw/s/d/a.json"))).unwrap();
        let m = remote.pull().unwrap();
        assert_eq!((m.files, m.removed), (1, 1));
        assert_eq!(std::fs::read(dir.path().join("star/t/_delta_log/_last_checkpoint")).unwrap(), b"{\"version\":20}");
        assert!(!dir.path().join("raw/s/d/a.json").exists());
    }

    #[test]
    fn tokens_locks_and_temp_files_stay_local() {
        for rel in [
            "state/spotify_token.json",
            "_manifest/LOCK",
            ".remote/synced.json",
            "staging/t/date=2018-11-01/.tmp-abc",
            "star/t/_delta_log/_commit_1.json.tmp",
            "star/t/part-1.parquet#3",
        ] {
            assert!(local_only(rel), "{rel}");
        }
        assert!(!local_only("_manifest/00000001.json") && !local_only("raw/s/d/ab.json"));
    }
}
