//! Outbound HTTP for guests (`wasi:http`), against local test servers: only granted origins,
//! redirects re-checked, restricted addresses only when granted explicitly, response caps,
//! timeouts, cancel, and the tokens the host adds for Arkitekt services only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rekuest_host::runtime::http::{HttpClient, HttpGrant, HttpLimits, HttpPolicy, StaticToken};
use rekuest_host::runtime::{
    ActionComponent, Allocation, ComponentCache, Failure, LimitExceeded, Limits, Outcome, Runtime,
    RuntimeConfig, SandboxPolicy, TaskControl, TaskRequest,
};
use rekuest_host_tests::tasks::Collector;
use rekuest_host_tests::{
    component, host_binary, python_component, test_cache_dir, workspace_root,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// One request a test server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A local HTTP/1.1 server with fixed routes that records what it receives.
struct TestServer {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Notified when a request arrives, and when a slow response's connection is gone.
    arrived: Arc<Notify>,
    closed: Arc<Notify>,
}

impl TestServer {
    async fn start(redirect_to: Option<SocketAddr>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let closed = Arc::new(Notify::new());
        let server = TestServer {
            address,
            seen: Arc::clone(&seen),
            arrived: Arc::clone(&arrived),
            closed: Arc::clone(&closed),
        };
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (seen, arrived, closed) = (seen.clone(), arrived.clone(), closed.clone());
                tokio::spawn(async move {
                    serve(stream, address, redirect_to, seen, arrived, closed).await;
                });
            }
        });
        server
    }

    fn origin(&self) -> String {
        format!("http://{}", self.address)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|length| length.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Some(Seen {
        method,
        path,
        headers,
        body,
    })
}

async fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("connection: close\r\n\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.shutdown().await;
}

/// The pixels of image 7 (4x2).
const PIXELS: [u8; 8] = [0, 50, 100, 150, 200, 250, 127, 128];

async fn serve(
    mut stream: TcpStream,
    own: SocketAddr,
    redirect_to: Option<SocketAddr>,
    seen: Arc<Mutex<Vec<Seen>>>,
    arrived: Arc<Notify>,
    closed: Arc<Notify>,
) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    seen.lock().expect("lock").push(request.clone());
    arrived.notify_one();
    let path = request.path.as_str();
    match (request.method.as_str(), path) {
        ("GET", "/hello") => {
            respond(&mut stream, "200 OK", &[], b"hello from the test server").await
        }
        ("GET", "/redirect-same") => {
            respond(
                &mut stream,
                "302 Found",
                &[("location", "/hello".into())],
                b"",
            )
            .await
        }
        ("GET", "/redirect-away") => {
            let target = redirect_to.unwrap_or(own);
            let location = format!("http://{target}/hello");
            respond(&mut stream, "302 Found", &[("location", location)], b"").await
        }
        ("GET", "/big") => respond(&mut stream, "200 OK", &[], &[b'x'; 4096]).await,
        ("GET", "/big-unannounced") => {
            // No content-length: the body ends when the connection does.
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")
                .await;
            let _ = stream.write_all(&[b'y'; 4096]).await;
            let _ = stream.shutdown().await;
        }
        ("GET", "/silent") => {
            // Never answers; waits until the client goes away.
            let mut rest = [0u8; 64];
            while matches!(stream.read(&mut rest).await, Ok(n) if n > 0) {}
            closed.notify_one();
        }
        ("GET", "/slow-body") => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\nfirst part")
                .await;
            // Trickles until the client goes away.
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if stream.write_all(b".").await.is_err() {
                    break;
                }
            }
            closed.notify_one();
        }
        ("GET", "/api/images/7") => {
            let meta = json!({"id": "7", "name": "cells", "width": 4, "height": 2});
            respond(&mut stream, "200 OK", &[], meta.to_string().as_bytes()).await
        }
        ("GET", "/api/images/7/data") => respond(&mut stream, "200 OK", &[], &PIXELS).await,
        ("POST", p) if p.starts_with("/api/images?") => {
            let name = p
                .split(['?', '&'])
                .find_map(|pair| pair.strip_prefix("name="))
                .unwrap_or("");
            let meta = json!({"id": "8", "name": name, "width": 4, "height": 2});
            respond(&mut stream, "201 Created", &[], meta.to_string().as_bytes()).await
        }
        _ => respond(&mut stream, "404 Not Found", &[], b"no such route").await,
    }
}

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        allocation: Allocation::OnDemand,
        cache: Some(ComponentCache::new(test_cache_dir())),
        fuel: false,
    })
    .expect("runtime starts")
}

fn grant(origin: &str) -> HttpGrant {
    origin.parse().expect("valid origin")
}

