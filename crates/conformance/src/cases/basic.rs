//! Oids, commits, loads, history, tids (ZODB's BasicStorage, RevisionStorage and
//! HistoryStorage tests).

use bytes::Bytes;
use zeoraid_storage::{
    LoadedRecord, Oid, StorageError, Tid, TransactionMeta, VoteOutcome, MAX_NEW_OIDS,
};

use super::fresh;
use crate::check::*;
use crate::data::{meta, record};
use crate::harness::Harness;
use crate::{check, check_eq, check_err};

pub async fn empty_storage<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    check_eq!(
        s.last_transaction().await.ctx("last_transaction")?,
        Tid::ZERO,
        "last_transaction of an empty storage"
    );
    let info = s.info().await.ctx("info")?;
    check_eq!(info.length, 0, "info.length of an empty storage");
    check_err!(
        s.load_before(Oid::ZERO, Tid::MAX).await,
        StorageError::PosKey { .. },
        "load_before(root, MAX) in an empty storage"
    );
    check_err!(
        s.history(Oid::ZERO, 1).await,
        StorageError::PosKey { .. },
        "history(root) in an empty storage"
    );
    check_eq!(
        s.record_iternext(None).await.ctx("record_iternext")?,
        None,
        "record_iternext(None) in an empty storage"
    );
    check!(
        transactions(&*s, None, None).await?.is_empty(),
        "iterator of an empty storage is not empty"
    );
    if h.capabilities().undo {
        check!(
            s.undo_log(0, 20, None).await.ctx("undo_log")?.is_empty(),
            "undo_log of an empty storage is not empty"
        );
    }
    Ok(())
}

pub async fn new_oids_ascending_unique<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let mut all = Vec::new();
    for n in [1, 5, MAX_NEW_OIDS, 2] {
        all.extend(new_oids(&*s, n).await?);
    }
    check!(
        !all.contains(&Oid::ZERO),
        "new_oids handed out oid 0 (the root oid, which the database stores without asking)"
    );
    for w in all.windows(2) {
        check!(
            w[0] < w[1],
            "new_oids not strictly ascending across calls: {} then {}",
            w[0],
            w[1]
        );
    }
    Ok(())
}

pub async fn new_oids_skip_stored_oids<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let first = new_oid(&*s).await?;
    let high = Oid::from_u64(first.as_u64() + 1000);
    commit_one(&*s, high, Tid::ZERO, record("high")).await?;
    let next = new_oid(&*s).await?;
    check!(
        next > high,
        "new_oids handed out {next} after oid {high} was stored (oids must never be reused)"
    );
    let higher = Oid::from_u64(next.as_u64() + 1000);
    commit(
        &*s,
        vec![zeoraid_storage::Operation::Restore {
            oid: higher,
            data: Some(record("restored high")),
            prev_txn: None,
            blob: None,
        }],
    )
    .await?;
    let next = new_oid(&*s).await?;
    check!(
        next > higher,
        "new_oids handed out {next} after oid {higher} was restored"
    );
    Ok(())
}

pub async fn commit_and_load<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let oid = new_oid(&*s).await?;
    let data = record("one");
    let tid = commit_one(&*s, oid, Tid::ZERO, data.clone()).await?;
    check!(tid > Tid::ZERO, "commit returned tid zero");
    check_eq!(
        s.last_transaction().await.ctx("last_transaction")?,
        tid,
        "last_transaction after a commit"
    );
    check_eq!(
        s.load_before(oid, Tid::MAX).await.ctx("load_before")?,
        Some(LoadedRecord {
            data: data.clone(),
            start: tid,
            end: None
        }),
        "load_before(oid, MAX) after the first commit"
    );
    check_eq!(
        s.load_serial(oid, tid).await.ctx("load_serial")?,
        data,
        "load_serial(oid, tid)"
    );
    check_eq!(
        s.load_before(oid, tid).await.ctx("load_before(oid, tid)")?,
        None,
        "load_before(oid, first tid) must be None (no revision before it)"
    );
    check_eq!(
        s.history(oid, 10).await.ctx("history")?.len(),
        1,
        "history length after one commit"
    );
    Ok(())
}

