//! Raw files on disk. A file of 64 KiB or more is stored alone, as
//! `<sha256>.json`. Smaller ones (Sparkify's song files: 15,000 of about
//! 250 bytes for a million events) are concatenated, exactly as received,
//! into one pack per run. The run's raw index gives each one's offset and
//! length. Creating thousands of small files costs the filesystem's inode
//! allocator and directory lock far more than one pack's single write.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::manifest::RawFile;
use super::{LakeError, Layout};

/// Files smaller than this go into the run's pack.
pub const PACK_BELOW: usize = 64 * 1024;

/// The bytes of one stored raw file, as received (not checked against its sha256).
pub fn read(layout: &Layout, raw: &RawFile) -> Result<Vec<u8>, LakeError> {
    let path = layout.abs(&raw.path);
    match raw.offset {
        None => std::fs::read(&path).map_err(LakeError::io("read", &path)),
        Some(offset) => {
            let mut file = File::open(&path).map_err(LakeError::io("open", &path))?;
            let mut bytes = vec![0; raw.bytes as usize];
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.read_exact(&mut bytes))
                .map_err(LakeError::io("read a packed raw file from", &path))?;
            Ok(bytes)
        }
    }
}

/// A file copied into the lake under a temporary name (`fsio::TMP_PREFIX`,
/// debris to `vacuum` if a crash leaves it), with the sha256 of what was
/// copied. [`Incoming::keep`] gives it its content-addressed name; dropped
/// without, it is removed.
pub struct Incoming {
    tmp: tempfile::TempPath,
    pub sha256: String,
    pub bytes: u64,
}

/// Copies `src` into the directory `dir` (absolute) a megabyte at a time,
/// hashing on the way: a file of any size, without holding it in memory.
/// Like the run's other raw files it gets no fsync here: the commit makes it
/// durable (`fsio::sync_files`).
pub fn copy_in(src: &Path, dir: &Path) -> Result<Incoming, LakeError> {
    use sha2::Digest;
    std::fs::create_dir_all(dir).map_err(LakeError::io("create directory", dir))?;
    let mut from = File::open(src).map_err(LakeError::io("open", src))?;
    let tmp = tempfile::Builder::new()
        .prefix(super::fsio::TMP_PREFIX)
        .tempfile_in(dir)
        .map_err(LakeError::io("create temp file in", dir))?;
    let (mut to, tmp) = tmp.into_parts();
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0; 1 << 20];
    let mut bytes = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LakeError::io("read", src)(e)),
        };
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n]).map_err(|e| LakeError::io("write", tmp.to_path_buf())(e))?;
        bytes += n as u64;
    }
    super::fsio::start_writeback(&to);
    Ok(Incoming { tmp, sha256: hex::encode(hasher.finalize()), bytes })
}

impl Incoming {
    /// Renames the copy to `path` (absolute, in the same directory).
    pub fn keep(self, path: &Path) -> Result<(), LakeError> {
        self.tmp.persist(path).map_err(|e| LakeError::Io {
            op: "rename into place",
            path: path.into(),
            source: e.error,
        })?;
        super::crash_point::passed(path.display());
        Ok(())
    }
}

/// How many bytes of small files a [`Pack`] holds before it appends them to its file.
const PACK_BUFFER: usize = 8 << 20;

/// What a buffered file costs a [`Pack`] besides its bytes: its entry and
/// allocations: counting bytes alone, a buffer of tiny song files held
/// several times its size.
const PACK_ENTRY_COST: usize = 512;

/// One run's pack, written as small files arrive: they are buffered, and
/// appended (in the order of their origin within each batch) when the
/// buffer is full and at [`Pack::finish`], so memory stays bounded. Like
/// every raw file, the pack is made durable by the run's one filesystem sync.
pub struct Pack {
    rel: String,
    path: PathBuf,
    file: Option<File>,
    len: u64,
    buffered: Vec<(RawFile, Vec<u8>)>,
    buffered_bytes: usize,
    stored: Vec<RawFile>,
}

impl Pack {
    /// A pack at `rel` (relative to the lake root); the file is created with the first flush.
    pub fn new(layout: &Layout, rel: String) -> Self {
        Pack { path: layout.abs(&rel), rel, file: None, len: 0, buffered: vec![], buffered_bytes: 0, stored: vec![] }
    }

