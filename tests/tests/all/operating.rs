//! Operating `rekuest-host run` as a lab service, through the binary: `/metrics` and
//! `/healthz`, JSON logs, the per-task log line, SIGHUP reloads, and `dev --watch`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::serve_support::*;
use rekuest_host::devserver::{Control, DevServer};
use serde_json::{Value, json};

/// A scratch directory of its own for each test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rekuest-operating-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Replaces `to` with a copy of `from` in one step (as a build that writes and renames).
fn replace_file(from: &Path, to: &Path) {
    let staging = to.with_extension("staging");
    std::fs::copy(from, &staging).expect("copies");
    std::fs::rename(&staging, to).expect("renames");
}

/// A `rekuest-host` process whose stderr goes to a file the test reads as it grows.
struct Host {
    child: Child,
    log: PathBuf,
}

impl Host {
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Host {
        let log = dir.join("host.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = host_process(args)
            .env_remove("REKUEST_HOST_LOG")
            .env_remove("REKUEST_HOST_LOG_FORMAT")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starts");
        Host { child, log }
    }

    /// `rekuest-host run --config FILE` plus `extra`.
    fn run(dir: &Path, config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Host {
        let config = config.to_str().expect("utf-8 path");
        Host::start(
            dir,
            &[&["run", "--config", config][..], extra].concat(),
            env,
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for a log line containing `text`; returns it.
    async fn line(&self, text: &str) -> String {
        let mut found = None;
        until(&format!("a log line with `{text}`"), || {
            found = self
                .log()
                .lines()
                .find(|l| l.contains(text))
                .map(String::from);
            found.is_some()
        })
        .await;
        found.unwrap_or_default()
    }

    /// Waits for the `count`-th log line containing `text`.
    async fn lines(&self, text: &str, count: usize) {
        until(&format!("{count} log line(s) with `{text}`"), || {
            self.log().lines().filter(|l| l.contains(text)).count() >= count
        })
        .await;
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// SIGTERM, then waits for a clean exit.
    async fn stop(mut self) -> String {
        self.signal("TERM");
        let status = bounded("the host to exit", async {
            loop {
                if let Some(status) = self.child.try_wait().expect("waits") {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let log = self.log();
        assert!(status.success(), "{status}: {log}");
        log
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config file serving `components` (TOML lines each) from `server`.
fn config(dir: &Path, server: &DevServer, components: &str) -> PathBuf {
    let path = dir.join("rekuest-host.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nurl = \"{}\"\ntoken = \"{TOKEN}\"\nname = \"operated\"\n\n[agent]\nshutdown_grace = \"5s\"\n\n{components}",
            server.url()
        ),
    )
    .expect("writes the config");
    path
}

fn component_section(path: &Path, extra: &str) -> String {
    format!(
        "[[component]]\npath = {:?}\n{extra}\n",
        path.display().to_string()
    )
}

/// One HTTP/1.1 GET on loopback: the status and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connects to the metrics address");
        stream
            .set_read_timeout(Some(WAIT))
            .expect("sets a read timeout");
        stream.write_all(request.as_bytes()).expect("sends");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("reads");
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("a status line");
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default();
        (status, body)
    })
    .await
    .expect("joins")
}

/// The value of the series line `series` (name and labels exactly), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|value| value.parse().ok())
    })
}

/// The address `run` logged for its metrics.
async fn metrics_addr(host: &Host) -> SocketAddr {
    let line = host.line("metrics on http://").await;
    line.split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in: {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_every_outcome_and_health_follows_the_server() {
    let dir = scratch("metrics");
    let mut server = DevServer::start(fast_server()).await.expect("server");
    let components = [
        component_section(&example("math"), "fuel = 1_000_000_000"),
        component_section(
            &example("hostile"),
            "[component.actions.spin]\ntimeout = \"300ms\"",
        ),
    ]
    .concat();
    let config = config(&dir, &server, &components);
    let host = Host::run(&dir, &config, &["--metrics", "127.0.0.1:0"], &[]);
    let addr = metrics_addr(&host).await;
    until("the agent to connect", || server.is_connected(TOKEN)).await;
    host.line("ready on").await;
    assert_eq!(get(addr, "/healthz").await.0, 200);

    assert_eq!(
        terminal(&run(&server, "add", json!({"a": 1, "b": 2})).await).kind,
        "COMPLETED"
    );
    assert_eq!(
        terminal(&run(&server, "divide", json!({"a": 1, "b": 0})).await).kind,
        "FAILED"
    );
    assert_eq!(
        terminal(&run(&server, "panic", json!({"message": "boom"})).await).kind,
        "CRITICAL"
    );
    assert_eq!(
        terminal(&run(&server, "spin", json!({})).await).kind,
        "FAILED"
    );
    let sleeping = server
        .assign("sleep", args(json!({"seconds": 60.0})))
        .expect("assigns");
    event(&server, &sleeping, "STARTED").await;
    let (status, during) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(&during, "rekuest_host_tasks_running"),
        Some(1.0),
        "{during}"
    );
    server.control(&sleeping, Control::Cancel).expect("cancels");
    assert_eq!(
        terminal(&finish(&server, &sleeping).await).kind,
        "CANCELLED"
    );

    let (_, metrics) = get(addr, "/metrics").await;
    for (series, value) in [
        (
            r#"rekuest_host_tasks_total{action="add",outcome="completed"}"#,
            1.0,
        ),
        (
            r#"rekuest_host_tasks_total{action="divide",outcome="failed"}"#,
            1.0,
        ),
        (
            r#"rekuest_host_tasks_total{action="panic",outcome="critical"}"#,
            1.0,
        ),
        (
            r#"rekuest_host_tasks_total{action="spin",outcome="failed"}"#,
            1.0,
        ),
        (
            r#"rekuest_host_tasks_total{action="sleep",outcome="cancelled"}"#,
            1.0,
        ),
        (
            r#"rekuest_host_tasks_total{action="add",outcome="failed"}"#,
            0.0,
        ),
        (r#"rekuest_host_limit_hits_total{kind="timeout"}"#, 1.0),
        (r#"rekuest_host_limit_hits_total{kind="memory"}"#, 0.0),
        (
            r#"rekuest_host_task_duration_seconds_count{action="add"}"#,
            1.0,
        ),
        ("rekuest_host_tasks_running", 0.0),
        ("rekuest_host_tasks_queued", 0.0),
        ("rekuest_host_connected", 1.0),
        ("rekuest_host_registered", 1.0),
        ("rekuest_host_reconnects_total", 0.0),
    ] {
        assert_eq!(
            sample(&metrics, series),
            Some(value),
            "{series} in:\n{metrics}"
        );
    }
    let fuel = sample(&metrics, r#"rekuest_host_fuel_used_total{action="add"}"#);
    assert!(fuel.is_some_and(|fuel| fuel > 0.0), "{metrics}");
    let memory = sample(
        &metrics,
        r#"rekuest_host_task_peak_memory_bytes{action="add"}"#,
    );
    assert!(memory.is_some_and(|bytes| bytes >= 65536.0), "{metrics}");
    assert!(
        metrics.contains("rekuest_host_build_info{version=\"")
            && metrics.contains("wit_world=\"arkitekt:rekuest/action-component@0.1.0\"")
            && metrics.contains("wasmtime=\"48."),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "rekuest_host_reports_unacknowledged").is_some(),
        "{metrics}"
    );

    // The server goes away: health flips to 503, and back once the agent is registered again.
    let restarting = tokio::spawn(server.restart(Duration::from_secs(2)));
    bounded("/healthz to answer 503", async {
        while get(addr, "/healthz").await.0 != 503 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    server = restarting.await.expect("joins").expect("restarts");
    bounded("/healthz to answer 200 again", async {
        while get(addr, "/healthz").await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let (_, metrics) = get(addr, "/metrics").await;
    assert_eq!(
        sample(&metrics, "rekuest_host_reconnects_total"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(get(addr, "/nothing").await.0, 404);
    drop(server);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_parse_carry_the_task_and_never_a_token() {
    let dir = scratch("json");
    let server = DevServer::start(fast_server()).await.expect("server");
    let config = config(&dir, &server, &component_section(&example("math"), ""));
    let host = Host::run(
        &dir,
        &config,
        &["--log-format", "json"],
        &[("REKUEST_HOST_LOG", "debug")],
    );
    until("the agent to connect", || server.is_connected(TOKEN)).await;
    let task = server
        .assign("add", args(json!({"a": 40, "b": 2})))
        .expect("assigns");
    assert_eq!(terminal(&finish(&server, &task).await).kind, "COMPLETED");
    host.line("task finished").await;
    let log = host.stop().await;

    let records: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}")))
        .collect();
    let finished = records
        .iter()
        .find(|record| record["message"] == "task finished")
        .unwrap_or_else(|| panic!("no per-task record in {log}"));
    assert_eq!(finished["task"], json!(task), "{finished}");
    assert_eq!(finished["action"], "add", "{finished}");
    assert_eq!(finished["outcome"], "COMPLETED", "{finished}");
    assert!(finished["duration"].is_string(), "{finished}");
    // Lines logged inside the task's span name it too.
    assert!(
        records
            .iter()
            .filter(|record| record["span"]["task"] == json!(task))
            .all(|record| record["span"]["action"] == "add"),
        "{log}"
    );
    assert!(records.iter().any(|record| {
        record["message"]
            .as_str()
            .is_some_and(|message| message.contains("ready on"))
    }));
    assert!(!log.contains(TOKEN), "the agent's token was logged:\n{log}");
    // The local server's provenance token of the task.
    assert!(
        !log.contains(&format!("dev-task-{task}")),
        "the task's token was logged:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_registers_a_changed_component_while_a_long_task_finishes_on_the_old_one() {
    let dir = scratch("sighup");
    let server = DevServer::start(fast_server()).await.expect("server");
    let served = dir.join("served.wasm");
    replace_file(&example("hostile"), &served);
    let config = config(&dir, &server, &component_section(&served, ""));
    let host = Host::run(&dir, &config, &[], &[]);
    until("the agent to connect", || server.is_connected(TOKEN)).await;
    let ready = host.line("ready on").await;
    assert!(
        ready.contains(&server.url()) && ready.contains("agent operated"),
        "{ready}"
    );
    let long = server
        .assign("sleep", args(json!({"seconds": 2.0})))
        .expect("assigns");
    event(&server, &long, "STARTED").await;

    replace_file(&example("math"), &served);
    host.signal("HUP");
    host.line("reloaded (SIGHUP)").await;
    let offered: Vec<String> = server
        .actions()
        .into_iter()
        .map(|action| action.interface)
        .collect();
    assert!(offered.iter().any(|action| action == "add"), "{offered:?}");
    assert!(
        !offered.iter().any(|action| action == "sleep"),
        "{offered:?}"
    );
    // The task that started on the old component finishes there.
    assert_eq!(terminal(&finish(&server, &long).await).kind, "COMPLETED");
    let added = run(&server, "add", json!({"a": 2, "b": 3})).await;
    assert_eq!(yields(&added), [return0(json!(5))]);

    // One line per finished task: action, task id, outcome, duration.
    let line = host.line(&format!("task={long}")).await;
    assert!(
        line.contains("task finished")
            && line.contains("action=sleep")
            && line.contains("outcome=\"COMPLETED\"")
            && line.contains("duration="),
        "{line}"
    );
    let log = host.stop().await;
    assert!(log.contains("shutting down"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_or_component_on_sighup_is_refused_and_serving_continues() {
    let dir = scratch("broken");
    let server = DevServer::start(fast_server()).await.expect("server");
    let served = dir.join("served.wasm");
    replace_file(&example("math"), &served);
    let config = config(&dir, &server, &component_section(&served, ""));
    let good = std::fs::read_to_string(&config).expect("reads");
    let host = Host::run(&dir, &config, &[], &[]);
    until("the agent to connect", || server.is_connected(TOKEN)).await;
    host.line("ready on").await;

    std::fs::write(&config, format!("{good}memory = \"lots\"\n")).expect("writes");
    host.signal("HUP");
    let refused = host.line("reload (SIGHUP) refused").await;
    assert!(
        refused.contains("rekuest-host.toml") && refused.contains("memory"),
        "{refused}"
    );
    assert!(
        refused.contains("still serving the previous components"),
        "{refused}"
    );
    assert_eq!(
        yields(&run(&server, "add", json!({"a": 1, "b": 1})).await),
        [return0(json!(2))]
    );

    std::fs::write(&config, &good).expect("writes");
    std::fs::write(&served, b"not a component").expect("writes");
    host.signal("HUP");
    host.lines("reload (SIGHUP) refused", 2).await;
    assert_eq!(
        yields(&run(&server, "add", json!({"a": 2, "b": 2})).await),
        [return0(json!(4))]
    );
    assert!(
        server
            .actions()
            .iter()
            .any(|action| action.interface == "add"),
        "the registration was kept"
    );
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_watch_serves_a_rebuilt_component() {
    let dir = scratch("watch");
    let served = dir.join("served.wasm");
    replace_file(&example("math"), &served);
    let host = Host::start(
        &dir,
        &[
            "dev",
            served.to_str().expect("utf-8 path"),
            "--watch",
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let line = host.line("local rekuest server on http://").await;
    assert!(line.contains("serving as agent dev"), "{line}");
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .expect("the server's URL")
        .to_string();
    let assign = |words: &'static [&'static str]| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            crate::serve_support::host(&[&["assign", "--url", &url][..], words].concat())
        })
    };
    let added = assign(&["add", "a=1", "b=2"]).await.expect("joins");
    assert_eq!(added.status.code(), Some(0));

    replace_file(&example("text"), &served);
    host.line("reloaded (a component file changed)").await;
    let greeted = assign(&["greet", "name=lab"]).await.expect("joins");
    assert_eq!(
        String::from_utf8_lossy(&greeted.stdout).trim(),
        r#"{"return0":"Hello, lab!"}"#,
        "{}",
        String::from_utf8_lossy(&greeted.stderr)
    );
    // A half-written or broken file is refused; the last good component keeps serving.
    std::fs::write(&served, b"\0asm broken").expect("writes");
    host.line("reload (a component file changed) refused").await;
    let again = assign(&["greet", "name=lab"]).await.expect("joins");
    assert_eq!(again.status.code(), Some(0));
    host.stop().await;
}
