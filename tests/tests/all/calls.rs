//! Actions calling actions: composition through dependency slots, failures and generators of
//! children, cancellation and timeouts passed on to children, and the call depth cap.

use std::time::Duration;

use serde_json::json;

use crate::serve_support::*;
use rekuest_host::config::ComponentSettings;
use rekuest_host::devserver::{Control, DevServer};
use rekuest_host::runtime::{Limits, MAX_CALL_DEPTH};
use rekuest_host_tests::host_command;

use crate::twins::{cached_example, sdks};

#[test]
fn dev_serves_a_pipeline_and_its_dependency_together() {
    for sdk in sdks() {
        // Either twin composes with the Rust `math` it depends on.
        let output = host_command()
            .args(["dev", "--listen", "127.0.0.1:0"])
            .arg(example("math"))
            .arg(cached_example(sdk, "pipeline"))
            .args(["--assign", "double_sum", "a=1", "b=2"])
            .output()
            .expect("rekuest-host runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        assert_eq!(stdout.trim(), r#"{"return0":6}"#, "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_childs_failure_reaches_the_parent_as_an_error_it_handles() {
    let (server, serving) = serve(&["math", "pipeline"]).await;
    let task = server
        .assign("safe_divide", args(json!({"a": 1.0, "b": 0.0})))
        .expect("assigns");
    let events = finish(&server, &task).await;
    assert_eq!(terminal(&events).kind, "COMPLETED", "{events:?}");
    assert_eq!(
        yields(&events),
        [return0(json!("1 / 0 is undefined: cannot divide by zero"))]
    );
    let children = server.children(&task);
    assert_eq!(children.len(), 1, "{children:?}");
    let child = finish(&server, &children[0]).await;
    assert_eq!(terminal(&child).kind, "FAILED");
    assert_eq!(error(terminal(&child)), "cannot divide by zero");
    // A child that completes gives its returns.
    let events = run(&server, "double_sum", json!({"a": 20, "b": 1})).await;
    assert_eq!(yields(&events), [return0(json!(42))]);
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generator_child_is_iterated_item_by_item() {
    let (server, serving) = serve(&["generator", "pipeline"]).await;
    let task = server
        .assign("sum_count", args(json!({"n": 5})))
        .expect("assigns");
    let events = finish(&server, &task).await;
    assert_eq!(yields(&events), [return0(json!(15))], "{events:?}");
    let children = server.children(&task);
    let child = finish(&server, &children[0]).await;
    assert_eq!(yields(&child).len(), 5);
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_parent_cancels_its_running_child() {
    let (server, serving) = serve(&["hostile", "pipeline"]).await;
    let task = server
        .assign("wait_for", args(json!({"seconds": 600.0})))
        .expect("assigns");
    let child = child_started(&server, &task).await;
    server.control(&task, Control::Cancel).expect("cancels");
    let events = finish(&server, &task).await;
    assert_eq!(terminal(&events).kind, "CANCELLED", "{events:?}");
    let child_events = finish(&server, &child).await;
    assert_eq!(
        terminal(&child_events).kind,
        "CANCELLED",
        "{child_events:?}"
    );
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_the_parent_pauses_its_child_and_resume_continues_both() {
    let (server, serving) = serve(&["hostile", "pipeline"]).await;
    let task = server
        .assign("wait_for", args(json!({"seconds": 1.0})))
        .expect("assigns");
    let child = child_started(&server, &task).await;
    server.control(&task, Control::Pause).expect("pauses");
    event(&server, &child, "PAUSED").await;
    server
        .control(&task, Control::Resume(false))
        .expect("resumes");
    event(&server, &child, "RESUMED").await;
    let events = finish(&server, &task).await;
    assert_eq!(terminal(&events).kind, "COMPLETED", "{events:?}");
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_child_counts_toward_the_parents_timeout() {
    let server = DevServer::start(fast_server()).await.expect("server");
    let mut pipeline = ComponentSettings::plain(example("pipeline"));
    pipeline.policy.limits = Limits {
        timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let hostile = ComponentSettings::plain(example("hostile"));
    let serving = Serving::start(
        fast_agent(&server.url()),
        load(vec![pipeline, hostile]).await,
    )
    .await;
    until("the agent to connect", || server.is_connected(TOKEN)).await;
    let task = server
        .assign("wait_for", args(json!({"seconds": 600.0})))
        .expect("assigns");
    let events = finish(&server, &task).await;
    assert_eq!(terminal(&events).kind, "FAILED", "{events:?}");
    assert!(error(terminal(&events)).contains("timeout"), "{events:?}");
    // The child does not outlive its parent.
    let children = server.children(&task);
    let child = finish(&server, &children[0]).await;
    assert_eq!(terminal(&child).kind, "CANCELLED", "{child:?}");
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_calling_itself_stops_at_the_depth_cap() {
    let (server, serving) = serve(&["pipeline"]).await;
    let task = server
        .assign("nest", args(json!({"depth": 0})))
        .expect("assigns");
    let events = finish(&server, &task).await;
    assert_eq!(terminal(&events).kind, "FAILED", "{events:?}");
    let message = error(terminal(&events));
    assert!(
        message.contains(&format!(
            "call depth cap reached: this task is nested {MAX_CALL_DEPTH} calls deep"
        )),
        "{message}"
    );
    // One chain of children, each ended, none hanging.
    let mut depth = 0;
    let mut current = task;
    loop {
        let children = server.children(&current);
        let Some(child) = children.first() else {
            break;
        };
        assert_eq!(children.len(), 1);
        assert_eq!(terminal(&finish(&server, child).await).kind, "FAILED");
        depth += 1;
        current = child.clone();
    }
    assert_eq!(depth, MAX_CALL_DEPTH);
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_an_unserved_dependency_is_refused_with_a_clear_error() {
    // `add` is not served by anyone: the server refuses the call, the parent handles it.
    let (server, serving) = serve(&["pipeline"]).await;
    let events = run(&server, "double_sum", json!({"a": 1, "b": 2})).await;
    assert_eq!(terminal(&events).kind, "FAILED");
    assert!(
        error(terminal(&events)).contains("No agent implements 'add'"),
        "{events:?}"
    );
    serving.shutdown().await.expect("clean shutdown");
}

/// Waits until `task` called a child and the child started; returns the child.
async fn child_started(server: &DevServer, task: &str) -> String {
    until("the child to be called", || {
        !server.children(task).is_empty()
    })
    .await;
    let child = server.children(task).remove(0);
    event(server, &child, "STARTED").await;
    child
}

#[test]
fn calls_are_an_import_of_their_own_and_need_a_server() {
    let engine = wasmtime::Engine::default();
    let imports = |name: &str| -> Vec<String> {
        let component =
            wasmtime::component::Component::from_file(&engine, example(name)).expect("compiles");
        component
            .component_type()
            .imports(&engine)
            .map(|(import, _)| import.to_string())
            .collect()
    };
    // The calls interface is separate from `host`: components built before it existed
    // (importing only `host`) link as before.
    let imported = imports("pipeline");
    assert!(
        imported
            .iter()
            .any(|import| import == "arkitekt:rekuest/calls@0.1.0")
    );
    assert!(
        imported
            .iter()
            .any(|import| import == "arkitekt:rekuest/host@0.1.0")
    );
    // Without a server (`call`), a call is refused with a clear error the action passes on.
    let output = host_command()
        .arg("call")
        .arg(example("pipeline"))
        .args(["double_sum", "a=1", "b=2"])
        .output()
        .expect("rekuest-host runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("calls to other actions need a rekuest server"),
        "{stderr}"
    );
}
