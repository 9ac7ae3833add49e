"""One HTTP POST to Langfuse or a Collector, bounded in every way, for spans and scores alike.

* **One total deadline** per request, connect to last body byte: a watchdog shuts the socket
  down when it passes, so a server trickling its answer one byte a second cannot hold the
  caller (``requests``' timeout applies to each socket read, not to the whole request).
* **No redirects**: a 3xx is an answer like any other (the caller counts it as a failure and
  names its ``Location``); credentials never follow it anywhere.
* **Capped reads**: at most :data:`MAX_RESPONSE_BYTES` of a response body are read.
* ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``/``NO_PROXY`` are honoured (:mod:`.proxies`):
  ``http://`` targets go in absolute form with ``Proxy-Authorization``, ``https://`` ones through
  a ``CONNECT`` tunnel (the proxy's credentials on the ``CONNECT`` only); a proxy we cannot
  speak to safely (``https://``, ``socks5://``) gets nothing.

Failures are values (:class:`Reply`), never exceptions. One keep-alive connection per transport;
after ``os.fork()`` the child drops the copy it inherited.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import heapq
import http.client
import itertools
import json
import os
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

from .http_headers import retry_after_seconds
from .log_safety import MAX_LOGGED_CHARS, loggable, secrets_in
from .proxies import Proxy, authority, bracketed, proxy_for
from .urls import display_url

#: The most of a response body that is read; Langfuse's answers are a few kilobytes.
MAX_RESPONSE_BYTES = 1_000_000
_MAX_LOGGED_BYTES = 4 * MAX_LOGGED_CHARS  # a secret straddling the cap is still found
_MAX_PROXY_LINE = 65536  # a proxy's answer to CONNECT: line length and count, as http.client
_MAX_PROXY_LINES = 100


@dataclass(frozen=True)
class Reply:
    """What one request got: a status and (capped) body, or ``status=None`` and why not."""

    url: str  # for messages: userinfo already scrubbed
    status: int | None = None
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    error: str | None = None  # no answer: a connection error, or the deadline
    timed_out: bool = False
    #: What the request carried that must never be logged (see :meth:`clean`).
    secrets: tuple[str, ...] = field(default=(), repr=False)
    #: The proxy the request went through (``http://host:port``, no credentials), if any.
    proxy: str | None = None
    #: Nothing was sent, for a reason a retry cannot change (a proxy we will not speak to).
    unsent: bool = False

    @property
    def ok(self) -> bool:
        """A 2xx answer (a 3xx is not: nothing reached the server that was meant)."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def retry_after(self) -> float | None:
        return retry_after_seconds(self.headers.get("retry-after"))

    def json(self) -> Any:  # noqa: ANN401 - whatever the server answered
        """The body as JSON, or ``None``."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def clean(self, text: str) -> str:
        """``text`` (from this server) fit for a log: this request's secrets as ``***``,
        control characters escaped, length capped."""
        return loggable(text, self.secrets)

    def message(self) -> str:
        """The server's own words, :meth:`clean`: JSON ``message``/``error``, else the start
        of the body."""
        answer = self.json()
        if isinstance(answer, dict):
            found = answer.get("message") or answer.get("error")
            if found:
                return self.clean(str(found))
        return self.clean(self.body[:_MAX_LOGGED_BYTES].decode("utf-8", "replace").strip())

    def describe(self, server: str, setting: str, suffix: str = "") -> str:
        """Why this was not a success, for a log line. ``server`` names who answered
        ("Langfuse", "the Collector"); ``setting`` is what to change after a redirect, and
        ``suffix`` the path we add to it (``/api/public/otel/v1/traces``), left out of the
        advice so that it can be pasted."""
        where = self.url if self.proxy is None else f"{self.url} (through the proxy {self.proxy})"
        if self.status is None:
            unsent = f"nothing was sent to {server} at {self.url}"
            said = unsent if self.unsent else f"{server} at {where} did not answer"
            return f"{said}: {self.clean(self.error or '')}"
        if 300 <= self.status < 400:
            return f"{server} at {where} answered {self.status}{self._redirect(setting, suffix)}"
        if self.status < 200:
            return (
                f"{server} at {where} answered {self.status}, an interim status, and never a "
                "final one: nothing is known to have arrived"
            )
        words = self.message()
        said = f" ({words})" if words else ""
        if self.status < 300:  # a success that did not say what became of what was sent
            unsaid = "without saying what became of what was sent"
            return f"{server} at {where} answered {self.status} {unsaid}{said}"
        if self.status == 407 and self.proxy is not None:
            return (
                f"the proxy {self.proxy} answered 407 (Proxy Authentication Required) for "
                f"{self.url}: check the credentials in the proxy URL{said}"
            )
        return f"{server} at {where} answered {self.status}" + (f": {words}" if words else "")

    def _redirect(self, setting: str, suffix: str) -> str:
        """`` to <location> (not followed): set <setting> to <what to paste>``."""
        location = self.headers.get("location", "").strip()
        if not location:
            return f" without a Location (not followed): check {setting}"
        try:
            target = urljoin(self.url, location)
            parts = urlsplit(target)
        except ValueError:
            return f" to an invalid Location (not followed): check {setting}"
        shown = self.clean(display_url(target))
        path = parts.path.rstrip("/")
        if not suffix:
            return f" to {shown} (not followed): set {setting} to that"
        if path.endswith(suffix):
            base = urlunsplit((parts.scheme, parts.netloc, path[: -len(suffix)], "", ""))
            return f" to {shown} (not followed): set {setting} to {self.clean(display_url(base))}"
        return f" to {shown} (not followed), which is not its API: check {setting}"


class ProxyRefused(OSError):
    """A proxy's answer to ``CONNECT`` that is not a 2xx (its words, for the log)."""


