//! Server → client callbacks, always one-way `(0, True, name, args)`:
//! `invalidateTransaction(tid, oids)` ends the cached current revisions of the
//! oids and goes out on the invalidation broadcast, `invalidateCache()` empties
//! the object cache,
//! `info(dict)` updates the cached storage facts, and
//! `receiveBlobStart/Chunk/Stop(oid, serial, …)` write a blob into the blob cache
//! (they arrive before the reply to the `sendBlob` call that asked for them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;
use tracing::{debug, warn};
use zeoraid_storage::{Invalidation, Oid, Tid};
use zeoraid_wire::Value;

use crate::blob_cache::BlobCache;
use crate::blobs;
use crate::object_cache::ObjectCache;

/// Blob downloads in progress on one connection (owned by its reader task).
#[derive(Default)]
pub(crate) struct Downloads {
    /// Partial file, open handle, bytes written so far.
    files: HashMap<(Oid, Tid), (PathBuf, tokio::fs::File, u64)>,
}

/// What callbacks update; shared by every connection of one client.
pub(crate) struct Callbacks {
    pub(crate) invalidations: broadcast::Sender<Invalidation>,
    /// The storage facts last heard of (`get_info`, then `info` updates).
    pub(crate) info: Mutex<Vec<(Value, Value)>>,
    /// Someone else committed since the last `info`/`get_info`: the cached
    /// length and size are out of date.
    info_stale: AtomicBool,
    /// The newest tid seen: register, invalidations, our own commits.
    pub(crate) last_tid: Mutex<Tid>,
    /// Where `receiveBlob*` write (None: no blob cache; shared blob dirs need none).
    pub(crate) blob_cache: Option<Arc<BlobCache>>,
    /// The object cache (`cache-size`), changed in wire order by the reader task.
    pub(crate) object_cache: Arc<ObjectCache>,
}

fn oid_tid(args: &[Value], name: &str) -> Result<(Oid, Tid), String> {
    match args {
        [oid, tid, ..] => match (oid.as_bytes8(), tid.as_bytes8()) {
            (Some(oid), Some(tid)) => Ok((Oid(oid), Tid(tid))),
            _ => Err(format!("{name}: oid/serial are not 8-byte bytes")),
        },
        _ => Err(format!("{name}: expected (oid, serial, …)")),
    }
}

impl Callbacks {
    pub(crate) fn new(blob_cache: Option<Arc<BlobCache>>, object_cache_size: u64) -> Self {
        let (invalidations, _) = broadcast::channel(1024);
        Callbacks {
            invalidations,
            info: Mutex::new(Vec::new()),
            info_stale: AtomicBool::new(false),
            last_tid: Mutex::new(Tid::ZERO),
            blob_cache,
            object_cache: Arc::new(ObjectCache::new(object_cache_size)),
        }
    }

    /// Records `tid` as seen if it is newer.
    pub(crate) fn saw_tid(&self, tid: Tid) {
        if let Ok(mut last) = self.last_tid.lock() {
            if tid > *last {
                *last = tid;
            }
        }
    }

    pub(crate) fn last_tid(&self) -> Tid {
        self.last_tid.lock().map(|t| *t).unwrap_or(Tid::ZERO)
    }

    /// Merges a dict into the cached info.
    pub(crate) fn update_info(&self, dict: &Value) {
        let Some(items) = dict.as_dict() else {
            return;
        };
        if let Ok(mut info) = self.info.lock() {
            // Both `get_info` and the `info` callback report the storage's current
            // length and size, others' commits included.
            self.info_stale.store(false, Ordering::Release);
            for (k, v) in items {
                match info.iter_mut().find(|(old, _)| old == k) {
                    Some(slot) => slot.1 = v.clone(),
                    None => info.push((k.clone(), v.clone())),
                }
            }
        }
    }

    /// The cached storage facts as a dict, if a `get_info` answer is among them
    /// and no commit by someone else came since the last update.
    pub(crate) fn cached_info(&self) -> Option<Value> {
        if self.info_stale.load(Ordering::Acquire) {
            return None;
        }
        let info = self.info.lock().ok()?;
        info.iter()
            .any(|(k, _)| k.as_str() == Some("name"))
            .then(|| Value::Dict(info.clone()))
    }

    /// Broadcasts an invalidation (nobody listening is fine).
    pub(crate) fn invalidate(&self, tid: Tid, oids: Vec<Oid>) {
        self.saw_tid(tid);
        self.info_stale.store(true, Ordering::Release);
        let _ = self.invalidations.send(Invalidation { tid, oids });
    }

