//! The `rekuest-host.toml` file: server, agent behaviour, and the components to serve with
//! their limits and grants. Flags and `REKUEST_*` environment variables override it.
//!
//! ```toml
//! [server]
//! url = "https://lab.example/rekuest"
//! token = "..."
//! name = "microscope-1"
//!
//! # Or, instead of [server] url/token: join an Arkitekt deployment (see `login`).
//! [arkitekt]
//! url = "https://lab.example"
//! redeem_token = "..."      # once; the login is cached afterwards
//!
//! [agent]
//! concurrency = 8
//! shutdown_grace = "30s"
//! shelf_bytes = "256MiB"    # memory shelves: all drawers together
//! shelf_drawers = 1024
//! state_file = "states.json" # agent states survive a restart
//! metrics = "127.0.0.1:9464"  # /metrics and /healthz
//! log_format = "json"         # or "text"
//!
//! [[component]]
//! path = "math.wasm"        # relative to this file
//! memory = "64MiB"
//! timeout = "60s"
//! fuel = 10_000_000_000
//! concurrency = 4
//! open_files = 256          # per task; host_resources = 1024 likewise
//! dirs = [{ host = "/srv/data", guest = "/data", writable = false }]
//! env = { MODE = "fast" }
//! pass_env = ["HOME"]
//! http = ["https://*.lab.example", { origin = "https://mikro.lab.example", service = true }]
//! http_limits = { response_bytes = "16MiB", total_bytes = "256MiB", timeout = "30s", concurrency = 8 }
//!
//! cancel_grace = "3s"       # after a CANCEL, time to see is_cancelled() and end cleanly
//!
//! [component.actions.add]
//! timeout = "5s"
//! concurrency = 1
//! http = []                 # this action reaches nothing
//! ```

mod settings;
mod units;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::runtime::http::{HttpGrant, HttpLimits, HttpPolicy};
use crate::runtime::limits::{
    MAX_RESOURCE_CAP, MIN_HOST_RESOURCES, check_memory_limit, check_timeout,
};

pub use settings::{
    DEFAULT_AGENT_NAME, DeploymentOverrides, Overrides, Settings, SettingsError, Target,
    login_settings, trusted_cas,
};
pub use units::{parse_bytes, parse_duration, parse_memory_limit, parse_timeout};

use crate::runtime::{DirGrant, HostResourceCaps, Limits, SandboxPolicy};

/// Why the configuration is unusable: which file, which key, why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read it")]
    Read {
        /// The configuration file.
        file: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type.
    #[error("{file}: cannot parse it")]
    Parse {
        /// The configuration file.
        file: PathBuf,
        /// The parser's error (with line, column and key).
        source: toml::de::Error,
    },
    /// A value that parsed but is not acceptable.
    #[error("{file}: `{key}`: {reason}")]
    Invalid {
        /// The file (or `command line`).
        file: PathBuf,
        /// The key, e.g. `component[0].memory`.
        key: String,
        /// What is wrong with the value and what is accepted instead.
        reason: String,
    },
}

/// A size: bytes, or text in binary units like `64MiB` (`64MB` is refused as ambiguous).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Size {
    /// A number of bytes, e.g. `67108864`.
    Bytes(u64),
    /// `64MiB`, `512KiB`, `1GiB`.
    Text(String),
}

/// A duration: seconds, or text like `10s`, `250ms`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Span {
    /// Whole seconds, e.g. `60`.
    Seconds(u64),
    /// `10s`, `250ms`, `2m`.
    Text(String),
}

/// The `[server]` table: which rekuest server to serve and as whom.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Base URL of the deployment.
    pub url: Option<String>,
    /// The agent token (a fixed token instead of logging in; see `[arkitekt]`).
    pub token: Option<String>,
    /// The name the agent registers under (shown to callers).
    pub name: Option<String>,
    /// Take the agent over from another live connection.
    pub force: Option<bool>,
    /// PEM files of certificate authorities to trust besides the system's (relative to the
    /// config file).
    pub ca_certs: Option<Vec<PathBuf>>,
}

