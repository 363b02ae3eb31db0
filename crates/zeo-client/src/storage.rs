//! The `Storage` implementation: every operation as ZEO calls on the current
//! connection, bounded by the per-call timeout (`pack` by its own), with replies
//! converted to the model and error replies mapped onto `StorageError`.

use std::path::PathBuf;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::sync::broadcast;
use zeoraid_storage::{
    CacheStats, CurrentRecord, Finished, HistoryEntry, Invalidation, LoadedRecord, Oid, Storage,
    StorageError, StorageInfo, StorageResult, Tid, Transaction, TransactionStream, TxnId,
    UndoEntry, UndoFilter, VoteOutcome, MAX_NEW_OIDS,
};
use zeoraid_wire::{ErrorPayload, Value};

use crate::blobs;
use crate::client::ZeoClient;
use crate::commit;
use crate::convert::{self, bytes_of, items, oid_of, tid_of};
use crate::error::{storage_error, ClientError};
use crate::iterator;
use crate::rpc::CacheEffect;

/// How many undo-log entries one `undoLog` call fetches when filtering locally.
const UNDO_PAGE: u64 = 200;

fn args(items: Vec<Value>) -> Value {
    Value::Tuple(items)
}

fn oid_arg(oid: Oid) -> Value {
    Value::from(oid.0)
}

fn tid_arg(tid: Tid) -> Value {
    Value::from(tid.0)
}

impl ZeoClient {
    /// A call on the current connection with the per-call timeout.
    async fn call(&self, name: &'static str, a: Value) -> Result<Value, ClientError> {
        let session = self.shared.session()?;
        session.call(name, a, self.shared.options.timeout).await
    }

    /// A call whose errors are about `oid`.
    async fn call_about(&self, oid: Oid, name: &'static str, a: Value) -> StorageResult<Value> {
        self.call(name, a)
            .await
            .map_err(|e| storage_error(e, Some(oid)))
    }

    async fn undo_page(&self, first: u64, last: u64) -> StorageResult<Vec<UndoEntry>> {
        let reply = self
            .call("undoLog", args(vec![Value::from(first), Value::from(last)]))
            .await?;
        Ok(items(&reply, "undoLog")?
            .iter()
            .map(convert::undo_entry)
            .collect::<Result<Vec<_>, _>>()?)
    }
}

