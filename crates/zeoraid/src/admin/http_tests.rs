//! Tests of the admin HTTP API over a real loopback socket, with a
//! [`FakeManagement`] whose snapshot the test controls, and of the status page
//! in headless Chromium.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;

use super::{ActionResult, StatusReport};
use crate::admin::model::{BackendState, RaidStatus, ServerSnapshot};
use crate::admin::testing::{sample_snapshot, FakeManagement, TestServer};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn status_gives_the_worst_word_and_one_per_storage() {
    let server = TestServer::start(FakeManagement::new(sample_snapshot())).await;
    let resp = client().get(server.url("/status")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "status": "recovering",
            "storages": [
                {"name": "1", "kind": "raid", "status": "recovering"},
                {"name": "plain", "kind": "filestorage", "status": "optimal"},
            ]
        })
    );
    let report: StatusReport = serde_json::from_value(json).unwrap();
    assert_eq!(report.status, RaidStatus::Recovering);
    server.stop().await;
}

#[tokio::test]
async fn details_is_the_snapshot() {
    let server = TestServer::start(FakeManagement::new(sample_snapshot())).await;
    let resp = client().get(server.url("/details")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["storages"][0]["backends"][1]["state"], "degraded");
    assert_eq!(
        json["storages"][0]["backends"][1]["reason"],
        "vote failed: I/O error: disk full"
    );
    assert_eq!(
        json["storages"][0]["backends"][2]["progress"]["transactions_total"],
        480
    );
    assert_eq!(
        json["storages"][0]["backends"][0]["last_tid"],
        "03ec5b2a0d1eb9bb"
    );
    let snap: ServerSnapshot = serde_json::from_value(json).unwrap();
    assert_eq!(snap, sample_snapshot());
    server.stop().await;
}

#[tokio::test]
async fn disable_degrades_and_refuses_the_last_optimal_backend() {
    let mgmt = FakeManagement::new(sample_snapshot());
    let server = TestServer::start(mgmt.clone()).await;
    let http = client();

    // `a` is the only optimal backend of RAID 1: refused with 409.
    let resp = http
        .post(server.url("/storages/1/backends/a/disable"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let result: ActionResult = resp.json().await.unwrap();
    assert!(!result.ok);
    assert_eq!(
        result.message,
        "refusing to disable \"a\": it is the last optimal backend"
    );

    // A recovering backend can be disabled.
    let resp = http
        .post(server.url("/storages/1/backends/c/disable"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let result: ActionResult = resp.json().await.unwrap();
    assert_eq!(
        result,
        ActionResult {
            ok: true,
            message: "disabled backend \"c\" of storage \"1\"".into()
        }
    );
    let snap = mgmt.snapshot.lock().unwrap().clone();
    assert_eq!(
        snap.storages[0].backends[2].state,
        BackendState::Degraded {
            reason: "disabled by operator".into()
        }
    );

    // Unknown names: 404.
    for path in [
        "/storages/nope/backends/a/disable",
        "/storages/1/backends/nope/disable",
    ] {
        let resp = http.post(server.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        let result: ActionResult = resp.json().await.unwrap();
        assert!(result.message.contains("nope"), "{}", result.message);
    }

    // A plain storage is not a RAID: 409.
    let resp = http
        .post(server.url("/storages/plain/backends/plain/disable"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);

    // GET is not an action.
    let resp = http
        .get(server.url("/storages/1/backends/b/disable"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    server.stop().await;
}

#[tokio::test]
async fn actions_from_web_pages_are_refused() {
    let mgmt = FakeManagement::new(sample_snapshot());
    let server = TestServer::start(mgmt.clone()).await;
    let resp = client()
        .post(server.url("/storages/1/backends/c/disable"))
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(mgmt.snapshot.lock().unwrap().clone(), sample_snapshot());
    server.stop().await;
}

#[tokio::test]
async fn later_actions_say_they_are_not_available_yet() {
    let server = TestServer::start(FakeManagement::new(sample_snapshot())).await;
    let http = client();
    for (path, what) in [
        ("/storages/1/backends/b/recover", "recover"),
        ("/storages/1/verify", "verify"),
        ("/reload", "reload"),
    ] {
        let resp = http.post(server.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_IMPLEMENTED, "{path}");
        let result: ActionResult = resp.json().await.unwrap();
        assert_eq!(result.message, format!("{what} is not available yet"));
    }
    server.stop().await;
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let server = TestServer::start(FakeManagement::new(sample_snapshot())).await;
    let resp = client().get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = resp.text().await.unwrap();
    assert!(text.contains(r#"zeoraid_backend_state{storage="1",backend="b",state="degraded"} 1"#));
    assert!(text.contains(r#"zeoraid_backend_commits_total{storage="1",backend="a"} 12"#));
    assert!(text
        .contains(r#"zeoraid_backend_state{storage="plain",backend="plain",state="optimal"} 1"#));
    server.stop().await;
}

#[tokio::test]
async fn status_page_is_html_that_refreshes_itself() {
    let server = TestServer::start(FakeManagement::new(sample_snapshot())).await;
    let resp = client().get(server.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = resp.text().await.unwrap();
    assert!(html.contains("http-equiv=\"refresh\""));
    assert!(html.contains("data-backend=\"b\" data-state=\"degraded\""));
    server.stop().await;
}

/// The page as a browser shows it: headless Chromium (Debian's `chromium`,
/// installed by test.sh) loads it from a running admin server and dumps the
/// DOM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_headless_chromium() {
    let server = TestServer::start(FakeManagement::new(sample_snapshot())).await;
    let profile = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(server.url("/"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), output)
        .await
        .expect("chromium did not finish within 90s")
        .unwrap_or_else(|e| {
            panic!("cannot run chromium ({e}): install Debian's chromium package (test.sh does)")
        });
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        dom.contains("<title>zeoraid: recovering</title>"),
        "no title in {dom}"
    );
    for (backend, state) in [
        ("a", "optimal"),
        ("b", "degraded"),
        ("c", "recovering"),
        ("plain", "optimal"),
    ] {
        let row = format!("data-backend=\"{backend}\" data-state=\"{state}\"");
        assert!(dom.contains(&row), "no {row} in {dom}");
    }
    assert!(dom.contains("vote failed: I/O error: disk full"));
    assert!(dom.contains("120 of 480 transactions (25%)"));
    assert!(dom.contains("03ec5b2a0d1eb9bb"));
    server.stop().await;
}
