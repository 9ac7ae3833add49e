"""The background sender of scores: a bounded queue, one daemon thread, batches posted to
Langfuse's ingestion route with retries.

Why the batch route (``POST /api/public/ingestion``, ``score-create`` events) and not
``/api/public/scores``: one request carries up to ``batch_size`` scores, so a burst of feedback
costs a handful of requests instead of one each, and throughput does not depend on round trips.
Its answer is always 207 with per-event results: events that failed with 429/5xx are retried,
events refused with another 4xx are not (the server's message is logged). Every score carries
its id, so a retried event replaces the score rather than adding one.

Nothing is lost silently: a full queue drops the new score, a batch that exhausts its retries is
given up, and both are counted (``stats``) and logged. After ``os.fork()`` the child gets an
empty sender of its own (the parent delivers what it had queued).
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
import uuid
import weakref
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import requests
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

from ._logging import RateLimitedLog, logger
from .retry import RETRYABLE_STATUSES, RetryPolicy, retry_after_seconds
from .score_model import Score

MAX_BATCH_BYTES = 3_000_000  # the route takes about 3.5 MB


@dataclass(frozen=True)
class SenderStats:
    """Counts since the sender started (or since the fork that made this process)."""

    queued: int
    delivered: int
    failed: int
    dropped: int
    retries: int


@dataclass
class _Event:
    event_id: str
    score: Score

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.event_id,
            "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "type": "score-create",
            "body": dict(self.score.body),
        }


class ScoreSender:
    """Queues scores and posts them in the background. Thread-safe; never raises on submit."""

    def __init__(
        self,
        *,
        endpoint: str,
        authorization: str | None,
        disabled_reason: str | None = None,
        max_queue: int = 10_000,
        batch_size: int = 100,
        request_timeout: float = 10.0,
        policy: RetryPolicy | None = None,
        exit_timeout: float = 5.0,
    ) -> None:
        self.endpoint = endpoint
        self._authorization = authorization
        self._disabled_reason = disabled_reason
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.request_timeout = request_timeout
        self.policy = policy or RetryPolicy()
        self._log = RateLimitedLog()
        self._reset()
        me = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _call(me, ScoreSender._reset))
        atexit.register(lambda: _call(me, lambda sender: sender.shutdown(exit_timeout)))

    def _reset(self) -> None:
        """Fresh state: at construction, and in a child process after ``fork``."""
        self._lock = threading.Condition()
        self._queue: deque[_Event] = deque()
        self._in_flight = 0
        self._counts = {"queued": 0, "delivered": 0, "failed": 0, "dropped": 0, "retries": 0}
        self._thread: threading.Thread | None = None
        self._closing = False
        self._abort = threading.Event()
        self._http = requests.Session()

    @property
    def stats(self) -> SenderStats:
        with self._lock:
            return SenderStats(**self._counts)

    def submit(self, score: Score) -> bool:
        """Queue ``score``; ``False`` if it was dropped (disabled, closed, or queue full)."""
        if self._disabled_reason is not None:
            return self._drop("disabled", "%s; score not sent", self._disabled_reason)
        with self._lock:
            if self._closing:
                return self._drop_locked("closed", "Score sender is shut down; score not sent")
            if len(self._queue) >= self.max_queue:
                return self._drop_locked(
                    "full", "Score queue full (%d); dropping a score", self.max_queue
                )
            self._queue.append(_Event(uuid.uuid4().hex, score))
            self._counts["queued"] += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="langfuse-score-sender", daemon=True
                )
                self._thread.start()
            self._lock.notify_all()
        return True

    def _drop(self, key: str, message: str, *args: object) -> bool:
        with self._lock:
            return self._drop_locked(key, message, *args)

    def _drop_locked(self, key: str, message: str, *args: object) -> bool:
        self._counts["dropped"] += 1
        dropped = self._counts["dropped"]
        self._log.warning(key, message + " (%d dropped so far)", *args, dropped)
        return False

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every score queued so far is delivered or given up; ``False`` on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._queue or self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    def shutdown(self, timeout: float | None = None) -> bool:
        """Deliver what is queued within ``timeout``, then stop; idempotent. Scores still
        queued after the timeout are counted as failed and logged."""
        with self._lock:
            already = self._closing
            self._closing = True
            self._lock.notify_all()
        if already:
            return not self._queue
        deadline = None if timeout is None else time.monotonic() + timeout
        delivered = self.flush(timeout)
        self._abort.set()  # cuts a retry wait short; a request in flight may still finish
        thread = self._thread
        if thread is not None:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            thread.join(timeout=remaining)
        with self._lock:
            left = len(self._queue)
            if left:
                self._queue.clear()
                self._counts["failed"] += left
                logger.error("Shutting down with %d scores not delivered", left)
            self._lock.notify_all()
        self._http.close()
        return delivered

    # -- the sender thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._lock.wait()
                if not self._queue or self._abort.is_set():
                    return
                taken = [
                    self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))
                ]
                self._in_flight = len(taken)
            batch = self._within_size(taken)  # sized outside the lock: submitters never wait
            try:
                delivered, failed = self._deliver(batch)
            except Exception:  # noqa: BLE001 - the sender thread must survive anything
                self._log.exception("crash", "Score sender failed on a batch")
                delivered, failed = 0, len(batch)
            with self._lock:
                self._counts["delivered"] += delivered
                self._counts["failed"] += failed
                self._in_flight = 0
                self._lock.notify_all()

    def _within_size(self, taken: list[_Event]) -> list[_Event]:
        """The first events of ``taken`` that fit in one request; the rest go back in front."""
        size = 0
        for index, event in enumerate(taken):
            size += len(json.dumps(event.score.body))
            if index and size > MAX_BATCH_BYTES:
                with self._lock:
                    self._queue.extendleft(reversed(taken[index:]))
                    self._in_flight = index
                return taken[:index]
        return taken

    def _deliver(self, batch: list[_Event]) -> tuple[int, int]:
        """Post ``batch`` with retries; returns (delivered, failed)."""
        pending = batch
        delivered = refused = 0
        started = time.monotonic()
        for attempt in range(self.policy.max_attempts):
            status, answer, retry_after = self._post(pending, started)
            if status == 207 and isinstance(answer, dict):
                ok, no, pending = self._split(pending, answer)
                delivered += ok
                refused += no
            elif status is not None and 200 <= status < 300:
                delivered += len(pending)
                pending = []
            elif status is not None and status not in RETRYABLE_STATUSES:
                self._log.error(
                    f"status-{status}",
                    "Langfuse refused %d scores with %d: %s",
                    len(pending),
                    status,
                    _message(answer),
                )
                return delivered, refused + len(pending)
            if not pending:
                return delivered, refused
            wait = self.policy.backoff(attempt, retry_after)
            out_of_time = time.monotonic() + wait - started > self.policy.deadline
            if attempt + 1 == self.policy.max_attempts or out_of_time:
                break
            with self._lock:
                self._counts["retries"] += 1
            if self._abort.wait(wait):
                break
        self._log.error(
            "gave-up", "Gave up on %d scores after retries (last status %s)", len(pending), status
        )
        return delivered, refused + len(pending)

    def _split(
        self, pending: list[_Event], answer: dict[str, Any]
    ) -> tuple[int, int, list[_Event]]:
        """From a 207 answer: accepted and refused counts, and the events to send again (a
        transient per-event error, or no result at all; their score ids keep it idempotent)."""
        errors = {error.get("id"): error for error in answer.get("errors") or []}
        accepted = {success.get("id") for success in answer.get("successes") or []}
        ok = refused = 0
        retry: list[_Event] = []
        for event in pending:
            error = errors.get(event.event_id)
            if event.event_id in accepted:
                ok += 1
            elif error is None or error.get("status") in RETRYABLE_STATUSES:
                retry.append(event)
            else:
                refused += 1
                self._log.error(
                    "event-refused",
                    "Langfuse refused a score (%s): %s",
                    error.get("status"),
                    str(error.get("message"))[:500],
                )
        return ok, refused, retry

    def _post(self, events: list[_Event], started: float) -> tuple[int | None, Any, float | None]:
        """One request: (status or ``None`` on a connection error, JSON answer, Retry-After)."""
        remaining = self.policy.deadline - (time.monotonic() - started)
        timeout = max(min(self.request_timeout, remaining), 0.1)
        headers = {"Content-Type": "application/json"}
        if self._authorization is not None:
            headers["Authorization"] = self._authorization
        body = json.dumps({"batch": [event.as_json() for event in events]})
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            response = self._http.post(self.endpoint, data=body, headers=headers, timeout=timeout)
        except requests.RequestException as error:
            self._log.warning(
                "connection", "Could not reach Langfuse for scores: %s", type(error).__name__
            )
            return None, None, None
        finally:
            detach(token)
        try:
            answer = response.json()
        except ValueError:
            answer = response.text[:500]
        return (
            response.status_code,
            answer,
            retry_after_seconds(response.headers.get("Retry-After")),
        )


def _message(answer: Any) -> str:  # noqa: ANN401 - whatever the server answered
    if isinstance(answer, dict):
        return str(answer.get("message") or answer.get("error") or answer)[:500]
    return str(answer)[:500]


def _call(reference: weakref.ref[ScoreSender], action: Any) -> None:  # noqa: ANN401
    sender = reference()
    if sender is not None:
        action(sender)
