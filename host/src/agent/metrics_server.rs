//! `run --metrics ADDR`: `GET /metrics` (the agent's series, OpenMetrics text that Prometheus
//! scrapes) and `GET /healthz` (200 only while the agent is connected and registered, else
//! 503), on a listener of its own.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{Dispatcher, Metrics};

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The metrics address could not be listened on.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}")]
pub struct MetricsServerError {
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    pub source: std::io::Error,
}

/// Serves `/metrics` and `/healthz` until dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    accepting: JoinHandle<()>,
}

impl MetricsServer {
    /// Listens on `addr` (port 0: any free port) and serves the agent's `metrics`, with the
    /// live task counts of `dispatcher`.
    pub async fn start(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        dispatcher: Arc<Dispatcher>,
    ) -> Result<Self, MetricsServerError> {
        let error = |source| MetricsServerError { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(error)?;
        let addr = listener.local_addr().map_err(error)?;
        let accepting = tokio::spawn(accept(listener, metrics, dispatcher));
        Ok(MetricsServer { addr, accepting })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept(listener: TcpListener, metrics: Arc<Metrics>, dispatcher: Arc<Dispatcher>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!("metrics: accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        let dispatcher = Arc::clone(&dispatcher);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = answer(&metrics, &dispatcher, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("metrics: connection: {error}");
            }
        });
    }
}

fn answer(
    metrics: &Metrics,
    dispatcher: &Dispatcher,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            OPENMETRICS,
            metrics.encode(dispatcher.snapshot()),
        ),
        (&Method::GET, "/healthz") if metrics.healthy() => {
            (StatusCode::OK, "text/plain", "ok\n".to_string())
        }
        (&Method::GET, "/healthz") => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not connected and registered\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "GET /metrics or /healthz\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
