//! The management surface: an HTTP API (JSON, Prometheus metrics, a status
//! page) over the [`Management`] contract, which the server implements for its
//! storages ([`raid::RaidManagement`]). `docs/management.md` describes it for
//! operators; the CLI commands in `control.rs` are its client.
//!
//! - `model`: the contract and the snapshot types (also the JSON of the API).
//! - `http`: the axum router and [`serve_admin`].
//! - `metrics`: the Prometheus text format.
//! - `page`: the self-refreshing HTML status page.
//! - `raid`: [`Management`] for `RaidStorage`s and plain storages.
//! - `zeo_port`: gocept.zeoraid's `raid_*` methods over the ZEO port.

pub mod http;
pub mod metrics;
pub mod model;
pub mod page;
pub mod raid;
#[cfg(test)]
pub mod testing;
pub mod zeo_port;

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::config::SocketAddress;

pub use http::serve_admin;
pub use model::StorageKind;
pub use raid::RaidManagement;

/// Why the admin API could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "admin-address {0}: the admin API listens on TCP only (use host:port, e.g. 127.0.0.1:8180)"
    )]
    UnixSocket(String),

    #[error("cannot listen on admin-address {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

/// Binds the `admin-address` of `<zeo>`. A host left empty (`:8180`, `8180`)
/// means all interfaces, as for every address zeoraid listens on. Anyone who
/// can reach the admin API can disable backends, so binding anything but a
/// loopback address is logged as a warning.
pub async fn bind_admin(address: &SocketAddress) -> Result<TcpListener, AdminError> {
    let (host, port) = match address {
        SocketAddress::Inet { host, port } => (host.as_str(), *port),
        SocketAddress::Unix(path) => {
            return Err(AdminError::UnixSocket(path.display().to_string()));
        }
    };
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    let listener = TcpListener::bind((host, port))
        .await
        .map_err(|source| AdminError::Bind {
            address: address.to_string(),
            source,
        })?;
    let bound = listener.local_addr().ok();
    warn_unless_loopback(bound);
    Ok(listener)
}

fn warn_unless_loopback(bound: Option<SocketAddr>) {
    match bound {
        Some(addr) if addr.ip().is_loopback() => {
            tracing::info!(address = %addr, "admin API listening");
        }
        Some(addr) => tracing::warn!(
            address = %addr,
            "admin API listening on a non-loopback address: anyone who can reach it \
             can disable backends; bind it to 127.0.0.1 unless a firewall protects it"
        ),
        None => tracing::warn!("admin API listening (address unknown)"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_loopback_and_refuses_unix_sockets() {
        let listener = bind_admin(&SocketAddress::Inet {
            host: "127.0.0.1".into(),
            port: 0,
        })
        .await
        .unwrap();
        assert!(listener.local_addr().unwrap().ip().is_loopback());
        let err = bind_admin(&SocketAddress::Unix("/tmp/admin.sock".into()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("TCP only"), "{err}");
    }
}
