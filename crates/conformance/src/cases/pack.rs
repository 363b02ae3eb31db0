//! Pack: history before the pack time goes except what was current then, later
//! history stays intact, and with GC unreachable objects go (ZODB's
//! PackableStorage tests).

use std::time::Duration;

use zeoraid_storage::{Oid, Operation, StorageError, Tid, TransactionMeta};

use super::fresh;
use crate::check::*;
use crate::data::{record, record_with_refs};
use crate::harness::Harness;
use crate::{check, check_eq, check_err};

/// Explicit tids an hour ago, `step` seconds apart, so pack times fit between them.
fn timeline(n: usize, step: f64) -> Vec<Tid> {
    let base = tid_seconds_ago(3600.0);
    (0..n)
        .map(|i| tid_plus_seconds(base, step * i as f64))
        .collect()
}

fn midpoint(a: Tid, b: Tid) -> f64 {
    (a.unix_time() + b.unix_time()) / 2.0
}

async fn pack_within<S: zeoraid_storage::Storage + ?Sized>(s: &S, t: f64) -> CaseResult {
    within(Duration::from_secs(30), "pack", s.pack(t))
        .await?
        .ctx("pack")
}

pub async fn pack_removes_old_history<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let o = new_oids(&*s, 2).await?;
    let (a, b) = (o[0], o[1]);
    let t = timeline(4, 10.0);
    let m = TransactionMeta::default;
    commit_txn(
        &*s,
        txn_at(
            t[0],
            m(),
            vec![
                store(Oid::ZERO, Tid::ZERO, record_with_refs("root", &[a, b])),
                store(a, Tid::ZERO, record("a0")),
                store(b, Tid::ZERO, record("b0")),
            ],
        ),
    )
    .await?;
    commit_txn(&*s, txn_at(t[1], m(), vec![store(a, t[0], record("a1"))])).await?;
    commit_txn(&*s, txn_at(t[2], m(), vec![store(a, t[1], record("a2"))])).await?;
    commit_txn(&*s, txn_at(t[3], m(), vec![store(a, t[2], record("a3"))])).await?;
    pack_within(&*s, midpoint(t[1], t[2])).await?;

    check_eq!(
        s.history(a, 10)
            .await
            .ctx("history(a)")?
            .iter()
            .map(|e| e.tid)
            .collect::<Vec<_>>(),
        vec![t[3], t[2], t[1]],
        "history after pack: the revision current at the pack time and everything later"
    );
    check_err!(
        s.load_serial(a, t[0]).await,
        StorageError::PosKey { .. },
        "load_serial of a revision removed by pack"
    );
    check!(
        !matches!(s.load_before(a, t[1]).await, Ok(Some(_))),
        "load_before(a, t1) must not find the revision removed by pack"
    );
    check_eq!(
        s.load_serial(a, t[1]).await.ctx("load_serial(a, t1)")?,
        record("a1"),
        "the revision current at the pack time is kept"
    );
    check_eq!(
        s.load_before(a, t[3]).await.ctx("load_before(a, t3)")?,
        Some(zeoraid_storage::LoadedRecord {
            data: record("a2"),
            start: t[2],
            end: Some(t[3])
        }),
        "history after the pack time is intact"
    );
    check_eq!(
        load_current(&*s, a).await?,
        (record("a3"), t[3]),
        "a current"
    );
    check_eq!(
        load_current(&*s, b).await?,
        (record("b0"), t[0]),
        "an object unchanged since before the pack time keeps its only revision"
    );
    check_eq!(
        load_current(&*s, Oid::ZERO).await?,
        (record_with_refs("root", &[a, b]), t[0]),
        "root"
    );
    let later = transactions(&*s, Some(t[2]), None).await?;
    check_eq!(
        later
            .iter()
            .map(|t| (t.tid, t.records.len()))
            .collect::<Vec<_>>(),
        vec![(t[2], 1), (t[3], 1)],
        "transactions after the pack time"
    );
    // Commits go on after a pack.
    let t4 = commit_one(&*s, a, t[3], record("a4")).await?;
    check!(t4 > t[3], "tid after pack not later");
    // Packing again to the same time changes nothing.
    pack_within(&*s, midpoint(t[1], t[2])).await?;
    check_eq!(
        load_current(&*s, a).await?,
        (record("a4"), t4),
        "after a second pack"
    );
    Ok(())
}

