//! TLS as ZEO's `<clientstorage><ssl>` has it: the client presents its certificate
//! (ZEO servers always require one), verifies the server's certificate against the
//! `authenticate` CA file or directory and, unless `check-hostname` is off, checks
//! that it names the server (`server-hostname`, else the address's host).
//! Built on rustls with the ring provider.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;
use zeoraid_tls::{load_certificate_chain, load_private_key, load_trust_anchors, TrustAnchors};

use crate::error::ClientError;
use crate::options::{ServerAddress, TlsOptions};

fn tls_err(what: impl fmt::Display) -> ClientError {
    ClientError::Config(format!("TLS: {what}"))
}

/// Verifies the server like the WebPKI verifier, but accepts a certificate that is
/// itself one of the `authenticate` certificates ([`TrustAnchors`], as OpenSSL
/// does) and, with `check-hostname false`, one that does not name the host.
#[derive(Debug)]
struct ServerVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    anchors: TrustAnchors,
    check_hostname: bool,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_hostname => Ok(ServerCertVerified::assertion()),
            // A pinned certificate is accepted as it is; the host name is only
            // checked against it when asked to (webpki stopped before).
            Err(e) if self.anchors.accepts_as_pinned(&e, end_entity) => {
                if self.check_hostname {
                    check_pinned_name(end_entity, server_name)?;
                }
                Ok(ServerCertVerified::assertion())
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

/// A TLS connector plus the options deciding the server name.
#[derive(Clone)]
pub(crate) struct Tls {
    connector: TlsConnector,
    server_hostname: Option<String>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("server_hostname", &self.server_hostname)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Builds the client configuration; every file is read now, so a bad option
    /// fails at startup rather than on every reconnect.
    pub(crate) fn new(options: &TlsOptions) -> Result<Tls, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca = options.authenticate.as_deref().ok_or_else(|| {
            tls_err("`authenticate` (CA file or directory) is required; the system trust store is not used")
        })?;
        let anchors = load_trust_anchors(ca).map_err(tls_err)?;
        let webpki =
            WebPkiServerVerifier::builder_with_provider(anchors.store.clone(), provider.clone())
                .build()
                .map_err(tls_err)?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerVerifier {
                webpki,
                anchors,
                check_hostname: options.check_hostname,
            }));
        let config = match &options.certificate {
            Some(cert_path) => {
                let certs = load_certificate_chain(cert_path).map_err(tls_err)?;
                let key_path = options.key.as_deref().unwrap_or(cert_path);
                let key = load_private_key(key_path).map_err(tls_err)?;
                builder.with_client_auth_cert(certs, key).map_err(tls_err)?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            server_hostname: options.server_hostname.clone(),
        })
    }

    pub(crate) fn connector(&self) -> &TlsConnector {
        &self.connector
    }

    /// The name to verify and send as SNI for `address`.
    pub(crate) fn server_name(
        &self,
        address: &ServerAddress,
    ) -> Result<ServerName<'static>, ClientError> {
        let host = match (&self.server_hostname, address) {
            (Some(name), _) => name.clone(),
            (None, ServerAddress::Tcp { host, .. }) => host.clone(),
            (None, ServerAddress::Unix(_)) => "localhost".to_owned(),
        };
        ServerName::try_from(host.clone())
            .map_err(|e| tls_err(format!("bad server name {host:?}: {e}")))
    }
}

/// The host-name check webpki would have made on a pinned certificate.
fn check_pinned_name(
    end_entity: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
) -> Result<(), rustls::Error> {
    let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
    rustls::client::verify_server_name(&parsed, server_name)
}
