"""`SessionSampler`: keep or drop whole sessions, the same way in every process
(``docs/sampling.md``); only what the trust rule (:mod:`..boundary.trust`) lets count decides."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Collection, Mapping, Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.util.types import Attributes

from .._logging import RateLimitedLog, logger
from ..attributes import (
    ENV_SAMPLER_KEEP_SESSIONS,
    SAMPLER_ENTRY_POINT,
    SESSION_ATTRIBUTE_KEYS,
    USER_ATTRIBUTE_KEYS,
)
from ..baggage_keys import IdKeys, known_keys
from ..boundary.trust import remote_trusted, vouched_entries  # the one trust rule
from ..errors import ConfigurationError
from ..ids import TraceIds
from ..sessions.context import ids_in_force, ids_of  # the one reading of the ids
from .processor import SessionSpanProcessor, keys_option

_HASH_SPACE = 1 << 64
_REMEMBERED = 4096  # sessions a trusted caller kept, for their scores: about 1 MB at worst


def session_hash(session_id: str) -> int:
    """The first 8 bytes (big-endian) of the SHA-256 of the id in UTF-8."""
    digest = hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big")


def ratio_threshold(ratio: float) -> int:
    """Hashes below this are kept at ``ratio``."""
    return round(ratio * _HASH_SPACE)


def _checked_ratio(ratio: object) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
        raise ConfigurationError("ratio must be a number from 0.0 to 1.0")
    return float(ratio)


def _first_string(attributes: Mapping[str, object], keys: tuple[str, ...]) -> str | None:
    return next((v for k in keys if isinstance(v := attributes.get(k), str)), None)


def _following(parent: trace.SpanContext) -> SamplingResult:
    decision = Decision.RECORD_AND_SAMPLE if parent.trace_flags.sampled else Decision.DROP
    return SamplingResult(decision, None, parent.trace_state)


class SessionSampler(Sampler):
    """Samples whole sessions: every trace of a session is kept, or none is."""

    def __init__(
        self,
        ratio: float = 1.0,
        *,
        fallback: Sampler | None = None,
        always_keep_sessions: Collection[str] | None = None,
        always_keep: Callable[[str | None, str | None], bool] | None = None,
        follow_remote_parent: bool = True,
    ) -> None:
        self.ratio = _checked_ratio(ratio)
        if fallback is not None and not isinstance(fallback, Sampler):
            raise ConfigurationError("fallback must be an opentelemetry.sdk Sampler")
        if always_keep is not None and not callable(always_keep):
            raise ConfigurationError("always_keep must be a callable (session_id, user_id)")
        self.fallback: Sampler = fallback or ParentBased(TraceIdRatioBased(self.ratio))
        self.always_keep_sessions = frozenset(
            keys_option("always_keep_sessions", always_keep_sessions, ENV_SAMPLER_KEEP_SESSIONS)
        )
        self.always_keep = always_keep
        self.follow_remote_parent = bool(follow_remote_parent)
        self._threshold = ratio_threshold(self.ratio)
        self._processor: SessionSpanProcessor | None = None
        self._kept_by_caller: set[str] = set()
        self._log = RateLimitedLog()

    def read_like(self, processor: SessionSpanProcessor) -> None:
        """Read sessions as ``processor`` does (:func:`configure` calls this)."""
        self._processor = processor

    def should_sample(  # noqa: PLR0917 - OpenTelemetry's Sampler signature
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if parent.is_valid and not parent.is_remote:
            return _following(parent)
        reader = known_keys().reader if self._processor is None else self._processor.keys
        trusted = remote_trusted(reader)
        if parent.is_valid and not trusted:  # remote: its flag decides only when trusted; nor
            parent_context = trace.set_span_in_context(trace.INVALID_SPAN, parent_context)
            trace_id = secrets.randbits(128)  # does the fallback read the trace id it chose
        try:
            ids = self._ids(attributes, parent_context, reader, trusted)
            keep = None if ids is None else self._decide(*ids)
        except Exception:  # noqa: BLE001 - never raise into the host application
            self._log.exception("should_sample", "SessionSampler could not read the session")
            ids = keep = None
        if parent.is_valid and trusted and self.follow_remote_parent:
            session_id = ids.session_id if keep is False and ids is not None else None
            if parent.trace_flags.sampled and session_id is not None and len(session_id) <= 256:
                # A session a trusted caller kept that this sampler would drop: its scores are
                # sent (the last ``_REMEMBERED`` such sessions of up to 256 characters).
                if len(self._kept_by_caller) >= _REMEMBERED:
                    self._kept_by_caller.clear()
                self._kept_by_caller.add(session_id)
            return _following(parent)
        state = parent.trace_state if parent.is_valid else None
        if keep is None:
            result = self.fallback.should_sample(
                parent_context, trace_id, name, kind, attributes, links
            )
            return SamplingResult(result.decision, result.attributes, result.trace_state or state)
        return SamplingResult(Decision.RECORD_AND_SAMPLE if keep else Decision.DROP, None, state)

    def _decide(self, session_id: str | None, user_id: str | None) -> bool | None:
        """Keep a root span of this session (and user)? ``None``: the fallback decides."""
        if self._allowed(session_id, user_id):
            return True
        return None if session_id is None else self.keeps_hash_of(session_id)

    def keeps_session(self, session_id: str, user_id: str | None = None) -> bool | None:
        """Whether the session's traces are kept (``None``: it depends on the user); a
        session a trusted caller kept counts as kept."""
        if session_id in self._kept_by_caller or self._decide(session_id, user_id):
            return True
        return None if user_id is None and self.always_keep is not None else False

    def keeps_hash_of(self, session_id: str) -> bool:
        """The ratio's decision for ``session_id``, allow rules aside."""
        return session_hash(session_id) < self._threshold

    def _allowed(self, session_id: str | None, user_id: str | None) -> bool:
        if session_id is not None and session_id in self.always_keep_sessions:
            return True
        if self.always_keep is None:
            return False
        try:
            return bool(self.always_keep(session_id, user_id))
        except Exception:  # noqa: BLE001 - a user's rule must not break span creation
            self._log.exception("always_keep", "SessionSampler's always_keep rule raised")
            return False

    def _ids(
        self, attributes: Attributes, context: Context | None, reader: IdKeys, trusted: bool
    ) -> TraceIds | None:
        """The ids the processor will stamp (start attributes win over baggage)."""
        if trusted:
            session_id, user_id = ids_in_force(context, reader)
        else:
            session_id, user_id = ids_of(vouched_entries(context), reader)
        if attributes:
            session_id = _first_string(attributes, SESSION_ATTRIBUTE_KEYS) or session_id
            user_id = _first_string(attributes, USER_ATTRIBUTE_KEYS) or user_id
        return None if session_id is None and user_id is None else TraceIds(session_id, user_id)

    def get_description(self) -> str:
        return f"SessionSampler{{{self.ratio}}}"


def session_sampler_from_env(arg: str | float | None) -> SessionSampler:
    """The ``langfuse_session`` entry point of ``opentelemetry_traces_sampler``."""
    try:
        ratio = _checked_ratio(float(arg))  # type: ignore[arg-type]  # None: the warning below
    except (ValueError, TypeError):
        logger.warning(
            "OTEL_TRACES_SAMPLER=%s: OTEL_TRACES_SAMPLER_ARG=%r is not a ratio from 0.0 to 1.0; "
            "keeping every session",
            SAMPLER_ENTRY_POINT,
            arg,
        )
        ratio = 1.0
    return SessionSampler(ratio)
