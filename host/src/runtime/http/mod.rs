//! Outbound HTTP for guests through `wasi:http` (wasmtime's own implementation), denied by
//! default. A component's [`HttpPolicy`] names the origins its actions may reach and the limits
//! they run under; every request (each hop of a redirect too, since guests follow redirects
//! themselves) is checked against it before anything is resolved or connected, and the
//! addresses a name resolves to are checked again (no DNS rebinding into private ranges).
//! Requests to origins marked as Arkitekt services get the agent's access token and the task's
//! provenance token added by the host; the guest never sees the former.

mod grant;
mod send;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

pub use grant::{HttpGrant, InvalidOrigin, RequestOrigin, Scheme, restricted_range};
pub(crate) use send::TaskHttp;

use super::host_api::TaskState;

/// Default cap on the body of one response.
pub const DEFAULT_HTTP_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;
/// Default cap on the bodies of all responses of one task together.
pub const DEFAULT_HTTP_TOTAL_BYTES: u64 = 256 * 1024 * 1024;
/// Default time to connect (DNS, TCP, TLS) and, separately, to the response's head.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of requests one task may have in flight at once.
pub const DEFAULT_HTTP_CONCURRENCY: usize = 8;

/// Limits of a task's outbound HTTP. Time spent waiting also counts toward the task's timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Bytes of one response body.
    pub response_bytes: u64,
    /// Bytes of all response bodies of one task.
    pub total_bytes: u64,
    /// Time to connect, and time from sending to the response's head.
    pub timeout: Duration,
    /// Requests in flight at once (a request holds its slot until its body is dropped).
    pub concurrency: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            response_bytes: DEFAULT_HTTP_RESPONSE_BYTES,
            total_bytes: DEFAULT_HTTP_TOTAL_BYTES,
            timeout: DEFAULT_HTTP_TIMEOUT,
            concurrency: DEFAULT_HTTP_CONCURRENCY,
        }
    }
}

/// The agent's own credentials for Arkitekt services. Today fed by the static token; a login
/// that refreshes its token implements this too.
#[async_trait::async_trait]
pub trait AgentCredentials: Send + Sync {
    /// The access token sent as `Authorization: Bearer` to service origins, or why there is
    /// none.
    async fn access_token(&self) -> Result<String, String>;
}

/// A fixed access token (`--token`, `server.token`).
pub struct StaticToken(pub String);

#[async_trait::async_trait]
impl AgentCredentials for StaticToken {
    async fn access_token(&self) -> Result<String, String> {
        Ok(self.0.clone())
    }
}

/// How requests leave the host: the TLS trust and the agent's credentials; cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    tls: Arc<rustls::ClientConfig>,
    credentials: Option<Arc<dyn AgentCredentials>>,
}

static DEFAULT_TLS: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
    // Idempotent: makes ring the process's provider, whoever asks first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
});

impl Default for HttpClient {
    /// Trusts the bundled Mozilla roots; no credentials.
    fn default() -> Self {
        HttpClient {
            tls: Arc::clone(&DEFAULT_TLS),
            credentials: None,
        }
    }
}

impl HttpClient {
    /// A client verifying servers with `tls` (e.g. [`crate::tls::ClientTls::rustls_config`]).
    pub fn new(tls: rustls::ClientConfig) -> Self {
        HttpClient {
            tls: Arc::new(tls),
            credentials: None,
        }
    }

    /// Sends `credentials` to service origins.
    pub fn with_credentials(mut self, credentials: Arc<dyn AgentCredentials>) -> Self {
        self.credentials = Some(credentials);
        self
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("credentials", &self.credentials.is_some())
            .finish_non_exhaustive()
    }
}

impl PartialEq for HttpClient {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.tls, &other.tls)
            && match (&self.credentials, &other.credentials) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

/// What a component's guests may reach over HTTP. Nothing unless granted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpPolicy {
    /// Origins every action without an override may reach.
    pub grants: Arc<[HttpGrant]>,
    /// Origins of single actions, by action key (replacing `grants`).
    pub action_grants: HashMap<String, Arc<[HttpGrant]>>,
    /// Limits of every request.
    pub limits: HttpLimits,
    /// TLS trust and credentials.
    pub client: HttpClient,
}

impl HttpPolicy {
    /// The grants of `action`.
    pub fn grants_for(&self, action: &str) -> &Arc<[HttpGrant]> {
        self.action_grants.get(action).unwrap_or(&self.grants)
    }
}

impl WasiHttpView for TaskState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
        }
    }
}

/// Adds `wasi:http` (types and outgoing-handler) to the linker.
pub(crate) fn add_to_linker(linker: &mut Linker<TaskState>) -> wasmtime::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
}
