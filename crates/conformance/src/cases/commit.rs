//! Two-phase commit: conflicts, read conflicts, abort, the one-vote-at-a-time
//! rule, and deletion (ZODB's BasicStorage, Synchronization and
//! ConflictResolution-without-resolution tests).

use std::time::Duration;

use zeoraid_storage::{Operation, StorageError, Tid, TransactionMeta, TxnId, VoteOutcome};

use super::fresh;
use crate::check::*;
use crate::data::record;
use crate::harness::Harness;
use crate::{check, check_eq, check_err};

const LIMIT: Duration = Duration::from_secs(10);

pub async fn write_conflicts_all_reported<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let o = new_oids(&*s, 4).await?;
    let (a, b, c, d) = (o[0], o[1], o[2], o[3]);
    let t1 = commit(
        &*s,
        vec![
            store(a, Tid::ZERO, record("a1")),
            store(b, Tid::ZERO, record("b1")),
            store(c, Tid::ZERO, record("c1")),
        ],
    )
    .await?;
    let t2 = commit(
        &*s,
        vec![store(a, t1, record("a2")), store(b, t1, record("b2"))],
    )
    .await?;
    let t = txn(
        TransactionMeta::default(),
        vec![
            store(a, t1, record("a-new")),
            store(c, t1, record("c-new")),
            store(b, t1, record("b-new")),
            store(d, Tid::ZERO, record("d-new")),
        ],
    );
    let id = t.id;
    let outcome = within(LIMIT, "conflicting vote", s.vote(t))
        .await?
        .ctx("vote")?;
    let mut conflicts = match outcome {
        VoteOutcome::Conflicts(c) => c,
        other => {
            let _ = s.abort(id).await;
            return Err(Failure(format!(
                "vote with two stale serials: expected Conflicts, got {other:?}"
            )));
        }
    };
    conflicts.sort_by_key(|c| c.oid);
    check_eq!(
        conflicts.iter().map(|c| c.oid).collect::<Vec<_>>(),
        vec![a, b],
        "conflicting oids (all of them, and only them)"
    );
    for (conflict, name) in conflicts.iter().zip(["a-new", "b-new"]) {
        check_eq!(
            conflict.committed,
            t2,
            "committed serial of {}",
            conflict.oid
        );
        check_eq!(conflict.read, t1, "read serial of {}", conflict.oid);
        check_eq!(conflict.data, record(name), "new data of {}", conflict.oid);
    }
    s.abort(id).await.ctx("abort after conflicts")?;
    check_eq!(
        s.last_transaction().await.ctx("last_transaction")?,
        t2,
        "last_transaction after a conflicting vote"
    );
    check_eq!(
        load_current(&*s, c).await?,
        (record("c1"), t1),
        "non-conflicting object of a conflicting vote must be unchanged"
    );
    check_err!(
        s.load_before(d, Tid::MAX).await,
        StorageError::PosKey { .. },
        "new object of a conflicting vote must not exist"
    );
    within(
        LIMIT,
        "commit after a conflicting vote (is the storage still held?)",
        commit_one(&*s, c, t1, record("c2")),
    )
    .await??;
    Ok(())
}

pub async fn conflict_on_new_object<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let a = new_oid(&*s).await?;
    let t1 = commit_one(&*s, a, Tid::ZERO, record("a1")).await?;
    let t = txn(
        TransactionMeta::default(),
        vec![store(a, Tid::ZERO, record("again"))],
    );
    let id = t.id;
    let outcome = within(LIMIT, "vote", s.vote(t)).await?.ctx("vote")?;
    match outcome {
        VoteOutcome::Conflicts(c) => {
            check_eq!(c.len(), 1, "number of conflicts");
            check_eq!(
                (c[0].oid, c[0].committed, c[0].read),
                (a, t1, Tid::ZERO),
                "conflict of storing an existing object as new"
            );
        }
        other => {
            let _ = s.abort(id).await;
            return Err(Failure(format!(
                "storing an existing object with serial ZERO: expected Conflicts, got {other:?}"
            )));
        }
    }
    Ok(())
}