fn policy(grants: Vec<HttpGrant>) -> SandboxPolicy {
    SandboxPolicy {
        http: HttpPolicy {
            grants: grants.into(),
            ..HttpPolicy::default()
        },
        ..SandboxPolicy::default()
    }
}

async fn load(name: &str, policy: SandboxPolicy) -> ActionComponent {
    runtime()
        .load_file(&component(name), policy)
        .await
        .expect("component loads")
}

/// Runs a task with a provenance token; its single return (or null) and its outcome.
async fn run_task(
    component: &ActionComponent,
    action: &str,
    args: Value,
    token: Option<&str>,
    control: &TaskControl,
) -> (Value, Outcome) {
    let collector = Collector::start();
    let args = args.as_object().cloned().expect("object");
    let (outcome, sandbox) = component
        .run(
            TaskRequest {
                task_token: token.map(str::to_string),
                ..TaskRequest::new(action, args)
            },
            collector.events.clone(),
            control,
        )
        .await;
    drop(sandbox);
    let run = collector.finish(outcome).await;
    (run.last_return0(), run.outcome)
}

async fn call(component: &ActionComponent, action: &str, args: Value) -> (Value, Outcome) {
    run_task(component, action, args, None, &TaskControl::new()).await
}

fn action_error(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Failed(Failure::Action(message)) => message,
        other => panic!("expected the action to fail, got {other:?}"),
    }
}

#[tokio::test]
async fn a_granted_origin_answers() {
    let server = TestServer::start(None).await;
    let http = load("http", policy(vec![grant(&server.origin())])).await;
    let (text, outcome) = call(&http, "fetch_text", json!({"url": server.url("/hello")})).await;
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(text, json!("hello from the test server"));
    let (text, outcome) = call(
        &http,
        "fetch_text",
        json!({"url": server.url("/redirect-same")}),
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::Completed,
        "a redirect within the grant is followed"
    );
    assert_eq!(text, json!("hello from the test server"));
}

#[tokio::test]
async fn without_a_grant_the_component_loads_and_requests_are_not_allowed() {
    let server = TestServer::start(None).await;
    let http = load("http", SandboxPolicy::default()).await;
    let (_, outcome) = call(&http, "fetch_text", json!({"url": server.url("/hello")})).await;
    let error = action_error(&outcome);
    assert!(error.contains("not allowed"), "{error}");
    assert!(error.contains("this action has no HTTP grants"), "{error}");
    assert!(server.seen().is_empty(), "nothing reached the server");
}

#[tokio::test]
async fn scheme_host_and_port_must_match_the_grant() {
    let granted = TestServer::start(None).await;
    let other = TestServer::start(None).await;
    let http = load("http", policy(vec![grant(&granted.origin())])).await;
    let port = granted.address.port();
    for url in [
        other.url("/hello"),
        format!("https://127.0.0.1:{port}/hello"),
        format!("http://localhost:{port}/hello"),
        format!("http://evil-mikro.lab.example.attacker:{port}/hello"),
    ] {
        let (_, outcome) = call(&http, "fetch_text", json!({"url": url})).await;
        let error = action_error(&outcome);
        assert!(error.contains("not allowed"), "{url}: {error}");
        assert!(
            error.contains(&format!("granted are: {}", granted.origin())),
            "{error}"
        );
    }
    assert!(granted.seen().is_empty() && other.seen().is_empty());
}

#[tokio::test]
async fn a_wildcard_grant_does_not_match_a_lookalike_host() {
    let server = TestServer::start(None).await;
    let port = server.address.port();
    let http = load(
        "http",
        policy(vec![grant(&format!("http://*.lab.example:{port}"))]),
    )
    .await;
    let url = format!("http://evil-mikro.lab.example.attacker:{port}/hello");
    let (_, outcome) = call(&http, "fetch_text", json!({"url": url})).await;
    let error = action_error(&outcome);
    assert!(
        error.contains("not allowed: HTTP requests to http://evil-mikro.lab.example.attacker"),
        "{error}"
    );
}

#[tokio::test]
async fn a_redirect_to_an_origin_not_granted_is_refused() {
    let elsewhere = TestServer::start(None).await;
    let server = TestServer::start(Some(elsewhere.address)).await;
    let http = load("http", policy(vec![grant(&server.origin())])).await;
    let (_, outcome) = call(
        &http,
        "fetch_text",
        json!({"url": server.url("/redirect-away")}),
    )
    .await;
    let error = action_error(&outcome);
    assert!(
        error.contains(&format!(
            "not allowed: HTTP requests to {} are not granted",
            elsewhere.origin()
        )),
        "{error}"
    );
    assert_eq!(server.seen().len(), 1);
    assert!(
        elsewhere.seen().is_empty(),
        "the redirect target was never contacted"
    );
}