    /// Handles one callback read by session `generation`. `Err(reason)` means the
    /// server broke the protocol and the connection is dropped; unknown callbacks
    /// are only logged (as ZEO does).
    pub(crate) async fn handle(
        &self,
        generation: u64,
        name: &str,
        args: Value,
        downloads: &mut Downloads,
    ) -> Result<(), String> {
        let args = args
            .into_tuple_or_list()
            .map_err(|v| format!("{name}: args are a {}, not a tuple", v.type_name()))?;
        match name {
            "invalidateTransaction" => {
                let [tid, oids] = args.as_slice() else {
                    return Err("invalidateTransaction: expected (tid, oids)".into());
                };
                let tid = tid
                    .as_bytes8()
                    .map(Tid)
                    .ok_or("invalidateTransaction: tid is not 8 bytes")?;
                let oids = oids
                    .as_tuple_or_list()
                    .ok_or("invalidateTransaction: oids are not a list")?
                    .iter()
                    .map(|o| o.as_bytes8().map(Oid))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("invalidateTransaction: an oid is not 8 bytes")?;
                debug!(?tid, count = oids.len(), "invalidateTransaction");
                self.object_cache.invalidate(generation, tid, &oids);
                self.invalidate(tid, oids);
                Ok(())
            }
            "invalidateCache" => {
                // ZEO's server sends it when it cannot tell what changed; the
                // invalidation stream has no "everything" to pass on.
                warn!("the server invalidated the whole cache");
                self.object_cache.clear(generation);
                Ok(())
            }
            "info" => {
                let [dict] = args.as_slice() else {
                    return Err("info: expected (dict,)".into());
                };
                if dict.as_dict().is_none() {
                    return Err("info: argument is not a dict".into());
                }
                self.update_info(dict);
                Ok(())
            }
            "receiveBlobStart" => {
                let key = oid_tid(&args, name)?;
                self.blob_start(key, downloads).await;
                Ok(())
            }
            "receiveBlobChunk" => {
                let key = oid_tid(&args, name)?;
                let chunk = args
                    .get(2)
                    .and_then(Value::as_bytes)
                    .ok_or("receiveBlobChunk: chunk is not bytes")?;
                if let Some((path, file, written)) = downloads.files.get_mut(&key) {
                    *written += chunk.len() as u64;
                    if let Err(e) = file.write_all(chunk).await {
                        warn!("writing blob cache file {}: {e}", path.display());
                        downloads.files.remove(&key);
                    }
                } else {
                    debug!(oid = %key.0, "blob chunk without a started download; ignored");
                }
                Ok(())
            }
            "receiveBlobStop" => {
                let key = oid_tid(&args, name)?;
                if let Some((path, file, written)) = downloads.files.remove(&key) {
                    if finish_download(&path, file).await {
                        if let Some(cache) = &self.blob_cache {
                            cache.downloaded(written);
                        }
                    }
                }
                Ok(())
            }
            other => {
                warn!("unknown callback {other:?} from server; ignored");
                Ok(())
            }
        }
    }

    async fn blob_start(&self, key: (Oid, Tid), downloads: &mut Downloads) {
        let Some(cache) = &self.blob_cache else {
            debug!("blob sent but no blob cache configured; ignored");
            return;
        };
        let dir = cache.dir();
        let path = blobs::download_path(&blobs::cache_path(dir, key.0, key.1));
        if let Some(parent) = path.parent() {
            if let Err(e) = tokio::fs::create_dir_all(parent).await {
                warn!("creating blob cache directory {}: {e}", parent.display());
                return;
            }
        }
        match tokio::fs::File::create(&path).await {
            Ok(file) => {
                downloads.files.insert(key, (path, file, 0));
            }
            Err(e) => warn!("creating blob cache file {}: {e}", path.display()),
        }
    }
}

/// Completes a download: the partial file becomes the cache file. False if that
/// failed (logged).
async fn finish_download(partial: &Path, mut file: tokio::fs::File) -> bool {
    if let Err(e) = file.flush().await {
        warn!("flushing blob cache file {}: {e}", partial.display());
        return false;
    }
    drop(file);
    let done = partial.with_extension("blob");
    if let Err(e) = tokio::fs::rename(partial, &done).await {
        warn!("renaming blob cache file {}: {e}", partial.display());
        return false;
    }
    true
}
