"""`LangfuseReceiver`: an in-process HTTP server that answers like Langfuse's public API.

Routes, auth, content types, compression, the ingestion version header and the answers follow
Langfuse's public API. Faults can be scripted per route; requests are recorded; queries give
the traces and sessions Langfuse would show (``docs/exporter.md`` has the rules).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import itertools
import json
import socket
import struct
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..export.config import INGESTION_PATH, OTEL_TRACES_PATH, SCORES_PATH, is_loopback
from ..export.coverage import Coverage
from ._model import SessionView, TraceView, build_sessions, build_traces, span_coverage
from ._otlp import InvalidRequest, ReceivedSpan, parse_request, spans_of
from ._page import SECURITY_HEADERS, api_answer, static_file
from ._scores import event_errors, score_errors, stored_score

_ROUTES = {OTEL_TRACES_PATH: "traces", SCORES_PATH: "scores", INGESTION_PATH: "ingestion"}
_INGESTION_LIMIT = 3_500_000

#: status, JSON answer, spans accepted, scores accepted
_Answer = tuple[int, Any, list[ReceivedSpan], list[dict[str, Any]]]


#: The largest request body taken, on the wire and decompressed (a gzip bomb of 1 MB expands
#: to gigabytes): more is answered 413.
MAX_REQUEST_BYTES = 32 * 1024 * 1024


class _TooLarge(Exception):
    pass


def _gunzip(raw: bytes, limit: int) -> bytes:
    """``raw`` gunzipped, at most ``limit`` bytes of it (else :class:`_TooLarge`); ``b"\\xff"``
    (undecodable: parsing answers 400) for a bad stream."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error:
        return b"\xff"
    if len(body) > limit or inflater.unconsumed_tail:
        raise _TooLarge
    return body