pub async fn check_current_serial<H: Harness>(h: &H) -> CaseResult {
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
    let t2 = commit(
        &*s,
        vec![
            Operation::CheckCurrentSerial { oid: a, serial: t1 },
            store(b, t1, record("b2")),
        ],
    )
    .await?;
    let t3 = commit_one(&*s, a, t1, record("a3")).await?;
    let t = txn(
        TransactionMeta::default(),
        vec![
            Operation::CheckCurrentSerial { oid: a, serial: t1 },
            store(b, t2, record("b-new")),
        ],
    );
    let id = t.id;
    match within(LIMIT, "vote", s.vote(t)).await? {
        Err(StorageError::ReadConflict {
            oid,
            committed,
            read,
        }) => {
            check_eq!(
                (oid, committed, read),
                (a, t3, t1),
                "ReadConflict oid/committed/read"
            );
        }
        other => {
            let _ = s.abort(id).await;
            return Err(Failure(format!(
                "checkCurrentSerial with a stale serial: expected Err(ReadConflict), got {other:?}"
            )));
        }
    }
    check_eq!(
        s.last_transaction().await.ctx("last_transaction")?,
        t3,
        "last_transaction after a read conflict"
    );
    check_eq!(
        load_current(&*s, b).await?,
        (record("b2"), t2),
        "store of a read-conflicting vote must not be applied"
    );
    within(
        LIMIT,
        "commit after a read conflict (is the storage still held?)",
        commit_one(&*s, b, t2, record("b3")),
    )
    .await??;
    Ok(())
}

pub async fn abort_leaves_no_trace<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let o = new_oids(&*s, 2).await?;
    let (a, b) = (o[0], o[1]);
    let t1 = commit_one(&*s, a, Tid::ZERO, record("a1")).await?;
    let t = txn(
        TransactionMeta::default(),
        vec![
            store(a, t1, record("a2")),
            store(b, Tid::ZERO, record("b1")),
        ],
    );
    let id = t.id;
    let outcome = s.vote(t).await.ctx("vote")?;
    check!(
        matches!(outcome, VoteOutcome::Voted { .. }),
        "vote: expected Voted, got {outcome:?}"
    );
    s.abort(id).await.ctx("abort")?;
    check_eq!(
        s.last_transaction().await.ctx("last_transaction")?,
        t1,
        "last_transaction after abort"
    );
    check_eq!(
        load_current(&*s, a).await?,
        (record("a1"), t1),
        "object after an aborted change"
    );
    check_err!(
        s.load_before(b, Tid::MAX).await,
        StorageError::PosKey { .. },
        "object created by an aborted transaction"
    );
    check_eq!(
        transactions(&*s, None, None).await?.len(),
        1,
        "iterator after abort"
    );
    if h.capabilities().undo {
        check_eq!(
            s.undo_log(0, 20, None).await.ctx("undo_log")?.len(),
            1,
            "undo_log after abort"
        );
    }
    check!(
        s.finish(id).await.is_err(),
        "finish of an aborted transaction succeeded"
    );
    s.abort(TxnId(0xdead_beef))
        .await
        .ctx("abort of a transaction that was never voted")?;
    check!(
        s.finish(TxnId(0xdead_beef)).await.is_err(),
        "finish of a transaction that was never voted succeeded"
    );
    let t2 = within(
        LIMIT,
        "commit after abort (is the storage still held?)",
        commit_one(&*s, a, t1, record("a2")),
    )
    .await??;
    check!(t2 > t1, "tid after abort not later");
    Ok(())
}

