//! The agent: registers the components' actions with a rekuest server and serves them on
//! the agent socket, reconnecting until told to stop.
//!
//! - [`registration`]: GraphQL `ensureAgent` / `implementAgent` and the definition hash.
//! - `connection`: one socket session (REGISTER, INIT, heartbeats, reports, acks).
//! - [`dispatcher`]: the task table, concurrency caps and task control.
//! - [`outbox`]: queued reports and terminal reports retained until acknowledged.
//! - [`calls`]: calls from running tasks to other actions (ASSIGN_REQUEST and the child's
//!   events).
//! - [`metrics`], [`metrics_server`]: what operators watch (`/metrics`, `/healthz`).
//! - `reload`: serving a new set of components without dropping work.

pub mod backoff;
pub mod calls;
mod caps;
mod connection;
pub mod credentials;
pub mod dispatcher;
pub mod keep;
pub mod loading;
pub mod metrics;
pub mod metrics_server;
pub mod outbox;
pub mod registration;
mod reload;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::watch;

pub use backoff::{Backoff, BackoffConfig};
pub use caps::AgentCaps;
pub use connection::SocketConfig;
pub use credentials::Credentials;
pub use dispatcher::{ActionSlot, Dispatcher, StopMode};
pub use keep::{Keep, KeepConfig, KeepError};
pub use loading::{LoadComponentsError, RuntimeShape, load_component, load_components};
pub use metrics::Metrics;
pub use metrics_server::{MetricsServer, MetricsServerError};
pub use outbox::Outbox;
pub use registration::{
    EnsuredAgent, GraphqlClient, Implementation, Registered, RegistrationError,
};
pub use reload::{ReloadError, Reloaded};

use crate::error_chain::ErrorChain;
use crate::protocol::{Endpoints, close_code};
use crate::runtime::ActionComponent;
use crate::tls::{ClientTls, TlsError};
use connection::SessionEnd;

/// How the agent connects and behaves.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where the rekuest server is: its GraphQL and agent WebSocket URLs.
    pub endpoints: Endpoints,
    /// Where the token comes from (GraphQL bearer and REGISTER).
    pub credentials: Credentials,
    /// The agent's name.
    pub name: String,
    /// Take the agent over from another live connection.
    pub force: bool,
    /// Most tasks running at once; more wait in arrival order.
    pub concurrency: usize,
    /// On shutdown, how long running tasks may finish before they are cancelled.
    pub shutdown_grace: Duration,
    /// How long to wait between reconnect attempts (exponential, with jitter).
    pub backoff: BackoffConfig,
    /// How long connecting and waiting for INIT may take.
    pub init_timeout: Duration,
    /// PEM files of certificate authorities to trust besides the system's.
    pub ca_certs: Vec<PathBuf>,
    /// A connection with no frame from the server (not even a HEARTBEAT) for this long is
    /// presumed dead and replaced.
    pub silence_timeout: Duration,
    /// At first start, how long the agent may appear connected on the server (close 4004,
    /// or `connected` in `ensureAgent`) before this host gives up: the server forgets a
    /// dead connection after about 3 missed heartbeats (~30 s). Once this process has been
    /// registered, 4004 never stops it: it is retried without limit.
    pub stale_connection_wait: Duration,
    /// Bounds of the shelves, and where the states persist.
    pub keep: KeepConfig,
    /// What the agent queues, retains and remembers, and how long it waits
    /// ([`AgentCaps::DEFAULT`]).
    pub caps: AgentCaps,
}

impl AgentConfig {
    /// Defaults for everything but the deployment, credentials (a fixed token, or a
    /// deployment login) and name.
    pub fn new(endpoints: Endpoints, credentials: impl Into<Credentials>, name: String) -> Self {
        AgentConfig {
            endpoints,
            credentials: credentials.into(),
            name,
            force: false,
            concurrency: 16,
            shutdown_grace: Duration::from_secs(30),
            backoff: BackoffConfig::default(),
            init_timeout: Duration::from_secs(30),
            ca_certs: Vec::new(),
            silence_timeout: Duration::from_secs(35),
            stale_connection_wait: Duration::from_secs(45),
            keep: KeepConfig::default(),
            caps: AgentCaps::DEFAULT,
        }
    }
}

