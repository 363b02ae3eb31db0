//! The blob directory in ZODB's `bushy` layout (ZODB/blob.py `BushyLayout`,
//! `FilesystemHelper`), so Python's FileStorage/BlobStorage reads the same tree:
//!
//! ```text
//! blobs/.layout                       "bushy"
//! blobs/tmp/                          temporary files
//! blobs/0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x07/0x03ea5bc53cc6ce11.blob
//!       one directory per oid byte,   <tid_repr>.blob (tid hex without leading
//!       most significant first        zeros, padded to an even length)
//! ```
//!
//! ZODB 6 no longer sets permissions on blob directories; we create them with
//! the process umask, as it does.

use std::path::{Path, PathBuf};

use zeoraid_storage::{Oid, Tid};

use crate::error::{FsError, FsResult};

/// Name of the layout marker file.
pub const LAYOUT_MARKER: &str = ".layout";
/// Suffix of committed blob files.
pub const BLOB_SUFFIX: &str = ".blob";

/// ZODB's `oid_repr`/`tid_repr`: `0x` + hex without leading zeros, even length.
pub fn id_repr(raw: &[u8; 8]) -> String {
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0x00".to_string()
    } else if trimmed.len() % 2 == 1 {
        format!("0x0{trimmed}")
    } else {
        format!("0x{trimmed}")
    }
}

/// A blob directory in bushy layout.
#[derive(Debug, Clone)]
pub struct BlobDir {
    base: PathBuf,
}