#[tokio::test]
async fn a_name_resolving_to_loopback_needs_a_private_grant() {
    let server = TestServer::start(None).await;
    let origin = format!("http://localhost:{}", server.address.port());
    let url = format!("{origin}/hello");
    let plain = load("http", policy(vec![grant(&origin)])).await;
    let (_, outcome) = call(&plain, "fetch_text", json!({"url": url})).await;
    let error = action_error(&outcome);
    assert!(error.contains("resolves to"), "{error}");
    assert!(error.contains("a loopback address"), "{error}");
    assert!(server.seen().is_empty());

    let private = grant(&origin).allow_private();
    let marked = load("http", policy(vec![private])).await;
    let (text, outcome) = call(&marked, "fetch_text", json!({"url": url})).await;
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(text, json!("hello from the test server"));
}

fn limited(server: &TestServer, limits: HttpLimits) -> SandboxPolicy {
    SandboxPolicy {
        http: HttpPolicy {
            grants: vec![grant(&server.origin())].into(),
            limits,
            ..HttpPolicy::default()
        },
        ..SandboxPolicy::default()
    }
}

#[tokio::test]
async fn responses_are_capped_per_request_and_per_task() {
    let server = TestServer::start(None).await;
    let limits = HttpLimits {
        response_bytes: 1024,
        total_bytes: 60,
        ..HttpLimits::default()
    };
    let http = load("http", limited(&server, limits)).await;
    let (_, outcome) = call(&http, "fetch_text", json!({"url": server.url("/big")})).await;
    let error = action_error(&outcome);
    assert!(
        error.contains("is 4 KiB long; at most 1 KiB per request"),
        "{error}"
    );
    let (_, outcome) = call(
        &http,
        "fetch_text",
        json!({"url": server.url("/big-unannounced")}),
    )
    .await;
    let error = action_error(&outcome);
    assert!(
        error.contains("exceeds the limit of 1 KiB per request"),
        "{error}"
    );

    // 26 bytes each: two fit in 60, the third crosses it.
    let (total, outcome) = call(
        &http,
        "fetch_repeatedly",
        json!({"url": server.url("/hello"), "times": 2}),
    )
    .await;
    assert_eq!((total, outcome), (json!(52), Outcome::Completed));
    let (_, outcome) = call(
        &http,
        "fetch_repeatedly",
        json!({"url": server.url("/hello"), "times": 3}),
    )
    .await;
    let error = action_error(&outcome);
    assert!(error.contains("limit of 60 B per task"), "{error}");
}

