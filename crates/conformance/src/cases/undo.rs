//! Transactional undo and the undo log (ZODB's TransactionalUndoStorage and
//! UndoLog tests), without conflict resolution.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use zeoraid_storage::{Operation, StorageError, Tid, TransactionMeta, UndoEntry, UndoFilter};

use super::fresh;
use crate::check::*;
use crate::data::{meta, record};
use crate::harness::Harness;
use crate::{check, check_eq, check_err};

fn undo(undo_id: &Bytes) -> Operation {
    Operation::Undo {
        undo_id: undo_id.clone(),
    }
}

async fn undo_id_of<S: zeoraid_storage::Storage + ?Sized>(
    s: &S,
    tid: Tid,
) -> Result<Bytes, Failure> {
    let log = s.undo_log(0, 1000, None).await.ctx("undo_log")?;
    log.iter()
        .find(|e| e.tid == tid)
        .map(|e| e.id.clone())
        .ok_or_else(|| Failure(format!("transaction {tid:?} is not in the undo log")))
}

pub async fn undo_log_round_trip_and_undo<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let a = new_oid(&*s).await?;
    let (t1, _) = commit_txn(
        &*s,
        txn(
            meta("u1", "create"),
            vec![store(a, Tid::ZERO, record("a1"))],
        ),
    )
    .await?;
    let (t2, _) = commit_txn(
        &*s,
        txn(meta("u2", "change"), vec![store(a, t1, record("a2"))]),
    )
    .await?;
    let log = s.undo_log(0, 20, None).await.ctx("undo_log")?;
    check_eq!(
        log.iter().map(|e| e.tid).collect::<Vec<_>>(),
        vec![t2, t1],
        "undo_log tids (newest first)"
    );
    check_eq!(log[0].meta, meta("u2", "change"), "undo_log metadata");
    check_eq!(log[1].meta, meta("u1", "create"), "undo_log metadata");
    check!(log[0].size > 0, "undo_log size is zero");
    check!(log[0].id != log[1].id, "undo_log ids are not distinct");
    let (t3, undone) = commit_txn(&*s, txn(meta("u3", "undo"), vec![undo(&log[0].id)])).await?;
    check_eq!(undone, vec![a], "undone oids");
    check!(t3 > t2, "undo tid not later");
    check_eq!(
        load_current(&*s, a).await?,
        (record("a1"), t3),
        "state after undoing the change"
    );
    check_eq!(
        s.load_before(a, t3)
            .await
            .ctx("load_before")?
            .map(|r| r.data),
        Some(record("a2")),
        "revision before the undo"
    );
    check_eq!(
        s.history(a, 10)
            .await
            .ctx("history")?
            .iter()
            .map(|e| e.tid)
            .collect::<Vec<_>>(),
        vec![t3, t2, t1],
        "history after undo"
    );
    let txns = transactions(&*s, Some(t3), None).await?;
    check_eq!(txns.len(), 1, "undo transaction in iterator");
    check_eq!(
        txns[0].meta,
        meta("u3", "undo"),
        "undo transaction metadata"
    );
    let r = &txns[0].records;
    check_eq!(r.len(), 1, "records of the undo transaction");
    check_eq!(
        (r[0].oid, r[0].data.clone(), r[0].data_txn),
        (a, Some(record("a1")), Some(t1)),
        "iterator record of the undo (a back-pointer to the restored revision)"
    );
    let log = s.undo_log(0, 20, None).await.ctx("undo_log")?;
    check_eq!(
        log.iter().map(|e| e.tid).collect::<Vec<_>>(),
        vec![t3, t2, t1],
        "undo_log after undo"
    );
    Ok(())
}

pub async fn undo_creation<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let o = new_oids(&*s, 2).await?;
    let (a, b) = (o[0], o[1]);
    let t1 = commit(
        &*s,
        vec![
            store(a, Tid::ZERO, record("a1")),
            store(b, Tid::ZERO, record("b1")),
        ],
    )
    .await?;
    let id = undo_id_of(&*s, t1).await?;
    let (t2, mut undone) =
        commit_txn(&*s, txn(TransactionMeta::default(), vec![undo(&id)])).await?;
    undone.sort();
    check_eq!(undone, vec![a, b], "undone oids of a creation");
    for oid in [a, b] {
        check_err!(
            s.load_before(oid, Tid::MAX).await,
            StorageError::PosKey { .. },
            "load_before(MAX) of an object whose creation was undone"
        );
    }
    check_eq!(
        s.load_before(a, t2)
            .await
            .ctx("load_before(a, t2)")?
            .map(|r| r.data),
        Some(record("a1")),
        "revision before the undone creation"
    );
    let txns = transactions(&*s, Some(t2), None).await?;
    check!(
        txns[0].records.iter().all(|r| r.data.is_none()),
        "iterator records of an undone creation must have no data: {:?}",
        txns[0].records
    );
    Ok(())
}

