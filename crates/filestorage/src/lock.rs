//! The `Data.fs.lock` file, compatible with zc.lockfile (what Python's
//! FileStorage uses): an exclusive, non-blocking `flock` on `<path>.lock`, which
//! then holds `" <pid>\n"`. Python and zeoraid therefore exclude each other; a
//! second writer gets [`FsError::Locked`]. The lock goes with the file handle
//! (closing it or the process dying releases it); the file itself stays, as
//! zc.lockfile leaves it.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{FsError, FsResult};

/// A held `<path>.lock`. Dropping it releases the lock.
#[derive(Debug)]
pub struct LockFile {
    file: File,
    path: PathBuf,
}

impl LockFile {
    /// Take the lock for `data_path` (the lock file is `data_path` + ".lock").
    pub fn acquire(data_path: &Path) -> FsResult<LockFile> {
        let mut name = data_path.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(FsError::Locked(path.display().to_string()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(FsError::Io(e)),
        }
        // Like zc.lockfile's LockFile._on_lock: " {pid}\n", then truncate.
        let content = format!(" {}\n", std::process::id());
        file.seek(SeekFrom::Start(0))?;
        file.write_all(content.as_bytes())?;
        file.set_len(content.len() as u64)?;
        file.flush()?;
        Ok(LockFile { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Release the lock explicitly (dropping does the same).
    pub fn release(self) {
        let _ = self.file.unlock();
    }
}
