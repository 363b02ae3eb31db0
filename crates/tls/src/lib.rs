//! TLS material for the ZEO transport, shared by the zeo server and the zeo client:
//! certificate chains, private keys and CA stores read from PEM files the way ZEO's
//! `<ssl>` sections name them (`certificate`, `key`, `authenticate` — a CA file or a
//! directory of them). Every error names the file. Built on rustls' PEM parser.
//!
//! [`TrustAnchors`] also keeps the trusted certificates themselves: OpenSSL (and
//! so Python's ZEO) accepts a peer whose certificate *is* one of the trusted
//! certificates, e.g. a self-signed `CA:TRUE` certificate used as its own CA as
//! ZEO's own test certificates are, where webpki refuses a CA certificate as an
//! end entity. Both sides of zeoraid accept that one case too.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{CertificateError, OtherError, RootCertStore};
use thiserror::Error;

/// A PEM file that cannot be used.
#[derive(Debug, Error)]
pub enum TlsFileError {
    /// The file (or directory) cannot be read or parsed.
    #[error("{}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    /// The file holds no certificate.
    #[error("no certificate in {}", .0.display())]
    NoCertificate(PathBuf),
    /// The file or directory holds no CA certificate.
    #[error("no CA certificate found in {}", .0.display())]
    NoCa(PathBuf),
}

fn unreadable(path: &Path, reason: impl std::fmt::Display) -> TlsFileError {
    TlsFileError::Unreadable {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The certificates of a PEM file (possibly none).
fn certificates_in(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(path, e))
}

/// A certificate chain: at least one certificate.
pub fn load_certificate_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let certs = certificates_in(path)?;
    if certs.is_empty() {
        return Err(TlsFileError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// The first private key of a PEM file (unencrypted; PKCS#1, PKCS#8 or SEC1).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| unreadable(path, e))
}

/// The trusted certificates of an `authenticate` CA file or directory.
#[derive(Debug, Clone)]
pub struct TrustAnchors {
    /// For chain verification.
    pub store: Arc<RootCertStore>,
    certificates: Vec<CertificateDer<'static>>,
}

impl TrustAnchors {
    /// Whether a verification `error` for the peer's `end_entity` certificate is
    /// only webpki's refusal of a CA certificate as an end entity, for a
    /// certificate that is byte for byte one of the trusted ones. webpki checks
    /// the validity period before the basic constraints, so an expired or not yet
    /// valid certificate never gets here.
    pub fn accepts_as_pinned(
        &self,
        error: &rustls::Error,
        end_entity: &CertificateDer<'_>,
    ) -> bool {
        let rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) = error
        else {
            return false;
        };
        matches!(
            inner.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::CaUsedAsEndEntity)
        ) && self
            .certificates
            .iter()
            .any(|trusted| trusted.as_ref() == end_entity.as_ref())
    }
}

/// The trust anchors of a CA file, or of every file in a CA directory (files there
/// that hold no certificate, such as keys or CRLs, are skipped, as OpenSSL's
/// `capath` lookup would never match them).
pub fn load_trust_anchors(path: &Path) -> Result<TrustAnchors, TlsFileError> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| unreadable(path, e))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut store = RootCertStore::empty();
    let mut certificates = Vec::new();
    for file in files {
        let Ok(certs) = certificates_in(&file) else {
            continue;
        };
        for cert in certs {
            store.add(cert.clone()).map_err(|e| unreadable(&file, e))?;
            certificates.push(cert);
        }
    }
    if store.is_empty() {
        return Err(TlsFileError::NoCa(path.to_path_buf()));
    }
    Ok(TrustAnchors {
        store: Arc::new(store),
        certificates,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn missing_and_empty_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = load_certificate_chain(&missing).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(matches!(
            load_certificate_chain(&empty),
            Err(TlsFileError::NoCertificate(_))
        ));
        assert!(matches!(
            load_trust_anchors(&empty),
            Err(TlsFileError::NoCa(_))
        ));
        assert!(matches!(
            load_trust_anchors(dir.path()),
            Err(TlsFileError::NoCa(_))
        ));
        assert!(load_private_key(&empty)
            .unwrap_err()
            .to_string()
            .contains("empty.pem"));
    }
}
