//! Blocking HTTP for actions (and for a [`Structure`](crate::Structure)'s `expand`), through
//! the standard `wasi:http` interface.
//!
//! The host lets requests through only to origins granted to the action (`--http ORIGIN`, or
//! `http` in the config file); anything else fails with an error saying it is not allowed.
//! Requests to origins the host knows as Arkitekt services carry the agent's credentials and
//! the task's provenance token without the action doing anything; for other services that
//! want the provenance token, send [`Context::task_token`](crate::Context::task_token).
//!
//! ```no_run
//! use rekuest_guest::http;
//!
//! # fn demo() -> Result<(), http::HttpError> {
//! let meta: serde_json::Value = http::get("https://mikro.lab.example/api/images/42").json()?;
//! let pixels: Vec<u8> = http::get("https://s3.lab.example/images/42.bin").bytes()?;
//! let created: serde_json::Value = http::post("https://mikro.lab.example/api/images")
//!     .header("X-Trace", "1")
//!     .json_body(&meta)?
//!     .json()?;
//! # let _ = (pixels, created);
//! # Ok(())
//! # }
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Redirects followed (each one is checked against the grants again by the host).
pub const MAX_REDIRECTS: usize = 5;

/// Why a request did not give a usable response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The URL is not an absolute `http://` or `https://` URL.
    #[error("'{url}' is not an absolute http:// or https:// URL")]
    InvalidUrl {
        /// The URL.
        url: String,
    },
    /// A header name or value is not valid.
    #[error("invalid header '{name}'")]
    InvalidHeader {
        /// The header's name.
        name: String,
    },
    /// The request failed: refused by the host (not granted, a limit) or by the network.
    #[error("{method} {url} failed: {reason}")]
    Request {
        /// The method.
        method: String,
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with an error status (4xx or 5xx).
    #[error("{method} {url} answered {status}: {body}")]
    Status {
        /// The method.
        method: String,
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The body could not be read as what was asked for.
    #[error("the response of {url} is not {expected}: {reason}")]
    Body {
        /// The URL.
        url: String,
        /// What it should have been (`JSON`, `UTF-8 text`).
        expected: &'static str,
        /// Why not.
        reason: String,
    },
    /// Too many redirects.
    #[error("{url} redirected more than {MAX_REDIRECTS} times")]
    TooManyRedirects {
        /// The first URL.
        url: String,
    },
}

/// A response with its whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    url: String,
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The URL that answered (after redirects).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The first value of header `name` (case-insensitive), if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    /// All headers as sent.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The response body's bytes, as received.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body, taken.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The body as UTF-8 text.
    pub fn text(self) -> Result<String, HttpError> {
        let url = self.url;
        String::from_utf8(self.body).map_err(|error| HttpError::Body {
            url,
            expected: "UTF-8 text",
            reason: error.to_string(),
        })
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|error| HttpError::Body {
            url: self.url.clone(),
            expected: "JSON",
            reason: error.to_string(),
        })
    }
}