    /// Adds a small raw file; `raw` gets its place in the pack when it is written.
    pub fn add(&mut self, raw: RawFile, bytes: Vec<u8>) -> Result<(), LakeError> {
        self.buffered_bytes += bytes.len() + PACK_ENTRY_COST;
        self.buffered.push((raw, bytes));
        if self.buffered_bytes >= PACK_BUFFER { self.flush() } else { Ok(()) }
    }

    fn flush(&mut self) -> Result<(), LakeError> {
        if self.buffered.is_empty() {
            return Ok(());
        }
        let mut batch = std::mem::take(&mut self.buffered);
        self.buffered_bytes = 0;
        batch.sort_by(|a, b| a.0.origin.cmp(&b.0.origin));
        let mut bytes = Vec::with_capacity(batch.iter().map(|(_, b)| b.len()).sum());
        for (mut raw, b) in batch {
            raw.path = self.rel.clone();
            raw.offset = Some(self.len + bytes.len() as u64);
            bytes.extend_from_slice(&b);
            self.stored.push(raw);
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let dir = self.path.parent().unwrap_or(Path::new("."));
                std::fs::create_dir_all(dir).map_err(LakeError::io("create directory", dir))?;
                // Truncates what a crashed run of the same id may have left.
                self.file.insert(File::create(&self.path).map_err(LakeError::io("create", &self.path))?)
            }
        };
        file.write_all(&bytes).map_err(LakeError::io("write", &self.path))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Writes what is buffered and returns every file stored in the pack.
    pub fn finish(mut self) -> Result<Vec<RawFile>, LakeError> {
        self.flush()?;
        Ok(self.stored)
    }
}

/// A stored raw file `tunelake verify` found damaged: its id and where its copy is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Damaged {
    pub sha256: String,
    /// Relative to the lake root.
    pub path: String,
    /// Where in its pack a packed file is ([`RawFile::offset`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// The damaged raw files `verify` recorded last (none when it found none).
pub fn damaged(layout: &Layout) -> Result<Vec<Damaged>, LakeError> {
    let path = layout.damaged_raw();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| LakeError::BadManifest { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(LakeError::io("read", &path)(e)),
    }
}

/// Records `files` as the damaged raw files (removes the record when none).
pub fn set_damaged(layout: &Layout, files: &[Damaged]) -> Result<(), LakeError> {
    let path = layout.damaged_raw();
    if files.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LakeError::io("remove", &path)(e)),
            _ => Ok(()),
        };
    }
    std::fs::create_dir_all(layout.state_dir()).map_err(LakeError::io("create", layout.state_dir()))?;
    super::fsio::write_atomic(&path, &serde_json::to_vec_pretty(files).expect("serializes"))
}

/// A packed file's offset in its pack, and its bytes.
type Patch = (u64, Vec<u8>);

/// The damaged stored copies `verify` recorded, repaired by an ingest that
/// meets their originals again. A file stored alone is replaced at once; a
/// packed one is patched into a copy of its pack, which replaces the pack
/// when the ingest finishes. Either way the new bytes hash as the ledger
/// says before they are written, and a crash leaves the old copy or the new.
pub struct Repairs<'a> {
    layout: &'a Layout,
    damaged: HashMap<String, Damaged>,
    /// Packed files to write back, by pack.
    packs: Mutex<BTreeMap<String, Vec<Patch>>>,
    repaired: Mutex<Vec<String>>,
}

impl<'a> Repairs<'a> {
    pub fn load(layout: &'a Layout) -> Result<Self, LakeError> {
        let damaged = damaged(layout)?.into_iter().map(|d| (d.sha256.clone(), d)).collect();
        Ok(Repairs { layout, damaged, packs: Mutex::default(), repaired: Mutex::default() })
    }

    /// `bytes`, already stored under `sha256` (which they hash as): written
    /// back if that stored copy is damaged. Whether it was.
    pub fn offer(&self, sha256: &str, bytes: &[u8]) -> Result<bool, LakeError> {
        let Some(d) = self.damaged.get(sha256) else { return Ok(false) };
        match d.offset {
            None => super::fsio::write_atomic(&self.layout.abs(&d.path), bytes)?,
            Some(offset) => {
                let mut packs = self.packs.lock().expect("packs lock");
                packs.entry(d.path.clone()).or_default().push((offset, bytes.to_vec()));
            }
        }
        self.repaired.lock().expect("repaired lock").push(sha256.to_string());
        Ok(true)
    }

