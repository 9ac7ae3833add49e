"""Cost per span of stamping sessions, against the floor and the alternatives, in one run.

Each configuration is a real SDK ``TracerProvider``; the measured unit is one child span's
start + end inside a parent, with the baggage in the parent context, timed in the CPU time of
the measuring thread (other processes on a shared machine do not count). Rounds are interleaved
(shuffled order each round) so drift hits every configuration alike; the table shows the median
CPU ns per span and the median of the per-round ratios to the floor (no processor).

The sampling rows compare ``SessionSampler`` with ``ParentBased(TraceIdRatioBased)`` at the same
ratio (``--ratio``, default 0.1), both with the processor: child spans under a kept parent (the
sampler only follows it), and local roots, where the sampler decides: each of those spans
starts in the next of 1,000 sessions, so about ``ratio`` of them are kept.

The concurrent rows interleave open requests (``--requests``, default 1, 64 and 10,000): each
request is a server span in a ``session()`` scope of its own, and span i starts in request
``i % count``; their ratios are to the floor with as many open requests. Beside ours, each
shows the least any stamping pays (the same attributes, precomputed and carried in the same
contexts, set by a bare processor) and ``BaggageSpanProcessor`` given the same contexts.

Run: ``python benchmarks/span_processor.py`` (``--rounds``/``--spans``/``--ratio``/``--requests``).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased

from langfuse_otel_sessions import Session, SessionSampler, SessionSpanProcessor, session
from langfuse_otel_sessions.spans.memory import MEMORY

OTHER_ENTRIES = {f"tenant.key{i}": f"value-{i}" for i in range(8)}
SESSION_ID = "session_0123456789abcdef01234567"


class MinimalStampingProcessor(SpanProcessor):
    """The least any baggage-stamping processor does: one look-up, one set_attribute. A
    reference for what our validation, trust boundary and trace fallback cost on top."""

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        value = baggage.get_baggage("langfuse_session_id", parent_context)
        if value is not None:
            span.set_attribute("langfuse.session.id", value)  # type: ignore[arg-type]


PRECOMPUTED = context.create_key("benchmark.precomputed-attributes")


class PrecomputedProcessor(SpanProcessor):
    """The least any stamping pays: the attributes our processor stamps, worked out beforehand
    and carried in the context, set as ours sets them (one call for many, one per key for few)."""

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        ctx = context.get_current() if parent_context is None else parent_context
        attributes: dict[str, Any] | None = ctx.get(PRECOMPUTED)  # type: ignore[assignment]
        if attributes is None:
            return
        if len(attributes) > 2:
            span.set_attributes(attributes)
        else:
            for key, value in attributes.items():
                span.set_attribute(key, value)


def _precomputed(
    provider: TracerProvider, contexts: Sequence[context.Context]
) -> tuple[context.Context, ...]:
    """``contexts``, each carrying what ``provider``'s processors stamp on a span started in it."""
    tracer = provider.get_tracer("probe")
    carried = []
    for ctx in contexts:
        probe = tracer.start_span("probe", context=ctx)
        carried.append(context.set_value(PRECOMPUTED, dict(probe.attributes or {}), ctx))
        probe.end()
    return tuple(carried)


class DiscardingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


@dataclass
class Case:
    name: str
    tracer: trace.Tracer
    parent_context: context.Context
    #: when set, span i starts in ``contexts[i % len(contexts)]`` instead of ``parent_context``
    contexts: tuple[context.Context, ...] = field(default=())
    #: the case its ratio is taken to
    floor: str = "no processor (floor)"


def _parent_context(provider: TracerProvider, base: context.Context) -> context.Context:
    parent = provider.get_tracer("bench").start_span("parent", context=base)
    return trace.set_span_in_context(parent, base)


def _with_entries(count: int, key: str = "langfuse_session_id") -> context.Context:
    ctx = context.Context()
    ctx = baggage.set_baggage(key, SESSION_ID, ctx)
    for name, value in list(OTHER_ENTRIES.items())[: count - 1]:
        ctx = baggage.set_baggage(name, value, ctx)
    return ctx


def _with_trace_attributes(others: int) -> context.Context:
    """A scope with session, user, three tags, two metadata keys and environment, plus
    ``others`` other baggage entries."""
    ctx = session(
        SESSION_ID,
        user_id="user-1",
        tags=["alpha", "beta", "gamma"],
        metadata={"tenant": "acme", "plan": "pro"},
        environment="production",
    ).context(context.Context())
    for name, value in list(OTHER_ENTRIES.items())[:others]:
        ctx = baggage.set_baggage(name, value, ctx)
    return ctx


def _provider(*processors: SpanProcessor, sampler: Sampler | None = None) -> TracerProvider:
    provider = TracerProvider(sampler=sampler)
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def _case(name: str, provider: TracerProvider, base: context.Context) -> Case:
    return Case(name, provider.get_tracer("third.party"), _parent_context(provider, base))


