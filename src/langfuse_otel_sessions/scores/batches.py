"""Scores as ingestion batches: the request body, and isolating what Langfuse refuses.

A batch that Langfuse refuses as a whole (400: not the JSON it expects; 413: too large) would
cost every score in it. :func:`deliver_isolating` splits such a batch in halves and posts each
again, down to the single score at fault, so that only that score is refused: one bad score in
a batch of 100 costs about 14 extra requests, and the 99 others are delivered. Per-event
refusals (the 207 answer's ``errors``) are already isolated by Langfuse.

It works with any function that posts one batch (with its own retries) and says what became of
it, so the HTTP transport can change without touching this logic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .model import FrozenScore, new_score_id

#: Bytes each event adds around its score body in the request.
EVENT_OVERHEAD = 128
#: Bytes of one request's body at most (Langfuse takes about 3.5 MB).
MAX_BATCH_BYTES = 3_000_000
#: Statuses that refuse a whole batch for what it contains: split it and send the halves.
BATCH_REFUSALS = frozenset({400, 413})


@dataclass
class Outcome:
    """What became of one posted batch (after retries): counts, the scores Langfuse refused
    with its message and, when it refused a request as a whole, the scores that request held
    (``refused_together``) and its message (``batch_refusal``)."""

    delivered: int = 0
    failed: int = 0
    refused: list[tuple[FrozenScore, str]] = field(default_factory=list)
    refused_together: Sequence[FrozenScore] = ()
    batch_refusal: str = ""


@dataclass
class Tally:
    """Totals over every request made for one batch."""

    delivered: int = 0
    failed: int = 0
    refused: list[tuple[FrozenScore, str]] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.delivered += outcome.delivered
        self.failed += outcome.failed
        self.refused.extend(outcome.refused)


def event_size(score: FrozenScore) -> int:
    """What ``score`` adds to a request body, in bytes."""
    return len(score.encoded) + EVENT_OVERHEAD


def _timestamp(epoch: float) -> bytes:
    moment = datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z").encode()


def encode_batch(scores: Sequence[FrozenScore]) -> tuple[dict[str, FrozenScore], bytes]:
    """The scores by fresh event id (in order), and the ingestion request's JSON body."""
    events = {new_score_id(): score for score in scores}
    body = b",".join(
        b'{"id":"%s","timestamp":"%s","type":"score-create","body":%s}'
        % (event_id.encode(), _timestamp(score.timestamp), score.encoded)
        for event_id, score in events.items()
    )
    return events, b'{"batch":[' + body + b"]}"


def deliver_isolating(
    scores: Sequence[FrozenScore], post: Callable[[Sequence[FrozenScore]], Outcome]
) -> Tally:
    """Post ``scores`` with ``post``; a batch refused as a whole is split until the refused
    scores stand alone. Returns the totals; ``post`` is trusted to not raise."""
    tally = Tally()
    pending: list[Sequence[FrozenScore]] = [scores]
    while pending:
        outcome = post(pending.pop())
        tally.add(outcome)
        together = outcome.refused_together
        if len(together) == 1:
            tally.refused.append((together[0], outcome.batch_refusal))
        elif together:
            middle = len(together) // 2
            pending += [together[middle:], together[:middle]]  # the first half goes first
    return tally
