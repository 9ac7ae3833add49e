"""Every span attribute, baggage and environment key the package uses, in one place.

Attribute keys follow what the Langfuse server reads (``docs/exporter.md``):
``langfuse.session.id`` is the first key it looks at for a trace's session.
"""

from __future__ import annotations

from typing import Final

# Span attributes Langfuse reads for a trace's session / user, highest priority first.
LANGFUSE_SESSION_ID: Final = "langfuse.session.id"
LANGFUSE_USER_ID: Final = "langfuse.user.id"
SESSION_ID: Final = "session.id"
USER_ID: Final = "user.id"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"

#: A span carrying any of these already has a session: an explicit attribute wins over baggage.
SESSION_ATTRIBUTE_KEYS: Final = (LANGFUSE_SESSION_ID, SESSION_ID, GEN_AI_CONVERSATION_ID)
#: A span's own environment, which Langfuse reads after ``langfuse.environment``.
SPAN_ENVIRONMENT_KEYS: Final = ("deployment.environment.name", "deployment.environment")
#: A span carrying any of these already has a user.
USER_ATTRIBUTE_KEYS: Final = (LANGFUSE_USER_ID, USER_ID)

# Baggage keys. ``langfuse_session_id`` / ``langfuse_user_id`` are what the Langfuse Python SDK
# (``propagate_attributes(..., as_baggage=True)``) writes and reads, so `session()` writes them.
BAGGAGE_LANGFUSE_SESSION_ID: Final = "langfuse_session_id"
BAGGAGE_LANGFUSE_USER_ID: Final = "langfuse_user_id"

#: Written by the Langfuse Python SDK (4.14+) to claim a trace's root for an upstream service:
#: a span under a remote parent whose baggage holds its own trace id here is no app root.
BAGGAGE_LANGFUSE_TRACE_ID: Final = "langfuse_trace_id"
#: The Langfuse SDK's span processor stamps EVERY baggage entry whose key starts with this
#: (``langfuse_<x>`` becomes ``langfuse.trace.metadata.<x>`` unless it names a known field),
#: except :data:`BAGGAGE_LANGFUSE_TRACE_ID`: the trust boundary guards them all.
BAGGAGE_LANGFUSE_PREFIX: Final = "langfuse_"
#: Marks a trace's app root for Langfuse v4 (read as ``true`` or ``"true"``).
LANGFUSE_IS_APP_ROOT: Final = "langfuse.internal.is_app_root"

# Trace attributes Langfuse reads from every span (docs/sessions.md).
LANGFUSE_TRACE_TAGS: Final = "langfuse.trace.tags"
LANGFUSE_TRACE_NAME: Final = "langfuse.trace.name"
LANGFUSE_ENVIRONMENT: Final = "langfuse.environment"
LANGFUSE_RELEASE: Final = "langfuse.release"
LANGFUSE_VERSION: Final = "langfuse.version"
#: Prefix of one flat metadata attribute: ``langfuse.trace.metadata.<key>``.
LANGFUSE_TRACE_METADATA_PREFIX: Final = "langfuse.trace.metadata."
#: The Langfuse SDK's baggage keys (``propagate_attributes(..., as_baggage=True)``) for the
#: trace attributes, and the span attribute each one is stamped as.
BAGGAGE_TRACE_ATTRIBUTES: Final = {
    "langfuse_tags": LANGFUSE_TRACE_TAGS,
    "langfuse_trace_name": LANGFUSE_TRACE_NAME,
    "langfuse_environment": LANGFUSE_ENVIRONMENT,
    "langfuse_release": LANGFUSE_RELEASE,
    "langfuse_version": LANGFUSE_VERSION,
}
BAGGAGE_LANGFUSE_TAGS: Final = "langfuse_tags"
#: Prefix of the SDK's metadata baggage keys: ``langfuse_metadata_<key>``.
BAGGAGE_METADATA_PREFIX: Final = "langfuse_metadata_"
#: Longest environment name Langfuse accepts (lower-case ``[a-z0-9_-]``, not ``langfuse*``).
MAX_ENVIRONMENT_LENGTH: Final = 40

#: Baggage keys read for the session id, in order; the first present one wins.
DEFAULT_SESSION_BAGGAGE_KEYS: Final = (LANGFUSE_SESSION_ID, SESSION_ID, BAGGAGE_LANGFUSE_SESSION_ID)
#: Baggage keys read for the user id, in order; the first present one wins.
DEFAULT_USER_BAGGAGE_KEYS: Final = (LANGFUSE_USER_ID, USER_ID, BAGGAGE_LANGFUSE_USER_ID)

# Environment variables (explicit argument > environment variable > default).
ENV_TRUST_REMOTE_BAGGAGE: Final = "LANGFUSE_OTEL_TRUST_REMOTE_BAGGAGE"
ENV_SESSION_BAGGAGE_KEYS: Final = "LANGFUSE_OTEL_SESSION_BAGGAGE_KEYS"
ENV_USER_BAGGAGE_KEYS: Final = "LANGFUSE_OTEL_USER_BAGGAGE_KEYS"
#: Other conventions' names to stamp the ids on as well (``otel``, ``openinference``, ``gen_ai``).
ENV_ALSO_EMIT: Final = "LANGFUSE_OTEL_ALSO_EMIT"
#: Where the session/user ids this package writes may be sent (comma-separated hosts, or ``*``).
ENV_PROPAGATE_SESSION_TO: Final = "LANGFUSE_OTEL_PROPAGATE_SESSION_TO"
#: Request (or message) headers the propagator reads the session / user id from (zero code).
ENV_SESSION_HEADER: Final = "LANGFUSE_OTEL_SESSION_HEADER"
ENV_USER_HEADER: Final = "LANGFUSE_OTEL_USER_HEADER"

DEFAULT_MAX_ID_LENGTH: Final = 200

# Collector mode of the exporter: chosen only by these (never by OTEL_EXPORTER_OTLP_*).
ENV_COLLECTOR_ENDPOINT: Final = "LANGFUSE_OTEL_COLLECTOR_ENDPOINT"
ENV_COLLECTOR_HEADERS: Final = "LANGFUSE_OTEL_COLLECTOR_HEADERS"
ENV_COLLECTOR_AUTH: Final = "LANGFUSE_OTEL_COLLECTOR_AUTH"

# Sampling: the entry point name (OTEL_TRACES_SAMPLER=langfuse_session) and the allow lists.
SAMPLER_ENTRY_POINT: Final = "langfuse_session"
ENV_SAMPLER_KEEP_SESSIONS: Final = "LANGFUSE_OTEL_SAMPLER_KEEP_SESSIONS"
#: ``false`` sends session scores for sessions the sampler dropped too.

# Span events a score adds to the current span: ours, and the OpenTelemetry GenAI evaluation
# event (semantic-conventions-genai, development status) that other backends recognise.
SCORE_EVENT: Final = "langfuse.score"
GEN_AI_EVALUATION_EVENT: Final = "gen_ai.evaluation.result"
GEN_AI_EVALUATION_NAME: Final = "gen_ai.evaluation.name"
GEN_AI_EVALUATION_SCORE_VALUE: Final = "gen_ai.evaluation.score.value"
GEN_AI_EVALUATION_SCORE_LABEL: Final = "gen_ai.evaluation.score.label"
GEN_AI_EVALUATION_EXPLANATION: Final = "gen_ai.evaluation.explanation"
#: Characters of a string a score event carries at most (a comment may be far longer).
MAX_SCORE_EVENT_TEXT: Final = 4096
