//! TLS against a runzeo with `<ssl>` (mutual TLS, as ZEO always requires), with
//! certificates made by the openssl CLI: a CA, a server certificate for
//! `localhost`/127.0.0.1 and a client certificate.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use zeoraid_storage::{Storage, Tid};
use zeoraid_zeo_client::{TlsOptions, ZeoClient};

use crate::common::{commit, ServerConfig, ZeoServer};
use crate::init_tracing;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is needed for the TLS test");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// CA, server and client certificates (EC P-256) in `dir`.
fn make_certs(dir: &Path) {
    std::fs::write(
        dir.join("ca.ext"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:zeoraid-client\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    let key = |name: &str| {
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &format!("{name}.key"),
            ],
        )
    };
    key("ca");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=zeoraid test CA",
            "-out",
            "ca.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509", "-req", "-in", "ca.csr", "-signkey", "ca.key", "-days", "2", "-extfile",
            "ca.ext", "-out", "ca.pem",
        ],
    );
    for name in ["server", "client"] {
        key(name);
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                &format!("/CN={name}"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates() {
    init_tracing();
    let certs = tempfile::tempdir().unwrap();
    let d = certs.path();
    make_certs(d);
    let server = ZeoServer::start(ServerConfig {
        zeo_extra: format!(
            "  <ssl>\n    certificate {}\n    key {}\n    authenticate {}\n  </ssl>\n",
            d.join("server.pem").display(),
            d.join("server.key").display(),
            d.join("ca.pem").display()
        ),
        ..Default::default()
    });
    let tls = TlsOptions {
        certificate: Some(d.join("client.pem")),
        key: Some(d.join("client.key")),
        authenticate: Some(d.join("ca.pem")),
        check_hostname: true,
        server_hostname: None,
    };
    // Verified against the CA, hostname 127.0.0.1 in the certificate.
    let client = ZeoClient::connect(server.options().tls(tls.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(client.last_transaction().await.unwrap(), Tid::ZERO);
    let oid = client.new_oids(1).await.unwrap()[0];
    assert!(oid > zeoraid_storage::Oid::ZERO);
    // A commit's calls are written by the caller when the output is idle,
    // through the TLS stream's own buffer (it must be flushed, not left there).
    let data = bytes::Bytes::from_static(b"over TLS");
    let store = zeoraid_storage::Operation::Store {
        oid,
        serial: Tid::ZERO,
        data: data.clone(),
    };
    let tid = commit(&client, vec![store]).await;
    let record = client.load_before(oid, Tid::MAX).await.unwrap().unwrap();
    assert_eq!((record.data, record.start), (data, tid));
    drop(client);

    // server-hostname names the host to check.
    let named = TlsOptions {
        server_hostname: Some("localhost".into()),
        ..tls.clone()
    };
    ZeoClient::connect(server.options().tls(named))
        .await
        .unwrap();

    let quick = |tls: TlsOptions| {
        let mut o = server
            .options()
            .tls(tls)
            .connect_timeout(Duration::from_millis(800));
        o.wait_timeout = Duration::from_millis(1000);
        o
    };
    // A name the certificate does not have: refused, unless check-hostname is off.
    let wrong = TlsOptions {
        server_hostname: Some("db.example".into()),
        ..tls.clone()
    };
    assert!(ZeoClient::connect(quick(wrong.clone())).await.is_err());
    let unchecked = TlsOptions {
        check_hostname: false,
        ..wrong
    };
    ZeoClient::connect(server.options().tls(unchecked))
        .await
        .unwrap();
    // Without a client certificate the server refuses the connection.
    let anonymous = TlsOptions {
        certificate: None,
        key: None,
        ..tls.clone()
    };
    assert!(ZeoClient::connect(quick(anonymous)).await.is_err());
    // A CA that did not sign the server's certificate: refused.
    let other_ca = TlsOptions {
        authenticate: Some(d.join("client.pem")),
        ..tls
    };
    assert!(ZeoClient::connect(quick(other_ca)).await.is_err());
}

/// ZEO's own test certificates (`ZEO/tests/*.pem`, as `ZEO.tests.testssl` uses
/// them): self-signed `CA:TRUE` certificates, each side trusting exactly the other's
/// certificate. OpenSSL accepts a certificate that is itself a trust anchor; so
/// does our client, and only that exact certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_zeos_self_signed_test_certificates() {
    init_tracing();
    let zeo_tests = crate::common::venv().join("lib");
    let zeo_tests = std::fs::read_dir(&zeo_tests)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages/ZEO/tests"))
        .find(|p| p.join("server.pem").is_file())
        .expect("ZEO's test certificates in the venv");
    let cert = |name: &str| zeo_tests.join(name);
    let server = ZeoServer::start(ServerConfig {
        zeo_extra: format!(
            "  <ssl>\n    certificate {}\n    key {}\n    authenticate {}\n  </ssl>\n",
            cert("server.pem").display(),
            cert("server_key.pem").display(),
            cert("client.pem").display()
        ),
        ..Default::default()
    });
    let tls = TlsOptions {
        certificate: Some(cert("client.pem")),
        key: Some(cert("client_key.pem")),
        authenticate: Some(cert("server.pem")),
        check_hostname: false,
        server_hostname: None,
    };
    let client = ZeoClient::connect(server.options().tls(tls.clone()))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(client.last_transaction().await.unwrap(), Tid::ZERO);
    drop(client);
    // Trusting another self-signed certificate than the server's: refused.
    let mut quick = server
        .options()
        .tls(TlsOptions {
            authenticate: Some(cert("client.pem")),
            ..tls
        })
        .connect_timeout(Duration::from_millis(800));
    quick.wait_timeout = Duration::from_millis(1000);
    assert!(ZeoClient::connect(quick).await.is_err());
}
