//! TLS as ZEO does it: the server presents its certificate and key, and every
//! client must present a certificate that verifies against the `authenticate` CA
//! file or directory (mutual TLS, always required). No hostname check on clients.
//! Built on rustls with the ring provider.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use zeoraid_tls::{load_certificate_chain, load_private_key, load_trust_anchors, TrustAnchors};

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
    let anchors = load_trust_anchors(&options.authenticate).map_err(tls_err)?;
    let webpki =
        WebPkiClientVerifier::builder_with_provider(anchors.store.clone(), provider.clone())
            .build()
            .map_err(tls_err)?;
    let verifier = Arc::new(ClientVerifier { webpki, anchors });
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(tls_err)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// WebPKI client verification, plus OpenSSL's acceptance of a client certificate
/// that is itself one of the `authenticate` certificates ([`TrustAnchors`]).
#[derive(Debug)]
struct ClientVerifier {
    webpki: Arc<dyn ClientCertVerifier>,
    anchors: TrustAnchors,
}

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self
            .webpki
            .verify_client_cert(end_entity, intermediates, now)
        {
            Err(e) if self.anchors.accepts_as_pinned(&e, end_entity) => {
                Ok(ClientCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
