"""Trace attributes (tags, metadata, environment, release, version, name) in baggage under the
Langfuse SDK's keys; explicit ones that break the rules raise, baggage ones are left out."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .._logging import RateLimitedLog
from ..attributes import (
    BAGGAGE_LANGFUSE_TAGS,
    BAGGAGE_METADATA_PREFIX,
    BAGGAGE_TRACE_ATTRIBUTES,
    DEFAULT_MAX_ID_LENGTH,
    LANGFUSE_ENVIRONMENT,
    LANGFUSE_TRACE_METADATA_PREFIX,
    LANGFUSE_TRACE_TAGS,
)
from ..errors import ConfigurationError
from ..ids import environment_name, text_problem

#: Longer tag text is not read (the W3C limit of a whole ``baggage`` header).
MAX_LIST_TEXT = 8192
#: ``(span attribute, value)`` pairs, ready to stamp.
Stamps = tuple[tuple[str, object], ...]

_METADATA_KEY = re.compile(r"[A-Za-z0-9_.-]+")
# One string literal at a time, never backtracking across items: nesting is not a list.
_STRING = r"""'[^'\\]*(?:\\.[^'\\]*)*'|"[^"\\]*(?:\\.[^"\\]*)*\""""
_ITEM = re.compile(rf"\s*({_STRING})\s*([,\]])", re.DOTALL)
_END = re.compile(r"\s*\]")
_ESCAPE = re.compile(r"\\([0-7]{1,3}|.)", re.DOTALL)  # what follows each backslash
_ESCAPES = "\n\\'\"abfnrtvxNuU"  # and octal up to 377: those Python reads without a warning
_log = RateLimitedLog()


def stamp_value(attribute: str, value: object, problems: list[str]) -> str | None:
    """``value`` as stamped (the text rule; environments as stored), else ``None`` (why: in
    ``problems``)."""
    problem = text_problem(value, DEFAULT_MAX_ID_LENGTH)
    if problem is None and attribute == LANGFUSE_ENVIRONMENT:
        value = environment_name(value)
        if value is None:
            problem = "Langfuse would store 'default': not [a-z0-9_-] once lower-cased"
    if problem is None:
        return value  # type: ignore[return-value]  # text_problem proved it a str
    problems.append(f"{attribute[:80]}: {problem}")
    return None


def tag_problem(tag: object) -> str | None:
    """Why ``tag`` cannot be a tag (the text rule, and no comma), or ``None``."""
    problem = text_problem(tag, DEFAULT_MAX_ID_LENGTH)
    return "contains a comma" if problem is None and "," in tag else problem  # type: ignore[operator]


def string_list(text: str) -> list[str] | None:
    """The strings of a flat list of string literals (``str(list)``, JSON), else ``None``."""
    text = text.strip()
    if len(text) > MAX_LIST_TEXT or not text.startswith("["):
        return None
    escapes = _ESCAPE.findall(text)  # one Python warns about is unread, whatever the filters
    if any(e not in _ESCAPES and not ("0" <= e[0] <= "7" and int(e, 8) < 256) for e in escapes):
        return None
    strings: list[str] = []
    position = 1
    while (end := _END.match(text, position)) is None:
        if (item := _ITEM.match(text, position)) is None:
            return None
        try:
            strings.append(ast.literal_eval(item.group(1)))
        except (ValueError, SyntaxError):  # a NUL, a raw newline, a bad \x or \N
            return None
        position = item.end()
        if item.group(2) == "]":
            return strings if position == len(text) else None
    return strings if end.end() == len(text) else None  # ``[]`` or a trailing comma


def parse_tags(value: object, problems: list[str] | None = None) -> list[str] | None:
    """The valid tags of a baggage value, or ``None``; what is left out goes in ``problems``."""
    problems = [] if problems is None else problems
    try:
        raw: Sequence[object] | None = None
        if isinstance(value, (list, tuple)):
            raw = value
        elif isinstance(value, str) and value.strip().startswith("["):
            raw = string_list(value)
        elif isinstance(value, str) and len(value) <= MAX_LIST_TEXT:
            raw = [tag.strip() for tag in value.split(",")]
        if raw is None:
            problems.append("tags: not a list of strings nor comma-separated text")
            return None
        # each tag checked once; blanks ("a,,b") left out
        found = [(tag, tag_problem(tag)) for tag in raw if not isinstance(tag, str) or tag.strip()]
        if skipped := [problem for _, problem in found if problem is not None]:
            problems.append(f"{len(skipped)} tag(s) skipped (first: {skipped[0]})")
        return [tag for tag, problem in found if problem is None]  # type: ignore[misc]
    except Exception:  # noqa: BLE001 - bad input is reported, never raised
        problems.append("tags: unreadable")
        return None


def stamps_of(
    entries: Mapping[str, object], problems: list[str], max_metadata: int | None = None
) -> Stamps:
    """The trace attributes a span gets from baggage ``entries``, metadata last."""
    stamps: list[tuple[str, object]] = []
    metadata: list[tuple[str, object]] = []
    try:
        for key, value in entries.items():
            if key == BAGGAGE_LANGFUSE_TAGS:
                if tags := parse_tags(value, problems):
                    stamps.append((LANGFUSE_TRACE_TAGS, tuple(dict.fromkeys(tags))))
            elif (attribute := BAGGAGE_TRACE_ATTRIBUTES.get(key)) is not None:
                if (stamped := stamp_value(attribute, value, problems)) is not None:
                    stamps.append((attribute, stamped))
            elif isinstance(key, str) and key.startswith(BAGGAGE_METADATA_PREFIX):
                name = key[len(BAGGAGE_METADATA_PREFIX) :]
                attribute = LANGFUSE_TRACE_METADATA_PREFIX + name
                if not _METADATA_KEY.fullmatch(name):  # the rule explicit metadata keys follow
                    problems.append(f"metadata key {name[:60]!r}: not [A-Za-z0-9_.-]")
                elif (stamped := stamp_value(attribute, value, problems)) is not None:
                    metadata.append((attribute, stamped))
    except Exception:  # noqa: BLE001 - a mapping that fails while read: what was read stays
        problems.append("baggage: unreadable")
    if max_metadata is not None and len(metadata) > max_metadata:
        problems.append(f"{len(metadata) - max_metadata} metadata key(s) past the limit left out")
        del metadata[max_metadata:]
    return (*stamps, *metadata)


def _checked(attribute: str, value: object) -> str:
    problems: list[str] = []
    stamped = stamp_value(attribute, value, problems)
    if stamped is None:
        raise ConfigurationError(f"invalid {problems[0]}")
    return stamped


def baggage_entries(
    *,
    tags: Iterable[str] | None = None,
    metadata: Mapping[str, str] | None = None,
    environment: str | None = None,
    release: str | None = None,
    version: str | None = None,
    trace_name: str | None = None,
) -> dict[str, str]:
    """The baggage entries for explicit trace attributes; :class:`ConfigurationError` if bad."""
    entries: dict[str, str] = {}
    if tags is not None:
        if isinstance(tags, str):
            raise ConfigurationError("tags must be a list of strings, not a string")
        checked = list(dict.fromkeys(_checked("tag", tag) for tag in tags))
        if any("," in tag or not tag.strip() for tag in checked):
            raise ConfigurationError("a tag cannot contain a comma or be blank")
        text = tags_text(checked)
        if len(text) > MAX_LIST_TEXT:
            raise ConfigurationError(
                f"tags: {len(text)} characters together, over the {MAX_LIST_TEXT} a "
                "langfuse_tags baggage entry is read back with"
            )
        if checked:
            entries[BAGGAGE_LANGFUSE_TAGS] = text
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise ConfigurationError("metadata must be a mapping of strings to strings")
        for key, value in metadata.items():
            if not isinstance(key, str) or not _METADATA_KEY.fullmatch(key):
                raise ConfigurationError("metadata keys must be strings of [A-Za-z0-9_.-]")
            entries[BAGGAGE_METADATA_PREFIX + key] = _checked(f"metadata {key!r}", value)
    given = {
        "langfuse_trace_name": trace_name,
        "langfuse_environment": environment,
        "langfuse_release": release,
        "langfuse_version": version,
    }
    for key, argument in given.items():
        if argument is not None:
            entries[key] = _checked(BAGGAGE_TRACE_ATTRIBUTES[key], argument)
    return entries


def tags_text(tags: Sequence[str]) -> str:
    """``tags`` as a ``langfuse_tags`` value: comma-separated if exact, else a JSON list."""
    if tags and not tags[0].startswith("[") and all(tag == tag.strip() for tag in tags):
        return ",".join(tags)
    return json.dumps(list(tags), ensure_ascii=False, separators=(",", ":"))


def merged_tags(parent: object, own: str) -> str:
    """``own`` tags added to the ``parent`` scope's (within :data:`MAX_LIST_TEXT`)."""
    problems: list[str] = []
    inherited = [] if parent is None else parse_tags(parent, problems) or []
    if problems:
        _log.warning("inherited-tags", "Leaving out tags inherited from baggage: %s", problems[0])
    text = tags_text(list(dict.fromkeys([*inherited, *(parse_tags(own) or [])])))
    if len(text) <= MAX_LIST_TEXT:
        return text
    _log.warning(
        "tags-over-limit",
        "Leaving out the inherited tags: with this scope's they exceed the %d characters a "
        "langfuse_tags baggage entry is read back with",
        MAX_LIST_TEXT,
    )
    return own


def entries_of(given: object, problems: list[str]) -> dict[str, str]:
    """:func:`baggage_entries` of a mapping of its keywords, never raising (see ``problems``)."""
    entries: dict[str, str] = {}
    try:
        for name, value in given.items():  # type: ignore[attr-defined]
            parts = value.items() if name == "metadata" and isinstance(value, Mapping) else [None]
            for part in parts:  # each metadata key on its own
                argument: dict[str, Any] = {name: dict([part]) if part else value}
                try:
                    entries.update(baggage_entries(**argument))
                except ConfigurationError as error:
                    problems.append(str(error))
                except Exception:  # noqa: BLE001 - reported, never raised
                    problems.append(f"{str(name)[:40]!r}: unknown or unreadable")
    except Exception:  # noqa: BLE001 - what was read before it failed stays
        problems.append("trace attributes: not a mapping, or unreadable")
    return entries
