//! `run`'s settings and a login's, from the command line (flags and their environment
//! variables) and the config file: a value given on the command line wins over the file's,
//! lists (CA files, components) take the file's first, then the command line's.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ArkitektSection, ComponentSettings, ConfigError, FileConfig};
use crate::agent::KeepConfig;
use crate::login::{Grant, LoginSettings, Manifest, cache, manifest};
use crate::tls::{ClientTls, TlsError};

/// The agent's name when neither `--name` nor `[server] name` gives one.
pub const DEFAULT_AGENT_NAME: &str = "rekuest-host";

/// How to join an Arkitekt deployment, as the command line says (`None`: not given).
#[derive(Debug, Clone, Default)]
pub struct DeploymentOverrides {
    /// `--deployment` / `FAKTS_URL`.
    pub url: Option<String>,
    /// `--redeem-token` / `FAKTS_REDEEM_TOKEN`.
    pub redeem_token: Option<String>,
    /// `--claim-token` / `FAKTS_TOKEN`.
    pub claim_token: Option<String>,
    /// `--login-cache`.
    pub login_cache: Option<PathBuf>,
}

/// What the command line sets for `run` (`None`, `false`, empty: not given).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The deployment to join.
    pub deployment: DeploymentOverrides,
    /// `--url` / `REKUEST_URL`: a plain rekuest server.
    pub url: Option<String>,
    /// `--token` / `REKUEST_TOKEN`.
    pub token: Option<String>,
    /// `--name` / `REKUEST_AGENT_NAME`.
    pub name: Option<String>,
    /// `--force`.
    pub force: bool,
    /// `--ca-cert` files, trusted besides the file's.
    pub ca_certs: Vec<PathBuf>,
    /// `--concurrency` / `REKUEST_CONCURRENCY`.
    pub concurrency: Option<usize>,
    /// `--shutdown-grace` / `REKUEST_SHUTDOWN_GRACE`.
    pub shutdown_grace: Option<Duration>,
    /// `--metrics` / `REKUEST_HOST_METRICS`.
    pub metrics: Option<SocketAddr>,
    /// Component files served with default settings, after the file's.
    pub components: Vec<PathBuf>,
}

/// Where the agent serves.
#[derive(Debug)]
pub enum Target {
    /// A plain rekuest server with a fixed token.
    Server {
        /// Its base URL.
        url: String,
        /// The agent's token.
        token: String,
    },
    /// An Arkitekt deployment (discovery, login, renewed tokens).
    Deployment(Box<LoginSettings>),
}

/// Everything `run` needs, resolved from the command line and the config file.
#[derive(Debug)]
pub struct Settings {
    /// Where to serve.
    pub target: Target,
    /// The agent's name.
    pub name: String,
    /// Take the agent over from another host connected as it.
    pub force: bool,
    /// Certificate authorities trusted besides the system's.
    pub ca_certs: Vec<PathBuf>,
    /// Most tasks at once (`None`: the agent's default).
    pub concurrency: Option<usize>,
    /// Time running tasks get on shutdown (`None`: the agent's default).
    pub shutdown_grace: Option<Duration>,
    /// Give up reconnecting after this many failures in a row (`None`: never).
    pub max_reconnect_attempts: Option<u32>,
    /// The shelf bounds and the state file.
    pub keep: KeepConfig,
    /// Where `/metrics` and `/healthz` are served, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// The components to serve.
    pub components: Vec<ComponentSettings>,
}

