"""Trace attributes beyond the session: tags, metadata, environment, release, version, name.

Carried in baggage under the Langfuse SDK's keys (``langfuse_tags``, ``langfuse_environment``,
``langfuse_metadata_<k>``, ...) and stamped by the processor as the span attributes Langfuse
reads. One rule for both directions: :func:`value_problem` (never raises) decides what is
stamped; :func:`baggage_entries` raises for a bad explicit argument.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

from .attributes import (
    BAGGAGE_LANGFUSE_TAGS,
    BAGGAGE_METADATA_PREFIX,
    BAGGAGE_TRACE_ATTRIBUTES,
    DEFAULT_MAX_ID_LENGTH,
    LANGFUSE_ENVIRONMENT,
    LANGFUSE_TRACE_METADATA_PREFIX,
    MAX_ENVIRONMENT_LENGTH,
)
from .errors import ConfigurationError
from .ids import id_problem

_ENVIRONMENT = re.compile(r"[a-z0-9_-]+")
_METADATA_KEY = re.compile(r"[A-Za-z0-9_.-]+")
#: ``(span attribute, value)`` pairs, ready to stamp.
Stamps = tuple[tuple[str, object], ...]


def value_problem(attribute: str, value: object) -> str | None:
    """Why ``value`` cannot be stamped as ``attribute`` (a string one), or ``None``."""
    problem = id_problem(value, DEFAULT_MAX_ID_LENGTH)
    if problem is not None or attribute != LANGFUSE_ENVIRONMENT:
        return problem
    assert isinstance(value, str)  # noqa: S101 - id_problem proved it
    if len(value) > MAX_ENVIRONMENT_LENGTH or not _ENVIRONMENT.fullmatch(value):
        return f"not lower-case [a-z0-9_-] of at most {MAX_ENVIRONMENT_LENGTH} characters"
    if value.startswith("langfuse"):
        return "starts with 'langfuse' (reserved)"
    return None


def parse_tags(value: object) -> list[str] | None:
    """Tags from a baggage value: a list (in-process, as the Langfuse SDK writes it), a JSON
    or Python list string (what a list becomes over HTTP), or comma-separated. Never raises."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text.replace("'", '"'))
            except ValueError:
                return None
        else:
            value = text.split(",")
    if not isinstance(value, list):
        return None
    return [tag.strip() for tag in value if isinstance(tag, str) and tag.strip()]


def stamps_of(entries: Mapping[str, object], problems: list[str]) -> Stamps:
    """The trace attributes a span gets from baggage ``entries``; invalid values are left out
    and described in ``problems``. Never raises."""
    stamps: list[tuple[str, object]] = []
    for key, value in entries.items():
        if not key.startswith("langfuse_"):
            continue
        if key == BAGGAGE_LANGFUSE_TAGS:
            tags = parse_tags(value)
            good = [t for t in tags or () if value_problem("", t) is None]
            if tags is None or len(good) != len(tags):
                problems.append("tags")
            if good:
                stamps.append((BAGGAGE_TRACE_ATTRIBUTES[key], tuple(dict.fromkeys(good))))
            continue
        attribute = BAGGAGE_TRACE_ATTRIBUTES.get(key)
        if attribute is None and key.startswith(BAGGAGE_METADATA_PREFIX):
            attribute = LANGFUSE_TRACE_METADATA_PREFIX + key[len(BAGGAGE_METADATA_PREFIX) :]
        if attribute is None:
            continue
        problem = value_problem(attribute, value)
        if problem is None:
            stamps.append((attribute, value))
        else:
            problems.append(f"{attribute}: {problem}")
    return tuple(stamps)


def _checked(attribute: str, value: object) -> str:
    problem = value_problem(attribute, value)
    if problem is not None:
        raise ConfigurationError(f"invalid {attribute}: {problem}")
    assert isinstance(value, str)  # noqa: S101 - value_problem proved it
    return value


def baggage_entries(
    *,
    tags: Iterable[str] | None = None,
    metadata: Mapping[str, str] | None = None,
    environment: str | None = None,
    release: str | None = None,
    version: str | None = None,
    trace_name: str | None = None,
) -> dict[str, str]:
    """The baggage entries for explicit trace attributes; raises :class:`ConfigurationError`
    for a bad one (tags: strings without commas; metadata: string keys of ``[A-Za-z0-9_.-]``
    and string values; each string at most 200 characters)."""
    entries: dict[str, str] = {}
    if tags is not None:
        if isinstance(tags, str):
            raise ConfigurationError("tags must be a list of strings, not a string")
        checked = [_checked("tag", tag) for tag in tags]
        if any("," in tag for tag in checked):
            raise ConfigurationError("a tag cannot contain a comma")
        if checked:
            entries[BAGGAGE_LANGFUSE_TAGS] = ",".join(dict.fromkeys(checked))
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise ConfigurationError("metadata must be a mapping of strings to strings")
        for key, value in metadata.items():
            if not isinstance(key, str) or not _METADATA_KEY.fullmatch(key):
                raise ConfigurationError("metadata keys must be strings of [A-Za-z0-9_.-]")
            entries[BAGGAGE_METADATA_PREFIX + key] = _checked(f"metadata {key!r}", value)
    for key, attribute in BAGGAGE_TRACE_ATTRIBUTES.items():
        given = {
            "langfuse_trace_name": trace_name,
            "langfuse_environment": environment,
            "langfuse_release": release,
            "langfuse_version": version,
        }.get(key)
        if given is not None:
            entries[key] = _checked(attribute, given)
    return entries


def merged_tags(parent: object, own: str) -> str:
    """``own`` tags (comma-separated) added to the ``parent`` scope's tags: tags add up."""
    inherited = parse_tags(parent) or []
    return ",".join(dict.fromkeys([*inherited, *own.split(",")]))


#: The keyword arguments :func:`baggage_entries` (and ``session()``) take for trace attributes.
ARGUMENTS = ("tags", "metadata", "environment", "release", "version", "trace_name")


def entries_of(given: object, problems: list[str]) -> dict[str, str]:
    """:func:`baggage_entries` of a mapping of its keyword arguments, never raising: an unknown
    or invalid argument (a bad metadata key: that key alone) is left out and described in
    ``problems``."""
    if not isinstance(given, Mapping):
        problems.append(f"expected a mapping, got {type(given).__name__}")
        return {}
    entries: dict[str, str] = {}
    for name, value in given.items():
        if name not in ARGUMENTS:
            problems.append(f"unknown argument {str(name)[:40]!r}")
            continue
        parts = value.items() if name == "metadata" and isinstance(value, Mapping) else [None]
        for part in parts:
            argument: dict[str, object] = {name: value if part is None else dict([part])}
            try:
                entries.update(baggage_entries(**argument))  # type: ignore[arg-type]
            except Exception as error:  # noqa: BLE001 - reported, never raised
                problems.append(str(error) if isinstance(error, ConfigurationError) else name)
    return entries


def merged_entries(outer: Mapping[str, str], inner: Mapping[str, str]) -> dict[str, str]:
    """``inner`` trace-attribute entries over ``outer`` ones, as nested scopes merge: tags add
    up, metadata keys override one by one, the rest ``inner`` wins."""
    merged = {**outer, **inner}
    if BAGGAGE_LANGFUSE_TAGS in outer and BAGGAGE_LANGFUSE_TAGS in inner:
        merged[BAGGAGE_LANGFUSE_TAGS] = merged_tags(
            outer[BAGGAGE_LANGFUSE_TAGS], inner[BAGGAGE_LANGFUSE_TAGS]
        )
    return merged
