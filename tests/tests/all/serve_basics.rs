//! Registration, and assignments through a local server for every example.

use std::time::Duration;

use serde_json::json;

use crate::serve_support::*;
use rekuest_host::agent::{Agent, GuestWorkers};
use rekuest_host::config::ComponentSettings;
use rekuest_host::devserver::DevServer;
use rekuest_host::runtime::Limits;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_once_and_an_unchanged_restart_registers_nothing() {
    let server = DevServer::start(fast_server()).await.expect("server");
    let pool = GuestWorkers::new(1).expect("pool");
    let first = Agent::new(
        fast_agent(&server.url()),
        components(&["math"]).await,
        pool.handle(),
    )
    .expect("agent");
    let registered = bounded("register", first.register())
        .await
        .expect("registers");
    assert!(registered.implemented);
    assert_eq!(server.agent_hash(TOKEN), Some(registered.hash.clone()));
    let offered: Vec<String> = server.actions().into_iter().map(|a| a.interface).collect();
    assert!(offered.contains(&"add".to_string()), "{offered:?}");

    // A restarted process with the same components: the hash matches, nothing is sent.
    let second = Agent::new(
        fast_agent(&server.url()),
        components(&["math"]).await,
        pool.handle(),
    )
    .expect("agent");
    let again = bounded("register", second.register())
        .await
        .expect("registers");
    assert!(!again.implemented);
    assert_eq!(again.hash, registered.hash);
    assert_eq!(again.agent_id, registered.agent_id);

    // Other components: a different hash, registered again.
    let third = Agent::new(
        fast_agent(&server.url()),
        components(&["math", "text"]).await,
        pool.handle(),
    )
    .expect("agent");
    let changed = bounded("register", third.register())
        .await
        .expect("registers");
    assert!(changed.implemented);
    assert_ne!(changed.hash, registered.hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_errors_are_shown_with_what_was_attempted() {
    let mut config = fast_server();
    config.tokens = Some(vec!["the-right-token".into()]);
    let server = DevServer::start(config).await.expect("server");
    let pool = GuestWorkers::new(1).expect("pool");
    let agent = Agent::new(
        fast_agent(&server.url()),
        components(&["math"]).await,
        pool.handle(),
    )
    .expect("agent");
    let error = bounded("register", agent.register())
        .await
        .expect_err("refused")
        .to_string();
    assert!(error.contains("ensureAgent"), "{error}");
    assert!(error.contains("Invalid token"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_returns_through_the_server() {
    let (server, serving) = serve(&["math", "text", "structures", "generator"]).await;

    let events = run(&server, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(
        kinds(&events),
        ["ASSIGNED", "STARTED", "YIELD", "COMPLETED"]
    );
    assert_eq!(yields(&events), [return0(json!(3))]);

    let events = run(&server, "divmod", json!({"a": 7, "b": 2})).await;
    assert_eq!(yields(&events), [json!({"return0": 3, "return1": 1})]);

    let events = run(&server, "greet", json!({"name": "Ada"})).await;
    assert_eq!(yields(&events), [return0(json!("Hello, Ada!"))]);

    let events = run(
        &server,
        "change_case",
        json!({"text": "hi", "case": "Upper"}),
    )
    .await;
    assert_eq!(yields(&events), [return0(json!("HI"))]);

    let events = run(&server, "images", json!({"n": 2})).await;
    assert_eq!(terminal(&events).kind, "COMPLETED");
    let images = &yields(&events)[0]["return0"];
    assert_eq!(images.as_array().map(Vec::len), Some(2), "{images}");

    let events = run(&server, "count", json!({"n": 3})).await;
    assert_eq!(
        yields(&events),
        [return0(json!(1)), return0(json!(2)), return0(json!(3))]
    );
    assert!(kinds(&events).contains(&"PROGRESS"));
    assert!(kinds(&events).contains(&"LOG"));
    assert_eq!(terminal(&events).kind, "COMPLETED");

    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structures_cross_the_server_in_the_official_clients_envelope() {
    let (server, serving) = serve(&["structures"]).await;
    let image = |reference: &str| json!({"__identifier": "@mikro/image", "object": reference});

    for arg in [json!("image:42"), image("image:42")] {
        let events = run(&server, "crop", json!({"image": arg, "width": 10})).await;
        assert_eq!(yields(&events), [return0(image("image:42010"))], "{arg}");
    }
    let events = run(
        &server,
        "label",
        json!({"images": {"b": image("image:2"), "a": "image:1"}}),
    )
    .await;
    let labelled = json!([{"image": image("image:1"), "label": "a"},
        {"image": image("image:2"), "label": "b"}]);
    assert_eq!(yields(&events), [return0(labelled.clone())]);

    // What the official client sends back in: models carry their `__identifier`.
    let mut sent = labelled;
    for item in sent.as_array_mut().into_iter().flatten() {
        item["__identifier"] = json!("Labelled");
    }
    let events = run(&server, "by_label", json!({ "labelled": sent })).await;
    assert_eq!(
        yields(&events),
        [return0(
            json!({"a": image("image:1"), "b": image("image:2")})
        )]
    );

    let events = run(
        &server,
        "crop",
        json!({"image": {"__identifier": "@mikro/video", "object": "1"}, "width": 10}),
    )
    .await;
    let failed = terminal(&events);
    assert_eq!(failed.kind, "FAILED");
    assert_eq!(
        error(failed),
        "argument 'image': expected STRUCTURE @mikro/image, got a reference to @mikro/video"
    );

    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_args_and_action_errors_fail_with_a_reason() {
    let (server, serving) = serve(&["math"]).await;
    let events = run(&server, "add", json!({"a": "one", "b": 2})).await;
    let failed = terminal(&events);
    assert_eq!(failed.kind, "FAILED");
    assert!(error(failed).contains("'a'"), "{}", error(failed));
    assert!(!kinds(&events).contains(&"YIELD"));

    let events = run(&server, "add", json!({"b": 2})).await;
    assert!(error(terminal(&events)).contains("'a'"));

    let events = run(&server, "divide", json!({"a": 1.0, "b": 0.0})).await;
    assert_eq!(terminal(&events).kind, "FAILED");
    assert!(error(terminal(&events)).contains("zero"));
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_crashes_say_what_happened() {
    let server = DevServer::start(fast_server()).await.expect("server");
    let mut hostile = ComponentSettings::plain(example("hostile"));
    hostile.policy.limits = Limits {
        fuel: None,
        memory_bytes: 16 << 20,
        timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let serving = Serving::start(fast_agent(&server.url()), load(vec![hostile]).await).await;
    until("connect", || server.is_connected(TOKEN)).await;

    let events = run(&server, "spin", json!({})).await;
    assert_eq!(terminal(&events).kind, "FAILED");
    assert!(
        error(terminal(&events)).contains("timeout"),
        "{}",
        error(terminal(&events))
    );

    let events = run(&server, "memory_bomb", json!({})).await;
    assert_eq!(terminal(&events).kind, "FAILED");
    assert!(
        error(terminal(&events)).contains("memory"),
        "{}",
        error(terminal(&events))
    );

    let events = run(&server, "panic", json!({"message": "boom"})).await;
    assert_eq!(terminal(&events).kind, "CRITICAL");
    assert!(
        error(terminal(&events)).contains("boom"),
        "{}",
        error(terminal(&events))
    );
    serving.shutdown().await.expect("clean shutdown");
}
