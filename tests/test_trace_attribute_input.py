"""Hostile and unusual trace-attribute input: baggage values that once raised (deeply nested
tags), a Langfuse SDK caller's tags in Python list syntax, baggage values that break the rules
explicit arguments follow, and a ``trace_attributes`` result that fails while read.
Attacked through the documented setups; nothing may raise or cost the request its session."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, context, propagate

from langfuse_otel_sessions import ConfigurationError, session
from langfuse_otel_sessions.sessions.trace_attributes import parse_tags, string_list, tag_problem

from .conftest import Traced, make_traced
from .servers import serve_wsgi
from .test_trust_boundary import backend, get

NESTED = "[" * 3000  # within OpenTelemetry's 4096-byte limit for one baggage entry


def in_baggage(**entries: object) -> Any:
    ctx = context.get_current()
    for key, value in entries.items():
        ctx = baggage.set_baggage(key, value, ctx)
    return context.attach(ctx)


# -- parse_tags: never raises, returns only valid tags ----------------------------------------

nested_text = st.recursive(
    st.text(max_size=20).map(json.dumps) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4).map(lambda items: "[" + ",".join(items) + "]"),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.text(alphabet="[]'\"\\,uxU0123456789abcdef ", max_size=60),
        nested_text,
        st.integers(1, 20000).map(lambda depth: "[" * depth),
        st.integers(1, 5000).map(lambda depth: "[" * depth + "'a'" + "]" * depth),
    )
)
def test_parse_tags_never_raises_and_returns_only_valid_tags(text: str) -> None:
    problems: list[str] = []
    tags = parse_tags(text, problems)
    assert tags is None or all(tag_problem(tag) is None for tag in tags)
    if tags is None:
        assert problems  # a value it cannot read is reported


valid_tag = st.text(min_size=1, max_size=30).filter(
    lambda tag: tag_problem(tag) is None and bool(tag.strip())
)


@settings(max_examples=300, deadline=None)
@given(st.lists(valid_tag, max_size=6))
def test_a_list_of_tags_reads_back_exactly_from_python_and_json_syntax(tags: list[str]) -> None:
    assert parse_tags(str(tags)) == tags
    assert parse_tags(json.dumps(tags, ensure_ascii=False)) == tags  # as we write it


@pytest.mark.parametrize(
    "text",
    ["['a' 'b']", "['a'] + ['b']", "[b'x']", "['a', ['b']]", "['\\q']", '["a"]x'],
)
def test_anything_but_a_flat_list_of_string_literals_is_not_read(text: str) -> None:
    assert parse_tags(text) is None


@pytest.mark.parametrize("text", ["['\\q']", "['a', '\\400']", '["a\\/b"]'])
@pytest.mark.parametrize("action", ["ignore", "error"])
def test_a_literal_python_warns_about_is_not_read_whatever_the_warning_filters(
    text: str, action: Literal["ignore", "error"]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter(action)
        assert parse_tags(text) is None
    assert string_list("['a\\\\q', '\\377', '\\x41\\n']") == ["a\\q", "\xff", "A\n"]


# -- F2: deeply nested baggage values in the documented setups -------------------------------


def test_a_nested_value_in_the_process_s_own_baggage_breaks_neither_spans_nor_session(
    traced: Traced, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "langfuse_otel_sessions")
    token = in_baggage(langfuse_tags=NESTED, langfuse_session_id="s-0")
    try:
        with traced.tracer.start_as_current_span("outside"):
            pass
        with session("s", tags=["a"]), traced.tracer.start_as_current_span("inside"):
            pass
    finally:
        context.detach(token)
    outside = dict(traced.span("outside").attributes or {})
    assert outside["langfuse.session.id"] == "s-0"  # the span was stamped, session included
    assert "langfuse.trace.tags" not in outside
    inside = dict(traced.span("inside").attributes or {})
    assert inside["langfuse.session.id"] == "s"
    assert inside["langfuse.trace.tags"] == ("a",)  # the garbage inherited tags left out
    assert "Not stamping trace attributes from baggage" in caplog.text
    assert "Leaving out tags inherited from baggage" in caplog.text


def test_a_trusted_caller_s_nested_tags_cost_the_request_nothing_else() -> None:
    traced = make_traced(trust_remote_baggage=True)
    with serve_wsgi(backend(traced)) as url:
        get(url, {"baggage": "langfuse_session_id=s-up,langfuse_tags=" + NESTED})
    handler = dict(traced.span("handler").attributes or {})
    assert handler["langfuse.session.id"] == "s-up"
    assert "langfuse.trace.tags" not in handler


fastapi_only = pytest.mark.skipif(sys.version_info < (3, 11), reason="FastAPI tests need 3.11+")


@fastapi_only
def test_fastapi_with_configure_keeps_the_decided_session_against_nested_tags() -> None:
    pytest.importorskip("fastapi")
    from fastapi import FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.trace import TracerProvider

    from langfuse_otel_sessions import ASGISessionMiddleware, LangfuseSpanExporter, configure
    from langfuse_otel_sessions.testing import LangfuseReceiver

    from .servers import serve_asgi

    receiver = LangfuseReceiver().start()
    try:
        provider = TracerProvider()
        exporter = LangfuseSpanExporter(
            public_key=receiver.public_key, secret_key=receiver.secret_key, base_url=receiver.url
        )
        configure(provider, exporter=exporter)
        app = FastAPI()

        @app.get("/")
        def index() -> dict[str, bool]:
            return {"ok": True}

        app.add_middleware(
            ASGISessionMiddleware,
            session_from=lambda scope: "authenticated",
            trace_attributes={"environment": "prod"},
        )
        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
        import httpx

        with serve_asgi(app) as url:
            answer = httpx.get(url + "/", headers={"baggage": "langfuse_tags=" + NESTED})
        assert answer.status_code == 200
        provider.shutdown()
        (trace,) = receiver.traces().values()
        assert trace.session_id == "authenticated"
        assert trace.environment == "prod"
        assert trace.tags == ()
    finally:
        receiver.stop()


@pytest.mark.parametrize("setup", ["no-guard", "guard"])
def test_wsgi_inside_otel_keeps_the_decided_session_against_nested_tags(setup: str) -> None:
    pytest.importorskip("flask")
    import httpx

    from .test_inbound_frameworks import propagation, served

    with propagation(setup) as traced, served("flask", traced, "ours-inside-otel") as url:
        headers = {"X-Session-Id": "s-1", "baggage": "langfuse_tags=" + NESTED}
        answer = httpx.get(url + "/chat", headers=headers)
    assert answer.json() == {"session": "s-1"}
    for span in traced.spans():
        assert (span.attributes or {})["langfuse.session.id"] == "s-1", span.name


@pytest.mark.parametrize("order", ["ours-inside-otel", "ours-outside-otel"])
def test_nested_tags_with_static_tags_and_a_trusting_middleware(order: str) -> None:
    pytest.importorskip("flask")
    import httpx

    from .test_inbound_frameworks import served

    traced = make_traced(trust_remote_baggage=True)
    options = {"trace_attributes": {"tags": ["web"]}, "trust_remote_baggage": True}
    with served("flask", traced, order, **options) as url:
        headers = {"X-Session-Id": "s-1", "baggage": "langfuse_tags=" + NESTED}
        answer = httpx.get(url + "/chat", headers=headers)
    assert answer.json() == {"session": "s-1"}
    for span in traced.spans():
        got = span.attributes or {}
        assert got["langfuse.session.id"] == "s-1", span.name
        assert got["langfuse.trace.tags"] == ("web",), span.name


# -- F4: a Langfuse SDK caller's tags, as its str(list), over a real hop ----------------------

sdk_tag = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters=","),
    min_size=1,
    max_size=12,
).filter(lambda tag: bool(tag.strip()))


@pytest.mark.skipif(sys.version_info < (3, 11), reason="langfuse 5 needs Python 3.11+")
def test_a_langfuse_sdk_caller_s_tags_arrive_exactly_whatever_their_quotes() -> None:
    langfuse = pytest.importorskip("langfuse")
    ours = make_traced(trust_remote_baggage=True)
    with serve_wsgi(backend(ours)) as url:

        @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(
            st.lists(sdk_tag, min_size=1, max_size=4).map(
                lambda tags: [*tags, "customer's", 'say "hi"', "back\\slash"]
            )
        )
        def hop(tags: list[str]) -> None:
            ours.exporter.clear()
            with langfuse.propagate_attributes(session_id="s", tags=tags, as_baggage=True):
                headers: dict[str, str] = {}
                propagate.inject(headers)
            get(url, headers)
            got = dict(ours.span("handler").attributes or {})
            assert got["langfuse.trace.tags"] == tuple(dict.fromkeys(tags))

        hop()


# -- F6: baggage values follow the rules explicit arguments follow ----------------------------


@pytest.mark.parametrize(
    "entries",
    [
        {"langfuse_metadata_a b": "v"},
        {"langfuse_metadata_": "v"},
        {"langfuse_metadata_xé": "v"},
        {"langfuse_tags": '["a,b"]'},
        {"langfuse_tags": "['a,b']"},
        {"langfuse_tags": ["a,b"]},
    ],
)
def test_a_baggage_value_breaking_the_explicit_rules_is_skipped_with_a_warning(
    traced: Traced, entries: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "langfuse_otel_sessions")
    token = in_baggage(**entries, langfuse_metadata_ok="fine")
    try:
        with traced.tracer.start_as_current_span("span"):
            pass
    finally:
        context.detach(token)
    got = dict(traced.span("span").attributes or {})
    stamped = {k for k in got if k.startswith("langfuse.trace.")}
    assert stamped == {"langfuse.trace.metadata.ok"}
    assert "Not stamping trace attributes from baggage" in caplog.text


# -- F7: a blank explicit tag raises ----------------------------------------------------------


@pytest.mark.parametrize("tags", [[" "], ["\u00a0"], ["a", "\t "]])
def test_a_blank_explicit_tag_raises(tags: list[str]) -> None:
    with pytest.raises(ConfigurationError):
        session("s", tags=tags)


# -- F11: a trace_attributes result that fails while read --------------------------------


class _FailsWhileRead(Mapping[str, Any]):
    """A mapping whose ``items()`` (or whose metadata's) raises partway."""

    def __init__(self, fail_in_metadata: bool) -> None:
        self.fail_in_metadata = fail_in_metadata

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __len__(self) -> int:
        return 2

    def __iter__(self) -> Iterator[str]:
        if self.fail_in_metadata:
            yield "metadata"
        raise RuntimeError("broken while read")


class _Outer(Mapping[str, Any]):
    """A result whose tags read fine and whose metadata fails while read."""

    def __getitem__(self, key: str) -> Any:
        return {"tags": ["dynamic"], "metadata": _FailsWhileRead(False)}[key]

    def __len__(self) -> int:
        return 2

    def __iter__(self) -> Iterator[str]:
        return iter(["tags", "metadata"])


@pytest.mark.parametrize("framework", ["flask", "fastapi"])
@pytest.mark.parametrize("result", ["fails-at-once", "metadata-fails"])
def test_a_result_that_fails_while_read_loses_only_that_part(
    framework: str, result: str, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip(framework)
    if framework == "fastapi" and sys.version_info < (3, 11):
        pytest.skip("FastAPI tests need 3.11+")
    import httpx

    from .test_inbound_frameworks import propagation, served

    caplog.set_level(logging.WARNING, "langfuse_otel_sessions")
    given: Mapping[str, Any] = _FailsWhileRead(False) if result == "fails-at-once" else _Outer()
    options = {"trace_attributes": lambda r: given}
    with (
        propagation("guard") as traced,
        served(framework, traced, "ours-inside-otel", **options) as url,
    ):
        answer = httpx.get(url + "/chat", headers={"X-Session-Id": "s-1"})
    assert answer.json() == {"session": "s-1"}
    tags = () if result == "fails-at-once" else ("dynamic",)
    for span in traced.spans():
        got = span.attributes or {}
        assert got["langfuse.session.id"] == "s-1", span.name
        assert got.get("langfuse.trace.tags", ()) == tags, span.name
    assert "trace_attributes callable" in caplog.text


# -- F8: stamping never evicts a span's own attributes ----------------------------------------


@pytest.mark.parametrize(
    ("max_attributes", "metadata_keys"),
    [(None, 130), (None, 120), (None, 90), (16, 6), (12, 3)],
)
def test_stamps_fill_only_the_room_a_span_has_left(
    max_attributes: int | None,
    metadata_keys: int,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from langfuse_otel_sessions import SessionSpanProcessor

    caplog.set_level(logging.WARNING, "langfuse_otel_sessions")
    if max_attributes is not None:
        monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", str(max_attributes))
    provider = TracerProvider()  # its span limits come from the environment
    processor = SessionSpanProcessor()
    provider.add_span_processor(processor)
    limit = max_attributes or 128
    room = limit * 3 // 4  # a quarter is left for the attributes the span gets later
    own = {f"own.{i}": i for i in range(5)}
    metadata = {f"k{i}": "v" for i in range(metadata_keys)}
    with session("s", user_id="u", tags=["a"], environment="prod", metadata=metadata):
        span = provider.get_tracer("t").start_span("span", attributes=own)
    got = dict(span.attributes or {})
    assert {key: got.get(key) for key in own} == own  # nothing of the span's own evicted
    assert got["langfuse.session.id"] == "s"
    assert got["langfuse.user.id"] == "u"
    assert got["langfuse.environment"] == "prod"  # metadata goes last
    assert got["langfuse.trace.tags"] == ("a",)
    stamped = sum(key.startswith("langfuse.trace.metadata.") for key in got)
    read = min(metadata_keys, limit)  # metadata past the limit is not even read
    wanted = len(own) + 4 + read
    assert stamped == read - max(0, wanted - room)
    assert processor.dropped_trace_attributes == max(0, wanted - room)
    assert ("attribute limit" in caplog.text) == (wanted > room)
    # the attributes the app sets later, up to the limit, evict nothing
    late = {f"late.{i}": i for i in range(limit - len(got))}
    span.set_attributes(late)
    span.end()
    got = dict(span.attributes or {})
    assert {key: got.get(key) for key in {**own, **late}} == {**own, **late}
    assert got["langfuse.session.id"] == "s"
    assert got["langfuse.user.id"] == "u"


# -- the log line says what was ignored --------------------------------------------------------


def test_forged_trace_attributes_alone_are_not_reported_as_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "langfuse_otel_sessions")
    traced = make_traced()
    with serve_wsgi(backend(traced)) as url:
        get(url, {"baggage": "langfuse_tags=forged,langfuse_environment=prod"})
        assert "Ignoring trace attributes" in caplog.text
        assert "session/user ids" not in caplog.text
        get(url, {"baggage": "langfuse_session_id=forged"})
    assert "Ignoring session/user ids" in caplog.text