/// `[arkitekt]`: join a deployment by its URL (fakts) instead of `[server]` url and token.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArkitektSection {
    /// The deployment URL, e.g. `https://lab.example`.
    pub url: Option<String>,
    /// A redeem token the deployment's admin created (used once; the login is cached).
    pub redeem_token: Option<String>,
    /// A claim token (as `FAKTS_TOKEN`).
    pub claim_token: Option<String>,
    /// The manifest's identifier (default `rekuest-host`).
    pub identifier: Option<String>,
    /// The manifest's version (default this program's version).
    pub version: Option<String>,
    /// OAuth2 scopes to ask for (default `["openid"]`).
    pub scopes: Option<Vec<String>>,
    /// This machine's node id (default: derived from the machine id).
    pub node_id: Option<String>,
    /// Services needed besides rekuest, e.g. `[{ key = "mikro", service = "live.arkitekt.mikro" }]`.
    #[serde(default)]
    pub requirements: Vec<crate::login::Requirement>,
    /// Where the login is cached (relative to the config file).
    pub cache: Option<PathBuf>,
}

/// The `[agent]` table: how the agent serves (concurrency, shutdown, shelves, states, logs).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Most tasks at once.
    pub concurrency: Option<usize>,
    /// Time running tasks get on shutdown.
    pub shutdown_grace: Option<Span>,
    /// Give up reconnecting after this many failures in a row (default: never).
    pub max_reconnect_attempts: Option<u32>,
    /// Bytes all memory-shelf drawers may hold together.
    pub shelf_bytes: Option<Size>,
    /// Drawers that may exist at once.
    pub shelf_drawers: Option<usize>,
    /// Where the agent states persist (relative to this file), so a restart resumes them.
    pub state_file: Option<PathBuf>,
    /// Serve `/metrics` and `/healthz` on this address, e.g. `127.0.0.1:9464`.
    pub metrics: Option<std::net::SocketAddr>,
    /// `text` (for people, the default) or `json` (one object a line, for machines).
    pub log_format: Option<LogFormat>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// A directory grant.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirSection {
    /// Host directory (relative to the config file).
    pub host: PathBuf,
    /// Where the guest sees it (absolute).
    pub guest: String,
    /// Whether the guest may write.
    #[serde(default)]
    pub writable: bool,
}

/// Limits of one action (`[component.actions.KEY]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSection {
    /// Fuel budget per task of this action (roughly one unit per wasm instruction).
    pub fuel: Option<u64>,
    /// Cap on the task's linear memories together, e.g. `"64MiB"`.
    pub memory: Option<Size>,
    /// Wall-clock time a task may run, e.g. `"60s"` (time paused does not count).
    pub timeout: Option<Span>,
    /// After a CANCEL, how long the action may run on to end cleanly.
    pub cancel_grace: Option<Span>,
    /// Most tasks of this action at once.
    pub concurrency: Option<usize>,
    /// HTTP origins of this action, replacing the component's.
    pub http: Option<Vec<HttpGrantEntry>>,
}

/// One `[[component]]` table: a `.wasm` file to serve, its limits and its grants.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentSection {
    /// The `.wasm` file (relative to the config file).
    pub path: PathBuf,
    /// Fuel budget of its actions.
    pub fuel: Option<u64>,
    /// Memory limit of its actions.
    pub memory: Option<Size>,
    /// Wall-clock limit of its actions.
    pub timeout: Option<Span>,
    /// After a CANCEL, how long its actions may run on to end cleanly.
    pub cancel_grace: Option<Span>,
    /// Most tasks of each of its actions at once.
    pub concurrency: Option<usize>,
    /// Files and directories one task may hold open at once.
    pub open_files: Option<usize>,
    /// Host resources (files, streams, pollables, ...) one task may hold at once.
    pub host_resources: Option<usize>,
    /// Host directories its tasks see (each a preopen), read-only unless marked writable.
    #[serde(default)]
    pub dirs: Vec<DirSection>,
    /// Environment variables the guest sees.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Host environment variables passed through.
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// HTTP origins its actions may reach.
    #[serde(default)]
    pub http: Vec<HttpGrantEntry>,
    /// Limits of its actions' HTTP requests.
    #[serde(default)]
    pub http_limits: HttpLimitsSection,
    /// Limits of single actions (`[component.actions.KEY]`), overriding the component's.
    #[serde(default)]
    pub actions: BTreeMap<String, ActionSection>,
}

