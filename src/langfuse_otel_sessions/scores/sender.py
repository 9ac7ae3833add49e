"""The background sender of scores: a queue bounded by count and bytes, one daemon thread that
never dies, batches posted to Langfuse's ingestion route with retries.

Why the batch route (``POST /api/public/ingestion``, ``score-create`` events) and not
``/api/public/scores``: one request carries up to ``BATCH_SIZE`` scores, so a burst of feedback
costs a handful of requests instead of one each, and throughput does not depend on round trips.
Its answer is 207 with per-event results: events that failed with 429/5xx are retried, events
refused with another 4xx are not (the server's message is logged). A batch refused as a whole
(400, 413) is split until the refused score stands alone (:mod:`.score_batches`), so one bad
score never costs the others. Every score carries its id, so a retried event replaces the score
rather than adding one.

Nothing is lost silently: a full queue drops the new score, a refused score and a batch that
exhausts its retries are given up, and all are counted (``stats``) and logged. The thread
survives any error; if it is ever gone, the next ``submit`` or ``flush`` starts a new one.
After ``os.fork()`` the child gets an empty sender of its own (the parent delivers what it had
queued).

Requests go through :mod:`..export.http`: one deadline each (``request_timeout``) including
reading the answer, no redirects, capped reads. ``flush()`` and ``shutdown()`` are bounded as a
whole (by default the client's ``timeout``), not per batch; what ``shutdown()`` could not deliver by
then is counted as failed and logged. A client that is shut down or garbage-collected stops its
thread once what it queued is sent. At interpreter exit all senders share one bound (the longest
``exit_timeout``), counted from the start of exit, so that it runs alongside the span exporter's
final flush rather than after it.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._logging import RateLimitedLog, logger
from ..export.http import RETRYABLE_STATUSES, HttpClient, Reply, RetryPolicy
from .batches import (
    BATCH_REFUSALS,
    MAX_BATCH_BYTES,
    Outcome,
    Tally,
    deliver_isolating,
    encode_batch,
    event_size,
)
from .model import FrozenScore

#: The most scores one request carries.
BATCH_SIZE = 100
#: Default bound of the queue in bytes (the scores' JSON bodies).
DEFAULT_MAX_QUEUE_BYTES = 32_000_000


@dataclass(frozen=True)
class SenderStats:
    """Counts since the sender started (or since the fork that made this process). Each queued
    score ends up delivered, refused (by Langfuse, for itself) or failed (given up)."""

    queued: int
    delivered: int
    failed: int
    dropped: int
    retries: int
    refused: int = 0
    #: session scores not sent because the session was sampled out
    sampled_out: int = 0


class ScoreSender:
    """Queues scores and posts them in the background. Thread-safe; never raises on submit."""

    def __init__(
        self,
        *,
        endpoint: str,
        authorization: str | None,
        disabled_reason: str | None = None,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        request_timeout: float = 10.0,
        policy: RetryPolicy | None = None,
        exit_timeout: float = 5.0,
        setting: str = "LANGFUSE_BASE_URL",
    ) -> None:
        self.endpoint = endpoint
        self._authorization = authorization
        self._disabled_reason = disabled_reason
        self.max_queue_bytes = max_queue_bytes
        self.request_timeout = request_timeout
        self.policy = policy or RetryPolicy()
        self.exit_timeout = exit_timeout
        #: What to change when Langfuse redirects (for the log).
        self.setting = setting
        self._client = HttpClient(endpoint)
        self._log = RateLimitedLog()
        self._reset()
        me = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _call(me, ScoreSender._reset))
        _live.add(self)

    def _reset(self) -> None:
        """Fresh state: at construction, and in a child process after ``fork``."""
        self._lock = threading.Condition()
        self._queue: deque[FrozenScore] = deque()
        self._queued_bytes = 0
        self._in_flight = 0
        self._counts = {
            "queued": 0,
            "delivered": 0,
            "refused": 0,
            "failed": 0,
            "dropped": 0,
            "retries": 0,
            "sampled_out": 0,
        }
        self._thread: threading.Thread | None = None
        self._closing = False  # no more scores taken
        self._stopped = False  # shutdown() was called
        self._abort = threading.Event()
        self._unsent = 0  # dropped, refused or given up since the last flush()
        self._batch = 0  # which batch is in hand; shutdown() moves it on when it gives up

    @property
    def stats(self) -> SenderStats:
        with self._lock:
            return SenderStats(**self._counts)

    def submit(self, score: FrozenScore) -> bool:
        """Queue ``score``; ``False`` if it was dropped (disabled, closed, or queue full)."""
        if self._disabled_reason is not None:
            return self._drop("disabled", "%s; score not sent", self._disabled_reason)
        size = len(score.encoded)
        with self._lock:
            if self._closing:
                return self._drop_locked("closed", "Score sender is shut down; score not sent")
            if self._queued_bytes + size > self.max_queue_bytes:
                return self._drop_locked(
                    "full",
                    "Score queue full (limit: %d bytes); dropping a score",
                    self.max_queue_bytes,
                )
            self._queue.append(score)
            self._queued_bytes += size
            self._counts["queued"] += 1
            if self._thread is None:
                self._start_locked()
            self._lock.notify_all()
        return True

    def count_sampled_out(self) -> None:
        """Count a score that was not submitted because its session was sampled out."""
        with self._lock:
            self._counts["sampled_out"] += 1

    def _start_locked(self) -> None:
        self._thread = threading.Thread(target=self._run, name="langfuse-score-sender", daemon=True)
        self._thread.start()
        # Exit's clock starts before the hooks registered so far (a TracerProvider's) run.
        atexit.unregister(_note_exit)
        atexit.register(_note_exit)

    def _drop(self, key: str, message: str, *args: object) -> bool:
        with self._lock:
            return self._drop_locked(key, message, *args)

    def _drop_locked(self, key: str, message: str, *args: object) -> bool:
        self._counts["dropped"] += 1
        self._unsent += 1
        dropped = self._counts["dropped"]
        self._log.warning(key, message + " (%d dropped so far)", *args, dropped)
        return False

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every score queued so far is delivered or given up, at most ``timeout``
        seconds (``None``: the retry deadline) for the whole call; ``False`` on timeout."""
        deadline = time.monotonic() + (self.policy.deadline if timeout is None else timeout)
        with self._lock:
            while self._queue or self._in_flight:
                if self._thread is None and self._queue and not self._abort.is_set():
                    self._start_locked()  # the sender was gone: the call brings it back
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
        return True

    def flush_delivered(self, timeout: float | None = None) -> bool:
        """:meth:`flush`, and ``True`` only if, besides, no score submitted since the previous
        call was dropped (keys missing, queue full, shut down), refused or given up."""
        drained = self.flush(timeout)
        with self._lock:
            clean, self._unsent = self._unsent == 0, 0
        return drained and clean

    def close(self) -> None:
        """Stop taking scores; the thread sends what is queued, then ends. Never waits (for a
        client being garbage-collected)."""
        with self._lock:
            self._closing = True
            self._lock.notify_all()

    def shutdown(self, timeout: float | None = None) -> bool:
        """Deliver what is queued within ``timeout`` (``None``: the retry deadline) for the
        whole call, then stop; idempotent. Scores not delivered by then are counted as failed
        and logged; ``True`` only if every score submitted since the last flush was
        delivered."""
        with self._lock:
            already = self._stopped
            self._stopped = self._closing = True
            self._lock.notify_all()
        if already:
            return not self._queue
        self.flush(timeout)
        self._abort.set()  # cuts a retry wait short
        self._client.close()  # and a request in flight: the thread ends at once
        with self._lock:
            left = len(self._queue) + self._in_flight
            if left:
                self._queue.clear()
                self._queued_bytes = self._in_flight = 0
                self._batch += 1  # the thread's late word on its batch no longer counts
                self._counts["failed"] += left
                self._unsent += left
            unsent, self._unsent = self._unsent, 0
            self._lock.notify_all()
        if unsent:
            logger.error(
                "Score sender shut down; %d scores not delivered (or not confirmed)", unsent
            )
        return not unsent

    # -- the sender thread ---------------------------------------------------------------------

    def _run(self) -> None:
        """The thread: batch after batch until shut down. Nothing it meets ends it; should
        something still do (a ``BaseException``), the scores in hand are counted as failed and
        the next call starts a new thread."""
        try:
            while True:
                try:
                    if not self._send_next_batch():
                        return
                except Exception:  # noqa: BLE001 - the sender thread must survive anything
                    self._log.exception("crash", "Score sender failed; it carries on")
                    self._abort.wait(0.05)  # no busy loop should the failure repeat
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None
                if self._in_flight:
                    self._counts["failed"] += self._in_flight
                    self._unsent += self._in_flight
                    logger.error("Score sender stopped with %d scores in hand", self._in_flight)
                    self._in_flight = 0
                self._lock.notify_all()

    def _send_next_batch(self) -> bool:
        """Take the next batch (at most ``BATCH_SIZE`` scores and ``MAX_BATCH_BYTES``), deliver
        it; ``False`` when the sender is done."""
        with self._lock:
            while not self._queue and not self._closing:
                self._lock.wait()
            if not self._queue or self._abort.is_set():
                return False
            batch = self._take_locked()
            mine = self._batch
        try:
            tally = deliver_isolating(batch, self._post_with_retries)
        except Exception:  # noqa: BLE001 - counted below; the thread carries on
            self._log.exception("crash", "Score sender failed on a batch of %d", len(batch))
            tally = Tally(failed=len(batch))
        for score, message in tally.refused:
            self._log.error(
                "refused",
                "Langfuse refused score %s (%r): %s",
                score.id,
                score.name,
                message,
            )
        with self._lock:
            if mine != self._batch:  # shutdown() gave up on it and counted it
                return False
            self._counts["delivered"] += tally.delivered
            self._counts["refused"] += len(tally.refused)
            self._counts["failed"] += tally.failed
            self._unsent += len(tally.refused) + tally.failed
            self._in_flight = 0
            self._lock.notify_all()
        return True

    def _take_locked(self) -> list[FrozenScore]:
        batch: list[FrozenScore] = []
        size = 0
        while self._queue and len(batch) < BATCH_SIZE:
            score = self._queue[0]
            grown = size + event_size(score)
            if batch and grown > MAX_BATCH_BYTES:
                break
            batch.append(self._queue.popleft())
            self._queued_bytes -= len(score.encoded)
            size = grown
        self._in_flight = len(batch)
        return batch

    def _post_with_retries(self, batch: Sequence[FrozenScore]) -> Outcome:
        """Post ``batch`` with retries: what became of it. Never raises."""
        pending, body = encode_batch(batch)
        sent = len(pending)
        outcome = Outcome()
        started = time.monotonic()
        status: int | None = None
        reply: Reply | None = None
        for attempt in range(self.policy.max_attempts):
            reply = self._post(body, started)
            status, answer, retry_after = reply.status, reply.json(), reply.retry_after
            if answer is None:
                answer = reply.message()
            if status == 207:  # per-event results; none at all (not JSON): sent again
                results = answer if isinstance(answer, dict) else {}
                pending = _apply_results(pending, results, outcome, reply.clean)
            elif status is not None and 200 <= status < 300:
                outcome.delivered += len(pending)
                pending = {}
            elif status in BATCH_REFUSALS:
                outcome.refused_together = list(pending.values())
                outcome.batch_refusal = f"{status} {reply.clean(_message(answer))}"
                return outcome
            elif status is not None and status < 400:  # an interim status or a redirect
                self._log.error(
                    f"status-{status}",
                    "%d scores not delivered: %s",
                    len(pending),
                    self._why(reply),
                )
                outcome.failed += len(pending)
                return outcome
            elif status is not None and status not in RETRYABLE_STATUSES:
                self._log.error(
                    f"status-{status}",
                    "Langfuse at %s refused %d scores with %d: %s",
                    reply.url,
                    len(pending),
                    status,
                    reply.clean(_message(answer)),
                )
                outcome.failed += len(pending)
                return outcome
            if not pending:
                return outcome
            if len(pending) < sent:  # only what is left goes again
                pending, body = encode_batch(list(pending.values()))
                sent = len(pending)
            if status is None and not reply.unsent:
                self._log.warning(
                    "connection",
                    "%s",
                    self._why(reply),
                )
            wait = self.policy.backoff(attempt, retry_after)
            out_of_time = time.monotonic() + wait - started > self.policy.deadline
            last_attempt = attempt + 1 == self.policy.max_attempts or reply.unsent
            if last_attempt or out_of_time:  # unsent: a setting to change, not worth a retry
                break
            with self._lock:
                self._counts["retries"] += 1
            if self._abort.wait(wait):
                break
        last = "no request" if reply is None else self._why(reply)
        self._log.error("gave-up", "Gave up on %d scores after retries: %s", len(pending), last)
        outcome.failed += len(pending)
        return outcome

    def _why(self, reply: Reply) -> str:
        return reply.describe("Langfuse", self.setting)

    def _post(self, body: bytes, started: float) -> Reply:
        """One request within ``request_timeout`` and what is left of the retry deadline."""
        remaining = self.policy.deadline - (time.monotonic() - started)
        timeout = max(min(self.request_timeout, remaining), 0.1)
        headers = {"Content-Type": "application/json"}
        if self._authorization is not None:
            headers["Authorization"] = self._authorization
        return self._client.post(body, headers, timeout)