pub async fn undo_of_undo<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let a = new_oid(&*s).await?;
    let t1 = commit_one(&*s, a, Tid::ZERO, record("a1")).await?;
    let t2 = commit_one(&*s, a, t1, record("a2")).await?;
    let id2 = undo_id_of(&*s, t2).await?;
    let t3 = commit(&*s, vec![undo(&id2)]).await?;
    check_eq!(
        load_current(&*s, a).await?,
        (record("a1"), t3),
        "after undo"
    );
    let id3 = undo_id_of(&*s, t3).await?;
    let (t4, undone) = commit_txn(&*s, txn(TransactionMeta::default(), vec![undo(&id3)])).await?;
    check_eq!(undone, vec![a], "undone oids of undoing an undo");
    check_eq!(
        load_current(&*s, a).await?,
        (record("a2"), t4),
        "after undoing the undo (redo)"
    );
    // A later change on top of the redo is still an ordinary revision.
    let t5 = commit_one(&*s, a, t4, record("a5")).await?;
    check_eq!(
        load_current(&*s, a).await?,
        (record("a5"), t5),
        "store after redo"
    );
    Ok(())
}

pub async fn undo_refused_after_later_change<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let o = new_oids(&*s, 2).await?;
    let (a, b) = (o[0], o[1]);
    let t1 = commit_one(&*s, a, Tid::ZERO, record("a1")).await?;
    let t2 = commit_one(&*s, a, t1, record("a2")).await?;
    let t3 = commit_one(&*s, a, t2, record("a3")).await?;
    let t4 = commit_one(&*s, b, Tid::ZERO, record("b1")).await?;
    let t5 = commit_one(&*s, b, t4, record("b2")).await?;
    for (label, undone_tid) in [
        ("a change followed by another change", t2),
        ("a creation followed by a change", t4),
    ] {
        let id = undo_id_of(&*s, undone_tid).await?;
        let t = txn(TransactionMeta::default(), vec![undo(&id)]);
        let txn_id = t.id;
        match within(Duration::from_secs(10), "vote", s.vote(t)).await? {
            Err(e) if is_undo_error(&e) => {}
            other => {
                let _ = s.abort(txn_id).await;
                return Err(Failure(format!(
                    "undo of {label}: expected an UndoError, got {other:?}"
                )));
            }
        }
    }
    check_eq!(
        s.last_transaction().await.ctx("last_transaction")?,
        t5,
        "last_transaction after refused undos"
    );
    check_eq!(
        load_current(&*s, a).await?,
        (record("a3"), t3),
        "a unchanged"
    );
    check_eq!(
        load_current(&*s, b).await?,
        (record("b2"), t5),
        "b unchanged"
    );
    within(
        Duration::from_secs(10),
        "commit after refused undos",
        commit_one(&*s, a, t3, record("a4")),
    )
    .await??;
    Ok(())
}

