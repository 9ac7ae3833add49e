"""Session and trace scores: validated on the caller's thread, delivered in the background."""

from __future__ import annotations

import functools
import hashlib
import threading
import weakref
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import Sampler

from ..attributes import DEFAULT_MAX_ID_LENGTH
from ..errors import InvalidScoreError
from ..export.config import (
    INGESTION_PATH,
    announce,
    direct_route,
    positive_number,
    resolve_langfuse_config,
)
from ..ids import check_id
from ..sessions.context import current_session_id, current_user_id
from ..sessions.session import ScoreFields, Session, score_with
from ..spans.sampler import SessionSampler
from .events import add_score_events
from .model import build_score
from .sender import DEFAULT_MAX_QUEUE_BYTES, ScoreSender, SenderStats

if TYPE_CHECKING:
    from typing_extensions import Unpack


def _trace_hex(value: int | str, bits: int, name: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**bits:
        return format(value, f"0{bits // 4}x")
    if isinstance(value, str) and value.strip():
        return value
    raise InvalidScoreError(f"{name} must be an OpenTelemetry id in range or a non-empty string")


@functools.lru_cache(maxsize=4096)  # a session is scored again and again; errors are not kept
def _checked_session_id(session_id: str) -> str:
    return check_id(session_id, DEFAULT_MAX_ID_LENGTH)


_SESSION_SAMPLER_TYPES: dict[type, bool] = {}  # isinstance of an ABC is slow when false


def _sampled_out(sampler: SessionSampler, session_id: str) -> bool:
    """Whether ``sampler`` drops the session. Inside its scope a kept span says it is kept,
    and the user is known; if a user rule might keep it and the user is unknown: send."""
    user_id = None
    if current_session_id() == session_id:
        if trace.get_current_span().get_span_context().trace_flags.sampled:
            return False
        user_id = current_user_id()
    return sampler.keeps_session(session_id, user_id) is False


def score_id(session_or_id: Session | str, name: str, key: str) -> str:
    """A stable score id for feedback that may be sent twice (same session, name and key of
    yours -> same id -> the score is updated, not duplicated)."""
    target = Session.get_id(session_or_id)
    return "score_" + hashlib.sha256(f"{target}\x1f{name}\x1f{key}".encode()).hexdigest()[:32]


class ScoreClient:
    """Validates scores and hands them to a background sender for one Langfuse project; keys
    and base URL resolve like the exporter's. Options: docs/scores.md#scoreclient."""

    def __init__(
        self,
        public_key: str | None = None,
        secret_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 60.0,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        sampler: Sampler | None = None,
    ) -> None:
        positive_number(timeout, "timeout")
        positive_number(max_queue_bytes, "max_queue_bytes")
        config = resolve_langfuse_config(public_key, secret_key, base_url)
        route = direct_route(config, INGESTION_PATH, {})
        self._sampler = sampler if isinstance(sampler, SessionSampler) else None
        self._sender = ScoreSender(route, timeout=timeout, max_queue_bytes=max_queue_bytes)
        # Collected or not, a client's thread ends once what it queued is sent.
        weakref.finalize(self, self._sender.close)
        announce("ScoreClient", route, "scores")

    @property
    def stats(self) -> SenderStats:
        """Queued, delivered, failed, dropped and retried counts."""
        return self._sender.stats

    def score_session(self, session_or_id: Session | str, **fields: Unpack[ScoreFields]) -> str:
        """Score a whole session; returns the score id. Raises ``ValueError`` subclasses for
        anything Langfuse would reject, before anything is queued."""
        given = session_or_id if type(session_or_id) is str else Session.get_id(session_or_id)
        session_id = _checked_session_id(given)
        score = build_score({"sessionId": session_id}, **fields)
        sampler: Any = self._sampler or getattr(trace.get_tracer_provider(), "sampler", None)
        kind = type(sampler)  # ours, else the global provider's when it is a SessionSampler
        if kind not in _SESSION_SAMPLER_TYPES:
            _SESSION_SAMPLER_TYPES[kind] = issubclass(kind, SessionSampler)
        if _SESSION_SAMPLER_TYPES[kind] and _sampled_out(sampler, session_id):
            self._sender.count_sampled_out()
        else:
            add_score_events(score)
            self._sender.submit(score)
        return score.body["id"]  # type: ignore[no-any-return]

    def score_trace(
        self,
        trace_id: int | str,
        *,
        observation_id: int | str | None = None,
        **fields: Unpack[ScoreFields],
    ) -> str:
        """Score a trace (or one observation of it); ids as OpenTelemetry ints or hex strings."""
        target = {"traceId": _trace_hex(trace_id, 128, "trace_id")}
        if observation_id is not None:
            target["observationId"] = _trace_hex(observation_id, 64, "observation_id")
        score = build_score(target, **fields)
        add_score_events(score)
        self._sender.submit(score)
        return score.body["id"]  # type: ignore[no-any-return]

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every score queued so far is delivered, refused or given up; ``True``
        only if none submitted since the previous flush was lost (``stats`` says how)."""
        return self._sender.flush(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Deliver what is queued within ``timeout``, then stop."""
        return self._sender.shutdown(timeout)


_default: ScoreClient | None = None
_default_lock = threading.Lock()


def default_score_client() -> ScoreClient:
    """The client the module-level functions use, configured from the environment on first use."""
    global _default  # noqa: PLW0603 - one lazily built client per process
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = ScoreClient()
    return _default


def score_session(session_or_id: Session | str, **fields: Unpack[ScoreFields]) -> str:
    """:meth:`ScoreClient.score_session` on the default client."""
    return default_score_client().score_session(session_or_id, **fields)


def score_trace(
    trace_id: int | str, *, observation_id: int | str | None = None, **fields: Unpack[ScoreFields]
) -> str:
    """:meth:`ScoreClient.score_trace` on the default client."""
    return default_score_client().score_trace(trace_id, observation_id=observation_id, **fields)


score_with(score_session)  # what Session.score calls


def flush_scores(timeout: float | None = None) -> bool:
    """:meth:`ScoreClient.flush` of the default client (``True`` also when it has none)."""
    return True if _default is None else _default.flush(timeout)
