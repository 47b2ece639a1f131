//! The processes a benchmark talks to: a `rekuest-host run` agent and the Python peer agent,
//! both serving a local server started in this process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rekuest_host::devserver::{DevServer, DevServerConfig};
use serde_json::{Map, Value};

/// A local server on a free loopback port.
pub async fn start_server() -> Arc<DevServer> {
    Arc::new(
        DevServer::start(DevServerConfig::default())
            .await
            .expect("the local server starts"),
    )
}

/// A child process killed when dropped.
pub struct Agent {
    child: Child,
}

impl Agent {
    /// Starts `rekuest-host run` serving `components` on `server` as the agent of `token`.
    pub fn host(
        binary: &Path,
        server: &DevServer,
        token: &str,
        components: &[PathBuf],
        concurrency: usize,
        cache_dir: &Path,
    ) -> Self {
        let child = Command::new(binary)
            .arg("run")
            .args(["--url", &server.url(), "--token", token])
            .args(["--name", token, "--concurrency", &concurrency.to_string()])
            .arg("--cache-dir")
            .arg(cache_dir)
            .args(components)
            .env("REKUEST_HOST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rekuest-host starts");
        Agent { child }
    }

    /// Starts the reference Python agent (`tests/peer/python_agent.py`) with `python` on the
    /// server at `url`, and waits for it to print READY (blocking: call it off the runtime).
    pub fn python(python: &Path, script: &Path, url: &str, token: &str) -> Self {
        let endpoints = rekuest_host::protocol::Endpoints::from_base(url)
            .expect("the local server's URL is valid");
        let mut child = Command::new(python)
            .arg(script)
            .args(["--graphql", endpoints.graphql.as_str()])
            .args(["--agent-socket", endpoints.agent_socket.as_str()])
            .args(["--token", token])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the Python agent starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let ready = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.trim() == "READY");
        assert!(ready, "the Python agent exited before it was READY");
        Agent { child }
    }

    /// The CPU time (user + system) this process and its descendants have used so far, from
    /// /proc (descendants too, so a wrapper script given as `BENCH_HOST` counts its agent).
    pub fn cpu_time(&self) -> Duration {
        let mut ticks = 0;
        let mut pending = vec![self.child.id()];
        while let Some(pid) = pending.pop() {
            ticks += cpu_ticks(&pid.to_string());
            let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
                .into_iter()
                .flatten();
            for thread in threads.flatten() {
                let children = std::fs::read_to_string(thread.path().join("children"));
                pending.extend(
                    children
                        .iter()
                        .flat_map(|text| text.split_whitespace())
                        .filter_map(|child| child.parse::<u32>().ok()),
                );
            }
        }
        ticks_to_duration(ticks)
    }

    /// The resident set size, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        rekuest_host_tests::resident_bytes(&self.child.id().to_string())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the agent of `token` is connected (polling every 50 µs on this thread, so the
/// moment is precise); returns when it happened.
pub fn wait_connected(server: &DevServer, token: &str, timeout: Duration) -> Instant {
    let deadline = Instant::now() + timeout;
    while !server.is_connected(token) {
        assert!(
            Instant::now() < deadline,
            "the agent '{token}' did not connect within {timeout:?}"
        );
        std::thread::sleep(Duration::from_micros(50));
    }
    Instant::now()
}

/// What a caller saw of one task.
pub struct Finished {
    /// The returns of each YIELD.
    pub yields: Vec<Value>,
}

/// Assigns `action` and follows it to its terminal event, which must be COMPLETED.
pub async fn assign_and_wait(
    server: &DevServer,
    action: &str,
    args: Map<String, Value>,
) -> Finished {
    let task = server
        .assign(action, args)
        .unwrap_or_else(|error| panic!("{action} cannot be assigned: {error}"));
    let events = server
        .watch(&task)
        .expect("the task exists")
        .until_end()
        .await;
    let last = events.last().map(|event| event.kind.as_str());
    assert_eq!(last, Some("COMPLETED"), "{action}: {events:?}");
    let yields = events
        .iter()
        .filter(|event| event.kind == "YIELD")
        .map(|event| event.fields.get("returns").cloned().unwrap_or(Value::Null))
        .collect();
    Finished { yields }
}

/// The CPU time (user + system) this benchmark process has used so far: the local server and
/// the callers driving it (agents are other processes and not counted).
pub fn own_cpu_time() -> Duration {
    ticks_to_duration(cpu_ticks("self"))
}

/// User + system CPU ticks of process `pid` ("self" for this one), from /proc; 0 when it is gone.
fn cpu_ticks(pid: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    [11, 12]
        .iter()
        .filter_map(|&index| fields.get(index)?.parse::<u64>().ok())
        .sum()
}

/// /proc's USER_HZ ticks (100 per second on Linux) as a duration.
fn ticks_to_duration(ticks: u64) -> Duration {
    const TICKS_PER_SECOND: u64 = 100;
    Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND)
}
