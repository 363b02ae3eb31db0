//! TLS as ZEO does it: the server presents its certificate and key, and every
//! client must present a certificate that verifies against the `authenticate` CA
//! file or directory (mutual TLS, always required). No hostname check on clients.
//! Built on rustls with the ring provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

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

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_err(format!("{}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
    Ok(certs)
}

fn load_ca(path: &Path) -> Result<RootCertStore, ServerError> {
    let mut roots = RootCertStore::empty();
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| tls_err(format!("{}: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_path_buf()]
    };
    for file in files {
        // In a directory, files that hold no certificate (keys, CRLs) are skipped.
        let Ok(certs) = load_certs(&file) else {
            continue;
        };
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| tls_err(format!("{}: {e}", file.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(tls_err(format!(
            "no CA certificate found in {}",
            path.display()
        )));
    }
    Ok(roots)
}

/// Build the acceptor from the options.
pub fn acceptor(options: &TlsOptions) -> Result<Acceptor, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = load_certs(&options.certificate)?;
    if certs.is_empty() {
        return Err(tls_err(format!(
            "no certificate in {}",
            options.certificate.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&options.key)
        .map_err(|e| tls_err(format!("{}: {e}", options.key.display())))?;
    let roots = load_ca(&options.authenticate)?;
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
