//! The caller GraphQL of the local server over WebSocket, in both subprotocols: a caller's
//! `mytasks` carries its tasks' changes in order, queries and mutations run over the socket
//! too, and malformed input gets GraphQL errors while the server keeps serving.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::serve_support::*;
use rekuest_host::agent::GraphqlClient;
use rekuest_host::devserver::DevServer;
use rekuest_host::protocol::Endpoints;
use rekuest_host::tls::ClientTls;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const SUBSCRIBE: &str = "subscription { mytasks { create { id reference isDone } \
    event { id task kind returns message } } }";

async fn connect(server: &DevServer, protocol: &'static str) -> Socket {
    let url = Endpoints::from_base(&server.url())
        .expect("url")
        .ws("graphql");
    let mut request = url.as_str().into_client_request().expect("request");
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connects");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|value| value.to_str().ok()),
        Some(protocol)
    );
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .expect("sends");
}

/// The next JSON message (`None`: closed), skipping keep-alives and pongs.
async fn receive(socket: &mut Socket) -> Option<Value> {
    bounded("a message", async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(text.as_str()).expect("JSON");
                    if message["type"] != "ka" {
                        return Some(message);
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
}

async fn init(socket: &mut Socket) {
    send(
        socket,
        json!({"type": "connection_init", "payload": {"token": "caller"}}),
    )
    .await;
    assert_eq!(
        receive(socket).await.expect("ack")["type"],
        "connection_ack"
    );
}

fn assign(id: &str, action: &str, args: Value, reference: &str) -> Value {
    json!({"id": id, "payload": {
        "query": "mutation A($input: AssignInput!) { assign(input: $input) { id reference } }",
        "variables": {"input": {"interface": action, "args": args, "reference": reference}},
    }})
}

fn with_type(mut message: Value, kind: &str) -> Value {
    message["type"] = json!(kind);
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mytasks_streams_a_callers_task_in_order_in_both_subprotocols() {
    let (server, serving) = serve(&["generator"]).await;
    for (protocol, start, data) in [
        ("graphql-ws", "start", "data"),
        ("graphql-transport-ws", "subscribe", "next"),
    ] {
        let mut socket = connect(&server, protocol).await;
        init(&mut socket).await;
        send(
            &mut socket,
            json!({"type": start, "id": "feed", "payload": {"query": SUBSCRIBE}}),
        )
        .await;
        send(
            &mut socket,
            with_type(assign("a", "count", json!({"n": 5}), protocol), start),
        )
        .await;
        let mut task = None;
        let mut created = None;
        let mut kinds = Vec::new();
        let mut values = Vec::new();
        let mut event_ids = Vec::new();
        while kinds.last().is_none_or(|kind| kind != "COMPLETED") {
            let message = receive(&mut socket).await.expect("open");
            match message["id"].as_str() {
                Some("a") if message["type"] == data => {
                    assert_eq!(message["payload"]["data"]["assign"]["reference"], protocol);
                    task = message["payload"]["data"]["assign"]["id"]
                        .as_str()
                        .map(String::from);
                }
                Some("a") => assert_eq!(message["type"], "complete"),
                Some("feed") => {
                    assert_eq!(message["type"], data, "{message}");
                    let change = &message["payload"]["data"]["mytasks"];
                    if change["create"].is_object() {
                        assert_eq!(change["create"]["reference"], protocol);
                        created = change["create"]["id"].as_str().map(String::from);
                        assert!(kinds.is_empty(), "create comes first");
                    } else {
                        let event = &change["event"];
                        assert_eq!(event["task"].as_str(), created.as_deref());
                        kinds.push(event["kind"].as_str().expect("kind").to_string());
                        event_ids.push(event["id"].clone());
                        if event["kind"] == "YIELD" {
                            values.push(event["returns"]["return0"].clone());
                        }
                    }
                }
                _ => panic!("unexpected {message}"),
            }
        }
        assert_eq!(task, created);
        assert_eq!(values, [1, 2, 3, 4, 5].map(|value| json!(value)));
        assert_eq!(kinds.first().map(String::as_str), Some("BOUND"));
        assert!(kinds.iter().any(|kind| kind == "LOG"), "{kinds:?}");
        let mut unique = event_ids.clone();
        unique.dedup();
        assert_eq!(unique, event_ids, "each event once");
    }
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_graphql_gets_errors_and_the_server_keeps_serving() {
    let (server, serving) = serve(&["math"]).await;
    let endpoints = Endpoints::from_base(&server.url()).expect("url");
    let client = GraphqlClient::new(
        endpoints.graphql.clone(),
        "caller".to_string(),
        &ClientTls::new(&[]).expect("tls"),
    )
    .expect("client");
    for (document, variables, expected) in [
        ("mutation { assign(input: ", json!({}), "expected"),
        (
            "query { nothing }",
            json!({}),
            "Cannot query field \"nothing\"",
        ),
        (
            "mutation A($i: AssignInput!) { assign(input: $i) { id } }",
            json!({"i": {"interface": "nope", "args": {}}}),
            "No implementation found for interface 'nope'",
        ),
        (
            "mutation A($i: AssignInput!) { assign(input: $i) { id } }",
            json!({"i": {"interface": "add", "args": [1, 2]}}),
            "'args' must be an object",
        ),
        (
            "mutation { cancel(input: {task: \"999\"}) { id } }",
            json!({}),
            "No task '999'",
        ),
        (
            "query { actions(filters: {protocols: [\"x\"]}) { id } }",
            json!({}),
            "cannot filter by 'protocols'",
        ),
    ] {
        let error = client
            .request("a malformed request", document, variables)
            .await
            .expect_err(document)
            .to_string();
        assert!(error.contains(expected), "{document}: {error}");
    }

    let mut socket = connect(&server, "graphql-ws").await;
    send(
        &mut socket,
        json!({"type": "start", "id": "early", "payload": {"query": SUBSCRIBE}}),
    )
    .await;
    let refused = receive(&mut socket).await.expect("open");
    assert_eq!(refused["type"], "error", "{refused}");
    init(&mut socket).await;
    socket
        .send(Message::text("{not json"))
        .await
        .expect("sends");
    assert_eq!(
        receive(&mut socket).await.expect("open")["type"],
        "connection_error"
    );
    for query in [
        "subscription { tasks { id } }",
        "subscription {",
        "query { agents { id } ",
    ] {
        send(
            &mut socket,
            json!({"type": "start", "id": "bad", "payload": {"query": query}}),
        )
        .await;
        let answer = receive(&mut socket).await.expect("open");
        assert_eq!(answer["type"], "error", "{query}: {answer}");
        assert!(answer["payload"]["message"].is_string(), "{answer}");
    }
    // Still serving, on the same socket: the lookups the official client uses, and a call.
    send(
        &mut socket,
        json!({"type": "start", "id": "find", "payload": {
            "query": "query { action(matching: {key: \"add\"}) { id hash key kind args { key kind nullable } } }"}}),
    )
    .await;
    let found = receive(&mut socket).await.expect("open");
    let action = &found["payload"]["data"]["action"];
    assert_eq!(action["key"], "add", "{found}");
    assert_eq!(action["id"], action["hash"]);
    assert_eq!(
        action["args"][0],
        json!({"key": "a", "kind": "INT", "nullable": false})
    );
    assert_eq!(
        receive(&mut socket).await.expect("open")["type"],
        "complete"
    );
    send(
        &mut socket,
        json!({"type": "start", "id": "feed", "payload": {"query": SUBSCRIBE}}),
    )
    .await;
    send(
        &mut socket,
        with_type(assign("a", "add", json!({"a": 40, "b": 2}), "r"), "start"),
    )
    .await;
    let mut returns = None;
    while returns.is_none() {
        let message = receive(&mut socket).await.expect("open");
        let event = &message["payload"]["data"]["mytasks"]["event"];
        if event["kind"] == "YIELD" {
            returns = Some(event["returns"].clone());
        }
    }
    assert_eq!(returns, Some(json!({"return0": 42})));
    serving.shutdown().await.expect("clean shutdown");
}