pub async fn load_before_revisions<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let oid = new_oid(&*s).await?;
    let (d1, d2, d3) = (record("r1"), record("r2"), record("r3"));
    let t1 = commit_one(&*s, oid, Tid::ZERO, d1.clone()).await?;
    let t2 = commit_one(&*s, oid, t1, d2.clone()).await?;
    let t3 = commit_one(&*s, oid, t2, d3.clone()).await?;
    let lb = |before: Tid| {
        let s = s.clone();
        async move { s.load_before(oid, before).await.ctx("load_before") }
    };
    check_eq!(lb(t1).await?, None, "load_before(oid, t1)");
    let rec = |data: &Bytes, start, end| {
        Some(LoadedRecord {
            data: data.clone(),
            start,
            end,
        })
    };
    check_eq!(
        lb(t2).await?,
        rec(&d1, t1, Some(t2)),
        "load_before(oid, t2)"
    );
    check_eq!(
        lb(t3).await?,
        rec(&d2, t2, Some(t3)),
        "load_before(oid, t3)"
    );
    check_eq!(
        lb(Tid::from_u64(t2.as_u64() + 1)).await?,
        rec(&d2, t2, Some(t3)),
        "load_before(oid, t2 + 1)"
    );
    check_eq!(
        lb(Tid::from_u64(t3.as_u64() + 1)).await?,
        rec(&d3, t3, None),
        "load_before(oid, t3 + 1)"
    );
    check_eq!(
        lb(Tid::MAX).await?,
        rec(&d3, t3, None),
        "load_before(oid, MAX)"
    );
    for (t, d) in [(t1, &d1), (t2, &d2), (t3, &d3)] {
        check_eq!(
            s.load_serial(oid, t).await.ctx("load_serial")?,
            d.clone(),
            "load_serial(oid, {t:?})"
        );
    }
    Ok(())
}

pub async fn poskey_rules<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let stored = new_oid(&*s).await?;
    let never = new_oid(&*s).await?;
    let t = commit_one(&*s, stored, Tid::ZERO, record("x")).await?;
    match s.load_before(never, Tid::MAX).await {
        Err(StorageError::PosKey { oid }) => {
            check_eq!(oid, never, "PosKey error names the oid")
        }
        other => {
            return Err(Failure(format!(
                "load_before of a never-stored oid: expected PosKey, got {other:?}"
            )))
        }
    }
    check_err!(
        s.load_serial(never, t).await,
        StorageError::PosKey { .. },
        "load_serial of a never-stored oid"
    );
    check_err!(
        s.history(never, 1).await,
        StorageError::PosKey { .. },
        "history of a never-stored oid"
    );
    check_err!(
        s.load_serial(stored, Tid::from_u64(t.as_u64() - 1)).await,
        StorageError::PosKey { .. },
        "load_serial of a serial the object never had"
    );
    check_err!(
        s.load_serial(stored, Tid::ZERO).await,
        StorageError::PosKey { .. },
        "load_serial(oid, ZERO)"
    );
    Ok(())
}

pub async fn history_newest_first<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let oid = new_oid(&*s).await?;
    let mut serial = Tid::ZERO;
    let mut written = Vec::new();
    for (i, (user, desc)) in [("alice", "first"), ("bob", "second"), ("carol", "third")]
        .iter()
        .enumerate()
    {
        let data = record(&"x".repeat(10 * (i + 1)));
        let m = meta(user, desc);
        let (tid, _) =
            commit_txn(&*s, txn(m.clone(), vec![store(oid, serial, data.clone())])).await?;
        serial = tid;
        written.push((tid, m, data.len() as u64));
    }
    written.reverse();
    let hist = s.history(oid, 10).await.ctx("history(oid, 10)")?;
    check_eq!(hist.len(), 3, "history length");
    for (entry, (tid, m, size)) in hist.iter().zip(&written) {
        check_eq!(entry.tid, *tid, "history entry tid (newest first)");
        check_eq!(entry.meta, *m, "history entry metadata of {tid:?}");
        check_eq!(entry.size, *size, "history entry size of {tid:?}");
    }
    let one = s.history(oid, 1).await.ctx("history(oid, 1)")?;
    check_eq!(
        one.iter().map(|e| e.tid).collect::<Vec<_>>(),
        vec![written[0].0],
        "history(oid, 1)"
    );
    let two = s.history(oid, 2).await.ctx("history(oid, 2)")?;
    check_eq!(
        two.iter().map(|e| e.tid).collect::<Vec<_>>(),
        vec![written[0].0, written[1].0],
        "history(oid, 2)"
    );
    Ok(())
}

pub async fn tids_strictly_increasing<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    for i in 0..5 {
        let before = s.last_transaction().await.ctx("last_transaction")?;
        let oid = new_oid(&*s).await?;
        let tid = commit_one(&*s, oid, Tid::ZERO, record(&format!("o{i}"))).await?;
        check!(
            tid > before,
            "commit {i}: tid {tid:?} not later than last_transaction {before:?}"
        );
        check_eq!(
            s.last_transaction().await.ctx("last_transaction")?,
            tid,
            "last_transaction after commit {i}"
        );
    }
    Ok(())
}

