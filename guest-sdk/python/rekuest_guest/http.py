"""Blocking HTTP for actions through the standard `wasi:http` interface (requests-like).

::

    from rekuest_guest import http

    meta = http.get("https://mikro.lab.example/api/images/42").json()
    pixels = http.get("https://s3.lab.example/images/42.bin").content
    created = http.post("https://mikro.lab.example/api/images", json=meta).json()

The host lets requests through only to origins granted to the action (`--http ORIGIN`, or
`http` in the config file); anything else raises `HTTPError` saying it is not allowed.
Requests to origins the host knows as Arkitekt services carry the agent's credentials and the
task's provenance token by themselves; for other services, send `rekuest_guest.task_token()`
as header `Rekuest-Task`. Redirects are followed (at most `MAX_REDIRECTS`); the host checks
every hop against the grants again.
"""

from __future__ import annotations

import json as _json
from typing import Any, Mapping
from urllib.parse import urljoin, urlsplit

try:
    # Inside a component build: the wasi:http bindings componentize-py generated. Imported
    # here, at build time, so that they are part of the component's snapshot.
    from componentize_py_types import Err as _Err
    from wit_world.imports import outgoing_handler as _outgoing_handler
    from wit_world.imports import streams as _streams
    from wit_world.imports import types as _types
except ImportError:  # a normal Python: no wasi:http
    _types = None

__all__ = ["HTTPError", "MAX_REDIRECTS", "Response", "delete", "get", "post", "put", "request"]

MAX_REDIRECTS = 5
_WRITE_CHUNK = 4096
_READ_CHUNK = 64 * 1024


class HTTPError(Exception):
    """A request failed (refused by the host, a limit, the network) or, from
    `raise_for_status`, answered 4xx/5xx."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Response:
    """A response with its whole body."""

    def __init__(self, url: str, status: int, headers: list[tuple[str, bytes]], content: bytes):
        self.url = url
        self.status_code = status
        self.headers = {name.lower(): value.decode("latin-1") for name, value in headers}
        self.content = content

    @property
    def ok(self) -> bool:
        return self.status_code < 400

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        try:
            return _json.loads(self.content)
        except ValueError as error:
            raise HTTPError(f"the response of {self.url} is not JSON: {error}") from None

    def raise_for_status(self) -> "Response":
        if not self.ok:
            excerpt = self.text[:500]
            raise HTTPError(f"{self.url} answered {self.status_code}: {excerpt}", self.status_code)
        return self


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    data: bytes | str | None = None,
    json: Any = None,
) -> Response:
    """Sends a request, following redirects; any status is a response."""
    headers = dict(headers or {})
    if json is not None:
        data = _json.dumps(json)
        headers.setdefault("content-type", "application/json")
    body = data.encode() if isinstance(data, str) else data
    method = method.upper()
    for _ in range(MAX_REDIRECTS + 1):
        response = _send(method, url, headers, body)
        location = response.headers.get("location")
        if response.status_code not in (301, 302, 303, 307, 308) or location is None:
            return response
        url = urljoin(url, location)
        if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
            method, body = "GET", None
    raise HTTPError(f"{url} redirected more than {MAX_REDIRECTS} times")


def get(url: str, **kwargs: Any) -> Response:
    """A GET request; `.json()`, `.content` and `.text` read the body."""
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> Response:
    """A POST request with `data=` (bytes or text) or `json=`."""
    return request("POST", url, **kwargs)


def put(url: str, **kwargs: Any) -> Response:
    """A PUT request with `data=` (bytes or text) or `json=`."""
    return request("PUT", url, **kwargs)


def delete(url: str, **kwargs: Any) -> Response:
    """A DELETE request."""
    return request("DELETE", url, **kwargs)


def _send(method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> Response:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HTTPError(f"{url!r} is not an absolute http:// or https:// URL")
    if _types is None:
        raise HTTPError("HTTP needs the wasi:http host of rekuest-host (build the module with build.sh)")
    Err, outgoing_handler, streams, types = _Err, _outgoing_handler, _streams, _types
    failed = f"{method} {url} failed"
    try:
        fields = types.Fields()
        for name, value in headers.items():
            fields.append(name, str(value).encode())
        if body and not any(name.lower() == "content-length" for name in headers):
            # Sent with its length, not chunked: many upload endpoints refuse chunked bodies.
            fields.append("content-length", str(len(body)).encode())
        outgoing = types.OutgoingRequest(fields)
        methods = {
            "GET": types.Method_Get(),
            "POST": types.Method_Post(),
            "PUT": types.Method_Put(),
            "DELETE": types.Method_Delete(),
            "PATCH": types.Method_Patch(),
            "HEAD": types.Method_Head(),
        }
        outgoing.set_method(methods.get(method) or types.Method_Other(method))
        outgoing.set_scheme(types.Scheme_Https() if parts.scheme == "https" else types.Scheme_Http())
        outgoing.set_authority(parts.netloc)
        path = parts.path or "/"
        outgoing.set_path_with_query(f"{path}?{parts.query}" if parts.query else path)
        outgoing_body = outgoing.body()
        future = outgoing_handler.handle(outgoing, None)
        if body:
            with outgoing_body.write() as stream:
                for start in range(0, len(body), _WRITE_CHUNK):
                    stream.blocking_write_and_flush(body[start : start + _WRITE_CHUNK])
        types.OutgoingBody.finish(outgoing_body, None)
        while (result := future.get()) is None:
            with future.subscribe() as pollable:
                pollable.block()
        if isinstance(result, Err):
            raise HTTPError(f"{failed}: the response was already taken")
        if isinstance(result.value, Err):
            raise HTTPError(f"{failed}: {_describe(types, result.value.value)}")
        incoming = result.value.value
        status = incoming.status()
        response_headers = incoming.headers().entries()
        incoming_body = incoming.consume()
        stream = incoming_body.stream()
        chunks = []
        while True:
            try:
                chunks.append(stream.blocking_read(_READ_CHUNK))
            except Err as error:
                if isinstance(error.value, streams.StreamError_Closed):
                    break
                code = types.http_error_code(error.value.value)
                reason = _describe(types, code) if code is not None else error.value.value.to_debug_string()
                raise HTTPError(f"{failed}: {reason}") from None
        return Response(url, status, response_headers, b"".join(chunks))
    except Err as error:
        raise HTTPError(f"{failed}: {_describe(types, error.value)}") from None


def _describe(types: Any, code: Any) -> str:
    """The host's message for refusals and limits; the error code otherwise."""
    if isinstance(code, types.ErrorCode_InternalError) and code.value:
        return code.value
    if isinstance(code, types.ErrorCode_HttpRequestDenied):
        return "not allowed by the host"
    return type(code).__name__.removeprefix("ErrorCode_")
