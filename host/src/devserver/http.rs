//! The local server's HTTP side: `POST /graphql`, WebSocket upgrades for `/graphql`
//! (subscriptions) and `/agi` (agents), and the platform's login endpoints
//! ([`super::platform`]).

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
        (&Method::GET, "/.well-known/fakts") => json_response(
            &shared
                .platform
                .well_known(&origin(&request).unwrap_or_default()),
        ),
        (&Method::GET, "/ht") => plain(StatusCode::OK, "ok"),
        (&Method::POST, "/lok/f/redeem" | "/lok/f/start" | "/lok/f/challenge" | "/lok/f/claim")
        | (&Method::POST, "/lok/o/token") => platform_response(&shared, &path, request).await,
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

/// `http://host:port` as the client addressed this server.
fn origin(request: &Request<Incoming>) -> Option<String> {
    let host = request.headers().get(header::HOST)?.to_str().ok()?;
    Some(format!("http://{host}"))
}

/// The platform's POST endpoints.
async fn platform_response(
    shared: &Shared,
    path: &str,
    request: Request<Incoming>,
) -> Response<Body> {
    let Some(origin) = origin(&request) else {
        return plain(StatusCode::BAD_REQUEST, "no Host header");
    };
    let basic = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(basic_credentials);
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let platform = &shared.platform;
    if path == "/lok/o/token" {
        return match platform.token(&body, basic) {
            Ok(answer) => json_response(&answer),
            Err((status, answer)) => {
                let mut response = json_response(&answer);
                *response.status_mut() =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
                response
            }
        };
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return json_response(&json!({"status": "error", "message": "the body is not JSON"}));
    };
    json_response(&match path {
        "/lok/f/redeem" => platform.redeem(&body),
        "/lok/f/start" => platform.start(&body),
        "/lok/f/challenge" => platform.challenge(&body),
        _ => {
            let (host, port) = match reqwest::Url::parse(&origin) {
                Ok(url) => (
                    url.host_str().unwrap_or("127.0.0.1").to_string(),
                    url.port_or_known_default().unwrap_or(80),
                ),
                Err(_) => ("127.0.0.1".to_string(), 80),
            };
            platform.claim(&body, &origin, &host, port)
        }
    })
}

/// `user:password` of an HTTP Basic header value.
fn basic_credentials(encoded: &str) -> Option<(String, String)> {
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
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
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let Some(token) = token else {
        return unauthenticated("No Authorization header");
    };
    let principal = match shared.principal(&token) {
        Ok(principal) => principal,
        Err(reason) => return unauthenticated(reason),
    };
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return plain(
                StatusCode::BAD_REQUEST,
                &format!("the body is not JSON: {error}"),
            );
        }
    };
    json_response(&execute(shared, &principal, &request))
}

/// The request's body, at most [`MAX_BODY_BYTES`]; a larger one is answered 413.
async fn read_body(request: Request<Incoming>) -> Result<bytes::Bytes, Response<Body>> {
    match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => Ok(body.to_bytes()),
        Err(error) => Err(plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("could not read the body: {error}"),
        )),
    }
}

/// A refused token, as the real server refuses it: HTTP 401 with a GraphQL error whose
/// `extensions.code` is `UNAUTHENTICATED`.
fn unauthenticated(message: &str) -> Response<Body> {
    let mut response = json_response(&json!({
        "data": null,
        "errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}],
    }));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response
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
            (kind, name) => super::keep::resolve(shared, token, kind, field)
                .or_else(|| caller_api::resolve(shared, token, kind, field))
                .unwrap_or_else(|| {
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
