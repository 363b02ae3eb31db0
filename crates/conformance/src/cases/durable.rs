//! Durability: everything committed survives `close` and reopening, and oids are not
//! handed out again (ZODB's persistent-storage tests).

use zeoraid_storage::{Oid, Operation, Storage, Tid, TransactionMeta};

use super::fresh;
use crate::check::*;
use crate::data::{meta, record};
use crate::harness::Harness;
use crate::{check, check_eq};

#[derive(Debug, PartialEq)]
struct Snapshot {
    last: Tid,
    length: u64,
    txns: Vec<zeoraid_storage::TransactionRecord>,
    histories: Vec<Vec<zeoraid_storage::HistoryEntry>>,
    undo_log: Option<Vec<(Tid, zeoraid_storage::TransactionMeta)>>,
}

async fn snapshot<S: Storage + ?Sized>(
    s: &S,
    oids: &[Oid],
    undo: bool,
) -> Result<Snapshot, Failure> {
    let mut histories = Vec::new();
    for &oid in oids {
        histories.push(s.history(oid, 100).await.ctx("history")?);
    }
    let undo_log = if undo {
        Some(
            s.undo_log(0, 100, None)
                .await
                .ctx("undo_log")?
                .into_iter()
                .map(|e| (e.tid, e.meta))
                .collect(),
        )
    } else {
        None
    };
    Ok(Snapshot {
        last: s.last_transaction().await.ctx("last_transaction")?,
        length: s.info().await.ctx("info")?.length,
        txns: transactions(s, None, None).await?,
        histories,
        undo_log,
    })
}

pub async fn reopen_keeps_everything<H: Harness>(h: &H) -> CaseResult {
    let (s, place) = fresh(h).await?;
    let o = new_oids(&*s, 3).await?;
    let (a, b, c) = (o[0], o[1], o[2]);
    let (t1, _) = commit_txn(
        &*s,
        txn(
            meta("u", "one"),
            vec![
                store(a, Tid::ZERO, record("a1")),
                store(b, Tid::ZERO, record("b1")),
                store(c, Tid::ZERO, record("c1")),
            ],
        ),
    )
    .await?;
    let t2 = commit_one(&*s, a, t1, record("a2")).await?;
    commit(
        &*s,
        vec![
            Operation::Restore {
                oid: b,
                data: None,
                prev_txn: Some(t1),
                blob: None,
            },
            Operation::Delete { oid: c, serial: t1 },
        ],
    )
    .await?;
    let before = snapshot(&*s, &o, h.capabilities().undo).await?;
    s.close().await.ctx("close")?;
    drop(s);
    let s = h.reopen(&place).await.ctx("reopen")?;
    let after = snapshot(&s, &o, h.capabilities().undo).await?;
    check_eq!(after, before, "state after close and reopen");
    check_eq!(
        load_current(&s, a).await?,
        (record("a2"), t2),
        "a after reopen"
    );
    let next = new_oid(&s).await?;
    check!(
        next > c,
        "new_oids after reopen handed out {next}, not above the stored oid {c}"
    );
    let (t4, _) = commit_txn(
        &s,
        txn(TransactionMeta::default(), vec![store(a, t2, record("a4"))]),
    )
    .await?;
    check!(t4 > before.last, "tid after reopen not later than before");
    s.close().await.ctx("close")?;
    Ok(())
}
