//! The admin HTTP API (axum) over a [`Management`]:
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the HTML status page ([`super::page`]) |
//! | `GET /status` | [`StatusReport`]: the worst status and one per storage |
//! | `GET /details` | the whole [`ServerSnapshot`] |
//! | `GET /metrics` | Prometheus text format ([`super::metrics`]) |
//! | `POST /storages/{storage}/backends/{backend}/disable` | [`ActionResult`]; 409 when refused |
//! | `POST /storages/{storage}/backends/{backend}/recover` | [`ActionResult`] at once (the recovery runs in the background); 409 when refused |
//! | `POST /storages/{storage}/verify` | [`ActionResult`] with the report; 409 when the backends differ |
//! | `POST /reload` | [`ActionResult`] saying what changed; 409 when refused (nothing changed) |
//!
//! Every management action is logged with the peer address, what was asked
//! and the result. Actions are refused (403) when the request carries an
//! `Origin` header: browsers send one, the CLI and `curl` do not, so a web page
//! cannot make an operator's browser disable a backend.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use super::model::{Management, ManagementError, RaidStatus, ServerSnapshot, StorageKind};
use super::{metrics, page};

/// `GET /status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The worst status over all storages.
    pub status: RaidStatus,
    pub storages: Vec<StorageStatus>,
}

/// One storage in [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageStatus {
    pub name: String,
    pub kind: StorageKind,
    pub status: RaidStatus,
}

impl From<&ServerSnapshot> for StatusReport {
    fn from(snapshot: &ServerSnapshot) -> Self {
        StatusReport {
            status: snapshot.status(),
            storages: snapshot
                .storages
                .iter()
                .map(|s| StorageStatus {
                    name: s.name.clone(),
                    kind: s.kind,
                    status: s.status,
                })
                .collect(),
        }
    }
}

/// The answer to a management action (also the body of its errors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionResult {
    pub ok: bool,
    pub message: String,
}

#[derive(Clone)]
struct AppState {
    mgmt: Arc<dyn Management>,
}

/// The admin API's routes. Serve it with connection info
/// (`into_make_service_with_connect_info::<SocketAddr>()`, as
/// [`serve_admin`] does) so the log names who asked for an action.
pub fn router(mgmt: Arc<dyn Management>) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/status", get(status))
        .route("/details", get(details))
        .route("/metrics", get(metrics_text))
        .route(
            "/storages/{storage}/backends/{backend}/disable",
            post(disable),
        )
        .route(
            "/storages/{storage}/backends/{backend}/recover",
            post(recover),
        )
        .route("/storages/{storage}/verify", post(verify))
        .route("/reload", post(reload))
        .with_state(AppState { mgmt })
}

/// Serves the admin API on `listener` until `shutdown` completes.
pub async fn serve_admin(
    listener: TcpListener,
    mgmt: Arc<dyn Management>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(mgmt).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn status_page(State(state): State<AppState>) -> Response {
    let snapshot = state.mgmt.snapshot().await;
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(page::render(&snapshot)),
    )
        .into_response()
}

async fn status(State(state): State<AppState>) -> Json<StatusReport> {
    Json(StatusReport::from(&state.mgmt.snapshot().await))
}

async fn details(State(state): State<AppState>) -> Json<ServerSnapshot> {
    Json(state.mgmt.snapshot().await)
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let snapshot = state.mgmt.snapshot().await;
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(&snapshot),
    )
        .into_response()
}

type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

fn peer_name(peer: &Peer) -> String {
    match peer {
        Some(Extension(ConnectInfo(addr))) => addr.to_string(),
        None => "unknown".into(),
    }
}

/// Runs one management action: refuses it from web pages, logs who asked for
/// what and the outcome, and turns the outcome into a response.
async fn action<F>(peer: &Peer, headers: &HeaderMap, what: String, run: F) -> Response
where
    F: Future<Output = Result<String, ManagementError>>,
{
    let who = peer_name(peer);
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        tracing::warn!(peer = %who, %origin, action = %what, "management action from a web page refused");
        return answer(
            StatusCode::FORBIDDEN,
            false,
            "management actions are not accepted from web pages (request has an Origin header)"
                .into(),
        );
    }
    tracing::info!(peer = %who, action = %what, "management action requested");
    match run.await {
        Ok(message) => {
            tracing::info!(peer = %who, action = %what, result = %message, "management action done");
            answer(StatusCode::OK, true, message)
        }
        Err(err) => {
            let code = match &err {
                ManagementError::UnknownStorage(_) | ManagementError::UnknownBackend { .. } => {
                    StatusCode::NOT_FOUND
                }
                ManagementError::Refused(_) | ManagementError::Mismatch(_) => StatusCode::CONFLICT,
                ManagementError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
                ManagementError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            tracing::warn!(peer = %who, action = %what, error = %err, "management action refused");
            answer(code, false, err.to_string())
        }
    }
}

fn answer(code: StatusCode, ok: bool, message: String) -> Response {
    (code, Json(ActionResult { ok, message })).into_response()
}

async fn disable(
    State(state): State<AppState>,
    Path((storage, backend)): Path<(String, String)>,
    peer: Peer,
    headers: HeaderMap,
) -> Response {
    let what = format!("disable backend {backend:?} of storage {storage:?}");
    action(&peer, &headers, what, async {
        state.mgmt.disable(&storage, &backend).await?;
        Ok(format!(
            "disabled backend {backend:?} of storage {storage:?}"
        ))
    })
    .await
}

async fn recover(
    State(state): State<AppState>,
    Path((storage, backend)): Path<(String, String)>,
    peer: Peer,
    headers: HeaderMap,
) -> Response {
    let what = format!("recover backend {backend:?} of storage {storage:?}");
    action(&peer, &headers, what, async {
        state.mgmt.recover(&storage, &backend).await?;
        Ok(format!(
            "recovering backend {backend:?} of storage {storage:?}"
        ))
    })
    .await
}

async fn verify(
    State(state): State<AppState>,
    Path(storage): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> Response {
    let what = format!("verify storage {storage:?}");
    action(&peer, &headers, what, async {
        state.mgmt.verify(&storage).await
    })
    .await
}

async fn reload(State(state): State<AppState>, peer: Peer, headers: HeaderMap) -> Response {
    action(&peer, &headers, "reload".into(), async {
        state.mgmt.reload().await
    })
    .await
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
