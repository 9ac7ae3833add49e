"""One HTTP POST to Langfuse or a Collector through ``requests``, for spans and scores alike.

* **One deadline for the whole call**, DNS and connect included. ``requests`` bounds each
  connect and each read, not a lookup nor the whole exchange, so the request runs on a worker
  thread and the caller waits for it until the deadline, no longer. The body is handed to the
  connection only before the deadline: a request whose lookup or connect ends late sends
  nothing. A request still running at the deadline ends on its worker when the server lets go
  (the socket is shut down once the answer's headers are in; before that, each read is bounded
  by what was left of the deadline).
* **No redirects**: the adapter sends once; a 3xx is an answer (counted as a failure, its
  ``Location`` named), and credentials never follow it.
* **The status decides**: a 2xx is delivered even if its body then breaks off; interim (1xx)
  answers are skipped, as ``http.client`` does for 100 only. At most
  :data:`MAX_RESPONSE_BYTES` of a body are read.
* Proxies and CA bundle come from the environment as ``requests`` reads them (``HTTPS_PROXY``,
  ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``; also ``SSL_CERT_FILE``);
  ``~/.netrc`` is not read.
* Nothing traces itself: the worker runs with OpenTelemetry's instrumentation suppressed.

Failures are values (:class:`Reply`), never exceptions.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import http.client
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
import urllib3

# The one private name we use, as OpenTelemetry's own exporters do: it turns instrumentation off.
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .http_headers import retry_after_seconds
from .log_safety import MAX_LOGGED_CHARS, loggable, secrets_in
from .urls import display_url

#: How long past the caller's deadline a worker's socket may still wait (the caller has gone).
_WORKER_GRACE_SECONDS = 1.0
#: The most of a response body that is read; Langfuse's answers are a few kilobytes.
MAX_RESPONSE_BYTES = 1_000_000
_MAX_LOGGED_BYTES = 4 * MAX_LOGGED_CHARS  # a secret straddling the cap is still found
#: Errors of a setting (a proxy URL, a scheme): nothing was sent, and a retry cannot help.
_SETTING_ERRORS = (requests.exceptions.InvalidSchema, requests.exceptions.InvalidURL)


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
    #: The proxy the request went through (no credentials), if any.
    proxy: str | None = None
    #: Nothing was sent, for a reason a retry cannot change (a setting to fix).
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

    def describe(self, server: str, setting: str) -> str:
        """Why this was not a success, for a log line. ``server`` names who answered
        ("Langfuse", "the Collector"); ``setting`` is what to change after a redirect."""
        where = self.url if self.proxy is None else f"{self.url} (through the proxy {self.proxy})"
        if self.status is None:
            unsent = f"nothing was sent to {server} at {self.url}"
            said = unsent if self.unsent else f"{server} at {where} did not answer"
            return f"{said}: {self.clean(self.error or '')}"
        if 300 <= self.status < 400:
            location = self.clean(display_url(self.headers.get("location", "").strip()))
            to = f" to {location}" if location else " without a Location"
            return f"{server} at {where} answered {self.status}{to} (not followed): check {setting}"
        words = self.message()
        if self.status < 300:  # a success that did not say what became of what was sent
            unsaid = "without saying what became of what was sent"
            return f"{server} at {where} answered {self.status} {unsaid}" + (
                f" ({words})" if words else ""
            )
        if self.status == 407 and self.proxy is not None:
            return (
                f"the proxy {self.proxy} answered 407 (Proxy Authentication Required) for "
                f"{self.url}: check the credentials in the proxy URL"
            )
        return f"{server} at {where} answered {self.status}" + (f": {words}" if words else "")


class _FinalResponse(http.client.HTTPResponse):
    """Skips every interim (1xx) answer, where ``http.client`` skips 100 only."""

    def begin(self) -> None:
        super().begin()
        while 100 <= self.status < 200:
            self.headers = self.msg = None  # type: ignore[assignment] # read the next answer
            super().begin()


def _skipping_interim(pool: type[HTTPConnectionPool]) -> type[HTTPConnectionPool]:
    connection = type("Connection", (pool.ConnectionCls,), {"response_class": _FinalResponse})
    return type(pool.__name__, (pool,), {"ConnectionCls": connection})


_POOLS = {
    "http": _skipping_interim(HTTPConnectionPool),
    "https": _skipping_interim(HTTPSConnectionPool),
}


class _Adapter(HTTPAdapter):
    """``requests``' adapter whose connections skip interim answers (not SOCKS ones)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - requests'
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> urllib3.PoolManager:  # noqa: ANN401
        manager: urllib3.PoolManager = super().proxy_manager_for(proxy, **kwargs)
        if isinstance(manager, urllib3.ProxyManager):
            manager.pool_classes_by_scheme = _POOLS
        return manager