/// Why the settings do not say how to serve.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A deployment and a plain server are both given.
    #[error(
        "both a deployment (--deployment, FAKTS_URL or [arkitekt] url) and a rekuest server \
         (--url, REKUEST_URL or [server] url) are given: use one"
    )]
    TwoTargets,
    /// Neither a deployment nor a plain server is given.
    #[error(
        "no deployment or server: pass --deployment URL with --redeem-token (or set FAKTS_URL \
         and FAKTS_REDEEM_TOKEN, or [arkitekt] in the config file), or a plain rekuest server \
         with --url and --token"
    )]
    NoTarget,
    /// A plain server without a token.
    #[error("no token: pass --token, set REKUEST_TOKEN, or set server.token in the config file")]
    NoToken,
    /// `--concurrency 0`.
    #[error("--concurrency must be at least 1")]
    NoConcurrency,
    /// `[arkitekt]` does not make a valid manifest.
    #[error("[arkitekt]: {0}")]
    Manifest(String),
    /// The trusted certificates could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl Settings {
    /// Resolves `run`'s settings: `overrides` from the command line over the config `file`
    /// (if any), checked.
    pub fn resolve(overrides: &Overrides, file: Option<&Path>) -> Result<Settings, SettingsError> {
        let (config, mut components, grace, keep) = match file {
            Some(path) => {
                let (config, components) = super::load(path)?;
                let grace = super::shutdown_grace(path, &config.agent)?;
                let keep = super::keep_config(path, &config.agent)?;
                super::positive(path, "agent.concurrency", config.agent.concurrency)?;
                (config, components, grace, keep)
            }
            None => (
                FileConfig::default(),
                Vec::new(),
                None,
                KeepConfig::default(),
            ),
        };
        components.extend(
            overrides
                .components
                .iter()
                .cloned()
                .map(ComponentSettings::plain),
        );
        let ca_certs = trusted_cas(&config, &overrides.ca_certs);
        let url = overrides.url.clone().or(config.server.url);
        let deployment = deployment(&overrides.deployment, &config.arkitekt, &ca_certs)?;
        let target = match (deployment, url) {
            (Some(_), Some(_)) => return Err(SettingsError::TwoTargets),
            (Some(login), None) => Target::Deployment(Box::new(login)),
            (None, None) => return Err(SettingsError::NoTarget),
            (None, Some(url)) => Target::Server {
                url,
                token: overrides
                    .token
                    .clone()
                    .or(config.server.token)
                    .ok_or(SettingsError::NoToken)?,
            },
        };
        if overrides.concurrency == Some(0) {
            return Err(SettingsError::NoConcurrency);
        }
        Ok(Settings {
            target,
            name: overrides
                .name
                .clone()
                .or(config.server.name)
                .unwrap_or_else(|| DEFAULT_AGENT_NAME.to_string()),
            force: overrides.force || config.server.force.unwrap_or(false),
            ca_certs,
            concurrency: overrides.concurrency.or(config.agent.concurrency),
            shutdown_grace: overrides.shutdown_grace.or(grace),
            max_reconnect_attempts: config.agent.max_reconnect_attempts,
            keep,
            metrics: overrides.metrics.or(config.agent.metrics),
            components,
        })
    }
}

/// The certificate authorities to trust: the file's `[server] ca_certs`, then `flags`.
pub fn trusted_cas(file: &FileConfig, flags: &[PathBuf]) -> Vec<PathBuf> {
    file.server
        .ca_certs
        .iter()
        .flatten()
        .chain(flags)
        .cloned()
        .collect()
}

/// The login to the deployment the command line or `[arkitekt]` names, if any: the grant
/// from a claim token, else a redeem token, else only a cached login.
fn deployment(
    overrides: &DeploymentOverrides,
    arkitekt: &ArkitektSection,
    ca_certs: &[PathBuf],
) -> Result<Option<LoginSettings>, SettingsError> {
    let Some(url) = overrides.url.clone().or(arkitekt.url.clone()) else {
        return Ok(None);
    };
    let grant = match (
        overrides
            .redeem_token
            .clone()
            .or(arkitekt.redeem_token.clone()),
        overrides
            .claim_token
            .clone()
            .or(arkitekt.claim_token.clone()),
    ) {
        (_, Some(claim_token)) => Grant::ClaimToken(claim_token),
        (Some(redeem_token), None) => Grant::Redeem(redeem_token),
        (None, None) => Grant::CachedOnly,
    };
    login_settings(
        url,
        grant,
        overrides.login_cache.clone(),
        arkitekt,
        ca_certs,
    )
    .map(Some)
}

