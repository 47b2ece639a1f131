//! Sending one guest request under its task's grants and limits.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::grant::{HttpGrant, RequestOrigin, Scheme, restricted_range};
use super::{HttpClient, HttpLimits};
use crate::runtime::limits::format_bytes;

/// The header carrying the task's provenance token to Arkitekt services.
pub const PROVENANCE_HEADER: &str = "rekuest-task";

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), Error>> + Send>;

/// One task's outbound HTTP: its grants, limits and usage.
pub(crate) struct TaskHttp {
    grants: Arc<[HttpGrant]>,
    limits: HttpLimits,
    client: HttpClient,
    /// The task's provenance token (ASSIGN's `token`).
    pub(crate) task_token: Option<String>,
    /// Created by the first request: most tasks never send one.
    usage: Option<Arc<Usage>>,
}

/// What a task's requests have used so far.
#[derive(Default)]
struct Usage {
    received: AtomicU64,
    in_flight: AtomicUsize,
}

/// A request's place among the task's concurrent ones; freed on drop.
struct Slot(Arc<Usage>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A refusal or limit, with a message meant for the guest's author.
fn refused(message: String) -> Error {
    Error::InternalError(Some(message))
}

impl TaskHttp {
    pub(crate) fn new(
        grants: Arc<[HttpGrant]>,
        limits: HttpLimits,
        client: HttpClient,
        task_token: Option<String>,
    ) -> Self {
        TaskHttp {
            grants,
            limits,
            client,
            task_token,
            usage: None,
        }
    }

    /// Checks `uri` against the grants and takes a slot; what the request may then do.
    fn admit(&mut self, uri: &http::Uri) -> Result<Admitted, Error> {
        let Some(origin) = RequestOrigin::of(uri) else {
            return Err(refused(format!(
                "not allowed: '{uri}' is not an absolute http:// or https:// URL"
            )));
        };
        let Some(grant) = self.grants.iter().find(|grant| grant.matches(&origin)) else {
            let granted = if self.grants.is_empty() {
                "this action has no HTTP grants".to_string()
            } else {
                let list: Vec<String> = self.grants.iter().map(ToString::to_string).collect();
                format!("granted are: {}", list.join(", "))
            };
            return Err(refused(format!(
                "not allowed: HTTP requests to {origin} are not granted ({granted})"
            )));
        };
        let usage = Arc::clone(self.usage.get_or_insert_default());
        if usage.received.load(Ordering::Acquire) >= self.limits.total_bytes {
            return Err(refused(format!(
                "HTTP response limit of {} per task used up",
                format_bytes(self.limits.total_bytes)
            )));
        }
        let in_flight = usage.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(usage);
        if in_flight >= self.limits.concurrency {
            return Err(refused(format!(
                "too many HTTP requests at once: at most {} per task",
                self.limits.concurrency
            )));
        }
        let credentials = grant.service.then(|| self.client.credentials.clone());
        Ok(Admitted {
            grant: grant.clone(),
            origin,
            slot,
            service: credentials.map(|credentials| ServiceHeaders {
                credentials,
                task_token: self.task_token.clone(),
            }),
        })
    }
}

/// A request that passed the grant check.
struct Admitted {
    grant: HttpGrant,
    origin: RequestOrigin,
    slot: Slot,
    service: Option<ServiceHeaders>,
}

/// What the host adds to requests to an Arkitekt service.
struct ServiceHeaders {
    credentials: Option<Arc<dyn super::AgentCredentials>>,
    task_token: Option<String>,
}

impl WasiHttpHooks for TaskHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> SendFuture {
        let admitted = self.admit(request.uri());
        let limits = self.limits;
        let tls = Arc::clone(&self.client.tls);
        Box::new(async move {
            let admitted = admitted?;
            tracing::debug!("guest HTTP {} {}", request.method(), admitted.origin);
            send(request, admitted, limits, options, tls).await
        })
    }
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

async fn send(
    mut request: http::Request<WasiBody>,
    admitted: Admitted,
    limits: HttpLimits,
    options: Option<RequestOptions>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(http::Response<WasiBody>, IoFuture), Error> {
    let Admitted {
        grant,
        origin,
        slot,
        service,
    } = admitted;
    // The guest may ask for less time, never for more.
    let shorter = |asked: Option<Duration>| asked.map_or(limits.timeout, |t| t.min(limits.timeout));
    let connect_timeout = shorter(options.and_then(|o| o.connect_timeout));
    let first_byte_timeout = shorter(options.and_then(|o| o.first_byte_timeout));
    if let Some(service) = service {
        add_service_headers(&mut request, &origin, service).await?;
    }
    let stream = tokio::time::timeout(connect_timeout, connect(&origin, &grant, tls))
        .await
        .map_err(|_| {
            refused(format!(
                "connecting to {origin} timed out after {connect_timeout:?}"
            ))
        })??;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(Error::Hyper)?;
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .parse()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    *request.uri_mut() = path;
    let mut connection = Box::pin(connection);
    let response = async {
        tokio::time::timeout(first_byte_timeout, sender.send_request(request))
            .await
            .map_err(|_| {
                refused(format!(
                    "{origin} did not answer within {first_byte_timeout:?}"
                ))
            })?
            .map_err(Error::Hyper)
    };
    tokio::pin!(response);
    // The connection does the IO: drive it while the response head is awaited.
    let mut connection_ended = false;
    let response = tokio::select! {
        biased;
        response = &mut response => response?,
        ended = &mut connection => {
            connection_ended = true;
            ended.map_err(Error::Hyper)?;
            response.await?
        }
    };
    if let Some(length) = content_length(&response)
        && length > limits.response_bytes
    {
        return Err(refused(format!(
            "the response of {origin} is {} long; at most {} per request are allowed",
            format_bytes(length),
            format_bytes(limits.response_bytes)
        )));
    }
    let origin = origin.to_string();
    let response = response.map(|incoming| {
        LimitedBody {
            incoming,
            left: limits.response_bytes,
            limits,
            origin,
            slot,
        }
        .boxed_unsync()
    });
    let io: IoFuture = Box::new(async move {
        if connection_ended {
            return Ok(());
        }
        connection.await.map_err(Error::Hyper)
    });
    Ok((response, io))
}

/// Sets `Authorization` (the agent's token) and the provenance header, replacing whatever the
/// guest put there.
async fn add_service_headers(
    request: &mut http::Request<WasiBody>,
    origin: &RequestOrigin,
    service: ServiceHeaders,
) -> Result<(), Error> {
    let Some(credentials) = service.credentials else {
        return Err(refused(format!(
            "{origin} is marked as an Arkitekt service, but this host has no access token to \
             send it"
        )));
    };
    let token = credentials.access_token().await.map_err(|reason| {
        refused(format!(
            "the agent's access token for {origin} is not available: {reason}"
        ))
    })?;
    let mut bearer = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| refused("the agent's access token is not a valid header value".into()))?;
    bearer.set_sensitive(true);
    let headers = request.headers_mut();
    headers.insert(AUTHORIZATION, bearer);
    headers.remove(PROVENANCE_HEADER);
    if let Some(task_token) = service.task_token {
        let mut value = HeaderValue::try_from(task_token).map_err(|_| {
            refused("the task's provenance token is not a valid header value".into())
        })?;
        value.set_sensitive(true);
        headers.insert(PROVENANCE_HEADER, value);
    }
    Ok(())
}

/// Resolves the origin, keeps the addresses the grant admits and connects to the first that
/// answers (over TLS for https).
async fn connect(
    origin: &RequestOrigin,
    grant: &HttpGrant,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Box<dyn Stream>, Error> {
    let addresses: Vec<SocketAddr> = match origin.ip() {
        Some(ip) => vec![SocketAddr::new(ip, origin.port)],
        None => tokio::net::lookup_host((origin.host.as_str(), origin.port))
            .await
            .map_err(|error| Error::DnsError {
                rcode: Some(error.to_string()),
                info_code: None,
            })?
            .collect(),
    };
    let (admitted, refused_addresses): (Vec<SocketAddr>, Vec<SocketAddr>) = addresses
        .into_iter()
        .partition(|address| grant.admits(address.ip()));
    if admitted.is_empty() {
        return Err(match refused_addresses.first() {
            Some(address) => refused(format!(
                "not allowed: {origin} resolves to {}, a {} address; such addresses need an \
                 explicit grant (an IP address origin, or a grant marked private)",
                address.ip(),
                restricted_range(address.ip()).unwrap_or("restricted")
            )),
            None => Error::DestinationNotFound,
        });
    }
    let mut last_error = None;
    let mut tcp = None;
    for address in admitted {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                tcp = Some(stream);
                break;
            }
            Err(error) => last_error = Some(error),
        }
    }
    let Some(tcp) = tcp else {
        return Err(last_error.map_or(Error::ConnectionRefused, Error::Connect));
    };
    let _ = tcp.set_nodelay(true);
    if origin.scheme == Scheme::Http {
        return Ok(Box::new(tcp));
    }
    let server_name = match origin.ip() {
        Some(ip) => rustls::pki_types::ServerName::from(ip),
        None => rustls::pki_types::ServerName::try_from(origin.host.clone())
            .map_err(|_| Error::HttpRequestUriInvalid)?,
    };
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(Error::Tls)?;
    Ok(Box::new(stream))
}

fn content_length(response: &http::Response<Incoming>) -> Option<u64> {
    response
        .headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A response body held to the per-request and per-task byte limits; it keeps the request's
/// slot until it is dropped.
struct LimitedBody {
    incoming: Incoming,
    left: u64,
    limits: HttpLimits,
    origin: String,
    slot: Slot,
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        let frame = match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(Error::Hyper(error)))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            let size = data.len() as u64;
            if size > this.left {
                return Poll::Ready(Some(Err(refused(format!(
                    "the response of {} exceeds the limit of {} per request",
                    this.origin,
                    format_bytes(this.limits.response_bytes)
                )))));
            }
            this.left -= size;
            let total = this.slot.0.received.fetch_add(size, Ordering::AcqRel) + size;
            if total > this.limits.total_bytes {
                return Poll::Ready(Some(Err(refused(format!(
                    "the task's HTTP responses exceed the limit of {} per task",
                    format_bytes(this.limits.total_bytes)
                )))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