/// One HTTP grant: an origin, or a table marking it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum HttpGrantEntry {
    /// Just the origin, e.g. `"https://mikro.lab.example"`: public addresses only, no tokens.
    Origin(String),
    /// `{ origin = "...", private = true, service = true }`.
    Marked(MarkedGrant),
}

/// An HTTP grant with marks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkedGrant {
    /// The origin, e.g. `"https://mikro.lab.example"` (scheme, host and port).
    pub origin: String,
    /// It may resolve to loopback, link-local or private addresses.
    #[serde(default)]
    pub private: bool,
    /// It is an Arkitekt service: requests carry the agent's and the task's tokens.
    #[serde(default)]
    pub service: bool,
}

/// `http_limits` of a component.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpLimitsSection {
    /// Bytes of one response body.
    pub response_bytes: Option<Size>,
    /// Bytes of all response bodies of a task.
    pub total_bytes: Option<Size>,
    /// Connect and first-byte timeout.
    pub timeout: Option<Span>,
    /// Requests in flight per task.
    pub concurrency: Option<usize>,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Which rekuest server to serve, and as whom.
    #[serde(default)]
    pub server: ServerSection,
    /// Logging in to an Arkitekt deployment instead of a fixed token.
    #[serde(default)]
    pub arkitekt: ArkitektSection,
    /// How the agent serves.
    #[serde(default)]
    pub agent: AgentSection,
    /// The components to serve, in the order given.
    #[serde(default, rename = "component")]
    pub components: Vec<ComponentSection>,
}

/// A component to serve, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentSettings {
    /// The component's `.wasm` file (a configuration file's relative paths are resolved against
    /// its directory).
    pub path: PathBuf,
    /// Limits and grants.
    pub policy: SandboxPolicy,
    /// Cap of each action.
    pub concurrency: Option<usize>,
    /// Caps of single actions.
    pub action_concurrency: HashMap<String, usize>,
}

impl ComponentSettings {
    /// A component with default limits and no grants.
    pub fn plain(path: PathBuf) -> Self {
        ComponentSettings {
            path,
            policy: SandboxPolicy::default(),
            concurrency: None,
            action_concurrency: HashMap::new(),
        }
    }
}

/// The components to serve: those of the config `file` (if any), then one with default
/// settings for each of `paths` (the command line's). A reload calls it again to read both
/// afresh.
pub fn components(
    file: Option<&Path>,
    paths: &[PathBuf],
) -> Result<Vec<ComponentSettings>, ConfigError> {
    let mut components = match file {
        Some(file) => load(file)?.1,
        None => Vec::new(),
    };
    components.extend(paths.iter().cloned().map(ComponentSettings::plain));
    Ok(components)
}

/// Reads and checks `file`.
pub fn load(file: &Path) -> Result<(FileConfig, Vec<ComponentSettings>), ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    let mut config: FileConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
        file: file.to_path_buf(),
        source,
    })?;
    let base = file.parent().unwrap_or(Path::new("."));
    if let Some(cache) = &mut config.arkitekt.cache {
        *cache = base.join(&*cache);
    }
    if let Some(ca_certs) = &mut config.server.ca_certs {
        for path in ca_certs.iter_mut() {
            *path = base.join(&*path);
        }
    }
    let components = config
        .components
        .iter()
        .enumerate()
        .map(|(index, section)| resolve_component(file, base, index, section))
        .collect::<Result<_, _>>()?;
    Ok((config, components))
}