def _no_netrc(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request  # as ``auth``: requests then reads no ~/.netrc (our headers carry the auth)


def _new_session() -> requests.Session:
    session = requests.Session()
    session.auth = _no_netrc
    session.headers.clear()  # no Accept-Encoding: answers come as they are (identity)
    session.verify = os.environ.get("SSL_CERT_FILE") or True  # REQUESTS_CA_BUNDLE still wins
    session.mount("http://", _Adapter())
    session.mount("https://", _Adapter())
    return session


class _TooLate(Exception):
    """The deadline passed before the body was handed over: nothing is sent."""


@dataclass
class _Call:
    deadline: float
    late: bool = False  # the caller stopped waiting
    sent: bool = False  # the body was handed to the connection
    reply: Reply | None = None
    response: requests.Response | None = None


class _Body:
    """The request body, handed to the connection once it is open, unless the call is late."""

    def __init__(self, data: bytes, call: _Call, lock: threading.Condition) -> None:
        self._data, self._call, self._lock = data, call, lock

    def __len__(self) -> int:
        return len(self._data)

    def read(self, size: int = -1) -> bytes:
        with self._lock:
            if self._call.late or time.monotonic() >= self._call.deadline:
                raise _TooLate
            self._call.sent = True
        if size < 0:
            size = len(self._data)
        data, self._data = self._data[:size], self._data[size:]
        return data


class _Workers:
    """Threads that run requests so that callers can stop waiting. They are kept: Python 3.12+
    starts no thread at interpreter exit, when the last spans and scores are sent (should none
    be idle then, the caller runs the request itself, bounded by per-read timeouts only)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()

    def ready(self) -> bool:
        """Make sure one worker is idle; ``False`` if none is and none can start."""
        with self._lock:
            return self._ready_locked()

    def _ready_locked(self) -> bool:
        if self._idle == 0:
            try:
                threading.Thread(target=self._work, name="langfuse-otel-http", daemon=True).start()
            except RuntimeError:  # interpreter exit
                return False
            self._idle += 1
        return True

    def run(self, job: Callable[[], None]) -> bool:
        """Hand ``job`` (which never raises) to an idle worker; ``False`` if there is none."""
        with self._lock:
            if not self._ready_locked():
                return False
            self._idle -= 1
        self._jobs.put(job)
        return True

    def _work(self) -> None:
        while True:
            self._jobs.get()()
            with self._lock:
                self._idle += 1


_workers = _Workers()


def _new_workers_in_child() -> None:
    global _workers  # noqa: PLW0603 - the parent's threads do not exist in a forked child
    _workers = _Workers()


os.register_at_fork(after_in_child=_new_workers_in_child)


class HttpClient:
    """POSTs to one URL (userinfo becomes Basic auth unless headers carry ``Authorization``).
    Thread-safe; :meth:`close` wakes every caller still waiting and refuses later calls."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http(s) URL with a host")
        self.url = display_url(url)
        netloc = parts.netloc.rpartition("@")[2]
        self._target = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        self._userinfo = None
        if parts.username is not None:
            token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self._userinfo = "Basic " + base64.b64encode(token).decode("ascii")
        self._lock = threading.Condition()
        self._closed = False
        self._session = _new_session()
        self._pid = os.getpid()
        _workers.ready()  # so that one is there at interpreter exit

    def __repr__(self) -> str:
        return f"HttpClient({self.url!r})"

    def post(self, body: bytes, headers: Mapping[str, str], timeout: float) -> Reply:
        """Send ``body``; returns within ``timeout`` seconds (or at :meth:`close`). Never
        raises."""
        sent = dict(headers)
        if self._userinfo is not None and not any(k.lower() == "authorization" for k in sent):
            sent["Authorization"] = self._userinfo
        proxy, proxy_auth = proxy_for(self._target)
        secrets = secrets_in(sent, self._userinfo, proxy_auth)
        call = _Call(time.monotonic() + max(timeout, 0.001))
        if self._closed:
            return Reply(self.url, error="shut down", unsent=True, proxy=proxy)

        def job() -> None:
            self._run(call, body, sent)

        if not _workers.run(job):
            job()
        with self._lock:
            self._lock.wait_for(
                lambda: call.reply is not None or self._closed, call.deadline - time.monotonic()
            )
            call.late = True  # from here on, the body is not handed over
            reply, response, went = call.reply, call.response, call.sent
        if reply is None:
            if response is not None:  # the worker is reading a trickled answer: end it
                with contextlib.suppress(Exception):  # urllib3 < 2.3 cannot shut down
                    response.raw.shutdown()
            why = f"no answer within {timeout:.3g} s"
            why = "shut down before an answer" if self._closed else why
            fate = "it was sent and may still arrive" if went else "nothing was sent"
            reply = Reply(self.url, error=f"{why} ({fate})", timed_out=not self._closed)
        return dataclasses.replace(reply, secrets=secrets, proxy=proxy)

    def _run(self, call: _Call, body: bytes, headers: dict[str, str]) -> None:
        """On a worker: the exchange, whatever happens."""
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            reply = self._exchange(call, body, headers)
        except _TooLate:
            reply = Reply(self.url, error="the deadline passed before sending", timed_out=True)
        except requests.RequestException as error:
            reply = Reply(
                self.url, error=_describe(error), unsent=isinstance(error, _SETTING_ERRORS)
            )
        except Exception as error:  # noqa: BLE001 - a worker must not die, nor the caller wait
            reply = Reply(self.url, error=_describe(error))
        finally:
            detach(token)
        with self._lock:
            call.reply = reply
            self._lock.notify_all()

    def _exchange(self, call: _Call, body: bytes, headers: dict[str, str]) -> Reply:
        if self._pid != os.getpid():  # a forked child: not the parent's pooled sockets
            self._session, self._pid = _new_session(), os.getpid()
        session = self._session
        request = session.prepare_request(
            requests.Request(
                "POST", self._target, headers=headers, data=_Body(body, call, self._lock)
            )
        )
        settings = session.merge_environment_settings(self._target, {}, True, None, None)
        remaining = max(call.deadline - time.monotonic(), 0.001)
        adapter = session.get_adapter(self._target)
        # The caller's wait enforces the deadline; the socket's own bound comes a little later,
        # so under load a read timeout here never pre-empts the caller's honest "no answer".
        timeout = urllib3.Timeout(total=remaining + _WORKER_GRACE_SECONDS)
        response = adapter.send(request, timeout=timeout, **settings)  # type: ignore[arg-type]
        with response:
            with self._lock:
                call.response = response
            data = bytearray()
            with contextlib.suppress(
                urllib3.exceptions.HTTPError, OSError, http.client.HTTPException
            ):
                for piece in response.raw.stream(65536, decode_content=False):
                    data += piece  # a body that breaks off does not undo the status
                    if len(data) > MAX_RESPONSE_BYTES or time.monotonic() > call.deadline:
                        break
            answer = {name.lower(): value for name, value in response.headers.items()}
            return Reply(self.url, response.status_code, bytes(data[:MAX_RESPONSE_BYTES]), answer)

    def close(self) -> None:
        """Wake every caller still waiting; later calls send nothing. Never waits."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._session.close()


def proxy_for(url: str) -> tuple[str | None, str | None]:
    """The proxy ``requests`` takes for ``url`` from the environment (shown without
    credentials), and its credentials as a Basic token, or ``None``."""
    found = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
    if not found:
        return None, None
    found = found if "://" in found else f"http://{found}"
    try:
        parts = urlsplit(found)
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    except ValueError:  # requests will refuse it, and say so
        return display_url(found), None
    token = base64.b64encode(f"{user}:{password}".encode()).decode() if user or password else ""
    return shown, f"Basic {token}" if token else None


def _describe(error: BaseException) -> str:
    """A connection error in words: its kind and the innermost reason (the caller's
    :meth:`Reply.clean` masks any secret in it)."""
    inner: BaseException = error
    for _ in range(10):
        reason = getattr(inner, "reason", None)
        following = (
            reason if isinstance(reason, BaseException) else inner.__cause__ or inner.__context__
        )
        if following is None or following is inner:
            break
        inner = following
    if inner is error:
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return f"{type(error).__name__}: {type(inner).__name__}: {inner}"
