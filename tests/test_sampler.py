"""SessionSampler: whole sessions kept or dropped, by a stable hash, with the real SDK."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import baggage, propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from langfuse_otel_sessions import (
    ConfigurationError,
    SessionSampler,
    SessionSpanProcessor,
    install_baggage_guard,
    session,
)
from langfuse_otel_sessions.attributes import LANGFUSE_SESSION_ID
from langfuse_otel_sessions.spans.sampler import session_hash

from .servers import run_python

SESSIONS = 10_000
TRACES_PER_SESSION = 3


def _kept_at(ratio: float, session_id: str) -> bool:
    return SessionSampler(ratio).keeps_hash_of(session_id)


def _session_ids(count: int = SESSIONS) -> list[str]:
    return [f"conversation-{i}" for i in range(count)]


class Sampled:
    """A provider with the sampler, the processor and an in-memory exporter."""

    def __init__(
        self,
        sampler: SessionSampler,
        processor: SessionSpanProcessor | None = None,
        *,
        guard: bool = True,
    ) -> None:
        self.processor = processor or SessionSpanProcessor()
        if guard:  # as configure() does
            install_baggage_guard(trust_remote_baggage=self.processor.trust_remote_baggage)
        sampler.read_like(self.processor)
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(sampler=sampler)
        self.provider.add_span_processor(self.processor)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("app")

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def names(self) -> list[str]:
        return sorted(s.name for s in self.spans())

    def conversation(self, session_id: str, traces: int = TRACES_PER_SESSION) -> None:
        """``traces`` requests of one conversation, each a root and two nested spans."""
        with session(session_id):
            for turn in range(traces):
                turn_span = self.tracer.start_as_current_span(f"turn {turn}")
                with turn_span, self.tracer.start_as_current_span("llm"):
                    self.tracer.start_span("tool").end()


def _remote_parent(sampled: bool) -> Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    parent = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(parent))


def _a_session(kept: bool, ratio: float = 0.5) -> str:
    """A session id the ratio keeps (or drops)."""
    return next(s for s in _session_ids(100) if _kept_at(ratio, s) is kept)


# --- statistics -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conversations_at_a_tenth() -> Iterator[Sampled]:
    before = propagate.get_global_textmap()
    sampled = Sampled(SessionSampler(0.1))
    for session_id in _session_ids():
        sampled.conversation(session_id)
    yield sampled
    sampled.provider.shutdown()
    propagate.set_global_textmap(before)  # the guard Sampled installed, for this module only


def _tolerance(ratio: float, n: int) -> float:
    """Four standard deviations of a binomial proportion: the tolerance the tests state."""
    return 4 * math.sqrt(ratio * (1 - ratio) / n)


def test_the_kept_fraction_of_10000_sessions_is_within_four_sigma_of_the_ratio(
    conversations_at_a_tenth: Sampled,
) -> None:
    kept = {s.attributes[LANGFUSE_SESSION_ID] for s in conversations_at_a_tenth.spans()}
    fraction = len(kept) / SESSIONS
    assert abs(fraction - 0.1) <= _tolerance(0.1, SESSIONS)  # 0.1 +- 0.012


@pytest.mark.parametrize("ratio", [0.01, 0.25, 0.5, 0.9])
def test_the_kept_fraction_holds_at_other_ratios(ratio: float) -> None:
    sampler = SessionSampler(ratio)
    kept = sum(sampler.keeps_hash_of(s) for s in _session_ids())
    assert abs(kept / SESSIONS - ratio) <= _tolerance(ratio, SESSIONS)


def test_every_session_is_all_in_or_all_out(conversations_at_a_tenth: Sampled) -> None:
    spans_per_session: dict[object, int] = {}
    for span in conversations_at_a_tenth.spans():
        key = span.attributes[LANGFUSE_SESSION_ID]
        spans_per_session[key] = spans_per_session.get(key, 0) + 1
    assert spans_per_session  # some were kept
    assert set(spans_per_session.values()) == {TRACES_PER_SESSION * 3}
    traces = {s.context.trace_id for s in conversations_at_a_tenth.spans()}
    assert len(traces) == len(spans_per_session) * TRACES_PER_SESSION


def test_ratio_zero_keeps_no_session_and_ratio_one_keeps_every_session() -> None:
    for ratio, expected in ((0.0, 0), (1.0, 100)):
        sampled = Sampled(SessionSampler(ratio))
        for session_id in _session_ids(100):
            sampled.conversation(session_id, traces=1)
        assert len(sampled.spans()) == expected * 3


DECIDE_IN_A_PROCESS = """
import sys
from opentelemetry.sdk.trace import TracerProvider
from langfuse_otel_sessions import SessionSampler, SessionSpanProcessor, session

