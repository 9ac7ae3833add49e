"""How the Langfuse server reads a span's trace attributes: environment, tags, metadata,
release and version (``docs/testing.md`` shows what the receiver makes of them).

Pure functions over plain attribute mappings, read from Langfuse's OTel ingestion:

* :func:`normalize_environment`: lower-cased, leading ``langfuse`` prefixes removed, cut to
  40 characters, then ``[a-z0-9_-]+`` or else ``default`` (non-strings too);
* :func:`environment_of`: ``langfuse.environment``, ``deployment.environment.name``,
  ``deployment.environment``, each on the span then on the resource;
* :func:`tags_of`: the first present tags key, a list, a JSON array or comma-separated text;
* :func:`trace_metadata_of`: a JSON object under ``langfuse.trace.metadata`` and flat keys
  ``langfuse.trace.metadata.<k>`` (the flat keys win);
* :func:`release_of` / :func:`version_of`: on the span, else on the resource
  (``service.version`` for the version);
* :func:`has_trace_updates`: whether a non-root span writes trace fields on the legacy path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from ..attributes import (
    LANGFUSE_ENVIRONMENT,
    LANGFUSE_RELEASE,
    LANGFUSE_TRACE_METADATA_PREFIX,
    LANGFUSE_TRACE_NAME,
    LANGFUSE_TRACE_TAGS,
    LANGFUSE_VERSION,
)
from ..ids import environment_name
from .langfuse_rules import _js_concat, _truthy, langfuse_text

Attributes = Mapping[str, object]

#: What Langfuse shows for a trace or observation without a (valid) environment.
DEFAULT_ENVIRONMENT = "default"
ENVIRONMENT_KEYS = (LANGFUSE_ENVIRONMENT, "deployment.environment.name", "deployment.environment")
TRACE_METADATA = LANGFUSE_TRACE_METADATA_PREFIX.rstrip(".")
_METADATA_PREFIXES = (TRACE_METADATA, "langfuse.metadata", "ai.telemetry.metadata")
_METADATA_EXCLUDED = frozenset(
    {
        "ai.telemetry.metadata.userId",
        "ai.telemetry.metadata.sessionId",
        "ai.telemetry.metadata.tags",
        "ai.telemetry.metadata.langfusePrompt",
    }
)
#: Keys read for tags, in Langfuse's priority order (the first truthy one).
TAG_KEYS = (
    LANGFUSE_TRACE_TAGS,
    "langfuse.tags",
    "langfuse.observation.metadata.langfuse_tags",
    "langfuse.trace.metadata.langfuse_tags",
    "ai.telemetry.metadata.tags",
    "tag.tags",
)
#: Keys whose truthy value makes a non-root span write the trace on the legacy (v3) path.
TRACE_UPDATE_KEYS = (
    LANGFUSE_TRACE_NAME,
    "langfuse.trace.input",
    "langfuse.trace.output",
    TRACE_METADATA,
    "langfuse.user.id",
    "langfuse.session.id",
    "langfuse.trace.public",
    LANGFUSE_TRACE_TAGS,
    "user.id",
    "session.id",
    "langfuse.observation.metadata.langfuse_user_id",
    "langfuse.observation.metadata.langfuse_session_id",
    "langfuse.observation.metadata.langfuse_tags",
    "langfuse.trace.metadata.langfuse_session_id",
    "langfuse.trace.metadata.langfuse_user_id",
    "langfuse.trace.metadata.langfuse_tags",
    "ai.telemetry.metadata.sessionId",
    "ai.telemetry.metadata.userId",
    "ai.telemetry.metadata.tags",
    "tag.tags",
)


def normalize_environment(value: object) -> str:
    """The environment Langfuse stores for ``value``."""
    return environment_name(value) or DEFAULT_ENVIRONMENT


def environment_of(attributes: Attributes, resource: Attributes) -> str | None:
    """The environment a span writes, or ``None`` when it carries none (Langfuse then shows
    ``default`` for that observation)."""
    for key in ENVIRONMENT_KEYS:
        for source in (attributes, resource):
            value = source.get(key)
            if _truthy(value):
                return normalize_environment(value)
    return None


def _js_string(value: object) -> str:
    """JavaScript's ``String(value)`` for an attribute or JSON value."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "[object Object]"
    return _js_concat(value)


