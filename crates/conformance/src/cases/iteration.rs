//! The transaction iterator and `record_iternext` (ZODB's IteratorStorage tests).

use zeoraid_storage::{DataRecord, Oid, Tid};

use super::fresh;
use crate::check::*;
use crate::data::{meta, record};
use crate::harness::Harness;
use crate::{check, check_eq};

pub async fn iterator_bounds_and_contents<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let o = new_oids(&*s, 3).await?;
    let (a, b, c) = (o[0], o[1], o[2]);
    let m1 = meta("alice", "one");
    let m2 = meta("bob", "two");
    let m3 = meta("", "");
    let (t1, _) = commit_txn(
        &*s,
        txn(
            m1.clone(),
            vec![
                store(b, Tid::ZERO, record("b1")),
                store(a, Tid::ZERO, record("a1")),
            ],
        ),
    )
    .await?;
    let (t2, _) = commit_txn(&*s, txn(m2.clone(), vec![store(a, t1, record("a2"))])).await?;
    let (t3, _) = commit_txn(
        &*s,
        txn(m3.clone(), vec![store(c, Tid::ZERO, record("c1"))]),
    )
    .await?;
    let all = transactions(&*s, None, None).await?;
    check_eq!(
        all.iter().map(|t| t.tid).collect::<Vec<_>>(),
        vec![t1, t2, t3],
        "iterator(None, None) tids"
    );
    for (t, m) in all.iter().zip([&m1, &m2, &m3]) {
        check_eq!(t.status, b' ', "status of {:?}", t.tid);
        check_eq!(
            t.meta,
            *m,
            "metadata (user, description, extension bytes) of {:?}",
            t.tid
        );
    }
    let rec = |oid: Oid, tid: Tid, d: &str| DataRecord {
        oid,
        tid,
        data: Some(record(d)),
        data_txn: None,
        has_blob: false,
    };
    check_eq!(
        all[0].records,
        vec![rec(b, t1, "b1"), rec(a, t1, "a1")],
        "records of the first transaction (in the order they were stored)"
    );
    check_eq!(all[1].records, vec![rec(a, t2, "a2")], "records of t2");
    check_eq!(all[2].records, vec![rec(c, t3, "c1")], "records of t3");

    let tids =
        |v: Vec<zeoraid_storage::TransactionRecord>| v.iter().map(|t| t.tid).collect::<Vec<_>>();
    let after = |t: Tid| Tid::from_u64(t.as_u64() + 1);
    let before = |t: Tid| Tid::from_u64(t.as_u64() - 1);
    let cases: Vec<(Option<Tid>, Option<Tid>, Vec<Tid>)> = vec![
        (Some(t2), None, vec![t2, t3]),
        (None, Some(t2), vec![t1, t2]),
        (Some(t2), Some(t2), vec![t2]),
        (Some(after(t1)), Some(before(t3)), vec![t2]),
        (Some(after(t3)), None, vec![]),
        (None, Some(before(t1)), vec![]),
        (Some(t3), Some(t1), vec![]),
        (Some(Tid::ZERO), Some(Tid::MAX), vec![t1, t2, t3]),
    ];
    for (start, stop, expected) in cases {
        check_eq!(
            tids(transactions(&*s, start, stop).await?),
            expected,
            "iterator({start:?}, {stop:?})"
        );
    }
    Ok(())
}

pub async fn record_iternext_walks_current_objects<H: Harness>(h: &H) -> CaseResult {
    let (s, _place) = fresh(h).await?;
    let oids = new_oids(&*s, 5).await?;
    let mut current = Vec::new();
    // Store in reverse order, some objects twice.
    let mut serials = std::collections::BTreeMap::new();
    for (i, &oid) in oids.iter().enumerate().rev() {
        let t = commit_one(&*s, oid, Tid::ZERO, record(&format!("o{i}"))).await?;
        serials.insert(oid, (t, record(&format!("o{i}"))));
    }
    for &oid in &oids[1..3] {
        let (serial, _) = serials[&oid];
        let t = commit_one(&*s, oid, serial, record("changed")).await?;
        serials.insert(oid, (t, record("changed")));
    }
    for (oid, (tid, data)) in &serials {
        current.push((*oid, *tid, data.clone()));
    }
    let mut walked = Vec::new();
    let mut next = None;
    for _ in 0..100 {
        let Some(rec) = s.record_iternext(next).await.ctx("record_iternext")? else {
            return Err(Failure(format!(
                "record_iternext({next:?}) returned None in the middle of the walk"
            )));
        };
        walked.push((rec.oid, rec.tid, rec.data));
        match rec.next {
            Some(n) => {
                check!(
                    n > rec.oid,
                    "record_iternext next {n} is not after {}",
                    rec.oid
                );
                next = Some(n);
            }
            None => break,
        }
    }
    check_eq!(
        walked,
        current,
        "record_iternext walk (oid order, current revisions)"
    );
    let from_middle = s
        .record_iternext(Some(oids[2]))
        .await
        .ctx("record_iternext(middle)")?;
    check_eq!(
        from_middle.map(|r| r.oid),
        Some(oids[2]),
        "record_iternext starting at an existing oid"
    );
    let first = s
        .record_iternext(Some(Oid::ZERO))
        .await
        .ctx("record_iternext(ZERO)")?;
    check_eq!(
        first.map(|r| r.oid),
        Some(oids[0]),
        "record_iternext(Some(ZERO)) starts at the first object"
    );
    Ok(())
}
