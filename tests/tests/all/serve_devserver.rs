//! The local server speaks the server side of the protocol like the real one: REGISTER
//! first, INIT, heartbeats with the 3001 timeout, EVENT_ACK, close codes, SESSION_INIT,
//! and GraphQL documents as the Python client writes them.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::serve_support::*;
use rekuest_host::agent::GraphqlClient;
use rekuest_host::devserver::DevServer;
use rekuest_host::protocol::Endpoints;

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ensure(server: &DevServer, token: &str) {
    let endpoints = Endpoints::from_base(&server.url()).expect("url");
    let tls = rekuest_host::tls::ClientTls::new(&[]).expect("trust store");
    GraphqlClient::new(endpoints.graphql, token.to_string(), &tls)
        .expect("client")
        .ensure("raw")
        .await
        .expect("ensures");
}

async fn connect(server: &DevServer) -> Client {
    let url = Endpoints::from_base(&server.url())
        .expect("url")
        .agent_socket;
    bounded("connect", tokio_tungstenite::connect_async(url.as_str()))
        .await
        .expect("connects")
        .0
}

async fn send(client: &mut Client, frame: Value) {
    client
        .send(Message::text(frame.to_string()))
        .await
        .expect("sends");
}

/// The next text frame, or the close code.
async fn next(client: &mut Client) -> Result<Value, u16> {
    loop {
        match bounded("a frame", client.next()).await {
            Some(Ok(Message::Text(text))) => {
                return Ok(serde_json::from_str(text.as_str()).expect("json"));
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(frame.map(|frame| u16::from(frame.code)).unwrap_or(1005));
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => panic!("socket error: {error}"),
            None => panic!("closed without a close frame"),
        }
    }
}

/// Reads until the server closes; the connection is dropped after.
async fn close_code(mut client: Client) -> u16 {
    loop {
        if let Err(code) = next(&mut client).await {
            return code;
        }
    }
}

async fn registered(server: &DevServer, token: &str) -> Client {
    until("the previous connection to be gone", || {
        !server.counts_as_connected(token)
    })
    .await;
    let mut client = connect(server).await;
    send(
        &mut client,
        json!({"type": "REGISTER", "token": token, "session_id": "s1"}),
    )
    .await;
    let init = next(&mut client).await.expect("INIT");
    assert_eq!(init["type"], "INIT");
    assert!(init["inquiries"].is_array());
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_like_the_real_server() {
    let mut config = fast_server();
    config.heartbeat_interval = Duration::from_millis(100);
    config.heartbeat_timeout = Duration::from_millis(200);
    let server = DevServer::start(config).await.expect("server");

    // Not ensured yet: REGISTER is refused with 3003.
    let mut client = connect(&server).await;
    send(&mut client, json!({"type": "REGISTER", "token": "t1"})).await;
    assert_eq!(close_code(client).await, 3003);
    ensure(&server, "t1").await;

    // First frame not REGISTER: 3003. Binary: 3002. Not JSON: 3002.
    let mut client = connect(&server).await;
    send(&mut client, json!({"type": "HEARTBEAT_ANSWER", "id": "x"})).await;
    assert_eq!(close_code(client).await, 3003);
    let mut client = connect(&server).await;
    client
        .send(Message::binary(vec![1u8]))
        .await
        .expect("sends");
    assert_eq!(close_code(client).await, 3002);
    let mut client = connect(&server).await;
    client.send(Message::text("{oops")).await.expect("sends");
    assert_eq!(close_code(client).await, 3002);

    // An old `mode` key: PROTOCOL_ERROR, then 3003.
    let mut client = connect(&server).await;
    send(
        &mut client,
        json!({"type": "REGISTER", "token": "t1", "mode": "OBSERVER"}),
    )
    .await;
    assert_eq!(
        next(&mut client).await.expect("frame")["type"],
        "PROTOCOL_ERROR"
    );
    assert_eq!(close_code(client).await, 3003);

    // Registered: SESSION_INIT is accepted, heartbeats come, a STARTED for an unknown task
    // is acked, a YIELD for one closes with 3003.
    let mut client = registered(&server, "t1").await;
    send(
        &mut client,
        json!({"type": "SESSION_INIT", "id": "s", "session_id": "s1", "states": {}}),
    )
    .await;
    send(
        &mut client,
        json!({"type": "STARTED", "task": "77", "id": "e1", "seq": 1}),
    )
    .await;
    let mut acked = false;
    let mut heartbeat = false;
    while !(acked && heartbeat) {
        let frame = next(&mut client).await.expect("frame");
        match frame["type"].as_str() {
            Some("EVENT_ACK") => {
                assert_eq!(frame["event"], "e1");
                assert_eq!(frame["seq"], 1);
                acked = true;
            }
            Some("HEARTBEAT") => {
                heartbeat = true;
                send(&mut client, json!({"type": "HEARTBEAT_ANSWER", "id": "h"})).await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    send(
        &mut client,
        json!({"type": "YIELD", "task": "77", "id": "e2", "returns": {}}),
    )
    .await;
    assert_eq!(close_code(client).await, 3003);

    // A second REGISTER closes with 3003.
    let mut client = registered(&server, "t1").await;
    send(&mut client, json!({"type": "REGISTER", "token": "t1"})).await;
    assert_eq!(close_code(client).await, 3003);

    // Heartbeats left unanswered: 3001.
    let client = registered(&server, "t1").await;
    assert_eq!(close_code(client).await, 3001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_graphql_as_the_python_client_asks() {
    let server = DevServer::start(fast_server()).await.expect("server");
    let endpoint = format!("{}/graphql", server.url());
    let document = "fragment Agent on Agent {\n  id\n  hash\n  client {\n    id\n    __typename\n  }\n  user {\n    sub\n    __typename\n  }\n  memoryShelve {\n    id\n    __typename\n  }\n  __typename\n}\n\nmutation EnsureAgent($input: AgentInput!) {\n  ensureAgent(input: $input) {\n    ...Agent\n    __typename\n  }\n}";
    let http = reqwest_free_post(&endpoint, Some("py"), &json!({
        "query": document, "variables": {"input": {"name": "python"}}, "operationName": "EnsureAgent"
    }))
    .await;
    let agent = &http["data"]["ensureAgent"];
    assert_eq!(agent["__typename"], "Agent");
    assert_eq!(agent["hash"], "");
    assert_eq!(agent["client"]["__typename"], "Client");
    assert!(agent["user"]["sub"].is_string());
    assert!(agent.get("name").is_none(), "only selected fields: {agent}");

    let unauthorized =
        reqwest_free_post(&endpoint, None, &json!({"query": "{ __typename }"})).await;
    assert_eq!(
        unauthorized["errors"][0]["message"],
        "No Authorization header"
    );
}

/// A minimal HTTP/1.1 POST over a TcpStream, so the test checks the server's wire answer.
async fn reqwest_free_post(url: &str, token: Option<&str>, body: &Value) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host")
        .to_string();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connects");
    let body = body.to_string();
    let auth = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("writes");
    let mut response = String::new();
    bounded("the response", stream.read_to_string(&mut response))
        .await
        .expect("reads");
    let (_, json) = response.split_once("\r\n\r\n").expect("a body");
    serde_json::from_str(json).expect("json body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_counts_as_live_for_the_stale_window() {
    let mut config = fast_server();
    config.heartbeat_interval = Duration::from_millis(100);
    config.heartbeat_timeout = Duration::from_millis(200);
    config.stale_window = Duration::from_secs(2);
    let server = DevServer::start(config).await.expect("server");
    ensure(&server, "t1").await;
    let endpoints = Endpoints::from_base(&server.url()).expect("url");
    let tls = rekuest_host::tls::ClientTls::new(&[]).expect("trust store");
    let graphql = GraphqlClient::new(endpoints.graphql, "t1".to_string(), &tls).expect("client");

    // The server closes (3001: heartbeats unanswered); the connection still counts as live.
    let client = registered(&server, "t1").await;
    assert_eq!(close_code(client).await, 3001);
    // The server forgets the live connection once its close handshake is over.
    until("the server to drop the closed connection", || {
        !server.is_connected("t1")
    })
    .await;
    assert!(server.counts_as_connected("t1"));
    assert!(
        bounded("ensure", graphql.ensure("raw"))
            .await
            .expect("ensures")
            .connected
    );
    let mut client = connect(&server).await;
    send(&mut client, json!({"type": "REGISTER", "token": "t1"})).await;
    let error = next(&mut client).await.expect("PROTOCOL_ERROR");
    assert_eq!(error["type"], "PROTOCOL_ERROR");
    assert_eq!(
        error["error"],
        "Another connection is already registered for this agent. Reconnect with force to take over."
    );
    assert_eq!(close_code(client).await, 4004);
    // `force` takes over at once.
    let mut client = connect(&server).await;
    send(
        &mut client,
        json!({"type": "REGISTER", "token": "t1", "force": true}),
    )
    .await;
    assert_eq!(next(&mut client).await.expect("INIT")["type"], "INIT");
    // A close handshake from the agent leaves nothing stale.
    client.close(None).await.expect("closes");
    until("the agent to be offline", || {
        !server.counts_as_connected("t1")
    })
    .await;

    // Silenced: no frame at all (not even heartbeats), TCP stays open, the connection is stale
    // and then forgotten.
    let mut client = registered(&server, "t1").await;
    assert!(server.silence("t1"));
    let silent = tokio::time::timeout(Duration::from_millis(600), client.next()).await;
    assert!(silent.is_err(), "a silenced connection sent {silent:?}");
    assert!(server.counts_as_connected("t1"));
    until("the stale window to pass", || {
        !server.counts_as_connected("t1")
    })
    .await;
    registered(&server, "t1").await;
}
