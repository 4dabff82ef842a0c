//! Atomic file writes: a temp file in the target's own directory, fsynced,
//! renamed over the target, then the directory fsynced. A crash leaves either
//! the old state or the new file, plus at worst a `.tmp-*` file that no
//! manifest names (debris for `vacuum`).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::LakeError;

/// Prefix of in-flight temp files; readers and `vacuum` recognise debris by it.
pub const TMP_PREFIX: &str = ".tmp-";

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LakeError> {
    write_atomic_with(path, |w| w.write_all(bytes).map_err(LakeError::io("write", path)))
}

/// Writes `path` atomically with `fill`, which gets a buffered writer over the
/// temp file. `fill`'s error aborts the write and removes the temp file.
pub fn write_atomic_with<T>(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<T, LakeError>,
) -> Result<T, LakeError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(LakeError::io("create directory", dir))?;
    let tmp = tempfile::Builder::new()
        .prefix(TMP_PREFIX)
        .tempfile_in(dir)
        .map_err(LakeError::io("create temp file in", dir))?;
    let (file, tmp_path) = tmp.into_parts();
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let value = fill(&mut w)?;
    let file = w.into_inner().map_err(|e| LakeError::Io { op: "write", path: path.into(), source: e.into_error() })?;
    file.sync_all().map_err(LakeError::io("fsync", path))?;
    tmp_path.persist(path).map_err(|e| LakeError::Io {
        op: "rename into place",
        path: path.into(),
        source: e.error,
    })?;
    sync_dir(dir)?;
    super::crash_point::passed(path.display());
    Ok(value)
}

/// Writes `bytes` straight to `path`, without temp file or fsync: for many
/// small content-addressed files at once (15,000 song files), where a temp
/// file and a rename each would double the directory updates. Until a
/// manifest entry names the file it is debris, so a torn write is harmless:
/// the next ingest writes it again and `vacuum` removes it. Durability comes
/// from [`sync_files`] before the commit.
pub fn write_deferred(path: &Path, bytes: &[u8]) -> Result<(), LakeError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(path)?;
        f.write_all(bytes)?;
        start_writeback(&f);
        Ok(())
    };
    match write() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(LakeError::io("create directory", dir))?;
            write().map_err(LakeError::io("write", path))
        }
        r => r.map_err(LakeError::io("write", path)),
    }
}

/// Writes files on a thread of its own, past the page cache (`O_DIRECT`):
/// for the raw files a run stores from memory, written once and read again
/// only by `reprocess`. Each is like [`write_deferred`]: debris until a
/// manifest entry names it, durable after [`sync_files`].
///
/// Through the page cache, every byte is copied into cache pages that
/// nothing reads again, which was most of an ingest's system time. A
/// direct write waits for the disk, so the threads that parse the files hand
/// them over here and go on, and what the disk cannot take as fast goes
/// through the cache after all. Where the filesystem refuses direct writes,
/// a file is written through the cache; the first error comes out of
/// [`RawWriter::finish`].
pub struct RawWriter {
    sender: Option<std::sync::mpsc::SyncSender<(PathBuf, Vec<u8>)>>,
    thread: Option<std::thread::JoinHandle<Result<(), LakeError>>>,
}

impl RawWriter {
    /// Starts the thread; at most `queued` files wait for it.
    pub fn start(queued: usize) -> RawWriter {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<(PathBuf, Vec<u8>)>(queued);
        let thread = std::thread::Builder::new()
            .name("tunelake-raw".into())
            .spawn(move || {
                let mut first_error = Ok(());
                #[cfg(target_os = "linux")]
                let mut blocks = vec![];
                for (path, bytes) in receiver {
                    // After an error the rest are received and dropped: the run fails anyway.
                    if first_error.is_err() {
                        continue;
                    }
                    #[cfg(target_os = "linux")]
                    if direct::write(&path, &bytes, &mut blocks).is_ok() {
                        continue;
                    }
                    first_error = write_deferred(&path, &bytes);
                }
                first_error
            })
            .expect("a thread starts");
        RawWriter { sender: Some(sender), thread: Some(thread) }
    }

