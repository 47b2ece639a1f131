//! CANCEL, INTERRUPT, PAUSE and RESUME of busy guests, heartbeats under full load, and
//! concurrency caps, through a local server.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::serve_support::*;
use rekuest_host::config::ComponentSettings;
use rekuest_host::devserver::{Control, DevServer};
use rekuest_host::protocol::ToAgent;
use rekuest_host::runtime::Limits;

/// A guest ignoring a CANCEL runs on this long before it is stopped.
const GRACE: Duration = Duration::from_millis(300);

fn hostile(timeout: Duration) -> ComponentSettings {
    let mut hostile = ComponentSettings::plain(example("hostile"));
    hostile.policy.limits = Limits {
        timeout,
        cancel_grace: GRACE,
        ..Limits::default()
    };
    hostile
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_spinning_guest_after_its_grace_and_interrupt_at_once() {
    let server = DevServer::start(fast_server()).await.expect("server");
    let hostile = hostile(Duration::from_secs(60));
    let serving = Serving::start(fast_agent(&server.url()), load(vec![hostile]).await).await;
    until("connect", || server.is_connected(TOKEN)).await;

    for (control, expected) in [
        (Control::Cancel, "CANCELLED"),
        (Control::Interrupt, "INTERRUPTED"),
    ] {
        let task = server.assign("spin", args(json!({}))).expect("assigns");
        event(&server, &task, "STARTED").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let asked = Instant::now();
        server.control(&task, control).expect("controls");
        let events = finish(&server, &task).await;
        assert_eq!(terminal(&events).kind, expected);
        let grace = if control == Control::Cancel {
            GRACE
        } else {
            Duration::ZERO
        };
        assert!(
            asked.elapsed() >= grace && asked.elapsed() < grace + Duration::from_secs(1),
            "took {:?}",
            asked.elapsed()
        );
    }
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_parks_a_spinning_guest_and_stops_its_clock() {
    let server = DevServer::start(fast_server()).await.expect("server");
    let hostile = hostile(Duration::from_millis(600));
    let serving = Serving::start(fast_agent(&server.url()), load(vec![hostile]).await).await;
    until("connect", || server.is_connected(TOKEN)).await;

    let task = server.assign("spin", args(json!({}))).expect("assigns");
    event(&server, &task, "STARTED").await;
    server.control(&task, Control::Pause).expect("pauses");
    event(&server, &task, "PAUSED").await;
    // Parked: the 600 ms timeout does not run out while paused.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        !server.task(&task).expect("task").done,
        "ended while paused"
    );
    server
        .control(&task, Control::Resume(false))
        .expect("resumes");
    let events = finish(&server, &task).await;
    assert!(kinds(&events).contains(&"RESUMED"));
    assert_eq!(terminal(&events).kind, "FAILED");
    assert!(error(terminal(&events)).contains("timeout"));
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_generators_yield_nothing_and_step_runs_one_tick() {
    let (server, serving) = serve(&["generator"]).await;
    let task = server
        .assign("ticks", args(json!({"n": 1000, "seconds": 0.02})))
        .expect("assigns");
    event(&server, &task, "YIELD").await;
    server.control(&task, Control::Pause).expect("pauses");
    event(&server, &task, "PAUSED").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let yields_then = yields(&server.task(&task).expect("task").events).len();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let yields_now = yields(&server.task(&task).expect("task").events).len();
    assert_eq!(yields_then, yields_now, "yields came while paused");

    // A step resumes and parks again by itself.
    server.control(&task, Control::Resume(true)).expect("steps");
    until("the step to park again", || {
        let events = server.task(&task).expect("task").events;
        kinds(&events)
            .iter()
            .filter(|kind| **kind == "PAUSED")
            .count()
            == 2
    })
    .await;
    let after_step = yields(&server.task(&task).expect("task").events).len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        after_step,
        yields(&server.task(&task).expect("task").events).len()
    );

    server
        .control(&task, Control::Resume(false))
        .expect("resumes");
    until("yields to continue", || {
        yields(&server.task(&task).expect("task").events).len() > after_step + 3
    })
    .await;
    server.control(&task, Control::Cancel).expect("cancels");
    assert_eq!(terminal(&finish(&server, &task).await).kind, "CANCELLED");
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_assigned_with_step_parks_until_resumed() {
    let (server, serving) = serve(&["generator"]).await;
    let task = server
        .assign_stepping("ticks", args(json!({"n": 3, "seconds": 0.01})))
        .expect("assigns");
    event(&server, &task, "PAUSED").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(yields(&server.task(&task).expect("task").events).is_empty());
    server
        .control(&task, Control::Resume(false))
        .expect("resumes");
    let events = finish(&server, &task).await;
    assert_eq!(yields(&events).len(), 3);
    assert_eq!(terminal(&events).kind, "COMPLETED");
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_answered_while_every_core_spins() {
    let mut config = fast_server();
    config.heartbeat_interval = Duration::from_millis(50);
    config.heartbeat_timeout = Duration::from_millis(250);
    let server = DevServer::start(config).await.expect("server");
    let hostile = hostile(Duration::from_secs(60));
    let serving = Serving::start(fast_agent(&server.url()), load(vec![hostile]).await).await;
    until("connect", || server.is_connected(TOKEN)).await;

    let tasks: Vec<String> = (0..4)
        .map(|_| server.assign("spin", args(json!({}))).expect("assigns"))
        .collect();
    for task in &tasks {
        event(&server, task, "STARTED").await;
    }
    let before = server.heartbeats_answered();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let answered = server.heartbeats_answered() - before;
    assert!(answered >= 10, "only {answered} heartbeats answered");
    assert!(
        !server.close_codes().contains(&3001),
        "{:?}",
        server.close_codes()
    );
    assert!(server.is_connected(TOKEN));
    for task in &tasks {
        server.control(task, Control::Cancel).expect("cancels");
    }
    for task in &tasks {
        assert_eq!(terminal(&finish(&server, task).await).kind, "CANCELLED");
    }
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_beyond_an_actions_cap_queue_until_a_slot_frees() {
    let server = DevServer::start(fast_server()).await.expect("server");
    let mut hostile = hostile(Duration::from_secs(60));
    hostile.action_concurrency.insert("spin".into(), 1);
    let mut served = load(vec![hostile]).await;
    served.extend(components(&["math"]).await);
    let serving = Serving::start(fast_agent(&server.url()), served).await;
    until("connect", || server.is_connected(TOKEN)).await;

    let first = server.assign("spin", args(json!({}))).expect("assigns");
    event(&server, &first, "STARTED").await;
    let second = server.assign("spin", args(json!({}))).expect("assigns");
    // Other actions are not held up by the spin cap.
    let events = run(&server, "add", json!({"a": 2, "b": 2})).await;
    assert_eq!(yields(&events), [return0(json!(4))]);
    assert!(!kinds(&server.task(&second).expect("task").events).contains(&"STARTED"));

    // Cancelling a queued task never starts it.
    let third = server.assign("spin", args(json!({}))).expect("assigns");
    server.control(&third, Control::Cancel).expect("cancels");
    let events = finish(&server, &third).await;
    assert_eq!(kinds(&events), ["ASSIGNED", "CANCELLING", "CANCELLED"]);

    server.control(&first, Control::Cancel).expect("cancels");
    event(&server, &second, "STARTED").await;
    server.control(&second, Control::Cancel).expect("cancels");
    assert_eq!(terminal(&finish(&server, &second).await).kind, "CANCELLED");
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controls_for_unknown_tasks_are_answered_not_crashed_on() {
    let (server, serving) = serve(&["math"]).await;
    for frame in [
        ToAgent::Cancel {
            id: "c".into(),
            task: "999".into(),
        },
        ToAgent::Interrupt {
            id: "i".into(),
            task: "998".into(),
        },
        ToAgent::Pause {
            id: "p".into(),
            task: "997".into(),
        },
        ToAgent::Resume {
            id: "r".into(),
            task: "996".into(),
            step: true,
        },
    ] {
        assert!(server.send(TOKEN, &frame));
    }
    let events = run(&server, "add", json!({"a": 1, "b": 1})).await;
    assert_eq!(yields(&events), [return0(json!(2))]);
    assert!(server.is_connected(TOKEN));
    serving.shutdown().await.expect("clean shutdown");
}
