//! Delivery: yields in flight when a connection breaks are resent (never a COMPLETED
//! without them), a server that stops reading holds the host's memory, oversized text is
//! cut instead of looping, and log lines travel in few frames.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::serve_support::by_hand::*;
use crate::serve_support::*;
use rekuest_host::devserver::{DevServer, MAX_MESSAGE_CHARS};
use rekuest_host_tests::resident_bytes;

/// Frames up to and including the first terminal report.
async fn until_terminal(peer: &mut Peer) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = receive(peer).await;
        let done = matches!(
            frame["type"].as_str(),
            Some("COMPLETED" | "FAILED" | "CRITICAL")
        );
        frames.push(frame);
        if done {
            return frames;
        }
    }
}

fn types(frames: &[Value]) -> Vec<&str> {
    frames.iter().filter_map(|f| f["type"].as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yields_in_flight_when_the_connection_breaks_are_resent_before_completed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let serving = serve_against(&listener, components(&["generator"]).await, |_| {});

    let mut first = connect(&listener, json!([])).await;
    send(&mut first, assign("5", "fibonacci", json!({"n": 4}))).await;
    let sent = until_terminal(&mut first).await;
    assert_eq!(
        types(&sent),
        ["STARTED", "YIELD", "YIELD", "YIELD", "YIELD", "COMPLETED"]
    );
    // STARTED is acknowledged; that confirms nothing written after it.
    send(
        &mut first,
        json!({"id": "x", "type": "EVENT_ACK", "event": sent[0]["id"], "task": "5"}),
    )
    .await;
    drop(first);

    // The server may not have stored them: every yield goes again, same id, in order, then
    // the COMPLETED; STARTED does not.
    let mut second = connect(&listener, json!([{"task": "5"}])).await;
    let resent = until_terminal(&mut second).await;
    assert_eq!(types(&resent), types(&sent)[1..]);
    for (again, first) in resent.iter().zip(&sent[1..]) {
        assert_eq!(again["id"], first["id"]);
        assert_eq!(again["returns"], first["returns"]);
    }
    send(
        &mut second,
        json!({"id": "y", "type": "EVENT_ACK", "event": resent[4]["id"], "task": "5"}),
    )
    .await;
    drop(second);

    // Confirmed: nothing goes again but the remembered answer to the inquiry.
    let mut third = connect(&listener, json!([{"task": "5"}])).await;
    let answer = until_terminal(&mut third).await;
    assert_eq!(types(&answer), ["COMPLETED"]);
    send(
        &mut third,
        json!({"id": "z", "type": "EVENT_ACK", "event": answer[0]["id"], "task": "5"}),
    )
    .await;
    let shutdown = tokio::spawn(serving.shutdown());
    // The clean close needs the peer to keep reading.
    while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, third.next()).await {}
    assert!(bounded("shutdown", shutdown).await.expect("joins").is_ok());
}