processor = SessionSpanProcessor()
sampler = SessionSampler(0.1)
sampler.read_like(processor)
tracer = TracerProvider(sampler=sampler).get_tracer("app")
for i in range(int(sys.argv[1])):
    with session(f"conversation-{i}"):
        with tracer.start_as_current_span("turn") as span:
            if span.is_recording():
                print(i)
"""


def test_two_processes_with_the_same_ratio_agree_on_every_session(
    conversations_at_a_tenth: Sampled,
) -> None:
    here = {
        int(str(s.attributes[LANGFUSE_SESSION_ID]).rsplit("-", 1)[1])
        for s in conversations_at_a_tenth.spans()
    }
    # Different PYTHONHASHSEEDs: the decision must not depend on Python's hash().
    outputs = [
        run_python("-c", DECIDE_IN_A_PROCESS, str(SESSIONS), env={"PYTHONHASHSEED": seed})
        for seed in ("1", "2")
    ]
    for output in outputs:
        assert {int(line) for line in output.split()} == here


def test_decisions_are_monotone_in_the_ratio() -> None:
    ratios = [0.0, 0.05, 0.1, 0.2, 0.5, 0.9, 1.0]
    kept = [{s for s in _session_ids() if _kept_at(r, s)} for r in ratios]
    for lower, higher in itertools.pairwise(kept):
        assert lower <= higher
    assert kept[0] == set()
    assert len(kept[-1]) == SESSIONS


@given(st.text(min_size=1, max_size=200), st.floats(0, 1), st.floats(0, 1))
def test_a_session_kept_at_a_ratio_is_kept_at_every_higher_ratio(
    session_id: str, a: float, b: float
) -> None:
    low, high = sorted((a, b))
    assert not _kept_at(low, session_id) or _kept_at(high, session_id)


def test_the_hash_is_the_documented_sha256_prefix() -> None:
    # Written out so that a port to another language can check itself against these values:
    # the first 8 bytes, big-endian, of SHA-256 over the UTF-8 id; kept when below ratio * 2**64.
    assert session_hash("conversation-0") == 0x2A10E8D731F21D0C
    assert session_hash("café-ü") == 0x23BD1DA7ACA2D8B3
    assert _kept_at(0x2A10E8D731F21D0D / 2**64, "conversation-0")
    assert not _kept_at(0x2A10E8D731F21D0C / 2**64 - 1e-12, "conversation-0")


# --- parents, fallback, allow rules ---------------------------------------------------------


def test_a_span_with_a_sampled_local_parent_follows_it_whatever_its_session() -> None:
    sampled = Sampled(SessionSampler(0.5))
    root = sampled.tracer.start_as_current_span("root")
    with session(_a_session(kept=True)), root, session(_a_session(kept=False)):
        sampled.tracer.start_span("child").end()  # a later scope inside the kept trace
    assert sampled.names() == ["child", "root"]


def test_a_span_with_an_unsampled_local_parent_is_dropped_whatever_its_session() -> None:
    sampled = Sampled(SessionSampler(0.5))
    root = sampled.tracer.start_as_current_span("root")
    with session(_a_session(kept=False)), root, session(_a_session(kept=True)):
        sampled.tracer.start_span("child").end()
    assert sampled.names() == []


def _trusting() -> SessionSpanProcessor:
    return SessionSpanProcessor(trust_remote_baggage=True)


@pytest.mark.parametrize("parent_sampled", [True, False])
def test_a_trusted_callers_remote_parent_is_followed_by_default(parent_sampled: bool) -> None:
    sampled = Sampled(SessionSampler(0.5), _trusting())
    with session(_a_session(kept=not parent_sampled)):
        sampled.tracer.start_span("server", context=_remote_parent(parent_sampled)).end()
    assert sampled.names() == (["server"] if parent_sampled else [])


@pytest.mark.parametrize("parent_sampled", [True, False])
def test_an_untrusted_callers_remote_parent_never_decides(parent_sampled: bool) -> None:
    sampled = Sampled(SessionSampler(0.5, fallback=ALWAYS_OFF))  # trusting no caller
    kept = _a_session(kept=True)
    for session_id in (kept, _a_session(kept=False)):
        context = session(session_id).context(_remote_parent(parent_sampled))
        sampled.tracer.start_span(session_id, context=context).end()
    sampled.tracer.start_span("no session", context=_remote_parent(parent_sampled)).end()
    assert sampled.names() == [kept]  # by the session, else the fallback: never by the flag


@pytest.mark.parametrize("parent_sampled", [True, False])
def test_without_following_remote_parents_the_session_decides(parent_sampled: bool) -> None:
    sampled = Sampled(SessionSampler(0.5, follow_remote_parent=False), _trusting())
    kept = _a_session(kept=True)
    for session_id in (kept, _a_session(kept=False)):
        context = baggage.set_baggage("session.id", session_id, _remote_parent(parent_sampled))
        sampled.tracer.start_span(session_id, context=context).end()
    assert sampled.names() == [kept]


def test_spans_without_a_session_fall_back_to_a_trace_id_ratio_at_the_same_rate() -> None:
    sampled = Sampled(SessionSampler(0.25))
    for _ in range(4000):
        with sampled.tracer.start_as_current_span("root"):
            sampled.tracer.start_span("child").end()
    spans = sampled.spans()
    roots = sum(1 for s in spans if s.name == "root")
    assert abs(roots / 4000 - 0.25) <= _tolerance(0.25, 4000)
    assert len(spans) == 2 * roots  # children follow their root


def test_the_fallback_is_configurable() -> None:
    sampled = Sampled(SessionSampler(0.0, fallback=ALWAYS_ON))
    with session("any-session"):
        sampled.tracer.start_span("in a session").end()
    sampled.tracer.start_span("no session").end()
    assert sampled.names() == ["no session"]


def test_allow_rules_keep_listed_sessions_and_users_whatever_the_ratio() -> None:
    sampled = Sampled(
        SessionSampler(
            0.0,
            fallback=ALWAYS_OFF,
            always_keep_sessions={"qa-session"},
            always_keep=lambda session_id, user_id: (
                (session_id or "").startswith("internal-") or user_id == "tester@example.com"
            ),
        )
    )
    for session_id, user_id in [
        ("qa-session", None),
        ("customer-1", "tester@example.com"),
        ("internal-42", "someone"),
        ("customer-2", "customer@example.com"),
    ]:
        with session(session_id, user_id=user_id):
            sampled.tracer.start_span(session_id).end()
    with session("customer-3"):  # a user given as an attribute at start counts too
        sampled.tracer.start_span("attr", attributes={"user.id": "tester@example.com"}).end()
    assert sampled.names() == ["attr", "customer-1", "internal-42", "qa-session"]


def test_allow_lists_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSE_OTEL_SAMPLER_KEEP_SESSIONS", "qa-1, qa-2")
    sampler = SessionSampler(0.0)
    assert sampler.always_keep_sessions == {"qa-1", "qa-2"}
    assert SessionSampler(0.0, always_keep_sessions=()).always_keep_sessions == frozenset()


def test_a_raising_allow_rule_never_reaches_the_app(caplog: pytest.LogCaptureFixture) -> None:
    def broken(session_id: str | None, user_id: str | None) -> bool:
        raise RuntimeError("bug in the rule")

    sampled = Sampled(SessionSampler(0.5, always_keep=broken))
    with caplog.at_level(logging.ERROR, "langfuse_otel_sessions"):
        for kept in (True, False):
            with session(_a_session(kept=kept)):
                sampled.tracer.start_span(f"kept={kept}").end()
    assert sampled.names() == ["kept=True"]  # the ratio decided
    assert "always_keep rule raised" in caplog.text


def test_a_session_given_as_an_attribute_at_start_wins_over_baggage() -> None:
    sampled = Sampled(SessionSampler(0.5, fallback=ALWAYS_OFF))
    with session(_a_session(kept=False)):
        sampled.tracer.start_span(
            "explicit", attributes={LANGFUSE_SESSION_ID: _a_session(kept=True)}
        ).end()
    sampled.tracer.start_span("kept", attributes={"session.id": _a_session(kept=True)}).end()
    assert sampled.names() == ["explicit", "kept"]


@pytest.mark.parametrize(
    "bad",
    [
        {"ratio": -0.1},
        {"ratio": 1.5},
        {"ratio": True},
        {"ratio": "0.1"},
        {"fallback": "on"},
        {"always_keep_sessions": "alice"},
        {"always_keep_sessions": [""]},
        {"always_keep": 3},
    ],
)
def test_bad_explicit_options_raise_a_configuration_error(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        SessionSampler(**bad)  # type: ignore[arg-type]


def test_the_description_names_the_ratio() -> None:
    assert SessionSampler(0.1).get_description() == "SessionSampler{0.1}"


# --- reading the session exactly as the processor does --------------------------------------


def test_a_forged_baggage_header_does_not_choose_the_decision() -> None:
    kept = _a_session(kept=True)
    # The processor (and so the sampler) does not trust remote baggage: the guard withholds it.
    untrusted = Sampled(SessionSampler(0.5, fallback=ALWAYS_OFF), SessionSpanProcessor())
    install_baggage_guard()  # as configure() does
    forged = propagate.extract({"baggage": f"langfuse.session.id={kept}"})
    untrusted.tracer.start_span("server", context=forged).end()
    assert untrusted.names() == []
    # Behind a trusted edge the same header is the session, for the sampler as for the processor.
    trusted = Sampled(
        SessionSampler(0.5, fallback=ALWAYS_OFF), SessionSpanProcessor(trust_remote_baggage=True)
    )
    install_baggage_guard(trust_remote_baggage=True)
    forged = propagate.extract({"baggage": f"langfuse.session.id={kept}"})
    trusted.tracer.start_span("server", context=forged).end()
    assert [s.attributes[LANGFUSE_SESSION_ID] for s in trusted.spans()] == [kept]


def test_the_sampler_reads_the_keys_the_processor_reads() -> None:
    kept = _a_session(kept=True)
    processor = SessionSpanProcessor(session_keys=("conversation_id",))  # guarded: baggage the
    sampled = Sampled(SessionSampler(0.5, fallback=ALWAYS_OFF), processor)  # app set counts
    context = baggage.set_baggage("conversation_id", kept, Context())
    sampled.tracer.start_span("custom key", context=context).end()
    context = baggage.set_baggage("session.id", kept, Context())  # not a key this processor reads
    sampled.tracer.start_span("default key", context=context).end()
    assert sampled.names() == ["custom key"]


def test_an_invalid_session_id_is_not_a_session_for_the_sampler() -> None:
    sampled = Sampled(SessionSampler(1.0, fallback=ALWAYS_OFF))
    context = baggage.set_baggage("session.id", "x" * 201, Context())
    sampled.tracer.start_span("too long", context=context).end()
    assert sampled.names() == []


def test_the_sampler_result_carries_no_attributes_and_the_parents_trace_state() -> None:
    sampler = SessionSampler(1.0)
    result = sampler.should_sample(_remote_parent(True), 0xABC, "span")
    assert result.decision is Decision.RECORD_AND_SAMPLE
    assert dict(result.attributes) == {}


# --- through a real web service -------------------------------------------------------------


def _service(sampled: Sampled) -> object:
    """A WSGI app under OpenTelemetry's middleware, under ours (the session known at the server
    span's start, as sampling needs), each request making a nested span."""
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    from langfuse_otel_sessions import WSGISessionMiddleware

    def app(environ: dict[str, object], start_response: object) -> list[bytes]:
        sampled.tracer.start_span("llm call").end()
        start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
        return [b"ok"]

    traced_app = OpenTelemetryMiddleware(app, tracer_provider=sampled.provider)
    return WSGISessionMiddleware(traced_app)


