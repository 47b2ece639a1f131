//! The fakts wire: the well-known document, redeem, the device code, the claim and the
//! choice of a service alias. Every fakts endpoint answers HTTP 200 and says `status`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use reqwest::{Client, Url};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::LoginError;
use super::manifest::Manifest;
use crate::tls::{explain_certificate_error, server_of};

/// How long an alias may take to answer its challenge.
const CHALLENGE_TIMEOUT: Duration = Duration::from_secs(5);

/// The claimed client: how to get access tokens (`auth`) and where each service is.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimedConfig {
    /// OAuth2 client credentials.
    pub auth: AuthConfig,
    /// Service instances by requirement key.
    #[serde(default)]
    pub instances: BTreeMap<String, Instance>,
}

impl fmt::Debug for ClaimedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimedConfig")
            .field("auth", &self.auth)
            .field("instances", &self.instances)
            .finish()
    }
}

/// The `auth` part of a claim.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthConfig {
    /// The OAuth2 client id.
    pub client_id: String,
    /// The OAuth2 client secret (never printed).
    pub client_secret: String,
    /// Where access tokens come from.
    pub token_url: String,
    /// Scopes to ask for.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("token_url", &self.token_url)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// One service instance the deployment gave this client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// The service identifier, e.g. `live.arkitekt.rekuest`.
    pub service: String,
    /// The instance's identifier.
    #[serde(default)]
    pub identifier: Option<String>,
    /// The addresses it answers on.
    #[serde(default)]
    pub aliases: Vec<Alias>,
}

/// One address of a service instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    /// The alias id.
    #[serde(default)]
    pub id: Option<String>,
    /// The host name an Arkitekt service is reached at.
    pub host: String,
    /// Port (default of the scheme if absent).
    #[serde(default)]
    pub port: Option<u16>,
    /// https (else http).
    #[serde(default)]
    pub ssl: bool,
    /// The path prefix the service is mounted under (empty for the root).
    #[serde(default)]
    pub path: Option<String>,
    /// Path under the base that answers 200 when the service is reachable.
    #[serde(default)]
    pub challenge: Option<String>,
}

impl Alias {
    /// `http(s)://host[:port][/path]`, without a trailing slash.
    pub fn base_url(&self) -> Result<Url, String> {
        let scheme = if self.ssl { "https" } else { "http" };
        let port = self.port.map(|port| format!(":{port}")).unwrap_or_default();
        let path = self
            .path
            .as_deref()
            .map(|path| path.trim_matches('/'))
            .filter(|path| !path.is_empty())
            .map(|path| format!("/{path}"))
            .unwrap_or_default();
        let text = format!("{scheme}://{}{port}{path}", self.host);
        Url::parse(&text).map_err(|error| format!("'{text}': {error}"))
    }
}

/// What the well-known document says.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The fakts base (`{base}redeem/`, `{base}claim/`, ...), ending in `/`.
    pub base: Url,
    /// Where a person approves a device code.
    pub frontend: Url,
    /// The deployment's name.
    pub name: String,
}

#[derive(Deserialize)]
struct WellKnown {
    #[serde(default)]
    name: Option<String>,
    base_url: String,
    #[serde(default)]
    frontend_url: Option<String>,
}

/// Maps a request that got no answer to an error; a refused certificate is explained.
pub(super) fn unreachable(step: &'static str, url: &Url, source: reqwest::Error) -> LoginError {
    match explain_certificate_error(&server_of(url), &source) {
        Some(explanation) => LoginError::Tls { step, explanation },
        None => LoginError::Unreachable {
            step,
            url: url.to_string(),
            source,
        },
    }
}

/// The deployment URL as a base with a trailing slash; without a scheme, https.
pub fn deployment_url(url: &str) -> Result<Url, LoginError> {
    let trimmed = url.trim();
    let text = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("https://{trimmed}")
    };
    let mut parsed = Url::parse(&text).map_err(|source| LoginError::BadUrl {
        url: trimmed.to_string(),
        source,
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(LoginError::NotHttp {
            url: trimmed.to_string(),
        });
    }
    if !parsed.path().ends_with('/') {
        let path = format!("{}/", parsed.path());
        parsed.set_path(&path);
    }
    parsed.set_query(None);
    parsed.set_fragment(None);
    Ok(parsed)
}