    /// A copy made by [`copy_in`] of a file already stored: moved over the
    /// stored copy if that one is damaged (a file this big is never packed).
    pub fn offer_copy(&self, incoming: Incoming) -> Result<bool, LakeError> {
        let Some(d) = self.damaged.get(&incoming.sha256).filter(|d| d.offset.is_none()) else { return Ok(false) };
        let sha256 = incoming.sha256.clone();
        incoming.keep(&self.layout.abs(&d.path))?;
        super::fsio::sync_files(self.layout.root(), [d.path.as_str()])?;
        self.repaired.lock().expect("repaired lock").push(sha256);
        Ok(true)
    }

    /// Writes the patched packs back and forgets what was repaired; how many files were.
    pub fn finish(self) -> Result<usize, LakeError> {
        for (pack, patches) in self.packs.into_inner().expect("packs lock") {
            let path = self.layout.abs(&pack);
            // A pack cut short keeps what it has; the patch lengthens it.
            let mut bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
                Err(e) => return Err(LakeError::io("read", &path)(e)),
            };
            for (offset, patch) in patches {
                let (start, end) = (offset as usize, offset as usize + patch.len());
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[start..end].copy_from_slice(&patch);
            }
            super::fsio::write_atomic(&path, &bytes)?;
        }
        let repaired = self.repaired.into_inner().expect("repaired lock");
        if !repaired.is_empty() {
            tracing::warn!(files = repaired.len(), "damaged raw files written again from their originals");
            let left: Vec<Damaged> = self.damaged.into_values().filter(|d| !repaired.contains(&d.sha256)).collect();
            set_damaged(self.layout, &left)?;
        }
        Ok(repaired.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_files_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let raw = |sha: &str, n: usize| RawFile {
            sha256: sha.into(),
            path: String::new(),
            source: "s".into(),
            kind: "song".into(),
            origin: sha.into(),
            bytes: n as u64,
            account: None,
            offset: None,
        };
        let files = [(raw("c", 5), b"[1,2]".to_vec()), (raw("b", 0), vec![]), (raw("a", 3), b"{}\n".to_vec())];
        let mut pack = Pack::new(&layout, "raw/s/pack.raw".into());
        for (r, b) in files.iter().cloned() {
            pack.add(r, b).unwrap();
        }
        let stored = pack.finish().unwrap();
        // One batch, in the order of origin.
        let offsets: Vec<_> = stored.iter().map(|r| (r.origin.as_str(), r.offset)).collect();
        assert_eq!(offsets, [("a", Some(0)), ("b", Some(3)), ("c", Some(3))]);
        for r in &stored {
            let (_, b) = files.iter().find(|(f, _)| f.origin == r.origin).unwrap();
            assert_eq!(&read(&layout, r).unwrap(), b);
        }
        assert_eq!(std::fs::read(dir.path().join("raw/s/pack.raw")).unwrap(), b"{}\n[1,2]");
        // Past the buffer, batches are appended as they fill.
        let mut pack = Pack::new(&layout, "raw/s/big.raw".into());
        let big = vec![b'x'; PACK_BUFFER / 2 + 1];
        for name in ["p", "q", "r"] {
            pack.add(raw(name, big.len()), big.clone()).unwrap();
        }
        let stored = pack.finish().unwrap();
        let n = big.len() as u64;
        assert_eq!(stored.iter().map(|r| r.offset.unwrap()).collect::<Vec<_>>(), [0, n, 2 * n]);
        assert_eq!(std::fs::metadata(dir.path().join("raw/s/big.raw")).unwrap().len(), 3 * n);
        // Many tiny files fill the buffer too: each counts for its entry, not only its bytes.
        let mut pack = Pack::new(&layout, "raw/s/tiny.raw".into());
        let many = PACK_BUFFER / PACK_ENTRY_COST + 1;
        for i in 0..many {
            pack.add(raw(&format!("t{i:06}"), 1), b"y".to_vec()).unwrap();
        }
        assert!(pack.buffered.len() < many, "{} files still buffered", pack.buffered.len());
        let written = std::fs::metadata(dir.path().join("raw/s/tiny.raw")).unwrap().len();
        assert!(written > 0 && (written as usize) < many, "{written} bytes written before finish");
        assert_eq!(pack.finish().unwrap().len(), many);
        assert_eq!(std::fs::metadata(dir.path().join("raw/s/tiny.raw")).unwrap().len(), many as u64);
    }
}