/// The shutdown grace of `[agent]`, checked.
pub fn shutdown_grace(file: &Path, agent: &AgentSection) -> Result<Option<Duration>, ConfigError> {
    agent
        .shutdown_grace
        .as_ref()
        .map(|span| span_value(file, "agent.shutdown_grace", span))
        .transpose()
}

/// The shelf bounds and state file of `[agent]`, checked (the state file relative to `file`).
pub fn keep_config(
    file: &Path,
    agent: &AgentSection,
) -> Result<crate::agent::KeepConfig, ConfigError> {
    let mut keep = crate::agent::KeepConfig::default();
    if let Some(size) = &agent.shelf_bytes {
        let bytes = match size {
            Size::Bytes(bytes) => *bytes,
            Size::Text(text) => parse_bytes(text)
                .map_err(|reason| invalid(file, "agent.shelf_bytes".into(), reason))?,
        };
        keep.shelf_bytes = usize::try_from(bytes)
            .map_err(|_| invalid(file, "agent.shelf_bytes".into(), "too large"))?;
    }
    if let Some(drawers) = positive(file, "agent.shelf_drawers", agent.shelf_drawers)? {
        keep.shelf_drawers = drawers;
    }
    keep.state_file = agent.state_file.as_ref().map(|path| {
        file.parent()
            .map_or_else(|| path.clone(), |base| base.join(path))
    });
    Ok(keep)
}

fn invalid(file: &Path, key: String, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_path_buf(),
        key,
        reason: reason.into(),
    }
}

fn span_value(file: &Path, key: &str, span: &Span) -> Result<Duration, ConfigError> {
    match span {
        Span::Seconds(seconds) => Ok(Duration::from_secs(*seconds)),
        Span::Text(text) => {
            parse_duration(text).map_err(|reason| invalid(file, key.into(), reason))
        }
    }
}

fn size_value(file: &Path, key: &str, size: &Size) -> Result<u64, ConfigError> {
    let bytes = match size {
        Size::Bytes(bytes) => *bytes,
        Size::Text(text) => {
            parse_bytes(text).map_err(|reason| invalid(file, key.into(), reason))?
        }
    };
    check_memory_limit(bytes).map_err(|reason| invalid(file, key.into(), reason))
}

fn positive(file: &Path, key: &str, value: Option<usize>) -> Result<Option<usize>, ConfigError> {
    match value {
        Some(0) => Err(invalid(file, key.into(), "must be at least 1")),
        other => Ok(other),
    }
}

fn limits(
    file: &Path,
    prefix: &str,
    base: &Limits,
    fuel: Option<u64>,
    memory: Option<&Size>,
    timeout: Option<&Span>,
    cancel_grace: Option<&Span>,
) -> Result<Limits, ConfigError> {
    let mut limits = *base;
    if let Some(fuel) = fuel {
        limits.fuel = Some(fuel);
    }
    if let Some(memory) = memory {
        limits.memory_bytes = size_value(file, &format!("{prefix}.memory"), memory)?;
    }
    if let Some(timeout) = timeout {
        let timeout = span_value(file, &format!("{prefix}.timeout"), timeout)?;
        limits.timeout = check_timeout(timeout)
            .map_err(|reason| invalid(file, format!("{prefix}.timeout"), reason))?;
    }
    if let Some(grace) = cancel_grace {
        limits.cancel_grace = span_value(file, &format!("{prefix}.cancel_grace"), grace)?;
    }
    Ok(limits)
}