class _Connection(http.client.HTTPConnection):
    """Remembers its raw socket so that the watchdog can shut it down from another thread;
    with :attr:`tunnel_via`, reaches its host through that proxy's ``CONNECT``."""

    raw: socket.socket | None = None
    tunnel_via: Proxy | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - http.client's
        super().__init__(*args, **kwargs)
        self._create_connection = self._open

    def _open(self, address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:  # noqa: ANN401
        proxy = self.tunnel_via
        self.raw = socket.create_connection(
            address if proxy is None else (proxy.host, proxy.port), *args, **kwargs
        )
        if proxy is not None:
            try:
                _connect_through(self.raw, address, proxy.authorization)
            except BaseException:
                self.raw.close()
                raise
        return self.raw


def _connect_through(sock: socket.socket, address: tuple[str, int], auth: str | None) -> None:
    """Ask the proxy on ``sock`` for a tunnel to ``address``; raises unless it answers 2xx."""
    target = authority(_ascii_host(address[0]), address[1])
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if auth is not None:
        lines.append(f"Proxy-Authorization: {auth}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    reader = sock.makefile("rb")
    try:
        status = reader.readline(_MAX_PROXY_LINE + 1)
        for _ in range(_MAX_PROXY_LINES):
            line = reader.readline(_MAX_PROXY_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                break
        else:
            raise ProxyRefused("the proxy answered CONNECT with too many header lines")
    finally:
        reader.close()
    words = status.decode("latin-1").strip()
    version, _, rest = words.partition(" ")
    if not version.startswith("HTTP/") or not rest[:3].isdigit():
        raise ProxyRefused(f"the proxy did not answer CONNECT with HTTP: {words[:100]!r}")
    if not 200 <= int(rest[:3]) < 300:
        raise ProxyRefused(f"the proxy answered CONNECT with {rest[:100]}")


def _ascii_host(host: str) -> str:
    """``host`` as it goes on the wire: IDNA for a non-ASCII name."""
    try:
        return host.encode("ascii").decode()
    except UnicodeEncodeError:
        return host.encode("idna").decode("ascii")


class _TLSConnection(http.client.HTTPSConnection, _Connection):
    pass


def _ssl_context() -> ssl.SSLContext:
    """The system's trust store when ``SSL_CERT_FILE``/``SSL_CERT_DIR`` say so, else certifi's
    bundle (what ``requests`` used), else the system default."""
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context()
    try:
        import certifi  # noqa: PLC0415 - optional, comes with requests

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:  # pragma: no cover - requests brings certifi
        return ssl.create_default_context()


def _cut(connection: _Connection) -> None:
    raw = connection.raw
    if raw is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(raw, socket.SHUT_RDWR)  # the fd, even under TLS


class _Pool:
    connection: _Connection | None = None

    def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()


class _Watchdog:
    """One daemon thread that cuts the connections whose deadline passed.

    One for the process, started with the first request, rather than a timer thread per
    request: Python 3.12 refuses to start threads at interpreter exit, which is exactly when the
    batch processor and the score sender send their last requests. Should it still be impossible
    to start (the very first request made at exit), requests keep the per-read socket timeout.
    After ``os.fork()`` the child starts its own.
    """

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._due: list[tuple[float, int, list[Any]]] = []
        self._order = itertools.count()
        self._owner: int | None = None  # the pid whose thread runs

    def watch(self, deadline: float, expire: Callable[[], None]) -> list[Any] | None:
        """Call ``expire`` at ``deadline`` unless cancelled; ``None`` if no thread can run."""
        entry: list[Any] = [expire]
        with self._wake:
            if not self._running():
                return None
            heapq.heappush(self._due, (deadline, next(self._order), entry))
            self._wake.notify()
        return entry

    def cancel(self, entry: list[Any] | None) -> None:
        if entry is not None:
            entry[0] = None  # dropped from the heap when its time comes

    def _running(self) -> bool:
        if self._owner == os.getpid():
            return True
        self._due.clear()  # a forked child inherits the parent's entries, not its thread
        try:
            threading.Thread(target=self._run, name="langfuse-otel-deadlines", daemon=True).start()
        except RuntimeError:  # interpreter shutting down
            return False
        self._owner = os.getpid()
        return True

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(None if not self._due else self._due[0][0] - time.monotonic())
                _, _, entry = heapq.heappop(self._due)
            expire = entry[0]
            if expire is not None:
                with contextlib.suppress(Exception):  # a failed cut must not end the watchdog
                    expire()


_WATCHDOG = _Watchdog()


def _new_watchdog_in_child() -> None:
    global _WATCHDOG  # noqa: PLW0603 - the child's own, with a lock no parent thread holds
    _WATCHDOG = _Watchdog()


os.register_at_fork(after_in_child=_new_watchdog_in_child)


class HttpTransport:
    """POSTs to one URL. Thread-safe (one request at a time); :meth:`close` is idempotent."""

    def __init__(self, url: str, *, max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http(s) URL with a host")
        self.url = display_url(url)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._userinfo = None
        if parts.username is not None:
            token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self._userinfo = "Basic " + base64.b64encode(token).decode("ascii")
        self._proxy = proxy_for(url)
        proxy_auth = self._proxy.authorization if self._proxy is not None else None
        self._secrets = secrets_in({}, self._userinfo, proxy_auth)
        self._proxy_headers: dict[str, str] = {}
        if self._proxy is not None and not self._tls:  # plain HTTP through a proxy: absolute form
            host = _ascii_host(self._host)
            netloc = authority(host, self._port) if parts.port else bracketed(host)
            self._target = f"http://{netloc}{self._target}"
            if proxy_auth is not None:
                self._proxy_headers["Proxy-Authorization"] = proxy_auth
        self._max = max_response_bytes
        self._lock = threading.Lock()
        self._pool = _Pool()  # closed when this transport is collected, too
        weakref.finalize(self, self._pool.close)
        self._context = _ssl_context() if self._tls else None
        me = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_in_child(me))

    def __repr__(self) -> str:
        return f"HttpTransport({self.url!r})"

    def post(self, body: bytes, headers: Mapping[str, str], timeout: float) -> Reply:
        """Send ``body``; the whole exchange ends within ``timeout`` seconds. Never raises."""
        sent = dict(headers)
        if self._userinfo is not None and not any(k.lower() == "authorization" for k in sent):
            sent["Authorization"] = self._userinfo
        proxy = None if self._proxy is None else self._proxy.shown
        if self._proxy is not None and self._proxy.problem is not None:
            return Reply(self.url, error=self._proxy.problem, proxy=proxy, unsent=True)
        sent.update(self._proxy_headers)
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            deadline = time.monotonic() + max(timeout, 0.001)
            with self._lock:
                pooled = self._pool.connection is not None
                reply = self._exchange(body, sent, deadline)
                if pooled and reply.status is None and not reply.timed_out:
                    # A kept-alive connection the server had closed meanwhile: once more, fresh.
                    reply = self._exchange(body, sent, deadline)
                return dataclasses.replace(
                    reply, secrets=secrets_in(sent, *self._secrets), proxy=proxy
                )
        finally:
            detach(token)

    def _exchange(self, body: bytes, headers: dict[str, str], deadline: float) -> Reply:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            return Reply(self.url, error="no time left", timed_out=True)
        connection = self._pool.connection or self._connect(timeout)
        self._pool.connection = None  # put back only if the exchange ends cleanly
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            _cut(connection)

        watch = _WATCHDOG.watch(deadline, expire)
        response: http.client.HTTPResponse | None = None
        try:
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
            connection.request("POST", self._target, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read(self._max + 1)
            answer = {name.lower(): value for name, value in response.getheaders()}
            if not answer:  # the connection ended inside the status line or the headers
                raise http.client.IncompleteRead(data)
            reusable = not response.will_close and len(data) <= self._max and response.isclosed()
            error: BaseException | None = None
        except (OSError, http.client.HTTPException) as failure:
            error, reusable = failure, False
        finally:
            _WATCHDOG.cancel(watch)
        if expired.is_set() or not reusable:
            if response is not None:
                response.close()
            connection.close()
        if expired.is_set() or (error is not None and time.monotonic() >= deadline):
            late = f"no complete answer within {timeout:.3g} s"
            return Reply(self.url, error=late, timed_out=True)  # even if the status line came
        if error is not None or response is None:
            return Reply(self.url, error=_describe_error(error or OSError()))
        if reusable:
            self._pool.connection = connection
        return Reply(self.url, response.status, data[: self._max], answer)

    def _connect(self, timeout: float) -> _Connection:
        connection: _Connection
        if self._tls:  # through a proxy: a CONNECT tunnel, TLS with Langfuse inside it
            connection = _TLSConnection(
                self._host, self._port, timeout=timeout, context=self._context
            )
            connection.tunnel_via = self._proxy
        elif self._proxy is not None:  # plain HTTP: to the proxy, absolute-form target
            connection = _Connection(self._proxy.host, self._proxy.port, timeout=timeout)
        else:
            connection = _Connection(self._host, self._port, timeout=timeout)
        return connection

    def close(self) -> None:
        """Close the pooled connection; never waits (a request in flight ends at its deadline,
        and its connection is closed when this transport is collected)."""
        if self._lock.acquire(blocking=False):
            try:
                self._pool.close()
            finally:
                self._lock.release()


def _forget_in_child(reference: weakref.ref[HttpTransport]) -> None:
    transport = reference()
    if transport is not None:
        transport._pool.close()  # the child's copy of the socket; the parent's stays open
        transport._lock = threading.Lock()  # it may have been held at fork


def _describe_error(error: BaseException) -> str:
    """A connection error in words, without any URL userinfo (``str`` of some errors has none,
    but keep it short and safe: the type, and the OS's reason when there is one)."""
    if isinstance(error, ProxyRefused):
        return str(error)
    reason = getattr(error, "strerror", None)
    return f"{type(error).__name__}: {reason}" if reason else type(error).__name__
