//! Keeping the blob cache (`<blob-dir>/<oid hex>/<tid hex>.blob`) within
//! `blob-cache-size`, the way ZEO's `ClientStorage._check_blob_size` does: after
//! `blob-cache-size-check` percent of the size has been downloaded since the last
//! check (and once at start), a background pass deletes the least recently used
//! blob files until the cache is at most `size - size × check / 100`.
//!
//! "Recently used" is the file's access time, which [`BlobCache::touch`] sets on
//! every cache hit (mounts with `relatime`/`noatime` would not). A file used within
//! the last `grace` is never deleted: `load_blob` hands out a path that the caller
//! opens afterwards, and ZEO protects the same window with a per-oid lock file.
//! In-progress downloads (`.dl`) are not counted and never deleted.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{debug, info, warn};

/// What one pruning pass found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlobCachePrune {
    /// Bytes of complete blob files before the pass.
    pub size_before: u64,
    /// Bytes left afterwards.
    pub size_after: u64,
    /// Files deleted.
    pub removed: u64,
}

/// A size-limited blob cache directory.
pub(crate) struct BlobCache {
    dir: PathBuf,
    /// `blob-cache-size`; `None`: never pruned.
    limit: Option<u64>,
    /// Bytes downloaded between checks (`limit × check / 100`).
    check_bytes: u64,
    grace: Duration,
    downloaded_since_check: AtomicU64,
    pruning: Arc<AtomicBool>,
}

impl BlobCache {
    pub(crate) fn new(
        dir: PathBuf,
        limit: Option<u64>,
        check_percent: u8,
        grace: Duration,
    ) -> Self {
        // ZEO: `blob_cache_size * blob_cache_size_check // 100`.
        let check_bytes = limit.map_or(0, |l| {
            u64::try_from(u128::from(l) * u128::from(check_percent) / 100).unwrap_or(u64::MAX)
        });
        BlobCache {
            dir,
            limit,
            check_bytes,
            grace,
            downloaded_since_check: AtomicU64::new(0),
            pruning: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The size a pass prunes down to (ZEO: `max(size - check, 0)`).
    fn target(&self) -> Option<u64> {
        self.limit.map(|l| l.saturating_sub(self.check_bytes))
    }

    /// Marks a cache file as just used, so that it is pruned last.
    pub(crate) fn touch(&self, path: &Path) {
        if self.limit.is_none() {
            return;
        }
        let now = SystemTime::now();
        let touched = std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_times(std::fs::FileTimes::new().set_accessed(now)));
        if let Err(e) = touched {
            debug!("cannot set the access time of {}: {e}", path.display());
        }
    }

    /// Counts a finished download; starts a background pass once `check` percent
    /// of the size has come in since the last one.
    pub(crate) fn downloaded(&self, bytes: u64) {
        if self.limit.is_none() {
            return;
        }
        let total = self
            .downloaded_since_check
            .fetch_add(bytes, Ordering::Relaxed)
            .saturating_add(bytes);
        if total >= self.check_bytes {
            self.prune_in_background();
        }
    }

    /// Starts a pass on a blocking thread unless one is running.
    pub(crate) fn prune_in_background(&self) {
        let Some(target) = self.target() else {
            return;
        };
        if self.pruning.swap(true, Ordering::AcqRel) {
            return;
        }
        self.downloaded_since_check.store(0, Ordering::Relaxed);
        let dir = self.dir.clone();
        let grace = self.grace;
        let pruning = self.pruning.clone();
        // Without a runtime (a client used outside tokio) there is nothing to
        // prune on; the next download tries again.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            pruning.store(false, Ordering::Release);
            return;
        };
        handle.spawn_blocking(move || {
            log_pass(&dir, prune(&dir, target, grace));
            pruning.store(false, Ordering::Release);
        });
    }

    /// One pass now (waits for a running background pass to end first).
    pub(crate) async fn prune_now(&self) -> std::io::Result<BlobCachePrune> {
        let Some(target) = self.target() else {
            return Ok(BlobCachePrune::default());
        };
        while self.pruning.swap(true, Ordering::AcqRel) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.downloaded_since_check.store(0, Ordering::Relaxed);
        let dir = self.dir.clone();
        let grace = self.grace;
        let result = tokio::task::spawn_blocking(move || prune(&dir, target, grace)).await;
        self.pruning.store(false, Ordering::Release);
        match result {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(format!("pruning task failed: {e}"))),
        }
    }
}

fn log_pass(dir: &Path, result: std::io::Result<BlobCachePrune>) {
    match result {
        Ok(p) if p.removed > 0 => info!(
            dir = %dir.display(),
            removed = p.removed,
            size_before = p.size_before,
            size_after = p.size_after,
            "pruned the blob cache"
        ),
        Ok(p) => debug!(dir = %dir.display(), size = p.size_before, "blob cache within its size"),
        Err(e) => warn!(dir = %dir.display(), "cannot prune the blob cache: {e}"),
    }
}