/// How far host memory may grow while the server does not read: the outbox (16 MiB queued,
/// 16 MiB kept for resending), the task's event channel (256 yields of 256 KiB), frames in
/// the WebSocket buffers, and allocator slack.
const STALLED_GROWTH: u64 = 160 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_reading_bounds_host_memory_and_loses_no_yield() {
    if !crate::alone::in_own_process(
        "serve_delivery::a_server_that_stops_reading_bounds_host_memory_and_loses_no_yield",
    ) {
        return;
    }
    let (server, serving) = serve(&["hostile"]).await;
    // Warm up (runtime, first task) before measuring.
    let events = run(
        &server,
        "yield_flood",
        json!({"count": 4, "kibibytes": 256}),
    )
    .await;
    assert_eq!(terminal(&events).kind, "COMPLETED");
    let before = resident_bytes("self");

    server.set_reading(false);
    // 1,200 yields of 256 KiB: 300 MiB if nothing held the guest back.
    let count = 1_200;
    let task = server
        .assign(
            "yield_flood",
            args(json!({"count": count, "kibibytes": 256})),
        )
        .expect("assigns");
    let mut peak = 0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        peak = peak.max(resident_bytes("self").saturating_sub(before));
    }
    assert!(
        peak < STALLED_GROWTH,
        "host memory grew by {} MiB while the server did not read",
        peak >> 20
    );

    server.set_reading(true);
    let mut watch = server.watch(&task).expect("task");
    let mut seen = vec![0u32; count];
    let end = bounded("the flood to be delivered", async {
        loop {
            let Some(event) = watch.next().await else {
                panic!("the server went away");
            };
            if event.kind == "YIELD" {
                let text = event.fields["returns"]["return0"]
                    .as_str()
                    .unwrap_or_default();
                let index: usize = text
                    .split(':')
                    .next()
                    .and_then(|index| index.parse().ok())
                    .expect("an indexed item");
                seen[index] += 1;
            }
            if event.is_terminal() {
                return event;
            }
        }
    })
    .await;
    assert!(
        seen.iter().all(|&times| times <= 1),
        "a yield recorded twice"
    );
    match end.kind.as_str() {
        // Every yield once, or the task says its results were lost: never a silent gap.
        "COMPLETED" => assert!(
            seen.iter().all(|&times| times == 1),
            "COMPLETED without {} of its yields",
            seen.iter().filter(|&&times| times == 0).count()
        ),
        "CRITICAL" => assert!(error(&end).contains("results of this task were lost")),
        other => panic!("ended {other}: {end:?}"),
    }
    let events = run(&server, "yield_flood", json!({"count": 2, "kibibytes": 1})).await;
    assert_eq!(terminal(&events).kind, "COMPLETED", "still serving");
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_error_is_cut_to_what_the_server_stores_not_resent_forever() {
    let (server, serving) = serve(&["hostile"]).await;
    let message = "E".repeat(1024 * 1024);
    let events = run(&server, "panic", json!({ "message": message })).await;
    let end = terminal(&events);
    assert!(
        matches!(end.kind.as_str(), "FAILED" | "CRITICAL"),
        "{end:?}"
    );
    let text = error(end);
    assert!(text.chars().count() <= MAX_MESSAGE_CHARS, "{}", text.len());
    assert!(text.contains("EEEE"), "{text:.200}");
    assert!(
        !server.close_codes().contains(&3003),
        "the server refused a frame: {:?}",
        server.close_codes()
    );
    assert_eq!(server.registrations(), 1, "reconnected");
    let events = run(&server, "sleep", json!({"seconds": 0.0})).await;
    assert_eq!(terminal(&events).kind, "COMPLETED");
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_travel_in_few_frames() {
    let (server, serving) = serve(&["hostile"]).await;
    let task = server
        .assign("log_flood", args(json!({"lines": 1000})))
        .expect("assigns");
    let events = finish(&server, &task).await;
    assert_eq!(terminal(&events).kind, "COMPLETED");
    let logs: Vec<&str> = events
        .iter()
        .filter(|event| event.kind == "LOG")
        .filter_map(|event| event.fields["message"].as_str())
        .collect();
    let lines: Vec<&str> = logs.iter().flat_map(|text| text.lines()).collect();
    let expected: Vec<String> = (0..1000).map(|line| format!("log line {line}")).collect();
    assert_eq!(lines, expected, "every line once, in order");
    assert!(
        logs.len() <= 10,
        "{} LOG frames for 1,000 lines",
        logs.len()
    );
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_yields_in_flight_records_every_yield_once() {
    let server = DevServer::start(fast_server()).await.expect("server");
    let serving = Serving::start(fast_agent(&server.url()), components(&["hostile"]).await).await;
    until("the agent to connect", || server.is_connected(TOKEN)).await;
    // Long enough (32 MiB) to be mid-flight when the server goes down.
    let count = 2_000;
    let task = server
        .assign(
            "yield_flood",
            args(json!({"count": count, "kibibytes": 16})),
        )
        .expect("assigns");
    event(&server, &task, "YIELD").await;
    let server = bounded("restart", server.restart(Duration::from_millis(100)))
        .await
        .expect("restarts");
    let events = finish(&server, &task).await;
    assert_eq!(
        terminal(&events).kind,
        "COMPLETED",
        "{:?}",
        terminal(&events)
    );
    let indices: Vec<usize> = yields(&events)
        .iter()
        .filter_map(|returns| returns["return0"].as_str()?.split(':').next()?.parse().ok())
        .collect();
    assert_eq!(
        indices,
        (0..count).collect::<Vec<_>>(),
        "every yield once, in order"
    );
    serving.shutdown().await.expect("clean shutdown");
}
