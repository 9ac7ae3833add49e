"""Every span attribute, baggage and environment key the package uses, in one place."""

from __future__ import annotations

from typing import Final

# Span attributes Langfuse reads for a trace's session / user, highest priority first.
LANGFUSE_SESSION_ID: Final = "langfuse.session.id"
LANGFUSE_USER_ID: Final = "langfuse.user.id"
SESSION_ID: Final = "session.id"
USER_ID: Final = "user.id"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
#: A span carrying any of these already has a session (an explicit attribute wins).
SESSION_ATTRIBUTE_KEYS: Final = (LANGFUSE_SESSION_ID, SESSION_ID, GEN_AI_CONVERSATION_ID)
USER_ATTRIBUTE_KEYS: Final = (LANGFUSE_USER_ID, USER_ID)
#: A span's own environment, which Langfuse reads after ``langfuse.environment``.
SPAN_ENVIRONMENT_KEYS: Final = ("deployment.environment.name", "deployment.environment")

# Baggage keys of the Langfuse Python SDK (``propagate_attributes(..., as_baggage=True)``).
BAGGAGE_LANGFUSE_SESSION_ID: Final = "langfuse_session_id"
BAGGAGE_LANGFUSE_USER_ID: Final = "langfuse_user_id"
#: Its claim of a trace's root for an upstream service (SDK 4.14+): never stamped, not guarded.
BAGGAGE_LANGFUSE_TRACE_ID: Final = "langfuse_trace_id"
#: Its span processor stamps every entry under this prefix: the trust boundary guards them all.
BAGGAGE_LANGFUSE_PREFIX: Final = "langfuse_"
#: Marks a trace's app root for Langfuse v4 (read as ``true`` or ``"true"``).
LANGFUSE_IS_APP_ROOT: Final = "langfuse.internal.is_app_root"

# Trace attributes Langfuse reads from every span (docs/sessions.md).
LANGFUSE_TRACE_TAGS: Final = "langfuse.trace.tags"
LANGFUSE_TRACE_NAME: Final = "langfuse.trace.name"
LANGFUSE_ENVIRONMENT: Final = "langfuse.environment"
LANGFUSE_RELEASE: Final = "langfuse.release"
LANGFUSE_VERSION: Final = "langfuse.version"
LANGFUSE_TRACE_METADATA_PREFIX: Final = "langfuse.trace.metadata."
#: The SDK's baggage keys for trace attributes, and the span attribute each is stamped as.
BAGGAGE_TRACE_ATTRIBUTES: Final = {
    "langfuse_tags": LANGFUSE_TRACE_TAGS,
    "langfuse_trace_name": LANGFUSE_TRACE_NAME,
    "langfuse_environment": LANGFUSE_ENVIRONMENT,
    "langfuse_release": LANGFUSE_RELEASE,
    "langfuse_version": LANGFUSE_VERSION,
}
BAGGAGE_LANGFUSE_TAGS: Final = "langfuse_tags"
BAGGAGE_METADATA_PREFIX: Final = "langfuse_metadata_"
#: Longest environment name Langfuse accepts (lower-case ``[a-z0-9_-]``, not ``langfuse*``).
MAX_ENVIRONMENT_LENGTH: Final = 40

#: Baggage keys read for the ids, in order; the first present one wins.
DEFAULT_SESSION_BAGGAGE_KEYS: Final = (LANGFUSE_SESSION_ID, SESSION_ID, BAGGAGE_LANGFUSE_SESSION_ID)
DEFAULT_USER_BAGGAGE_KEYS: Final = (LANGFUSE_USER_ID, USER_ID, BAGGAGE_LANGFUSE_USER_ID)
DEFAULT_MAX_ID_LENGTH: Final = 200

# Environment variables (explicit argument > environment variable > default).
ENV_TRUST_REMOTE_BAGGAGE: Final = "LANGFUSE_OTEL_TRUST_REMOTE_BAGGAGE"
ENV_SESSION_BAGGAGE_KEYS: Final = "LANGFUSE_OTEL_SESSION_BAGGAGE_KEYS"
ENV_USER_BAGGAGE_KEYS: Final = "LANGFUSE_OTEL_USER_BAGGAGE_KEYS"
ENV_ALSO_EMIT: Final = "LANGFUSE_OTEL_ALSO_EMIT"
ENV_PROPAGATE_SESSION_TO: Final = "LANGFUSE_OTEL_PROPAGATE_SESSION_TO"
ENV_SESSION_HEADER: Final = "LANGFUSE_OTEL_SESSION_HEADER"
ENV_USER_HEADER: Final = "LANGFUSE_OTEL_USER_HEADER"
#: Collector mode of the exporter: chosen only by these (never by OTEL_EXPORTER_OTLP_*).
ENV_COLLECTOR_ENDPOINT: Final = "LANGFUSE_OTEL_COLLECTOR_ENDPOINT"
ENV_COLLECTOR_HEADERS: Final = "LANGFUSE_OTEL_COLLECTOR_HEADERS"
ENV_COLLECTOR_AUTH: Final = "LANGFUSE_OTEL_COLLECTOR_AUTH"
#: Sampling: the entry point (OTEL_TRACES_SAMPLER=langfuse_session) and its allow list.
SAMPLER_ENTRY_POINT: Final = "langfuse_session"
ENV_SAMPLER_KEEP_SESSIONS: Final = "LANGFUSE_OTEL_SAMPLER_KEEP_SESSIONS"

# Span events a score adds: ours, and the OpenTelemetry GenAI evaluation event.
SCORE_EVENT: Final = "langfuse.score"
GEN_AI_EVALUATION_EVENT: Final = "gen_ai.evaluation.result"
GEN_AI_EVALUATION_NAME: Final = "gen_ai.evaluation.name"
GEN_AI_EVALUATION_SCORE_VALUE: Final = "gen_ai.evaluation.score.value"
GEN_AI_EVALUATION_SCORE_LABEL: Final = "gen_ai.evaluation.score.label"
GEN_AI_EVALUATION_EXPLANATION: Final = "gen_ai.evaluation.explanation"
#: Characters of a string a score event carries at most (a comment may be far longer).
MAX_SCORE_EVENT_TEXT: Final = 4096