/// Discovers the deployment at `url` (`GET {url}/.well-known/fakts`): where its fakts
/// endpoints are, or why `url` is not an Arkitekt deployment.
pub async fn discover(http: &Client, url: &Url) -> Result<Discovered, LoginError> {
    let step = "discovering the deployment";
    let well_known = url
        .join(".well-known/fakts")
        .map_err(|source| LoginError::BadUrl {
            url: url.to_string(),
            source,
        })?;
    let not_arkitekt = |detail: String| LoginError::NotArkitekt {
        url: url.to_string(),
        well_known: well_known.to_string(),
        detail,
    };
    let response = http
        .get(well_known.clone())
        .send()
        .await
        .map_err(|source| unreachable(step, &well_known, source))?;
    let status = response.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(LoginError::Unavailable {
            step,
            url: well_known.to_string(),
            status: status.as_u16(),
        });
    }
    if !status.is_success() {
        return Err(not_arkitekt(format!("answered HTTP {status}")));
    }
    let text = response
        .text()
        .await
        .map_err(|source| unreachable(step, &well_known, source))?;
    let document: WellKnown = serde_json::from_str(&text)
        .map_err(|error| not_arkitekt(format!("is not a fakts document ({error})")))?;
    let base = well_known
        .join(&document.base_url)
        .map_err(|error| LoginError::Malformed {
            step,
            url: well_known.to_string(),
            what: format!("`base_url` '{}' is not a URL", document.base_url),
            source: Box::new(error),
        })?;
    let base = with_slash(base);
    let frontend = document
        .frontend_url
        .as_deref()
        .and_then(|frontend| well_known.join(frontend).ok())
        .map(with_slash)
        .unwrap_or_else(|| url.clone());
    Ok(Discovered {
        base,
        frontend,
        name: document.name.unwrap_or_else(|| url.to_string()),
    })
}

