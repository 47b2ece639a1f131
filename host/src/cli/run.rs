//! `rekuest-host run`: register the components' actions with a rekuest server and serve
//! them until SIGINT/SIGTERM; SIGHUP re-reads the config and components.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use rekuest_host::agent::{
    Agent, AgentConfig, BackoffConfig, Credentials, GuestWorkers, MetricsServer, RuntimeShape,
    load_components,
};
use rekuest_host::config::{self, Overrides, Settings, Target, parse_duration};
use rekuest_host::protocol::Endpoints;
use rekuest_host::runtime::{ComponentCache, Runtime};
use rekuest_host::text::OneLine;

use super::reload::{Hangups, reload};

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (TOML); flags and REKUEST_* variables override it.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub deployment: super::login::DeploymentArgs,
    /// Base URL of a plain rekuest server, e.g. https://lab.example/rekuest (with --token;
    /// for an Arkitekt deployment use --deployment).
    #[arg(long, env = "REKUEST_URL")]
    pub url: Option<String>,
    /// Token of the agent on a plain rekuest server.
    #[arg(long, env = "REKUEST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Name of the agent.
    #[arg(long, env = "REKUEST_AGENT_NAME")]
    pub name: Option<String>,
    /// Take the agent over from another host connected as it.
    #[arg(long)]
    pub force: bool,
    /// Also trust the certificate authorities in this PEM file (repeatable); the system's
    /// trust store, or SSL_CERT_FILE, is always trusted.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
    /// Most tasks running at once (more wait in order).
    #[arg(long, env = "REKUEST_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// On SIGINT/SIGTERM, how long running tasks may finish before they are cancelled.
    #[arg(long, env = "REKUEST_SHUTDOWN_GRACE", value_parser = parse_duration)]
    pub shutdown_grace: Option<Duration>,
    /// Serve Prometheus metrics on http://ADDR/metrics and a health check on /healthz
    /// (200 while connected and registered), e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR", env = "REKUEST_HOST_METRICS")]
    pub metrics: Option<SocketAddr>,
    /// Components to serve (.wasm), in addition to those of the config file.
    pub components: Vec<PathBuf>,
    #[command(flatten)]
    pub grants: super::grant_args::GrantArgs,
    #[command(flatten)]
    pub http: super::http_args::HttpArgs,
}

impl RunArgs {
    /// What the flags and their environment variables set, over the config file's.
    fn overrides(&self) -> Overrides {
        Overrides {
            deployment: self.deployment.overrides(),
            url: self.url.clone(),
            token: self.token.clone(),
            name: self.name.clone(),
            force: self.force,
            ca_certs: self.ca_certs.clone(),
            concurrency: self.concurrency,
            shutdown_grace: self.shutdown_grace,
            metrics: self.metrics,
            components: self.components.clone(),
        }
    }
}

/// Worker threads for guests: one per core.
pub fn guest_workers() -> anyhow::Result<GuestWorkers> {
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    GuestWorkers::new(threads).context("cannot start the guest worker threads")
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `run`.
pub async fn run(args: &RunArgs, cache: Option<ComponentCache>) -> anyhow::Result<ExitCode> {
    // From now on SIGHUP reloads (once serving) rather than ending the process.
    let mut hangups = Hangups::new();
    let mut settings = Settings::resolve(&args.overrides(), args.config.as_deref())?;
    let (endpoints, credentials) = match settings.target {
        Target::Server { url, token } => (Endpoints::from_base(&url)?, Credentials::fixed(token)),
        Target::Deployment(login) => {
            let backoff = BackoffConfig {
                max_attempts: settings.max_reconnect_attempts,
                ..BackoffConfig::default()
            };
            tokio::select! {
                connected = super::login::connect(*login, args.deployment.login, backoff) => {
                    let (endpoints, session) = connected?;
                    (endpoints, Credentials::deployment(session))
                }
                () = shutdown_signal() => return Ok(ExitCode::SUCCESS),
            }
        }
    };
    // Guests' requests trust what the agent trusts; service origins get the agent's token.
    let client = super::http_args::client(&settings.ca_certs, Some(Arc::new(credentials.clone())))?;
    args.grants.apply_all(&mut settings.components);
    args.http.apply_all(&mut settings.components, &client);
    let server_url = endpoints.base.to_string();
    let name = settings.name.clone();
    let mut agent_config = AgentConfig::new(endpoints, credentials, settings.name);
    agent_config.force = settings.force;
    agent_config.ca_certs = settings.ca_certs;
    if let Some(concurrency) = settings.concurrency {
        agent_config.concurrency = concurrency;
    }
    if let Some(grace) = settings.shutdown_grace {
        agent_config.shutdown_grace = grace;
    }
    agent_config.backoff.max_attempts = settings.max_reconnect_attempts;
    agent_config.keep = settings.keep;
    let shape = RuntimeShape::of(&settings.components);
    let runtime = Runtime::new(shape.runtime_config(agent_config.concurrency, cache))?;
    let served = load_components(&runtime, &settings.components).await?;
    let pool = guest_workers()?;
    let agent = Agent::new(agent_config, served, pool.handle())?;
    let _metrics = match settings.metrics {
        Some(addr) => {
            let server = MetricsServer::start(
                addr,
                Arc::clone(agent.metrics()),
                Arc::clone(agent.dispatcher()),
            )
            .await?;
            tracing::info!(
                "metrics on http://{0}/metrics, health on http://{0}/healthz",
                server.addr()
            );
            Some(server)
        }
        None => None,
    };
    let registered = tokio::select! {
        registered = agent.register() => registered?,
        () = shutdown_signal() => return Ok(ExitCode::SUCCESS),
    };
    let announce = async {
        // Ready only once the server took REGISTER (INIT), not at registration.
        agent.online().await;
        tracing::info!(
            "agent {} ready on {}: agent id {}, {} action(s){}; serving until SIGINT/SIGTERM, \
             SIGHUP reloads the components",
            OneLine(&name),
            OneLine(&server_url),
            OneLine(&registered.agent_id),
            agent.implementations().len(),
            if registered.implemented {
                " (registered)"
            } else {
                " (unchanged)"
            }
        );
        std::future::pending::<()>().await
    };
    let reloading = async {
        loop {
            hangups.next().await;
            tracing::info!(
                "SIGHUP: re-reading the components{} ([server] and [agent] changes need a restart)",
                args.config
                    .as_ref()
                    .map(|file| format!(" and {}", file.display()))
                    .unwrap_or_default()
            );
            let components = config::components(args.config.as_deref(), &args.components)
                .map_err(anyhow::Error::from)
                .map(|mut components| {
                    args.http.apply_all(&mut components, &client);
                    components
                });
            reload(&agent, &runtime, shape, components, "SIGHUP").await;
        }
    };
    tokio::select! {
        served = agent.serve(shutdown_signal()) => served?,
        () = announce => {}
        () = reloading => {}
    }
    Ok(ExitCode::SUCCESS)
}
