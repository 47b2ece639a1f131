//! The `mytasks` subscription of a rekuest server, as `rekuest-host assign` follows it: GraphQL
//! over WebSocket in the `graphql-ws` subprotocol (the one rekuest servers and the official
//! client speak), the token in `connection_init`.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use reqwest::Url;

use rekuest_host::tls::{ClientTls, explain_certificate_error, server_of};

/// How long connecting and the `connection_init` handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The subscription document: each change carries a new task or one task event.
const MY_TASKS: &str = "subscription MyTasks { mytasks { create { id reference } \
    event { id task kind returns message progress } } }";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One task event from the feed.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEvent {
    /// The task's id on the server.
    pub task: String,
    /// The `TaskEventKind` (`YIELD`, `LOG`, `COMPLETED`, ...).
    pub kind: String,
    /// The event's fields (`returns`, `message`, `progress`).
    pub fields: serde_json::Map<String, Value>,
}

/// A running `mytasks` subscription.
pub struct MyTasks {
    socket: Socket,
}

impl MyTasks {
    /// Connects to `url` (`ws(s)://.../graphql`) with `token` and subscribes.
    pub async fn subscribe(url: &Url, token: &str, tls: &ClientTls) -> anyhow::Result<Self> {
        let mut request = url
            .as_str()
            .into_client_request()
            .with_context(|| format!("'{url}' is not a WebSocket URL"))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-ws"),
        );
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            request,
            None,
            true,
            Some(tls.websocket_connector()),
        );
        let (mut socket, _) = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Err(_) => bail!("{url} did not answer within {CONNECT_TIMEOUT:?}"),
            Ok(Ok(connected)) => connected,
            Ok(Err(error)) => match explain_certificate_error(&server_of(url), &error) {
                Some(explanation) => bail!("cannot connect to {url}: {explanation}"),
                None => {
                    return Err(error).with_context(|| {
                        format!(
                            "cannot reach a rekuest server at {url} (for a local one: \
                             `rekuest-host dev COMPONENT...`)"
                        )
                    });
                }
            },
        };
        let init = json!({"type": "connection_init", "payload": {"token": token}});
        socket
            .send(Message::text(init.to_string()))
            .await
            .context("the server closed the subscription socket")?;
        let acknowledged = tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                match next_message(&mut socket).await? {
                    Some(message) if message["type"] == "connection_ack" => return Ok(()),
                    Some(message) if message["type"] == "ka" => {}
                    Some(message) => bail!(
                        "the server refused the subscription: {}",
                        message.get("payload").unwrap_or(&message)
                    ),
                    None => bail!("the server closed the subscription socket: is the token valid?"),
                }
            }
        })
        .await;
        match acknowledged {
            Err(_) => {
                bail!("{url} did not acknowledge the subscription within {CONNECT_TIMEOUT:?}")
            }
            Ok(result) => result?,
        }
        let start =
            json!({"type": "start", "id": "1", "payload": {"query": MY_TASKS, "variables": {}}});
        socket
            .send(Message::text(start.to_string()))
            .await
            .context("the server closed the subscription socket")?;
        Ok(MyTasks { socket })
    }

    /// The next task event (`create` changes are skipped); an error when the subscription
    /// ends or fails.
    pub async fn next(&mut self) -> anyhow::Result<TaskEvent> {
        loop {
            let Some(message) = next_message(&mut self.socket).await? else {
                bail!("the server closed the subscription before the task ended");
            };
            match message["type"].as_str() {
                Some("data") => {}
                Some("ka") => continue,
                Some("complete") => {
                    bail!("the server ended the subscription before the task ended")
                }
                _ => bail!(
                    "the subscription failed: {}",
                    message.get("payload").unwrap_or(&message)
                ),
            }
            let payload = &message["payload"];
            if let Some(errors) = payload.get("errors").filter(|errors| !errors.is_null()) {
                bail!("the subscription failed: {errors}");
            }
            let event = &payload["data"]["mytasks"]["event"];
            let (Some(task), Some(kind)) = (event["task"].as_str(), event["kind"].as_str()) else {
                continue;
            };
            let mut fields = serde_json::Map::new();
            for key in ["returns", "message", "progress"] {
                if let Some(value) = event.get(key).filter(|value| !value.is_null()) {
                    fields.insert(key.to_string(), value.clone());
                }
            }
            return Ok(TaskEvent {
                task: task.to_string(),
                kind: kind.to_string(),
                fields,
            });
        }
    }
}

/// The next JSON text message (`None` when the socket closed).
async fn next_message(socket: &mut Socket) -> anyhow::Result<Option<Value>> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str())
                    .map(Some)
                    .context("the server sent something that is not JSON");
            }
            Some(Ok(Message::Close(_))) | None => return Ok(None),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error).context("the subscription socket broke"),
        }
    }
}
