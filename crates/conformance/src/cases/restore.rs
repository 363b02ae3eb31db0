//! `restore`: records written verbatim with explicit tids, back-pointers
//! (`prev_txn`) and un-creations, as ZODB's `copyTransactionsFrom` and RAID recovery
//! use them (ZODB's RecoveryStorage tests).

use zeoraid_storage::{Operation, StorageError, Tid};

use super::fresh;
use crate::check::*;
use crate::data::{meta, record};
use crate::harness::Harness;
use crate::{check_eq, check_err};

fn restore(
    oid: zeoraid_storage::Oid,
    data: Option<bytes::Bytes>,
    prev_txn: Option<Tid>,
) -> Operation {
    Operation::Restore {
        oid,
        data,
        prev_txn,
        blob: None,
    }
}

pub async fn restore_with_data<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let o = new_oids(&*s, 2).await?;
    let (a, b) = (o[0], o[1]);
    let t1 = tid_seconds_ago(7200.0);
    let (got, _) = commit_txn(
        &*s,
        txn_at(
            t1,
            meta("restorer", "copied"),
            vec![restore(a, Some(record("a1")), None)],
        ),
    )
    .await?;
    check_eq!(got, t1, "restore transaction tid");
    check_eq!(
        load_current(&*s, a).await?,
        (record("a1"), t1),
        "restored object"
    );
    let hist = s.history(a, 5).await.ctx("history")?;
    check_eq!(hist.len(), 1, "history of a restored object");
    check_eq!(
        hist[0].meta,
        meta("restorer", "copied"),
        "metadata of a restored transaction"
    );
    // A packed transaction copied with its status.
    let t2 = tid_plus_seconds(t1, 10.0);
    let mut t = txn_at(
        t2,
        meta("restorer", "packed"),
        vec![restore(b, Some(record("b1")), None)],
    );
    t.status = b'p';
    commit_txn(&*s, t).await?;
    // Restore writes without conflict checks.
    let t3 = tid_plus_seconds(t2, 10.0);
    commit_txn(
        &*s,
        txn_at(
            t3,
            meta("restorer", "again"),
            vec![restore(a, Some(record("a3")), None)],
        ),
    )
    .await?;
    check_eq!(
        load_current(&*s, a).await?,
        (record("a3"), t3),
        "restore over an existing object (no conflict check)"
    );
    let txns = transactions(&*s, None, None).await?;
    check_eq!(
        txns.iter().map(|t| (t.tid, t.status)).collect::<Vec<_>>(),
        vec![(t1, b' '), (t2, b'p'), (t3, b' ')],
        "iterator tids and statuses after restores"
    );
    let r = &txns[0].records;
    check_eq!(r.len(), 1, "records of the first restored transaction");
    check_eq!(
        (r[0].oid, r[0].tid, r[0].data.clone(), r[0].data_txn),
        (a, t1, Some(record("a1")), None),
        "restored data record"
    );
    Ok(())
}

pub async fn restore_back_pointer<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let a = new_oid(&*s).await?;
    let t1 = commit_one(&*s, a, Tid::ZERO, record("a1")).await?;
    let t2 = commit(&*s, vec![restore(a, None, Some(t1))]).await?;
    check_eq!(
        load_current(&*s, a).await?,
        (record("a1"), t2),
        "current revision of a back-pointer record"
    );
    check_eq!(
        s.load_serial(a, t2)
            .await
            .ctx("load_serial of a back-pointer")?,
        record("a1"),
        "load_serial of a back-pointer record"
    );
    // A back-pointer to a back-pointer.
    let t3 = commit(&*s, vec![restore(a, None, Some(t2))]).await?;
    check_eq!(
        load_current(&*s, a).await?,
        (record("a1"), t3),
        "back-pointer to a back-pointer"
    );
    // Data together with a matching prev_txn: the data must be right either way.
    let t4 = commit(&*s, vec![restore(a, Some(record("a1")), Some(t1))]).await?;
    check_eq!(
        load_current(&*s, a).await?,
        (record("a1"), t4),
        "restore with data and prev_txn"
    );
    check_eq!(
        s.history(a, 10)
            .await
            .ctx("history")?
            .iter()
            .map(|e| e.tid)
            .collect::<Vec<_>>(),
        vec![t4, t3, t2, t1],
        "history with back-pointer records"
    );
    let txns = transactions(&*s, Some(t2), Some(t3)).await?;
    check_eq!(txns.len(), 2, "transactions t2..t3");
    let r2 = &txns[0].records;
    check_eq!(r2.len(), 1, "records of t2");
    check_eq!(
        (r2[0].oid, r2[0].tid, r2[0].data.clone(), r2[0].data_txn),
        (a, t2, Some(record("a1")), Some(t1)),
        "iterator record of a back-pointer (data resolved, data_txn = prev_txn)"
    );
    let r3 = &txns[1].records;
    check_eq!(
        (r3[0].data.clone(), r3[0].data_txn),
        (Some(record("a1")), Some(t2)),
        "iterator record of a back-pointer to a back-pointer (data_txn one link back)"
    );
    Ok(())
}

pub async fn restore_uncreation<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let b = new_oid(&*s).await?;
    let t1 = commit_one(&*s, b, Tid::ZERO, record("b1")).await?;
    let t2 = commit(&*s, vec![restore(b, None, None)]).await?;
    check_err!(
        s.load_before(b, Tid::MAX).await,
        StorageError::PosKey { .. },
        "load_before(MAX) after restoring a record without data or back-pointer"
    );
    check_eq!(
        s.load_before(b, t2).await.ctx("load_before(b, t2)")?,
        Some(zeoraid_storage::LoadedRecord {
            data: record("b1"),
            start: t1,
            end: Some(t2)
        }),
        "revision before an un-creation"
    );
    let txns = transactions(&*s, Some(t2), None).await?;
    check_eq!(txns.len(), 1, "transactions from t2");
    check_eq!(
        (txns[0].records[0].data.clone(), txns[0].records[0].data_txn),
        (None, None),
        "iterator record of an un-creation"
    );
    Ok(())
}
