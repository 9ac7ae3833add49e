"""Explicit tags arrive exactly: any tag ``session(tags=...)`` accepts is stamped as given
(brackets, quotes, surrounding spaces included), tags that could not be read back from baggage
raise at the call, and nested scopes over the limit keep the inner scope's tags, with a
warning."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from langfuse_otel_sessions import ConfigurationError, session
from langfuse_otel_sessions.sessions.trace_attributes import MAX_LIST_TEXT

from .conftest import Traced, make_traced

TAGS = "langfuse.trace.tags"


def stamped_tags(traced: Traced, *scopes: list[str]) -> tuple[str, ...] | None:
    traced.exporter.clear()
    entered = [session("s", tags=tags) for tags in scopes]
    for scope in entered:
        scope.__enter__()
    try:
        with traced.tracer.start_as_current_span("span"):
            pass
    finally:
        for scope in reversed(entered):
            scope.__exit__(None, None, None)
    value = (traced.span("span").attributes or {}).get(TAGS)
    return None if value is None else tuple(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "tags",
    [["[beta]"], ["[wip]", "x"], ["[]"], [" [pad"], ["['a']"], ['["q"]'], [" a "], ["x", "[wip]"]],
)
def test_explicit_tags_the_reviewers_lost_are_stamped_exactly(
    traced: Traced, tags: list[str]
) -> None:
    assert stamped_tags(traced, tags) == tuple(tags)


tag_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters=","),
    min_size=1,
    max_size=40,
)
bracketed = st.tuples(st.sampled_from(["[", " [", "['", '["', " "]), tag_text).map("".join)
any_tag = st.one_of(tag_text, bracketed)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outer=st.lists(any_tag, max_size=5), inner=st.lists(any_tag, max_size=5))
def test_any_tag_session_accepts_is_stamped_exactly(outer: list[str], inner: list[str]) -> None:
    traced = make_traced()
    try:
        session("s", tags=outer)
        session("s", tags=inner)
    except ConfigurationError:
        return  # refused at the call: never accepted, then lost
    expected = tuple(dict.fromkeys([*outer, *inner]))
    assert stamped_tags(traced, outer, inner) == (expected or None)
    assert stamped_tags(traced, inner) == (tuple(dict.fromkeys(inner)) or None)


def test_explicit_tags_longer_than_baggage_is_read_raise_at_the_call(traced: Traced) -> None:
    fits = [f"{n:03d}" + "x" * 196 for n in range(40)]  # 40 x 199 characters, with commas
    assert stamped_tags(traced, fits) == tuple(fits)
    with pytest.raises(ConfigurationError, match=str(MAX_LIST_TEXT)):
        session("s", tags=[*fits, "y" * 199])  # 8199 characters: would never be read back


def test_nested_scopes_over_the_limit_keep_the_inner_tags_and_warn(
    traced: Traced, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "langfuse_otel_sessions")
    outer = [f"o{n:02d}" + "x" * 196 for n in range(25)]
    inner = [f"i{n:02d}" + "x" * 196 for n in range(25)]
    assert stamped_tags(traced, outer, inner) == tuple(inner)
    assert "Leaving out the inherited tags" in caplog.text