pub async fn pack_keeps_back_pointer_data<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let a = new_oid(&*s).await?;
    let t = timeline(3, 10.0);
    let m = TransactionMeta::default;
    commit_txn(
        &*s,
        txn_at(
            t[0],
            m(),
            vec![
                store(Oid::ZERO, Tid::ZERO, record_with_refs("root", &[a])),
                store(a, Tid::ZERO, record("a0")),
            ],
        ),
    )
    .await?;
    commit_txn(&*s, txn_at(t[1], m(), vec![store(a, t[0], record("a1"))])).await?;
    let log = s.undo_log(0, 10, None).await.ctx("undo_log")?;
    let id = log
        .iter()
        .find(|e| e.tid == t[1])
        .map(|e| e.id.clone())
        .ok_or_else(|| Failure("t1 not in the undo log".into()))?;
    commit_txn(
        &*s,
        txn_at(t[2], m(), vec![Operation::Undo { undo_id: id }]),
    )
    .await?;
    // The undo's back-pointer leads to t0's record, which is not current at the pack
    // time and goes; the undo's data must survive.
    pack_within(&*s, midpoint(t[1], t[2])).await?;
    check_eq!(
        load_current(&*s, a).await?,
        (record("a0"), t[2]),
        "data of an undo record whose back-pointer target was packed away"
    );
    check_eq!(
        s.load_serial(a, t[2]).await.ctx("load_serial(a, t2)")?,
        record("a0"),
        "load_serial of that undo record"
    );
    let txns = transactions(&*s, Some(t[2]), None).await?;
    check_eq!(
        txns[0].records.first().and_then(|r| r.data.clone()),
        Some(record("a0")),
        "iterator data of that undo record"
    );
    Ok(())
}

pub async fn pack_collects_garbage<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let o = new_oids(&*s, 5).await?;
    let (a, b, c, d, e) = (o[0], o[1], o[2], o[3], o[4]);
    let t = timeline(3, 10.0);
    let m = TransactionMeta::default;
    // root -> a -> b (and, in a's first revision only, d); c is never referenced.
    commit_txn(
        &*s,
        txn_at(
            t[0],
            m(),
            vec![
                store(Oid::ZERO, Tid::ZERO, record_with_refs("root", &[a])),
                store(a, Tid::ZERO, record_with_refs("a0", &[b, d])),
                store(b, Tid::ZERO, record("b0")),
                store(c, Tid::ZERO, record("c0")),
                store(d, Tid::ZERO, record("d0")),
            ],
        ),
    )
    .await?;
    commit_txn(
        &*s,
        txn_at(
            t[1],
            m(),
            vec![store(a, t[0], record_with_refs("a1", &[b]))],
        ),
    )
    .await?;
    // e is written after the pack time: FileStorage keeps whatever is written later.
    commit_txn(
        &*s,
        txn_at(t[2], m(), vec![store(e, Tid::ZERO, record("e"))]),
    )
    .await?;
    pack_within(&*s, midpoint(t[1], t[2])).await?;
    for (oid, name) in [(Oid::ZERO, "root"), (a, "a"), (b, "b"), (e, "e")] {
        check!(
            s.load_before(oid, Tid::MAX).await.is_ok(),
            "reachable object {name} ({oid}) is gone after pack with GC"
        );
    }
    for (oid, name) in [
        (c, "c (never referenced)"),
        (d, "d (referenced only by an old revision)"),
    ] {
        check_err!(
            s.load_before(oid, Tid::MAX).await,
            StorageError::PosKey { .. },
            "unreachable object {name} after pack with GC"
        );
    }
    check_eq!(
        load_current(&*s, a).await?,
        (record_with_refs("a1", &[b]), t[1]),
        "a after GC"
    );
    Ok(())
}
