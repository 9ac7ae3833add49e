"""`LangfuseReceiver`: an in-process HTTP server that answers like Langfuse's public API
(``docs/testing.md``), with scripted faults, recorded requests, and the page of the local view."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import struct
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from ..export.config import INGESTION_PATH, OTEL_TRACES_PATH, is_loopback
from ..export.coverage import Coverage
from ._model import (
    ReceivedSpan,
    SessionView,
    TraceView,
    build_sessions,
    build_traces,
    coverage,
    spans_of,
)
from ._page import SECURITY_HEADERS, page_answer
from ._scores import event_errors, stored_score

_ROUTES = {OTEL_TRACES_PATH: "traces", INGESTION_PATH: "ingestion"}
_INGESTION_LIMIT = 3_500_000
_INVALID = "Invalid request data"
_JSON = {"Content-Type": "application/json"}

#: The largest request body taken, on the wire and gunzipped (a 1 MB gzip bomb expands to
#: gigabytes): more is answered 413.
MAX_REQUEST_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Fault:
    """What the receiver does to one request instead of (or before) handling it.

    ``status`` (with ``retry_after`` as ``Retry-After``, and the JSON ``answer(body)`` gives);
    ``delay``: wait first; ``release``: hold the request until the test sets this event;
    ``drop``: reset the connection. With only ``delay``/``release``, it is then handled normally.
    """

    status: int | None = None
    retry_after: str | float | None = None
    delay: float = 0.0
    release: threading.Event | None = None
    drop: bool = False
    answer: Callable[[bytes], object] | None = None


@dataclass(frozen=True)
class RecordedRequest:
    """A request as received (body decompressed) and the status it got (0: dropped)."""

    route: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


class _Refused(Exception):
    """``_Refused(status, payload)``: the request is answered so, and nothing is kept."""


def _read_body(handler: BaseHTTPRequestHandler, headers: dict[str, str]) -> bytes:
    """The body, gunzipped, at most :data:`MAX_REQUEST_BYTES` of it; ``b"\\xff"`` (undecodable:
    parsing answers 400) for a bad gzip stream."""
    size = int(headers.get("content-length") or 0)
    if "transfer-encoding" in headers:
        raise _Refused(411, {"message": "Content-Length is required"})
    if size > MAX_REQUEST_BYTES:
        raise _Refused(413, {"message": f"Body over {MAX_REQUEST_BYTES} bytes"})
    body = handler.rfile.read(size)
    if headers.get("content-encoding", "").lower() != "gzip":
        return body
    inflater = zlib.decompressobj(wbits=31)
    try:
        body = inflater.decompress(body, MAX_REQUEST_BYTES + 1)
    except zlib.error:
        return b"\xff"
    if len(body) > MAX_REQUEST_BYTES or inflater.unconsumed_tail:
        raise _Refused(413, {"message": f"Body over {MAX_REQUEST_BYTES} bytes once gunzipped"})
    return body


def _refuse_constant(constant: str) -> None:
    raise ValueError(constant)  # NaN and Infinity are not JSON to Langfuse


class LangfuseReceiver:
    """A Langfuse-compatible receiver on a free loopback port, in a background thread.

    Use it as a context manager or through the ``langfuse_receiver`` pytest fixture; point an
    exporter at ``url`` with ``public_key``/``secret_key`` (``env()`` gives the variables).
    """

    def __init__(
        self,
        public_key: str = "pk-lf-test",
        secret_key: str = "sk-lf-test",  # noqa: S107 - a test receiver's well-known key
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        require_auth: bool = True,
    ) -> None:
        """``require_auth=False`` accepts any or no credentials, and plain OTLP/HTTP on
        ``/v1/traces``: what apps and Collectors send to a local view."""
        self.require_auth = require_auth
        self.public_key = public_key
        self.secret_key = secret_key
        self._host = host
        self._port = port
        self._lock = threading.Condition()
        self._faults: dict[str, deque[Fault]] = {route: deque() for route in _ROUTES.values()}
        self._requests: list[RecordedRequest] = []
        self._arrivals = 0
        self._spans: list[ReceivedSpan] = []
        self._scores: dict[str, dict[str, Any]] = {}
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> LangfuseReceiver:
        """Listen (again, on the same port after :meth:`stop`)."""
        if self._server is None:
            self._server = ThreadingHTTPServer((self._host, self._port), _handler(self))
            self._server.daemon_threads = True
            self._port = self._server.server_port
            # Polled every 0.05 s for stop().
            threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening and cut open connections: the receiver is "down" until started."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            with self._lock:
                connections = list(self._connections)
            for connection in connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> LangfuseReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:43121`` (what ``LANGFUSE_BASE_URL`` takes)."""
        return f"http://{self._host}:{self._port}"

    @property
    def traces_endpoint(self) -> str:
        """The OTel endpoint: ``{url}/api/public/otel/v1/traces``."""
        return self.url + OTEL_TRACES_PATH

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value the receiver accepts."""
        return "Basic " + base64.b64encode(f"{self.public_key}:{self.secret_key}".encode()).decode()

    def env(self) -> dict[str, str]:
        """``LANGFUSE_PUBLIC_KEY``, ``LANGFUSE_SECRET_KEY`` and ``LANGFUSE_BASE_URL`` for it."""
        return {
            "LANGFUSE_PUBLIC_KEY": self.public_key,
            "LANGFUSE_SECRET_KEY": self.secret_key,
            "LANGFUSE_BASE_URL": self.url,
        }

    def fail_next(self, route: str, *faults: Fault | int) -> None:
        """Queue faults for the next requests on ``route`` (``"traces"`` or ``"ingestion"``); an
        ``int`` is shorthand for ``Fault(status=...)``."""
        with self._lock:
            self._faults[route].extend(Fault(status=f) if isinstance(f, int) else f for f in faults)

    def requests(self, route: str | None = None) -> list[RecordedRequest]:
        """Requests received so far (on ``route`` only, if given)."""
        with self._lock:
            return [r for r in self._requests if route is None or r.route == route]

    def spans(self) -> list[ReceivedSpan]:
        """Every span accepted, in arrival order (a span sent twice appears twice)."""
        with self._lock:
            return list(self._spans)

    def traces(self) -> dict[str, TraceView]:
        """Trace id -> the trace Langfuse would show."""
        return build_traces(self.spans())

    def sessions(self) -> dict[str, SessionView]:
        """Session id -> the session Langfuse would show: traces in time order, and scores."""
        return build_sessions(self.traces().values(), self.scores())

    def coverage(self) -> Coverage:
        """Spans and tokens received with and without a session id, by scope."""
        return coverage(span for trace in self.traces().values() for span in trace.spans)

    def scores(self) -> list[dict[str, Any]]:
        """Scores accepted (a re-sent id replaces the earlier score), with ``id``/``dataType``."""
        with self._lock:
            return list(self._scores.values())

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Block until ``condition()`` holds (checked after each request) or ``timeout``."""
        with self._lock:
            return self._lock.wait_for(condition, timeout)

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` spans arrived."""
        return self.wait_for(lambda: len(self._spans) >= count, timeout)

    @property
    def arrivals(self) -> int:
        """Requests that have arrived, including those still held by a fault."""
        with self._lock:
            return self._arrivals

    def _view(self, target: str, host: str) -> tuple[int, str, bytes] | None:
        """The local view's answer (None: no such page). A loopback receiver answers only a
        loopback ``Host``, against DNS rebinding."""
        if is_loopback(self._host) and not is_loopback(urlsplit("//" + host).hostname):
            return 403, "text/plain", b"Use http://127.0.0.1 to open the local view."
        return page_answer(target, len(self.requests()), lambda: (self.traces(), self.scores()))

    def _record(
        self, request: RecordedRequest, spans: list[ReceivedSpan], scores: list[dict[str, Any]]
    ) -> None:
        with self._lock:
            self._requests.append(request)
            self._spans.extend(spans)
            self._scores.update((score["id"], score) for score in scores)
            self._lock.notify_all()

    def _check_auth(self, headers: dict[str, str], route: str) -> None:
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and route == "traces":
            raise _Refused(403, {"message": "Basic auth with public and secret key is required"})
        if scheme.lower() != "basic" or credentials != self.authorization.partition(" ")[2]:
            raise _Refused(401, {"message": "Unauthorized"})

    def _handle(self, request: RecordedRequest) -> tuple[int, object]:
        """Status and JSON answer; records the request and what Langfuse keeps."""
        spans: list[ReceivedSpan] = []
        scores: list[dict[str, Any]] = []
        try:
            if self.require_auth:
                self._check_auth(request.headers, request.route)
            if request.route == "traces":
                status, answer = self._traces(request.headers, request.body, spans)
            else:
                status, answer = self._ingestion(request.body, scores)
        except _Refused as refused:
            (status, answer), spans, scores = refused.args, [], []
        self._record(replace(request, status=status), spans, scores)
        return status, answer

    def _traces(
        self, headers: dict[str, str], body: bytes, kept: list[ReceivedSpan]
    ) -> tuple[int, object]:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "application/json":  # Langfuse takes it; no exporter of ours sends it
            raise _Refused(415, {"error": "OTLP/JSON is not modelled: send http/protobuf"})
        if content_type != "application/x-protobuf":
            raise _Refused(400, {"error": "Invalid content type"})
        version = headers.get("x-langfuse-ingestion-version")
        if version is not None and (not version.strip().isdigit() or int(version) > 4):
            raise _Refused(400, {"error": "Invalid x-langfuse-ingestion-version header"})
        try:
            kept += spans_of(body)
        except ValueError as error:
            raise _Refused(400, {"error": str(error)}) from None
        return (200, {"id": str(uuid.uuid4()), "status": "queued"}) if kept else (200, {})

    def _ingestion(self, body: bytes, kept: list[dict[str, Any]]) -> tuple[int, object]:
        """Refused as a whole only when too large, not JSON, or without a ``batch`` list; else
        207 with a result per event (a score Langfuse drops later still answers 201)."""
        if len(body) > _INGESTION_LIMIT:
            raise _Refused(413, {"message": "Request body too large"})
        try:  # NaN, and nesting too deep for the parser, refuse the whole batch
            document = json.loads(body, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            raise _Refused(400, {"message": _INVALID, "error": ["body is not JSON"]}) from None
        batch = document.get("batch") if isinstance(document, dict) else None
        if not isinstance(batch, list):
            raise _Refused(400, {"message": _INVALID, "error": ["batch must be a list"]})
        successes, failures = [], []
        for event in batch:
            errors = event_errors(event)
            if errors:
                event_id = event.get("id") if isinstance(event, dict) else None
                event_id = event_id if isinstance(event_id, str) else "unknown"
                error = {"message": _INVALID, "error": "; ".join(errors)}
                failures.append({"id": event_id, "status": 400, **error})
                continue
            kept += filter(None, [stored_score({"id": str(uuid.uuid4()), **event["body"]})])
            successes.append({"id": event["id"], "status": 201})
        return 207, {"successes": successes, "errors": failures}

    def _post(self, handler: BaseHTTPRequestHandler) -> tuple[int, object, dict[str, str]] | None:
        """Status, JSON answer and extra headers for a POST (None: drop the connection)."""
        path = handler.path.split("?")[0]
        local = path == "/v1/traces" and not self.require_auth  # plain OTLP/HTTP, for serve
        route = "traces" if local else _ROUTES.get(path)
        if route is None:
            return 404, {"message": "Not found"}, {}
        headers = {name.lower(): value for name, value in handler.headers.items()}
        try:
            body = _read_body(handler, headers)
        except _Refused as refused:
            handler.close_connection = True  # the rest of the body is never read
            return (*refused.args, {})
        request = RecordedRequest(route, handler.path, headers, body, 0)
        with self._lock:
            self._arrivals += 1
            self._lock.notify_all()
            fault = self._faults[route].popleft() if self._faults[route] else None
        if fault is not None:
            time.sleep(fault.delay)  # the simulated server is slow
            if fault.release is not None:
                fault.release.wait(60)
        if fault is None or (not fault.drop and fault.status is None):
            return (*self._handle(request), {})
        self._record(replace(request, status=fault.status or 0), [], [])
        if fault.status is None or fault.drop:
            return None  # a reset: no answer at all
        extra = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        answer = fault.answer(body) if fault.answer else {"message": "scripted fault"}
        return fault.status, answer, extra


def _handler(receiver: LangfuseReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without this, Nagle's algorithm and the
        # client's delayed ACK add 40 ms to every keep-alive request.
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            with receiver._lock:
                receiver._connections.add(self.connection)

        def finish(self) -> None:
            with receiver._lock:
                receiver._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            page = receiver._view(self.path, self.headers.get("Host", ""))
            if page is None:
                self._not_allowed()
            else:
                self._send(page[0], page[2], {**SECURITY_HEADERS, "Content-Type": page[1]})

        def do_POST(self) -> None:
            answer = receiver._post(self)
            if answer is None:
                linger = struct.pack("ii", 1, 0)
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                self.close_connection = True
                self.connection.close()
                return
            status, payload, extra = answer
            self._send(status, json.dumps(payload).encode(), {**_JSON, **extra})

        def _not_allowed(self) -> None:
            status = 405 if self.path.split("?")[0] in _ROUTES else 404
            self._send(status, b'{"message": "Method not allowed"}', _JSON)

        do_PUT = do_DELETE = do_PATCH = _not_allowed

    return Handler
