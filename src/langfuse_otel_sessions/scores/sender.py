"""The background sender: a queue bounded in bytes, one daemon thread, batches of
``score-create`` events posted to ``/api/public/ingestion`` with retries (docs/scores.md)."""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from .._logging import RateLimitedLog, logger
from ..export.config import Route
from ..export.http import EXIT_BEGAN, HttpClient, Reply, RetryPolicy, post_with_retries
from .model import Score, encode_json, new_score_id

#: The most scores one request carries, and the most bytes (Langfuse takes about 3.5 MB).
BATCH_SIZE = 100
MAX_BATCH_BYTES = 3_000_000
#: Default bound of the queue in bytes (see ``Score.size``).
DEFAULT_MAX_QUEUE_BYTES = 32_000_000
#: The most interpreter exit waits for scores.
EXIT_SECONDS = 5.0
#: Statuses that refuse a whole request for what it holds: split it and send the halves.
_BATCH_REFUSALS = frozenset({400, 413})


@dataclass(frozen=True)
class SenderStats:
    """Counts since the start (or fork): a queued score is delivered, refused or failed."""

    queued: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0
    refused: int = 0
    sampled_out: int = 0  # session scores not sent: the session was sampled out


def encode_batch(scores: Sequence[Score]) -> tuple[dict[str, Score], bytes]:
    """The scores by fresh event id, and the ingestion request's JSON body."""
    events = {new_score_id(): score for score in scores}
    batch = [
        {"id": event_id, "timestamp": _timestamp(score), "type": "score-create", "body": score.body}
        for event_id, score in events.items()
    ]
    return events, encode_json({"batch": batch}).encode()