/// A request being built; [`send`](Request::send) it, or use a shortcut such as
/// [`json`](Request::json).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a request does nothing until it is sent"]
pub struct Request {
    method: &'static str,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

/// A GET request.
pub fn get(url: impl Into<String>) -> Request {
    Request::new("GET", url)
}

/// A POST request.
pub fn post(url: impl Into<String>) -> Request {
    Request::new("POST", url)
}

/// A PUT request.
pub fn put(url: impl Into<String>) -> Request {
    Request::new("PUT", url)
}

/// A DELETE request.
pub fn delete(url: impl Into<String>) -> Request {
    Request::new("DELETE", url)
}

impl Request {
    /// A request with `method` (`GET`, `POST`, `PUT`, `DELETE`, `PATCH`, `HEAD`).
    pub fn new(method: &'static str, url: impl Into<String>) -> Self {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets a JSON body (and `Content-Type: application/json`).
    pub fn json_body<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, HttpError> {
        let body = serde_json::to_vec(value).map_err(|error| HttpError::Body {
            url: self.url.clone(),
            expected: "serializable as JSON",
            reason: error.to_string(),
        })?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Sends it, following redirects; any status is a response.
    pub fn send(self) -> Result<Response, HttpError> {
        let first = self.url.clone();
        let mut request = self;
        for _ in 0..=MAX_REDIRECTS {
            let response = transport::send(&request)?;
            let location = match response.status {
                301 | 302 | 303 | 307 | 308 => response.header("location"),
                _ => None,
            };
            let Some(location) = location else {
                return Ok(response);
            };
            let next = resolve(&request.url, location);
            if response.status == 303
                || (response.status != 307 && response.status != 308 && request.method == "POST")
            {
                request.method = "GET";
                request.body = None;
            }
            request.url = next;
        }
        Err(HttpError::TooManyRedirects { url: first })
    }

    /// Sends it and fails on a 4xx or 5xx status.
    pub fn send_ok(self) -> Result<Response, HttpError> {
        let method = self.method;
        let response = self.send()?;
        if response.status >= 400 {
            let excerpt: String = String::from_utf8_lossy(&response.body)
                .chars()
                .take(500)
                .collect();
            return Err(HttpError::Status {
                method: method.to_string(),
                url: response.url,
                status: response.status,
                body: excerpt,
            });
        }
        Ok(response)
    }

    /// Sends it and parses a successful response as JSON.
    pub fn json<T: DeserializeOwned>(self) -> Result<T, HttpError> {
        self.send_ok()?.json()
    }

    /// Sends it and returns a successful response's body.
    pub fn bytes(self) -> Result<Vec<u8>, HttpError> {
        Ok(self.send_ok()?.into_body())
    }

    /// Sends it and returns a successful response's body as text.
    pub fn text(self) -> Result<String, HttpError> {
        self.send_ok()?.text()
    }
}

/// Scheme, authority and path-with-query of an absolute URL.
fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let path = path.split('#').next().unwrap_or("");
    if authority.is_empty() {
        return None;
    }
    Some((scheme, authority, if path.is_empty() { "/" } else { path }))
}

/// `location` relative to `base`.
fn resolve(base: &str, location: &str) -> String {
    if split_url(location).is_some() {
        return location.to_string();
    }
    let Some((scheme, authority, path)) = split_url(base) else {
        return location.to_string();
    };
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let directory = path.split('?').next().unwrap_or("/");
    let directory = &directory[..directory.rfind('/').map_or(0, |i| i + 1)];
    format!("{scheme}://{authority}{directory}{location}")
}

#[cfg(target_arch = "wasm32")]
mod transport {
    //! One request over `wasi:http`.

    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
    };
    use wasip2::io::streams::StreamError;

    use super::{HttpError, Request, Response, split_url};

    /// Bytes written per call (the stream's guaranteed minimum).
    const WRITE_CHUNK: usize = 4096;
    /// Bytes asked for per read.
    const READ_CHUNK: u64 = 64 * 1024;

