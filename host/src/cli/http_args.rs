//! `--http`, `--http-private` and `--http-service`: HTTP grants from the command line, shared
//! by `call`, `dev` and `run`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use rekuest_host::config::ComponentSettings;
use rekuest_host::runtime::SandboxPolicy;
use rekuest_host::runtime::http::{AgentCredentials, HttpClient, HttpGrant};
use rekuest_host::tls::ClientTls;

/// HTTP grants given as flags.
#[derive(Debug, Args, Default)]
pub struct HttpArgs {
    /// Let actions send HTTP requests to ORIGIN (repeatable): scheme, host and port must
    /// match (`https://mikro.lab.example`, `https://*.lab.example`, `http://127.0.0.1:8080`).
    /// Names resolving to loopback, link-local or private addresses are refused.
    #[arg(long = "http", value_name = "ORIGIN", value_parser = parse_grant)]
    pub http: Vec<HttpGrant>,
    /// Like --http, and the name may resolve to loopback, link-local or private addresses.
    #[arg(long = "http-private", value_name = "ORIGIN", value_parser = parse_grant)]
    pub http_private: Vec<HttpGrant>,
    /// Like --http, for an Arkitekt service: requests carry the agent's access token
    /// (`Authorization: Bearer`) and the task's provenance token (`Rekuest-Task`).
    #[arg(long = "http-service", value_name = "ORIGIN", value_parser = parse_grant)]
    pub http_service: Vec<HttpGrant>,
}

fn parse_grant(text: &str) -> Result<HttpGrant, String> {
    text.parse().map_err(|error| format!("{error}"))
}

impl HttpArgs {
    /// Every grant of the flags.
    pub fn grants(&self) -> Vec<HttpGrant> {
        let private = self
            .http_private
            .iter()
            .cloned()
            .map(HttpGrant::allow_private);
        let service = self.http_service.iter().cloned().map(HttpGrant::as_service);
        self.http
            .iter()
            .cloned()
            .chain(private)
            .chain(service)
            .collect()
    }

    /// Adds the flags' grants to every action of `policy` and sends requests with `client`.
    pub fn apply(&self, policy: &mut SandboxPolicy, client: &HttpClient) {
        let added = self.grants();
        let extend =
            |grants: &std::sync::Arc<[HttpGrant]>| grants.iter().chain(&added).cloned().collect();
        policy.http.grants = extend(&policy.http.grants);
        for grants in policy.http.action_grants.values_mut() {
            *grants = extend(grants);
        }
        policy.http.client = client.clone();
    }

    /// [`apply`](Self::apply) to every component.
    pub fn apply_all(&self, components: &mut [ComponentSettings], client: &HttpClient) {
        for component in components {
            self.apply(&mut component.policy, client);
        }
    }
}

/// The client guests' requests leave through: trusting what the agent's own connections trust
/// (`ca_certs` included), sending `token` to service origins.
pub fn client(
    ca_certs: &[PathBuf],
    credentials: Option<Arc<dyn AgentCredentials>>,
) -> anyhow::Result<HttpClient> {
    let client = HttpClient::new(ClientTls::new(ca_certs)?.rustls_config());
    Ok(match credentials {
        Some(credentials) => client.with_credentials(credentials),
        None => client,
    })
}
