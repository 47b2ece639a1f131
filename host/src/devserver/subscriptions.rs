//! GraphQL over WebSocket at `/graphql`, in both subprotocols clients speak: `graphql-ws`
//! (the legacy subscriptions-transport-ws protocol the official `rekuest-next` client uses:
//! `connection_init`/`start`/`data`/`stop`) and `graphql-transport-ws`
//! (`connection_init`/`subscribe`/`next`/`complete`, `ping`/`pong`). It serves the `mytasks`
//! subscription and runs queries and mutations sent over the socket.
//!
//! Each subscription forwards its caller's feed (bounded, see [`super::feed`]) into one
//! bounded queue per connection; a connection that stops reading therefore ends its
//! subscriptions with an error instead of growing the server's memory.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::feed::SUBSCRIBER_QUEUE;
use super::graphql::{self, Field, Operation};
use super::http::execute;
use super::state::Shared;

/// Frames queued per connection for its subscriptions.
const OUTGOING_QUEUE: usize = 256;
/// Subscriptions open at once per connection.
pub const MAX_SUBSCRIPTIONS: usize = 64;

/// The GraphQL-over-WebSocket subprotocol of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `graphql-ws`: the legacy subscriptions-transport-ws protocol.
    Legacy,
    /// `graphql-transport-ws`: the graphql-ws library's protocol.
    Transport,
}

impl Dialect {
    /// Picks the subprotocol from a `Sec-WebSocket-Protocol` offer (the client's first one
    /// that is known); without an offer, `graphql-ws`.
    pub(crate) fn choose(offer: Option<&str>) -> Option<Dialect> {
        let Some(offer) = offer else {
            return Some(Dialect::Legacy);
        };
        offer.split(',').find_map(|name| match name.trim() {
            "graphql-ws" => Some(Dialect::Legacy),
            "graphql-transport-ws" => Some(Dialect::Transport),
            _ => None,
        })
    }

    /// Its name, as the handshake answers it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dialect::Legacy => "graphql-ws",
            Dialect::Transport => "graphql-transport-ws",
        }
    }

    fn data(self, id: &str, payload: Value) -> Message {
        let kind = match self {
            Dialect::Legacy => "data",
            Dialect::Transport => "next",
        };
        frame(json!({"type": kind, "id": id, "payload": payload}))
    }

    fn error(self, id: &str, message: &str) -> Message {
        let payload = match self {
            Dialect::Legacy => json!({"message": message}),
            Dialect::Transport => json!([{"message": message}]),
        };
        frame(json!({"type": "error", "id": id, "payload": payload}))
    }

    fn complete(id: &str) -> Message {
        frame(json!({"type": "complete", "id": id}))
    }
}

fn frame(value: Value) -> Message {
    Message::text(value.to_string())
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_string().into(),
    }))
}

/// The token of a `connection_init` payload: `token`, or an `Authorization` (`Bearer ...`)
/// at its top level or under `headers`.
fn token_of(payload: &Value) -> Option<String> {
    let bearer = |value: &Value| {
        value.as_str().map(|text| {
            text.strip_prefix("Bearer ")
                .unwrap_or(text)
                .trim()
                .to_string()
        })
    };
    payload
        .get("token")
        .and_then(bearer)
        .or_else(|| payload.get("Authorization").and_then(bearer))
        .or_else(|| {
            payload
                .get("headers")
                .and_then(|headers| headers.get("Authorization"))
                .and_then(bearer)
        })
}

/// What the connection does after a frame.
enum Next {
    /// Send these frames, keep going.
    Send(Vec<Message>),
    /// Send this close frame and end.
    Close(Message),
}

/// One GraphQL-over-WebSocket connection.
struct Connection {
    shared: Arc<Shared>,
    dialect: Dialect,
    token: Option<String>,
    subscriptions: HashMap<String, AbortHandle>,
    outgoing: mpsc::Sender<Message>,
}

/// Serves one connection until the peer leaves or the server stops.
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    socket: WebSocketStream<S>,
    dialect: Dialect,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = socket.split();
    let (outgoing, mut queued) = mpsc::channel(OUTGOING_QUEUE);
    let mut connection = Connection {
        shared,
        dialect,
        token: None,
        subscriptions: HashMap::new(),
        outgoing,
    };
    loop {
        let next = tokio::select! {
            _ = super::stopped(&mut stop) => break,
            Some(message) = queued.recv() => Next::Send(vec![message]),
            frame = stream.next() => match frame {
                None | Some(Err(_)) => break,
                Some(Ok(Message::Close(_))) => {
                    // Sends the close reply tungstenite queued.
                    let _ = sink.close().await;
                    break;
                }
                Some(Ok(Message::Text(text))) => connection.handle(text.as_str()),
                Some(Ok(Message::Binary(_))) => connection.malformed("binary frames are not GraphQL"),
                Some(Ok(_)) => continue,
            },
        };
        match next {
            Next::Send(messages) => {
                for message in messages {
                    if sink.send(message).await.is_err() {
                        connection.end();
                        return;
                    }
                }
            }
            Next::Close(message) => {
                let _ = sink.send(message).await;
                break;
            }
        }
    }
    connection.end();
}

impl Connection {
    fn end(&mut self) {
        for (_, subscription) in self.subscriptions.drain() {
            subscription.abort();
        }
    }

    /// A frame that is not a message of the protocol.
    fn malformed(&self, why: &str) -> Next {
        match self.dialect {
            Dialect::Legacy => Next::Send(vec![frame(
                json!({"type": "connection_error", "payload": {"message": why}}),
            )]),
            Dialect::Transport => Next::Close(close(4400, why)),
        }
    }