    pub(super) fn send(request: &Request) -> Result<Response, HttpError> {
        let failed = |reason: String| HttpError::Request {
            method: request.method.to_string(),
            url: request.url.clone(),
            reason,
        };
        let Some((scheme, authority, path)) = split_url(&request.url) else {
            return Err(HttpError::InvalidUrl {
                url: request.url.clone(),
            });
        };
        let headers = Fields::new();
        for (name, value) in &request.headers {
            headers
                .append(name, value.as_bytes())
                .map_err(|_| HttpError::InvalidHeader { name: name.clone() })?;
        }
        // A body of known size goes with its length, not chunked: object stores and many
        // upload endpoints refuse chunked requests.
        if let Some(bytes) = &request.body
            && !request
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        {
            headers
                .append("content-length", bytes.len().to_string().as_bytes())
                .map_err(|_| HttpError::InvalidHeader {
                    name: "content-length".into(),
                })?;
        }
        let outgoing = OutgoingRequest::new(headers);
        let method = match request.method {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "HEAD" => Method::Head,
            other => Method::Other(other.to_string()),
        };
        let scheme = if scheme.eq_ignore_ascii_case("https") {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let invalid = || HttpError::InvalidUrl {
            url: request.url.clone(),
        };
        outgoing.set_method(&method).map_err(|_| invalid())?;
        outgoing.set_scheme(Some(&scheme)).map_err(|_| invalid())?;
        outgoing
            .set_authority(Some(authority))
            .map_err(|_| invalid())?;
        outgoing
            .set_path_with_query(Some(path))
            .map_err(|_| invalid())?;
        let body = outgoing
            .body()
            .map_err(|_| failed("the request body is unavailable".into()))?;
        let future =
            outgoing_handler::handle(outgoing, None).map_err(|code| failed(describe(code)))?;
        if let Some(bytes) = &request.body {
            let stream = body
                .write()
                .map_err(|_| failed("the request body is unavailable".into()))?;
            for chunk in bytes.chunks(WRITE_CHUNK) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|error| failed(stream_error(error)))?;
            }
        }
        OutgoingBody::finish(body, None).map_err(|code| failed(describe(code)))?;
        let response = loop {
            match future.get() {
                Some(Ok(Ok(response))) => break response,
                Some(Ok(Err(code))) => return Err(failed(describe(code))),
                Some(Err(())) => return Err(failed("the response was already taken".into())),
                None => future.subscribe().block(),
            }
        };
        let status = response.status();
        let headers = response.headers().entries();
        let incoming = response
            .consume()
            .map_err(|_| failed("the response body is unavailable".into()))?;
        let stream = incoming
            .stream()
            .map_err(|_| failed("the response body is unavailable".into()))?;
        let mut body = Vec::new();
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(error) => return Err(failed(stream_error(error))),
            }
        }
        drop(stream);
        let _trailers = IncomingBody::finish(incoming);
        Ok(Response {
            url: request.url.clone(),
            status,
            headers,
            body,
        })
    }

    fn stream_error(error: StreamError) -> String {
        match error {
            StreamError::Closed => "the connection closed".into(),
            StreamError::LastOperationFailed(error) => {
                match wasip2::http::types::http_error_code(&error) {
                    Some(code) => describe(code),
                    None => error.to_debug_string(),
                }
            }
        }
    }

    /// The host's message for refusals and limits; the error code otherwise.
    fn describe(code: ErrorCode) -> String {
        match code {
            ErrorCode::InternalError(Some(message)) => message,
            ErrorCode::HttpRequestDenied => "not allowed by the host".into(),
            ErrorCode::DnsError(payload) => format!(
                "DNS lookup failed{}",
                payload
                    .rcode
                    .map(|rcode| format!(": {rcode}"))
                    .unwrap_or_default()
            ),
            ErrorCode::ConnectionRefused => "connection refused".into(),
            other => format!("{other:?}"),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod transport {
    //! Outside WebAssembly there is no `wasi:http`.

    use super::{HttpError, Request, Response};

    pub(super) fn send(request: &Request) -> Result<Response, HttpError> {
        Err(HttpError::Request {
            method: request.method.to_string(),
            url: request.url.clone(),
            reason: "HTTP needs the wasi:http host of rekuest-host (build for wasm32-wasip2)"
                .into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_and_redirects_resolve() {
        assert_eq!(
            split_url("https://mikro.lab.example:8443/api/x?y=1#frag"),
            Some(("https", "mikro.lab.example:8443", "/api/x?y=1"))
        );
        assert_eq!(split_url("http://h"), Some(("http", "h", "/")));
        assert_eq!(split_url("ftp://h/x"), None);
        assert_eq!(split_url("/relative"), None);
        let base = "http://a.example/api/images/1?x=2";
        assert_eq!(resolve(base, "https://b.example/z"), "https://b.example/z");
        assert_eq!(resolve(base, "/other"), "http://a.example/other");
        assert_eq!(resolve(base, "2"), "http://a.example/api/images/2");
        assert_eq!(resolve(base, "//c.example/q"), "http://c.example/q");
    }

    #[test]
    fn outside_wasm_requests_fail_clearly() {
        let error = get("http://a.example/")
            .send()
            .expect_err("no wasi:http here");
        assert!(error.to_string().contains("wasi:http"), "{error}");
    }
}