fn resolve_component(
    file: &Path,
    base: &Path,
    index: usize,
    section: &ComponentSection,
) -> Result<ComponentSettings, ConfigError> {
    let prefix = format!("component[{index}]");
    let component_limits = limits(
        file,
        &prefix,
        &Limits::default(),
        section.fuel,
        section.memory.as_ref(),
        section.timeout.as_ref(),
        section.cancel_grace.as_ref(),
    )?;
    let mut action_limits = HashMap::new();
    let mut action_concurrency = HashMap::new();
    let mut http = HttpPolicy {
        grants: http_grants(file, &format!("{prefix}.http"), &section.http)?,
        limits: http_limits(file, &format!("{prefix}.http_limits"), &section.http_limits)?,
        ..HttpPolicy::default()
    };
    for (key, action) in &section.actions {
        let action_prefix = format!("{prefix}.actions.{key}");
        if let Some(grants) = &action.http {
            let grants = http_grants(file, &format!("{action_prefix}.http"), grants)?;
            http.action_grants.insert(key.clone(), grants);
        }
        action_limits.insert(
            key.clone(),
            limits(
                file,
                &action_prefix,
                &component_limits,
                action.fuel,
                action.memory.as_ref(),
                action.timeout.as_ref(),
                action.cancel_grace.as_ref(),
            )?,
        );
        if let Some(limit) = positive(
            file,
            &format!("{action_prefix}.concurrency"),
            action.concurrency,
        )? {
            action_concurrency.insert(key.clone(), limit);
        }
    }
    let mut dirs = Vec::new();
    for (position, dir) in section.dirs.iter().enumerate() {
        let key = format!("{prefix}.dirs[{position}]");
        let grant = dir_grant(base.join(&dir.host), &dir.guest, dir.writable)
            .map_err(|(field, reason)| invalid(file, format!("{key}.{}", field.key()), reason))?;
        dirs.push(grant);
    }
    let mut env: Vec<(String, String)> = section
        .env
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    for name in &section.pass_env {
        let value =
            host_env(name).map_err(|reason| invalid(file, format!("{prefix}.pass_env"), reason))?;
        env.push((name.clone(), value));
    }
    let resources = resource_caps(file, &prefix, section)?;
    Ok(ComponentSettings {
        path: base.join(&section.path),
        policy: SandboxPolicy {
            limits: component_limits,
            action_limits,
            dirs,
            env,
            resources,
            http,
        },
        concurrency: positive(file, &format!("{prefix}.concurrency"), section.concurrency)?,
        action_concurrency,
    })
}

/// The part of a directory grant that is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirField {
    /// The host directory.
    Host,
    /// The path the guest sees.
    Guest,
}

impl DirField {
    /// Its key in the config file.
    pub fn key(self) -> &'static str {
        match self {
            DirField::Host => "host",
            DirField::Guest => "guest",
        }
    }
}

/// Checks a directory grant (of the config file or `--dir`): the guest path is absolute and
/// the host path is a directory.
pub fn dir_grant(
    host: PathBuf,
    guest: &str,
    writable: bool,
) -> Result<DirGrant, (DirField, String)> {
    if !guest.starts_with('/') {
        return Err((
            DirField::Guest,
            format!("the guest path '{guest}' must be absolute, e.g. /data"),
        ));
    }
    if !host.is_dir() {
        let reason = if host.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        return Err((DirField::Host, format!("{} {reason}", host.display())));
    }
    Ok(DirGrant {
        host,
        guest: guest.to_string(),
        writable,
    })
}

/// The host's value of the environment variable `name`, passed to a guest (`pass_env` or
/// `--env NAME`).
pub fn host_env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set in this environment"))
}

fn resource_caps(
    file: &Path,
    prefix: &str,
    section: &ComponentSection,
) -> Result<HostResourceCaps, ConfigError> {
    let mut caps = HostResourceCaps::default();
    let checked = |key: &str, value: usize, least: usize| {
        if (least..=MAX_RESOURCE_CAP).contains(&value) {
            Ok(value)
        } else {
            Err(invalid(
                file,
                format!("{prefix}.{key}"),
                format!("{value} is outside {least}..={MAX_RESOURCE_CAP}"),
            ))
        }
    };
    if let Some(open_files) = section.open_files {
        caps.open_files = checked("open_files", open_files, section.dirs.len() + 1)?;
    }
    if let Some(host_resources) = section.host_resources {
        caps.host_resources = checked("host_resources", host_resources, MIN_HOST_RESOURCES)?;
    }
    Ok(caps)
}