def _timestamp(score: Score) -> str:
    moment = datetime.fromtimestamp(score.timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ScoreSender:
    """Queues scores and posts them in the background. Thread-safe; never raises on submit."""

    def __init__(self, route: Route, *, timeout: float, max_queue_bytes: int) -> None:
        self._route = route
        self._headers = {"Content-Type": "application/json", **route.headers}
        self.max_queue_bytes = max_queue_bytes
        self.policy = RetryPolicy(deadline=timeout)
        self.exit_timeout = min(EXIT_SECONDS, timeout)
        self._http = HttpClient(route.url)
        self._log = RateLimitedLog()
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        """Fresh state: at construction, and in a child process after ``fork``."""
        self._lock = threading.Lock()
        self._has_work = threading.Condition(self._lock)  # the thread waits on it
        self._drained = threading.Condition(self._lock)  # flush() waits on it
        self._queue: deque[Score] = deque()
        self._queued_bytes = self._in_flight = self._queued = 0  # queued: a Counter's += is slow
        self._counts: Counter[str] = Counter()
        self._thread: threading.Thread | None = None
        self._idle = False  # the thread waits for work
        self._closing = False  # no more scores taken
        self._abort = threading.Event()  # set by shutdown()
        self._unsent = 0  # dropped, refused or given up since the last flush()
        self._batch = 0  # which batch is in hand; shutdown() moves it on when it gives up
        self._tally: Counter[str] = Counter()  # what became of its scores (the thread's own)

    @property
    def stats(self) -> SenderStats:
        with self._lock:
            return SenderStats(**self._counts, queued=self._queued)

    def submit(self, score: Score) -> None:
        """Queue ``score``, or drop, count and log it (no keys, closed, or queue full)."""
        self._lock.acquire()  # cheaper than ``with`` (no bound methods made); released below
        try:
            if self._route.problem is not None:
                self._drop_locked("off", "Langfuse scores are off: %s", self._route.problem)
            elif self._closing:
                self._drop_locked("closed", "Score sender is shut down")
            elif self._queued_bytes + score.size > self.max_queue_bytes:
                self._drop_locked("full", "Score queue full (%d bytes)", self.max_queue_bytes)
            else:
                self._queue.append(score)
                self._queued_bytes += score.size
                self._queued += 1
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="langfuse-score-sender", daemon=True
                    )
                    self._thread.start()
                elif self._idle:
                    self._has_work.notify()
        finally:
            self._lock.release()

    def count_sampled_out(self) -> None:
        with self._lock:
            self._counts["sampled_out"] += 1

    def _drop_locked(self, key: str, message: str, *args: object) -> None:
        self._unsent += 1
        dropped = self._counts["dropped"] = self._counts["dropped"] + 1
        self._log.warning(key, message + "; score dropped (%d so far)", *args, dropped)

    def _wait_drained(self, timeout: float | None) -> bool:
        bound = self.policy.deadline if timeout is None else timeout
        with self._lock:
            return self._drained.wait_for(lambda: not (self._queue or self._in_flight), bound)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait, ``timeout`` at most, until what is queued is delivered, refused or given up;
        ``True`` if so and nothing submitted since the previous flush was lost."""
        drained = self._wait_drained(timeout)
        with self._lock:
            clean, self._unsent = self._unsent == 0, 0
        return drained and clean

    def close(self) -> None:
        """Stop taking scores; the thread sends what is queued, then ends. Never waits."""
        with self._lock:
            self._closing = True
            self._has_work.notify()

    def shutdown(self, timeout: float | None = None) -> bool:
        """Deliver what is queued within ``timeout``, then stop; what is left is counted as
        failed and logged. Idempotent."""
        if self._abort.is_set():  # shut down already
            return True
        self.close()
        self._wait_drained(timeout)
        self._abort.set()  # cuts a retry wait short
        self._http.close()  # and a request in flight: the thread ends at once
        with self._lock:
            left = len(self._queue) + self._in_flight
            if left:
                self._queue.clear()
                self._queued_bytes = self._in_flight = 0
                self._batch += 1  # the thread's late word on its batch no longer counts
                self._counts["failed"] += left
                self._unsent += left
            unsent, self._unsent = self._unsent, 0
            self._drained.notify_all()
        if unsent:
            logger.error("Scores shut down; %d scores not delivered (or not confirmed)", unsent)
        return not unsent

    # -- the sender thread ---------------------------------------------------------------------

    def _run(self) -> None:
        """Batch after batch, until closed and drained or shut down."""
        while True:
            with self._lock:
                self._idle = True
                self._has_work.wait_for(lambda: self._queue or self._closing)
                self._idle = False
                if not self._queue or self._abort.is_set():
                    return
                batch, mine = self._take_locked(), self._batch
            self._tally.clear()
            try:
                self._deliver(batch)
            except Exception:  # noqa: BLE001 - the sender thread must survive anything
                self._log.exception("crash", "Score sender failed on a batch of %d", len(batch))
                self._tally = Counter(failed=len(batch))
            with self._lock:
                if mine == self._batch:  # else shutdown() gave up on it and counted it
                    self._counts.update(self._tally)
                    self._unsent += self._tally["refused"] + self._tally["failed"]
                    self._in_flight = 0
                    self._drained.notify_all()

    def _take_locked(self) -> list[Score]:
        batch: list[Score] = []
        size = 0
        while self._queue and len(batch) < BATCH_SIZE:
            if batch and size + self._queue[0].size > MAX_BATCH_BYTES:
                break
            batch.append(self._queue.popleft())
            size += batch[-1].size
        self._queued_bytes -= size
        self._in_flight = len(batch)
        return batch

    def _deliver(self, batch: list[Score]) -> None:
        """Post ``batch`` with retries under one deadline, splitting a request refused as a
        whole until the refused scores stand alone; counts what became of each in ``_tally``."""
        deadline = time.monotonic() + self.policy.deadline
        chunks = [batch]
        attempt = 0  # of events a 207 answer asks to send again
        while chunks:
            events, body = encode_batch(chunks.pop())
            due = replace(self.policy, deadline=deadline - time.monotonic())
            reply = post_with_retries(
                self._http, body, self._headers, policy=due, abort=self._abort, on_retry=self._retry
            )
            again = self._settle(events, reply, chunks)
            if not again:
                continue
            wait = self.policy.backoff(attempt)
            attempt += 1
            late = attempt >= self.policy.max_attempts or time.monotonic() + wait > deadline
            if reply.status == 207 and not late:
                self._retry(reply, wait)
                if not self._abort.wait(wait):
                    chunks.append(again)
                    continue
            lost = len(again) + sum(map(len, chunks))
            self._log.error("gave-up", "Gave up on %d scores: %s", lost, self._why(reply))
            self._tally["failed"] += lost
            break

    def _retry(self, reply: Reply, wait: float) -> None:
        with self._lock:
            self._counts["retries"] += 1
        self._log.warning("retry", "%s; retrying in %.2fs", self._why(reply), wait)

    def _settle(
        self, events: dict[str, Score], reply: Reply, chunks: list[list[Score]]
    ) -> list[Score]:
        """Count what ``reply`` says became of ``events``; returns the scores to send again."""
        scores = list(events.values())
        if reply.status == 207:  # a result per event; an event without one goes again
            return self._settle_events(events, reply)
        if reply.ok:
            self._tally["delivered"] += len(scores)
        elif reply.status in _BATCH_REFUSALS and len(scores) > 1:
            chunks += [scores[len(scores) // 2 :], scores[: len(scores) // 2]]
        elif reply.status in _BATCH_REFUSALS:
            self._refused(scores[0], reply, reply.status, reply.json() or reply.message())
        elif reply.status is None or reply.status in self.policy.statuses:
            return scores
        else:  # refused for good (401, 403, a redirect), or no final answer
            self._log.error(
                f"status-{reply.status}", "%d scores failed: %s", len(scores), self._why(reply)
            )
            self._tally["failed"] += len(scores)
        return []

    def _settle_events(self, events: dict[str, Score], reply: Reply) -> list[Score]:
        answer = reply.json()
        answer = answer if isinstance(answer, dict) else {}
        results: dict[object, dict[str, Any] | None] = {}
        for kind in ("successes", "errors"):
            for item in answer.get(kind) or []:
                if isinstance(item, dict):
                    results[item.get("id")] = item if kind == "errors" else None
        again = []
        for event_id, score in events.items():
            error = results.get(event_id)
            if event_id not in results or (error and error.get("status") in self.policy.statuses):
                again.append(score)
            elif error is None:
                self._tally["delivered"] += 1
            else:
                self._refused(score, reply, error.get("status"), error)
        return again

    def _refused(self, score: Score, reply: Reply, status: object, answer: object) -> None:
        """Count and log a score Langfuse refused, with its message and detail (``error``)."""
        if isinstance(answer, dict):
            parts = (answer.get("message"), answer.get("error") or answer.get("errors"))
            answer = ": ".join(str(part) for part in parts if part) or answer
        score_id, name = score.body["id"], score.body["name"][:100]
        message = reply.clean(f"{status} {answer}")
        self._log.error("refused", "Langfuse refused score %s (%r): %s", score_id, name, message)
        self._tally["refused"] += 1

    def _why(self, reply: Reply) -> str:
        return reply.describe("Langfuse", self._route.setting)


#: Every sender alive, for the one exit hook.
_live: weakref.WeakSet[ScoreSender] = weakref.WeakSet()


def _shutdown_all() -> None:
    """Shut every live sender down within the longest ``exit_timeout``, counted from the start
    of exit (so alongside the span exporter's final flush): all start sending at once."""
    senders = list(_live)
    if not senders:
        return
    bound = max(sender.exit_timeout for sender in senders)
    deadline = (EXIT_BEGAN[0] if EXIT_BEGAN else time.monotonic()) + bound
    for sender in senders:
        sender.close()
    for sender in senders:
        sender.shutdown(max(deadline - time.monotonic(), 0.0))


def _reset_in_child() -> None:
    for sender in list(_live):
        sender._reset()


atexit.register(_shutdown_all)
os.register_at_fork(after_in_child=_reset_in_child)
