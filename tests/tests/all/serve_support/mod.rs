//! Shared by the `serve_*` tests: a local server and an in-process agent serving example
//! components against it over real WebSockets on loopback, with bounded waits everywhere.

pub mod by_hand;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use rekuest_host::agent::{
    Agent, AgentConfig, AgentError, GuestWorkers, ServedComponent, load_component,
};
use rekuest_host::config::ComponentSettings;
use rekuest_host::devserver::{DevServer, DevServerConfig, ServerEvent};
use rekuest_host::protocol::Endpoints;
use rekuest_host::runtime::{Allocation, ComponentCache, Runtime, RuntimeConfig};
use rekuest_host_tests::Sdk;

/// The token of the agent under test.
pub const TOKEN: &str = "test-token";
/// The longest any single wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// Fails the test instead of hanging when `future` takes longer than `WAIT`.
pub async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

/// Waits until `condition` holds, polling.
pub async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    bounded(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// A fast server: heartbeats every 100 ms, answered within 1 s, 5 s reconnect grace, and a
/// lost connection counts as live for 300 ms.
pub fn fast_server() -> DevServerConfig {
    DevServerConfig {
        heartbeat_interval: Duration::from_millis(100),
        heartbeat_timeout: Duration::from_secs(1),
        reconnect_grace: Duration::from_secs(5),
        stale_window: Duration::from_millis(300),
        ..DevServerConfig::default()
    }
}

/// An agent config for `url` that reconnects quickly.
pub fn fast_agent(url: &str) -> AgentConfig {
    let mut config = AgentConfig::new(
        Endpoints::from_base(url).expect("url"),
        TOKEN.to_string(),
        "test-agent".to_string(),
    );
    config.backoff.initial = Duration::from_millis(20);
    config.backoff.max = Duration::from_millis(200);
    config.init_timeout = Duration::from_secs(5);
    config.shutdown_grace = Duration::from_secs(2);
    config.stale_connection_wait = Duration::from_secs(2);
    config
}

/// One runtime for the test process: its epoch ticker must outlive every component.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(RuntimeConfig {
            allocation: Allocation::OnDemand,
            cache: Some(ComponentCache::new(serve_cache_dir())),
            fuel: true,
        })
        .expect("runtime")
    })
}

/// Loads the examples `names` with default limits.
pub async fn components(names: &[&str]) -> Vec<ServedComponent> {
    twin_components(Sdk::Rust, names).await
}

/// Loads the `sdk` twins of the examples `names` with default limits.
pub async fn twin_components(sdk: Sdk, names: &[&str]) -> Vec<ServedComponent> {
    let settings: Vec<ComponentSettings> = names
        .iter()
        .map(|name| ComponentSettings::plain(sdk.component(name)))
        .collect();
    load(settings).await
}

/// Loads components as configured, checked as `run` checks them.
pub async fn load(settings: Vec<ComponentSettings>) -> Vec<ServedComponent> {
    let mut served = Vec::with_capacity(settings.len());
    for settings in &settings {
        served.push(
            load_component(runtime(), settings)
                .await
                .expect("component loads"),
        );
    }
    served
}

/// The path of an example.
pub fn example(name: &str) -> PathBuf {
    rekuest_host_tests::component(name)
}

/// An agent serving in the background.
pub struct Serving {
    pub agent: Arc<Agent>,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), AgentError>>,
    _pool: GuestWorkers,
}

impl Serving {
    /// Registers and serves `components` with `config`.
    pub async fn start(config: AgentConfig, components: Vec<ServedComponent>) -> Serving {
        let pool = GuestWorkers::new(2).expect("pool");
        let agent = Arc::new(Agent::new(config, components, pool.handle()).expect("agent"));
        bounded("registration", agent.register())
            .await
            .expect("registers");
        Self::serve_only(agent, pool)
    }