def _kept_parent(provider: TracerProvider, base: context.Context) -> context.Context:
    """A parent context whose span the provider's sampler kept (a trace-id ratio sampler may
    drop the first ones)."""
    while True:
        parent = provider.get_tracer("bench").start_span("parent", context=base)
        if parent.is_recording():
            return trace.set_span_in_context(parent, base)


def _sampling_cases(ratio: float) -> list[Case]:
    """SessionSampler against ParentBased(TraceIdRatioBased) at ``ratio``, with the processor."""
    samplers: list[tuple[str, Sampler]] = [
        (f"ParentBased(TraceIdRatioBased({ratio}))", ParentBased(TraceIdRatioBased(ratio))),
        (f"SessionSampler({ratio})", SessionSampler(ratio)),
    ]
    sessions = tuple(
        baggage.set_baggage("langfuse_session_id", f"session_{i:024x}", context.Context())
        for i in range(1000)
    )
    kept_session = next(
        ctx
        for ctx in sessions
        if SessionSampler(ratio).keeps_hash_of(str(baggage.get_baggage("langfuse_session_id", ctx)))
    )
    cases = []
    for name, sampler in samplers:
        processor = SessionSpanProcessor()
        if isinstance(sampler, SessionSampler):
            sampler.read_like(processor)
        provider = _provider(processor, sampler=sampler)
        tracer = provider.get_tracer("third.party")
        cases += [
            Case(
                f"{name} + processor, child of a kept parent",
                tracer,
                _kept_parent(provider, kept_session),
            ),
            Case(
                f"{name} + processor, roots in 1,000 sessions", tracer, context.Context(), sessions
            ),
        ]
    return cases


def _requests(
    provider: TracerProvider, count: int, others: int, *, full: bool = False
) -> tuple[context.Context, ...]:
    """``count`` open requests: each a server span in a session() scope of its own (session,
    user; with ``full``, tags, three metadata keys and environment) plus ``others`` other
    baggage entries."""
    extra = {"tags": ["alpha", "beta"], "environment": "production"} if full else {}
    metadata = {"tenant": "acme", "plan": "pro", "region": "eu"} if full else None
    contexts = []
    for i in range(count):
        scope = session(f"session_{i:024x}", user_id=f"user-{i}", metadata=metadata, **extra)  # type: ignore[arg-type]
        ctx = scope.context(context.Context())
        for name, value in list(OTHER_ENTRIES.items())[:others]:
            ctx = baggage.set_baggage(name, value, ctx)
        server = provider.get_tracer("server").start_span("server", context=ctx)
        contexts.append(trace.set_span_in_context(server, ctx))
    return tuple(contexts)


def concurrent_cases(counts: Sequence[int] = (1, 64, 10_000)) -> list[Case]:
    """Interleaved requests: span i starts in request ``i % count`` (1 and 8 other entries),
    against the floor with as many requests; beside ours, the same attributes precomputed
    (:class:`PrecomputedProcessor`) and BaggageSpanProcessor, both given the same contexts."""
    from opentelemetry.processor.baggage import (  # noqa: PLC0415 - optional comparison
        ALLOW_ALL_BAGGAGE_KEYS,
        BaggageSpanProcessor,
    )

    theirs = BaggageSpanProcessor(ALLOW_ALL_BAGGAGE_KEYS)
    cases = []
    for count in counts:
        bare = _provider()
        floor = f"no processor: {count:,} open requests"
        bare_requests = _requests(bare, count, 1)
        cases.append(Case(floor, bare.get_tracer("t"), context.Context(), bare_requests, floor))
        for others in (1, 8):
            for full in (False, True):
                what = "session+user+tags+3 metadata+env" if full else "session+user"
                ours = _provider(SessionSpanProcessor())
                contexts = _requests(ours, count, others, full=full)
                reference = _provider(PrecomputedProcessor())
                for name, provider, carried in (
                    ("SessionSpanProcessor", ours, contexts),
                    ("the same, precomputed (reference)", reference, _precomputed(ours, contexts)),
                    ("BaggageSpanProcessor(ALLOW_ALL)", _provider(theirs), contexts),
                ):
                    row = f"{name}: {count:,} open requests, {what}, {others} other"
                    tracer = provider.get_tracer("t")
                    cases.append(Case(row, tracer, carried[0], carried, floor))
    return cases