    /// Queues `bytes` for `path` (absolute). When the queue is full (the
    /// disk is slower than the parsing), writes them through the page cache here instead
    /// ([`write_deferred`]), which neither waits for the disk nor for the queue.
    pub fn write(&self, path: PathBuf, bytes: Vec<u8>) -> Result<(), LakeError> {
        use std::sync::mpsc::TrySendError;
        match self.sender.as_ref().expect("until finish").try_send((path, bytes)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full((path, bytes))) => write_deferred(&path, &bytes),
            // A writer that stopped reports why from `finish`.
            Err(TrySendError::Disconnected(_)) => Ok(()),
        }
    }

    /// Waits until every queued file is written; the first error.
    pub fn finish(mut self) -> Result<(), LakeError> {
        drop(self.sender.take());
        let thread = self.thread.take().expect("finish runs once");
        thread.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    }
}

impl Drop for RawWriter {
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(target_os = "linux")]
mod direct {
    use std::fs::{self, OpenOptions};
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;

    /// The alignment of a direct write's buffer, offset and length: the
    /// largest logical block size in common use.
    const BLOCK: usize = 4096;

    #[derive(Clone, Copy)]
    #[repr(C, align(4096))]
    pub(super) struct Block([u8; BLOCK]);

    /// Writes `bytes` to `path` with `O_DIRECT`, through `blocks` (kept
    /// between calls): padded to whole blocks, then cut to their length.
    pub(super) fn write(path: &Path, bytes: &[u8], blocks: &mut Vec<Block>) -> std::io::Result<()> {
        let open =
            || OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_DIRECT).open(path);
        let mut file = match open() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
                open()?
            }
            r => r?,
        };
        let n = bytes.len().div_ceil(BLOCK);
        if blocks.len() < n {
            blocks.resize(n, Block([0; BLOCK]));
        }
        // SAFETY: `Block` is a plain byte array aligned to BLOCK, with no
        // padding, so the first `n` blocks are `n * BLOCK` initialized bytes.
        let buf: &mut [u8] = unsafe { std::slice::from_raw_parts_mut(blocks.as_mut_ptr().cast::<u8>(), n * BLOCK) };
        buf[..bytes.len()].copy_from_slice(bytes);
        buf[bytes.len()..].fill(0);
        file.write_all(buf)?;
        file.set_len(bytes.len() as u64)
    }
}

/// Asks the kernel to start writing `file`'s dirty pages to disk now, in the
/// background, so that the [`sync_files`] that makes a run durable has
/// less left to wait for. A hint: errors are ignored, and only `sync_files`
/// promises anything.
pub fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range only reads the descriptor, which `file` keeps open for the call.
        unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// How many fsyncs [`sync_files`] has in flight: the disk merges the cache
/// flushes of those that wait together, and past 16 that gains little.
const SYNC_THREADS: usize = 16;

/// Makes `files` (relative to `root`) durable, with every directory from
/// their parents up to `root`, which hold their names: an fsync each, several
/// at once. A run writes its files without an fsync of their own, then calls
/// this once, before the manifest entry that names them.
///
/// Only these files: `syncfs` did the same in one call, but also waited for
/// whatever else anyone had written to the same filesystem.
pub fn sync_files<'a>(root: &Path, files: impl IntoIterator<Item = &'a str>) -> Result<(), LakeError> {
    let files: BTreeSet<PathBuf> = files.into_iter().map(|f| root.join(f)).collect();
    let dirs = directories_of(root, &files);
    // Files and directories in one pass: all are synced before anything names them.
    fsync_each(&files.into_iter().chain(dirs).collect::<Vec<_>>())
}

/// The directories from each file's parent up to `root`, each once.
fn directories_of(root: &Path, files: &BTreeSet<PathBuf>) -> BTreeSet<PathBuf> {
    let mut dirs = BTreeSet::new();
    for f in files {
        let mut dir = f.parent();
        // A directory already listed has its parents listed too.
        while let Some(d) = dir.filter(|d| d.starts_with(root)) {
            if !dirs.insert(d.to_path_buf()) {
                break;
            }
            dir = d.parent();
        }
    }
    dirs
}