    /// Serves without registering first.
    pub fn serve_only(agent: Arc<Agent>, pool: GuestWorkers) -> Serving {
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = Arc::clone(&agent);
        let task = tokio::spawn(async move {
            serving
                .serve(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Serving {
            agent,
            stop: Some(stop),
            task,
            _pool: pool,
        }
    }

    /// Asks for a clean shutdown and waits for it.
    pub async fn shutdown(mut self) -> Result<(), AgentError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        bounded("shutdown", &mut self.task)
            .await
            .expect("serve task")
    }

    /// Waits for the agent to stop on its own.
    pub async fn ended(mut self) -> Result<(), AgentError> {
        bounded("the agent to stop", &mut self.task)
            .await
            .expect("serve task")
    }
}

/// A server and an agent serving the examples `names` against it.
pub async fn serve(names: &[&str]) -> (DevServer, Serving) {
    serve_twins(Sdk::Rust, names).await
}

/// A server and an agent serving the `sdk` twins of the examples `names` against it.
pub async fn serve_twins(sdk: Sdk, names: &[&str]) -> (DevServer, Serving) {
    let server = DevServer::start(fast_server()).await.expect("server");
    let serving =
        Serving::start(fast_agent(&server.url()), twin_components(sdk, names).await).await;
    bounded("the agent to connect", server.wait_connected(TOKEN)).await;
    (server, serving)
}

/// Args from a JSON object literal.
pub fn args(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("args must be an object"),
    }
}

/// Assigns and waits for the terminal event; returns every event.
pub async fn run(server: &DevServer, action: &str, task_args: Value) -> Vec<ServerEvent> {
    let task = server.assign(action, args(task_args)).expect("assigns");
    finish(server, &task).await
}

/// Waits for `task`'s terminal event; returns every event.
pub async fn finish(server: &DevServer, task: &str) -> Vec<ServerEvent> {
    let watch = server.watch(task).expect("task exists");
    let events = bounded(&format!("task {task} to end"), watch.until_end()).await;
    assert!(
        events.last().is_some_and(ServerEvent::is_terminal),
        "the server went away before task {task} ended: {events:?}"
    );
    events
}

/// Waits until `task` has an event of `kind`.
pub async fn event(server: &DevServer, task: &str, kind: &str) -> ServerEvent {
    let mut watch = server.watch(task).expect("task exists");
    bounded(&format!("{kind} of task {task}"), async {
        while let Some(event) = watch.next().await {
            if event.kind == kind {
                return event;
            }
        }
        panic!("the server went away");
    })
    .await
}

/// The kinds of `events`, in order.
pub fn kinds(events: &[ServerEvent]) -> Vec<&str> {
    events.iter().map(|event| event.kind.as_str()).collect()
}

/// The returns of every YIELD.
pub fn yields(events: &[ServerEvent]) -> Vec<Value> {
    events
        .iter()
        .filter(|event| event.kind == "YIELD")
        .map(|event| event.fields["returns"].clone())
        .collect()
}

/// The terminal event.
pub fn terminal(events: &[ServerEvent]) -> &ServerEvent {
    events
        .last()
        .filter(|event| event.is_terminal())
        .expect("a terminal event")
}

/// The error text of a FAILED / CRITICAL event.
pub fn error(event: &ServerEvent) -> String {
    event.fields["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `{"return0": value}`.
pub fn return0(value: Value) -> Value {
    json!({ "return0": value })
}

/// Where the serve tests' agents, in this process or as `rekuest-host` processes, keep
/// compiled components.
pub fn serve_cache_dir() -> PathBuf {
    std::env::temp_dir().join("rekuest-host-serve-tests-cache")
}

/// `rekuest-host ARGS` with no server settings from the environment, the serve tests' cache
/// ([`serve_cache_dir`]) and no stdin.
pub fn host_process(args: &[&str]) -> Command {
    let mut command = Command::new(rekuest_host_tests::host_binary());
    command
        .args(args)
        .env_remove("REKUEST_URL")
        .env_remove("REKUEST_TOKEN")
        .env("REKUEST_HOST_CACHE_DIR", serve_cache_dir())
        .stdin(Stdio::null());
    command
}

/// Runs `rekuest-host ARGS` ([`host_process`]) to the end.
pub fn host(args: &[&str]) -> Output {
    host_process(args).output().expect("runs")
}

/// Process output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
