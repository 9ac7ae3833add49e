"""Trace attributes (tags, metadata, environment, release, version, name) decided by the
middlewares — static and per request — on every span of the request in real frameworks over
real HTTP, OpenTelemetry's server span included, in both middleware orders; forged incoming
ones withheld; merged with the app's own ``session()`` scopes."""

from __future__ import annotations

import logging
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the framework stack is in requirements/test.txt")
pytest.importorskip("django", reason="the framework stack is in requirements/test.txt")
import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.trace import SpanKind

from langfuse_otel_sessions import ASGISessionMiddleware, ConfigurationError, WSGISessionMiddleware
from langfuse_otel_sessions.baggage_keys import member_key
from langfuse_otel_sessions.testing import LangfuseReceiver

from .conftest import make_traced
from .test_inbound_frameworks import ORDERS, propagation, served

FRAMEWORKS = ["fastapi", "flask", "django"]
# Forged trace attributes a client may send; each would be stamped if it got through.
FORGED = (
    "langfuse_environment=prod,langfuse_tags=forged,langfuse_metadata_plan=hacked,"
    "langfuse_metadata_admin=true,langfuse%5Frelease=evil,langfuse_trace_name+=forged,"
    "tenant=acme"
)
TRACE_KEYS = ("langfuse.trace.", "langfuse.environment", "langfuse.release", "langfuse.version")


def plan_of(request: Any) -> dict[str, Any] | None:
    """A ``trace_attributes`` callable: the plan from the ``X-Plan`` header, ASGI or WSGI."""
    if "headers" in request:  # an ASGI scope
        plan = dict(request["headers"]).get(b"x-plan", b"").decode()
    else:  # a WSGI environ
        plan = request.get("HTTP_X_PLAN", "")
    if not plan:
        return None
    return {
        **STATIC,
        "tags": ["web", "premium"],
        "metadata": {"tenant": "acme", "plan": plan},
        "version": "2",
    }


STATIC: dict[str, Any] = {
    "tags": ["web"],
    "metadata": {"tenant": "acme", "plan": "free"},
    "environment": "staging",
    "release": "r1",
    "trace_name": "chat",
}
DECIDED = {
    "langfuse.trace.tags": ("web", "premium"),
    "langfuse.trace.metadata.tenant": "acme",
    "langfuse.trace.metadata.plan": "pro",
    "langfuse.environment": "staging",
    "langfuse.release": "r1",
    "langfuse.version": "2",
    "langfuse.trace.name": "chat",
}


def trace_attributes(span: Any) -> dict[str, object]:
    return {
        key: value
        for key, value in (span.attributes or {}).items()
        if key.startswith(TRACE_KEYS) and value not in ("", ())
    }


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("setup", ["no-guard", "both"])
def test_static_and_per_request_attributes_reach_every_span_and_outrank_forged_ones(
    framework: str, order: str, setup: str
) -> None:
    with (
        propagation(setup) as traced,
        served(framework, traced, order, trace_attributes=plan_of) as url,
    ):
        headers = {"X-Session-Id": "s-1", "X-Plan": "pro", "baggage": FORGED}
        assert httpx.get(url + "/chat", headers=headers).json() == {"session": "s-1"}
    spans = traced.spans()
    assert [s.kind.name for s in spans].count("SERVER") == 1
    for span in spans:
        assert trace_attributes(span) == DECIDED, span.name
        assert (span.attributes or {})["langfuse.session.id"] == "s-1", span.name


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("order", ORDERS)
def test_an_inner_session_merges_over_the_middlewares_attributes(
    framework: str, order: str
) -> None:
    with (
        propagation("guard") as traced,
        served(framework, traced, order, trace_attributes=plan_of) as url,
    ):
        httpx.get(url + "/nested", headers={"X-Session-Id": "s-1", "X-Plan": "pro"})
    nested = trace_attributes(traced.span("nested"))
    assert nested == {
        **DECIDED,
        "langfuse.trace.tags": ("web", "premium", "inner"),  # tags add up
        "langfuse.trace.metadata.k2": "inner",  # metadata keys merge
        "langfuse.environment": "inner",  # the rest: innermost wins
    }
    for span in traced.spans():
        if span.name != "nested":  # the server span keeps the middleware's values
            assert trace_attributes(span) == DECIDED, span.name


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("order", ORDERS)
def test_trusted_incoming_attributes_nest_under_the_decided_ones(
    framework: str, order: str
) -> None:
    traced = make_traced(trust_remote_baggage=True)
    options = {
        "trace_attributes": {"tags": ["web"], "environment": "staging"},
        "trust_remote_baggage": True,
    }
    incoming = "langfuse_tags=up,langfuse_environment=prod,langfuse_metadata_team=core"
    with served(framework, traced, order, **options) as url:
        httpx.get(url + "/chat", headers={"X-Session-Id": "s-1", "baggage": incoming})
    for span in traced.spans():
        assert trace_attributes(span) == {
            "langfuse.trace.tags": ("up", "web"),
            "langfuse.environment": "staging",
            "langfuse.trace.metadata.team": "core",
        }, span.name