fn with_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// POSTs `body` to `{base}{path}`; `Ok` with the answer when `status` is `granted`,
/// `Err(Ok(message))` when it is anything else.
async fn post(
    http: &Client,
    base: &Url,
    path: &str,
    step: &'static str,
    body: &Value,
) -> Result<Result<Value, (String, String)>, LoginError> {
    let url = base.join(path).map_err(|source| LoginError::BadUrl {
        url: base.to_string(),
        source,
    })?;
    let response = http
        .post(url.clone())
        .json(body)
        .send()
        .await
        .map_err(|source| unreachable(step, &url, source))?;
    let status = response.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(LoginError::Unavailable {
            step,
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    let text = response
        .text()
        .await
        .map_err(|source| unreachable(step, &url, source))?;
    let answer: Value = serde_json::from_str(&text).map_err(|_| LoginError::Response {
        step,
        url: url.to_string(),
        reason: format!(
            "HTTP {status}, not JSON: {}",
            text.chars().take(200).collect::<String>()
        ),
    })?;
    let state = answer
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("error")
        .to_string();
    if state == "granted" {
        return Ok(Ok(answer));
    }
    let message = ["message", "error", "detail"]
        .iter()
        .find_map(|key| answer.get(key).and_then(Value::as_str))
        .map(|message| message.chars().take(500).collect())
        .unwrap_or_else(|| format!("HTTP {status}"));
    Ok(Err((state, message)))
}

fn string_field(
    answer: &Value,
    field: &str,
    step: &'static str,
    url: &Url,
) -> Result<String, LoginError> {
    answer
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| LoginError::Response {
            step,
            url: url.to_string(),
            reason: format!("no `{field}` in the answer"),
        })
}

/// `POST {base}redeem/`: a claim token for `manifest` in exchange for a redeem token.
pub async fn redeem(
    http: &Client,
    base: &Url,
    manifest: &Manifest,
    redeem_token: &str,
) -> Result<String, LoginError> {
    let step = "redeeming the redeem token";
    match post(
        http,
        base,
        "redeem/",
        step,
        &json!({"manifest": manifest, "token": redeem_token}),
    )
    .await?
    {
        Ok(answer) => string_field(&answer, "token", step, base),
        Err((_, message)) => Err(LoginError::RedeemRefused { message }),
    }
}

/// `POST {base}start/`: a device code a person approves at `{frontend}configure/{code}`.
pub async fn start_device_code(
    http: &Client,
    base: &Url,
    manifest: &Manifest,
    expiration: Duration,
) -> Result<String, LoginError> {
    let step = "starting the device-code login";
    match post(
        http,
        base,
        "start/",
        step,
        &json!({
            "manifest": manifest,
            "expiration_time_seconds": expiration.as_secs(),
            "redirect_uris": [],
            "requested_client_kind": "development",
        }),
    )
    .await?
    {
        Ok(answer) => string_field(&answer, "code", step, base),
        Err((_, message)) => Err(LoginError::Refused { step, message }),
    }
}

/// One poll of a device code.
pub enum Challenge {
    /// Not decided yet.
    Pending,
    /// Approved: the claim token.
    Granted(String),
}

/// Asks whether the device code `code` was approved: `POST {base}challenge/`.
pub async fn challenge(http: &Client, base: &Url, code: &str) -> Result<Challenge, LoginError> {
    let step = "waiting for the login to be approved";
    match post(http, base, "challenge/", step, &json!({"code": code})).await? {
        Ok(answer) => string_field(&answer, "token", step, base).map(Challenge::Granted),
        Err((state, message)) => match state.as_str() {
            "pending" | "waiting" => Ok(Challenge::Pending),
            "denied" => Err(LoginError::Denied { message }),
            "expired" => Err(LoginError::Expired { message }),
            _ => Err(LoginError::Refused { step, message }),
        },
    }
}

/// `POST {base}claim/`: the client's configuration for a claim token.
pub async fn claim(
    http: &Client,
    base: &Url,
    claim_token: &str,
) -> Result<ClaimedConfig, LoginError> {
    let step = "claiming the client configuration";
    let secure = base.scheme() == "https";
    match post(
        http,
        base,
        "claim/",
        step,
        &json!({"token": claim_token, "secure": secure}),
    )
    .await?
    {
        Ok(mut answer) => {
            serde_json::from_value(answer["config"].take()).map_err(|error| LoginError::Malformed {
                step,
                url: base.to_string(),
                what: "the `config` is not a client configuration".into(),
                source: Box::new(error),
            })
        }
        Err((_, message)) => Err(LoginError::ClaimRefused { message }),
    }
}

/// The first alias of `instance` whose challenge answers 200 (one without a challenge is
/// taken as it is).
pub async fn choose_alias(
    http: &Client,
    key: &str,
    instance: &Instance,
) -> Result<Url, LoginError> {
    let mut tried = Vec::new();
    for alias in &instance.aliases {
        let base = match alias.base_url() {
            Ok(base) => base,
            Err(reason) => {
                tried.push(reason);
                continue;
            }
        };
        let Some(challenge) = alias.challenge.as_deref().filter(|c| !c.is_empty()) else {
            return Ok(base);
        };
        let url = with_slash(base.clone())
            .join(challenge.trim_start_matches('/'))
            .unwrap_or_else(|_| base.clone());
        match http
            .get(url.clone())
            .timeout(CHALLENGE_TIMEOUT)
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => return Ok(base),
            Ok(response) => tried.push(format!("{url} answered HTTP {}", response.status())),
            Err(error) => tried.push(match explain_certificate_error(&server_of(&url), &error) {
                Some(explanation) => explanation,
                None => format!("{url}: {error}"),
            }),
        }
    }
    if tried.is_empty() {
        tried.push("it has no aliases".into());
    }
    Err(LoginError::NoReachableAlias {
        key: key.to_string(),
        tried: tried.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_chain::ErrorChain;

    #[test]
    fn a_deployment_url_is_normalised_or_refused_with_the_reason() {
        let url = deployment_url("lab.example/arkitekt").expect("a bare host is https");
        assert_eq!(url.as_str(), "https://lab.example/arkitekt/");

        let error = deployment_url("https://lab example").expect_err("a space is no host");
        assert!(matches!(error, LoginError::BadUrl { .. }), "{error:?}");
        let said = ErrorChain(&error).to_string();
        assert!(
            said.starts_with("'https://lab example' is not a deployment URL: invalid"),
            "{said}"
        );

        let error = deployment_url("ftp://lab.example").expect_err("not HTTP");
        assert_eq!(
            error.to_string(),
            "'ftp://lab.example' is not a deployment URL: it must start with http:// or https://"
        );
    }

    #[test]
    fn a_malformed_answer_names_the_part_and_keeps_the_parsers_error_as_its_cause() {
        let parse = serde_json::from_str::<Value>("{").expect_err("not JSON");
        let parser_said = parse.to_string();
        let error = LoginError::Malformed {
            step: "getting an access token",
            url: "https://lab.example/o/token/".into(),
            what: "no access token in the answer".into(),
            source: Box::new(parse),
        };
        assert_eq!(
            error.to_string(),
            "getting an access token: unexpected answer from https://lab.example/o/token/: \
             no access token in the answer"
        );
        assert_eq!(
            ErrorChain(&error).to_string(),
            format!("{error}: {parser_said}")
        );
    }
}
