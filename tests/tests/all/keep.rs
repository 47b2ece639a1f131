//! What outlives a task: memory shelves (shelve, use the reference, COLLECT, a full shelf, a
//! reference from elsewhere), agent states (SESSION_INIT, STATE_PATCH, persistence across a
//! restart) and locks (tasks sharing one take turns), end to end through the local server; the
//! shelf and the count with the Rust and the Python twin of each example.

use serde_json::{Value, json};

use crate::serve_support::*;
use crate::twins::sdks;
use rekuest_host::devserver::DevServer;
use rekuest_host_tests::Sdk;

/// The envelope of the first return of a finished task.
fn reference(events: &[rekuest_host::devserver::ServerEvent]) -> Value {
    let returns = yields(events);
    assert_eq!(returns.len(), 1, "{events:?}");
    let envelope = returns[0]["return0"].clone();
    assert_eq!(
        envelope["__identifier"], "@rekuest-host/shelved",
        "{envelope}"
    );
    assert!(envelope["object"].is_string(), "{envelope}");
    envelope
}

async fn shelve(server: &DevServer, n: i64) -> Value {
    let events = run(server, "make_numbers", json!({ "n": n })).await;
    assert_eq!(terminal(&events).kind, "COMPLETED", "{events:?}");
    reference(&events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shelved_list_comes_back_in_a_later_task_until_it_is_collected() {
    for sdk in sdks() {
        shelved_list_comes_back_until_collected(sdk).await;
    }
}

/// Shelve, use, COLLECT and shelve again with the `sdk` twin of `shelf`.
async fn shelved_list_comes_back_until_collected(sdk: Sdk) {
    let (server, serving) = serve_twins(sdk, &["shelf"]).await;
    let numbers = shelve(&server, 10).await;
    let drawer = numbers["object"].as_str().expect("drawer").to_string();
    assert_eq!(server.drawers(TOKEN), vec![drawer.clone()]);

    let events = run(&server, "sum_numbers", json!({ "numbers": numbers })).await;
    assert_eq!(yields(&events), vec![return0(json!(45))], "{events:?}");
    // Using a reference does not use it up.
    let again = run(&server, "sum_numbers", json!({ "numbers": numbers })).await;
    assert_eq!(yields(&again), vec![return0(json!(45))], "{again:?}");

    server
        .collect(std::slice::from_ref(&drawer))
        .expect("collects");
    assert!(server.drawers(TOKEN).is_empty());
    // COLLECT went out before this ASSIGN, on the same socket.
    let events = run(&server, "sum_numbers", json!({ "numbers": numbers })).await;
    let failed = terminal(&events);
    assert_eq!(failed.kind, "FAILED", "{events:?}");
    assert!(
        error(failed).contains(&format!("no drawer '{drawer}' on this agent")),
        "{}",
        error(failed)
    );
    // The host keeps serving.
    let fresh = shelve(&server, 3).await;
    let events = run(&server, "sum_numbers", json!({ "numbers": fresh })).await;
    assert_eq!(yields(&events), vec![return0(json!(3))]);
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_shelf_fails_the_shelving_task_and_evicts_nothing() {
    let server = DevServer::start(fast_server()).await.expect("server");
    let mut config = fast_agent(&server.url());
    config.keep.shelf_drawers = 2;
    config.keep.shelf_bytes = 1024;
    let serving = Serving::start(config, components(&["shelf"]).await).await;
    until("the agent to connect", || server.is_connected(TOKEN)).await;

    let first = shelve(&server, 4).await;
    // 0..300 is more than 1 KiB of JSON.
    let events = run(&server, "make_numbers", json!({ "n": 300 })).await;
    let failed = terminal(&events);
    assert_eq!(failed.kind, "FAILED", "{events:?}");
    assert!(
        error(failed).contains("the shelf is full") && error(failed).contains("shelf_bytes"),
        "{}",
        error(failed)
    );
    let second = shelve(&server, 5).await;
    let events = run(&server, "make_numbers", json!({ "n": 1 })).await;
    let failed = terminal(&events);
    assert_eq!(failed.kind, "FAILED", "{events:?}");
    assert!(
        error(failed).contains("the shelf is full: this agent keeps 2 drawer(s)")
            && error(failed).contains("nothing was evicted"),
        "{}",
        error(failed)
    );
    for (numbers, sum) in [(first, 6), (second, 10)] {
        let events = run(&server, "sum_numbers", json!({ "numbers": numbers })).await;
        assert_eq!(yields(&events), vec![return0(json!(sum))], "{events:?}");
    }
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_over_the_agents_cap_fails_the_task_and_the_state_stays() {
    let server = DevServer::start(fast_server()).await.expect("server");
    let mut config = fast_agent(&server.url());
    // `{"count":2}` is 11 bytes of JSON.
    config.caps.state_bytes = 8;
    let serving = Serving::start(config, components(&["counter"]).await).await;
    until("the agent to connect", || server.is_connected(TOKEN)).await;

    let events = run(&server, "increment", json!({"by": 2})).await;
    let failed = terminal(&events);
    assert_eq!(failed.kind, "FAILED", "{events:?}");
    assert!(
        error(failed).contains("the state 'counter' would be 11 B; at most 8 B is allowed"),
        "{}",
        error(failed)
    );
    assert!(frames_of(&server, "STATE_PATCH").is_empty());
    assert_eq!(
        server.agent_state(TOKEN, "counter"),
        Some(json!({"count": 0}))
    );
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_from_another_agent_fails_clearly() {
    let (server, serving) = serve(&["shelf"]).await;
    let (elsewhere, other) = serve(&["shelf"]).await;
    let foreign = shelve(&elsewhere, 10).await;
    let drawer = foreign["object"].as_str().expect("drawer").to_string();
    let _own = shelve(&server, 2).await;

    for numbers in [foreign.clone(), json!("nonsense")] {
        let events = run(&server, "sum_numbers", json!({ "numbers": numbers })).await;
        let failed = terminal(&events);
        assert_eq!(failed.kind, "FAILED", "{events:?}");
        assert!(
            error(failed).contains("it was collected, or it was shelved by another agent"),
            "{}",
            error(failed)
        );
    }
    // The other agent still has its drawer.
    let events = run(&elsewhere, "sum_numbers", json!({ "numbers": foreign })).await;
    assert_eq!(yields(&events), vec![return0(json!(45))], "{drawer}");
    serving.shutdown().await.expect("clean shutdown");
    other.shutdown().await.expect("clean shutdown");
}

/// The frames of `kind` the server received.
fn frames_of(server: &DevServer, kind: &str) -> Vec<Value> {
    server
        .keep_frames(TOKEN)
        .into_iter()
        .filter(|frame| frame["type"] == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increment_keeps_a_running_count_and_streams_it_as_patches() {
    for sdk in sdks() {
        running_count_streams_as_patches(sdk).await;
    }
}

/// SESSION_INIT and the STATE_PATCH frames of two increments of the `sdk` twin of `counter`.
async fn running_count_streams_as_patches(sdk: Sdk) {
    let (server, serving) = serve_twins(sdk, &["counter"]).await;
    until("SESSION_INIT", || {
        !frames_of(&server, "SESSION_INIT").is_empty()
    })
    .await;
    let init = &frames_of(&server, "SESSION_INIT")[0];
    assert_eq!(init["states"], json!({"counter": {"count": 0}}), "{init}");
    assert_eq!(init["session_id"], serving.agent.session_id());

    let first_task = server
        .assign("increment", args(json!({"by": 2})))
        .expect("assigns");
    let first = finish(&server, &first_task).await;
    assert_eq!(yields(&first), vec![return0(json!(2))], "{first:?}");
    let second = run(&server, "increment", json!({"by": 3})).await;
    assert_eq!(yields(&second), vec![return0(json!(5))], "{second:?}");

    until("two STATE_PATCH frames", || {
        frames_of(&server, "STATE_PATCH").len() == 2
    })
    .await;
    let patches = frames_of(&server, "STATE_PATCH");
    let seen: Vec<_> = patches
        .iter()
        .map(|patch| {
            (
                patch["global_rev"].clone(),
                patch["op"].clone(),
                patch["path"].clone(),
                patch["value"].clone(),
                patch["old_value"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (
                json!(1),
                json!("replace"),
                json!("/count"),
                json!(2),
                json!(0)
            ),
            (
                json!(2),
                json!("replace"),
                json!("/count"),
                json!(5),
                json!(2)
            ),
        ]
    );
    assert_eq!(patches[0]["state_name"], "counter");
    assert_eq!(patches[0]["task_id"], first_task.as_str());
    assert_eq!(
        server.agent_state(TOKEN, "counter"),
        Some(json!({"count": 5}))
    );
    assert_eq!(frames_of(&server, "SESSION_INIT").len(), 1);
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_sharing_a_lock_run_one_at_a_time() {
    let (server, serving) = serve(&["counter"]).await;
    let tasks: Vec<String> = (0..8)
        .map(|_| {
            server
                .assign("increment", args(json!({"by": 1})))
                .expect("assigns")
        })
        .collect();
    let mut counts = Vec::new();
    for task in &tasks {
        let events = finish(&server, task).await;
        counts.push(yields(&events)[0]["return0"].as_i64().expect("a count"));
    }
    counts.sort_unstable();
    // Every increment saw the one before it: no update was lost.
    assert_eq!(counts, (1..=8).collect::<Vec<i64>>());

    until("every UNLOCK", || frames_of(&server, "UNLOCK").len() == 8).await;
    let locks: Vec<Value> = server
        .keep_frames(TOKEN)
        .into_iter()
        .filter(|frame| frame["type"] == "LOCK" || frame["type"] == "UNLOCK")
        .collect();
    assert_eq!(locks.len(), 16, "{locks:?}");
    for (index, pair) in locks.chunks(2).enumerate() {
        assert_eq!(
            (&pair[0]["type"], &pair[1]["type"]),
            (&json!("LOCK"), &json!("UNLOCK")),
            "the lock was taken twice at once around frame {index}: {locks:?}"
        );
        assert_eq!(pair[0]["key"], "counter");
    }
    let holders: std::collections::HashSet<&str> = locks
        .iter()
        .filter_map(|frame| frame["task"].as_str())
        .collect();
    assert_eq!(holders.len(), 8);
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_state_file_resumes_the_count() {
    let directory = std::env::temp_dir().join(format!("rekuest-keep-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("temp dir");
    let state_file = directory.join("states.json");
    let _ = std::fs::remove_file(&state_file);
    let server = DevServer::start(fast_server()).await.expect("server");
    let start = || {
        let mut config = fast_agent(&server.url());
        config.keep.state_file = Some(state_file.clone());
        config
    };

    let serving = Serving::start(start(), components(&["counter"]).await).await;
    until("the agent to connect", || server.is_connected(TOKEN)).await;
    let events = run(&server, "increment", json!({"by": 4})).await;
    assert_eq!(yields(&events), vec![return0(json!(4))]);
    serving.shutdown().await.expect("clean shutdown");
    until("the agent to go", || !server.is_connected(TOKEN)).await;

    let serving = Serving::start(start(), components(&["counter"]).await).await;
    until("the agent to connect again", || server.is_connected(TOKEN)).await;
    until("a second SESSION_INIT", || {
        frames_of(&server, "SESSION_INIT").len() == 2
    })
    .await;
    assert_eq!(
        frames_of(&server, "SESSION_INIT")[1]["states"],
        json!({"counter": {"count": 4}})
    );
    let events = run(&server, "increment", json!({"by": 1})).await;
    assert_eq!(yields(&events), vec![return0(json!(5))]);
    serving.shutdown().await.expect("clean shutdown");
    let _ = std::fs::remove_dir_all(&directory);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shelves_work_through_assign_and_die_with_a_dev_process() {
    let (server, serving) = serve(&["shelf"]).await;
    let url = server.url();
    let made = tokio::task::spawn_blocking(move || {
        host(&["assign", "--url", &url, "make_numbers", "n=10"])
    })
    .await
    .expect("joins");
    assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
    let returns: Value = serde_json::from_str(text(&made.stdout).trim()).expect("JSON returns");
    let numbers = returns["return0"].to_string();
    assert!(numbers.contains("@rekuest-host/shelved"), "{numbers}");
    let url = server.url();
    let summed = tokio::task::spawn_blocking(move || {
        host(&[
            "assign",
            "--url",
            &url,
            "sum_numbers",
            &format!("numbers={numbers}"),
        ])
    })
    .await
    .expect("joins");
    assert_eq!(summed.status.code(), Some(0), "{}", text(&summed.stderr));
    assert_eq!(text(&summed.stdout).trim(), r#"{"return0":45}"#);
    serving.shutdown().await.expect("clean shutdown");

    // `dev` keeps its drawers only while it runs: a reference from an earlier run fails.
    let shelf = example("shelf");
    let shelf = shelf.to_str().expect("utf-8 path").to_string();
    let dev = move |words: &[&str]| {
        host(
            &[
                &["dev", shelf.as_str(), "--listen", "127.0.0.1:0", "--assign"][..],
                words,
            ]
            .concat(),
        )
    };
    let made = tokio::task::spawn_blocking({
        let dev = dev.clone();
        move || dev(&["make_numbers", "n=3"])
    })
    .await
    .expect("joins");
    assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
    let returns: Value = serde_json::from_str(text(&made.stdout).trim()).expect("JSON returns");
    let numbers = returns["return0"].to_string();
    let later =
        tokio::task::spawn_blocking(move || dev(&["sum_numbers", &format!("numbers={numbers}")]))
            .await
            .expect("joins");
    assert_eq!(later.status.code(), Some(1), "{}", text(&later.stderr));
    assert!(
        text(&later.stderr).contains("an earlier run of this host"),
        "{}",
        text(&later.stderr)
    );
}
