//! TLS as ZEO does it: the server presents its certificate and key, and every
//! client must present a certificate that verifies against the `authenticate` CA
//! file or directory (mutual TLS, always required). No hostname check on clients.
//! Built on rustls with the ring provider.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use zeoraid_tls::{load_ca_store, load_certificate_chain, load_private_key};

use crate::error::ServerError;

/// The `<ssl>` section of `<zeo>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file with the server certificate (chain).
    pub certificate: PathBuf,
    /// PEM file with the server's private key (unencrypted).
    pub key: PathBuf,
    /// PEM file, or directory of PEM files, with the certificates client
    /// certificates must verify against.
    pub authenticate: PathBuf,
}

/// Accepts TLS connections.
pub type Acceptor = tokio_rustls::TlsAcceptor;

fn tls_err(what: impl std::fmt::Display) -> ServerError {
    ServerError::Tls(what.to_string())
}

/// Build the acceptor from the options.
pub fn acceptor(options: &TlsOptions) -> Result<Acceptor, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = load_certificate_chain(&options.certificate).map_err(tls_err)?;
    let key = load_private_key(&options.key).map_err(tls_err)?;
    let roots = load_ca_store(&options.authenticate).map_err(tls_err)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(tls_err)?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(tls_err)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