/// A component to serve, with per-action concurrency caps.
pub struct ServedComponent {
    /// The loaded component.
    pub component: Arc<ActionComponent>,
    /// Cap of every action of the component without its own (`None`: global cap only).
    pub concurrency: Option<usize>,
    /// Caps of single actions, by action key.
    pub action_concurrency: HashMap<String, usize>,
}

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Two components offer the same action key.
    #[error(
        "the action '{action}' is offered by both {first} and {second}; action keys must be unique"
    )]
    DuplicateAction {
        /// The key.
        action: String,
        /// One component.
        first: String,
        /// The other.
        second: String,
    },
    /// No components to serve.
    #[error("no actions to serve: give at least one component")]
    NothingToServe,
    /// The trusted certificates could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// GraphQL registration failed.
    #[error(transparent)]
    Registration(#[from] RegistrationError),
    /// The agent's states cannot be set up.
    #[error(transparent)]
    Keep(#[from] KeepError),
    /// No token could be had from the deployment.
    #[error(transparent)]
    Login(#[from] crate::login::LoginError),
    /// Close 3003 right after REGISTER.
    #[error(
        "the server refused REGISTER (close 3003{}): the token is wrong, or the agent was not \
         ensured with this token",
        reason_suffix(.reason)
    )]
    Refused {
        /// The server's text.
        reason: String,
    },
    /// The server closed with 4003: this agent is blocked.
    #[error("the server has blocked this agent (close 4003{})", reason_suffix(.reason))]
    Blocked {
        /// The server's text.
        reason: String,
    },
    /// Close 4004 at first start, for longer than the stale-connection wait.
    #[error(
        "another host is connected as this agent (close 4004 for {waited:.0?}); the agent is the \
         token's client, whatever its name: stop the other host, give this one its own token, or \
         take over with --force"
    )]
    AlreadyConnected {
        /// How long 4004 was retried.
        waited: Duration,
    },
    /// `ensureAgent` said the agent is connected, for longer than the stale-connection wait;
    /// its registration was left untouched.
    #[error(
        "agent {agent} is already served by another host (connected on the server for {waited:.0?}); \
         its actions were left untouched. The agent is the token's client, whatever its name: \
         stop the other host, give this one its own token, or take over with --force"
    )]
    AlreadyServed {
        /// The agent's id.
        agent: String,
        /// How long this host waited for the connection to go away.
        waited: Duration,
    },
    /// The server closed with 4005: another host took this agent over (REGISTER with `force`).
    #[error(
        "a forced connection from another host replaced this one (close 4005); not reconnecting"
    )]
    Replaced,
    /// The server sent KICK: do not reconnect.
    #[error("the server kicked this agent: {}", reason.as_deref().unwrap_or("no reason given"))]
    Kicked {
        /// The server's reason.
        reason: Option<String>,
    },
    /// Reconnecting was given up.
    #[error("gave up reconnecting after {attempts} attempts; last error: {last}")]
    GaveUp {
        /// How many connection attempts failed in a row.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

/// A registered-or-not agent serving a set of components.
pub struct Agent {
    config: AgentConfig,
    socket: SocketConfig,
    graphql: GraphqlClient,
    /// The actions as registered; replaced by [`Agent::reload`].
    implementations: RwLock<Arc<[Implementation]>>,
    dispatcher: Arc<Dispatcher>,
    metrics: Arc<Metrics>,
    outbox: Arc<Outbox>,
    /// Turns true at the first INIT.
    online: watch::Sender<bool>,
    /// Whether [`Agent::register`] succeeded: only then is the registration restored after
    /// a reconnect.
    registered: AtomicBool,
}

impl Agent {
    /// An agent serving `components`; a task runs its first epoch slice where the socket runs
    /// and, if it needs longer, the rest on `executor`.
    pub fn new(
        config: AgentConfig,
        components: Vec<ServedComponent>,
        executor: Handle,
    ) -> Result<Self, AgentError> {
        let metrics = Arc::new(Metrics::new());
        let (slots, implementations) = actions_of(&components, &metrics)?;
        let tls = ClientTls::new(&config.ca_certs)?;
        let graphql = GraphqlClient::new(
            config.endpoints.graphql.clone(),
            config.credentials.clone(),
            &tls,
        )?;
        let session_id = uuid::Uuid::new_v4().to_string();
        let keep = Keep::new(
            session_id.clone(),
            graphql.clone(),
            config.keep.clone(),
            &config.caps,
            &implementations,
        )?;
        let outbox = Arc::new(Outbox::new(&config.caps));
        let dispatcher = Dispatcher::new(
            slots,
            config.concurrency,
            &config.caps,
            Arc::clone(&outbox),
            calls::Calls::new(&config.caps),
            keep,
            executor,
        );
        let socket = SocketConfig {
            url: config.endpoints.agent_socket.clone(),
            credentials: config.credentials.clone(),
            session_id,
            force: config.force,
            init_timeout: config.init_timeout,
            tls,
            silence_timeout: config.silence_timeout,
            caps: config.caps,
        };
        Ok(Agent {
            config,
            socket,
            graphql,
            implementations: RwLock::new(implementations.into()),
            dispatcher,
            metrics,
            outbox,
            online: watch::channel(false).0,
            registered: AtomicBool::new(false),
        })
    }

    /// This process's session id.
    pub fn session_id(&self) -> &str {
        &self.socket.session_id
    }

    /// The actions as registered (the latest set, after a reload).
    pub fn implementations(&self) -> Arc<[Implementation]> {
        Arc::clone(
            &self
                .implementations
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// What the agent counts for operators.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The task table.
    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// The outgoing reports.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Resolves once the server has answered REGISTER with INIT for the first time.
    pub async fn online(&self) {
        let _ = self.online.subscribe().wait_for(|online| *online).await;
    }

    /// `ensureAgent`, then `implementAgent` if the definitions changed. A server that is
    /// down or not ready is retried with backoff. If the agent is connected on the server,
    /// its registration is not touched: that is retried for the stale-connection wait (the
    /// server may not yet have noticed a previous run is gone), then refused
    /// ([`AgentError::AlreadyServed`]); `force` skips the check.
    pub async fn register(&self) -> Result<Registered, AgentError> {
        let started = tokio::time::Instant::now();
        let mut backoff = Backoff::new(self.config.backoff);
        let mut last_failure = String::new();
        loop {
            let failure = match self.try_register().await {
                Ok(Ok(registered)) => {
                    self.registered.store(true, Ordering::Relaxed);
                    self.metrics.set_registered(true);
                    return Ok(registered);
                }
                Ok(Err(agent)) => {
                    let waited = started.elapsed();
                    if waited >= self.config.stale_connection_wait {
                        return Err(AgentError::AlreadyServed { agent, waited });
                    }
                    format!(
                        "agent {agent} is connected on the server (another host, or a \
                         connection the server has not yet seen die); its actions are left \
                         untouched"
                    )
                }
                Err(error) if error.is_transient() => ErrorChain(&error).to_string(),
                Err(error) => return Err(error.into()),
            };
            let Some(delay) = backoff.next_delay() else {
                return Err(AgentError::GaveUp {
                    attempts: backoff.attempts(),
                    last: failure,
                });
            };
            log_retry(&mut last_failure, failure, delay, "registering again");
            tokio::time::sleep(delay).await;
        }
    }

    /// One registration attempt; `Ok(Err(agent id))` when the agent is connected on the
    /// server (and `force` is off), so nothing was changed.
    async fn try_register(&self) -> Result<Result<Registered, String>, RegistrationError> {
        let agent = self.graphql.ensure(&self.config.name).await?;
        self.dispatcher.keep().forget_drawers();
        if agent.connected && !self.config.force {
            return Ok(Err(agent.id));
        }
        self.graphql
            .implement(&agent, &self.config.name, &self.implementations())
            .await
            .map(Ok)
    }

    /// Serves on the agent socket until `shutdown` resolves (then stops taking work, lets
    /// running tasks finish within the grace period, cancels the rest, flushes its reports
    /// and closes cleanly) or the server ends it for good.
    pub async fn serve(&self, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
        let (closing, closing_watch) = watch::channel(false);
        let drain = async {
            shutdown.await;
            let tasks = self.dispatcher.snapshot();
            if tasks.running + tasks.queued == 0 {
                tracing::info!("shutting down: taking no new work; no task is running");
            } else {
                tracing::info!(
                    "shutting down: taking no new work; waiting up to {:?} for {} running \
                     task(s) to finish ({} queued one(s) are cancelled)",
                    self.config.shutdown_grace,
                    tasks.running,
                    tasks.queued
                );
            }
            self.dispatcher.stop_accepting();
            if tokio::time::timeout(self.config.shutdown_grace, self.dispatcher.idle())
                .await
                .is_err()
            {
                tracing::warn!(
                    "cancelling {} task(s) still running after the grace period; waiting up to \
                     {:?} for them to stop",
                    self.dispatcher.active(),
                    self.config.caps.stop_wait
                );
                self.dispatcher.cancel_all();
                let _ =
                    tokio::time::timeout(self.config.caps.stop_wait, self.dispatcher.idle()).await;
            }
            let unacked = self.outbox.unacked();
            if unacked > 0 {
                tracing::info!(
                    "shutting down: waiting up to {:?} for the server to acknowledge \
                     {unacked} report(s)",
                    self.config.caps.flush_wait
                );
            }
            let _ = closing.send(true);
            tokio::time::sleep(self.config.caps.flush_wait).await;
        };
        tokio::select! {
            result = self.connect_loop(closing_watch) => result,
            () = drain => {
                tracing::warn!(
                    "exiting with {} report(s) not acknowledged by the server",
                    self.outbox.unacked()
                );
                Ok(())
            }
        }
    }

    async fn connect_loop(&self, mut closing: watch::Receiver<bool>) -> Result<(), AgentError> {
        let mut backoff = Backoff::new(self.config.backoff);
        let started = tokio::time::Instant::now();
        let mut last_failure = String::new();
        // Whether the last REGISTER was refused with 3003 and the token renewed since.
        let mut renewed_after_refusal = false;
        loop {
            let mut registered = false;
            // Read afresh for every connection: a token may have expired meanwhile.
            let token = match self.socket.credentials.current_token().await {
                Ok(token) => token,
                Err(error) if error.is_transient() || *self.online.borrow() => {
                    let failure = format!("cannot get an access token: {}", ErrorChain(&error));
                    if *closing.borrow() {
                        return Ok(());
                    }
                    let Some(delay) = backoff.next_delay() else {
                        return Err(AgentError::GaveUp {
                            attempts: backoff.attempts(),
                            last: failure,
                        });
                    };
                    log_retry(&mut last_failure, failure, delay, "trying again");
                    tokio::time::sleep(delay).await;
                    continue;
                }
                Err(error) => return Err(AgentError::Login(error)),
            };
            let end = connection::session(
                &self.socket,
                &token,
                &self.dispatcher,
                &self.outbox,
                &mut closing,
                || {
                    registered = true;
                    self.metrics.set_connected(true);
                    if self.online.send_replace(true) && self.registered.load(Ordering::Relaxed) {
                        // A reconnect: the registration may have been changed meanwhile
                        // (another host with this token); put ours back.
                        tokio::spawn(restore_registration(
                            Arc::clone(self.dispatcher.keep()),
                            self.graphql.clone(),
                            self.config.name.clone(),
                            self.implementations(),
                        ));
                    }
                },
            )
            .await;
            self.metrics.set_connected(false);
            if registered {
                backoff.reset();
                last_failure.clear();
                renewed_after_refusal = false;
            }
            let failure = match end {
                SessionEnd::Finished => return Ok(()),
                SessionEnd::Kick(reason) => return Err(AgentError::Kicked { reason }),
                SessionEnd::Bounce(seconds) => {
                    let wait = Duration::from_secs(seconds.unwrap_or(0));
                    tracing::info!("bounced by the server; reconnecting in {wait:?}");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                SessionEnd::Closed {
                    code,
                    reason,
                    registered,
                } => match code {
                    close_code::SCHEMA_MISMATCH if !registered => {
                        // The token may have expired or been revoked: renew it once.
                        let renewed = if renewed_after_refusal {
                            None
                        } else {
                            self.socket.credentials.renew(&token).await?
                        };
                        if renewed.is_none() {
                            return Err(AgentError::Refused { reason });
                        }
                        tracing::info!("REGISTER was refused (3003); trying a renewed token");
                        renewed_after_refusal = true;
                        continue;
                    }
                    close_code::AGENT_BLOCKED => return Err(AgentError::Blocked { reason }),
                    close_code::ALREADY_CONNECTED => {
                        let waited = started.elapsed();
                        if !*self.online.borrow() && waited >= self.config.stale_connection_wait {
                            return Err(AgentError::AlreadyConnected { waited });
                        }
                        "the server counts another connection as this agent (4004): a \
                         connection it has not yet seen die, or another host with this token"
                            .to_string()
                    }
                    close_code::REPLACED => return Err(AgentError::Replaced),
                    close_code::HEARTBEAT_NOT_RESPONDED => {
                        "the server closed the socket: a heartbeat was not answered in time \
                         (3001)"
                            .to_string()
                    }
                    close_code::NOT_JSON => {
                        format!(
                            "the server closed the socket: it could not read a frame (3002) {reason}"
                        )
                    }
                    close_code::SCHEMA_MISMATCH => {
                        format!(
                            "the server closed the socket: a frame did not match its schema (3003) {reason}"
                        )
                    }
                    code => format!("the server closed the socket ({code}) {reason}"),
                },
                SessionEnd::Lost(reason) => reason,
            };
            if *closing.borrow() && self.outbox.is_settled() {
                return Ok(());
            }
            let Some(delay) = backoff.next_delay() else {
                return Err(AgentError::GaveUp {
                    attempts: backoff.attempts(),
                    last: failure,
                });
            };
            if registered {
                self.metrics.reconnecting();
            }
            log_retry(&mut last_failure, failure, delay, "reconnecting");
            tokio::time::sleep(delay).await;
        }
    }
}

/// Logs a failure before a retry: at WARN when it differs from the last one, else at DEBUG,
/// so a long outage is reported once, not every few seconds.
fn log_retry(last: &mut String, failure: String, delay: Duration, retry: &str) {
    if *last == failure {
        tracing::debug!("{failure}; {retry} in {delay:.1?}");
    } else {
        tracing::warn!("{failure}; {retry} in {delay:.1?}");
        *last = failure;
    }
}

/// The dispatcher's actions and their registrations for `components`; an action key offered
/// twice, or no action at all, is refused.
fn actions_of(
    components: &[ServedComponent],
    metrics: &Metrics,
) -> Result<(HashMap<String, ActionSlot>, Vec<Implementation>), AgentError> {
    let mut slots: HashMap<String, ActionSlot> = HashMap::new();
    let mut owners: HashMap<String, String> = HashMap::new();
    let mut implementations = Vec::new();
    for served in components {
        for definition in served.component.definitions() {
            let key = definition.key.clone();
            if let Some(first) = owners.get(&key) {
                return Err(AgentError::DuplicateAction {
                    action: key,
                    first: first.clone(),
                    second: served.component.name().to_string(),
                });
            }
            owners.insert(key.clone(), served.component.name().to_string());
            implementations.push(Implementation {
                interface: key.clone(),
                definition: definition.clone(),
            });
            slots.insert(
                key.clone(),
                ActionSlot {
                    component: Arc::clone(&served.component),
                    concurrency: served
                        .action_concurrency
                        .get(&key)
                        .copied()
                        .or(served.concurrency),
                    metrics: metrics.action(&key),
                },
            );
        }
    }
    if implementations.is_empty() {
        return Err(AgentError::NothingToServe);
    }
    Ok((slots, implementations))
}

/// After a reconnect: `ensureAgent` and, if the stored hash is no longer ours (another host
/// with this token replaced the actions), `implementAgent` again. This host holds the
/// agent's socket, so restoring cannot take anything from a live host.
async fn restore_registration(
    keep: Arc<Keep>,
    graphql: GraphqlClient,
    name: String,
    implementations: Arc<[Implementation]>,
) {
    let restored = async {
        let agent = graphql.ensure(&name).await?;
        keep.forget_drawers();
        graphql.implement(&agent, &name, &implementations).await
    };
    match restored.await {
        Ok(registered) if registered.implemented => tracing::warn!(
            "the agent's registration had been changed on the server (another host with this \
             token?); restored this host's {} action(s)",
            implementations.len()
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(
            "could not check the agent's registration: {}",
            ErrorChain(&error)
        ),
    }
}

/// The worker threads (a tokio runtime of their own) that run guest code outlasting a task's
/// first epoch slice, so a task holds the agent socket's thread for at most one epoch tick.
/// Dropping it shuts the threads down without waiting for running guests.
pub struct GuestWorkers {
    runtime: Option<tokio::runtime::Runtime>,
    handle: Handle,
}

impl GuestWorkers {
    /// A pool of `threads` worker threads.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("guest-worker")
            .enable_all()
            .build()?;
        Ok(GuestWorkers {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Where to spawn guest work.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

impl Drop for GuestWorkers {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