    fn handle(&mut self, text: &str) -> Next {
        let message: Value = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(error) => return self.malformed(&format!("not JSON: {error}")),
        };
        let Some(kind) = message.get("type").and_then(Value::as_str) else {
            return self.malformed("a message needs a 'type'");
        };
        let id = message.get("id").and_then(Value::as_str);
        let payload = message.get("payload").unwrap_or(&Value::Null);
        match (self.dialect, kind) {
            (_, "connection_init") => self.init(payload),
            (Dialect::Legacy, "start") | (Dialect::Transport, "subscribe") => match id {
                Some(id) => self.start(id, payload),
                None => self.malformed("a subscription needs an 'id'"),
            },
            (Dialect::Legacy, "stop") | (Dialect::Transport, "complete") => {
                if let Some(subscription) = id.and_then(|id| self.subscriptions.remove(id)) {
                    subscription.abort();
                }
                match (self.dialect, id) {
                    (Dialect::Legacy, Some(id)) => Next::Send(vec![Dialect::complete(id)]),
                    _ => Next::Send(Vec::new()),
                }
            }
            (Dialect::Legacy, "connection_terminate") => Next::Close(close(1000, "terminated")),
            (Dialect::Transport, "ping") => Next::Send(vec![frame(json!({"type": "pong"}))]),
            (Dialect::Transport, "pong") => Next::Send(Vec::new()),
            (_, other) => self.malformed(&format!("unknown message type '{other}'")),
        }
    }

    fn init(&mut self, payload: &Value) -> Next {
        if self.token.is_some() {
            return match self.dialect {
                Dialect::Legacy => Next::Send(Vec::new()),
                Dialect::Transport => Next::Close(close(4429, "Too many initialisation requests")),
            };
        }
        match token_of(payload).and_then(|token| self.shared.principal(&token).ok()) {
            Some(principal) => {
                // Who the caller is, as GraphQL over HTTP sees it (a client id for
                // platform tokens): the key of its `mytasks` feed.
                self.token = Some(principal);
                Next::Send(vec![frame(json!({"type": "connection_ack"}))])
            }
            None => match self.dialect {
                Dialect::Legacy => Next::Close(close(4403, "Invalid or missing token")),
                Dialect::Transport => Next::Close(close(4403, "Forbidden")),
            },
        }
    }

    fn start(&mut self, id: &str, payload: &Value) -> Next {
        let Some(token) = self.token.clone() else {
            return match self.dialect {
                Dialect::Legacy => Next::Send(vec![
                    self.dialect
                        .error(id, "send connection_init with a token first"),
                ]),
                Dialect::Transport => Next::Close(close(4401, "Unauthorized")),
            };
        };
        self.subscriptions
            .retain(|_, subscription| !subscription.is_finished());
        if self.subscriptions.contains_key(id) {
            return match self.dialect {
                Dialect::Legacy => Next::Send(vec![
                    self.dialect
                        .error(id, &format!("subscription '{id}' is already running")),
                ]),
                Dialect::Transport => {
                    Next::Close(close(4409, &format!("Subscriber for {id} already exists")))
                }
            };
        }
        let empty = Map::new();
        let variables = payload
            .get("variables")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let document = payload.get("query").and_then(Value::as_str).unwrap_or("");
        let operation_name = payload.get("operationName").and_then(Value::as_str);
        let operation = match graphql::parse(document, operation_name, variables) {
            Ok(operation) => operation,
            Err(error) => return Next::Send(vec![self.dialect.error(id, &error.0)]),
        };
        if operation.kind != "subscription" {
            let result = execute(&self.shared, &token, payload);
            return Next::Send(vec![self.dialect.data(id, result), Dialect::complete(id)]);
        }
        let field = match operation.fields.as_slice() {
            [field] if field.name == "mytasks" => field.clone(),
            _ => {
                return Next::Send(vec![self.dialect.error(
                    id,
                    "the local server serves one subscription field: mytasks",
                )]);
            }
        };
        if self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            return Next::Send(vec![self.dialect.error(
                id,
                &format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection"),
            )]);
        }
        let changes = self.shared.my_tasks(&token);
        let forward = forward(
            self.dialect,
            id.to_string(),
            operation,
            field,
            changes,
            self.outgoing.clone(),
        );
        let handle = tokio::spawn(forward);
        self.subscriptions
            .insert(id.to_string(), handle.abort_handle());
        Next::Send(Vec::new())
    }
}

/// Sends each change of a `mytasks` feed, shaped to the subscription's selection, in order.
/// A feed that ends was dropped for falling behind: the subscription ends with an error.
async fn forward(
    dialect: Dialect,
    id: String,
    operation: Operation,
    field: Field,
    mut changes: mpsc::Receiver<super::feed::Change>,
    outgoing: mpsc::Sender<Message>,
) {
    while let Some(change) = changes.recv().await {
        let mut data = Map::new();
        data.insert(
            field.response_key().to_string(),
            operation.project(&change, &field.selection),
        );
        let message = dialect.data(&id, json!({"data": data}));
        if outgoing.send(message).await.is_err() {
            return;
        }
    }
    let _ = outgoing
        .send(dialect.error(
            &id,
            &format!(
                "this subscription fell more than {SUBSCRIBER_QUEUE} task changes behind and was \
                 ended; subscribe again"
            ),
        ))
        .await;
}
