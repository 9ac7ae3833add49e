"""The retry policy of the score sender, in one place: which answers are retried, how long to
wait (exponential backoff with jitter, or the server's ``Retry-After``), under one deadline."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


def retry_after_seconds(header: str | None) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), or ``None``."""
    if header is None:
        return None
    header = header.strip()
    try:
        seconds = float(header)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(header).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(seconds, 0.0) if math.isfinite(seconds) else None


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff ``initial * 2**attempt`` (capped at ``maximum``), ±``jitter``, within ``deadline``
    seconds of the first attempt; at most ``max_attempts`` attempts."""

    initial: float = 0.5
    maximum: float = 10.0
    jitter: float = 0.2
    deadline: float = 60.0
    max_attempts: int = 8

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        if retry_after is not None:
            return retry_after
        base = min(self.initial * 2**attempt, self.maximum)
        return float(base * random.uniform(1 - self.jitter, 1 + self.jitter))  # noqa: S311
