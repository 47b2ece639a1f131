//! The reference Python agent (`rekuest-next` 2.3.1, unmodified, driven by
//! `tests/peer/python_agent.py`) registers and serves `add` on the local server: GraphQL
//! `ensureAgent`/`implementAgent`, REGISTER, SESSION_INIT, heartbeats, ASSIGN, its reports and
//! our EVENT_ACKs. `rekuest-host assign` reaches its action (whose definition carries fields
//! ours lack). Then 200 tasks with 32 in flight, the shape the benchmark uses.
//!
//! The official client's structure serialization (`tests/peer/official_client.py`) round-trips
//! structures and models through the host.
//!
//! Needs `REKUEST_PEER_PYTHON`: a Python with `rekuest-next==2.3.1` (plus `aiohttp`, `attrs`,
//! `certifi`, which it imports without declaring). Without it the test prints a skip line, except
//! under CI (`CI` set, as `.ci/run` runs), where it fails: CI installs that Python itself.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio::task::JoinSet;

use rekuest_host::devserver::{DevServer, DevServerConfig, ServerEvent};
use rekuest_host::protocol::Endpoints;

const TOKEN: &str = "python-peer";
/// The longest one task may take.
const TASK_WAIT: Duration = Duration::from_secs(30);
/// The longest the Python agent may take to import, register and connect.
const READY_WAIT: Duration = Duration::from_secs(120);

/// The Python agent's process; killed when dropped.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Peer {
    /// Starts the script and waits for its READY line.
    async fn start(python: &Path, server: &DevServer) -> Peer {
        let endpoints = Endpoints::from_base(&server.url()).expect("the server's URL is valid");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peer/python_agent.py");
        let mut child = Command::new(python)
            .arg(&script)
            .args(["--graphql", endpoints.graphql.as_str()])
            .args(["--agent-socket", endpoints.agent_socket.as_str()])
            .args(["--token", TOKEN, "--instance-id", "python-peer-test"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", python.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let peer = Peer(child);
        let ready = tokio::task::spawn_blocking(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .any(|line| line.trim() == "READY")
        });
        let ready = tokio::time::timeout(READY_WAIT, ready)
            .await
            .expect("the Python agent printed READY in time")
            .expect("the reader thread ran");
        assert!(ready, "the Python agent exited before it was READY");
        peer
    }
}

fn args(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("args must be an object"),
    }
}

/// Assigns `add` and returns every event of the task up to its terminal one.
async fn add(server: &DevServer, a: i64, b: i64) -> Vec<ServerEvent> {
    let task = server
        .assign("add", args(json!({"a": a, "b": b})))
        .expect("add is assignable");
    let watch = server.watch(&task).expect("the task exists");
    let events = tokio::time::timeout(TASK_WAIT, watch.until_end())
        .await
        .unwrap_or_else(|_| panic!("task {task} did not end within {TASK_WAIT:?}"));
    assert!(
        events.last().is_some_and(ServerEvent::is_terminal),
        "task {task} ended without a terminal event: {events:?}"
    );
    events
}

fn kinds(events: &[ServerEvent]) -> Vec<&str> {
    events.iter().map(|event| event.kind.as_str()).collect()
}

