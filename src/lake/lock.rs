//! One writer at a time: an exclusive `flock` on `_manifest/LOCK`. The file
//! holds a line naming the holder, so a second run can say who it waits for.
//! The OS drops the lock when the process dies, so a crash never wedges a lake.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use super::{LakeError, Layout};

/// Held for the life of a writing command.
#[derive(Debug)]
pub struct LakeLock {
    _file: File,
}

impl LakeLock {
    /// Takes the lake's lock or says who holds it. A lake an earlier
    /// tunelake wrote is upgraded then, before anything reads it ([`super::upgrade`]).
    pub fn acquire(layout: &Layout, what: &str) -> Result<Self, LakeError> {
        let lock = Self::acquire_at(&layout.lock_file(), what).map_err(|e| match e {
            LakeError::Locked { lock, holder, .. } => {
                LakeError::Locked { lake: layout.root().to_path_buf(), lock, holder }
            }
            e => e,
        })?;
        if super::upgrade::needed(layout)? {
            super::upgrade::upgrade(layout)?;
        }
        Ok(lock)
    }

    /// Takes the lock file at `path` (a remote lake's cache has its own).
    pub fn acquire_at(path: &Path, what: &str) -> Result<Self, LakeError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(LakeError::io("create directory", dir))?;
        let path = path.to_path_buf();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(LakeError::io("open lock file", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LakeError::Locked {
                    lake: dir.to_path_buf(),
                    lock: path,
                    holder: if holder.is_empty() { "unknown".into() } else { holder.into() },
                });
            }
            Err(TryLockError::Error(e)) => return Err(LakeError::io("lock", &path)(e)),
        }
        let line = format!(
            "pid {} `tunelake {what}` since {}",
            std::process::id(),
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        );
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(line.as_bytes()))
            .map_err(LakeError::io("write lock file", &path))?;
        Ok(LakeLock { _file: file })
    }
}