KEYS = [
    "langfuse_environment",
    "langfuse_tags",
    "langfuse_release",
    "langfuse_version",
    "langfuse_trace_name",
    "langfuse_metadata_role",
]


@st.composite
def spelled(draw: st.DrawFn) -> tuple[str, str]:
    """A baggage list-member OpenTelemetry reads as one of the guarded keys: characters
    percent-encoded at random, ``+``/spaces/tabs around; and its (stampable) value."""
    key = draw(st.sampled_from(KEYS))
    encoded = "".join(f"%{ord(char):02X}" if draw(st.booleans()) else char for char in key)
    before = draw(st.sampled_from(["", " ", "\t", " \t"]))
    after = draw(st.sampled_from(["", "+", " ", "+%20"]))
    value = draw(st.from_regex(r"[a-z][a-z0-9_-]{0,12}", fullmatch=True))
    member = f"{before}{encoded}{after}={value}"
    assert member_key(member) == key  # as OpenTelemetry's extractor decodes it
    return member, value


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("static", [{}, {"environment": "staging"}], ids=["none", "environment"])
def test_forged_trace_attributes_reach_no_span_whatever_their_spelling(
    framework: str, order: str, static: dict[str, str]
) -> None:
    forged_values: set[str] = set()
    # No guard in the propagator: the middleware alone holds the boundary.
    with (
        propagation("no-guard") as traced,
        served(framework, traced, order, trace_attributes=static) as url,
        httpx.Client(base_url=url) as client,
    ):

        @settings(max_examples=15, deadline=None)
        @given(st.lists(spelled(), min_size=1, max_size=4), st.booleans())
        def forge(members: list[tuple[str, str]], with_session: bool) -> None:
            forged_values.update(value for _, value in members)
            header = "tenant=acme," + ",".join(member for member, _ in members)
            headers = {"baggage": header, **({"X-Session-Id": "own"} if with_session else {})}
            client.get("/chat", headers=headers)

        forge()
    spans = traced.spans()
    assert spans
    for span in spans:
        got = trace_attributes(span)
        assert got == {f"langfuse.{key}": value for key, value in static.items()}, (span.name, got)


# What the exporter sends (the receiver decodes it): the per-request memory completes spans
# with the trace attributes the request showed, so forged ones must not be remembered either.
FORGED_IDS = "langfuse_session_id=forged-s,session.id=forged-s,user.id=forged-u"


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("setup", ["no-guard", "guard", "langfuse_baggage"])
@pytest.mark.parametrize("processor_trust", [False, True], ids=["untrusting", "processor-trusts"])
@pytest.mark.parametrize("static", [{}, {"environment": "staging"}], ids=["none", "environment"])
def test_forged_trace_attributes_and_ids_are_never_exported(
    framework: str, order: str, setup: str, processor_trust: bool, static: dict[str, str]
) -> None:
    """The middleware's untrusting default holds for its requests, also when the processor
    trusts remote baggage (the mixed setup): neither forged trace attributes nor forged ids
    reach what Langfuse receives, whatever their spelling."""
    with (
        LangfuseReceiver() as receiver,
        propagation(setup, trust_remote_baggage=processor_trust) as traced,
        served(framework, traced.export_to(receiver), order, trace_attributes=static) as url,
        httpx.Client(base_url=url) as client,
    ):

        @settings(max_examples=4, deadline=None)
        @given(st.lists(spelled(), min_size=1, max_size=4), st.booleans())
        def forge(members: list[tuple[str, str]], with_session: bool) -> None:
            header = ",".join(["tenant=acme", FORGED_IDS, *(member for member, _ in members)])
            headers = {"baggage": header, **({"X-Session-Id": "own"} if with_session else {})}
            client.get("/chat", headers=headers)

        forge()
        assert receiver.wait_for_spans(len(traced.spans()))
        received = receiver.spans()
    assert received
    expected = {f"langfuse.{key}": value for key, value in static.items()}
    for span in received:
        assert trace_attributes(span) == expected, (span.name, span.attributes)
        ids = {key: span.attributes.get(key) for key in ("langfuse.session.id", "session.id")}
        assert set(ids.values()) <= {"own", None, ""}, (span.name, ids)
        assert span.attributes.get("user.id") in (None, ""), span.name


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
@pytest.mark.parametrize("order", ORDERS)
def test_a_blanked_forged_stamp_reaches_langfuse_as_no_key_at_all(
    framework: str, order: str
) -> None:
    # Ours inside OpenTelemetry's and no guard: the middleware can only blank what the processor
    # stamped on the server span; the exporter leaves the blanks out of what it sends.
    forged = "langfuse_metadata_evil=x,langfuse_release=x,langfuse_tags=x"
    with LangfuseReceiver() as receiver, propagation("no-guard") as traced:
        with served(framework, traced.export_to(receiver), order, trace_attributes=STATIC) as url:
            httpx.get(url + "/chat", headers={"X-Session-Id": "s-1", "baggage": forged})
        assert receiver.wait_for_spans(len(traced.spans()))  # the server stopped: all ended
        (view,) = receiver.traces().values()
        received = receiver.spans()
    assert view.metadata == {"tenant": "acme", "plan": "free"}
    assert (view.release, tuple(view.tags)) == ("r1", ("web",))
    for span in received:
        blanks = [k for k, v in span.attributes.items() if k.startswith(TRACE_KEYS) and v == ""]
        assert blanks == [], span.name