#[tokio::test]
async fn a_silent_server_times_out_and_waiting_counts_toward_the_task_timeout() {
    let server = TestServer::start(None).await;
    let limits = HttpLimits {
        timeout: Duration::from_millis(500),
        ..HttpLimits::default()
    };
    let http = load("http", limited(&server, limits)).await;
    let (_, outcome) = call(&http, "fetch_text", json!({"url": server.url("/silent")})).await;
    let error = action_error(&outcome);
    assert!(error.contains("did not answer within 500ms"), "{error}");

    let mut policy = limited(&server, HttpLimits::default());
    policy.limits = Limits {
        timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let http = load("http", policy).await;
    let (_, outcome) = call(&http, "fetch_text", json!({"url": server.url("/silent")})).await;
    assert_eq!(
        outcome,
        Outcome::Failed(Failure::Limit(LimitExceeded::Timeout {
            timeout: Duration::from_secs(1)
        }))
    );
}

#[tokio::test]
async fn cancel_aborts_a_request_in_the_middle_of_a_slow_response() {
    let server = TestServer::start(None).await;
    let http = Arc::new(load("http", limited(&server, HttpLimits::default())).await);
    let control = TaskControl::new();
    let arrived = server.arrived.notified();
    let closed = server.closed.notified();
    tokio::pin!(arrived, closed);
    let task = {
        let (http, control, url) = (Arc::clone(&http), control.clone(), server.url("/slow-body"));
        tokio::spawn(async move {
            run_task(&http, "fetch_text", json!({"url": url}), None, &control).await
        })
    };
    tokio::time::timeout(Duration::from_secs(60), &mut arrived)
        .await
        .expect("the request reached the server");
    control.cancel();
    let (_, outcome) = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the task ends soon after the cancel")
        .expect("task");
    assert_eq!(outcome, Outcome::Cancelled);
    tokio::time::timeout(Duration::from_secs(30), &mut closed)
        .await
        .expect("the connection was closed by the cancel, not left trickling");
}

#[tokio::test]
async fn only_service_origins_get_the_agent_and_task_tokens() {
    let service = TestServer::start(None).await;
    let plain = TestServer::start(None).await;
    let mut policy = policy(vec![
        grant(&service.origin()).as_service(),
        grant(&plain.origin()),
    ]);
    policy.http.client =
        HttpClient::default().with_credentials(Arc::new(StaticToken("agent-secret".into())));
    let http = load("http", policy).await;
    for server in [&service, &plain] {
        let (_, outcome) = run_task(
            &http,
            "fetch_text",
            json!({"url": server.url("/hello")}),
            Some("provenance-of-task-1"),
            &TaskControl::new(),
        )
        .await;
        assert_eq!(outcome, Outcome::Completed);
    }
    let to_service = &service.seen()[0];
    assert_eq!(
        to_service.headers.get("authorization").map(String::as_str),
        Some("Bearer agent-secret")
    );
    assert_eq!(
        to_service.headers.get("rekuest-task").map(String::as_str),
        Some("provenance-of-task-1")
    );
    let to_plain = &plain.seen()[0];
    assert!(
        !to_plain.headers.contains_key("authorization"),
        "{to_plain:?}"
    );
    assert!(
        !to_plain.headers.contains_key("rekuest-task"),
        "{to_plain:?}"
    );

    // The guest reads the provenance token, never the agent's.
    let (token, outcome) = run_task(
        &http,
        "task_token",
        json!({}),
        Some("provenance-of-task-1"),
        &TaskControl::new(),
    )
    .await;
    assert_eq!(
        (token, outcome),
        (json!("provenance-of-task-1"), Outcome::Completed)
    );
}

#[tokio::test]
async fn a_service_origin_without_credentials_is_refused_clearly() {
    let service = TestServer::start(None).await;
    let http = load("http", policy(vec![grant(&service.origin()).as_service()])).await;
    let (_, outcome) = call(&http, "fetch_text", json!({"url": service.url("/hello")})).await;
    let error = action_error(&outcome);
    assert!(error.contains("marked as an Arkitekt service"), "{error}");
    assert!(service.seen().is_empty());
}

#[tokio::test]
async fn the_structure_example_loads_and_uploads_through_dev_assign() {
    let mikro = TestServer::start(None).await;
    let dir = workspace_root().join("target").join("test-http-mikro");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let config = dir.join("rekuest-host.toml");
    std::fs::write(
        &config,
        format!(
            "[[component]]\npath = {:?}\nenv = {{ MIKRO_URL = {:?} }}\n\
             http = [{{ origin = {:?}, service = true }}]\n",
            component("mikro").display().to_string(),
            mikro.origin(),
            mikro.origin(),
        ),
    )
    .expect("write config");
    let binary = host_binary();
    let config_arg = config.display().to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(binary)
            .args([
                "dev",
                "--config",
                &config_arg,
                "--listen",
                "127.0.0.1:0",
                "--assign",
                "threshold",
                "image=7",
                "level=128",
            ])
            .env("REKUEST_HOST_CACHE_DIR", test_cache_dir())
            .output()
            .expect("rekuest-host runs")
    })
    .await
    .expect("dev");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(r#""object":"8""#) || stdout.contains(r#""8""#),
        "{stdout}"
    );
    let seen = mikro.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/images/7",
            "/api/images/7/data",
            "/api/images?name=cells-thresholded-at-128&width=4&height=2"
        ]
    );
    let upload = &seen[2];
    assert_eq!(upload.method, "POST");
    assert_eq!(upload.body, [0, 0, 0, 255, 255, 255, 0, 255]);
    for request in &seen {
        assert_eq!(
            request.headers.get("authorization").map(String::as_str),
            Some("Bearer dev"),
            "{request:?}"
        );
        let provenance = request
            .headers
            .get("rekuest-task")
            .expect("provenance header");
        assert!(provenance.starts_with("dev-task-"), "{provenance}");
    }
}

#[tokio::test]
async fn a_python_action_fetches_json_and_bytes() {
    let path = python_component("http");
    let server = TestServer::start(None).await;
    let runtime = runtime();
    let granted = runtime
        .load_file(&path, policy(vec![grant(&server.origin())]))
        .await
        .expect("the Python component loads");
    let (name, outcome) = call(
        &granted,
        "describe_image",
        json!({"url": server.url("/api/images/7")}),
    )
    .await;
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(name, json!("cells (4x2, 8 bytes)"));
    let (token, outcome) = run_task(
        &granted,
        "provenance",
        json!({}),
        Some("provenance-of-task-2"),
        &TaskControl::new(),
    )
    .await;
    assert_eq!(
        (token, outcome),
        (json!("provenance-of-task-2"), Outcome::Completed)
    );

    let ungranted = runtime
        .load_file(&path, SandboxPolicy::default())
        .await
        .expect("without a grant it still loads");
    let (_, outcome) = call(
        &ungranted,
        "fetch_text",
        json!({"url": server.url("/hello")}),
    )
    .await;
    let error = action_error(&outcome);
    assert!(error.contains("not allowed"), "{error}");
    assert_eq!(
        server.seen().len(),
        2,
        "only the granted component's requests arrived"
    );
}
