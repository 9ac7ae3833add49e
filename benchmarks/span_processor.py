"""Cost per span of stamping sessions, against the floor and the alternatives, in one run.

Each configuration is a real SDK ``TracerProvider``; the measured unit is one child span's
start + end inside a parent, with the baggage in the parent context. Rounds are interleaved
(shuffled order each round) so drift hits every configuration alike; the table shows the median
ns per span and the median of the per-round ratios to the floor (no processor).

Run: ``python benchmarks/span_processor.py`` (``--rounds``/``--spans`` to change the size).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from langfuse_otel_sessions import SessionSpanProcessor

OTHER_ENTRIES = {f"tenant.key{i}": f"value-{i}" for i in range(7)}
SESSION_ID = "session_0123456789abcdef01234567"


class MinimalStampingProcessor(SpanProcessor):
    """The least any baggage-stamping processor does: one look-up, one set_attribute. A
    reference for what our validation, trust boundary and trace fallback cost on top."""

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        value = baggage.get_baggage("langfuse_session_id", parent_context)
        if value is not None:
            span.set_attribute("langfuse.session.id", value)  # type: ignore[arg-type]


class DiscardingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


@dataclass
class Case:
    name: str
    tracer: trace.Tracer
    parent_context: context.Context


def _parent_context(provider: TracerProvider, base: context.Context) -> context.Context:
    parent = provider.get_tracer("bench").start_span("parent", context=base)
    return trace.set_span_in_context(parent, base)


def _with_entries(count: int, key: str = "langfuse_session_id") -> context.Context:
    ctx = context.Context()
    ctx = baggage.set_baggage(key, SESSION_ID, ctx)
    for name, value in list(OTHER_ENTRIES.items())[: count - 1]:
        ctx = baggage.set_baggage(name, value, ctx)
    return ctx


def _provider(*processors: SpanProcessor) -> TracerProvider:
    provider = TracerProvider()
    for processor in processors:
        provider.add_span_processor(processor)
    return provider


def _case(name: str, provider: TracerProvider, base: context.Context) -> Case:
    return Case(name, provider.get_tracer("third.party"), _parent_context(provider, base))


def build_cases() -> list[Case]:
    ours = SessionSpanProcessor(guard_remote_baggage=False)
    minimal = MinimalStampingProcessor()
    cases = [
        _case("no processor (floor)", _provider(), _with_entries(1)),
        _case("minimal stamping processor (reference)", _provider(minimal), _with_entries(1)),
        _case("SessionSpanProcessor, 1 entry", _provider(ours), _with_entries(1)),
        _case("SessionSpanProcessor, 8 entries", _provider(ours), _with_entries(8)),
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
    """ns per child span start+end."""
    start_span = case.tracer.start_span
    parent = case.parent_context
    gc.collect()
    gc.disable()  # as timeit does: collector pauses land on whichever case happens to run
    try:
        begin = time.perf_counter_ns()
        for _ in range(spans):
            start_span("child", context=parent).end()
        return (time.perf_counter_ns() - begin) / spans
    finally:
        gc.enable()


def run(rounds: int, spans: int) -> list[tuple[str, float, float]]:
    cases = build_cases()
    for case in cases:  # warm up caches and code paths
        time_case(case, spans)
    timings: dict[str, list[float]] = {case.name: [] for case in cases}
    ratios: dict[str, list[float]] = {case.name: [] for case in cases}
    floor = cases[0].name
    for _ in range(rounds):
        order = cases[:]
        random.shuffle(order)
        this_round = {case.name: time_case(case, spans) for case in order}
        for name, ns in this_round.items():
            timings[name].append(ns)
            ratios[name].append(ns / this_round[floor])
    return [
        (name, statistics.median(timings[name]), statistics.median(ratios[name]))
        for name in timings
    ]


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=51)
    parser.add_argument("--spans", type=int, default=2000)
    args = parser.parse_args(argv)
    rows = run(args.rounds, args.spans)
    out(f"Python {sys.version.split()[0]}, {args.rounds} rounds x {args.spans} spans, interleaved")
    out("")
    out("| configuration | median ns/span | ratio to floor |")
    out("| --- | ---: | ---: |")
    for name, ns, ratio in rows:
        out(f"| {name} | {ns:,.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
