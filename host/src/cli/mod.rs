//! The command line: `inspect`, `call`, `run`, `dev`, `assign`, `login` and `logout`.

mod args;
mod assign;
mod cache;
mod call;
#[cfg(feature = "devserver")]
mod dev;
mod exit;
mod grant_args;
mod http_args;
mod inspect;
pub mod logging;
mod login;
mod my_tasks;
mod new;
mod reload;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use rekuest_host::config::LogFormat;
use rekuest_host::config::parse_bytes;
use rekuest_host::error_chain::ErrorChain;
use rekuest_host::runtime::{Allocation, ComponentCache, Runtime, RuntimeConfig, SandboxPolicy};
use rekuest_host::text::{Lines, OneLine};

pub use exit::{Exit, UsageError};

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
    /// How the host's log is written: text for people, json (one object a line) for
    /// machines; `run` also reads `[agent] log_format`.
    #[arg(long, global = true, value_enum, env = "REKUEST_HOST_LOG_FORMAT")]
    log_format: Option<LogFormat>,
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
    #[command(after_help = exit::EXIT_CODES)]
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
    #[cfg(feature = "devserver")]
    #[command(after_help = exit::EXIT_CODES)]
    Dev(dev::DevArgs),
    /// Assign an action on a rekuest server (by default the local one of `rekuest-host dev`)
    /// through its caller GraphQL and print its events.
    #[command(after_help = exit::EXIT_CODES)]
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
    #[command(flatten)]
    grants: grant_args::GrantArgs,
    #[command(flatten)]
    http: http_args::HttpArgs,
}

impl SandboxArgs {
    fn policy(&self) -> anyhow::Result<SandboxPolicy> {
        let mut policy = SandboxPolicy::default();
        self.grants.apply(&mut policy);
        // A local call has no agent token: service origins are refused with that reason.
        self.http.apply(&mut policy, &http_args::client(&[], None)?);
        Ok(policy)
    }
}

impl Cli {
    /// The log format: the flag, else `run`'s config file, else text. A config file that
    /// cannot be read is reported by `run` itself, once logging is up.
    pub fn log_format(&self) -> LogFormat {
        if let Some(format) = self.log_format {
            return format;
        }
        match &self.command {
            Command::Run(args) => args
                .config
                .as_deref()
                .and_then(|file| rekuest_host::config::load(file).ok())
                .and_then(|(file, _)| file.agent.log_format)
                .unwrap_or_default(),
            _ => LogFormat::default(),
        }
    }

    /// What is logged unless `REKUEST_HOST_LOG` says otherwise: warnings, and for the serving
    /// commands also the host's own progress (one line per finished task, reconnects,
    /// reloads, shutdown).
    pub fn default_log_filter(&self) -> &'static str {
        match &self.command {
            Command::Run(_) => "warn,rekuest_host=info",
            // `dev --assign` prints the one task's events itself.
            #[cfg(feature = "devserver")]
            Command::Dev(args) if args.assign.is_none() => "warn,rekuest_host=info",
            _ => "warn",
        }
    }

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
                    return Ok(Exit::Usage.into());
                };
                let args = match args::build_args(definition, args_json.as_deref(), args) {
                    Ok(args) => args,
                    Err(error) => {
                        eprintln!("error: {}", Lines(&ErrorChain(&*error).to_string()));
                        return Ok(Exit::Usage.into());
                    }
                };
                Ok(call::run(&component, action, args).await)
            }
            Command::Run(args) => run::run(args, self.cache()).await,
            #[cfg(feature = "devserver")]
            Command::Dev(args) => dev::run(args, self.cache()).await,
            Command::New(args) => new::run(args),
            Command::Cache(command) => cache::run(command, self.cache_place()),
            Command::Assign(args) => assign::run(args).await,
            Command::Login(args) => login::login(args).await,
            Command::Logout(args) => login::logout(args),
        }
    }
}
