//! Joining an Arkitekt deployment the way its Python apps do ("fakts"): the well-known
//! document, a client obtained once (a redeem token, a device code a person approves, or a
//! claim token), the claimed configuration kept on disk, and OAuth2 client-credentials access
//! tokens renewed before they expire and after a refusal. [`crate::agent::Credentials`] hands
//! the current token to everything that sends one.

pub mod cache;
mod error;
pub mod fakts;
pub mod manifest;
mod oauth;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Client, Url};
use tokio::sync::Mutex;

pub use error::LoginError;
pub use fakts::{Alias, AuthConfig, ClaimedConfig, Instance};
pub use manifest::{Manifest, REKUEST_KEY, REKUEST_SERVICE, Requirement};
pub use oauth::AccessToken;

use crate::protocol::Endpoints;
use crate::tls::ClientTls;
use cache::CachedLogin;
use fakts::Challenge;
use oauth::TokenFailure;

/// How long one request to the deployment may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Between two polls of a device code.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How to get a client when there is no usable cached login.
#[derive(Debug, Clone)]
pub enum Grant {
    /// Only a cached login will do.
    CachedOnly,
    /// Redeem this redeem token (headless services).
    Redeem(String),
    /// Use this claim token (`FAKTS_TOKEN`) as it is.
    ClaimToken(String),
    /// Ask a person to approve a device code; `show` is given the page to open and the code.
    /// Always logs in afresh, even with a cached login.
    DeviceCode {
        /// How long the code stays valid.
        expiration: Duration,
        /// Tells the person where to approve it.
        show: fn(&Url, &str),
    },
}

/// Where and as what to log in.
#[derive(Debug, Clone)]
pub struct LoginSettings {
    /// The deployment URL (without a scheme: https, then http).
    pub url: String,
    /// This host's self-description.
    pub manifest: Manifest,
    /// How to get a client without a cached login.
    pub grant: Grant,
    /// The cache file (`None`: [`cache::default_dir`] and [`cache::file_for`]; no cache when
    /// there is no home directory).
    pub cache_file: Option<PathBuf>,
    /// Trusted certificate authorities.
    pub tls: ClientTls,
}

/// One service instance of the claim, for outbound calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// The requirement key (`rekuest`, `mikro`, ...).
    pub key: String,
    /// The service identifier (`live.arkitekt.rekuest`).
    pub service: String,
    /// Base URLs of its aliases, in the deployment's order.
    pub base_urls: Vec<Url>,
}

