//! Concurrency: readers during commits see only committed, consistent states; many
//! writers commit through the one-vote-at-a-time rule (ZODB's MTStorage tests).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use zeoraid_storage::Tid;

use super::fresh;
use crate::check::*;
use crate::data::record;
use crate::harness::Harness;
use crate::{check, check_eq};

pub async fn concurrent_readers_see_committed_states<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let a = new_oid(&*s).await?;
    let t0 = commit_one(&*s, a, Tid::ZERO, record("v0")).await?;
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (s, done) = (s.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            let mut seen: Vec<(Tid, Bytes)> = Vec::new();
            let mut last = Tid::ZERO;
            loop {
                let finished = done.load(Ordering::SeqCst);
                let (data, serial) = load_current(&*s, a).await?;
                check!(
                    serial >= last,
                    "a reader saw serial {serial:?} after {last:?} (went back in time)"
                );
                last = serial;
                let again = s.load_serial(a, serial).await.ctx("load_serial")?;
                check_eq!(
                    again,
                    data,
                    "load_serial of the serial load_before returned"
                );
                seen.push((serial, data));
                if finished {
                    return Ok::<_, Failure>(seen);
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut committed = HashMap::new();
    committed.insert(t0, record("v0"));
    let mut serial = t0;
    for i in 1..=20 {
        let data = record(&format!("v{i}"));
        serial = commit_one(&*s, a, serial, data.clone()).await?;
        committed.insert(serial, data);
    }
    done.store(true, Ordering::SeqCst);
    for reader in readers {
        let seen = within(Duration::from_secs(20), "reader", reader)
            .await?
            .map_err(|e| Failure(format!("reader task: {e}")))??;
        check!(!seen.is_empty(), "a reader read nothing");
        for (tid, data) in seen {
            check_eq!(
                committed.get(&tid),
                Some(&data),
                "a reader saw serial {tid:?} with data that was not committed with it"
            );
        }
    }
    Ok(())
}

pub async fn concurrent_writers<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let oids = new_oids(&*s, 4).await?;
    let mut writers = Vec::new();
    for &oid in &oids {
        let s = s.clone();
        writers.push(tokio::spawn(async move {
            let mut serial = Tid::ZERO;
            let mut tids = Vec::new();
            for i in 0..8 {
                serial = commit_one(&*s, oid, serial, record(&format!("{oid}-{i}"))).await?;
                tids.push(serial);
            }
            Ok::<_, Failure>(tids)
        }));
    }
    let mut all = Vec::new();
    for w in writers {
        let tids = within(Duration::from_secs(30), "writer", w)
            .await?
            .map_err(|e| Failure(format!("writer task: {e}")))??;
        all.extend(tids);
    }
    all.sort();
    let txns = transactions(&*s, None, None).await?;
    check_eq!(
        txns.iter().map(|t| t.tid).collect::<Vec<_>>(),
        all,
        "iterator tids after concurrent commits (unique and increasing)"
    );
    for &oid in &oids {
        check_eq!(
            s.history(oid, 100).await.ctx("history")?.len(),
            8,
            "history length of {oid}"
        );
        check_eq!(
            load_current(&*s, oid).await?.0,
            record(&format!("{oid}-7")),
            "final data of {oid}"
        );
    }
    Ok(())
}
