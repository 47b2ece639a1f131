//! The local server playing the Arkitekt platform around rekuest: the fakts well-known
//! document, redeem, device codes (approved on the second poll, or denied), the claim, and an
//! OAuth2 client-credentials token endpoint whose tokens GraphQL and REGISTER then check.
//!
//! Paths as on a real deployment: `/.well-known/fakts`, `/lok/f/{redeem,start,challenge,
//! claim}/`, `/lok/o/token/`; the rekuest alias is the server itself, challenged at `/ht`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

/// Prefix of the access tokens this server issues: they are never taken as static tokens.
const ACCESS_TOKEN_PREFIX: &str = "lok-";

/// How the platform side behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformConfig {
    /// Redeem tokens accepted; `None` accepts any non-empty one.
    pub redeem_tokens: Option<Vec<String>>,
    /// How long an access token is valid (tests use a few seconds).
    pub token_lifetime: Duration,
    /// Whether device codes are approved (on the second poll) or denied.
    pub approve_device_codes: bool,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        PlatformConfig {
            redeem_tokens: None,
            token_lifetime: Duration::from_secs(3600),
            approve_device_codes: true,
        }
    }
}

/// How often each platform endpoint granted something.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlatformCounts {
    /// Redeem-token exchanges answered with a claim token (`POST /lok/f/redeem/`).
    pub redeems: u64,
    /// Device codes approved.
    pub device_codes: u64,
    /// Claims answered with the deployment's configuration (`POST /lok/f/claim/`).
    pub claims: u64,
    /// Access tokens issued.
    pub tokens: u64,
}

struct Client {
    client_id: String,
    client_secret: String,
    claim_token: String,
    manifest: Value,
    redeem_token: Option<String>,
    scopes: Vec<String>,
}

struct Issued {
    client_id: String,
    expires: Instant,
}

#[derive(Default)]
struct State {
    clients: Vec<Client>,
    /// Device code -> (manifest, polls so far).
    device_codes: HashMap<String, (Value, u32)>,
    tokens: HashMap<String, Issued>,
    counts: PlatformCounts,
}

