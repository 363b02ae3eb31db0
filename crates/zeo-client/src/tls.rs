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
use zeoraid_tls::{load_ca_store, load_certificate_chain, load_private_key};

use crate::error::ClientError;
use crate::options::{ServerAddress, TlsOptions};

fn tls_err(what: impl fmt::Display) -> ClientError {
    ClientError::Config(format!("TLS: {what}"))
}

/// Verifies the chain like the WebPKI verifier but accepts a certificate that does
/// not name the host (`check-hostname false`).
#[derive(Debug)]
struct NoHostnameVerifier(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for NoHostnameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
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
        let roots = Arc::new(load_ca_store(ca).map_err(tls_err)?);
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?;
        let builder = if options.check_hostname {
            builder.with_root_certificates(roots)
        } else {
            let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(tls_err)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoHostnameVerifier(inner)))
        };
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