/// The settings of a login to the deployment at `url` with `grant`: cached in `login_cache`,
/// else where `[arkitekt] cache` says; the manifest `[arkitekt]` describes; trusting
/// `ca_certs` besides the system's.
pub fn login_settings(
    url: String,
    grant: Grant,
    login_cache: Option<PathBuf>,
    arkitekt: &ArkitektSection,
    ca_certs: &[PathBuf],
) -> Result<LoginSettings, SettingsError> {
    let cache_file = login_cache.or(arkitekt.cache.clone());
    Ok(LoginSettings {
        url,
        manifest: manifest_of(arkitekt, cache_file.as_deref())?,
        grant,
        cache_file,
        tls: ClientTls::new(ca_certs)?,
    })
}

/// The manifest `[arkitekt]` describes (defaults derived from this program and machine; the
/// node id kept next to the login cache).
fn manifest_of(
    arkitekt: &ArkitektSection,
    cache_file: Option<&Path>,
) -> Result<Manifest, SettingsError> {
    let node_id = match &arkitekt.node_id {
        Some(node_id) => node_id.clone(),
        None => {
            let state_dir = cache_file
                .and_then(|file| file.parent().map(PathBuf::from))
                .or_else(cache::default_dir);
            manifest::node_id(state_dir.as_deref())
        }
    };
    Manifest::new(
        arkitekt.identifier.clone(),
        arkitekt.version.clone(),
        arkitekt.scopes.clone(),
        arkitekt.requirements.clone(),
        node_id,
    )
    .map_err(SettingsError::Manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config file with `text` in a fresh directory.
    fn file(text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rekuest-settings-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("rekuest-host.toml");
        std::fs::write(&file, text).expect("write");
        file
    }

    fn server(url: &str, token: &str) -> Overrides {
        Overrides {
            url: Some(url.into()),
            token: Some(token.into()),
            ..Overrides::default()
        }
    }

    /// The URL and token of a plain-server target.
    fn server_of(target: &Target) -> (&str, &str) {
        match target {
            Target::Server { url, token } => (url, token),
            other => panic!("not a plain server: {other:?}"),
        }
    }

    const FILE: &str = r#"
        [server]
        url = "http://file.example"
        token = "file-token"
        name = "from-file"
        ca_certs = ["file-ca.pem"]

        [agent]
        concurrency = 3
        shutdown_grace = "7s"
        metrics = "127.0.0.1:9001"
        max_reconnect_attempts = 4

        [[component]]
        path = "file.wasm"
    "#;

    #[test]
    fn the_command_line_wins_over_the_file() {
        let path = file(FILE);
        let overrides = Overrides {
            name: Some("from-flag".into()),
            ca_certs: vec!["flag-ca.pem".into()],
            concurrency: Some(9),
            shutdown_grace: Some(Duration::from_secs(1)),
            metrics: Some("127.0.0.1:9002".parse().expect("addr")),
            components: vec!["flag.wasm".into()],
            ..server("http://flag.example", "flag-token")
        };
        let settings = Settings::resolve(&overrides, Some(&path)).expect("resolves");
        let base = path.parent().expect("dir");
        assert_eq!(
            server_of(&settings.target),
            ("http://flag.example", "flag-token")
        );
        assert_eq!(settings.name, "from-flag");
        assert_eq!(settings.concurrency, Some(9));
        assert_eq!(settings.shutdown_grace, Some(Duration::from_secs(1)));
        assert_eq!(settings.metrics, overrides.metrics);
        // Lists: the file's first, then the command line's.
        assert_eq!(
            settings.ca_certs,
            [base.join("file-ca.pem"), PathBuf::from("flag-ca.pem")]
        );
        let components: Vec<&Path> = settings
            .components
            .iter()
            .map(|c| c.path.as_path())
            .collect();
        assert_eq!(
            components,
            [base.join("file.wasm").as_path(), Path::new("flag.wasm")]
        );
        // Only in the file.
        assert_eq!(settings.max_reconnect_attempts, Some(4));
    }

    #[test]
    fn the_file_fills_in_what_the_command_line_leaves_out() {
        let path = file(FILE);
        let settings = Settings::resolve(&Overrides::default(), Some(&path)).expect("resolves");
        assert_eq!(
            server_of(&settings.target),
            ("http://file.example", "file-token")
        );
        assert_eq!(settings.name, "from-file");
        assert_eq!(settings.concurrency, Some(3));
        assert_eq!(settings.shutdown_grace, Some(Duration::from_secs(7)));
        assert_eq!(
            settings.metrics,
            Some("127.0.0.1:9001".parse().expect("addr"))
        );
    }

    #[test]
    fn without_a_file_the_defaults_apply() {
        let settings = Settings::resolve(&server("http://s.example", "t"), None).expect("resolves");
        assert_eq!(settings.name, DEFAULT_AGENT_NAME);
        assert_eq!(settings.concurrency, None);
        assert_eq!(settings.shutdown_grace, None);
        assert!(!settings.force);
        assert!(settings.components.is_empty());
    }

    #[test]
    fn a_deployment_takes_the_claim_token_over_the_redeem_token_and_flags_over_the_file() {
        let path = file(
            "[arkitekt]\nurl = \"lab.file.example\"\nredeem_token = \"file-redeem\"\ncache = \"login.json\"\n",
        );
        let from_file = Settings::resolve(&Overrides::default(), Some(&path)).expect("resolves");
        let Target::Deployment(login) = from_file.target else {
            panic!("a deployment")
        };
        assert_eq!(login.url, "lab.file.example");
        assert!(matches!(&login.grant, Grant::Redeem(token) if token == "file-redeem"));
        assert_eq!(
            login.cache_file,
            Some(path.parent().expect("dir").join("login.json"))
        );
        let overrides = Overrides {
            deployment: DeploymentOverrides {
                url: Some("lab.flag.example".into()),
                claim_token: Some("flag-claim".into()),
                login_cache: Some("flag-login.json".into()),
                ..DeploymentOverrides::default()
            },
            ..Overrides::default()
        };
        let Target::Deployment(login) = Settings::resolve(&overrides, Some(&path))
            .expect("resolves")
            .target
        else {
            panic!("a deployment")
        };
        assert_eq!(login.url, "lab.flag.example");
        assert!(matches!(&login.grant, Grant::ClaimToken(token) if token == "flag-claim"));
        assert_eq!(login.cache_file, Some(PathBuf::from("flag-login.json")));
    }

    #[test]
    fn says_what_is_missing_or_contradictory() {
        let refused = |overrides: &Overrides, file: Option<&Path>| {
            Settings::resolve(overrides, file).expect_err("refused")
        };
        assert!(matches!(
            refused(&Overrides::default(), None),
            SettingsError::NoTarget
        ));
        let no_token = Overrides {
            url: Some("http://s.example".into()),
            ..Overrides::default()
        };
        assert!(matches!(refused(&no_token, None), SettingsError::NoToken));
        let both = Overrides {
            deployment: DeploymentOverrides {
                url: Some("lab.example".into()),
                ..DeploymentOverrides::default()
            },
            ..server("http://s.example", "t")
        };
        assert!(matches!(refused(&both, None), SettingsError::TwoTargets));
        let none_at_once = Overrides {
            concurrency: Some(0),
            ..server("http://s.example", "t")
        };
        assert!(matches!(
            refused(&none_at_once, None),
            SettingsError::NoConcurrency
        ));
        let zero_in_file = file("[agent]\nconcurrency = 0\n");
        let error = refused(&server("http://s.example", "t"), Some(&zero_in_file)).to_string();
        assert!(
            error.contains("agent.concurrency") && error.contains("at least 1"),
            "{error}"
        );
    }
}
