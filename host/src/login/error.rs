//! Why joining a deployment failed, in words a person can act on. No variant ever carries a
//! token, a client secret or a claim token.

use std::path::PathBuf;

/// Why discovery, the claim, the cache or an access token failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// A URL does not parse (the deployment's, or one made from its answers).
    #[error("'{url}' is not a deployment URL")]
    BadUrl {
        /// What was given.
        url: String,
        /// The URL parser's error.
        source: url::ParseError,
    },
    /// The deployment URL is not an HTTP one.
    #[error("'{url}' is not a deployment URL: it must start with http:// or https://")]
    NotHttp {
        /// What was given.
        url: String,
    },
    /// No answer (DNS, connection refused, timeout).
    #[error("{step}: cannot reach {url}")]
    Unreachable {
        /// What was being attempted.
        step: &'static str,
        /// The URL.
        url: String,
        /// The HTTP client's error.
        source: reqwest::Error,
    },
    /// The deployment answered with a server error (down, starting, or overloaded).
    #[error("{step}: {url} answered HTTP {status} (the deployment is down or starting)")]
    Unavailable {
        /// What was being attempted.
        step: &'static str,
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The server's TLS certificate was refused.
    #[error("{step}: {explanation}")]
    Tls {
        /// What was being attempted.
        step: &'static str,
        /// Which server, why, and the fix.
        explanation: String,
    },
    /// No fakts document where an Arkitekt deployment has one.
    #[error(
        "{url} is not an Arkitekt deployment: {well_known} {detail} (give the address of the \
         deployment itself, e.g. https://lab.example, not of one of its services)"
    )]
    NotArkitekt {
        /// The deployment URL as given.
        url: String,
        /// The well-known URL tried.
        well_known: String,
        /// What came back instead.
        detail: String,
    },
    /// The redeem token was refused.
    #[error("the deployment refused the redeem token: {message}{}", redeem_hint(.message))]
    RedeemRefused {
        /// The deployment's message.
        message: String,
    },
    /// The person declined the device code.
    #[error("the login was denied on the deployment{}", detail_suffix(.message))]
    Denied {
        /// The deployment's message, if any.
        message: String,
    },
    /// The device code expired before anyone approved it.
    #[error(
        "the login code expired before it was approved; run `rekuest-host login` again{}",
        detail_suffix(.message)
    )]
    Expired {
        /// The deployment's message, if any.
        message: String,
    },
    /// The claim token was refused (revoked client, or a cache from another deployment).
    #[error(
        "the deployment refused this host's claim token: {message}; log in again (a new redeem \
         token, or `rekuest-host login`)"
    )]
    ClaimRefused {
        /// The deployment's message.
        message: String,
    },
    /// A step answered with `status: error` (or another refusal).
    #[error("{step}: the deployment refused: {message}")]
    Refused {
        /// What was being attempted.
        step: &'static str,
        /// The deployment's message.
        message: String,
    },
    /// An answer that is not what the protocol says.
    #[error("{step}: unexpected answer from {url}: {reason}")]
    Response {
        /// What was being attempted.
        step: &'static str,
        /// The URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// An answer with a part that does not parse (a URL, a JSON document): which part, and
    /// the parser's error as the source.
    #[error("{step}: unexpected answer from {url}: {what}")]
    Malformed {
        /// What was being attempted.
        step: &'static str,
        /// The URL that answered.
        url: String,
        /// Which part of the answer is wrong, e.g. "no access token in the answer".
        what: String,
        /// The parser's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The HTTP client could not be set up (its TLS configuration, usually).
    #[error("cannot set up the HTTP client for logging in")]
    HttpClient(#[source] reqwest::Error),
    /// The claimed configuration names no instance of a required service.
    #[error(
        "the deployment gave this client no `{key}` service ({service}); it offers: {offered} \
         (is the service installed on the deployment?)"
    )]
    MissingService {
        /// The requirement key.
        key: String,
        /// The service identifier.
        service: String,
        /// The keys it did offer.
        offered: String,
    },
    /// No alias of a service answered its challenge.
    #[error("no address of the `{key}` service answered: {tried}")]
    NoReachableAlias {
        /// The requirement key.
        key: String,
        /// Each alias tried and what happened.
        tried: String,
    },
    /// The token endpoint refused the requested scopes.
    #[error(
        "the deployment refused the scopes {scopes:?}: {detail} (set `scopes` in [arkitekt] to \
         scopes this client may have)"
    )]
    ScopesRefused {
        /// What was asked for.
        scopes: Vec<String>,
        /// The server's error description.
        detail: String,
    },
    /// The token endpoint refused the client, and claiming again did not help.
    #[error(
        "the deployment refused this host's client credentials even after claiming them \
         again ({detail}); log in again (a new redeem token, or `rekuest-host login`)"
    )]
    ClientRefused {
        /// The server's error.
        detail: String,
    },
    /// Nothing to log in with.
    #[error(
        "not logged in to {url}: pass a redeem token (--redeem-token, FAKTS_REDEEM_TOKEN or \
         `redeem_token` in [arkitekt]), a claim token (FAKTS_TOKEN), or run `rekuest-host login \
         {url}` once"
    )]
    NotLoggedIn {
        /// The deployment URL.
        url: String,
    },
    /// The login cache could not be read or written.
    #[error("the login cache {}: {doing}", path.display())]
    Cache {
        /// The file.
        path: PathBuf,
        /// What failed, e.g. `cannot write it`.
        doing: String,
        /// The IO or encoding error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl LoginError {
    /// Whether trying again later may work (the deployment or the rekuest service is down,
    /// starting or overloaded), as opposed to a refusal that needs a person.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            LoginError::Unreachable { .. }
                | LoginError::Unavailable { .. }
                | LoginError::NoReachableAlias { .. }
        )
    }
}

fn detail_suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(" ({message})")
    }
}

fn redeem_hint(message: &str) -> &'static str {
    if message.to_ascii_lowercase().contains("manifest") {
        " (the redeem token was used before with a different manifest: restore the previous \
         `identifier`/`version` in [arkitekt], or ask the admin to allow re-redeeming)"
    } else {
        " (ask the deployment's admin for a valid redeem token)"
    }
}