pub async fn explicit_tid_honoured<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let oid = new_oid(&*s).await?;
    let t1 = commit_one(&*s, oid, Tid::ZERO, record("a")).await?;
    let explicit = tid_plus_seconds(t1, 3600.0);
    let (tid, _) = commit_txn(
        &*s,
        txn_at(
            explicit,
            TransactionMeta::default(),
            vec![store(oid, t1, record("b"))],
        ),
    )
    .await?;
    check_eq!(tid, explicit, "finish must return the explicit tid");
    check_eq!(
        load_current(&*s, oid).await?,
        (record("b"), explicit),
        "current revision after an explicit-tid commit"
    );
    check_eq!(
        s.last_transaction().await.ctx("last_transaction")?,
        explicit,
        "last_transaction after an explicit-tid commit"
    );
    let t3 = commit_one(&*s, oid, explicit, record("c")).await?;
    check!(
        t3 > explicit,
        "a commit after an explicit tid in the future got tid {t3:?}, not later than {explicit:?}"
    );
    Ok(())
}

pub async fn explicit_tid_refused<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let oid = new_oid(&*s).await?;
    let t1 = commit_one(&*s, oid, Tid::ZERO, record("a")).await?;
    for (label, bad) in [
        ("equal to", t1),
        ("earlier than", Tid::from_u64(t1.as_u64() - 1)),
    ] {
        let t = txn_at(
            bad,
            TransactionMeta::default(),
            vec![store(oid, t1, record("bad"))],
        );
        let id = t.id;
        match within(std::time::Duration::from_secs(10), "vote", s.vote(t)).await? {
            Err(_) => {}
            Ok(outcome) => {
                let _ = s.abort(id).await;
                return Err(Failure(format!(
                    "vote with an explicit tid {label} the last transaction was accepted: {outcome:?}"
                )));
            }
        }
    }
    check_eq!(
        s.last_transaction().await.ctx("last_transaction")?,
        t1,
        "last_transaction after refused votes"
    );
    check_eq!(
        load_current(&*s, oid).await?,
        (record("a"), t1),
        "data after refused votes"
    );
    let t2 = within(
        std::time::Duration::from_secs(10),
        "a commit after refused votes (is the storage still held?)",
        commit_one(&*s, oid, t1, record("b")),
    )
    .await??;
    check!(t2 > t1, "tid after refused votes not later");
    Ok(())
}

pub async fn empty_transaction<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let t = txn(meta("u", "empty"), vec![]);
    let id = t.id;
    let outcome = s.vote(t).await.ctx("vote of an empty transaction")?;
    check_eq!(
        outcome,
        VoteOutcome::Voted { undone: vec![] },
        "vote of an empty transaction"
    );
    let tid = s.finish(id).await.ctx("finish of an empty transaction")?;
    check!(tid > Tid::ZERO, "empty transaction got tid zero");
    check_eq!(
        s.last_transaction().await.ctx("last_transaction")?,
        tid,
        "last_transaction after an empty transaction"
    );
    let txns = transactions(&*s, None, None).await?;
    check_eq!(txns.len(), 1, "iterator after an empty transaction");
    check_eq!(txns[0].tid, tid, "empty transaction tid in iterator");
    check!(txns[0].records.is_empty(), "empty transaction has records");
    check_eq!(
        txns[0].meta,
        meta("u", "empty"),
        "empty transaction metadata"
    );
    Ok(())
}

pub async fn info_sane<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let caps = h.capabilities();
    let empty = s.info().await.ctx("info")?;
    check_eq!(empty.length, 0, "info.length when empty");
    check_eq!(empty.supports_undo, caps.undo, "info.supports_undo");
    check_eq!(empty.supports_blobs, caps.blobs, "info.supports_blobs");
    check!(!empty.read_only, "info.read_only of a writable storage");
    let oids = new_oids(&*s, 3).await?;
    let ops = oids
        .iter()
        .map(|&o| store(o, Tid::ZERO, record("obj")))
        .collect();
    let t = commit(&*s, ops).await?;
    let info = s.info().await.ctx("info")?;
    check_eq!(info.length, 3, "info.length after storing 3 objects");
    check!(
        info.size > empty.size,
        "info.size did not grow after a commit ({} -> {})",
        empty.size,
        info.size
    );
    commit_one(&*s, oids[0], t, record("obj2")).await?;
    let again = s.info().await.ctx("info")?;
    check_eq!(again.length, 3, "info.length after a new revision");
    check!(again.size >= info.size, "info.size shrank after a commit");
    Ok(())
}
