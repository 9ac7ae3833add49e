"""The receiver shows tags, metadata, environment, release, version and the trace name as
Langfuse v4 would, for raw OTLP/JSON posted to it."""

from __future__ import annotations

import re
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from langfuse_otel_sessions.testing import (
    LangfuseReceiver,
    ReceivedSpan,
    TraceView,
    langfuse_receiver,
    span_environment,
)

from .otlp_json import json_span
from .test_receiver_rules import ROOT, TRACE_ID
from .test_receiver_rules import send as send_spans

__all__ = ["langfuse_receiver"]

CHILD = "00000000000000b2"
OTHER = "00000000000000c3"


def span(span_id: str, parent: str | None = None, **attributes: object) -> dict[str, Any]:
    named = {k.replace("__", "."): v for k, v in attributes.items()}
    return json_span(TRACE_ID, span_id, f"s{span_id[-2:]}", parent, named)


def send(
    receiver: LangfuseReceiver, *spans: dict[str, Any], resource: dict[str, object] | None = None
) -> TraceView:
    return send_spans(receiver, *spans, scope="t", resource=resource or {})


@pytest.mark.parametrize(
    ("raw", "tags"),
    [
        (["a", "b"], ("a", "b")),
        ('["x", 2]', ("x", "2")),
        ("one, two ,three", ("one", "two", "three")),
        ("solo", ("solo",)),
        ("[not json", ("[not json",)),
    ],
)
def test_tags_are_read_as_a_list_a_json_array_or_comma_separated(
    langfuse_receiver: LangfuseReceiver, raw: object, tags: tuple[str, ...]
) -> None:
    shown = send(langfuse_receiver, span(ROOT, langfuse__trace__tags=raw))
    assert shown.tags == tags


def test_metadata_is_a_json_object_and_flat_keys_the_flat_keys_win(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    alone = send(langfuse_receiver, span(OTHER, **{"langfuse.trace.metadata": '{"t": "acme"}'}))
    assert alone.metadata == {"t": "acme"}  # the JSON object form on its own
    shown = send(
        langfuse_receiver,
        span(
            ROOT,
            **{
                "langfuse.trace.metadata": '{"a": "json", "b": 1}',
                "langfuse.trace.metadata.a": "flat",
                "langfuse.trace.metadata.c": "x",
            },
        ),
    )
    assert shown.metadata == {"a": "flat", "b": 1, "c": "x"}


def test_release_and_version_come_from_the_span_then_the_resource(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    shown = send(
        langfuse_receiver,
        span(ROOT),
        resource={"langfuse.release": "r-res", "service.version": "9.9", "langfuse.version": "x"},
    )
    assert (shown.release, shown.version) == ("r-res", "9.9")
    again = send(langfuse_receiver, span(CHILD, ROOT, langfuse__release="r-span"))
    assert again.release == "r-span"  # v4: the last non-empty value written


def test_environment_on_the_span_then_the_resource_by_key_priority(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    shown = send(
        langfuse_receiver,
        span(ROOT, deployment__environment="Staging"),
        resource={"deployment.environment.name": "from-resource"},
    )
    # langfuse.environment is absent; deployment.environment.name (resource) comes before
    # deployment.environment (span) in Langfuse's key order.
    assert shown.environment == "from-resource"
    assert span_environment(shown.spans[0]) == "from-resource"


def test_no_environment_is_default_and_a_bad_one_too(langfuse_receiver: LangfuseReceiver) -> None:
    assert send(langfuse_receiver, span(ROOT)).environment == "default"
    shown = send(langfuse_receiver, span(CHILD, ROOT, langfuse__environment="not valid!"))
    assert shown.environment == "default"


def test_v4_shows_the_last_environment_and_tag_list_written(
    langfuse_receiver: LangfuseReceiver,
) -> None:
    send(langfuse_receiver, span(ROOT, langfuse__environment="dev", langfuse__trace__tags=["a"]))
    shown = send(
        langfuse_receiver,
        span(CHILD, ROOT, langfuse__environment="prod", langfuse__trace__tags=["b"]),
    )
    assert (shown.environment, shown.tags) == ("prod", ("b",))


@pytest.mark.parametrize(
    "metadata",
    [
        {"langfuse.trace.metadata.k": "root"},
        {"langfuse.trace.metadata": '{"k": "root"}'},  # one JSON object
    ],
)
def test_v4_metadata_is_the_root_observation_s_in_either_form(
    langfuse_receiver: LangfuseReceiver, metadata: dict[str, str]
) -> None:
    child = {key: value.replace("root", "child") for key, value in metadata.items()}
    shown = send(langfuse_receiver, span(ROOT, **metadata), span(CHILD, ROOT, **child))
    assert shown.metadata == {"k": "root"}


def _reference_environment(value: str) -> str:
    """An independent reading of Langfuse's rule: lower-case; drop every leading
    "langfuse" with an optional "-" or "_" after it; keep 40 characters; then it must be a
    non-empty run of a-z, 0-9, "_" and "-", else "default"."""
    text = value.lower()
    while text.startswith("langfuse"):
        text = text[len("langfuse") :]
        if text[:1] in ("-", "_"):
            text = text[1:]
    text = text[:40]
    allowed = set(string.ascii_lowercase + string.digits + "_-")
    return text if text and all(c in allowed for c in text) else "default"


_ENVIRONMENTS = st.one_of(
    st.text(max_size=60),
    st.text(alphabet="abcXYZ019_-. ", max_size=60),
    st.builds(
        lambda p, s: p + s,
        st.sampled_from(["langfuse", "LANGFUSE-", "langfuse_langfuse", "langfuse-langfuse-"]),
        st.text(alphabet="abc-_LANGFUSE", max_size=50),
    ),
)


@given(_ENVIRONMENTS)
def test_environment_normalisation_matches_an_independent_reading(raw: str) -> None:
    shown = span_environment(ReceivedSpan("t", "s", None, "n", {"langfuse.environment": raw}))
    assert shown == _reference_environment(raw)
    assert re.fullmatch(r"[a-z0-9_-]{1,40}", shown)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(alphabet=string.ascii_letters + string.digits, min_size=1), max_size=5))
def test_tags_written_as_a_list_come_back_as_that_list(tags: list[str]) -> None:
    with LangfuseReceiver() as receiver:
        shown = send(receiver, span(ROOT, langfuse__trace__tags=tags))
    assert shown.tags == tuple(tags)
