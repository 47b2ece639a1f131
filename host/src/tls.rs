//! Outbound TLS: which certificate authorities the host trusts, one client configuration for
//! every connection it makes (GraphQL, the agent socket, `assign`), and failures explained so a
//! person can act on them.
//!
//! Trusted are, together: the Mozilla roots bundled with the binary, the operating system's
//! trust store (or, when `SSL_CERT_FILE` / `SSL_CERT_DIR` are set, those instead, as curl,
//! OpenSSL and Python do), and any CA files given with `--ca-cert` or `server.ca_certs`.
//! Verification cannot be switched off.

use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{CertificateError, ClientConfig, RootCertStore};

/// How to add a CA, for error messages.
pub const HOW_TO_TRUST: &str = "trust its CA with --ca-cert FILE, `ca_certs = [\"FILE\"]` in the \
     config file's [server] table, or SSL_CERT_FILE=FILE (PEM), or install the CA in the \
     system trust store (e.g. update-ca-certificates)";

/// Why the trusted certificates could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A CA file could not be read.
    #[error("cannot read the CA certificate file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A CA file holds no usable certificate.
    #[error(
        "the CA certificate file {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
        path.display()
    )]
    NoCertificates {
        /// The file.
        path: PathBuf,
    },
    /// A certificate in a CA file is not usable as a trust anchor.
    #[error("the CA certificate file {} holds a certificate that cannot be trusted", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// rustls's reason (the PEM is malformed, or the certificate is not an anchor).
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `SSL_CERT_FILE` or `SSL_CERT_DIR` names something unreadable.
    #[error("the system trust store (SSL_CERT_FILE / SSL_CERT_DIR) could not be read")]
    SystemStore(#[source] rustls_native_certs::Error),
}

/// The TLS client settings every outbound connection uses; cheap to clone.
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
}

impl ClientTls {
    /// Trusts the bundled roots, the system store (or `SSL_CERT_FILE`/`SSL_CERT_DIR`) and each
    /// PEM file of `ca_files`.
    pub fn new(ca_files: &[PathBuf]) -> Result<Self, TlsError> {
        // Idempotent: makes ring the process's provider, whoever asks first.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut system = rustls_native_certs::load_native_certs();
        let from_env = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
            .iter()
            .any(|name| std::env::var_os(name).is_some());
        if from_env && !system.errors.is_empty() {
            // Set by the operator on purpose: a typo there must not go unnoticed.
            return Err(TlsError::SystemStore(system.errors.swap_remove(0)));
        }
        for error in &system.errors {
            tracing::debug!("part of the system trust store could not be read: {error}");
        }
        // Stores carry certificates rustls cannot use as anchors; skipping them is what
        // every client does.
        let (_, _) = roots.add_parsable_certificates(system.certs);
        for path in ca_files {
            add_ca_file(&mut roots, path)?;
        }
        let config = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }

    /// The settings for reqwest's `use_preconfigured_tls`.
    pub fn rustls_config(&self) -> ClientConfig {
        (*self.config).clone()
    }

    /// The connector for tokio-tungstenite's `connect_async_tls_with_config`.
    pub fn websocket_connector(&self) -> tokio_tungstenite::Connector {
        tokio_tungstenite::Connector::Rustls(Arc::clone(&self.config))
    }
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut found = 0;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let bad_certificate =
            |source: Box<dyn std::error::Error + Send + Sync>| TlsError::BadCertificate {
                path: path.to_path_buf(),
                source,
            };
        let certificate = certificate.map_err(|error| bad_certificate(error.into()))?;
        roots
            .add(certificate)
            .map_err(|error| bad_certificate(error.into()))?;
        found += 1;
    }
    if found == 0 {
        return Err(TlsError::NoCertificates {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// `host:port` of `url`, as error messages name a server.
pub fn server_of(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        _ => url.to_string(),
    }
}

/// If `error` (or anything it was caused by) is a refused server certificate, says which
/// server, why, and how to fix it; `None` for any other failure.
pub fn explain_certificate_error(server: &str, error: &(dyn StdError + 'static)) -> Option<String> {
    let problem = certificate_problem(error)?;
    let (reason, fix) = match problem {
        CertificateError::UnknownIssuer => (
            "it is signed by a certificate authority this host does not trust".to_string(),
            HOW_TO_TRUST.to_string(),
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => (
            format!("it is not valid for the name {server}"),
            "connect with the name the certificate was issued for, or have it reissued for \
             this name"
                .to_string(),
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => (
            "it has expired".to_string(),
            "renew the server's certificate (and check this machine's clock)".to_string(),
        ),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => (
            "it is not valid yet".to_string(),
            "check this machine's clock".to_string(),
        ),
        other => (
            format!("{}", rustls::Error::InvalidCertificate(other.clone())),
            HOW_TO_TRUST.to_string(),
        ),
    };
    Some(format!(
        "TLS: the certificate of {server} was refused: {reason}; to fix: {fix}"
    ))
}

/// The certificate error somewhere in `error`'s chain. `io::Error` hides what it wraps from
/// `source()`, so each one is opened too.
fn certificate_problem<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a CertificateError> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(rustls::Error::InvalidCertificate(problem)) = error.downcast_ref() {
            return Some(problem);
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(problem) = certificate_problem(inner)
        {
            return Some(problem);
        }
        if let Some(tokio_tungstenite::tungstenite::Error::Tls(
            tokio_tungstenite::tungstenite::error::TlsError::Rustls(rustls_error),
        )) = error.downcast_ref()
            && let rustls::Error::InvalidCertificate(problem) = rustls_error.as_ref()
        {
            return Some(problem);
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_unreadable_and_empty_ca_files() {
        let missing = PathBuf::from("/nonexistent/ca.pem");
        let error = ClientTls::new(std::slice::from_ref(&missing)).expect_err("missing file");
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");

        let dir = std::env::temp_dir().join(format!("rekuest-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let error = ClientTls::new(&[empty]).expect_err("no certificate");
        assert!(matches!(error, TlsError::NoCertificates { .. }), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn explains_certificate_errors_wherever_they_are_wrapped() {
        let wrapped = std::io::Error::other(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        let message = explain_certificate_error("lab.example:443", &wrapped).expect("explained");
        assert!(message.contains("lab.example:443"), "{message}");
        assert!(message.contains("does not trust"), "{message}");
        assert!(message.contains("--ca-cert"), "{message}");

        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        let message = explain_certificate_error("other.example", &name).expect("explained");
        assert!(
            message.contains("not valid for the name other.example"),
            "{message}"
        );

        let unrelated = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(explain_certificate_error("x", &unrelated), None);
    }
}
