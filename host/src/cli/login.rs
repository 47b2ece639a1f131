//! Joining an Arkitekt deployment from the command line: the deployment flags of `run`,
//! `rekuest-host login URL` (a device code a person approves) and `rekuest-host logout URL`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use rekuest_host::agent::{Backoff, BackoffConfig};
use rekuest_host::config::{DeploymentOverrides, login_settings, parse_duration, trusted_cas};
use rekuest_host::error_chain::ErrorChain;
use rekuest_host::login::{self, Grant, LoginError, LoginSettings, Session, cache, fakts};
use rekuest_host::protocol::Endpoints;
use rekuest_host::text::OneLine;

/// How to join a deployment (flags, then the environment names the Python apps use).
#[derive(Debug, Clone, Default, Args)]
pub struct DeploymentArgs {
    /// Join the Arkitekt deployment at this URL (fakts discovery) instead of --url/--token.
    #[arg(long, env = "FAKTS_URL", value_name = "URL")]
    pub deployment: Option<String>,
    /// Redeem token for the deployment (used once; the login is cached).
    #[arg(long, env = "FAKTS_REDEEM_TOKEN", hide_env_values = true)]
    pub redeem_token: Option<String>,
    /// Claim token for the deployment, used as it is.
    #[arg(long, env = "FAKTS_TOKEN", hide_env_values = true)]
    pub claim_token: Option<String>,
    /// Without a cached login or a token: log in interactively (a device code to approve).
    #[arg(long)]
    pub login: bool,
    /// The login cache file (default ~/.config/rekuest-host/logins/HOST-DIGEST.json).
    #[arg(long, value_name = "FILE")]
    pub login_cache: Option<PathBuf>,
}

impl DeploymentArgs {
    /// What these flags set, over the config file's `[arkitekt]`.
    pub fn overrides(&self) -> DeploymentOverrides {
        DeploymentOverrides {
            url: self.deployment.clone(),
            redeem_token: self.redeem_token.clone(),
            claim_token: self.claim_token.clone(),
            login_cache: self.login_cache.clone(),
        }
    }
}

/// Logs in as `settings` says; with `interactive`, a missing login starts a device code.
async fn open(settings: LoginSettings, interactive: bool) -> Result<Session, LoginError> {
    if !interactive {
        return Session::open(settings).await;
    }
    match Session::open(settings.clone()).await {
        Err(LoginError::NotLoggedIn { .. }) => {
            let mut settings = settings;
            settings.grant = device_code();
            Session::open(settings).await
        }
        other => other,
    }
}

/// Logs in and finds the rekuest service, retrying with `backoff` while the deployment is
/// unreachable, down or starting (a refusal stops at once).
pub async fn connect(
    settings: LoginSettings,
    interactive: bool,
    backoff: BackoffConfig,
) -> anyhow::Result<(Endpoints, Session)> {
    let mut backoff = Backoff::new(backoff);
    let mut session = None;
    loop {
        let attempt = async {
            let opened = match session.take() {
                Some(opened) => opened,
                None => open(settings.clone(), interactive).await?,
            };
            match opened.rekuest_endpoints().await {
                Ok(endpoints) => Ok((endpoints, opened)),
                Err(error) => {
                    session = Some(opened);
                    Err(error)
                }
            }
        };
        let error = match attempt.await {
            Ok(connected) => return Ok(connected),
            Err(error) if error.is_transient() => error,
            Err(error) => return Err(error.into()),
        };
        let Some(delay) = backoff.next_delay() else {
            return Err(error.into());
        };
        tracing::warn!("{}; trying again in {delay:.1?}", ErrorChain(&error));
        tokio::time::sleep(delay).await;
    }
}

fn device_code() -> Grant {
    Grant::DeviceCode {
        expiration: DEVICE_CODE_LIFETIME,
        show: |page, code| {
            eprintln!(
                "To log this host in, open {} and approve the code {}\nwaiting for approval...",
                OneLine(page.as_str()),
                OneLine(code)
            );
        },
    }
}

/// How long a device code may wait for approval.
const DEVICE_CODE_LIFETIME: Duration = Duration::from_secs(300);

/// Arguments of `login` and `logout`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The deployment URL.
    #[arg(env = "FAKTS_URL")]
    pub url: String,
    /// Take the manifest ([arkitekt] identifier, version, scopes, ...) and the cache place
    /// from this config file, so `run` with it finds this login.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The login cache file.
    #[arg(long, value_name = "FILE")]
    pub login_cache: Option<PathBuf>,
    /// Also trust the certificate authorities in this PEM file (repeatable).
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
    /// How long the code may wait for approval.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub timeout: Duration,
}

impl LoginArgs {
    fn settings(&self, grant: Grant) -> anyhow::Result<LoginSettings> {
        let file = match &self.config {
            Some(path) => rekuest_host::config::load(path)?.0,
            None => rekuest_host::config::FileConfig::default(),
        };
        Ok(login_settings(
            self.url.clone(),
            grant,
            self.login_cache.clone(),
            &file.arkitekt,
            &trusted_cas(&file, &self.ca_certs),
        )?)
    }
}

/// `rekuest-host login URL`: a device code, approved by a person, then the login cached.
pub async fn login(args: &LoginArgs) -> anyhow::Result<ExitCode> {
    let mut grant = device_code();
    if let Grant::DeviceCode { expiration, .. } = &mut grant {
        *expiration = args.timeout;
    }
    let session = Session::open(args.settings(grant)?).await?;
    let endpoints = session.rekuest_endpoints().await?;
    session.current_token().await?;
    eprintln!(
        "logged in to {} as client {}; rekuest at {}{}",
        OneLine(session.deployment().as_str()),
        OneLine(&session.client_id()),
        OneLine(endpoints.base.as_str()),
        match session.cache_file() {
            Some(path) => format!("; kept in {}", path.display()),
            None => "; not kept (no home directory: pass --login-cache)".to_string(),
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `rekuest-host logout URL`: forgets the cached login.
pub fn logout(args: &LoginArgs) -> anyhow::Result<ExitCode> {
    let settings = args.settings(Grant::CachedOnly)?;
    let deployment = fakts::deployment_url(&settings.url)?;
    let Some(path) = login::cache_file(settings.cache_file.as_ref(), &deployment) else {
        anyhow::bail!("no login cache place: pass --login-cache");
    };
    if cache::forget(&path)? {
        eprintln!("forgot the login to {deployment} ({})", path.display());
    } else {
        eprintln!("no login to {deployment} was kept ({})", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
