"""Remote baggage is untrusted by default, across real HTTP hops between loopback servers."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from opentelemetry import baggage, context, propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util._importlib_metadata import entry_points

from langfuse_otel_sessions import (
    BaggageGuard,
    SessionBaggagePropagator,
    SessionSpanProcessor,
    configure,
    current_session_id,
    install_baggage_guard,
    session,
)

from .conftest import Traced, make_traced
from .servers import serve_wsgi

FORGED = "langfuse.session.id=victim,session.id=victim,langfuse_session_id=victim,user.id=mallory"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

StartResponse = Callable[..., Any]


def backend(traced: Traced) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A WSGI service behind OpenTelemetry's own WSGI instrumentation."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        with traced.tracer.start_as_current_span("handler"):
            body = json.dumps(
                {"session": current_session_id(), "tenant": baggage.get_baggage("tenant")}
            )
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body.encode()]

    return OpenTelemetryMiddleware(app, tracer_provider=traced.provider)


def get(url: str, headers: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def stamped_sessions(traced: Traced) -> set[object]:
    return {(s.attributes or {}).get("langfuse.session.id") for s in traced.spans()}


def stamped_users(traced: Traced) -> set[object]:
    return {(s.attributes or {}).get("langfuse.user.id") for s in traced.spans()}


@pytest.mark.parametrize("with_traceparent", [True, False], ids=["traceparent", "no-traceparent"])
def test_forged_baggage_is_ignored_by_default(
    with_traceparent: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "langfuse_otel_sessions")
    traced = make_traced()  # installs the guard around the global propagator
    headers = {"baggage": FORGED + ",tenant=acme"}
    if with_traceparent:
        headers["traceparent"] = TRACEPARENT
    with serve_wsgi(backend(traced)) as url:
        answer = get(url, headers)
    assert answer == {"session": None, "tenant": "acme"}  # other entries are left alone
    assert stamped_sessions(traced) == {None}
    assert stamped_users(traced) == {None}
    assert len(traced.spans()) == 2  # the server span and the handler span
    assert "trust_remote_baggage=True" in caplog.text


@pytest.mark.parametrize("with_traceparent", [True, False], ids=["traceparent", "no-traceparent"])
def test_remote_baggage_is_stamped_when_trusted(with_traceparent: bool) -> None:
    install_baggage_guard()  # even with the guard in place, the trusting processor reads it
    traced = make_traced(trust_remote_baggage=True)
    headers = {"baggage": FORGED}
    if with_traceparent:
        headers["traceparent"] = TRACEPARENT
    with serve_wsgi(backend(traced)) as url:
        get(url, headers)
    assert stamped_sessions(traced) == {"victim"}
    assert stamped_users(traced) == {"mallory"}


def test_trust_from_the_environment_lets_baggage_through_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LANGFUSE_OTEL_TRUST_REMOTE_BAGGAGE", "true")
    traced = make_traced()
    guard = propagate.get_global_textmap()
    assert isinstance(guard, BaggageGuard)  # for the outbound policy; extract passes through
    assert guard.trusted
    with serve_wsgi(backend(traced)) as url:
        answer = get(url, {"baggage": FORGED})
    assert answer["session"] == "victim"
    assert stamped_sessions(traced) == {"victim"}


def test_the_apps_own_middleware_setting_baggage_is_trusted() -> None:
    traced = make_traced()

    def own_middleware(app: Any) -> Any:
        def wrapped(environ: dict[str, Any], start_response: StartResponse) -> Any:
            token = context.attach(baggage.set_baggage("session.id", environ["HTTP_X_SESSION_ID"]))
            try:
                return list(app(environ, start_response))
            finally:
                context.detach(token)

        return wrapped

    inner = backend(traced).wsgi  # the instrumented app's inner WSGI callable
    service = OpenTelemetryMiddleware(own_middleware(inner), tracer_provider=traced.provider)
    with serve_wsgi(service) as url:
        answer = get(url, {"baggage": FORGED, "X-Session-Id": "from-our-cookie"})
    assert answer["session"] == "from-our-cookie"
    assert traced.session_of("handler") == "from-our-cookie"
    assert "victim" not in stamped_sessions(traced)


@pytest.mark.parametrize(("trusted", "expected"), [(False, None), (True, "conv-9")])
def test_session_travels_between_two_services_and_is_accepted_only_when_trusted(
    monkeypatch: pytest.MonkeyPatch, trusted: bool, expected: str | None
) -> None:
    monkeypatch.setenv("LANGFUSE_OTEL_PROPAGATE_SESSION_TO", "*")  # the sender opts in
    sender = make_traced(guard_remote_baggage=False)
    receiver = make_traced(trust_remote_baggage=trusted)
    with serve_wsgi(backend(receiver)) as back_url:

        def front(environ: dict[str, Any], start_response: StartResponse) -> Any:
            with session("conv-9"), sender.tracer.start_as_current_span("front call"):
                headers: dict[str, str] = {}
                propagate.inject(headers)  # what an instrumented HTTP client does
                answer = get(back_url, headers)
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(answer).encode()]

        front_service = OpenTelemetryMiddleware(front, tracer_provider=sender.provider)
        with serve_wsgi(front_service) as front_url:
            answer = get(front_url, {})
    assert answer["session"] == expected
    assert receiver.session_of("handler") == expected
    assert sender.session_of("front call") == "conv-9"


def test_untrusted_session_entries_are_not_forwarded_downstream() -> None:
    install_baggage_guard()
    incoming = propagate.extract({"baggage": FORGED + ",tenant=acme"})
    outgoing: dict[str, str] = {}
    propagate.inject(outgoing, context=incoming)
    assert "victim" not in outgoing.get("baggage", "")
    assert "tenant=acme" in outgoing["baggage"]


def test_a_local_session_survives_an_extract_that_tries_to_replace_it() -> None:
    guard = BaggageGuard(propagate.get_global_textmap())
    local = baggage.set_baggage("langfuse.session.id", "mine")
    extracted = guard.extract({"baggage": FORGED}, context=local)
    assert baggage.get_baggage("langfuse.session.id", extracted) == "mine"
    assert baggage.get_baggage("session.id", extracted) is None


def test_install_is_idempotent() -> None:
    assert install_baggage_guard() is True
    assert install_baggage_guard() is False
    assert not isinstance(propagate.get_global_textmap().inner, BaggageGuard)  # type: ignore[attr-defined]


def test_session_baggage_propagator_entry_point() -> None:
    (entry,) = entry_points(group="opentelemetry_propagator", name="langfuse_baggage")
    propagator = entry.load()()
    assert isinstance(propagator, SessionBaggagePropagator)
    extracted = propagator.extract({"baggage": FORGED + ",tenant=acme"})
    assert baggage.get_all(extracted) == {"tenant": "acme"}
    trusted = SessionBaggagePropagator(trust_remote_baggage=True).extract({"baggage": FORGED})
    assert baggage.get_baggage("langfuse.session.id", trusted) == "victim"


def test_otel_propagators_variable_selects_the_guarded_propagator() -> None:
    code = (
        "from opentelemetry import propagate, baggage;"
        "ctx = propagate.extract({'baggage': 'session.id=victim,tenant=acme'});"
        "print(dict(baggage.get_all(ctx)))"
    )
    env = {"OTEL_PROPAGATORS": "tracecontext,langfuse_baggage", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "{'tenant': 'acme'}"


def test_configure_installs_the_guard_with_the_processor_s_trust_and_the_stricter_wins() -> None:
    before = W3CBaggagePropagator()
    propagate.set_global_textmap(before)
    SessionSpanProcessor(trust_remote_baggage=True)
    assert propagate.get_global_textmap() is before  # a constructor changes no global state
    trusting = SessionSpanProcessor(trust_remote_baggage=True)
    configure(TracerProvider(), export=False, processor=trusting)
    guard = propagate.get_global_textmap()
    assert isinstance(guard, BaggageGuard)  # it applies the outbound policy
    assert guard.trusted
    assert guard.inner is before
    configure(TracerProvider(), export=False)
    assert guard.trusted is False


def test_an_app_whose_first_import_is_this_package_starts_with_the_guarded_propagator() -> None:
    code = (
        "import langfuse_otel_sessions;"
        "from opentelemetry import propagate, baggage;"
        "ctx = propagate.extract({'baggage': 'session.id=victim,tenant=acme'});"
        "print(dict(baggage.get_all(ctx)))"
    )
    env = {"OTEL_PROPAGATORS": "tracecontext,langfuse_baggage", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "{'tenant': 'acme'}"
