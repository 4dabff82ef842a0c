//! `tunelake copy-lake <from> <to>`: a lake moved between a folder and a
//! bucket (either way, or bucket to bucket), in the commit protocol's order
//! so that a copy cut short is a lake at an earlier run plus debris, each
//! file streamed through and its sha256 checked against what the destination
//! then holds; a raw file stored alone must also hash to its name.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use sha2::Digest;

use super::mirror::{PARALLEL, PART, Phase, is_delta_commit, local_only, phase};
use super::{
    Holder, LOCK_REL, LakeLocation, RemoteError, create_lock, hostname, key_in, read_lock, runtime, store_error,
    store_for,
};
use crate::lake::{LakeError, LakeLock, Layout};

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CopyMetrics {
    pub files: usize,
    pub bytes: u64,
}

/// One end of a copy: its store, the prefix in it, and the lock held on it.
struct End {
    name: String,
    store: Arc<dyn ObjectStore>,
    prefix: Key,
    /// A folder's flock; a bucket's lock object is removed when the copy ends.
    _folder_lock: Option<LakeLock>,
    bucket_lock: bool,
}

impl End {
    fn open(at: &LakeLocation, create: bool, rt: &tokio::runtime::Runtime) -> Result<End, RemoteError> {
        match at {
            LakeLocation::Local(dir) => {
                if create {
                    std::fs::create_dir_all(dir).map_err(LakeError::io("create directory", dir))?;
                }
                let lock = LakeLock::acquire(&Layout::new(dir), "copy-lake")?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| RemoteError::Open { url: dir.display().to_string(), message: e.to_string() })?;
                Ok(End {
                    name: dir.display().to_string(),
                    store: Arc::new(store),
                    prefix: Key::default(),
                    _folder_lock: Some(lock),
                    bucket_lock: false,
                })
            }
            LakeLocation::Remote(url) => {
                let (store, prefix) = store_for(url)?;
                let end = End { name: url.to_string(), store, prefix, _folder_lock: None, bucket_lock: true };
                let holder = Holder {
                    host: hostname(),
                    cache: Default::default(),
                    pid: std::process::id(),
                    command: "copy-lake".into(),
                    since: crate::lake::manifest::now_rfc3339(),
                };
                let key = end.key(LOCK_REL);
                if !rt.block_on(create_lock(end.store.as_ref(), &key, &holder)).map_err(end.err("create", LOCK_REL))? {
                    let held = rt.block_on(read_lock(end.store.as_ref(), &key)).ok().flatten();
                    let holder = held.map(|h| h.describe()).unwrap_or_else(|| "unknown".into());
                    return Err(RemoteError::Locked { url: url.to_string(), holder });
                }
                Ok(end)
            }
        }
    }

    fn key(&self, rel: &str) -> Key {
        key_in(&self.prefix, rel)
    }

    fn err(&self, op: &'static str, rel: &str) -> impl FnOnce(object_store::Error) -> RemoteError + use<> {
        store_error(&self.name, op, rel)
    }

    /// The lake's files here, lake-relative, with their sizes.
    async fn list(&self) -> Result<Vec<(String, u64)>, RemoteError> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let metas: Vec<object_store::ObjectMeta> =
            self.store.list(prefix).try_collect().await.map_err(self.err("list", ""))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let rel = m.location.prefix_match(&self.prefix)?.map(|p| p.as_ref().to_string()).collect::<Vec<_>>();
                Some((rel.join("/"), m.size))
            })
            .filter(|(rel, _)| !local_only(rel))
            .collect())
    }

    async fn sha256(&self, rel: &str) -> Result<String, RemoteError> {
        let mut hasher = sha2::Sha256::new();
        let mut stream = self.store.get(&self.key(rel)).await.map_err(self.err("read", rel))?.into_stream();
        while let Some(chunk) = stream.try_next().await.map_err(self.err("read", rel))? {
            hasher.update(&chunk);
        }
        Ok(hex::encode(hasher.finalize()))
    }
}