/// A cache directory name: 16 hex digits (an oid).
fn is_oid_dir_name(name: &str) -> bool {
    name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

struct CachedFile {
    used: SystemTime,
    size: u64,
    path: PathBuf,
}

/// Deletes least recently used `.blob` files of `dir` until at most `target`
/// bytes are left, sparing files used within `grace`.
fn prune(dir: &Path, target: u64, grace: Duration) -> std::io::Result<BlobCachePrune> {
    let mut files = Vec::new();
    let mut size = 0u64;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if !name.to_str().is_some_and(is_oid_dir_name) {
            continue;
        }
        let Ok(inner) = std::fs::read_dir(entry.path()) else {
            continue;
        };
        for file in inner.flatten() {
            let path = file.path();
            if path.extension().is_none_or(|e| e != "blob") {
                continue;
            }
            // A file can vanish meanwhile (another pass, a rename): skip it.
            let Ok(meta) = file.metadata() else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let accessed = meta.accessed().unwrap_or(SystemTime::UNIX_EPOCH);
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            size += meta.len();
            files.push(CachedFile {
                used: accessed.max(modified),
                size: meta.len(),
                path,
            });
        }
    }
    let mut outcome = BlobCachePrune {
        size_before: size,
        size_after: size,
        removed: 0,
    };
    if size <= target {
        return Ok(outcome);
    }
    files.sort_by(|a, b| a.used.cmp(&b.used).then_with(|| a.path.cmp(&b.path)));
    let spare_after = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    for f in files {
        if size <= target {
            break;
        }
        if f.used > spare_after {
            // Sorted by use: every later file is recent too.
            break;
        }
        match std::fs::remove_file(&f.path) {
            Ok(()) => {
                size -= f.size;
                outcome.removed += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                size -= f.size;
            }
            Err(e) => debug!("cannot remove {}: {e}", f.path.display()),
        }
    }
    outcome.size_after = size;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write(dir: &Path, oid: &str, tid: &str, len: usize, used_secs_ago: u64) -> PathBuf {
        let d = dir.join(oid);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(format!("{tid}.blob"));
        std::fs::write(&p, vec![b'x'; len]).unwrap();
        let t = SystemTime::now() - Duration::from_secs(used_secs_ago);
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_times(std::fs::FileTimes::new().set_accessed(t).set_modified(t))
            .unwrap();
        p
    }

    #[test]
    fn prunes_least_recently_used_first_and_spares_recent_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let oldest = write(d, "0000000000000001", "0000000000000001", 1000, 300);
        let old = write(d, "0000000000000002", "0000000000000001", 1000, 200);
        let newer = write(d, "0000000000000003", "0000000000000001", 1000, 100);
        let recent = write(d, "0000000000000004", "0000000000000001", 1000, 0);
        // Not cache files: never counted, never deleted.
        std::fs::write(d.join("0000000000000004/0000000000000002.dl"), [0u8; 5000]).unwrap();
        std::fs::write(d.join(".layout"), "x").unwrap();

        let p = prune(d, 2500, Duration::from_secs(10)).unwrap();
        assert_eq!((p.size_before, p.size_after, p.removed), (4000, 2000, 2));
        assert!(!oldest.exists() && !old.exists());
        assert!(newer.exists() && recent.exists());

        // Down to nothing: the file used within the grace period stays.
        let p = prune(d, 0, Duration::from_secs(10)).unwrap();
        assert_eq!((p.size_after, p.removed), (1000, 1));
        assert!(recent.exists() && !newer.exists());
        assert!(d.join("0000000000000004/0000000000000002.dl").exists());
        assert!(d.join(".layout").exists());
    }

    #[test]
    fn touch_makes_a_file_recent() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = write(d, "0000000000000001", "0000000000000001", 1000, 300);
        let b = write(d, "0000000000000002", "0000000000000001", 1000, 200);
        let cache = BlobCache::new(d.to_owned(), Some(1000), 10, Duration::ZERO);
        cache.touch(&a);
        let p = prune(d, 1000, Duration::ZERO).unwrap();
        assert_eq!(p.removed, 1);
        assert!(a.exists() && !b.exists());
    }

    #[test]
    fn check_threshold_and_target_follow_zeo() {
        let cache = BlobCache::new("/nonexistent".into(), Some(1_000_000), 10, Duration::ZERO);
        assert_eq!(cache.check_bytes, 100_000);
        assert_eq!(cache.target(), Some(900_000));
        let unbounded = BlobCache::new("/nonexistent".into(), None, 10, Duration::ZERO);
        assert_eq!(unbounded.target(), None);
    }
}
