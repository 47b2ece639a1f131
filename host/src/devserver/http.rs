//! The local server's HTTP side: `POST /graphql`, and WebSocket upgrades for `/graphql`
//! (subscriptions) and `/agi` (agents).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::graphql;
use super::state::Shared;
use super::subscriptions::{self, Dialect};
use super::{agent_socket, caller_api};

/// Largest GraphQL request body accepted.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Largest WebSocket message accepted from a peer.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

type Body = Full<Bytes>;

/// Answers one HTTP request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().trim_end_matches('/').to_string();
    Ok(match (request.method(), path.as_str()) {
        (&Method::POST, "/graphql") => graphql_response(&shared, request).await,
        (&Method::GET, "/graphql") => {
            let offer = request
                .headers()
                .get(header::SEC_WEBSOCKET_PROTOCOL)
                .and_then(|value| value.to_str().ok());
            match Dialect::choose(offer) {
                Some(dialect) => upgrade(request, Some(dialect.name()), move |socket| {
                    subscriptions::serve(shared, socket, dialect, stop)
                }),
                None => plain(
                    StatusCode::BAD_REQUEST,
                    "GraphQL over WebSocket speaks graphql-ws or graphql-transport-ws",
                ),
            }
        }
        (&Method::GET, "/agi") => upgrade(request, None, move |socket| {
            agent_socket::serve(shared, socket, stop)
        }),
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    })
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(text.to_string()));
    *response.status_mut() = status;
    response
}

fn json_response(value: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(value.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Accepts a WebSocket upgrade (answering the subprotocol `protocol`) and runs `serve` on the
/// socket once it is upgraded.
fn upgrade<F, Fut>(
    mut request: Request<Incoming>,
    protocol: Option<&'static str>,
    serve: F,
) -> Response<Body>
where
    F: FnOnce(WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let wants_websocket = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    let Some(key) = request.headers().get("sec-websocket-key") else {
        return plain(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade");
    };
    if !wants_websocket {
        return plain(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade");
    }
    let accept = derive_accept_key(key.as_bytes());
    let upgrading = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match upgrading.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .read_buffer_size(crate::protocol::SOCKET_READ_BUFFER)
                    .max_message_size(Some(MAX_MESSAGE_BYTES))
                    .max_frame_size(Some(MAX_MESSAGE_BYTES));
                let socket = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                serve(socket).await;
            }
            Err(error) => tracing::debug!("local server: upgrade failed: {error}"),
        }
    });
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert("sec-websocket-accept", accept);
    }
    if let Some(protocol) = protocol {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol),
        );
    }
    response
}

fn graphql_errors(message: &str) -> Value {
    json!({"data": null, "errors": [{"message": message}]})
}

async fn graphql_response(shared: &Shared, request: Request<Incoming>) -> Response<Body> {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .strip_prefix("Bearer ")
                .unwrap_or(value)
                .trim()
                .to_string()
        });
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(error) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("could not read the body: {error}"),
            );
        }
    };
    let Some(token) = token else {
        return json_response(&graphql_errors("No Authorization header"));
    };
    if !shared.token_allowed(&token) {
        return json_response(&graphql_errors("Invalid token"));
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return plain(
                StatusCode::BAD_REQUEST,
                &format!("the body is not JSON: {error}"),
            );
        }
    };
    json_response(&execute(shared, &token, &request))
}

/// Runs a GraphQL request (`{"query", "variables", "operationName"}`) for `token`.
pub(crate) fn execute(shared: &Shared, token: &str, request: &Value) -> Value {
    let Some(document) = request.get("query").and_then(Value::as_str) else {
        return graphql_errors("the request has no query");
    };
    let empty = Map::new();
    let variables = request
        .get("variables")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let operation_name = request.get("operationName").and_then(Value::as_str);
    let operation = match graphql::parse(document, operation_name, variables) {
        Ok(operation) => operation,
        Err(error) => return graphql_errors(&error.0),
    };
    let mut data = Map::new();
    let mut errors = Vec::new();
    for field in &operation.fields {
        let input = field.arguments.get("input").unwrap_or(&Value::Null);
        let result = match (operation.kind.as_str(), field.name.as_str()) {
            (_, "__typename") => Ok(Value::from(match operation.kind.as_str() {
                "mutation" => "Mutation",
                _ => "Query",
            })),
            ("mutation", "ensureAgent") => Ok(shared.ensure_agent(token, input)),
            ("mutation", "implementAgent") => shared.implement_agent(token, input),
            (kind, name) => caller_api::resolve(shared, token, kind, field).unwrap_or_else(|| {
                Err(format!(
                    "Cannot query field \"{name}\" on type \"{}\" of the local server.",
                    if kind == "mutation" {
                        "Mutation"
                    } else {
                        "Query"
                    }
                ))
            }),
        };
        match result {
            Ok(value) => {
                data.insert(
                    field.response_key().to_string(),
                    operation.project(&value, &field.selection),
                );
            }
            Err(message) => {
                data.insert(field.response_key().to_string(), Value::Null);
                errors.push(json!({"message": message, "path": [field.response_key()]}));
            }
        }
    }
    if errors.is_empty() {
        json!({"data": data})
    } else {
        json!({"data": data, "errors": errors})
    }
}
