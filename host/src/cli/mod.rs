//! The command line: `inspect`, `call`, `run`, `dev`, `assign`, `login` and `logout`.

mod args;
mod assign;
mod cache;
mod call;
mod dev;
mod http_args;
mod inspect;
mod login;
mod my_tasks;
mod new;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use rekuest_host::runtime::limits::{parse_bytes, parse_duration, parse_memory_limit};
use rekuest_host::runtime::{
    Allocation, ComponentCache, DirGrant, Limits, Runtime, RuntimeConfig, SandboxPolicy,
};
use rekuest_host::text::{Lines, OneLine};

/// Runs Arkitekt rekuest actions as sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "rekuest-host", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Where compiled components are cached.
    #[arg(long, global = true, env = "REKUEST_HOST_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile components afresh instead of using the on-disk cache.
    #[arg(long, global = true)]
    no_cache: bool,
    /// Size cap of the compiled-component cache (binary units, e.g. 2GiB, 500MiB); the least
    /// recently used components are removed beyond it.
    #[arg(long, global = true, env = "REKUEST_HOST_CACHE_MAX", value_parser = parse_bytes, default_value = "2GiB")]
    cache_max: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the actions of a component: a table, or the exact JSON that is registered.
    Inspect {
        /// The component (.wasm built for wasm32-wasip2).
        component: PathBuf,
        /// Print the `DefinitionInput` JSON list instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run one action once in the sandbox and print its returns as JSON.
    ///
    /// Exit codes: 0 completed, 1 the action failed, 2 bad arguments, 3 a limit was hit,
    /// 4 the action crashed, 130 cancelled with Ctrl-C.
    Call {
        /// The component (.wasm built for wasm32-wasip2).
        component: PathBuf,
        /// The action's key (see `inspect`).
        action: String,
        /// Arguments as key=value, read by each port's kind (JSON for lists, dicts, models).
        #[arg(value_name = "KEY=VALUE")]
        args: Vec<String>,
        /// Arguments as one JSON object (key=value words override its keys).
        #[arg(long, value_name = "JSON")]
        args_json: Option<String>,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
    /// Register the components' actions with a rekuest server and serve them.
    Run(run::RunArgs),
    /// Serve components on a local rekuest-compatible server (assign with `assign`).
    ///
    /// Exit codes with --assign: as for `call` (FAILED is 1).
    Dev(dev::DevArgs),
    /// Assign an action on a rekuest server (by default the local one of `rekuest-host dev`)
    /// through its caller GraphQL and print its events.
    ///
    /// Exit codes: 0 completed, 1 failed, 2 bad arguments, 4 crashed, 130 cancelled.
    Assign(assign::AssignArgs),
    /// Write a new action project: a Rust crate, or with --python a Python module.
    New(new::NewArgs),
    /// Show or empty the cache of compiled components.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Log this host in to an Arkitekt deployment with a device code a person approves, and
    /// keep the login for `run --deployment URL`.
    Login(login::LoginArgs),
    /// Forget the kept login to an Arkitekt deployment.
    Logout(login::LoginArgs),
}

/// Limits and grants of a local run.
#[derive(Debug, Args)]
struct SandboxArgs {
    /// Fuel budget (about one unit per wasm instruction); unmetered if not given.
    #[arg(long)]
    fuel: Option<u64>,
    /// Memory limit in binary units (64MiB, 512KiB, 1GiB) or bytes; 64KiB to 4GiB.
    #[arg(long, value_parser = parse_memory_limit, default_value = "64MiB")]
    memory: u64,
    /// Wall-clock limit, e.g. 10s, 250ms, 2m; a bare number is seconds.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    timeout: Duration,
    /// Grant a host directory: HOST:GUEST for read-only, HOST:GUEST:rw for read-write.
    #[arg(long = "dir", value_name = "HOST:GUEST[:rw]", value_parser = parse_dir_grant)]
    dirs: Vec<DirGrant>,
    /// Let the guest read an environment variable: NAME=VALUE, or NAME to pass the host's.
    #[arg(long = "env", value_name = "NAME[=VALUE]")]
    env: Vec<String>,
    #[command(flatten)]
    http: http_args::HttpArgs,
}

impl SandboxArgs {
    fn policy(&self) -> anyhow::Result<SandboxPolicy> {
        let env = self
            .env
            .iter()
            .map(|entry| match entry.split_once('=') {
                Some((name, value)) => Ok((name.to_string(), value.to_string())),
                None => std::env::var(entry)
                    .map(|value| (entry.clone(), value))
                    .with_context(|| format!("--env {entry}: not set in this environment")),
            })
            .collect::<anyhow::Result<_>>()?;
        let mut policy = SandboxPolicy {
            limits: Limits {
                fuel: self.fuel,
                memory_bytes: self.memory,
                timeout: self.timeout,
                ..Limits::default()
            },
            dirs: self.dirs.clone(),
            env,
            ..SandboxPolicy::default()
        };
        // A local call has no agent token: service origins are refused with that reason.
        self.http.apply(&mut policy, &http_args::client(&[], None)?);
        Ok(policy)
    }
}

fn parse_dir_grant(text: &str) -> Result<DirGrant, String> {
    let (rest, writable) = match text.strip_suffix(":rw") {
        Some(rest) => (rest, true),
        None => (text.strip_suffix(":ro").unwrap_or(text), false),
    };
    let Some((host, guest)) = rest.rsplit_once(':') else {
        return Err(format!("'{text}' is not HOST:GUEST or HOST:GUEST:rw"));
    };
    if !guest.starts_with('/') {
        return Err(format!(
            "the guest path '{guest}' must be absolute, e.g. /data"
        ));
    }
    Ok(DirGrant {
        host: PathBuf::from(host),
        guest: guest.to_string(),
        writable,
    })
}

impl Cli {
    /// The cache at `--cache-dir` (or the default place), whether or not `--no-cache` is set.
    fn cache_place(&self) -> Option<ComponentCache> {
        self.cache_dir
            .clone()
            .or_else(ComponentCache::default_dir)
            .map(|dir| ComponentCache::new(dir).with_max_bytes(self.cache_max))
    }

    /// The cache components are compiled through, unless `--no-cache`.
    fn cache(&self) -> Option<ComponentCache> {
        self.cache_place().filter(|_| !self.no_cache)
    }

    fn runtime(&self) -> anyhow::Result<Runtime> {
        // A single local task gains nothing from pre-reserved slots.
        Ok(Runtime::new(RuntimeConfig {
            allocation: Allocation::OnDemand,
            cache: self.cache(),
            fuel: true,
        })?)
    }

    /// Runs the command; the exit code tells the outcome.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match &self.command {
            Command::Inspect { component, json } => {
                let runtime = self.runtime()?;
                let component = runtime
                    .load_file(component, SandboxPolicy::default())
                    .await?;
                if *json {
                    println!("{}", inspect::render_json(&component)?);
                } else {
                    print!("{}", inspect::render_table(&component));
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Call {
                component,
                action,
                args,
                args_json,
                sandbox,
            } => {
                let policy = sandbox.policy()?;
                let runtime = self.runtime()?;
                let component = runtime.load_file(component, policy).await?;
                let Some(definition) = component.definition(action) else {
                    let known: Vec<&str> = component
                        .definitions()
                        .iter()
                        .map(|d| d.key.as_str())
                        .collect();
                    eprintln!(
                        "error: {} has no action '{}'; it has: {}",
                        OneLine(component.name()),
                        OneLine(action),
                        OneLine(&known.join(", "))
                    );
                    return Ok(ExitCode::from(call::EXIT_BAD_ARGS));
                };
                let args = match args::build_args(definition, args_json.as_deref(), args) {
                    Ok(args) => args,
                    Err(error) => {
                        eprintln!("error: {}", Lines(&format!("{error:#}")));
                        return Ok(ExitCode::from(call::EXIT_BAD_ARGS));
                    }
                };
                Ok(call::run(&component, action, args).await)
            }
            Command::Run(args) => run::run(args, self.cache()).await,
            Command::Dev(args) => dev::run(args, self.cache()).await,
            Command::New(args) => new::run(args),
            Command::Cache(command) => cache::run(command, self.cache_place()),
            Command::Assign(args) => assign::run(args).await,
            Command::Login(args) => login::login(args).await,
            Command::Logout(args) => login::logout(args),
        }
    }
}
