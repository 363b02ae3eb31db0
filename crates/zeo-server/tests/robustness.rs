//! Robustness cases found by `tests/python/test_robustness.py`, pinned down with
//! the tiny wire client and the in-memory storage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{oid, TestClient, TestServer, Z64};
use zeoraid_wire::Value;
use zeoraid_zeo_server::ServerOptions;

/// ZEO's client re-votes at most 9 times after conflicts and then calls
/// `tpc_finish` regardless; the 9th conflicting vote must therefore be an error
/// (a retryable `ConflictError`), not a list the client would ignore.
#[tokio::test]
async fn the_ninth_conflicting_vote_is_a_conflict_error() {
    let server = TestServer::start(ServerOptions::default()).await;
    let mut a = TestClient::connect(&server.addr).await;
    let mut b = TestClient::connect(&server.addr).await;
    a.register().await;
    b.register().await;
    let t1 = a
        .commit(1, &[(oid(1), Z64.to_vec(), b"v1".to_vec())])
        .await
        .unwrap();
    b.begin(7).await;
    for round in 1..9 {
        // A stale serial every time: the "resolution" never catches up.
        b.store(7, &oid(1), &Z64, b"stale").await;
        let voted = b.ok("vote", vec![Value::Int(7)]).await;
        let list = voted.as_tuple_or_list().unwrap();
        assert_eq!(list.len(), 1, "round {round}");
        assert_eq!(list[0].get("oid"), Some(&Value::from(oid(1))));
    }
    b.store(7, &oid(1), &Z64, b"stale").await;
    let err = b.call("vote", vec![Value::Int(7)]).await.unwrap_err();
    assert_eq!(err.0, "ZODB.POSException.ConflictError");
    assert_eq!(err.1.get("oid"), Some(&Value::from(oid(1))));
    assert_eq!(
        err.1.get("serials"),
        Some(&Value::Tuple(vec![t1.clone(), Value::from(Z64.to_vec())]))
    );
    // The transaction is gone and the lock free: abort answers None, and both
    // clients commit again.
    assert_eq!(b.ok("tpc_abort", vec![Value::Int(7)]).await, Value::None);
    let t1_bytes = t1.as_bytes().unwrap().to_vec();
    let t2 = b
        .commit(8, &[(oid(1), t1_bytes, b"v2".to_vec())])
        .await
        .unwrap();
    a.commit(
        2,
        &[(oid(1), t2.as_bytes().unwrap().to_vec(), b"v3".to_vec())],
    )
    .await
    .unwrap();
    server.stop().await;
}