#[async_trait]
impl Storage for ZeoClient {
    /// From the facts cached at connect (`get_info`) and kept current by the
    /// server's `info` callbacks — a ZEO server sends one to the committer before
    /// every `tpc_finish` reply, and to everyone after a pack — as Python's
    /// `ClientStorage` answers `len()`/`getSize()`. No round trip: a ZEO server
    /// (zeoraid's included) asks for `info` after every commit, inside its commit
    /// lock. Only a connection without a cached `get_info` answer asks again.
    async fn info(&self) -> StorageResult<StorageInfo> {
        let session = self.shared.session()?;
        let info = match self.shared.callbacks.cached_info() {
            Some(info) => info,
            None => {
                let info = session
                    .call("get_info", args(vec![]), self.shared.options.timeout)
                    .await?;
                self.shared.callbacks.update_info(&info);
                info
            }
        };
        let int = |k: &str| {
            info.get(k)
                .and_then(Value::as_int)
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0)
        };
        let blob_server = info
            .get("interfaces")
            .and_then(Value::as_tuple_or_list)
            .is_some_and(|ifaces| {
                ifaces.iter().any(|i| {
                    i.as_tuple_or_list()
                        .and_then(|pair| pair.get(1))
                        .and_then(Value::as_str)
                        == Some("IBlobStorage")
                })
            });
        let options = &self.shared.options;
        Ok(StorageInfo {
            name: info
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{} storage {}", options.servers[0], options.storage)),
            length: int("length"),
            size: int("size"),
            supports_undo: info.get("supportsUndo").is_some_and(Value::is_truthy),
            supports_blobs: blob_server && options.blob_dir.is_some(),
            read_only: options.read_only,
        })
    }

    async fn last_transaction(&self) -> StorageResult<Tid> {
        let reply = self.call("lastTransaction", args(vec![])).await?;
        let tid = tid_of(&reply, "lastTransaction")?;
        self.shared.callbacks.saw_tid(tid);
        Ok(tid)
    }

    /// From the object cache when it holds the answer; otherwise `loadBefore`,
    /// whose answer the reader task stores in the cache (in wire order with the
    /// invalidations) before this call sees it.
    async fn load_before(&self, oid: Oid, before: Tid) -> StorageResult<Option<LoadedRecord>> {
        let cache = &self.shared.callbacks.object_cache;
        if let Some(record) = cache.lookup(oid, before) {
            return Ok(Some(record));
        }
        let session = self.shared.session()?;
        cache.count_miss();
        let reply = session
            .call_with(
                BytesMut::new(),
                "loadBefore",
                args(vec![oid_arg(oid), tid_arg(before)]),
                self.shared.options.timeout,
                CacheEffect::StoreLoad(oid),
            )
            .await
            .map_err(|e| storage_error(e, Some(oid)))?;
        Ok(convert::loaded_record(&reply)?)
    }

    /// A hit of the object cache, answered on the calling thread; `None` (use
    /// the async call) on a miss.
    fn load_before_inline(
        &self,
        oid: Oid,
        before: Tid,
    ) -> Option<StorageResult<Option<LoadedRecord>>> {
        self.shared
            .callbacks
            .object_cache
            .lookup(oid, before)
            .map(|record| Ok(Some(record)))
    }

    /// The object cache's counters; `None` with `cache-size 0`.
    fn cache_stats(&self) -> Option<CacheStats> {
        let stats = ZeoClient::cache_stats(self);
        (stats.capacity > 0).then_some(CacheStats {
            hits: stats.hits,
            misses: stats.misses,
            bytes: stats.bytes,
            capacity: stats.capacity,
        })
    }

    async fn load_serial(&self, oid: Oid, serial: Tid) -> StorageResult<Bytes> {
        let reply = self
            .call_about(oid, "loadSerial", args(vec![oid_arg(oid), tid_arg(serial)]))
            .await?;
        Ok(bytes_of(&reply, "loadSerial")?)
    }

    async fn history(&self, oid: Oid, size: usize) -> StorageResult<Vec<HistoryEntry>> {
        let reply = self
            .call_about(oid, "history", args(vec![oid_arg(oid), Value::from(size)]))
            .await?;
        let mut entries = items(&reply, "history")?
            .iter()
            .map(convert::history_entry)
            .collect::<Result<Vec<_>, _>>()?;
        entries.truncate(size);
        Ok(entries)
    }

    async fn record_iternext(&self, start: Option<Oid>) -> StorageResult<Option<CurrentRecord>> {
        let arg = start.map(oid_arg).unwrap_or(Value::None);
        match self.call("record_iternext", args(vec![arg])).await {
            Ok(reply) => Ok(Some(convert::current_record(&reply)?)),
            // FileStorage: `index.minKey(next)` raises ValueError when no oid >= next.
            Err(ClientError::Remote(ErrorPayload::Builtin { name, .. }))
                if name == "ValueError" =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn iterator(
        &self,
        start: Option<Tid>,
        stop: Option<Tid>,
    ) -> StorageResult<TransactionStream> {
        let session = self.shared.session()?;
        Ok(iterator::transactions(session, start, stop, self.shared.options.timeout).await?)
    }

    async fn undo_log(
        &self,
        first: u64,
        last: u64,
        filter: Option<UndoFilter>,
    ) -> StorageResult<Vec<UndoEntry>> {
        if last <= first {
            return Ok(Vec::new());
        }
        let Some(filter) = filter else {
            return self.undo_page(first, last).await;
        };
        // The filter cannot travel: fetch pages and filter here (first/last count
        // accepted entries). Commits made meanwhile may shift the pages.
        let want = usize::try_from(last - first).unwrap_or(usize::MAX);
        let mut skip = first;
        let mut accepted = Vec::new();
        let mut pos = 0u64;
        loop {
            let page = self.undo_page(pos, pos + UNDO_PAGE).await?;
            let full = page.len() as u64 >= UNDO_PAGE;
            for entry in page {
                if !filter(&entry) {
                    continue;
                }
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                accepted.push(entry);
                if accepted.len() >= want {
                    return Ok(accepted);
                }
            }
            if !full {
                return Ok(accepted);
            }
            pos += UNDO_PAGE;
        }
    }

    async fn new_oids(&self, count: u32) -> StorageResult<Vec<Oid>> {
        if self.shared.options.read_only {
            return Err(StorageError::ReadOnly);
        }
        let count = count.clamp(1, MAX_NEW_OIDS);
        let reply = self
            .call("new_oids", args(vec![Value::from(count)]))
            .await?;
        let mut oids = items(&reply, "new_oids")?
            .iter()
            .map(|o| oid_of(o, "new_oids"))
            .collect::<Result<Vec<_>, _>>()?;
        if oids.is_empty() {
            return Err(ClientError::Protocol("new_oids returned no oid".into()).into());
        }
        oids.sort();
        Ok(oids)
    }

    async fn vote(&self, txn: Transaction) -> StorageResult<VoteOutcome> {
        commit::vote(&self.shared, txn).await
    }

    async fn finish(&self, id: TxnId) -> StorageResult<Tid> {
        commit::finish(&self.shared, id).await
    }

    async fn finish_deferred(&self, id: TxnId) -> StorageResult<Finished> {
        commit::finish_deferred(&self.shared, id).await
    }

    async fn abort(&self, id: TxnId) -> StorageResult<()> {
        commit::abort(&self.shared, id).await
    }

    /// `pack(t, 1)`. Then the object cache is emptied: it may hold revisions the
    /// pack removed, which the server would no longer answer.
    async fn pack(&self, t: f64) -> StorageResult<()> {
        let session = self.shared.session()?;
        let packed = session
            .call(
                "pack",
                args(vec![Value::Float(t), Value::Int(1)]),
                self.shared.options.pack_timeout,
            )
            .await;
        self.shared.callbacks.object_cache.clear(session.generation);
        packed?;
        Ok(())
    }

    async fn load_blob(&self, oid: Oid, serial: Tid) -> StorageResult<PathBuf> {
        let options = &self.shared.options;
        let Some(dir) = &options.blob_dir else {
            return Err(StorageError::Unsupported(
                "blobs: no blob-dir configured for this ZEO client".into(),
            ));
        };
        if options.shared_blob_dir {
            let path = blobs::server_blob_path(dir, oid, serial);
            return if path.exists() {
                Ok(path)
            } else {
                Err(StorageError::PosKey { oid })
            };
        }
        let path = blobs::cache_path(dir, oid, serial);
        let cache = self.shared.callbacks.blob_cache.as_ref();
        if path.exists() {
            if let Some(cache) = cache {
                cache.touch(&path);
            }
            return Ok(path);
        }
        let _downloading = self.shared.blob_download.lock().await;
        if path.exists() {
            if let Some(cache) = cache {
                cache.touch(&path);
            }
            return Ok(path);
        }
        self.call_about(oid, "sendBlob", args(vec![oid_arg(oid), tid_arg(serial)]))
            .await?;
        if path.exists() {
            Ok(path)
        } else {
            Err(StorageError::PosKey { oid })
        }
    }

    fn invalidations(&self) -> Option<broadcast::Receiver<Invalidation>> {
        Some(self.shared.callbacks.invalidations.subscribe())
    }

    async fn close(&self) -> StorageResult<()> {
        self.shared.shut_down();
        Ok(())
    }
}
