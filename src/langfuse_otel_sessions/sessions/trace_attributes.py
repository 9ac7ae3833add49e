"""Trace attributes beyond the session: tags, metadata, environment, release, version, name.

Carried in baggage under the Langfuse SDK's keys (``langfuse_tags``, ``langfuse_environment``,
``langfuse_metadata_<k>``, ...) and stamped by the processor as the span attributes Langfuse
reads. One rule for both directions: :func:`stamp_value` (never raises) decides what is
stamped; :func:`baggage_entries` raises for a bad explicit argument.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence

from .._logging import RateLimitedLog
from ..attributes import (
    BAGGAGE_LANGFUSE_TAGS,
    BAGGAGE_METADATA_PREFIX,
    BAGGAGE_TRACE_ATTRIBUTES,
    DEFAULT_MAX_ID_LENGTH,
    LANGFUSE_ENVIRONMENT,
    LANGFUSE_TRACE_METADATA_PREFIX,
)
from ..errors import ConfigurationError
from ..ids import environment_name, id_problem
from .string_lists import MAX_LIST_TEXT, string_list

_METADATA_KEY = re.compile(r"[A-Za-z0-9_.-]+")
_log = RateLimitedLog()
#: ``(span attribute, value)`` pairs, ready to stamp.
Stamps = tuple[tuple[str, object], ...]


def stamp_value(attribute: str, value: object) -> tuple[str | None, str | None]:
    """``(what to stamp as attribute, None)``, or ``(None, why it cannot be stamped)``.
    An environment is stamped as Langfuse's server stores it (:func:`environment_name`);
    one it would store as ``default`` cannot be stamped. Never raises."""
    problem = id_problem(value, DEFAULT_MAX_ID_LENGTH)
    if problem is not None:
        return None, problem
    assert isinstance(value, str)  # noqa: S101 - id_problem proved it
    if attribute != LANGFUSE_ENVIRONMENT:
        return value, None
    name = environment_name(value)
    if name is None:
        return None, "Langfuse would store 'default': not [a-z0-9_-] once lower-cased"
    return name, None


def tag_problem(tag: object) -> str | None:
    """Why ``tag`` cannot be stamped as a tag, or ``None``: the string rule, and no comma (our
    and the Langfuse SDK's comma-separated baggage form would split it). Never raises."""
    problem = id_problem(tag, DEFAULT_MAX_ID_LENGTH)
    if problem is None and "," in tag:  # type: ignore[operator]  # id_problem proved a str
        return "contains a comma"
    return problem


def parse_tags(value: object, problems: list[str] | None = None) -> list[str] | None:
    """The valid tags of a baggage value: a list (in-process, as the Langfuse SDK writes it),
    a Python or JSON list string (what a list becomes over HTTP: :func:`string_list`), or
    comma-separated text. ``None`` when the value is none of these; invalid tags are left out.
    Either is described in ``problems``. Never raises, and its work is bounded by the length
    of the text."""
    try:
        raw = _raw_tags(value)
        if raw is None:
            if problems is not None:
                problems.append("tags: not a list of strings nor comma-separated text")
            return None
        tags: list[str] = []
        skipped: list[str] = []
        for tag in raw:
            if isinstance(tag, str) and not tag.strip():
                continue  # nothing to show: "a,,b", a trailing comma
            problem = tag_problem(tag)
            if problem is None:
                tags.append(tag)  # type: ignore[arg-type]  # tag_problem proved it a str
            else:
                skipped.append(problem)
        if skipped and problems is not None:
            problems.append(f"{len(skipped)} tag(s) skipped (first: {skipped[0]})")
        return tags
    except Exception:  # noqa: BLE001 - belt and braces: bad input is reported, never raised
        if problems is not None:
            problems.append("tags: unreadable")
        return None


def _raw_tags(value: object) -> list[str] | list[object] | tuple[object, ...] | None:
    if isinstance(value, (list, tuple)):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.startswith("["):
        return string_list(text)
    if len(text) > MAX_LIST_TEXT:
        return None
    return [tag.strip() for tag in text.split(",")]


def stamps_of(
    entries: Mapping[str, object], problems: list[str], max_metadata: int | None = None
) -> Stamps:
    """The trace attributes a span gets from baggage ``entries``; invalid values are left out
    and described in ``problems``. Never raises: each entry is read on its own. Metadata comes
    last, so that a span near its attribute limit gets the other attributes first; past
    ``max_metadata`` keys (the span attribute limit) the rest is left out, as the Langfuse SDK
    leaves out metadata past it."""
    stamps: list[tuple[str, object]] = []
    metadata: list[tuple[str, object]] = []
    try:
        for key, value in entries.items():
            if isinstance(key, str) and key.startswith("langfuse_"):
                try:
                    _stamp_of(key, value, stamps, metadata, problems)
                except Exception:  # noqa: BLE001 - one bad entry costs only itself
                    problems.append(f"{key[:60]!r}: unreadable")
    except Exception:  # noqa: BLE001 - a mapping that fails while read: what was read stays
        problems.append("baggage: unreadable")
    if max_metadata is not None and len(metadata) > max_metadata:
        problems.append(f"{len(metadata) - max_metadata} metadata key(s) past the limit left out")
        del metadata[max_metadata:]
    return (*stamps, *metadata)


def _stamp_of(
    key: str,
    value: object,
    stamps: list[tuple[str, object]],
    metadata: list[tuple[str, object]],
    problems: list[str],
) -> None:
    if key == BAGGAGE_LANGFUSE_TAGS:
        tags = parse_tags(value, problems)
        if tags:
            stamps.append((BAGGAGE_TRACE_ATTRIBUTES[key], tuple(dict.fromkeys(tags))))
        return
    attribute = BAGGAGE_TRACE_ATTRIBUTES.get(key)
    if attribute is None:
        if not key.startswith(BAGGAGE_METADATA_PREFIX):
            return
        name = key[len(BAGGAGE_METADATA_PREFIX) :]
        if not _METADATA_KEY.fullmatch(name):  # the rule explicit metadata keys follow
            problems.append(f"metadata key {name[:60]!r}: not [A-Za-z0-9_.-]")
            return
        attribute = LANGFUSE_TRACE_METADATA_PREFIX + name
        stamps = metadata
    stamped, problem = stamp_value(attribute, value)
    if stamped is None:
        problems.append(f"{attribute[:80]}: {problem}")
    else:
        stamps.append((attribute, stamped))


def _checked(attribute: str, value: object) -> str:
    stamped, problem = stamp_value(attribute, value)
    if stamped is None:
        raise ConfigurationError(f"invalid {attribute}: {problem}")
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
        if any(not tag.strip() for tag in checked):
            raise ConfigurationError("a tag cannot be blank (whitespace only)")
        if checked:
            text = tags_text(list(dict.fromkeys(checked)))
            if len(text) > MAX_LIST_TEXT:
                raise ConfigurationError(
                    f"tags: {len(text)} characters together, over the {MAX_LIST_TEXT} a "
                    "langfuse_tags baggage entry is read back with"
                )
            entries[BAGGAGE_LANGFUSE_TAGS] = text
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


def tags_text(tags: Sequence[str]) -> str:
    """The ``langfuse_tags`` baggage value of valid ``tags``, which :func:`parse_tags` reads
    back exactly: comma-separated (the Langfuse SDK's form) when that carries them exactly,
    else a JSON list (a first tag starting with ``[`` would read as list syntax, and
    comma-separated tags are read stripped of surrounding spaces)."""
    if tags and not tags[0].startswith("[") and all(tag == tag.strip() for tag in tags):
        return ",".join(tags)
    return json.dumps(list(tags), ensure_ascii=False, separators=(",", ":"))


def _fitting_tags_text(tags: list[str]) -> str:
    """:func:`tags_text` of the first ``tags`` that fit in what is read back (its length grows
    with the number of tags kept, so the longest prefix that fits is found by bisection)."""
    text = tags_text(tags)
    if len(text) <= MAX_LIST_TEXT:
        return text
    low, high = 0, len(tags)  # tags[:low] fits, tags[:high] does not
    while high - low > 1:
        middle = (low + high) // 2
        if len(tags_text(tags[:middle])) <= MAX_LIST_TEXT:
            low = middle
        else:
            high = middle
    _log.warning(
        "tags-over-limit",
        "Keeping the first %d of %d tags: together they would exceed the %d characters a "
        "langfuse_tags baggage entry is read back with",
        low,
        len(tags),
        MAX_LIST_TEXT,
    )
    return tags_text(tags[:low])


def merged_tags(parent: object, own: str) -> str:
    """``own`` tags (a :func:`tags_text` value) added to the ``parent`` scope's tags: tags add
    up. Never raises: an unreadable or invalid inherited tag is left out, and tags past the
    length that is read back are left out (the first that fit are kept), with a warning."""
    problems: list[str] = []
    inherited = [] if parent is None else parse_tags(parent, problems) or []
    if problems:
        _log.warning(
            "invalid-inherited-tags", "Leaving out tags inherited from baggage: %s", problems[0]
        )
    return _fitting_tags_text(list(dict.fromkeys([*inherited, *(parse_tags(own) or [])])))


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
    try:
        for name, value in given.items():
            if name not in ARGUMENTS:
                problems.append(f"unknown argument {str(name)[:40]!r}")
                continue
            try:
                _add_entries(entries, name, value, problems)
            except Exception:  # noqa: BLE001 - a value that fails while read: that part only
                problems.append(f"{name}: unreadable")
    except Exception:  # noqa: BLE001 - a mapping that fails while read: what was read stays
        problems.append("the mapping: unreadable")
    return entries


def _add_entries(entries: dict[str, str], name: str, value: object, problems: list[str]) -> None:
    parts = value.items() if name == "metadata" and isinstance(value, Mapping) else [None]
    for part in parts:
        argument: dict[str, object] = {name: value if part is None else dict([part])}
        try:
            entries.update(baggage_entries(**argument))  # type: ignore[arg-type]
        except Exception as error:  # noqa: BLE001 - reported, never raised
            problems.append(str(error) if isinstance(error, ConfigurationError) else name)