/// The platform's state.
pub(crate) struct Platform {
    config: PlatformConfig,
    state: Mutex<State>,
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    grant_type: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

fn granted(mut fields: Value) -> Value {
    fields["status"] = json!("granted");
    fields
}

fn refused(status: &str, message: &str) -> Value {
    json!({"status": status, "message": message})
}

fn random() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Platform {
    pub(crate) fn new(config: PlatformConfig) -> Self {
        Platform {
            config,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `GET /.well-known/fakts`, for a server reached as `origin` (`http://host:port`).
    pub(crate) fn well_known(&self, origin: &str) -> Value {
        json!({
            "name": "rekuest-host dev",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "the local server of rekuest-host dev",
            "claim": format!("{origin}/lok/f/claim/"),
            "base_url": format!("{origin}/lok/f/"),
            "frontend_url": format!("{origin}/"),
        })
    }

    fn new_client(state: &mut State, manifest: Value, redeem_token: Option<String>) -> String {
        let scopes = manifest
            .get("scopes")
            .and_then(Value::as_array)
            .map(|scopes| {
                scopes
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let claim_token = random();
        state.clients.push(Client {
            client_id: random(),
            client_secret: random(),
            claim_token: claim_token.clone(),
            manifest,
            redeem_token,
            scopes,
        });
        claim_token
    }

    /// `POST /lok/f/redeem/ {manifest, token}`.
    pub(crate) fn redeem(&self, body: &Value) -> Value {
        let token = body
            .get("token")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(manifest) = body.get("manifest").filter(|m| m.is_object()) else {
            return refused("error", "No manifest provided");
        };
        let known = !token.is_empty()
            && self
                .config
                .redeem_tokens
                .as_ref()
                .is_none_or(|tokens| tokens.iter().any(|allowed| allowed == token));
        if !known {
            return refused("error", "Invalid redeem token");
        }
        let mut state = self.state();
        if let Some(client) = state
            .clients
            .iter()
            .find(|client| client.redeem_token.as_deref() == Some(token))
        {
            if client.manifest != *manifest {
                return refused(
                    "error",
                    "This redeem token was already used with a different manifest",
                );
            }
            let claim_token = client.claim_token.clone();
            state.counts.redeems += 1;
            return granted(json!({"token": claim_token}));
        }
        let claim_token = Self::new_client(&mut state, manifest.clone(), Some(token.into()));
        state.counts.redeems += 1;
        granted(json!({"token": claim_token}))
    }

    /// `POST /lok/f/start/ {manifest, ...}`.
    pub(crate) fn start(&self, body: &Value) -> Value {
        let Some(manifest) = body.get("manifest").filter(|m| m.is_object()) else {
            return refused("error", "No manifest provided");
        };
        let code = random()[..8].to_string();
        self.state()
            .device_codes
            .insert(code.clone(), (manifest.clone(), 0));
        granted(json!({"code": code}))
    }

    /// `POST /lok/f/challenge/ {code}`: pending on the first poll, then decided.
    pub(crate) fn challenge(&self, body: &Value) -> Value {
        let code = body.get("code").and_then(Value::as_str).unwrap_or_default();
        let mut state = self.state();
        let Some((manifest, polls)) = state.device_codes.get_mut(code) else {
            return refused("expired", "Unknown or expired code");
        };
        *polls += 1;
        if *polls < 2 {
            return refused("pending", "Waiting for the user to approve");
        }
        if !self.config.approve_device_codes {
            state.device_codes.remove(code);
            return refused("denied", "The user denied the request");
        }
        let manifest = manifest.clone();
        state.device_codes.remove(code);
        let claim_token = Self::new_client(&mut state, manifest, None);
        state.counts.device_codes += 1;
        granted(json!({"token": claim_token}))
    }

    /// `POST /lok/f/claim/ {token}`: the client's configuration.
    pub(crate) fn claim(&self, body: &Value, origin: &str, host: &str, port: u16) -> Value {
        let token = body
            .get("token")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let mut state = self.state();
        let Some(client) = state
            .clients
            .iter()
            .find(|client| !token.is_empty() && client.claim_token == token)
        else {
            return refused("error", "Invalid claim token");
        };
        let config = json!({
            "self": {"deployment_name": "rekuest-host dev"},
            "auth": {
                "client_id": client.client_id,
                "client_secret": client.client_secret,
                "client_token": token,
                "token_url": format!("{origin}/lok/o/token/"),
                "scopes": client.scopes,
                "report_url": format!("{origin}/lok/f/report/"),
            },
            "instances": {
                "rekuest": {
                    "service": "live.arkitekt.rekuest",
                    "identifier": "rekuest-host-dev",
                    "aliases": [{
                        "id": "self",
                        "host": host,
                        "port": port,
                        "ssl": false,
                        "path": null,
                        "challenge": "ht",
                    }],
                },
            },
        });
        state.counts.claims += 1;
        granted(json!({"config": config}))
    }

    /// `POST /lok/o/token/` (form): `Ok` with the token answer, `Err` with the OAuth2 error
    /// answer (HTTP 401 for a refused client, 400 otherwise).
    pub(crate) fn token(
        &self,
        form: &[u8],
        basic: Option<(String, String)>,
    ) -> Result<Value, (u16, Value)> {
        let form: TokenForm = serde_urlencoded::from_bytes(form)
            .map_err(|_| (400, json!({"error": "invalid_request"})))?;
        if form.grant_type != "client_credentials" {
            return Err((400, json!({"error": "unsupported_grant_type"})));
        }
        let (client_id, client_secret) = match (form.client_id, form.client_secret, basic) {
            (Some(id), Some(secret), _) => (id, secret),
            (_, _, Some(basic)) => basic,
            _ => return Err((401, json!({"error": "invalid_client"}))),
        };
        let mut state = self.state();
        let Some(client) = state
            .clients
            .iter()
            .find(|client| client.client_id == client_id && client.client_secret == client_secret)
        else {
            return Err((
                401,
                json!({"error": "invalid_client", "error_description": "Client authentication failed"}),
            ));
        };
        let requested: Vec<&str> = form
            .scope
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if let Some(scope) = requested
            .iter()
            .find(|scope| !client.scopes.iter().any(|allowed| allowed == *scope))
        {
            return Err((
                400,
                json!({"error": "invalid_scope", "error_description": format!("scope '{scope}' is not allowed for this client")}),
            ));
        }
        let client_id = client.client_id.clone();
        let access_token = format!("{ACCESS_TOKEN_PREFIX}{}", random());
        let now = Instant::now();
        state.tokens.retain(|_, issued| issued.expires > now);
        state.tokens.insert(
            access_token.clone(),
            Issued {
                client_id,
                expires: now + self.config.token_lifetime,
            },
        );
        state.counts.tokens += 1;
        Ok(json!({
            "token_type": "Bearer",
            "access_token": access_token,
            "expires_in": self.config.token_lifetime.as_secs(),
            "scope": requested.join(" "),
        }))
    }

    /// Whose token `token` is: `None` when it is not one of this platform's tokens at all,
    /// `Some(Err(reason))` when it is but is expired or unknown (revoked).
    pub(crate) fn principal(&self, token: &str) -> Option<Result<String, &'static str>> {
        if !token.starts_with(ACCESS_TOKEN_PREFIX) {
            return None;
        }
        let state = self.state();
        Some(match state.tokens.get(token) {
            Some(issued) if issued.expires > Instant::now() => Ok(issued.client_id.clone()),
            Some(_) => Err("Token expired"),
            None => Err("Invalid token"),
        })
    }

    /// Revokes the client `client_id`: its secret changes (the claim gives the new one) and
    /// every access token it holds stops working. False if there is no such client.
    pub(crate) fn revoke(&self, client_id: &str) -> bool {
        let mut state = self.state();
        let Some(client) = state
            .clients
            .iter_mut()
            .find(|client| client.client_id == client_id)
        else {
            return false;
        };
        client.client_secret = random();
        state
            .tokens
            .retain(|_, issued| issued.client_id != client_id);
        true
    }

    /// Every access token stops working at once (as if they all expired).
    pub(crate) fn expire_tokens(&self) {
        self.state().tokens.clear();
    }

    /// The client ids, in order of creation.
    pub(crate) fn clients(&self) -> Vec<String> {
        self.state()
            .clients
            .iter()
            .map(|client| client.client_id.clone())
            .collect()
    }

    /// How often each endpoint granted something.
    pub(crate) fn counts(&self) -> PlatformCounts {
        self.state().counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(lifetime: Duration) -> Platform {
        Platform::new(PlatformConfig {
            redeem_tokens: Some(vec!["r".into()]),
            token_lifetime: lifetime,
            approve_device_codes: true,
        })
    }

    fn token_for(platform: &Platform, claim_token: &str) -> Result<Value, (u16, Value)> {
        let config = platform.claim(&json!({"token": claim_token}), "http://h:1", "h", 1);
        let auth = &config["config"]["auth"];
        let form = serde_urlencoded::to_string([
            ("grant_type", "client_credentials"),
            ("scope", "openid"),
            ("client_id", auth["client_id"].as_str().unwrap_or_default()),
            (
                "client_secret",
                auth["client_secret"].as_str().unwrap_or_default(),
            ),
        ])
        .expect("form");
        platform.token(form.as_bytes(), None)
    }

    #[test]
    fn redeem_claim_and_tokens_are_checked() {
        let platform = platform(Duration::from_secs(60));
        let manifest = json!({"identifier": "a", "version": "1", "scopes": ["openid"]});
        assert_eq!(
            platform.redeem(&json!({"manifest": manifest, "token": "x"}))["status"],
            "error"
        );
        let granted = platform.redeem(&json!({"manifest": manifest, "token": "r"}));
        let claim_token = granted["token"].as_str().expect("claim token").to_string();
        let again = platform.redeem(&json!({"manifest": manifest, "token": "r"}));
        assert_eq!(again["token"], claim_token.as_str(), "the same client");
        let changed = json!({"identifier": "a", "version": "2", "scopes": ["openid"]});
        let refused = platform.redeem(&json!({"manifest": changed, "token": "r"}));
        assert!(
            refused["message"]
                .as_str()
                .unwrap_or_default()
                .contains("different manifest")
        );
        assert_eq!(
            platform.claim(&json!({"token": "nope"}), "http://h:1", "h", 1)["status"],
            "error"
        );
        let answer = token_for(&platform, &claim_token).expect("token");
        let access = answer["access_token"].as_str().expect("access token");
        let client = platform.clients()[0].clone();
        assert_eq!(platform.principal(access), Some(Ok(client.clone())));
        assert_eq!(platform.principal("static-token"), None);
        assert!(platform.revoke(&client));
        assert_eq!(platform.principal(access), Some(Err("Invalid token")));
        // The claim gives the new secret.
        assert!(token_for(&platform, &claim_token).is_ok());
    }

    #[test]
    fn tokens_expire_and_device_codes_poll() {
        let platform = platform(Duration::ZERO);
        let started =
            platform.start(&json!({"manifest": {"identifier": "a", "scopes": ["openid"]}}));
        let code = json!({"code": started["code"]});
        assert_eq!(platform.challenge(&code)["status"], "pending");
        let granted = platform.challenge(&code);
        assert_eq!(granted["status"], "granted");
        let answer =
            token_for(&platform, granted["token"].as_str().expect("token")).expect("token");
        let access = answer["access_token"].as_str().expect("access token");
        assert_eq!(platform.principal(access), Some(Err("Token expired")));
        assert_eq!(
            platform.challenge(&json!({"code": "nope"}))["status"],
            "expired"
        );
    }
}
