"""One HTTP POST through ``requests`` for spans and scores, and OpenTelemetry's retry policy.

The request runs on a kept worker thread and the caller waits for it until the deadline, no
longer (``requests`` bounds no DNS lookup); docs/exporter.md says what holds. Failures are
values (:class:`Reply`), never exceptions.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import contextlib
import http.client
import json
import math
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
import urllib3

# The one private name we use, as OpenTelemetry's own exporters do: it turns instrumentation off.
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

#: When interpreter exit began, noted by the one exit hook below: each new client moves it
#: after the exit hooks registered so far (a TracerProvider's), so it runs before them and the
#: scores' exit deadline runs alongside the spans' final flush.
EXIT_BEGAN: list[float] = []


def _note_exit() -> None:
    EXIT_BEGAN.append(time.monotonic())


def note_exit_first() -> None:
    """Move the exit hook after those registered so far (a TracerProvider's built since)."""
    atexit.unregister(_note_exit)
    atexit.register(_note_exit)


#: The most of a response body that is read; Langfuse's answers are a few kilobytes.
MAX_RESPONSE_BYTES = 1_000_000
#: The most characters of a server's words that reach a log line.
MAX_LOGGED_CHARS = 500
#: What OpenTelemetry's OTLP exporter retries (besides connection errors); scores add 500.
OTLP_RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
RETRYABLE_STATUSES = OTLP_RETRYABLE_STATUSES | {500}
_GRACE_SECONDS = 1.0  # how long past the deadline a worker's socket may still wait
_SETTING_ERRORS = (requests.exceptions.InvalidSchema, requests.exceptions.InvalidURL)
_PLAIN_HEADERS = frozenset(("content-type", "content-encoding", "user-agent"))  # not secrets


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization: Basic`` header value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def display_url(url: str) -> str:
    """``url`` with its ``user:password@`` shown as ``***@`` (a token in a URL is a secret)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def _secrets(headers: Mapping[str, str], *more: str | None) -> tuple[str, ...]:
    """What a request carries that no log may show: each header value (but the plain ones) and
    ``more``, the token after an auth scheme, a Basic token's ``user:password`` and password."""
    found: set[str] = set()
    values = [v for k, v in headers.items() if k.lower() not in _PLAIN_HEADERS]
    for value in [*values, *(m for m in more if m)]:
        scheme, _, token = value.partition(" ")
        found.update((value, token.strip()))
        if scheme.lower() == "basic":
            with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                pair = base64.b64decode(token.strip(), validate=True).decode()
                found.update((pair, pair.partition(":")[2]))
    return tuple(sorted((s for s in found if len(s) >= 4), key=len, reverse=True))


@dataclass(frozen=True)
class Reply:
    """What one request got: a status and (capped) body, or ``status=None`` and why not."""

    url: str  # without userinfo
    status: int | None = None
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)  # case-insensitive
    error: str | None = None  # no answer: a connection error, or the deadline
    timed_out: bool = False
    unsent: bool = False  # nothing was sent, for a setting to fix: a retry cannot help
    proxy: str | None = None  # the proxy it went through, without credentials
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retry_after(self) -> float | None:
        """``Retry-After`` in seconds (a number or an HTTP date), or ``None``."""
        value = self.headers.get("retry-after", "").strip()
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                return None
        return max(seconds, 0.0) if math.isfinite(seconds) else None

    def json(self) -> Any:  # noqa: ANN401 - whatever the server answered
        """The body as JSON, or ``None``."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def clean(self, text: str) -> str:
        """``text`` from this server fit for a log line: this request's secrets as ``***``,
        non-printable characters escaped (``\\n``, ``\\x1b``), length capped."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
        return text if len(text) <= MAX_LOGGED_CHARS else text[:MAX_LOGGED_CHARS] + "..."

    def message(self) -> str:
        """The server's own words: JSON ``message``/``error``, else the start of the body."""
        answer = self.json()
        if isinstance(answer, dict) and (answer.get("message") or answer.get("error")):
            return self.clean(str(answer.get("message") or answer.get("error")))
        return self.clean(self.body[: 4 * MAX_LOGGED_CHARS].decode("utf-8", "replace").strip())

    def describe(self, server: str, setting: str) -> str:
        """Why this was not a success, for a log line. ``server`` names who answered;
        ``setting`` is what to change after a redirect."""
        where = self.url if self.proxy is None else f"{self.url} through the proxy {self.proxy}"
        if self.status is None:
            said = f"{server} at {where} did not answer"
            said = f"nothing was sent to {server} at {self.url}" if self.unsent else said
            return f"{said}: {self.clean(self.error or '')}"
        if 300 <= self.status < 400:
            location = self.clean(display_url(self.headers.get("location", "").strip()))
            to = f" to {location}" if location else " without a Location"
            return f"{server} at {where} answered {self.status}{to} (not followed): check {setting}"
        words = self.message()
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
    """``requests``' adapter whose connections skip interim answers (SOCKS ones do not)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401 - requests'
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> urllib3.PoolManager:  # noqa: ANN401
        manager: urllib3.PoolManager = super().proxy_manager_for(proxy, **kwargs)
        if isinstance(manager, urllib3.ProxyManager):
            manager.pool_classes_by_scheme = _POOLS
        return manager


class _TooLate(Exception):
    """The deadline passed before the body was handed over: nothing is sent."""


class _Call:
    """One request: the body urllib3 reads once the connection is open (unless the caller has
    stopped waiting), and what came of it. Shared by caller and worker under ``lock``."""

    def __init__(self, body: bytes, deadline: float, lock: threading.Condition) -> None:
        self.body, self.deadline, self.lock = body, deadline, lock
        self.late = self.sent = False  # the caller stopped waiting; the body was handed over
        self.reply: Reply | None = None

    def __len__(self) -> int:
        return len(self.body)

    def read(self, size: int = -1) -> bytes:
        with self.lock:
            if self.late or time.monotonic() >= self.deadline:
                raise _TooLate
            self.sent = True
        size = len(self.body) if size < 0 else size
        data, self.body = self.body[:size], self.body[size:]
        return data


class _Workers:
    """Kept daemon threads that run requests, so that callers can stop waiting. Kept because
    Python 3.12+ starts no thread at interpreter exit, when the last spans and scores go (with
    none idle then, the caller runs the request itself, bounded by its socket timeouts)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # one count per worker waiting for a job

    def run(self, job: Callable[[], None] | None) -> bool:
        """Run ``job`` (which never raises) on an idle worker, or a new one; ``None`` makes
        sure one is idle. ``False`` if none is and none can start."""
        if self._idle.acquire(blocking=False):
            if job is None:
                self._idle.release()
            else:
                self._jobs.put(job)
            return True
        try:
            threading.Thread(
                target=self._work, args=(job,), name="langfuse-otel-http", daemon=True
            ).start()
        except RuntimeError:  # interpreter exit
            return False
        return True

    def _work(self, job: Callable[[], None] | None) -> None:
        while True:
            if job is not None:
                job()
            self._idle.release()
            job = self._jobs.get()


