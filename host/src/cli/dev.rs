//! `rekuest-host dev`: a local rekuest-compatible server and an agent serving the components
//! against it, in one process. Assign tasks from another terminal with `rekuest-host assign`,
//! or once with `--assign` (for scripts and CI).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;
use tokio::sync::oneshot;

use rekuest_host::agent::{Agent, AgentConfig, RuntimeShape, load_components};
use rekuest_host::config::{self, parse_duration};
use rekuest_host::devserver::{Control, DevServer, DevServerConfig, PlatformConfig};
use rekuest_host::error_chain::ErrorChain;
use rekuest_host::protocol::Endpoints;
use rekuest_host::runtime::http::StaticToken;
use rekuest_host::runtime::{ComponentCache, Runtime};
use rekuest_host::text::{Lines, OneLine};

use super::assign::{EventPrinter, Offered, Shown, args_for, offered};
use super::exit::{Exit, UsageError};
use super::reload::{FileWatch, reload};
use super::run::{guest_workers, shutdown_signal};

/// The token the embedded agent uses with the embedded server.
const DEV_TOKEN: &str = "dev";
/// The embedded agent's name.
const DEV_AGENT: &str = "dev";
/// How long the embedded agent may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Where `dev` listens without `--listen` (and where `assign` looks by default).
const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8090);

/// Arguments of `dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Components to serve (.wasm). Without any (and no --config), only the server runs, for
    /// agents started elsewhere (any token is accepted).
    pub components: Vec<PathBuf>,
    /// Take components, limits and grants from this config file (its [server] is ignored).
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the local server listens: ADDRESS:PORT, or a PORT on 127.0.0.1 [default:
    /// 127.0.0.1:8090; with --assign, a free port].
    #[arg(long, value_name = "[ADDRESS:]PORT", value_parser = parse_listen)]
    pub listen: Option<SocketAddr>,
    /// Time between the server's HEARTBEATs.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub heartbeat_interval: Duration,
    /// How long the server waits for a HEARTBEAT_ANSWER before closing with 3001.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub heartbeat_timeout: Duration,
    /// How long in-flight tasks of a dropped agent wait for it to come back.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub reconnect_grace: Duration,
    /// How long the server still counts a connection it lost without a close handshake (a
    /// restart, a 3001, a network cut) as live, refusing a REGISTER without force with 4004.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub stale_window: Duration,
    /// Lifetime of the access tokens the local platform issues (short ones try renewal).
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    pub token_lifetime: Duration,
    /// Assign ACTION once with KEY=VALUE args, print its events and exit with its outcome.
    #[arg(long, num_args = 1.., value_name = "ACTION [KEY=VALUE]...")]
    pub assign: Option<Vec<String>>,
    /// Args of --assign as one JSON object.
    #[arg(long, value_name = "JSON", requires = "assign")]
    pub args_json: Option<String>,
    /// Reload a component when its file changes (e.g. rebuilt); tasks already running finish
    /// on the old one, and a component that does not load is refused while the old serves.
    #[arg(long, conflicts_with = "assign")]
    pub watch: bool,
    #[command(flatten)]
    pub grants: super::grant_args::GrantArgs,
    #[command(flatten)]
    pub http: super::http_args::HttpArgs,
}

/// `8091` (on 127.0.0.1) or `0.0.0.0:8091`.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.trim().parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.trim().parse().map_err(|_| {
        format!("'{text}' is not a port or ADDRESS:PORT (e.g. 8091, 127.0.0.1:8091, [::1]:8091)")
    })
}