async fn second_vote_waits<H: Harness>(h: &H, finish_first: bool) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let o = new_oids(&*s, 2).await?;
    let (a, b) = (o[0], o[1]);
    let t0 = commit_one(&*s, a, Tid::ZERO, record("a0")).await?;
    let first = txn(TransactionMeta::default(), vec![store(a, t0, record("a1"))]);
    let first_id = first.id;
    let outcome = s.vote(first).await.ctx("first vote")?;
    check!(
        matches!(outcome, VoteOutcome::Voted { .. }),
        "first vote: {outcome:?}"
    );
    let s2 = s.clone();
    let second = tokio::spawn(async move { commit_one(&*s2, b, Tid::ZERO, record("b1")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    if second.is_finished() {
        let _ = s.abort(first_id).await;
        return Err(Failure(
            "a second transaction voted and finished while the first was still voted".into(),
        ));
    }
    let first_tid = if finish_first {
        Some(s.finish(first_id).await.ctx("finish of the first")?)
    } else {
        s.abort(first_id).await.ctx("abort of the first")?;
        None
    };
    let second_tid = within(LIMIT, "the waiting vote", second)
        .await?
        .map_err(|e| Failure(format!("second task: {e}")))??;
    if let Some(first_tid) = first_tid {
        check!(
            second_tid > first_tid,
            "the waiting transaction got tid {second_tid:?}, not later than the first's {first_tid:?}"
        );
        check_eq!(
            load_current(&*s, a).await?,
            (record("a1"), first_tid),
            "the first transaction's data"
        );
    } else {
        check_eq!(
            load_current(&*s, a).await?,
            (record("a0"), t0),
            "the aborted transaction's object"
        );
    }
    check_eq!(
        load_current(&*s, b).await?,
        (record("b1"), second_tid),
        "the waiting transaction's data"
    );
    Ok(())
}

pub async fn second_vote_waits_for_finish<H: Harness>(h: &H) -> CaseResult {
    second_vote_waits(h, true).await
}

pub async fn second_vote_waits_for_abort<H: Harness>(h: &H) -> CaseResult {
    second_vote_waits(h, false).await
}

pub async fn waiting_vote_sees_previous_commit<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let a = new_oid(&*s).await?;
    let t0 = commit_one(&*s, a, Tid::ZERO, record("a0")).await?;
    let first = txn(TransactionMeta::default(), vec![store(a, t0, record("a1"))]);
    let first_id = first.id;
    s.vote(first).await.ctx("first vote")?;
    let s2 = s.clone();
    let second = tokio::spawn(async move {
        let t = txn(TransactionMeta::default(), vec![store(a, t0, record("a2"))]);
        let id = t.id;
        let outcome = s2.vote(t).await;
        let _ = s2.abort(id).await;
        outcome
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t1 = s.finish(first_id).await.ctx("finish of the first")?;
    let outcome = within(LIMIT, "the waiting vote", second)
        .await?
        .map_err(|e| Failure(format!("second task: {e}")))?
        .ctx("the waiting vote")?;
    match outcome {
        VoteOutcome::Conflicts(c) => {
            check_eq!(c.len(), 1, "conflicts of the waiting vote");
            check_eq!(
                (c[0].oid, c[0].committed, c[0].read),
                (a, t1, t0),
                "the waiting vote must conflict with the commit it waited for"
            );
        }
        other => {
            return Err(Failure(format!(
                "a vote that waited for a commit of the same object with a stale serial: expected Conflicts, got {other:?}"
            )))
        }
    }
    Ok(())
}

pub async fn delete_object<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let o = new_oids(&*s, 3).await?;
    let (a, b, never) = (o[0], o[1], o[2]);
    let t1 = commit(
        &*s,
        vec![
            store(a, Tid::ZERO, record("a1")),
            store(b, Tid::ZERO, record("b1")),
        ],
    )
    .await?;
    let t2 = commit(&*s, vec![Operation::Delete { oid: a, serial: t1 }]).await?;
    check_err!(
        s.load_before(a, Tid::MAX).await,
        StorageError::PosKey { .. },
        "load_before(deleted, MAX)"
    );
    check_eq!(
        s.load_before(a, t2)
            .await
            .ctx("load_before(deleted, delete tid)")?,
        Some(zeoraid_storage::LoadedRecord {
            data: record("a1"),
            start: t1,
            end: Some(t2)
        }),
        "the revision before the deletion"
    );
    check_err!(
        s.load_serial(a, t2).await,
        StorageError::PosKey { .. },
        "load_serial of the deletion record"
    );
    let hist = s.history(a, 10).await.ctx("history of a deleted object")?;
    check_eq!(
        hist.iter().map(|e| e.tid).collect::<Vec<_>>(),
        vec![t2, t1],
        "history of a deleted object"
    );
    check_eq!(hist[0].size, 0, "size of the deletion record");
    let t3 = commit_one(&*s, b, t1, record("b3")).await?;
    let t = txn(
        TransactionMeta::default(),
        vec![Operation::Delete { oid: b, serial: t1 }],
    );
    let id = t.id;
    match within(LIMIT, "vote", s.vote(t)).await? {
        Err(StorageError::Conflict {
            oid,
            committed,
            read,
        }) => check_eq!(
            (oid, committed, read),
            (b, t3, t1),
            "Conflict of a stale delete"
        ),
        other => {
            let _ = s.abort(id).await;
            return Err(Failure(format!(
                "delete with a stale serial: expected Err(Conflict), got {other:?}"
            )));
        }
    }
    let t = txn(
        TransactionMeta::default(),
        vec![Operation::Delete {
            oid: never,
            serial: Tid::ZERO,
        }],
    );
    let id = t.id;
    match within(LIMIT, "vote", s.vote(t)).await? {
        Err(StorageError::PosKey { .. }) => {}
        other => {
            let _ = s.abort(id).await;
            return Err(Failure(format!(
                "delete of a never-stored object: expected Err(PosKey), got {other:?}"
            )));
        }
    }
    check_eq!(
        load_current(&*s, b).await?,
        (record("b3"), t3),
        "object after refused deletes"
    );
    within(
        LIMIT,
        "commit after refused deletes",
        commit_one(&*s, b, t3, record("b4")),
    )
    .await??;
    Ok(())
}
