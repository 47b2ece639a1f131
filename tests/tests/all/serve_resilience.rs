//! Connection cuts, server restarts (with stale connections), a server that is down at start
//! or goes silent, retention and resending of terminal reports, inquiries, hostile server
//! frames and malformed or flooding ASSIGNs, KICK, BOUNCE, a second host with the same token,
//! 4004/4005 and clean shutdown.

use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::serve_support::by_hand::*;
use crate::serve_support::*;
use rekuest_host::agent::{Agent, AgentError, GraphqlClient, GuestWorkers, ServedComponent};
use rekuest_host::config::ComponentSettings;
use rekuest_host::devserver::{Control, DevServer};
use rekuest_host::protocol::{Endpoints, ToAgent};
use rekuest_host::runtime::Limits;

fn no_duplicate_yields(events: &[rekuest_host::devserver::ServerEvent]) {
    let numbers: Vec<i64> = yields(events)
        .iter()
        .filter_map(|returns| returns["return0"].as_i64())
        .collect();
    assert!(
        numbers.windows(2).all(|pair| pair[0] < pair[1]),
        "yields repeated or out of order: {numbers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_mid_task_reconnects_and_the_task_finishes_once() {
    let (server, serving) = serve(&["generator"]).await;
    let task = server
        .assign("ticks", args(json!({"n": 10, "seconds": 0.05})))
        .expect("assigns");
    event(&server, &task, "YIELD").await;
    assert!(server.cut(TOKEN));
    until("the cut to be seen", || !server.is_connected(TOKEN)).await;
    until("the agent to reconnect", || server.is_connected(TOKEN)).await;
    let events = finish(&server, &task).await;
    assert_eq!(terminal(&events).kind, "COMPLETED");
    let snapshot = server.task(&task).expect("task");
    assert_eq!(snapshot.received.get("STARTED"), Some(&1), "ran twice?");
    assert_eq!(
        kinds(&events)
            .iter()
            .filter(|kind| **kind == "COMPLETED")
            .count(),
        1
    );
    assert!(!kinds(&events).contains(&"DISCONNECTED"));
    // The reconnect's inquiry was answered: still running here.
    assert!(
        events.iter().any(|event| event.kind == "PROGRESS"
            && event.fields["message"] == json!("still running on this agent")),
        "{:?}",
        kinds(&events)
    );
    no_duplicate_yields(&events);
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_task_loses_nothing() {
    let (server, serving) = serve(&["generator"]).await;
    let task = server
        .assign("ticks", args(json!({"n": 8, "seconds": 0.05})))
        .expect("assigns");
    event(&server, &task, "YIELD").await;
    let server = bounded("restart", server.restart(Duration::from_millis(200)))
        .await
        .expect("restarts");
    until("the agent to reconnect", || server.is_connected(TOKEN)).await;
    let events = finish(&server, &task).await;
    assert_eq!(terminal(&events).kind, "COMPLETED");
    assert_eq!(
        server.task(&task).expect("task").received.get("STARTED"),
        Some(&1)
    );
    no_duplicate_yields(&events);
    let events = run(&server, "count", json!({"n": 2})).await;
    assert_eq!(terminal(&events).kind, "COMPLETED");
    serving.shutdown().await.expect("clean shutdown");
}

/// The hostile example with room for its `sleep` tasks to wait a minute.
async fn patient_hostile() -> Vec<ServedComponent> {
    let mut hostile = ComponentSettings::plain(example("hostile"));
    hostile.policy.limits = Limits {
        timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    load(vec![hostile]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_reports_are_kept_until_acked_and_inquiries_answered_truthfully() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let serving = serve_against(&listener, components(&["math"]).await, |_| {});
    let session = serving.agent.session_id().to_string();

    let mut first = accept(&listener).await;
    let registered = first_register(&mut first, &session).await;
    assert_eq!(registered["token"], TOKEN);
    send(&mut first, assign("7", "add", json!({"a": 2, "b": 3}))).await;
    let mut reports = Vec::new();
    loop {
        let frame = receive(&mut first).await;
        let done = frame["type"] == "COMPLETED";
        reports.push(frame);
        if done {
            break;
        }
    }
    let types: Vec<&str> = reports.iter().filter_map(|r| r["type"].as_str()).collect();
    assert_eq!(types, ["STARTED", "YIELD", "COMPLETED"]);
    assert_eq!(reports[1]["returns"], json!({"return0": 5}));
    let seqs: Vec<u64> = reports.iter().filter_map(|r| r["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "{seqs:?}");
    let completed = reports[2]["id"].clone();
    assert!(
        reports
            .iter()
            .all(|r| r["task"] == "7" && r["id"].is_string())
    );

    // No EVENT_ACK: after a reconnect the COMPLETED comes again, once, same id.
    drop(first);
    let mut second = accept(&listener).await;
    let again = register(&mut second, json!([{"task": "7"}, {"task": "8"}])).await;
    assert_eq!(
        again["session_id"],
        json!(session),
        "same process, same session"
    );
    let frames = quiet(&mut second, Duration::from_millis(400)).await;
    let completed_again: Vec<&Value> = frames.iter().filter(|f| f["type"] == "COMPLETED").collect();
    assert_eq!(completed_again.len(), 1, "{frames:?}");
    assert_eq!(completed_again[0]["id"], completed);
    // The unconfirmed YIELD goes again too, same id, before the COMPLETED.
    assert_eq!(frames[0]["type"], "YIELD", "{frames:?}");
    assert_eq!(frames[0]["id"], reports[1]["id"]);
    assert_eq!(frames[0]["seq"], json!(1), "seq restarts per connection");
    assert_eq!(completed_again[0]["seq"], json!(2));
    // The unknown task is reported lost instead of hanging.
    let lost = frames
        .iter()
        .find(|f| f["task"] == "8")
        .expect("an answer about task 8");
    assert_eq!(lost["type"], "CRITICAL");
    assert!(lost["error"].as_str().expect("text").contains("lost"));
    send(
        &mut second,
        json!({"id": "x", "type": "EVENT_ACK", "event": completed, "task": "7", "seq": 1}),
    )
    .await;
    send(&mut second, json!({"id": "h", "type": "HEARTBEAT"})).await;
    receive_type(&mut second, "HEARTBEAT_ANSWER").await;

    // Acknowledged: not resent. Asked about it again, the finished task answers with its
    // remembered terminal report; a duplicate ASSIGN does not run it twice.
    drop(second);
    let mut third = accept(&listener).await;
    register(&mut third, json!([{"task": "7"}])).await;
    send(&mut third, assign("7", "add", json!({"a": 2, "b": 3}))).await;
    let frames = quiet(&mut third, Duration::from_millis(400)).await;
    let types: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert!(!types.contains(&"STARTED"), "ran twice: {types:?}");
    assert!(types.contains(&"COMPLETED"), "{types:?}");
    assert!(
        frames
            .iter()
            .filter(|f| f["type"] == "COMPLETED")
            .all(|f| f["id"] != completed)
    );

    // Hostile frames change nothing.
    for text in [
        "{not json",
        r#"{"type":"WHAT"}"#,
        r#"{"type":"CANCEL"}"#,
        "[1]",
    ] {
        third.send(Message::text(text)).await.expect("sends");
    }
    third
        .send(Message::binary(vec![0u8, 1, 2]))
        .await
        .expect("sends");
    send(&mut third, assign("9", "add", json!({"a": 1, "b": 1}))).await;
    let done = receive_type(&mut third, "COMPLETED").await;
    assert_eq!(done["task"], "9");

    // Shutdown closes the socket cleanly once everything is acknowledged.
    quiet(&mut third, Duration::from_millis(50)).await;
    let shutdown = tokio::spawn(serving.shutdown());
    let frames = quiet(&mut third, Duration::from_millis(300)).await;
    assert!(frames.is_empty(), "{frames:?}");
    // Unacknowledged COMPLETED of task 9 keeps the socket open until acked.
    send(
        &mut third,
        json!({"id": "y", "type": "EVENT_ACK", "event": done["id"], "task": "9"}),
    )
    .await;
    let leftover = quiet(&mut third, Duration::from_millis(300)).await;
    assert!(leftover.is_empty(), "{leftover:?}");
    assert!(bounded("shutdown", shutdown).await.expect("joins").is_ok());
}

async fn first_register(peer: &mut Peer, session: &str) -> Value {
    let register = register(peer, json!([])).await;
    assert_eq!(register["session_id"], json!(session));
    register
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_from_the_server_are_survived() {
    let (server, serving) = serve(&["math"]).await;
    for frame in [
        Message::binary(vec![0u8; 64]),
        Message::text("{not json"),
        Message::text(r#"{"type":"SOMETHING_NEW","x":1}"#),
        Message::text(r#"{"type":"ASSIGN","task":5}"#),
        Message::text("[1,2,3]"),
        Message::text("null"),
    ] {
        assert!(server.send_raw(TOKEN, frame));
    }
    let events = run(&server, "add", json!({"a": 20, "b": 22})).await;
    assert_eq!(yields(&events), [return0(json!(42))]);
    // A frame beyond the size limit ends that session; the agent reconnects.
    let registrations = server.registrations();
    let huge = "x".repeat(rekuest_host::agent::AgentCaps::DEFAULT.frame_bytes + 1024);
    assert!(server.send_raw(TOKEN, Message::text(huge)));
    until("the agent to reconnect", || {
        server.registrations() > registrations && server.is_connected(TOKEN)
    })
    .await;
    let events = run(&server, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(yields(&events), [return0(json!(3))]);
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_stops_the_agent_with_its_reason() {
    let (server, serving) = serve(&["math"]).await;
    assert!(server.send(
        TOKEN,
        &ToAgent::Kick {
            id: "k".into(),
            reason: Some("maintenance window".into()),
        }
    ));
    let error = serving.ended().await.expect_err("kicked");
    assert!(matches!(error, AgentError::Kicked { .. }));
    assert!(error.to_string().contains("maintenance window"), "{error}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !server.is_connected(TOKEN),
        "a kicked agent must not come back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounce_reconnects_after_its_duration() {
    let (server, serving) = serve(&["math"]).await;
    assert!(server.send(
        TOKEN,
        &ToAgent::Bounce {
            id: "b".into(),
            duration: Some(1),
        }
    ));
    until("the bounce", || !server.is_connected(TOKEN)).await;
    let left = tokio::time::Instant::now();
    until("the agent to come back", || server.is_connected(TOKEN)).await;
    assert!(
        left.elapsed() >= Duration::from_millis(900),
        "{:?}",
        left.elapsed()
    );
    let events = run(&server, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(terminal(&events).kind, "COMPLETED");
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_host_with_the_same_token_is_refused_and_the_first_keeps_its_actions() {
    let (server, first) = serve(&["math"]).await;
    let hash = server.agent_hash(TOKEN).expect("registered");
    let offered = |server: &DevServer| -> Vec<String> {
        let mut keys: Vec<String> = server.actions().into_iter().map(|a| a.interface).collect();
        keys.sort();
        keys
    };
    let before = offered(&server);

    // Another name and other components, same token: refused before touching anything.
    let mut config = fast_agent(&server.url());
    config.name = "another-name".into();
    let pool = GuestWorkers::new(1).expect("pool");
    let second =
        Arc::new(Agent::new(config, components(&["text"]).await, pool.handle()).expect("agent"));
    let error = bounded("the second registration", second.register())
        .await
        .expect_err("refused");
    assert!(matches!(error, AgentError::AlreadyServed { .. }), "{error}");
    assert!(error.to_string().contains("token"), "{error}");
    assert_eq!(server.agent_hash(TOKEN), Some(hash.clone()));
    assert_eq!(offered(&server), before);
    let events = run(&server, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(yields(&events), [return0(json!(3))]);

    // Straight to the socket: 4004 for the stale-connection wait, then it gives up.
    let error = Serving::serve_only(second, pool)
        .ended()
        .await
        .expect_err("refused");
    assert!(
        matches!(error, AgentError::AlreadyConnected { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("--force"));
    assert!(server.close_codes().contains(&4004));
    assert!(
        !first.task.is_finished(),
        "the first host must keep serving"
    );
    let events = run(&server, "add", json!({"a": 2, "b": 2})).await;
    assert_eq!(yields(&events), [return0(json!(4))]);

    let mut forced = fast_agent(&server.url());
    forced.force = true;
    let third = Serving::start(forced, components(&["math"]).await).await;
    let error = first.ended().await.expect_err("replaced");
    assert!(matches!(error, AgentError::Replaced), "{error}");
    let events = run(&server, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(terminal(&events).kind, "COMPLETED");
    third.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_changed_behind_the_hosts_back_is_restored_on_reconnect() {
    let (server, serving) = serve(&["math"]).await;
    let hash = server.agent_hash(TOKEN).expect("registered");
    // Another process with this token replaces the actions (as an older host version would).
    let pool = GuestWorkers::new(1).expect("pool");
    let other = Agent::new(
        fast_agent(&server.url()),
        components(&["text"]).await,
        pool.handle(),
    )
    .expect("agent");
    let endpoints = Endpoints::from_base(&server.url()).expect("url");
    let tls = rekuest_host::tls::ClientTls::new(&[]).expect("trust store");
    let graphql = GraphqlClient::new(endpoints.graphql, TOKEN.to_string(), &tls).expect("client");
    let ensured = bounded("ensure", graphql.ensure("intruder"))
        .await
        .expect("ensures");
    bounded(
        "implement",
        graphql.implement(&ensured, "intruder", &other.implementations()),
    )
    .await
    .expect("implements");
    assert_ne!(server.agent_hash(TOKEN), Some(hash.clone()));

    let registrations = server.registrations();
    assert!(server.cut(TOKEN));
    until("the agent to reconnect", || {
        server.registrations() > registrations && server.is_connected(TOKEN)
    })
    .await;
    until("the registration to be restored", || {
        server.agent_hash(TOKEN) == Some(hash.clone())
    })
    .await;
    let events = run(&server, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(yields(&events), [return0(json!(3))]);
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_for_an_agent_never_ensured_is_refused_clearly() {
    let server = DevServer::start(fast_server()).await.expect("server");
    let pool = GuestWorkers::new(1).expect("pool");
    let agent = Arc::new(
        Agent::new(
            fast_agent(&server.url()),
            components(&["math"]).await,
            pool.handle(),
        )
        .expect("agent"),
    );
    let error = Serving::serve_only(agent, pool)
        .ended()
        .await
        .expect_err("refused");
    assert!(matches!(error, AgentError::Refused { .. }), "{error}");
    assert!(error.to_string().contains("3003"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_tasks_finish_and_cancels_the_rest() {
    let server = DevServer::start(fast_server()).await.expect("server");
    let mut hostile = ComponentSettings::plain(example("hostile"));
    hostile.policy.limits = Limits {
        timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let mut served = load(vec![hostile]).await;
    served.extend(components(&["generator"]).await);
    let mut config = fast_agent(&server.url());
    config.shutdown_grace = Duration::from_millis(800);
    let serving = Serving::start(config, served).await;
    until("connect", || server.is_connected(TOKEN)).await;

    let ticks = server
        .assign("ticks", args(json!({"n": 4, "seconds": 0.05})))
        .expect("assigns");
    let spin = server.assign("spin", args(json!({}))).expect("assigns");
    event(&server, &spin, "STARTED").await;
    serving.shutdown().await.expect("clean shutdown");
    let ticks = server.task(&ticks).expect("task");
    assert!(ticks.done);
    assert_eq!(
        ticks.events.last().map(|e| e.kind.as_str()),
        Some("COMPLETED")
    );
    let spin = server.task(&spin).expect("task");
    assert_eq!(
        spin.events.last().map(|e| e.kind.as_str()),
        Some("CANCELLED")
    );
    // The server takes the close handshake on its own time.
    until("the server to see the agent go", || {
        !server.is_connected(TOKEN)
    })
    .await;
    assert!(server.control("1", Control::Cancel).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_with_stale_connections_loses_no_yield_and_never_stops_the_host() {
    let mut config = fast_server();
    // Like the real server: the dropped connection still counts as live for a while.
    config.stale_window = Duration::from_millis(1500);
    let server = DevServer::start(config).await.expect("server");
    let serving = Serving::start(fast_agent(&server.url()), components(&["generator"]).await).await;
    until("the agent to connect", || server.is_connected(TOKEN)).await;
    let task = server
        .assign("ticks", args(json!({"n": 8, "seconds": 0.3})))
        .expect("assigns");
    event(&server, &task, "YIELD").await;
    let registrations = server.registrations();
    let server = bounded("restart", server.restart(Duration::from_millis(100)))
        .await
        .expect("restarts");
    until("the agent to come back", || {
        server.registrations() > registrations && server.is_connected(TOKEN)
    })
    .await;
    assert!(
        server.close_codes().contains(&4004),
        "the stale connection should have refused a REGISTER first: {:?}",
        server.close_codes()
    );
    assert!(!serving.task.is_finished(), "the host must not stop");
    let events = finish(&server, &task).await;
    assert_eq!(terminal(&events).kind, "COMPLETED");
    let numbers: Vec<Value> = yields(&events);
    let expected: Vec<Value> = (1..=8).map(|n| return0(json!(n))).collect();
    assert_eq!(numbers, expected, "every yield once, in order");
    assert_eq!(
        server.task(&task).expect("task").received.get("STARTED"),
        Some(&1)
    );
    let events = run(&server, "count", json!({"n": 2})).await;
    assert_eq!(terminal(&events).kind, "COMPLETED");
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_started_before_its_server_waits_for_it() {
    // A free port, released again: the server comes up there later.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        listener.local_addr().expect("addr")
    };
    let url = format!("http://{addr}");
    let pool = GuestWorkers::new(1).expect("pool");
    let agent = Arc::new(
        Agent::new(fast_agent(&url), components(&["math"]).await, pool.handle()).expect("agent"),
    );
    let registering = Arc::clone(&agent);
    let registration = tokio::spawn(async move { registering.register().await });
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !registration.is_finished(),
        "an unreachable server must be retried, not fatal"
    );
    let mut config = fast_server();
    config.listen = addr;
    let server = DevServer::start(config).await.expect("server");
    bounded("registration", registration)
        .await
        .expect("joins")
        .expect("registers once the server is up");
    let serving = Serving::serve_only(agent, pool);
    until("the agent to connect", || server.is_connected(TOKEN)).await;
    let events = run(&server, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(yields(&events), [return0(json!(3))]);
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_noticed_and_the_connection_replaced() {
    let server = DevServer::start(fast_server()).await.expect("server");
    let mut config = fast_agent(&server.url());
    config.silence_timeout = Duration::from_secs(1);
    let serving = Serving::start(config, components(&["math"]).await).await;
    until("the agent to connect", || server.is_connected(TOKEN)).await;
    // Heartbeats every 100 ms keep a live connection well inside the timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let registrations = server.registrations();
    assert_eq!(registrations, 1, "a healthy connection was replaced");

    let silenced = tokio::time::Instant::now();
    assert!(server.silence(TOKEN));
    until("the agent to replace the silent connection", || {
        server.registrations() > registrations && server.is_connected(TOKEN)
    })
    .await;
    let took = silenced.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    let events = run(&server, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(yields(&events), [return0(json!(3))]);
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_assignments_are_answered_failed_with_the_reason() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let serving = serve_against(&listener, components(&["math"]).await, |_| {});
    let mut peer = accept(&listener).await;
    register(&mut peer, json!([])).await;

    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let cases: Vec<(&str, String)> = vec![
        ("n1", {
            let mut frame = assign("n1", "add", json!({}));
            frame["args"] = Value::Null;
            frame.to_string()
        }),
        ("n2", {
            let mut frame = assign("n2", "add", json!({"a": 1, "b": 2}));
            frame["step"] = json!("yes");
            frame.to_string()
        }),
        ("n3", {
            let mut frame = assign("n3", "add", json!({"a": 1, "b": 2}));
            frame["interface"] = json!(7);
            frame.to_string()
        }),
        (
            "n4",
            assign("n4", "add", json!({"a": "PLACEHOLDER", "b": 2}))
                .to_string()
                .replace("\"PLACEHOLDER\"", "\"\\ud800\""),
        ),
        (
            "n5",
            assign("n5", "add", json!({"a": "PLACEHOLDER", "b": 2}))
                .to_string()
                .replace("\"PLACEHOLDER\"", &deep),
        ),
    ];
    for (_, text) in &cases {
        peer.send(Message::text(text.as_str()))
            .await
            .expect("sends");
    }
    let mut answered = std::collections::HashMap::new();
    while answered.len() < cases.len() {
        let frame = receive(&mut peer).await;
        if let Some(task) = frame["task"].as_str() {
            assert_eq!(frame["type"], "FAILED", "{frame}");
            assert!(
                answered
                    .insert(task.to_string(), frame["error"].clone())
                    .is_none(),
                "answered twice: {frame}"
            );
        }
    }
    for (task, _) in &cases {
        let error = answered[*task].as_str().expect("an error text");
        assert!(error.contains("malformed"), "{task}: {error}");
    }
    // The agent still works.
    send(&mut peer, assign("ok", "add", json!({"a": 1, "b": 1}))).await;
    let done = receive_type(&mut peer, "COMPLETED").await;
    assert_eq!(done["task"], "ok");
    drop(peer);
    drop(serving);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_assignments_is_bounded_and_inquiries_are_answered_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let serving = serve_against(&listener, patient_hostile().await, |config| {
        config.concurrency = 1;
        config.caps.queued_tasks = 2;
    });
    let mut peer = accept(&listener).await;
    // The same unknown task asked about twice in one INIT: one answer.
    register(&mut peer, json!([{"task": "gone"}, {"task": "gone"}])).await;

    for task in ["s1", "s2", "s3", "s4", "s5"] {
        send(&mut peer, assign(task, "sleep", json!({"seconds": 30.0}))).await;
    }
    let mut failed = Vec::new();
    let mut lost = 0;
    let frames = quiet(&mut peer, Duration::from_millis(800)).await;
    for frame in &frames {
        match (frame["type"].as_str(), frame["task"].as_str()) {
            (Some("FAILED"), Some(task)) => {
                let error = frame["error"].as_str().expect("text");
                assert!(
                    error.contains("agent overloaded: 2 tasks queued"),
                    "{error}"
                );
                failed.push(task.to_string());
            }
            (Some("CRITICAL"), Some("gone")) => lost += 1,
            _ => {}
        }
    }
    // One runs, two wait, the rest are refused at once.
    assert_eq!(failed, ["s4", "s5"], "{frames:?}");
    assert_eq!(lost, 1, "{frames:?}");
    let started: Vec<&Value> = frames.iter().filter(|f| f["type"] == "STARTED").collect();
    assert_eq!(started.len(), 1, "{frames:?}");
    drop(peer);
    drop(serving);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn args_waiting_for_a_slot_are_bounded_in_bytes_too() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let serving = serve_against(&listener, patient_hostile().await, |config| {
        config.concurrency = 1;
        config.caps.queued_bytes = 1 << 20;
    });
    let mut peer = accept(&listener).await;
    register(&mut peer, json!([])).await;

    // One runs; the waiting ones carry 400 KiB each (in the assigner's message), so the
    // third waiting one would pass 1 MiB; a small one still fits beside two.
    send(&mut peer, assign("run", "sleep", json!({"seconds": 30.0}))).await;
    let padding = "x".repeat(400 << 10);
    for task in ["w1", "w2", "w3"] {
        let mut frame = assign(task, "sleep", json!({"seconds": 30.0}));
        frame["message"] = json!(padding);
        send(&mut peer, frame).await;
    }
    send(
        &mut peer,
        assign("small", "sleep", json!({"seconds": 30.0})),
    )
    .await;
    let frames = quiet(&mut peer, Duration::from_millis(800)).await;
    let failed: Vec<(&str, &str)> = frames
        .iter()
        .filter(|frame| frame["type"] == "FAILED")
        .filter_map(|frame| Some((frame["task"].as_str()?, frame["error"].as_str()?)))
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (task, error) = failed[0];
    assert_eq!(task, "w3");
    assert!(
        error.starts_with("agent overloaded: ") && error.contains("of args queued"),
        "{error}"
    );
    assert!(error.contains("1 MiB cap"), "{error}");
    drop(peer);
    drop(serving);
}
