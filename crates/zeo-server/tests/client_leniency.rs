//! Inputs Python ZEO's server accepts from real clients and ZODB's/ZEO's own test
//! suites (tests/python/test_zodb_suites.py), which zeoraid first refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{oid, TestClient, TestServer, Z64};
use zeoraid_wire::Value;
use zeoraid_zeo_server::ServerOptions;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `pickle.dumps((2, 1, 'tpc_begin', (5, 'user ü', 'described', ext, None, ' ')), 3)`
/// (fast mode, as ZEO's client encoder) where `ext` is a dict subclass whose
/// `__reduce__` is `(dict, (tuple(self.items()),))` and holds `foo=1`: user and
/// description are str (a `transaction.Transaction` has str ones), the
/// extension needs `builtins.dict`.
const TPC_BEGIN_STR_AND_REDUCED_DICT: &str = "8003284b024b0158090000007470635f626567696e284b05\
    58070000007573657220c3bc5809000000646573637269626564636275696c74696e730a646963740a\
    5803000000666f6f4b01868585524e58010000002074742e";

#[tokio::test]
async fn str_meta_reduced_dict_extension_and_none_serial() {
    let server = TestServer::start(ServerOptions::default()).await;
    let mut c = TestClient::connect(&server.addr).await;
    c.register().await;
    c.write_frame(&hex(TPC_BEGIN_STR_AND_REDUCED_DICT)).await;
    // store(oid, None, ...) of a new object, and a str serial ('\0' * 8).
    for (o, serial) in [
        (Z64.to_vec(), Value::None),
        (oid(1), Value::from("\0".repeat(8))),
    ] {
        c.oneway(
            "storea",
            vec![
                Value::from(o),
                serial,
                Value::from(&b"data"[..]),
                Value::Int(5),
            ],
        )
        .await;
    }
    let voted = c.ok("vote", vec![Value::Int(5)]).await;
    assert_eq!(voted, Value::List(vec![]));
    let tid = c.ok("tpc_finish", vec![Value::Int(5)]).await;
    let history = c
        .ok("history", vec![Value::from(&Z64), Value::Int(1)])
        .await;
    let h = &history.as_tuple_or_list().unwrap()[0];
    assert_eq!(h.get("tid"), Some(&tid));
    assert_eq!(h.get("user_name"), Some(&Value::from("user ü".as_bytes())));
    assert_eq!(h.get("description"), Some(&Value::from(&b"described"[..])));
    assert_eq!(h.get("foo"), Some(&Value::Int(1)));
    assert_eq!(c.ok("ping", vec![]).await, Value::None);
    server.stop().await;
}

#[tokio::test]
async fn history_with_size_none_is_a_type_error_after_the_oid_lookup() {
    let server = TestServer::start(ServerOptions::default()).await;
    let mut c = TestClient::connect(&server.addr).await;
    c.register().await;
    let err = c
        .call("history", vec![Value::from(&Z64), Value::None])
        .await
        .unwrap_err();
    assert_eq!(err.0, "ZODB.POSException.POSKeyError");
    c.commit(1, &[(Z64.to_vec(), Z64.to_vec(), b"root".to_vec())])
        .await
        .unwrap();
    let err = c
        .call("history", vec![Value::from(&Z64), Value::None])
        .await
        .unwrap_err();
    assert_eq!(err.0, "builtins.TypeError");
    server.stop().await;
}

#[tokio::test]
async fn a_store_of_non_bytes_data_fails_the_vote_not_the_connection() {
    let server = TestServer::start(ServerOptions::default()).await;
    let mut c = TestClient::connect(&server.addr).await;
    c.register().await;
    // Stored then aborted: nothing happens (ZEO's checkTransactionBufferCleanup).
    c.begin(1).await;
    let store = |txn: i64| {
        vec![
            Value::from(oid(1)),
            Value::from(&Z64),
            Value::from("foo"),
            Value::Int(txn),
        ]
    };
    c.oneway("storea", store(1)).await;
    assert_eq!(c.ok("tpc_abort", vec![Value::Int(1)]).await, Value::None);
    // Stored then voted: the vote fails, the connection stays.
    c.begin(2).await;
    c.oneway("storea", store(2)).await;
    let err = c.call("vote", vec![Value::Int(2)]).await.unwrap_err();
    assert_eq!(err.0, "builtins.TypeError");
    c.call("tpc_abort", vec![Value::Int(2)]).await.unwrap();
    c.commit(3, &[(Z64.to_vec(), Z64.to_vec(), b"root".to_vec())])
        .await
        .unwrap();
    server.stop().await;
}