/// The grants of `entries`, checked.
fn http_grants(
    file: &Path,
    key: &str,
    entries: &[HttpGrantEntry],
) -> Result<std::sync::Arc<[HttpGrant]>, ConfigError> {
    entries
        .iter()
        .enumerate()
        .map(|(position, entry)| {
            let (origin, private, service) = match entry {
                HttpGrantEntry::Origin(origin) => (origin, false, false),
                HttpGrantEntry::Marked(marked) => (&marked.origin, marked.private, marked.service),
            };
            let mut grant: HttpGrant =
                origin
                    .parse()
                    .map_err(|error: crate::runtime::http::InvalidOrigin| {
                        invalid(file, format!("{key}[{position}]"), error.to_string())
                    })?;
            if private {
                grant = grant.allow_private();
            }
            if service {
                grant = grant.as_service();
            }
            Ok(grant)
        })
        .collect()
}

/// The HTTP limits of `section` over the defaults, checked.
fn http_limits(
    file: &Path,
    key: &str,
    section: &HttpLimitsSection,
) -> Result<HttpLimits, ConfigError> {
    let mut limits = HttpLimits::default();
    let bytes = |name: &str, size: &Size| {
        let key = format!("{key}.{name}");
        let bytes = match size {
            Size::Bytes(bytes) => *bytes,
            Size::Text(text) => {
                parse_bytes(text).map_err(|reason| invalid(file, key.clone(), reason))?
            }
        };
        match bytes {
            0 => Err(invalid(file, key, "must be above zero")),
            bytes => Ok(bytes),
        }
    };
    if let Some(size) = &section.response_bytes {
        limits.response_bytes = bytes("response_bytes", size)?;
    }
    if let Some(size) = &section.total_bytes {
        limits.total_bytes = bytes("total_bytes", size)?;
    }
    if let Some(timeout) = &section.timeout {
        limits.timeout = span_value(file, &format!("{key}.timeout"), timeout)?;
        if limits.timeout.is_zero() {
            return Err(invalid(
                file,
                format!("{key}.timeout"),
                "must be above zero",
            ));
        }
    }
    if let Some(concurrency) = positive(file, &format!("{key}.concurrency"), section.concurrency)? {
        limits.concurrency = concurrency;
    }
    Ok(limits)
}