def tags_of(attributes: Attributes) -> list[str]:
    """The tags Langfuse reads from a span (empty when none)."""
    value = next((attributes[k] for k in TAG_KEYS if _truthy(attributes.get(k))), None)
    if isinstance(value, (list, tuple)):
        return [_js_string(tag) for tag in value]
    if not isinstance(value, str):
        return []
    if value.strip().startswith("["):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            return [_js_string(tag) for tag in parsed]
    if "," in value:
        return [tag.strip() for tag in value.split(",")]
    return [value]


def _metadata_object(value: object) -> dict[str, object]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


def trace_metadata_of(attributes: Attributes) -> dict[str, object]:
    """The trace metadata Langfuse reads from a span's own keys (it adds resource and scope
    details of its own, left out here)."""
    primary = attributes.get(TRACE_METADATA)
    if not _truthy(primary):
        primary = attributes.get("langfuse.metadata")
    metadata = _metadata_object(primary)
    for key, value in attributes.items():
        for prefix in _METADATA_PREFIXES:
            if key.startswith(prefix + ".") and key not in _METADATA_EXCLUDED:
                name = key[len(prefix) + 1 :]
                if name:
                    metadata[name] = value
    return metadata


def _span_then_resource(
    attributes: Attributes, resource: Attributes, key: str, fallback: str
) -> str | None:
    value = attributes.get(key)
    if value is None:
        value = resource.get(fallback)
    return langfuse_text(value)


def release_of(attributes: Attributes, resource: Attributes) -> str | None:
    """``langfuse.release`` on the span, else on the resource."""
    return _span_then_resource(attributes, resource, LANGFUSE_RELEASE, LANGFUSE_RELEASE)


def version_of(attributes: Attributes, resource: Attributes) -> str | None:
    """``langfuse.version`` on the span, else the resource's ``service.version``."""
    return _span_then_resource(attributes, resource, LANGFUSE_VERSION, "service.version")


def given_trace_fields(attributes: Attributes, wanted: Mapping[str, object]) -> set[str]:
    """Which of the ``wanted`` attributes (the keys this package stamps: ``langfuse.environment``,
    ``langfuse.trace.tags``, ``langfuse.trace.metadata.<k>``, ``langfuse.release``,
    ``langfuse.version``, ``langfuse.trace.name``) the span already gives Langfuse a value for,
    under any key Langfuse reads for that field: ``deployment.environment.name`` for the
    environment, ``langfuse.tags`` for the tags, key ``k`` of a JSON ``langfuse.trace.metadata``
    object for ``langfuse.trace.metadata.k``, ... (the span's own keys; not the resource).

    Tags that are only some of the ``wanted`` tags do not count: v4 shows the last tag list
    written, so every span that carries tags must carry them all."""
    given: set[str] = set()
    metadata: dict[str, object] | None = None
    for key, value in wanted.items():
        if key == LANGFUSE_TRACE_TAGS:
            own = set(tags_of(attributes))
            if own and not (isinstance(value, tuple) and own < set(value)):
                given.add(key)
        elif key in attributes and attributes[key] != "":
            given.add(key)  # an empty string (a forged value blanked) is no value
        elif key.startswith(LANGFUSE_TRACE_METADATA_PREFIX):
            if metadata is None:
                metadata = trace_metadata_of(attributes)
            if metadata.get(key[len(LANGFUSE_TRACE_METADATA_PREFIX) :], "") != "":
                given.add(key)
        elif key == LANGFUSE_ENVIRONMENT and any(
            _truthy(attributes.get(other)) for other in ENVIRONMENT_KEYS
        ):
            given.add(key)
    return given


def has_trace_updates(attributes: Attributes) -> bool:
    """A non-root span writes trace fields on the legacy path: one of
    :data:`TRACE_UPDATE_KEYS` is truthy, or a ``langfuse.trace.metadata*`` key is present."""
    return any(_truthy(attributes.get(key)) for key in TRACE_UPDATE_KEYS) or any(
        key.startswith(TRACE_METADATA) for key in attributes
    )