/// fsyncs every path, [`SYNC_THREADS`] at a time; the first error.
fn fsync_each(paths: &[PathBuf]) -> Result<(), LakeError> {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..SYNC_THREADS.min(paths.len()))
            .map(|_| {
                s.spawn(|| {
                    while let Some(p) = paths.get(next.fetch_add(1, Ordering::Relaxed)) {
                        File::open(p).and_then(|f| f.sync_all()).map_err(LakeError::io("fsync", p))?;
                        super::crash_point::passed(format_args!("fsync {}", p.display()));
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    })
}

/// fsyncs a directory so a rename in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), LakeError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(LakeError::io("fsync directory", dir))
}

/// Writes `bytes` to `path` atomically with mode 0600 (tokens, secrets).
#[cfg(unix)]
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), LakeError> {
    use std::os::unix::fs::PermissionsExt;
    write_atomic_with(path, |w| {
        w.get_ref().set_permissions(fs::Permissions::from_mode(0o600)).map_err(LakeError::io("chmod 0600", path))?;
        w.write_all(bytes).map_err(LakeError::io("write", path))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_files_syncs_each_file_and_its_directories_up_to_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let files = ["raw/s/d=1/a.json", "raw/s/d=1/b.json", "staging/t/d=2/c.parquet", "top.json"];
        for f in files {
            write_deferred(&root.join(f), b"x").unwrap();
        }
        let set: BTreeSet<PathBuf> = files.iter().map(|f| root.join(f)).collect();
        let dirs: Vec<_> = directories_of(root, &set)
            .into_iter()
            .map(|d| d.strip_prefix(root).unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(dirs, ["", "raw", "raw/s", "raw/s/d=1", "staging", "staging/t", "staging/t/d=2"]);
        sync_files(root, files).unwrap();
        sync_files(root, []).unwrap();
        // A file that is not there is an error that names it.
        let err = sync_files(root, ["raw/s/d=1/a.json", "raw/s/d=1/gone.json"]).unwrap_err().to_string();
        assert!(err.contains("fsync") && err.contains("gone.json"), "{err}");
    }

    #[test]
    fn the_raw_writer_stores_exactly_the_bytes_whatever_their_length() {
        let dir = tempfile::tempdir().unwrap();
        let writer = RawWriter::start(2);
        let mut want = vec![];
        for (i, len) in [(1 << 20) + 3, 0, 1, 4095, 4096, 4097, 70_000].into_iter().enumerate() {
            let bytes: Vec<u8> = (0..len).map(|j| (j * 31 + i) as u8).collect();
            // A directory that does not exist yet, or a file that does (a torn earlier write).
            let path = dir.path().join(format!("raw/d={i}/f.json"));
            if i % 2 == 1 {
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(&path, vec![7u8; 3 * 4096 + 5]).unwrap();
            }
            writer.write(path.clone(), bytes.clone()).unwrap();
            want.push((path, bytes));
        }
        writer.finish().unwrap();
        for (path, bytes) in want {
            assert_eq!(fs::read(&path).unwrap(), bytes, "{} bytes", bytes.len());
        }
        #[cfg(target_os = "linux")]
        {
            // The direct path itself, not its fallback, on the filesystem the lake is on here.
            let path = dir.path().join("raw/direct.json");
            let bytes = vec![42u8; 10_000];
            let written = direct::write(&path, &bytes, &mut vec![]);
            assert!(written.is_ok(), "this filesystem refused a direct write: {written:?}");
            assert_eq!(fs::read(&path).unwrap(), bytes);
        }
        // An error (a directory where the file should go) comes out of `finish`.
        let writer = RawWriter::start(1);
        let blocked = dir.path().join("raw/blocked");
        fs::create_dir_all(blocked.join("f.json")).unwrap();
        writer.write(blocked.join("f.json"), vec![1; 10]).unwrap();
        let err = writer.finish().unwrap_err().to_string();
        assert!(err.contains("blocked/f.json"), "{err}");
    }
}