fn yields(events: &[ServerEvent]) -> Vec<Value> {
    events
        .iter()
        .filter(|event| event.kind == "YIELD")
        .map(|event| event.fields["returns"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_agent_serves_add() {
    let Some(python) = std::env::var_os("REKUEST_PEER_PYTHON").map(PathBuf::from) else {
        let needed = "REKUEST_PEER_PYTHON naming a Python with rekuest-next==2.3.1 \
                      (and aiohttp, attrs, certifi) installed";
        assert!(
            !on_ci(),
            "CI must run the Python peer test, but there is no {needed} (.ci/run makes one)"
        );
        println!("skipped: set {needed}");
        return;
    };
    // Built before the agent starts, so a build does not count towards its timings.
    let host = rekuest_host_tests::host_binary();
    let server = Arc::new(
        DevServer::start(DevServerConfig {
            // Heartbeats during the test, so answering them is part of what is checked.
            heartbeat_interval: Duration::from_millis(250),
            heartbeat_timeout: Duration::from_secs(5),
            ..DevServerConfig::default()
        })
        .await
        .expect("the local server starts"),
    );
    let started = Instant::now();
    let _peer = Peer::start(&python, &server).await;
    println!("the Python agent was READY after {:?}", started.elapsed());

    // Registered through GraphQL with its own definition, and connected.
    assert!(server.is_connected(TOKEN));
    assert_eq!(server.registrations(), 1);
    let hash = server.agent_hash(TOKEN).expect("ensureAgent ran");
    assert_eq!(
        hash.len(),
        64,
        "implementAgent stored the agent's hash: {hash:?}"
    );
    let actions = server.actions();
    let offered = actions
        .iter()
        .find(|action| action.interface == "add")
        .expect("the agent offers add");
    assert!(offered.connected);
    assert_eq!(offered.definition["key"], "add");
    assert_eq!(offered.definition["kind"], "FUNCTION");
    assert_eq!(offered.definition["description"], "Add two numbers.");
    assert_eq!(offered.definition["returns"][0]["key"], "return0");

    // One task: PROGRESS(0), YIELD {"return0": 5}, COMPLETED.
    let events = add(&server, 2, 3).await;
    assert_eq!(yields(&events), vec![json!({"return0": 5})], "{events:?}");
    assert_eq!(
        events.last().map(|event| event.kind.as_str()),
        Some("COMPLETED"),
        "{events:?}"
    );
    println!("events of add(2, 3): {:?}", kinds(&events));

    // The CLI reads the definition the server lists for the Python agent's add.
    let url = server.url();
    let assigned = tokio::task::spawn_blocking(move || {
        Command::new(host)
            .args(["assign", "--url", &url, "add", "a=2", "b=3"])
            .stdin(Stdio::null())
            .output()
            .expect("rekuest-host runs")
    })
    .await
    .expect("joins");
    let stderr = String::from_utf8_lossy(&assigned.stderr);
    assert_eq!(assigned.status.code(), Some(0), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&assigned.stdout).trim(),
        r#"{"return0":5}"#,
        "{stderr}"
    );
    assert!(stderr.contains("COMPLETED"), "{stderr}");

    // 200 tasks, 32 in flight.
    const TOTAL: i64 = 200;
    const IN_FLIGHT: usize = 32;
    let started = Instant::now();
    let mut running = JoinSet::new();
    let mut completed = 0;
    for i in 0..TOTAL {
        if running.len() >= IN_FLIGHT {
            completed += check(running.join_next().await);
        }
        let server = Arc::clone(&server);
        running.spawn(async move { (i, add(&server, i, 1000).await) });
    }
    while !running.is_empty() {
        completed += check(running.join_next().await);
    }
    let elapsed = started.elapsed();
    assert_eq!(completed, TOTAL);
    println!(
        "{TOTAL} tasks, {IN_FLIGHT} in flight: {elapsed:?} ({:.0} tasks/s)",
        TOTAL as f64 / elapsed.as_secs_f64()
    );

    // Heartbeats were answered and the server never had to close the socket.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.heartbeats_answered() == 0 {
        assert!(Instant::now() < deadline, "no HEARTBEAT_ANSWER arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(server.is_connected(TOKEN));
    assert_eq!(server.registrations(), 1, "the agent reconnected");
    assert_eq!(server.close_codes(), Vec::<u16>::new());
}

/// Runs `python` with the official client's serialization script (`tests/peer/official_client.py`).
fn official_client(
    python: &Path,
    definitions: &Path,
    mode: &str,
    action: &str,
    stdin: &str,
) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peer/official_client.py");
    let mut child = Command::new(python)
        .arg(&script)
        .arg(definitions)
        .args([mode, action])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", python.display()));
    let mut input = child.stdin.take().expect("stdin is piped");
    std::io::Write::write_all(&mut input, stdin.as_bytes()).expect("the script reads stdin");
    drop(input);
    let output = child.wait_with_output().expect("the script runs");
    assert!(
        output.status.success(),
        "{mode} {action}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .trim()
        .to_string()
}

/// The official client's own serialization (rekuest-next 2.3.1, imported from
/// `REKUEST_PEER_PYTHON`) shrinks structure and model args that the host accepts, through the
/// served path (`dev --assign`), and expands the host's returns into the client's objects.
#[test]
fn the_official_clients_structures_round_trip_through_the_host() {
    let Some(python) = std::env::var_os("REKUEST_PEER_PYTHON").map(PathBuf::from) else {
        assert!(
            !on_ci(),
            "CI must run the official client's structures test"
        );
        println!("skipped: set REKUEST_PEER_PYTHON (see the_python_agent_serves_add)");
        return;
    };
    let host = rekuest_host_tests::host_binary();
    let structures = rekuest_host_tests::component("structures");
    let run_host = |args: &[&str]| {
        let output = Command::new(&host)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("the host runs");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8")
    };
    let component = structures.to_str().expect("UTF-8 path");
    let definitions = std::env::temp_dir().join(format!(
        "rekuest-host-official-client-{}.json",
        std::process::id()
    ));
    std::fs::write(&definitions, run_host(&["inspect", component, "--json"]))
        .expect("the definitions are written");
    for (action, expanded) in [
        ("crop", "[Image(id=42010)]"),
        (
            "label",
            "[[Labelled(image=Image(id=1), label='a'), Labelled(image=Image(id=2), label='b')]]",
        ),
        ("by_label", "[{'a': Image(id=1), 'b': Image(id=2)}]"),
    ] {
        let args = official_client(&python, &definitions, "shrink", action, "");
        let returns = run_host(&[
            "dev",
            component,
            "--listen",
            "127.0.0.1:0",
            "--assign",
            action,
            "--args-json",
            &args,
        ]);
        let got = official_client(&python, &definitions, "expand", action, &returns);
        assert_eq!(
            got, expanded,
            "{action}: sent {args}, the host returned {returns}"
        );
    }
    let _ = std::fs::remove_file(&definitions);
}

/// Whether this runs under CI (`CI` set to anything but empty, `false` or `0`).
fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !matches!(value.trim(), "" | "false" | "0"))
}

/// Checks one finished `add(i, 1000)` task; returns 1.
fn check(joined: Option<Result<(i64, Vec<ServerEvent>), tokio::task::JoinError>>) -> i64 {
    let (i, events) = joined
        .expect("a task runs")
        .expect("the task did not panic");
    assert_eq!(
        yields(&events),
        vec![json!({"return0": i + 1000})],
        "task {i}: {events:?}"
    );
    assert_eq!(
        events.last().map(|event| event.kind.as_str()),
        Some("COMPLETED"),
        "task {i}: {events:?}"
    );
    1
}
