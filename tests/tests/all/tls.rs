//! `run` over real TLS (https + wss) in front of the local server, with a certificate from a CA
//! made in the test: trusted through `--ca-cert`, the config file and `SSL_CERT_FILE`; refused
//! without it, and refused for a certificate issued for another name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::serve_support::*;
use rekuest_host::devserver::DevServer;

/// A CA made for one test, and a server certificate it signed.
struct Pki {
    dir: PathBuf,
    ca_pem: PathBuf,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
}

fn make_pki(tag: &str, server_names: &[&str]) -> Pki {
    let dir = std::env::temp_dir().join(format!("rekuest-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
        .expect("ca certificate");
    let ca_pem = dir.join("ca.pem");
    std::fs::write(&ca_pem, ca.pem()).expect("writes the CA");
    let server_key = KeyPair::generate().expect("server key");
    let names: Vec<String> = server_names.iter().map(|name| name.to_string()).collect();
    let server_cert = CertificateParams::new(names)
        .expect("server params")
        .signed_by(&server_key, &ca)
        .expect("server certificate");
    Pki {
        dir,
        ca_pem,
        server_cert: server_cert.der().clone(),
        server_key: server_key.serialize_der(),
    }
}

/// Terminates TLS on a loopback port and forwards the bytes to the local server.
async fn tls_front(pki: &Pki, backend: SocketAddr) -> SocketAddr {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key.clone()));
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![pki.server_cert.clone()], key)
        .expect("server TLS config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake is what some tests expect: nothing to forward then.
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                if let Ok(mut server) = TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                }
            });
        }
    });
    addr
}

/// `rekuest-host run` serving `math` against `url`, with extra args and environment.
fn start_host(url: &str, extra: &[&str], env: &[(&str, &Path)]) -> Child {
    let mut command = host_process(&["run", "--url", url, "--token", TOKEN]);
    command
        .args(extra)
        .arg(example("math"))
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    command.spawn().expect("starts")
}

/// Serves `add` through the host and checks the result, then stops the host.
async fn serves_over_tls(server: &DevServer, mut host: Child) {
    until("the agent to connect over wss", || {
        server.is_connected(TOKEN)
    })
    .await;
    let events = run(server, "add", json!({"a": 20, "b": 22})).await;
    assert_eq!(yields(&events), [return0(json!(42))]);
    let _ = host.kill();
    let _ = host.wait();
}

/// Waits for the host to exit on its own; returns its stderr.
async fn refused(mut host: Child) -> String {
    let status = bounded("the host to give up", async {
        loop {
            if let Some(status) = host.try_wait().expect("waits") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let output = host.wait_with_output().expect("output");
    assert!(!status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_trusts_an_internal_ca_given_each_way() {
    let pki = make_pki("trusted", &["localhost"]);
    let server = DevServer::start(fast_server()).await.expect("server");
    let front = tls_front(&pki, server.addr()).await;
    let url = format!("https://localhost:{}", front.port());

    let ca = pki.ca_pem.to_str().expect("utf-8 path");
    serves_over_tls(&server, start_host(&url, &["--ca-cert", ca], &[])).await;

    serves_over_tls(
        &server,
        start_host(&url, &[], &[("SSL_CERT_FILE", &pki.ca_pem)]),
    )
    .await;

    let config = pki.dir.join("rekuest-host.toml");
    std::fs::write(&config, "[server]\nca_certs = [\"ca.pem\"]\n").expect("writes");
    let config = config.to_str().expect("utf-8 path");
    serves_over_tls(&server, start_host(&url, &["--config", config], &[])).await;
    let _ = std::fs::remove_dir_all(&pki.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_an_untrusted_ca_and_a_wrong_name_saying_why() {
    let pki = make_pki("refused", &["localhost"]);
    let server = DevServer::start(fast_server()).await.expect("server");
    let front = tls_front(&pki, server.addr()).await;
    let url = format!("https://localhost:{}", front.port());

    let stderr = refused(start_host(&url, &[], &[])).await;
    assert!(
        stderr.contains(&format!("localhost:{}", front.port())),
        "{stderr}"
    );
    assert!(stderr.contains("does not trust"), "{stderr}");
    assert!(stderr.contains("--ca-cert"), "{stderr}");
    assert!(stderr.contains("SSL_CERT_FILE"), "{stderr}");

    let other = make_pki("other-name", &["other.example"]);
    let front = tls_front(&other, server.addr()).await;
    let url = format!("https://localhost:{}", front.port());
    let ca = other.ca_pem.to_str().expect("utf-8 path");
    let stderr = refused(start_host(&url, &["--ca-cert", ca], &[])).await;
    assert!(
        stderr.contains("not valid for the name localhost"),
        "{stderr}"
    );
    assert!(!server.is_connected(TOKEN));

    let missing = refused(start_host(&url, &["--ca-cert", "/nonexistent/ca.pem"], &[])).await;
    assert!(missing.contains("/nonexistent/ca.pem"), "{missing}");
    for dir in [&pki.dir, &other.dir] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