pub async fn undo_two_transactions_at_once<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let o = new_oids(&*s, 2).await?;
    let (a, b) = (o[0], o[1]);
    let t1 = commit(
        &*s,
        vec![
            store(a, Tid::ZERO, record("a1")),
            store(b, Tid::ZERO, record("b1")),
        ],
    )
    .await?;
    let t2 = commit_one(&*s, a, t1, record("a2")).await?;
    let t3 = commit_one(&*s, b, t1, record("b3")).await?;
    let (id2, id3) = (undo_id_of(&*s, t2).await?, undo_id_of(&*s, t3).await?);
    let (t4, mut undone) = commit_txn(
        &*s,
        txn(TransactionMeta::default(), vec![undo(&id3), undo(&id2)]),
    )
    .await?;
    undone.sort();
    check_eq!(
        undone,
        vec![a, b],
        "undone oids of two undos in one transaction"
    );
    check_eq!(
        load_current(&*s, a).await?,
        (record("a1"), t4),
        "a after undo"
    );
    check_eq!(
        load_current(&*s, b).await?,
        (record("b1"), t4),
        "b after undo"
    );
    // Undo two transactions that changed the same object, newest first.
    let t5 = commit_one(&*s, a, t4, record("a5")).await?;
    let t6 = commit_one(&*s, a, t5, record("a6")).await?;
    let (id5, id6) = (undo_id_of(&*s, t5).await?, undo_id_of(&*s, t6).await?);
    let (t7, undone) = commit_txn(
        &*s,
        txn(TransactionMeta::default(), vec![undo(&id6), undo(&id5)]),
    )
    .await?;
    check!(
        undone.contains(&a),
        "undone oids of two undos of one object: {undone:?}"
    );
    check_eq!(
        load_current(&*s, a).await?,
        (record("a1"), t7),
        "object after undoing its two latest changes in one transaction"
    );
    Ok(())
}

pub async fn undo_invalid_id<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let a = new_oid(&*s).await?;
    let t1 = commit_one(&*s, a, Tid::ZERO, record("a1")).await?;
    for bad in [
        Bytes::from_static(b"not an undo id"),
        Bytes::from_static(b"AAAAAAAAAAE="),
    ] {
        let t = txn(TransactionMeta::default(), vec![undo(&bad)]);
        let id = t.id;
        match within(Duration::from_secs(10), "vote", s.vote(t)).await? {
            Err(e) if is_undo_error(&e) => {}
            other => {
                let _ = s.abort(id).await;
                return Err(Failure(format!(
                    "undo with id {bad:?}: expected an UndoError, got {other:?}"
                )));
            }
        }
    }
    check_eq!(
        s.last_transaction().await.ctx("last_transaction")?,
        t1,
        "last_transaction after invalid undos"
    );
    Ok(())
}

pub async fn undo_log_first_last_filter<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let mut tids = Vec::new();
    for i in 0..5 {
        let oid = new_oid(&*s).await?;
        let (tid, _) = commit_txn(
            &*s,
            txn(
                meta("user", &format!("t{i}")),
                vec![store(oid, Tid::ZERO, record("x"))],
            ),
        )
        .await?;
        tids.push(tid);
    }
    let tids_of = |log: Vec<UndoEntry>| log.iter().map(|e| e.tid).collect::<Vec<_>>();
    let newest = |idx: &[usize]| idx.iter().map(|&i| tids[i]).collect::<Vec<_>>();
    check_eq!(
        tids_of(s.undo_log(0, 5, None).await.ctx("undo_log")?),
        newest(&[4, 3, 2, 1, 0]),
        "undo_log(0, 5)"
    );
    check_eq!(
        tids_of(s.undo_log(0, 2, None).await.ctx("undo_log")?),
        newest(&[4, 3]),
        "undo_log(0, 2)"
    );
    check_eq!(
        tids_of(s.undo_log(2, 4, None).await.ctx("undo_log")?),
        newest(&[2, 1]),
        "undo_log(2, 4)"
    );
    check_eq!(
        tids_of(s.undo_log(4, 100, None).await.ctx("undo_log")?),
        newest(&[0]),
        "undo_log(4, 100)"
    );
    check_eq!(
        tids_of(s.undo_log(5, 10, None).await.ctx("undo_log")?),
        newest(&[]),
        "undo_log(5, 10)"
    );
    let filter: UndoFilter = Arc::new(|e: &UndoEntry| {
        e.meta.description.as_ref() == b"t1" || e.meta.description.as_ref() == b"t3"
    });
    check_eq!(
        tids_of(
            s.undo_log(0, 10, Some(filter.clone()))
                .await
                .ctx("undo_log")?
        ),
        newest(&[3, 1]),
        "undo_log(0, 10, filter)"
    );
    check_eq!(
        tids_of(
            s.undo_log(1, 10, Some(filter.clone()))
                .await
                .ctx("undo_log")?
        ),
        newest(&[1]),
        "undo_log(1, 10, filter): first counts accepted entries"
    );
    check_eq!(
        tids_of(s.undo_log(0, 1, Some(filter)).await.ctx("undo_log")?),
        newest(&[3]),
        "undo_log(0, 1, filter): last counts accepted entries"
    );
    Ok(())
}
