"""`SessionSampler`: keep or drop whole sessions, the same way in every process.

A trace-id ratio sampler decides per trace, so a sampled conversation reaches Langfuse with turns
missing. This sampler decides a local root span by its *session*: the SHA-256 of the session id
(UTF-8), read as a big-endian integer from its first 8 bytes, is kept when it is below
``ratio * 2**64``. Every trace of a session gets the same decision, in any process or service
with the same ratio, and a session kept at one ratio is kept at every higher ratio.

Decision order for a span:

1. a valid local parent — or a remote one whose caller is trusted (:mod:`..boundary.trust`),
   with ``follow_remote_parent`` — : follow its flag;
2. a session id (or a user id) where the span starts — read as :class:`SessionSpanProcessor`
   reads it, from what the trust rule lets count — and an allow rule matches: keep;
3. a session id: keep or drop by its hash;
4. anything else: the ``fallback`` sampler (default ``ParentBased(TraceIdRatioBased(ratio))``),
   which never sees an untrusted remote parent, nor the trace id such a caller chose (it gets a
   random one instead).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Collection, Mapping, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    SpanContext,
    SpanKind,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.trace.span import TraceState
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
from ..environment import env_keys
from ..errors import ConfigurationError
from ..ids import TraceIds
from ..sessions.context import ids_in_force, ids_of  # the one reading of the ids
from .processor import SessionSpanProcessor

_HASH_SPACE = 1 << 64
# Decisions of recent sessions, so a busy session is hashed once (SHA-256 costs about 1-2 us):
# at most this many entries of ids up to this length, about 1.5 MB at worst.
_DECISION_CACHE_SIZE = 4096
_CACHED_ID_LENGTH = 256

#: ``always_keep(session_id, user_id)``: ``True`` keeps the span whatever the ratio.
KeepRule = Callable[[str | None, str | None], bool]


def session_hash(session_id: str) -> int:
    """The stable 64-bit hash a session is sampled by: the first 8 bytes (big-endian) of the
    SHA-256 of the id in UTF-8. Documented so that other languages can decide alike."""
    digest = hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big")


def ratio_threshold(ratio: float) -> int:
    """Hashes below this are kept at ``ratio``."""
    return round(ratio * _HASH_SPACE)


def _checked_ratio(ratio: object) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
        raise ConfigurationError("ratio must be a number from 0.0 to 1.0")
    return float(ratio)


def _keys(name: str, value: Collection[str] | None, env: str) -> frozenset[str]:
    if value is None:
        return frozenset(env_keys(env, ()))
    if isinstance(value, str) or not all(isinstance(item, str) and item for item in value):
        raise ConfigurationError(f"{name} must be a collection of non-empty strings")
    return frozenset(value)


def _first_string(attributes: Mapping[str, object], keys: tuple[str, ...]) -> str | None:
    return next((v for k in keys if isinstance(v := attributes.get(k), str)), None)


def _following(parent: SpanContext) -> SamplingResult:
    decision = Decision.RECORD_AND_SAMPLE if parent.trace_flags.sampled else Decision.DROP
    return SamplingResult(decision, None, parent.trace_state)


def _explicit_ids(attributes: Attributes) -> TraceIds | None:
    """Ids given as attributes when the span starts: they win over baggage, as in the processor."""
    if not attributes:
        return None
    session_id = _first_string(attributes, SESSION_ATTRIBUTE_KEYS)
    user_id = _first_string(attributes, USER_ATTRIBUTE_KEYS)
    if session_id is None and user_id is None:
        return None
    return TraceIds(session_id, user_id)


class SessionSampler(Sampler):
    """Samples whole sessions: every trace of a session is kept, or none is.

    * ``ratio``: the fraction of sessions kept, 0.0 to 1.0;
    * ``fallback``: decides spans with no session
      (default ``ParentBased(TraceIdRatioBased(ratio))``);
    * ``always_keep_sessions``: session ids always kept, e.g. internal testers
      (``LANGFUSE_OTEL_SAMPLER_KEEP_SESSIONS``, comma-separated);
    * ``always_keep``: a predicate ``(session_id, user_id) -> bool``; ``True`` keeps the span
      (e.g. ``lambda session_id, user_id: user_id in testers``);
    * ``follow_remote_parent``: a span whose parent came from a trusted caller follows that
      parent's flag (default ``True``, as ``ParentBased`` does); ``False`` decides it by session.
      An untrusted caller's flag never decides.

    The session is read with the keys and trust setting of the processor :func:`configure`
    adds, else as :func:`current_session_id` reads it.
    """

    def __init__(
        self,
        ratio: float = 1.0,
        *,
        fallback: Sampler | None = None,
        always_keep_sessions: Collection[str] | None = None,
        always_keep: KeepRule | None = None,
        follow_remote_parent: bool = True,
    ) -> None:
        self.ratio = _checked_ratio(ratio)
        if fallback is not None and not isinstance(fallback, Sampler):
            raise ConfigurationError("fallback must be an opentelemetry.sdk Sampler")
        if always_keep is not None and not callable(always_keep):
            raise ConfigurationError("always_keep must be a callable (session_id, user_id)")
        self.fallback: Sampler = fallback or ParentBased(TraceIdRatioBased(self.ratio))
        self.always_keep_sessions = _keys(
            "always_keep_sessions", always_keep_sessions, ENV_SAMPLER_KEEP_SESSIONS
        )
        self.always_keep = always_keep
        self.follow_remote_parent = bool(follow_remote_parent)
        self._threshold = ratio_threshold(self.ratio)
        self._processor: SessionSpanProcessor | None = None
        self._decisions: dict[str, bool] = {}
        self._kept_by_caller: set[str] = set()
        self._log = RateLimitedLog()

    def read_like(self, processor: SessionSpanProcessor) -> None:
        """Read sessions as ``processor`` does (:func:`configure` calls this with the processor
        it adds)."""
        self._processor = processor

    def should_sample(  # noqa: PLR0917 - OpenTelemetry's Sampler signature
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = get_current_span(parent_context).get_span_context()
        if parent.is_valid and not parent.is_remote:
            return _following(parent)
        reader = self._reader()
        trusted = remote_trusted(reader)
        if parent.is_valid:  # remote: its flag decides only when trusted
            if trusted and self.follow_remote_parent:
                if parent.trace_flags.sampled:
                    self._caller_kept(attributes, parent_context, reader)
                return _following(parent)
            if not trusted:  # nor does the fallback follow it, or read the trace id it chose
                parent_context = set_span_in_context(INVALID_SPAN, parent_context)
                trace_id = secrets.randbits(128)
        try:
            ids = self._ids(attributes, parent_context, reader, trusted)
            keep = None if ids is None else self.decide(ids.session_id, ids.user_id)
        except Exception:  # noqa: BLE001 - never raise into the host application
            self._log.exception("should_sample", "SessionSampler could not read the session")
            keep = None
        state = parent.trace_state if parent.is_valid else None
        if keep is None:
            result = self.fallback.should_sample(
                parent_context, trace_id, name, kind, attributes, links
            )
            return SamplingResult(result.decision, result.attributes, result.trace_state or state)
        return SamplingResult(Decision.RECORD_AND_SAMPLE if keep else Decision.DROP, None, state)

    def decide(self, session_id: str | None, user_id: str | None = None) -> bool | None:
        """Whether a root span of this session (and user) is kept; ``None`` when there is no
        session and no allow rule keeps the user (the fallback decides then)."""
        if self._allowed(session_id, user_id):
            return True
        if session_id is None:
            return None
        return self.keeps_hash_of(session_id)

    def keeps_session(self, session_id: str, user_id: str | None = None) -> bool | None:
        """Whether the session's traces are kept (by a rule, its hash or a trusted caller);
        ``None`` when that depends on a user rule and ``user_id`` is unknown. Scores ask this
        before they are sent."""
        if session_id in self._kept_by_caller or self.decide(session_id, user_id):
            return True
        if user_id is None and self.always_keep is not None:
            return None
        return False

    def keeps_hash_of(self, session_id: str) -> bool:
        """The ratio's decision for ``session_id``, allow rules aside."""
        keep = self._decisions.get(session_id)
        if keep is None:
            keep = session_hash(session_id) < self._threshold
            if len(session_id) <= _CACHED_ID_LENGTH:
                if len(self._decisions) >= _DECISION_CACHE_SIZE:
                    self._decisions.clear()
                self._decisions[session_id] = keep
        return keep

    def _caller_kept(self, attributes: Attributes, context: Context | None, reader: IdKeys) -> None:
        """Remember a session a trusted caller kept that this sampler would drop: its scores
        are sent (bounded as the decisions are)."""
        try:
            ids = self._ids(attributes, context, reader, trusted=True)
        except Exception:  # noqa: BLE001 - never raise into the host application
            self._log.exception("should_sample", "SessionSampler could not read the session")
            return
        if ids is None or ids.session_id is None or len(ids.session_id) > _CACHED_ID_LENGTH:
            return
        if not self.decide(*ids):
            if len(self._kept_by_caller) >= _DECISION_CACHE_SIZE:
                self._kept_by_caller.clear()
            self._kept_by_caller.add(ids.session_id)

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

    def _reader(self) -> IdKeys:
        return known_keys().reader if self._processor is None else self._processor.keys

    def _ids(
        self, attributes: Attributes, context: Context | None, reader: IdKeys, trusted: bool
    ) -> TraceIds | None:
        """The ids the processor will stamp, from what the trust rule lets count (see
        :mod:`..boundary.trust`): attributes given at start win over baggage."""
        if trusted:
            session_id, user_id = ids_in_force(context, reader)
        else:
            session_id, user_id = ids_of(vouched_entries(context), reader)
        explicit = _explicit_ids(attributes)
        if explicit is not None:
            session_id = explicit.session_id or session_id
            user_id = explicit.user_id or user_id
        return None if session_id is None and user_id is None else TraceIds(session_id, user_id)

    def get_description(self) -> str:
        return f"SessionSampler{{{self.ratio}}}"

    def __repr__(self) -> str:
        return f"SessionSampler(ratio={self.ratio})"


def session_sampler_from_env(arg: str | float | None) -> SessionSampler:
    """The ``langfuse_session`` entry point of ``opentelemetry_traces_sampler``: the ratio comes
    from ``OTEL_TRACES_SAMPLER_ARG`` (a bad or missing value warns and keeps everything, as
    OpenTelemetry's ratio samplers do)."""
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
