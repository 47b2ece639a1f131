//! OAuth2 client credentials: an access token for the claimed client.

use std::fmt;
use std::time::Duration;

use reqwest::{Client, Url};
use serde::Deserialize;
use tokio::time::Instant;

use super::error::LoginError;
use super::fakts::{AuthConfig, unreachable};

/// Assumed lifetime of a token whose answer gives none.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);
/// Renew this long before expiry at most (a quarter of the lifetime for short-lived tokens).
const RENEW_MARGIN: Duration = Duration::from_secs(30);

/// An access token and when to renew it. Its `Debug` never shows the token.
#[derive(Clone)]
pub struct AccessToken {
    /// The bearer token.
    pub value: String,
    /// From then on, get a new one.
    pub renew_at: Instant,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"<redacted>")
            .field("renew_at", &self.renew_at)
            .finish()
    }
}

impl AccessToken {
    /// Whether it is still good to send.
    pub fn is_fresh(&self) -> bool {
        Instant::now() < self.renew_at
    }
}

/// Why no token came.
pub enum TokenFailure {
    /// `invalid_client`: the client is gone or its secret changed; claim again.
    ClientRefused(String),
    /// Any other failure (network, TLS, a malformed answer).
    Other(LoginError),
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// `POST {auth.token_url}` with `grant_type=client_credentials`.
pub async fn fetch(
    http: &Client,
    auth: &AuthConfig,
    scopes: &[String],
) -> Result<AccessToken, TokenFailure> {
    let step = "getting an access token";
    let url = Url::parse(&auth.token_url).map_err(|error| {
        TokenFailure::Other(LoginError::Malformed {
            step,
            url: auth.token_url.clone(),
            what: "the claimed token_url is not a URL".into(),
            source: Box::new(error),
        })
    })?;
    let scope = scopes.join(" ");
    let requested = Instant::now();
    let response = http
        .post(url.clone())
        .basic_auth(&auth.client_id, Some(&auth.client_secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope.as_str()),
            ("client_id", auth.client_id.as_str()),
            ("client_secret", auth.client_secret.as_str()),
        ])
        .send()
        .await
        .map_err(|source| TokenFailure::Other(unreachable(step, &url, source)))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|source| TokenFailure::Other(unreachable(step, &url, source)))?;
    if status.is_success() {
        let answer: TokenAnswer = serde_json::from_str(&text).map_err(|error| {
            TokenFailure::Other(LoginError::Malformed {
                step,
                url: url.to_string(),
                what: "no access token in the answer".into(),
                source: Box::new(error),
            })
        })?;
        let lifetime = answer
            .expires_in
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        return Ok(AccessToken {
            value: answer.access_token,
            renew_at: requested + lifetime - RENEW_MARGIN.min(lifetime / 4),
        });
    }
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(TokenFailure::Other(LoginError::Unavailable {
            step,
            url: url.to_string(),
            status: status.as_u16(),
        }));
    }
    let Ok(error) = serde_json::from_str::<ErrorAnswer>(&text) else {
        return Err(TokenFailure::Other(LoginError::Response {
            step,
            url: url.to_string(),
            reason: format!("HTTP {status}"),
        }));
    };
    let detail = match &error.error_description {
        Some(description) => format!("{}: {description}", error.error),
        None => error.error.clone(),
    };
    Err(match error.error.as_str() {
        "invalid_client" | "unauthorized_client" => TokenFailure::ClientRefused(detail),
        "invalid_scope" => TokenFailure::Other(LoginError::ScopesRefused {
            scopes: scopes.to_vec(),
            detail,
        }),
        _ => TokenFailure::Other(LoginError::Refused {
            step,
            message: detail,
        }),
    })
}