/// The largest memory limit of any action: the pool's slot size.
pub fn largest_memory(components: &[ComponentSettings]) -> u64 {
    components
        .iter()
        .flat_map(|component| {
            std::iter::once(component.policy.limits.memory_bytes).chain(
                component
                    .policy
                    .action_limits
                    .values()
                    .map(|limits| limits.memory_bytes),
            )
        })
        .max()
        .unwrap_or(crate::runtime::limits::DEFAULT_MEMORY_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("rekuest-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("data")).expect("dir");
        let file = dir.join("rekuest-host.toml");
        std::fs::write(&file, text).expect("write");
        (dir, file)
    }

    #[test]
    fn reads_http_grants_and_limits() {
        let (_dir, file) = write(
            r#"
            [[component]]
            path = "mikro.wasm"
            http = [
                "https://*.lab.example",
                { origin = "https://mikro.lab.example", service = true },
                { origin = "http://mikro.lab.internal:8080", private = true },
            ]
            http_limits = { response_bytes = "1MiB", total_bytes = 4096, timeout = "5s", concurrency = 2 }

            [component.actions.offline]
            http = []
            "#,
        );
        let (_, components) = load(&file).expect("valid");
        let http = &components[0].policy.http;
        let grants: Vec<String> = http.grants.iter().map(ToString::to_string).collect();
        assert_eq!(
            grants,
            [
                "https://*.lab.example:443",
                "https://mikro.lab.example:443",
                "http://mikro.lab.internal:8080"
            ]
        );
        assert_eq!(
            (http.grants[1].service, http.grants[1].private),
            (true, false)
        );
        assert_eq!(
            (http.grants[2].service, http.grants[2].private),
            (false, true)
        );
        assert!(http.grants_for("offline").is_empty());
        assert_eq!(http.grants_for("other").len(), 3);
        assert_eq!(
            http.limits,
            HttpLimits {
                response_bytes: 1024 * 1024,
                total_bytes: 4096,
                timeout: Duration::from_secs(5),
                concurrency: 2,
            }
        );

        let (_dir, file) =
            write("[[component]]\npath = \"m.wasm\"\nhttp = [\"mikro.lab.example\"]\n");
        let error = load(&file).expect_err("no scheme").to_string();
        assert!(error.contains("`component[0].http[0]`"), "{error}");
        assert!(
            error.contains("must start with http:// or https://"),
            "{error}"
        );
    }

    #[test]
    fn reads_a_complete_file() {
        let (dir, file) = write(
            r#"
            [server]
            url = "http://localhost:8090"
            token = "t"
            name = "scope"

            [agent]
            concurrency = 8
            shutdown_grace = "5s"

            [[component]]
            path = "math.wasm"
            memory = "32MiB"
            timeout = 20
            fuel = 1000
            concurrency = 2
            dirs = [{ host = "data", guest = "/data", writable = true }]
            env = { MODE = "fast" }

            [component.actions.add]
            memory = "128MiB"
            concurrency = 1
            "#,
        );
        let (config, components) = load(&file).expect("valid");
        assert_eq!(config.server.url.as_deref(), Some("http://localhost:8090"));
        assert_eq!(config.agent.concurrency, Some(8));
        assert_eq!(
            shutdown_grace(&file, &config.agent).expect("valid"),
            Some(Duration::from_secs(5))
        );
        let math = &components[0];
        assert_eq!(math.path, dir.join("math.wasm"));
        assert_eq!(math.policy.limits.memory_bytes, 32 << 20);
        assert_eq!(math.policy.limits.timeout, Duration::from_secs(20));
        assert_eq!(math.policy.limits.fuel, Some(1000));
        let add = math.policy.limits_for("add");
        assert_eq!(add.memory_bytes, 128 << 20);
        assert_eq!(add.fuel, Some(1000));
        assert_eq!(math.concurrency, Some(2));
        assert_eq!(math.action_concurrency.get("add"), Some(&1));
        assert_eq!(math.policy.dirs[0].host, dir.join("data"));
        assert!(math.policy.dirs[0].writable);
        assert_eq!(
            math.policy.env,
            vec![("MODE".to_string(), "fast".to_string())]
        );
        assert_eq!(largest_memory(&components), 128 << 20);
    }

    #[test]
    fn names_the_file_key_and_reason() {
        let cases = [
            (
                "[[component]]\npath = \"m.wasm\"\nmemory = \"lots\"\n",
                "component[0].memory",
            ),
            (
                "[[component]]\npath = \"m.wasm\"\nconcurrency = 0\n",
                "component[0].concurrency",
            ),
            (
                "[[component]]\npath = \"m.wasm\"\ndirs = [{ host = \"data\", guest = \"data\" }]\n",
                "component[0].dirs[0].guest",
            ),
            (
                "[[component]]\npath = \"m.wasm\"\n[component.actions.add]\ntimeout = \"soon\"\n",
                "component[0].actions.add.timeout",
            ),
            ("[server]\nurl = 3\n", "url"),
            ("[server]\nnmae = \"x\"\n", "nmae"),
        ];
        for (text, key) in cases {
            let (_, file) = write(text);
            let error = load(&file).expect_err(text);
            let error = crate::error_chain::ErrorChain(&error).to_string();
            assert!(error.starts_with(&file.display().to_string()), "{error}");
            assert!(error.contains(key), "{error} should name {key}");
        }
        let missing = load(Path::new("/nonexistent/rekuest-host.toml")).expect_err("missing");
        assert!(missing.to_string().contains("cannot read"));
    }
}
