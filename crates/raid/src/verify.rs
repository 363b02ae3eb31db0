//! `verify`: compares every optimal backend transaction by transaction and
//! record by record (metadata, data checksums and back-pointers as in
//! [`crate::compare`], plus each record's blob flag and blob content), and
//! reports the first difference. It may run while clients write: it compares up
//! to the transaction that was the last committed one when it started.
//! Blob files are compared by content, in chunks.

use std::fmt;
use std::path::PathBuf;

use futures::future::join_all;
use zeoraid_storage::{Tid, TransactionRecord, TransactionStream};

use crate::backend::{Backend, CallError, Fault, Kind};
use crate::compare::{normalized, tid_str, transaction_difference};
use crate::error::RaidError;
use crate::{lock, Inner};

/// What `verify` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// The backends compared (the optimal ones), in configuration order.
    pub backends: Vec<String>,
    /// The last tid compared (the last committed one when verify started).
    pub up_to: Tid,
    /// Transactions compared (and found identical, up to the difference).
    pub transactions: u64,
    /// Records compared.
    pub records: u64,
    /// Blobs compared by content.
    pub blobs: u64,
    /// The first difference, `None` when the backends are identical.
    pub difference: Option<String>,
}

impl VerifyReport {
    pub fn identical(&self) -> bool {
        self.difference.is_none()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.difference {
            None => write!(
                f,
                "identical: {} transactions, {} records, {} blobs on {}",
                self.transactions,
                self.records,
                self.blobs,
                self.backends.join(", ")
            ),
            Some(d) => write!(
                f,
                "different after {} identical transactions: {d}",
                self.transactions
            ),
        }
    }
}

fn failed(b: &Backend, what: &str, e: CallError) -> RaidError {
    let text = match e {
        CallError::Answer(e) | CallError::Fault(Fault::Error(e)) => e.to_string(),
        CallError::Fault(Fault::TimedOut(d)) => {
            format!("timed out after {}", crate::backend::format_duration(d))
        }
    };
    RaidError::VerifyFailed(format!("backend {}: {what} failed: {text}", b.name))
}

async fn next_of(
    b: &Backend,
    stream: &mut TransactionStream,
) -> Result<Option<TransactionRecord>, RaidError> {
    use futures::StreamExt;
    match tokio::time::timeout(b.timeout, stream.next()).await {
        Ok(None) => Ok(None),
        Ok(Some(Ok(t))) => Ok(Some(t)),
        Ok(Some(Err(e))) => Err(failed(b, "iterator", CallError::Fault(Fault::Error(e)))),
        Err(_) => Err(failed(
            b,
            "iterator",
            CallError::Fault(Fault::TimedOut(b.timeout)),
        )),
    }
}

/// Whether two files hold the same bytes (read in chunks).
async fn same_content(a: PathBuf, b: PathBuf) -> std::io::Result<bool> {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
        if fa.metadata()?.len() != fb.metadata()?.len() {
            return Ok(false);
        }
        let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
        loop {
            let n = fa.read(&mut ba)?;
            if n == 0 {
                return Ok(true);
            }
            fb.read_exact(&mut bb[..n])?;
            if ba[..n] != bb[..n] {
                return Ok(false);
            }
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

impl Inner {
    pub(crate) async fn verify(&self) -> Result<VerifyReport, RaidError> {
        self.check_open().map_err(|_| RaidError::Closed)?;
        let up_to = lock(&self.tids).committed;
        let indices = self.optimal();
        let backends: Vec<_> = indices.iter().map(|&i| self.backend(i)).collect();
        let mut report = VerifyReport {
            backends: backends.iter().map(|b| b.name.clone()).collect(),
            up_to,
            transactions: 0,
            records: 0,
            blobs: 0,
            difference: None,
        };
        if backends.is_empty() {
            return Err(RaidError::VerifyFailed("no optimal backend".into()));
        }
        tracing::info!(backends = ?report.backends, up_to = %tid_str(up_to), "verify started");
        let opens = backends.iter().map(|b| async move {
            b.call(Kind::Read, b.storage.iterator(None, Some(up_to)))
                .await
                .map_err(|e| failed(b, "iterator", e))
        });
        let mut streams = Vec::new();
        for s in join_all(opens).await {
            streams.push(s?);
        }
        loop {
            // Every backend's next transaction at once: a walk over remote
            // backends costs the slowest one's round trips, not their sum.
            let nexts = backends
                .iter()
                .zip(streams.iter_mut())
                .map(|(b, stream)| next_of(b, stream));
            let mut txns = Vec::with_capacity(backends.len());
            for t in join_all(nexts).await {
                txns.push(t?);
            }
            let first = &txns[0];
            let (a, an) = (first, &backends[0].name);
            for (other, b) in txns.iter().zip(&backends).skip(1) {
                let diff = match (a, other) {
                    (None, None) => None,
                    (Some(x), None) => Some(format!(
                        "{an} has transaction {}, {} has no more transactions",
                        tid_str(x.tid),
                        b.name
                    )),
                    (None, Some(y)) => Some(format!(
                        "{} has transaction {}, {an} has no more transactions",
                        b.name,
                        tid_str(y.tid)
                    )),
                    (Some(x), Some(y)) if x.tid != y.tid => Some(format!(
                        "next transaction is {} on {an} but {} on {}",
                        tid_str(x.tid),
                        tid_str(y.tid),
                        b.name
                    )),
                    (Some(x), Some(y)) => transaction_difference(x, an, y, &b.name, true)
                        .map(|d| format!("transaction {}: {d}", tid_str(x.tid))),
                };
                if diff.is_some() {
                    report.difference = diff;
                    tracing::warn!(report = %report, "verify found a difference");
                    return Ok(report);
                }
            }
            let Some(txn) = first else {
                break;
            };
            // Blobs by content.
            for (oid, r) in normalized(txn) {
                if !r.has_blob {
                    continue;
                }
                let loads = backends.iter().map(|b| async move {
                    b.call(Kind::Read, b.storage.load_blob(oid, r.tid))
                        .await
                        .map_err(|e| failed(b, "load_blob", e))
                });
                let mut paths = Vec::new();
                for p in join_all(loads).await {
                    paths.push(p?);
                }
                for (p, b) in paths.iter().zip(&backends).skip(1) {
                    let same = same_content(paths[0].clone(), p.clone())
                        .await
                        .map_err(|e| RaidError::VerifyFailed(format!("reading blobs: {e}")))?;
                    if !same {
                        report.difference = Some(format!(
                            "transaction {}: the blob of oid {oid:?} differs ({an} vs {})",
                            tid_str(txn.tid),
                            b.name
                        ));
                        return Ok(report);
                    }
                }
                report.blobs += 1;
            }
            report.transactions += 1;
            report.records += txn.records.len() as u64;
        }
        tracing::info!(report = %report, "verify finished");
        Ok(report)
    }
}
