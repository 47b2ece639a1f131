//! The official client (`rekuest-next` 2.3.1, unmodified, driven by
//! `tests/peer/official_caller.py`) calls actions served by this host on the local server:
//! it finds them by key, assigns over GraphQL and follows `mytasks` over WebSocket
//! (`graphql-ws`). `add` gives 42, the generator `count` streams its values, a failing
//! `divide` raises the client's `ErrorCallError`, and cancelling a running `ticks` ends the
//! task CANCELLED on the server.
//!
//! Needs `REKUEST_PEER_PYTHON` (see `python_peer.rs`); without it the test prints a skip
//! line, except under CI, where it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::serve_support::*;
use rekuest_host::protocol::Endpoints;

/// The longest the script may take (imports included) on a loaded machine.
const SCRIPT_WAIT: Duration = Duration::from_secs(300);

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !matches!(value.trim(), "" | "false" | "0"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_calls_actions_on_the_local_server() {
    let Some(python) = std::env::var_os("REKUEST_PEER_PYTHON").map(PathBuf::from) else {
        let needed = "REKUEST_PEER_PYTHON naming a Python with rekuest-next==2.3.1 \
                      (and aiohttp, attrs, certifi) installed";
        assert!(
            !on_ci(),
            "CI must run the official client test, but there is no {needed} (.ci/run makes one)"
        );
        println!("skipped: set {needed}");
        return;
    };
    let (server, serving) = serve(&["math", "generator"]).await;
    let endpoints = Endpoints::from_base(&server.url()).expect("the server's URL is valid");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peer/official_caller.py");
    let subscriptions = endpoints.ws("graphql");
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .args(["--graphql", endpoints.graphql.as_str()])
        .args(["--subscriptions", subscriptions.as_str()])
        .args(["--token", "python-caller"])
        .stdin(Stdio::null());
    let run = tokio::task::spawn_blocking(move || command.output());
    let output = tokio::time::timeout(SCRIPT_WAIT, run)
        .await
        .expect("the script ended in time")
        .expect("joins")
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let steps: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let step = |name: &str| -> &Value {
        steps
            .iter()
            .find(|step| step["step"] == name)
            .unwrap_or_else(|| panic!("no step {name} in {stdout}\n{stderr}"))
    };
    assert_eq!(step("add")["value"], json!(42));
    assert_eq!(step("count")["value"], json!([1, 2, 3]));
    let divided = step("divide");
    assert!(
        divided["error"]
            .as_str()
            .is_some_and(|error| !error.is_empty()),
        "divide(1, 0) must raise the client's ErrorCallError: {divided}"
    );
    assert!(
        step("cancel")["ticks"]
            .as_u64()
            .is_some_and(|ticks| ticks >= 1)
    );

    // The server saw the cancel: some ticks task yielded, then ended CANCELLED.
    let cancelled = (1..200)
        .filter_map(|id| server.task(&id.to_string()))
        .any(|task| {
            task.events.iter().any(|event| event.kind == "YIELD")
                && task.events.last().map(|event| event.kind.as_str()) == Some("CANCELLED")
        });
    assert!(cancelled, "no task ended CANCELLED on the server\n{stderr}");
    serving.shutdown().await.expect("clean shutdown");
}
