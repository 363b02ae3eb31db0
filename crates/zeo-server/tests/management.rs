//! gocept.zeoraid's `raid_*` methods: answered by the `ZeoManagement` hook for
//! the registered storage when it is set, unknown (connection closed) otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::{TestClient, TestServer};
use zeoraid_wire::Value;
use zeoraid_zeo_server::management::{BoxFuture, ManagementResult};
use zeoraid_zeo_server::{ManagementHook, ServerOptions, ZeoManagement};

#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
}

impl Fake {
    fn log(&self, what: String) {
        self.calls.lock().unwrap().push(what);
    }
}

impl ZeoManagement for Fake {
    fn raid_status<'a>(&'a self, storage: &'a str) -> BoxFuture<'a, ManagementResult<String>> {
        self.log(format!("status {storage}"));
        Box::pin(async { Ok("degraded".to_owned()) })
    }
    fn raid_details<'a>(
        &'a self,
        _storage: &'a str,
    ) -> BoxFuture<'a, ManagementResult<Vec<(String, String)>>> {
        Box::pin(async {
            Ok(vec![
                ("a".to_owned(), "optimal".to_owned()),
                ("b".to_owned(), "failed: gone".to_owned()),
            ])
        })
    }
    fn raid_disable<'a>(
        &'a self,
        storage: &'a str,
        backend: &'a str,
    ) -> BoxFuture<'a, ManagementResult<String>> {
        self.log(format!("disable {storage} {backend}"));
        Box::pin(async move { Err(format!("refusing to disable {backend:?}")) })
    }
    fn raid_recover<'a>(
        &'a self,
        _storage: &'a str,
        backend: &'a str,
    ) -> BoxFuture<'a, ManagementResult<String>> {
        Box::pin(async move { Ok(format!("recovering '{backend}'")) })
    }
    fn raid_reload<'a>(&'a self, _storage: &'a str) -> BoxFuture<'a, ManagementResult<String>> {
        Box::pin(async { Ok("reloaded: nothing changed".to_owned()) })
    }
    fn raid_verify<'a>(&'a self, _storage: &'a str) -> BoxFuture<'a, ManagementResult<String>> {
        Box::pin(async { Ok("identical".to_owned()) })
    }
}

#[tokio::test]
async fn raid_methods_go_to_the_hook() {
    let fake = Arc::new(Fake::default());
    let options = ServerOptions {
        management: Some(ManagementHook::new(fake.clone())),
        ..ServerOptions::default()
    };
    let server = TestServer::start(options).await;
    let mut c = TestClient::connect(&server.addr).await;
    c.register().await;
    assert_eq!(c.ok("raid_status", vec![]).await, Value::from("degraded"));
    assert_eq!(
        c.ok("raid_details", vec![]).await,
        Value::Dict(vec![
            (Value::from("a"), Value::from("optimal")),
            (Value::from("b"), Value::from("failed: gone")),
        ])
    );
    assert_eq!(
        c.ok("raid_recover", vec![Value::from("b")]).await,
        Value::from("recovering 'b'")
    );
    let (class, _) = c
        .call("raid_disable", vec![Value::from("a")])
        .await
        .unwrap_err();
    assert_eq!(class, "builtins.RuntimeError");
    let (class, _) = c.call("raid_disable", vec![]).await.unwrap_err();
    assert_eq!(class, "builtins.TypeError");
    assert_eq!(
        c.ok("raid_reload", vec![]).await,
        Value::from("reloaded: nothing changed")
    );
    assert_eq!(c.ok("raid_verify", vec![]).await, Value::from("identical"));
    assert_eq!(
        *fake.calls.lock().unwrap(),
        vec!["status 1".to_owned(), "disable 1 a".to_owned()]
    );
    server.stop().await;
}

#[tokio::test]
async fn raid_methods_are_unknown_without_the_hook() {
    let server = TestServer::start(ServerOptions::default()).await;
    let mut c = TestClient::connect(&server.addr).await;
    c.register().await;
    c.send(Value::Int(99), false, "raid_status", vec![]).await;
    assert!(c.is_closed().await);
    server.stop().await;
}

#[tokio::test]
async fn raid_methods_need_a_registration() {
    let options = ServerOptions {
        management: Some(ManagementHook::new(Arc::new(Fake::default()))),
        ..ServerOptions::default()
    };
    let server = TestServer::start(options).await;
    let mut c = TestClient::connect(&server.addr).await;
    c.send(Value::Int(1), false, "raid_status", vec![]).await;
    assert!(c.is_closed().await);
    server.stop().await;
}