def test_a_web_service_keeps_or_drops_each_conversation_whole() -> None:
    import urllib.request

    from .servers import serve_wsgi

    sampled = Sampled(SessionSampler(0.5, fallback=ALWAYS_OFF), SessionSpanProcessor())
    sessions = _session_ids(30)
    with serve_wsgi(_service(sampled)) as url:
        for session_id in sessions:
            for _ in range(2):
                request = urllib.request.Request(url, headers={"X-Session-Id": session_id})
                with urllib.request.urlopen(request, timeout=10) as response:
                    assert response.read() == b"ok"
        forged = urllib.request.Request(url, headers={"baggage": f"session.id={sessions[0]}"})
        with urllib.request.urlopen(forged, timeout=10) as response:
            response.read()
    per_session: dict[object, int] = {}
    for span in sampled.spans():
        key = span.attributes[LANGFUSE_SESSION_ID]
        per_session[key] = per_session.get(key, 0) + 1
    assert set(per_session) == {s for s in sessions if _kept_at(0.5, s)}
    assert set(per_session.values()) == {4}  # 2 requests x (server span + llm call)


def test_a_sampler_without_a_processor_reads_what_current_session_id_reads() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from langfuse_otel_sessions import current_session_id, install_baggage_guard
    from langfuse_otel_sessions.baggage_keys import readers

    before = len(readers())
    sampler = SessionSampler(0.5, fallback=ALWAYS_OFF)  # bound to no processor
    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    kept = _a_session(kept=True)
    with session(kept):
        assert current_session_id() == kept
        tracer.start_span("scoped").end()
    install_baggage_guard()  # as configure() does
    forged = propagate.extract({"baggage": f"langfuse.session.id={kept}"})
    assert current_session_id(forged) is None
    tracer.start_span("forged", context=forged).end()
    assert [s.name for s in memory.get_finished_spans()] == ["scoped"]
    assert len(readers()) == before  # the sampler registers no reader of its own


def test_a_failure_while_reading_the_session_never_reaches_the_app(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("a bug while reading baggage")

    monkeypatch.setattr("langfuse_otel_sessions.spans.sampler.ids_of", broken)
    sampled = Sampled(SessionSampler(0.5, fallback=ALWAYS_ON))
    with caplog.at_level(logging.ERROR, "langfuse_otel_sessions"), session(_a_session(False)):
        sampled.tracer.start_span("still created").end()  # the fallback decided
    assert "still created" in sampled.names()
    assert "SessionSampler could not read the session" in caplog.text