def raising(request: Any) -> dict[str, Any]:
    raise RuntimeError("the app's callable broke")


def invalid(request: Any) -> dict[str, Any]:
    return {
        "environment": "prod env",  # Langfuse would store "default"
        "tags": "a,b",  # a string, not a list
        "bogus": 1,
        "release": "r" * 201,
        "metadata": {"ok": "yes", "bad key": "v", "number": 1},
    }


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("callable_", [raising, invalid, lambda request: ["not", "a", "mapping"]])
def test_a_raising_or_invalid_callable_never_breaks_the_request_and_warns(
    framework: str, order: str, callable_: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "langfuse_otel_sessions")
    with (
        propagation("guard") as traced,
        served(framework, traced, order, trace_attributes=callable_) as url,
    ):
        answer = httpx.get(url + "/chat", headers={"X-Session-Id": "s-1"})
    assert answer.status_code == 200
    assert answer.json() == {"session": "s-1"}
    expected: dict[str, object] = {}
    if callable_ is invalid:
        expected["langfuse.trace.metadata.ok"] = "yes"  # the valid part is kept
    for span in traced.spans():
        assert trace_attributes(span) == expected, span.name
    assert "trace_attributes callable" in caplog.text


@pytest.mark.parametrize("middleware", [ASGISessionMiddleware, WSGISessionMiddleware])
@pytest.mark.parametrize(
    "bad",
    [
        {"environment": "prod env"},
        {"environment": "langfuse"},
        {"tags": "a,b"},
        {"tags": ["a,b"]},
        {"metadata": {"k": 1}},
        {"metadata": {"k k": "v"}},
        {"release": "r" * 201},
        {"trace_name": ""},
        {"bogus": "x"},
        "not callable",
    ],
)
def test_a_bad_static_value_raises_at_construction(middleware: Any, bad: Any) -> None:
    with pytest.raises(ConfigurationError):
        middleware(lambda *args: None, trace_attributes=bad)


def server_span_own_attributes(order: str, metadata: dict[str, str]) -> tuple[set[str], object]:
    with (
        propagation("guard") as traced,
        served(
            "fastapi",
            traced,
            order,
            trace_attributes={"metadata": metadata, "environment": "prod"},
        ) as url,
    ):
        assert httpx.get(url + "/chat", headers={"X-Session-Id": "s-1"}).status_code == 200
    server = next(span for span in traced.spans() if span.kind is SpanKind.SERVER)
    attributes = server.attributes or {}
    own = {key for key in attributes if not key.startswith("langfuse.")}
    return own, attributes.get("langfuse.session.id")


@pytest.mark.parametrize("order", ORDERS)
def test_many_metadata_keys_never_evict_the_server_span_s_own_attributes(order: str) -> None:
    """The middleware stamps the server span into the room its attribute limit leaves, as the
    processor does (FastAPI's order: ours inside OpenTelemetry's, the span already started)."""
    baseline, _ = server_span_own_attributes(order, {})
    own, session_id = server_span_own_attributes(order, {f"k{n}": "v" for n in range(125)})
    assert len(baseline) > 5
    assert own == baseline
    assert session_id == "s-1"