def _apply_results(
    pending: dict[str, FrozenScore],
    answer: dict[str, Any],
    outcome: Outcome,
    clean: Callable[[str], str],
) -> dict[str, FrozenScore]:
    """From a 207 answer, count the accepted and refused events into ``outcome``; returns the
    events to send again (a transient per-event error, or no result at all; their score ids
    keep it idempotent)."""
    results: dict[object, dict[str, Any] | None] = {}
    for success in answer.get("successes") or []:
        if isinstance(success, dict):
            results[success.get("id")] = None
    for error in answer.get("errors") or []:
        if isinstance(error, dict):
            results[error.get("id")] = error
    retry: dict[str, FrozenScore] = {}
    for event_id, score in pending.items():
        if event_id not in results:
            retry[event_id] = score
            continue
        error = results[event_id]
        if error is None:
            outcome.delivered += 1
        elif error.get("status") in RETRYABLE_STATUSES:
            retry[event_id] = score
        else:
            outcome.refused.append((score, clean(f"{error.get('status')} {_message(error)}")))
    return retry


def _message(answer: Any) -> str:  # noqa: ANN401 - whatever the server answered
    """The server's message (and its detail, as Langfuse puts it in ``error``), shortened."""
    if isinstance(answer, dict):
        parts = [answer.get("message"), answer.get("error") or answer.get("errors")]
        text = ": ".join(str(part) for part in parts if part) or str(answer)
        return text[:4000]  # cleaned and capped by the caller
    return str(answer)[:4000]


def _call(reference: weakref.ref[ScoreSender], action: Any) -> None:  # noqa: ANN401
    sender = reference()
    if sender is not None:
        action(sender)


#: Every sender alive, for the one exit hook.
_live: weakref.WeakSet[ScoreSender] = weakref.WeakSet()


#: When interpreter exit began (noted by a hook that runs before a TracerProvider's).
_exit_began: list[float] = []


def _note_exit() -> None:
    _exit_began.append(time.monotonic())


def shutdown_all(timeout: float | None = None) -> None:
    """Shut every live sender down within one overall ``timeout`` (default: the longest
    ``exit_timeout``, counted from the start of exit, while spans are flushed): all start
    sending what they hold at once, then each gets what is left."""
    senders = list(_live)
    if not senders:
        return
    bound = max(sender.exit_timeout for sender in senders) if timeout is None else timeout
    deadline = (_exit_began[0] if _exit_began else time.monotonic()) + bound
    for sender in senders:
        sender.close()
    for sender in senders:
        sender.shutdown(max(deadline - time.monotonic(), 0.0))


atexit.register(shutdown_all)
