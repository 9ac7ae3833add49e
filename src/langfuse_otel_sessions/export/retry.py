"""The retry policy of spans and scores, in one place: which answers are retried, how long to
wait (exponential backoff with jitter, or the server's ``Retry-After``), under one deadline.

Spans keep the semantics of OpenTelemetry's OTLP/HTTP exporter (:data:`OTLP_RETRYABLE_STATUSES`
and connection errors, backoff from 1 s with ±20 % jitter, at most 6 attempts, one deadline: the
exporter's timeout); scores also retry 500 (the ingestion route answers it for transient
storage errors). Waits are on an ``Event``, so that shutdown cuts them short."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .http import HttpClient, Reply

#: What OpenTelemetry's OTLP exporter retries (besides connection errors).
OTLP_RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
#: What the score sender retries.
RETRYABLE_STATUSES = OTLP_RETRYABLE_STATUSES | {500}


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

    def retryable(self, reply: Reply) -> bool:
        """A retryable status, or no answer at all (connection error, timeout); not when
        nothing could be sent for a setting to fix."""
        return not reply.unsent and (reply.status is None or reply.status in self.statuses)

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        if retry_after is not None:
            return retry_after
        base = min(self.initial * 2**attempt, self.maximum)
        return float(base * random.uniform(1 - self.jitter, 1 + self.jitter))  # noqa: S311


def otlp_policy(timeout: float) -> RetryPolicy:
    """OpenTelemetry's OTLP/HTTP exporter's policy under one ``timeout`` for the whole export."""
    return RetryPolicy(
        initial=1.0,
        maximum=math.inf,
        deadline=timeout,
        max_attempts=6,
        statuses=OTLP_RETRYABLE_STATUSES,
    )


def post_with_retries(
    client: HttpClient,
    body: bytes,
    headers: dict[str, str],
    *,
    policy: RetryPolicy,
    abort: threading.Event,
    on_retry: Callable[[Reply, float], None] | None = None,
) -> Reply:
    """POST until a success, an answer not worth retrying, ``max_attempts``, the deadline (no
    wait that would end past it is started) or ``abort``; returns the last reply."""
    deadline = time.monotonic() + policy.deadline
    attempt = 0
    while True:
        reply = client.post(body, headers, deadline - time.monotonic())
        if reply.ok or not policy.retryable(reply):
            return reply
        wait = policy.backoff(attempt, reply.retry_after if reply.status is not None else None)
        attempt += 1
        if attempt >= policy.max_attempts or time.monotonic() + wait > deadline:
            return reply
        if on_retry is not None:
            on_retry(reply, wait)
        if abort.wait(wait):
            return reply