/// A logged-in client of one deployment: hands out current access tokens.
pub struct Session {
    http: Client,
    deployment: Url,
    base: Url,
    claim_token: String,
    manifest: Manifest,
    cache_file: Option<PathBuf>,
    config: std::sync::Mutex<ClaimedConfig>,
    token: Mutex<Option<AccessToken>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("deployment", &self.deployment.as_str())
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// The HTTP client for everything login does.
pub fn http_client(tls: &ClientTls) -> Result<Client, LoginError> {
    Client::builder()
        .use_preconfigured_tls(tls.rustls_config())
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("rekuest-host/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(LoginError::HttpClient)
}

/// The cache file for `settings` (explicit, else the default place).
pub fn cache_file(settings_file: Option<&PathBuf>, deployment: &Url) -> Option<PathBuf> {
    settings_file
        .cloned()
        .or_else(|| cache::default_dir().map(|dir| cache::file_for(&dir, deployment.as_str())))
}

impl Session {
    /// Logs in: a cached login made for this deployment and manifest, else discovery, a claim
    /// token by `settings.grant`, the claim, and the cache written.
    pub async fn open(settings: LoginSettings) -> Result<Self, LoginError> {
        let http = http_client(&settings.tls)?;
        let deployment = fakts::deployment_url(&settings.url)?;
        let cache_file = cache_file(settings.cache_file.as_ref(), &deployment);
        let digest = settings.manifest.digest();
        let fresh = matches!(settings.grant, Grant::DeviceCode { .. });
        let cached = match &cache_file {
            Some(path) if !fresh => cache::load(path, deployment.as_str(), &digest)?,
            _ => None,
        };
        let cached = cached.filter(|cached| match &settings.grant {
            // An explicitly given claim token wins over another one in the cache.
            Grant::ClaimToken(token) => cached.claim_token == *token,
            _ => true,
        });
        if let Some(cached) = cached {
            tracing::info!("using the cached login for {deployment}");
            let base = Url::parse(&cached.base_url).map_err(|error| LoginError::Cache {
                path: cache_file.clone().unwrap_or_default(),
                doing: "its base_url is not a URL".into(),
                source: error.into(),
            })?;
            return Ok(Session {
                http,
                deployment,
                base,
                claim_token: cached.claim_token,
                manifest: settings.manifest,
                cache_file,
                config: std::sync::Mutex::new(cached.config),
                token: Mutex::new(None),
            });
        }
        let (deployment, discovered) = discover(&http, &settings.url, deployment).await?;
        let claim_token = match settings.grant {
            Grant::CachedOnly => {
                return Err(LoginError::NotLoggedIn {
                    url: settings.url.clone(),
                });
            }
            Grant::Redeem(redeem_token) => {
                fakts::redeem(&http, &discovered.base, &settings.manifest, &redeem_token).await?
            }
            Grant::ClaimToken(token) => token,
            Grant::DeviceCode { expiration, show } => {
                device_code(&http, &discovered, &settings.manifest, expiration, show).await?
            }
        };
        let config = fakts::claim(&http, &discovered.base, &claim_token).await?;
        let session = Session {
            http,
            deployment,
            base: discovered.base,
            claim_token,
            manifest: settings.manifest,
            cache_file: cache_file.clone(),
            config: std::sync::Mutex::new(config),
            token: Mutex::new(None),
        };
        session.instance(REKUEST_KEY)?;
        session.store()?;
        tracing::info!("logged in to {} ({})", session.deployment, discovered.name);
        Ok(session)
    }

    /// The deployment URL.
    pub fn deployment(&self) -> &Url {
        &self.deployment
    }

    /// Where the login is kept (`None`: not kept).
    pub fn cache_file(&self) -> Option<&PathBuf> {
        self.cache_file.as_ref()
    }

    /// The claimed client id.
    pub fn client_id(&self) -> String {
        self.config().auth.client_id.clone()
    }

    fn config(&self) -> std::sync::MutexGuard<'_, ClaimedConfig> {
        // A panic while holding this lock leaves a complete value behind.
        self.config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn store(&self) -> Result<(), LoginError> {
        let Some(path) = &self.cache_file else {
            return Ok(());
        };
        cache::store(
            path,
            &CachedLogin {
                deployment: self.deployment.to_string(),
                manifest: self.manifest.digest(),
                base_url: self.base.to_string(),
                claim_token: self.claim_token.clone(),
                config: self.config().clone(),
            },
        )
    }

    fn instance(&self, key: &str) -> Result<Instance, LoginError> {
        let config = self.config();
        config
            .instances
            .get(key)
            .cloned()
            .ok_or_else(|| LoginError::MissingService {
                key: key.to_string(),
                service: self
                    .manifest
                    .requirements
                    .iter()
                    .find(|requirement| requirement.key == key)
                    .map_or_else(String::new, |requirement| requirement.service.clone()),
                offered: if config.instances.is_empty() {
                    "nothing".to_string()
                } else {
                    config
                        .instances
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
    }

    /// The rekuest endpoints: GraphQL and the agent socket of the first alias that answers.
    pub async fn rekuest_endpoints(&self) -> Result<Endpoints, LoginError> {
        let instance = self.instance(REKUEST_KEY)?;
        let base = fakts::choose_alias(&self.http, REKUEST_KEY, &instance).await?;
        Endpoints::from_base(base.as_str()).map_err(|error| LoginError::Malformed {
            step: "choosing the rekuest address",
            url: base.to_string(),
            what: "the rekuest service's address is unusable".into(),
            source: Box::new(error),
        })
    }

    /// Every service instance of the claim.
    pub fn services(&self) -> Vec<Service> {
        self.config()
            .instances
            .iter()
            .map(|(key, instance)| Service {
                key: key.clone(),
                service: instance.service.clone(),
                base_urls: instance
                    .aliases
                    .iter()
                    .filter_map(|alias| alias.base_url().ok())
                    .collect(),
            })
            .collect()
    }

    /// A token that is not about to expire (fetched if needed).
    pub async fn current_token(&self) -> Result<String, LoginError> {
        let mut token = self.token.lock().await;
        if let Some(current) = token.as_ref().filter(|current| current.is_fresh()) {
            return Ok(current.value.clone());
        }
        let fresh = self.fetch().await?;
        let value = fresh.value.clone();
        *token = Some(fresh);
        Ok(value)
    }

    /// After `rejected` was refused: a new token, unless another caller already replaced it.
    pub async fn renew(&self, rejected: &str) -> Result<String, LoginError> {
        let mut token = self.token.lock().await;
        if let Some(current) = token
            .as_ref()
            .filter(|current| current.value != rejected && current.is_fresh())
        {
            return Ok(current.value.clone());
        }
        tracing::info!("the access token was refused; getting a new one");
        let fresh = self.fetch().await?;
        let value = fresh.value.clone();
        *token = Some(fresh);
        Ok(value)
    }

    /// Client credentials; when the client is refused, claims again once and retries.
    async fn fetch(&self) -> Result<AccessToken, LoginError> {
        let (auth, scopes) = self.auth();
        match oauth::fetch(&self.http, &auth, &scopes).await {
            Ok(token) => return Ok(token),
            Err(TokenFailure::Other(error)) => return Err(error),
            Err(TokenFailure::ClientRefused(detail)) => {
                tracing::warn!(
                    "the deployment refused this host's client ({detail}); claiming its \
                     configuration again"
                );
            }
        }
        let config = fakts::claim(&self.http, &self.base, &self.claim_token).await?;
        *self.config() = config;
        self.store()?;
        let (auth, scopes) = self.auth();
        match oauth::fetch(&self.http, &auth, &scopes).await {
            Ok(token) => Ok(token),
            Err(TokenFailure::Other(error)) => Err(error),
            Err(TokenFailure::ClientRefused(detail)) => Err(LoginError::ClientRefused { detail }),
        }
    }

    fn auth(&self) -> (AuthConfig, Vec<String>) {
        let config = self.config();
        let scopes = if config.auth.scopes.is_empty() {
            self.manifest.scopes.clone()
        } else {
            config.auth.scopes.clone()
        };
        (config.auth.clone(), scopes)
    }
}

/// The well-known document; a URL given without a scheme is tried with https, then http.
async fn discover(
    http: &Client,
    given: &str,
    deployment: Url,
) -> Result<(Url, fakts::Discovered), LoginError> {
    match fakts::discover(http, &deployment).await {
        Ok(discovered) => Ok((deployment, discovered)),
        Err(error) if !given.contains("://") => {
            let mut plain = deployment.clone();
            if plain.set_scheme("http").is_err() {
                return Err(error);
            }
            match fakts::discover(http, &plain).await {
                Ok(discovered) => Ok((plain, discovered)),
                Err(_) => Err(error),
            }
        }
        Err(error) => Err(error),
    }
}

async fn device_code(
    http: &Client,
    discovered: &fakts::Discovered,
    manifest: &Manifest,
    expiration: Duration,
    show: fn(&Url, &str),
) -> Result<String, LoginError> {
    let code = fakts::start_device_code(http, &discovered.base, manifest, expiration).await?;
    let page = discovered
        .frontend
        .join(&format!("configure/{code}"))
        .unwrap_or_else(|_| discovered.frontend.clone());
    show(&page, &code);
    let deadline = tokio::time::Instant::now() + expiration;
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        match fakts::challenge(http, &discovered.base, &code).await? {
            Challenge::Granted(token) => return Ok(token),
            Challenge::Pending if tokio::time::Instant::now() >= deadline => {
                return Err(LoginError::Expired {
                    message: String::new(),
                });
            }
            Challenge::Pending => {}
        }
    }
}