/// The URL that reaches a server listening on `addr` from this machine: a wildcard address
/// is reached on loopback.
fn local_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Runs `dev`.
pub async fn run(args: &DevArgs, cache: Option<ComponentCache>) -> anyhow::Result<ExitCode> {
    let mut components = config::components(args.config.as_deref(), &args.components)?;
    args.grants.apply_all(&mut components);
    // Service origins get the embedded agent's token, as `run` sends its own.
    args.http.apply_all(
        &mut components,
        &super::http_args::client(&[], Some(Arc::new(StaticToken(DEV_TOKEN.to_string()))))?,
    );
    if args.assign.is_some() && components.is_empty() {
        return Err(UsageError("--assign needs components to serve".into()).into());
    }
    // A one-shot assign needs no well-known port: it works while another `dev` runs.
    let listen = args.listen.unwrap_or(match args.assign {
        Some(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        None => DEFAULT_LISTEN,
    });
    let server = DevServer::start(DevServerConfig {
        listen,
        heartbeat_interval: args.heartbeat_interval,
        heartbeat_timeout: args.heartbeat_timeout,
        reconnect_grace: args.reconnect_grace,
        stale_window: args.stale_window,
        tokens: None,
        platform: PlatformConfig {
            token_lifetime: args.token_lifetime,
            ..PlatformConfig::default()
        },
    })
    .await?;
    let url = local_url(server.addr());
    if components.is_empty() {
        eprintln!(
            "local rekuest server on {url} (no components: start agents with --url {url} and \
             any token)\nCtrl-C to stop"
        );
        shutdown_signal().await;
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = AgentConfig::new(
        Endpoints::from_base(&url)?,
        DEV_TOKEN.to_string(),
        DEV_AGENT.to_string(),
    );
    config.shutdown_grace = Duration::from_secs(5);
    let shape = RuntimeShape::of(&components);
    let runtime = Runtime::new(shape.runtime_config(config.concurrency, cache))?;
    let served = load_components(&runtime, &components).await?;
    let pool = guest_workers()?;
    let agent = Agent::new(config, served, pool.handle())?;
    agent.register().await?;
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = async {
        let one_shot = args.assign.is_some();
        agent
            .serve(async move {
                if one_shot {
                    let _ = stopped.await;
                } else {
                    tokio::select! {
                        _ = stopped => {}
                        () = shutdown_signal() => {}
                    }
                }
            })
            .await
    };
    let work = async {
        tokio::time::timeout(CONNECT_TIMEOUT, agent.online())
            .await
            .with_context(|| {
                format!("the agent did not connect to the local server within {CONNECT_TIMEOUT:?}")
            })?;
        let implementations = agent.implementations();
        let mut keys: Vec<&str> = implementations
            .iter()
            .map(|implementation| implementation.interface.as_str())
            .collect();
        keys.sort_unstable();
        match &args.assign {
            Some(words) => {
                let code = assign_once(&server, words, args.args_json.as_deref()).await;
                let _ = stop.send(());
                code
            }
            None => {
                // `assign` finds the default address by itself.
                let url_flag = if server.addr() == DEFAULT_LISTEN {
                    String::new()
                } else {
                    format!(" --url {url}")
                };
                eprintln!(
                    "local rekuest server on {url} serving as agent {DEV_AGENT}: {}{}\nassign from \
                     another terminal, e.g.: rekuest-host assign{url_flag} {} KEY=VALUE...\nCtrl-C \
                     to stop",
                    OneLine(&keys.join(", ")),
                    if args.watch {
                        " (reloading components when their files change)"
                    } else {
                        ""
                    },
                    OneLine(keys.first().copied().unwrap_or("ACTION")),
                );
                std::future::pending().await
            }
        }
    };
    let watching = async {
        if !args.watch {
            return std::future::pending().await;
        }
        let mut files = FileWatch::new(components.iter().map(|c| c.path.clone()).collect());
        loop {
            files.changed().await;
            let cause = "a component file changed";
            reload(&agent, &runtime, shape, Ok(components.clone()), cause).await;
        }
    };
    tokio::pin!(serving);
    tokio::select! {
        served = &mut serving => {
            served?;
            Ok(ExitCode::SUCCESS)
        }
        () = watching => Ok(ExitCode::SUCCESS),
        code = work => {
            let code = code?;
            (&mut serving).await?;
            Ok(code)
        }
    }
}

/// Assigns `words` (ACTION KEY=VALUE...) and prints its events until it ends.
async fn assign_once(
    server: &DevServer,
    words: &[String],
    json: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let Some((action, words)) = words.split_first() else {
        return Err(UsageError("--assign needs an action".into()).into());
    };
    let offered: Vec<Offered> = server
        .actions()
        .into_iter()
        .map(|action| offered(action.interface, action.definition))
        .collect();
    let task_args = match args_for(&offered, action, json, words) {
        Ok(task_args) => task_args,
        Err(error) => {
            eprintln!("error: {}", Lines(&ErrorChain(&*error).to_string()));
            return Ok(Exit::Usage.into());
        }
    };
    let task = server
        .assign(action, task_args)
        .map_err(|error| anyhow::anyhow!(error))?;
    let mut watch = server
        .watch(&task)
        .context("the task vanished from the local server")?;
    // The first Ctrl-C cancels (the action may end cleanly within its grace period), a
    // second one interrupts it at once.
    let mut stops = [Control::Cancel, Control::Interrupt].into_iter();
    let mut printer = EventPrinter::default();
    loop {
        let event = tokio::select! {
            event = watch.next() => event,
            _ = tokio::signal::ctrl_c(), if stops.len() > 0 => {
                let Some(control) = stops.next() else { continue };
                if control == Control::Cancel {
                    eprintln!("cancelling the task (Ctrl-C again to stop it at once)");
                } else {
                    eprintln!("interrupting the task");
                }
                if server.control(&task, control).is_err() {
                    return Ok(Exit::Cancelled.into());
                }
                continue;
            }
        };
        let Some(event) = event else {
            bail!("the local server stopped before the task ended");
        };
        let fields: serde_json::Map<String, Value> = event.fields.clone();
        if let Shown::Done(exit) = printer.show(event.kind.as_str(), &fields) {
            return Ok(exit.into());
        }
    }
}