@dataclass(frozen=True)
class Fault:
    """What the receiver does to one request instead of (or before) handling it.

    ``status``: answer with this status (and ``retry_after`` as ``Retry-After``);
    ``delay``: wait this long first (to outlast a client's timeout); ``release``: hold the
    request until the test sets this event; ``drop``: reset the connection without an answer;
    ``answer``: a function of the request body returning the JSON to send with ``status``
    (e.g. a scripted 207). With only ``delay``/``release``, the request is then handled normally.
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


def _json(status: int, payload: object) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(payload).encode()


def _strict_json(body: bytes) -> Any:  # noqa: ANN401 - any JSON document
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(body, parse_constant=refuse)
    except RecursionError:  # nesting deeper than Python parses: refused like bad JSON
        raise ValueError("nested too deeply") from None


class LangfuseReceiver:
    """A Langfuse-compatible receiver on a free loopback port, in a background thread.

    Use it as a context manager (``with LangfuseReceiver() as receiver:``) or through the
    ``langfuse_receiver`` pytest fixture. Point an exporter at ``receiver.url`` with
    ``receiver.public_key`` / ``receiver.secret_key`` (``receiver.env()`` gives the variables).
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
        """``require_auth=False`` accepts requests with any or no credentials, and plain OTLP/HTTP
        on ``/v1/traces``: what apps and Collectors send when pointed at a local view."""
        self.require_auth = require_auth
        self.public_key = public_key
        self.secret_key = secret_key
        self._host = host
        self._port = port
        self._lock = threading.Condition()
        self._faults: dict[str, deque[Fault]] = {route: deque() for route in _ROUTES.values()}
        self._requests: list[RecordedRequest] = []
        self._arrivals = 0
        self._batches = itertools.count(1)  # numbers accepted trace requests
        self._spans: list[ReceivedSpan] = []
        self._scores: dict[str, dict[str, Any]] = {}
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LangfuseReceiver:
        """Listen (again, on the same port after :meth:`stop`)."""
        if self._server is not None:
            return self
        server = ThreadingHTTPServer((self._host, self._port), self._handler_class())
        server.daemon_threads = True
        self._port = server.server_port
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how fast stop() is answered
            name="langfuse-receiver",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut open connections: the receiver is "down" until started."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=10)

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
        token = f"{self.public_key}:{self.secret_key}".encode()
        return "Basic " + base64.b64encode(token).decode()

    def env(self) -> dict[str, str]:
        """``LANGFUSE_PUBLIC_KEY``, ``LANGFUSE_SECRET_KEY`` and ``LANGFUSE_BASE_URL`` for it."""
        return {
            "LANGFUSE_PUBLIC_KEY": self.public_key,
            "LANGFUSE_SECRET_KEY": self.secret_key,
            "LANGFUSE_BASE_URL": self.url,
        }

    # -- scripting and queries -----------------------------------------------------------------

    def fail_next(self, route: str, *faults: Fault | int) -> None:
        """Queue faults for the next requests on ``route`` (``"traces"``, ``"scores"`` or
        ``"ingestion"``); an ``int`` is shorthand for ``Fault(status=...)``."""
        if route not in self._faults:
            raise ValueError(f"route must be one of {sorted(self._faults)}")
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
        return span_coverage(span for trace in self.traces().values() for span in trace.spans)

    def scores(self) -> list[dict[str, Any]]:
        """Scores accepted (a re-sent id replaces the earlier score), with ``id``/``dataType``."""
        with self._lock:
            return list(self._scores.values())

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Block until ``condition()`` holds (checked after each request) or ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    @property
    def arrivals(self) -> int:
        """Requests that have arrived, including those still held by a fault."""
        with self._lock:
            return self._arrivals

    def _arrived(self) -> None:
        with self._lock:
            self._arrivals += 1
            self._lock.notify_all()

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` spans arrived."""
        return self.wait_for(lambda: len(self._spans) >= count, timeout)

    # -- the page ------------------------------------------------------------------------------

    def _view(self, target: str, host_header: str) -> tuple[int, str, bytes] | None:
        """The page at ``/`` and the JSON it polls: status, content type, body (None: no such
        page). A loopback receiver answers only requests addressed to a loopback name, so a web
        page elsewhere cannot read it through DNS rebinding."""
        url = urlsplit(target)
        if is_loopback(self._host) and not is_loopback(urlsplit("//" + host_header).hostname):
            return 403, "text/plain", b"Use http://127.0.0.1 to open the local view."
        found = static_file(url.path)
        if found is not None:
            return 200, found[1], found[0]
        with self._lock:
            version = len(self._requests)
        if url.path == "/api/version":  # polled every second: nothing built
            return _json(200, {"version": version})
        wanted = parse_qs(url.query).get("id", [""])[0]
        answer = url.path.startswith("/api/") and api_answer(
            url.path, wanted, version, self.traces(), self.scores()
        )
        return _json(*answer) if answer else None

    # -- handling ------------------------------------------------------------------------------

    def _next_fault(self, route: str) -> Fault | None:
        with self._lock:
            queue = self._faults[route]
            return queue.popleft() if queue else None

    def _record(
        self,
        request: RecordedRequest,
        spans: list[ReceivedSpan] | None = None,
        scores: list[dict[str, Any]] | None = None,
    ) -> None:
        with self._lock:
            self._requests.append(request)
            self._spans.extend(spans or ())
            for score in scores or ():
                self._scores[score["id"]] = score
            self._lock.notify_all()

    def _auth_problem(self, headers: dict[str, str], route: str) -> _Answer | None:
        value = headers.get("authorization", "")
        scheme, _, credentials = value.partition(" ")
        if scheme.lower() == "bearer" and route == "traces":
            return 403, {"message": "Basic auth with public and secret key is required"}, [], []
        if scheme.lower() != "basic":
            return 401, {"message": "Unauthorized"}, [], []
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return 401, {"message": "Unauthorized"}, [], []
        if decoded != f"{self.public_key}:{self.secret_key}":
            return 401, {"message": "Invalid credentials"}, [], []
        return None

    def _handle(self, route: str, headers: dict[str, str], body: bytes) -> _Answer:
        """Status, JSON answer, accepted spans, accepted scores."""
        problem = self._auth_problem(headers, route)
        if problem is not None and self.require_auth:
            return problem
        if route == "traces":
            return self._handle_traces(headers, body)
        if route == "scores":
            return self._handle_score(body)
        return self._handle_ingestion(body)

    def _handle_traces(self, headers: dict[str, str], body: bytes) -> _Answer:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("application/x-protobuf", "application/json"):
            return 400, {"error": "Invalid content type"}, [], []
        version = headers.get("x-langfuse-ingestion-version")
        if version is not None and (not version.strip().isdigit() or int(version) > 4):
            return 400, {"error": "Invalid x-langfuse-ingestion-version header"}, [], []
        try:
            spans = spans_of(parse_request(body, content_type), next(self._batches))
        except InvalidRequest as error:
            return 400, {"error": str(error)}, [], []
        if not spans:
            return 200, {}, [], []
        return 200, {"id": str(uuid.uuid4()), "status": "queued"}, spans, []

    def _handle_score(self, body: bytes) -> _Answer:
        try:
            document = _strict_json(body)
        except ValueError:
            return 400, {"message": "Invalid request data", "error": ["body is not JSON"]}, [], []
        errors = score_errors(document)
        if errors:
            return 400, {"message": "Invalid request data", "error": errors}, [], []
        score_id = document.get("id") or str(uuid.uuid4())
        kept = stored_score({**document, "id": score_id})
        return 200, {"id": score_id}, [], [] if kept is None else [kept]

    def _handle_ingestion(self, body: bytes) -> _Answer:
        """Langfuse's ``/api/public/ingestion``: a batch is refused as a whole only when the body
        is too large, not JSON, or has no ``batch`` list; otherwise 207 with a result per event."""
        if len(body) > _INGESTION_LIMIT:
            return 413, {"message": "Request body too large"}, [], []
        try:
            document = _strict_json(body)
        except ValueError:
            return 400, {"message": "Invalid request data", "error": ["body is not JSON"]}, [], []
        batch = document.get("batch") if isinstance(document, dict) else None
        if not isinstance(batch, list):
            refusal = {"message": "Invalid request data", "errors": ["batch must be a list"]}
            return 400, refusal, [], []
        successes, failures, scores = [], [], []
        for event in batch:
            errors = event_errors(event)
            if errors:
                event_id = event.get("id") if isinstance(event, dict) else None
                failures.append(
                    {
                        "id": event_id if isinstance(event_id, str) else "unknown",
                        "status": 400,
                        "message": "Invalid request data",
                        "error": "; ".join(errors),
                    }
                )
                continue
            score = {"id": str(uuid.uuid4()), **event["body"]}
            kept = stored_score(score)  # a later, silent drop still answers 201
            if kept is not None:
                scores.append(kept)
            successes.append({"id": event["id"], "status": 201})
        return 207, {"successes": successes, "errors": failures}, [], scores

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

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

            def _read_body(self) -> bytes:
                """The body, at most :data:`MAX_REQUEST_BYTES` (else :class:`_TooLarge`)."""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    return b"".join(self._chunks())
                size = int(self.headers.get("Content-Length") or 0)
                if size > MAX_REQUEST_BYTES:
                    raise _TooLarge
                return self.rfile.read(size)

            def _chunks(self) -> Iterator[bytes]:
                total = 0
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return
                    total += size
                    if total > MAX_REQUEST_BYTES:
                        raise _TooLarge
                    yield self.rfile.read(size)
                    self.rfile.readline()

            def _too_large(self) -> None:
                self.close_connection = True  # the rest of the body is never read
                self._answer(413, {"message": f"Request body over {MAX_REQUEST_BYTES} bytes"})

            def _answer(
                self, status: int, payload: object, extra: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                page = receiver._view(self.path, self.headers.get("Host", ""))
                if page is None:
                    self._not_allowed()
                    return
                status, content_type, data = page
                self.send_response(status)
                for name, value in {**SECURITY_HEADERS, "Content-Type": content_type}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _drop(self) -> None:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                self.connection.close()

            def do_POST(self) -> None:
                path = self.path.split("?")[0]
                route = _ROUTES.get(path)
                if route is None and path == "/v1/traces" and not receiver.require_auth:
                    route = "traces"
                if route is None:
                    self._answer(404, {"message": "Not found"})
                    return
                headers = {name.lower(): value for name, value in self.headers.items()}
                try:
                    body = self._read_body()
                    if headers.get("content-encoding", "").lower() == "gzip":
                        body = _gunzip(body, MAX_REQUEST_BYTES)
                except _TooLarge:
                    self._too_large()
                    return
                receiver._arrived()
                fault = receiver._next_fault(route)
                if fault is not None:
                    if fault.delay:
                        time.sleep(fault.delay)  # the simulated server is slow
                    if fault.release is not None:
                        fault.release.wait(60)
                    if fault.drop:
                        receiver._record(RecordedRequest(route, self.path, headers, body, 0))
                        self._drop()
                        return
                    if fault.status is not None:
                        extra = (
                            {}
                            if fault.retry_after is None
                            else {"Retry-After": str(fault.retry_after)}
                        )
                        receiver._record(
                            RecordedRequest(route, self.path, headers, body, fault.status)
                        )
                        scripted: object = {"message": "scripted fault"}
                        if fault.answer is not None:
                            scripted = fault.answer(body)
                        self._answer(fault.status, scripted, extra)
                        return
                status, payload, spans, scores = receiver._handle(route, headers, body)
                receiver._record(
                    RecordedRequest(route, self.path, headers, body, status), spans, scores
                )
                self._answer(status, payload)

            def _not_allowed(self) -> None:
                known = self.path.split("?")[0] in _ROUTES
                self._answer(405 if known else 404, {"message": "Method not allowed"})

            do_PUT = do_DELETE = do_PATCH = _not_allowed

        return Handler