impl BlobDir {
    /// Open (creating if needed) a blob directory; refuses any layout but bushy.
    pub fn open(base: &Path, read_only: bool) -> FsResult<BlobDir> {
        let base = std::path::absolute(base)?;
        let marker = base.join(LAYOUT_MARKER);
        if marker.exists() {
            let layout = std::fs::read_to_string(&marker)?;
            if layout.trim() != "bushy" {
                return Err(FsError::Storage(
                    zeoraid_storage::StorageError::Unsupported(format!(
                        "blob directory {} has layout {:?}; only \"bushy\" is supported",
                        base.display(),
                        layout.trim()
                    )),
                ));
            }
        } else if base.exists() {
            // Python's auto_layout_select: an unmarked directory with non-hidden
            // entries is a (deprecated) lawn layout.
            for entry in std::fs::read_dir(&base)? {
                let entry = entry?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if !name.starts_with('.') && name != "tmp" {
                    return Err(FsError::Storage(
                        zeoraid_storage::StorageError::Unsupported(format!(
                            "blob directory {} has no layout marker but holds files \
                             (lawn layout); only \"bushy\" is supported",
                            base.display()
                        )),
                    ));
                }
            }
        }
        if !read_only {
            std::fs::create_dir_all(&base)?;
            std::fs::create_dir_all(base.join("tmp"))?;
            if !marker.exists() {
                std::fs::write(&marker, "bushy")?;
            }
        }
        Ok(BlobDir { base })
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    /// `tmp` directory (Python's `temporaryDirectory()`).
    pub fn temp_dir(&self) -> PathBuf {
        self.base.join("tmp")
    }

    /// `BushyLayout.oid_to_path`: `0xHH/0xHH/...` for the 8 oid bytes.
    pub fn oid_path(&self, oid: Oid) -> PathBuf {
        let mut p = self.base.clone();
        for b in oid.0 {
            p.push(format!("0x{b:02x}"));
        }
        p
    }

    /// `getBlobFilename(oid, tid)`.
    pub fn blob_path(&self, oid: Oid, tid: Tid) -> PathBuf {
        self.oid_path(oid)
            .join(format!("{}{BLOB_SUFFIX}", id_repr(&tid.0)))
    }

    pub fn exists(&self, oid: Oid, tid: Tid) -> bool {
        self.blob_path(oid, tid).is_file()
    }

    /// Put a committed blob in place from `src` (hard link, else copy); `src`
    /// stays where it is. Returns the target path.
    pub fn store(&self, oid: Oid, tid: Tid, src: &Path) -> FsResult<PathBuf> {
        let dir = self.oid_path(oid);
        std::fs::create_dir_all(&dir)?;
        let target = self.blob_path(oid, tid);
        match std::fs::remove_file(&target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        if std::fs::hard_link(src, &target).is_err() {
            let tmp = self
                .temp_dir()
                .join(format!("{}-{}.tmp", id_repr(&oid.0), id_repr(&tid.0)));
            std::fs::create_dir_all(self.temp_dir())?;
            std::fs::copy(src, &tmp)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &target)?;
        }
        self.set_not_writable(&target)?;
        Ok(target)
    }

    /// Committed blobs are read-only, with the directory's read permissions
    /// (ZODB `set_not_writable`).
    fn set_not_writable(&self, path: &Path) -> FsResult<()> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
        let dir_read = path
            .parent()
            .and_then(|d| std::fs::metadata(d).ok())
            .map(|m| m.permissions().mode() & 0o444)
            .unwrap_or(0o444);
        let new = (mode & !0o222) | dir_read;
        if new != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(new))?;
        }
        Ok(())
    }

    /// Copy the blob of one revision to another revision (undo of a blob change).
    pub fn copy_revision(&self, oid: Oid, from: Tid, to: Tid) -> FsResult<Option<PathBuf>> {
        let src = self.blob_path(oid, from);
        if !src.is_file() {
            return Ok(None);
        }
        let dir = self.oid_path(oid);
        std::fs::create_dir_all(&dir)?;
        let target = self.blob_path(oid, to);
        let _ = std::fs::remove_file(&target);
        std::fs::copy(&src, &target)?;
        self.set_not_writable(&target)?;
        Ok(Some(target))
    }

    /// Remove one revision's blob file (missing is fine), and the oid's
    /// directories when they become empty.
    pub fn remove(&self, oid: Oid, tid: Tid) -> FsResult<()> {
        let path = self.blob_path(oid, tid);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        self.remove_empty_dirs(oid);
        Ok(())
    }

    /// The sibling tree `<base>.old` that keeps the blobs of the pre-pack file
    /// (`Data.fs.old`), as Python's FileStorage does with `pack_keep_old`.
    pub fn old_tree(&self) -> PathBuf {
        let mut name = self.base.as_os_str().to_owned();
        name.push(".old");
        PathBuf::from(name)
    }

    /// Start a fresh `<base>.old` tree (an older one is removed), with the layout
    /// marker so Python can open it as a blob directory.
    pub fn begin_old_tree(&self) -> FsResult<BlobDir> {
        let old = self.old_tree();
        BlobDir::remove_all(&old)?;
        std::fs::create_dir_all(&old)?;
        std::fs::write(old.join(LAYOUT_MARKER), "bushy")?;
        Ok(BlobDir { base: old })
    }

    /// Move one revision's blob file into `old` (the same relative path), and
    /// remove the oid's directories here when they become empty. A missing file
    /// is fine. Returns whether a file moved.
    pub fn move_revision_to(&self, old: &BlobDir, oid: Oid, tid: Tid) -> FsResult<bool> {
        let path = self.blob_path(oid, tid);
        if !path.is_file() {
            return Ok(false);
        }
        std::fs::create_dir_all(old.oid_path(oid))?;
        std::fs::rename(&path, old.blob_path(oid, tid))?;
        self.remove_empty_dirs(oid);
        Ok(true)
    }

    /// Hard-link (else copy) every committed blob file of this tree into `old`
    /// that is not there yet, so `old` holds every blob `Data.fs.old` refers to.
    pub fn link_all_into(&self, old: &BlobDir) -> FsResult<usize> {
        let mut linked = 0;
        let mut stack = vec![self.base.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let path = entry.path();
                let file_type = entry.file_type()?;
                if file_type.is_dir() {
                    if dir != self.base || entry.file_name() != "tmp" {
                        stack.push(path);
                    }
                    continue;
                }
                if !path.to_string_lossy().ends_with(BLOB_SUFFIX) {
                    continue;
                }
                let Ok(relative) = path.strip_prefix(&self.base) else {
                    continue;
                };
                let target = old.base.join(relative);
                if target.exists() {
                    continue;
                }
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                if std::fs::hard_link(&path, &target).is_err() {
                    std::fs::copy(&path, &target)?;
                }
                linked += 1;
            }
        }
        Ok(linked)
    }

    /// Remove the empty directories of `oid`, bottom up (never the base).
    pub fn remove_empty_dirs(&self, oid: Oid) {
        let mut dir = self.oid_path(oid);
        while dir.starts_with(&self.base) && dir != self.base {
            if std::fs::remove_dir(&dir).is_err() {
                break;
            }
            if !dir.pop() {
                break;
            }
        }
    }

    /// Remove the blob files of `oid` not in `keep` (pack).
    pub fn remove_except(&self, oid: Oid, keep: &[Tid]) -> FsResult<usize> {
        let dir = self.oid_path(oid);
        let keep_names: Vec<String> = keep
            .iter()
            .map(|t| format!("{}{BLOB_SUFFIX}", id_repr(&t.0)))
            .collect();
        let mut removed = 0;
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(BLOB_SUFFIX) && !keep_names.contains(&name) {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        self.remove_empty_dirs(oid);
        Ok(removed)
    }

    /// Remove the whole tree (the `create` option).
    pub fn remove_all(base: &Path) -> FsResult<()> {
        match std::fs::remove_dir_all(base) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