_workers = _Workers()


def _new_workers_in_child() -> None:
    global _workers  # noqa: PLW0603 - the parent's threads do not exist in a forked child
    _workers = _Workers()


os.register_at_fork(after_in_child=_new_workers_in_child)


class HttpClient:
    """POSTs to one URL (its userinfo becomes Basic auth unless headers carry ``Authorization``).
    Thread-safe; :meth:`close` wakes every caller still waiting and refuses later calls."""

    def __init__(self, url: str) -> None:
        self.url = display_url(url)
        parts = urlsplit(url)
        self._target = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        self._userinfo = basic_auth(user, password) if "@" in parts.netloc else None
        self._lock = threading.Condition()
        self._closed = False
        self._session = requests.Session()  # reads the environment's proxies and CA bundle
        self._session.verify = os.environ.get("SSL_CERT_FILE") or True  # REQUESTS_CA_BUNDLE wins
        self._adapter, self._pid = _Adapter(), os.getpid()
        _workers.run(None)  # so that one is there at interpreter exit
        note_exit_first()  # see EXIT_BEGAN

    def post(self, body: bytes, headers: Mapping[str, str], timeout: float) -> Reply:
        """Send ``body``; returns within ``timeout`` seconds (or at :meth:`close`), never raises."""
        sent: CaseInsensitiveDict[str] = CaseInsensitiveDict(headers)
        if self._userinfo is not None:
            sent.setdefault("Authorization", self._userinfo)
        proxy, proxy_auth = proxy_for(self._target)
        secrets = _secrets(sent, self._userinfo, proxy_auth)
        if self._closed:
            return Reply(self.url, error="shut down", unsent=True, proxy=proxy, secrets=secrets)
        call = _Call(body, time.monotonic() + max(timeout, 0.001), self._lock)
        if not _workers.run(lambda: self._run(call, sent)):
            self._run(call, sent)
        with self._lock:
            wait = call.deadline - time.monotonic()
            self._lock.wait_for(lambda: call.reply is not None or self._closed, wait)
            call.late = True  # from here on, the body is not handed over
            reply, went = call.reply, call.sent
        if reply is None:
            why = (
                "shut down before an answer"
                if self._closed
                else f"no answer within {timeout:.3g} s"
            )
            fate = "it was sent and may still arrive" if went else "nothing was sent"
            reply = Reply(self.url, error=f"{why} ({fate})", timed_out=not self._closed)
        return replace(reply, proxy=proxy, secrets=secrets)

    def _run(self, call: _Call, headers: Mapping[str, str]) -> None:
        """The exchange, on a worker; whatever happens, the caller is told."""
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            reply = self._exchange(call, headers)
        except _TooLate:
            reply = Reply(self.url, error="the deadline passed before sending", timed_out=True)
        except Exception as error:  # noqa: BLE001 - a worker must not die, nor its caller wait
            unsent = isinstance(error, _SETTING_ERRORS)
            reply = Reply(self.url, error=_describe(error), unsent=unsent)
        finally:
            detach(token)
        with self._lock:
            call.reply = reply
            self._lock.notify_all()

    def _exchange(self, call: _Call, headers: Mapping[str, str]) -> Reply:
        if self._pid != os.getpid():  # a forked child: not the parent's pooled sockets
            self._adapter, self._pid = _Adapter(), os.getpid()
        request = requests.Request("POST", self._target, headers=headers, data=call).prepare()
        settings = self._session.merge_environment_settings(self._target, {}, None, None, None)
        timeout = urllib3.Timeout(total=call.deadline - time.monotonic() + _GRACE_SECONDS)
        with self._adapter.send(request, timeout=timeout, **settings) as response:  # type: ignore[arg-type]
            data = bytearray()
            with contextlib.suppress(
                urllib3.exceptions.HTTPError, OSError, http.client.HTTPException
            ):
                for piece in response.raw.stream(65536, decode_content=False):
                    data += piece  # a body that breaks off does not undo the status
                    if len(data) > MAX_RESPONSE_BYTES or time.monotonic() > call.deadline:
                        break
            body = bytes(data[:MAX_RESPONSE_BYTES])
            return Reply(self.url, response.status_code, body, response.headers)

    def close(self) -> None:
        """Wake every caller still waiting; later calls send nothing. Never waits."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._adapter.close()


def proxy_for(url: str) -> tuple[str | None, str | None]:
    """The proxy ``requests`` takes for ``url`` from the environment (shown without
    credentials), and the ``Proxy-Authorization`` it sends there, or ``None``."""
    found = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
    if not found:
        return None, None
    try:
        parts = urlsplit(found if "://" in found else f"http://{found}")
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    except ValueError:  # requests will refuse it, and say so
        return display_url(found), None
    return shown, basic_auth(user, password) if user or password else None


def _describe(error: BaseException) -> str:
    """An exception in words: its kind and its innermost reason."""
    inner: BaseException = error
    for _ in range(10):
        reason = getattr(inner, "reason", None)
        cause = (
            reason if isinstance(reason, BaseException) else inner.__cause__ or inner.__context__
        )
        if cause is None or cause is inner:
            break
        inner = cause
    if inner is error:
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return f"{type(error).__name__}: {type(inner).__name__}: {inner}"


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff ``initial * 2**attempt`` (capped at ``maximum``), ±``jitter``, within ``deadline``
    seconds of the first attempt; at most ``max_attempts`` attempts."""

    initial: float = 0.5
    maximum: float = 10.0
    jitter: float = 0.2
    deadline: float = 60.0
    max_attempts: int = 8
    statuses: frozenset[int] = RETRYABLE_STATUSES

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1``: ``retry_after`` if given."""
        if retry_after is not None:
            return retry_after
        base = min(self.initial * 2**attempt, self.maximum)
        return float(base * random.uniform(1 - self.jitter, 1 + self.jitter))  # noqa: S311


def post_with_retries(
    client: HttpClient,
    body: bytes,
    headers: Mapping[str, str],
    *,
    policy: RetryPolicy,
    abort: threading.Event,
    on_retry: Callable[[Reply, float], None] | None = None,
) -> Reply:
    """POST until a success, an answer not worth retrying, ``max_attempts``, the deadline (no
    wait that would end past it is started) or ``abort`` (waits on it); the last reply."""
    deadline = time.monotonic() + policy.deadline
    attempt = 0
    while True:
        reply = client.post(body, headers, deadline - time.monotonic())
        if reply.ok or reply.unsent or reply.status not in (None, *policy.statuses):
            return reply
        wait = policy.backoff(attempt, reply.retry_after)
        attempt += 1
        if attempt >= policy.max_attempts or time.monotonic() + wait > deadline:
            return reply
        if on_retry is not None:
            on_retry(reply, wait)
        if abort.wait(wait):
            return reply