/// Copies the lake at `from` to `to`, which must hold no lake.
pub fn copy_lake(from: &LakeLocation, to: &LakeLocation) -> Result<CopyMetrics, RemoteError> {
    let rt = runtime()?;
    let source = End::open(from, false, &rt)?;
    let dest = End::open(to, true, &rt);
    let result = dest.and_then(|dest| {
        let copied = copy_between(&source, &dest, &rt);
        release(&dest, &rt).and(copied)
    });
    release(&source, &rt).and(result)
}

fn release(end: &End, rt: &tokio::runtime::Runtime) -> Result<(), RemoteError> {
    if end.bucket_lock {
        rt.block_on(end.store.delete(&end.key(LOCK_REL))).map_err(end.err("delete", LOCK_REL))?;
    }
    Ok(())
}

fn copy_between(source: &End, dest: &End, rt: &tokio::runtime::Runtime) -> Result<CopyMetrics, RemoteError> {
    let files = rt.block_on(source.list())?;
    if !files.iter().any(|(rel, _)| phase(rel) == Phase::Entry) {
        return Err(RemoteError::NotALake { at: source.name.clone() });
    }
    if rt.block_on(dest.list())?.iter().any(|(rel, _)| phase(rel) == Phase::Entry) {
        return Err(RemoteError::NotEmpty { at: dest.name.clone() });
    }
    let bar = crate::progress::bar(files.len() as u64, "copy-lake");
    let mut by_phase: std::collections::BTreeMap<Phase, Vec<(String, u64)>> = Default::default();
    for f in files {
        by_phase.entry(phase(&f.0)).or_default().push(f);
    }
    let mut m = CopyMetrics::default();
    for (phase, files) in by_phase {
        // The log and the ledger's entries one by one in name order (= commit order); the rest at once.
        let parallel = if matches!(phase, Phase::Data | Phase::Ledger) { PARALLEL } else { 1 };
        let bytes: Vec<u64> = rt.block_on(
            futures::stream::iter(files.into_iter().map(|(rel, size)| {
                let bar = &bar;
                async move {
                    copy_one(source, dest, &rel, size).await?;
                    bar.inc(1);
                    Ok::<_, RemoteError>(size)
                }
            }))
            .buffered(parallel)
            .try_collect(),
        )?;
        m.files += bytes.len();
        m.bytes += bytes.iter().sum::<u64>();
    }
    bar.finish_and_clear();
    Ok(m)
}

/// Streams one file across, then reads the copy back and compares sha256s.
async fn copy_one(source: &End, dest: &End, rel: &str, size: u64) -> Result<(), RemoteError> {
    let got = source.store.get(&source.key(rel)).await.map_err(source.err("read", rel))?;
    let mut hasher = sha2::Sha256::new();
    let key = dest.key(rel);
    let commit = phase(rel) == Phase::Entry || is_delta_commit(rel);
    if commit || size <= PART as u64 {
        let bytes = got.bytes().await.map_err(source.err("read", rel))?;
        hasher.update(&bytes);
        let mode = if commit { PutMode::Create } else { PutMode::Overwrite };
        dest.store
            .put_opts(&key, PutPayload::from(bytes), PutOptions { mode, ..Default::default() })
            .await
            .map_err(dest.err("write", rel))?;
    } else {
        let upload = dest.store.put_multipart(&key).await.map_err(dest.err("write", rel))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.try_next().await.map_err(source.err("read", rel))? {
            hasher.update(&chunk);
            w.wait_for_capacity(4).await.map_err(dest.err("write", rel))?;
            w.put(chunk);
        }
        w.finish().await.map_err(dest.err("write", rel))?;
    }
    let sent = hex::encode(hasher.finalize());
    // A raw file stored alone is named by its sha256: the source itself is checked too.
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if rel.starts_with("raw/") && name.len() == 69 && name.ends_with(".json") && name[..64] != sent {
        return Err(RemoteError::Mismatch { at: source.name.clone(), key: rel.to_string(), what: "its name" });
    }
    if dest.sha256(rel).await? != sent {
        return Err(RemoteError::Mismatch { at: dest.name.clone(), key: rel.to_string(), what: "what was sent" });
    }
    Ok(())
}