def build_cases(ratio: float = 0.1) -> list[Case]:
    ours = SessionSpanProcessor()
    preset = SessionSpanProcessor(also_emit="otel")
    minimal = MinimalStampingProcessor()
    cases = [
        _case("no processor (floor)", _provider(), _with_entries(1)),
        _case("minimal stamping processor (reference)", _provider(minimal), _with_entries(1)),
        _case("SessionSpanProcessor, 1 entry", _provider(ours), _with_entries(1)),
        _case("SessionSpanProcessor, 8 entries", _provider(ours), _with_entries(8)),
        _case(
            "SessionSpanProcessor, full trace scope + 1 other entry",
            _provider(ours),
            _with_trace_attributes(1),
        ),
        _case(
            "SessionSpanProcessor, full trace scope + 8 other entries",
            _provider(ours),
            _with_trace_attributes(8),
        ),
        _case(
            'SessionSpanProcessor(also_emit="otel"), 1 entry', _provider(preset), _with_entries(1)
        ),
        _case(
            'SessionSpanProcessor(also_emit="otel"), generated session + user',
            _provider(preset),
            session(Session.start(), user_id="user-1").context(context.Context()),
        ),
    ]
    try:
        from opentelemetry.processor.baggage import (  # noqa: PLC0415 - optional comparison
            ALLOW_ALL_BAGGAGE_KEYS,
            BaggageSpanProcessor,
        )
    except ImportError:
        print("(opentelemetry-processor-baggage not installed: skipped)", file=sys.stderr)
    else:
        theirs = BaggageSpanProcessor(ALLOW_ALL_BAGGAGE_KEYS)
        cases += [
            _case("BaggageSpanProcessor(ALLOW_ALL), 1 entry", _provider(theirs), _with_entries(1)),
            _case(
                "BaggageSpanProcessor(ALLOW_ALL), 8 entries", _provider(theirs), _with_entries(8)
            ),
        ]
    cases += _langfuse_cases()
    floor_roots = _provider()
    sessions = (_with_entries(1),)
    cases.append(
        Case("no processor, roots (always on)", floor_roots.get_tracer("t"), sessions[0], sessions)
    )
    cases += _sampling_cases(ratio)
    return cases


def _langfuse_cases() -> list[Case]:
    try:
        from langfuse import propagate_attributes  # noqa: PLC0415 - optional comparison
        from langfuse._client.span_processor import (  # noqa: PLC0415
            LangfuseSpanProcessor,
        )
    except ImportError:
        print("(langfuse not installed: skipped)", file=sys.stderr)
        return []
    processor = LangfuseSpanProcessor(
        public_key="pk-lf-bench",
        secret_key="sk-lf-bench",  # noqa: S106 - a dummy; the exporter discards everything
        base_url="http://127.0.0.1:9",
        span_exporter=DiscardingExporter(),
    )
    provider = _provider(processor)
    token = context.attach(context.Context())
    try:
        with propagate_attributes(session_id=SESSION_ID, as_baggage=True):
            base = context.get_current()
    finally:
        context.detach(token)
    return [_case("Langfuse SDK 5 processor + propagate_attributes", provider, base)]


def time_case(case: Case, spans: int) -> float:
    """CPU ns per span start+end (a child of the parent context, or a root in each context)."""
    start_span = case.tracer.start_span
    contexts = list(
        itertools.islice(itertools.cycle(case.contexts or (case.parent_context,)), spans)
    )
    gc.collect()
    gc.disable()  # as timeit does: collector pauses land on whichever case happens to run
    try:
        begin = time.thread_time_ns()  # all the work runs in this thread
        for parent in contexts:  # the same loop for every case
            start_span("child", context=parent).end()
        return (time.thread_time_ns() - begin) / spans
    finally:
        gc.enable()


def run(
    rounds: int, spans: int, ratio: float = 0.1, requests: Sequence[int] = ()
) -> list[tuple[str, float, float]]:
    cases = build_cases(ratio) + concurrent_cases(requests)
    for case in cases:  # warm up caches and code paths
        time_case(case, spans)
    timings: dict[str, list[float]] = {case.name: [] for case in cases}
    ratios: dict[str, list[float]] = {case.name: [] for case in cases}
    for _ in range(rounds):
        order = cases[:]
        random.shuffle(order)
        this_round = {case.name: time_case(case, spans) for case in order}
        for case in cases:
            timings[case.name].append(this_round[case.name])
            ratios[case.name].append(this_round[case.name] / this_round[case.floor])
    return [
        (name, statistics.median(timings[name]), statistics.median(ratios[name]))
        for name in timings
    ]


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> None:
    MEMORY.budget = 1 << 30  # this one process holds the open requests of every row at once
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=51)
    parser.add_argument("--spans", type=int, default=2000)
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument("--requests", default="1,64,10000", help="open requests, interleaved")
    args = parser.parse_args(argv)
    requests = [int(count) for count in args.requests.split(",") if count]
    rows = run(args.rounds, args.spans, args.ratio, requests)
    out(f"Python {sys.version.split()[0]}, {args.rounds} rounds x {args.spans} spans, interleaved")
    out("")
    out("| configuration | median CPU ns/span | ratio to floor |")
    out("| --- | ---: | ---: |")
    for name, ns, ratio in rows:
        out(f"| {name} | {ns:,.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
