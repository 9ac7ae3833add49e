"""Cost per span of exporting 512-span batches to a loopback server, in one interleaved run:
the stock ``OTLPSpanExporter`` against ``LangfuseSpanExporter`` (mapping included), gzip on and
off. The server runs in a separate process and answers 200 at once.

Batches look like a chat service's: 64 traces of 8 spans; each trace's root (the server span)
started before the session was set, so the mapping completes it and copies it.

A second table measures holding spans for late sessions: 64 running requests whose first 4
spans end (and are exported) before the session is known, then 4 more spans in the session and
the root. With holding on, the first batch is held and sent with the second, completed with the
session; with it off (``late_session_seconds=0``) it is sent at once without a session.

Run: ``python benchmarks/exporter.py`` (``--rounds`` to change the size).
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from langfuse_otel_sessions import LangfuseSpanExporter, SessionSpanProcessor, session
from langfuse_otel_sessions.local_requests import LocalRequest, request_of

SINK = textwrap.dedent(
    """
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Sink(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink)
    print("ready", flush=True)
    server.serve_forever()
    """
)


def make_batch(traces: int = 64, spans_per_trace: int = 8) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SessionSpanProcessor(guard_remote_baggage=False))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    for i in range(traces):
        with tracer.start_as_current_span("POST /chat", attributes={"http.route": "/chat"}) as root:
            root.set_attribute("langfuse.trace.input", f"question {i}")
            with session(f"session-{i % 8}", user_id=f"user-{i % 8}"):
                for j in range(spans_per_trace - 1):
                    tracer.start_span(
                        f"step {j}", attributes={"gen_ai.request.model": "gpt-4o", "step": j}
                    ).end()
    spans = list(memory.get_finished_spans())
    provider.shutdown()
    return spans


def make_late_batches(
    requests: int = 64, early: int = 4, late: int = 4
) -> tuple[list[ReadableSpan], list[ReadableSpan], list[LocalRequest]]:
    """Spans that ended before the session was known, spans after, and the requests."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SessionSpanProcessor(guard_remote_baggage=False))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    early_spans: list[ReadableSpan] = []
    late_spans: list[ReadableSpan] = []
    for i in range(requests):
        with tracer.start_as_current_span("agent run"):
            for j in range(early):
                tracer.start_span(f"setup {j}", attributes={"step": j}).end()
            early_spans.extend(memory.get_finished_spans())
            memory.clear()
            with session(f"session-{i}"):
                for j in range(late):
                    tracer.start_span(f"llm {j}", attributes={"step": j}).end()
        late_spans.extend(memory.get_finished_spans())
        memory.clear()
    provider.shutdown()
    found = {id(r): r for r in (request_of(s.context) for s in early_spans) if r is not None}
    return early_spans, late_spans, list(found.values())


def run_late(url: str, rounds: int) -> list[tuple[str, float]]:
    """Median µs per span of the two late-session batches, holding on and off."""
    early, late, requests = make_late_batches()
    keys = {"public_key": "pk-lf-bench", "secret_key": "sk-lf-bench", "base_url": url}
    cases = {
        "LangfuseSpanExporter, gzip, late sessions held (default)": LangfuseSpanExporter(**keys),
        "LangfuseSpanExporter, gzip, holding off": LangfuseSpanExporter(
            **keys, late_session_seconds=0
        ),
    }
    remembered = [request.ids for request in requests]
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        order = list(cases.items())
        random.shuffle(order)
        for name, exporter in order:
            # Replay the requests' history: running without a session, then known and ended.
            exporter._recent.clear()  # bench: forget the sessions learned last round
            for request in requests:
                request.ids, request.open = None, True
            begin = time.perf_counter_ns()
            exporter.export(early)
            held = exporter.late_sessions.held_spans  # all of them, or none when off
            assert held in {0, len(early)}, held
            for request, ids in zip(requests, remembered, strict=True):
                request.ids, request.open = ids, False
            exporter.export(late)
            timings[name].append((time.perf_counter_ns() - begin) / (len(early) + len(late)) / 1000)
    for exporter in cases.values():
        exporter.shutdown()
    return [(name, statistics.median(values)) for name, values in timings.items()]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def exporters(url: str) -> dict[str, SpanExporter]:
    endpoint = url + "/api/public/otel/v1/traces"
    keys = {"public_key": "pk-lf-bench", "secret_key": "sk-lf-bench", "base_url": url}
    return {
        "OTLPSpanExporter, gzip": OTLPSpanExporter(endpoint=endpoint, compression=Compression.Gzip),
        "LangfuseSpanExporter, gzip": LangfuseSpanExporter(**keys, compression="gzip"),
        "OTLPSpanExporter, no compression": OTLPSpanExporter(
            endpoint=endpoint, compression=Compression.NoCompression
        ),
        "LangfuseSpanExporter, no compression": LangfuseSpanExporter(**keys, compression="none"),
    }


def run(rounds: int) -> tuple[list[tuple[str, float, float | None]], list[tuple[str, float]]]:
    """Median µs per span of each exporter, and the median per-round ratio to the stock one;
    then the late-session table."""
    batch = make_batch()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SINK, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        cases = exporters(f"http://127.0.0.1:{port}")
        for exporter in cases.values():  # warm up connections
            exporter.export(batch)
        timings: dict[str, list[float]] = {name: [] for name in cases}
        ratios: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            order = list(cases.items())
            random.shuffle(order)
            this_round: dict[str, float] = {}
            for name, exporter in order:
                begin = time.perf_counter_ns()
                exporter.export(batch)
                this_round[name] = (time.perf_counter_ns() - begin) / len(batch) / 1000
            for name, micros in this_round.items():
                timings[name].append(micros)
                stock = name.replace("LangfuseSpanExporter", "OTLPSpanExporter")
                ratios[name].append(micros / this_round[stock])
        for exporter in cases.values():
            exporter.shutdown()
        late_rows = run_late(f"http://127.0.0.1:{port}", rounds)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return [
        (
            name,
            statistics.median(timings[name]),
            statistics.median(ratios[name]) if name.startswith("Langfuse") else None,
        )
        for name in timings
    ], late_rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=41)
    args = parser.parse_args(argv)
    rows, late_rows = run(args.rounds)
    print(f"Python {sys.version.split()[0]}, {args.rounds} rounds of one 512-span batch each")
    print()
    print("| exporter | median µs/span | median ratio to stock, same compression |")
    print("| --- | ---: | ---: |")
    for name, median, ratio in rows:
        print(f"| {name} | {median:.2f} | {'' if ratio is None else f'{ratio:.2f}x'} |")
    print()
    print("64 running requests: 256 spans before the session is known, 256 after (with roots)")
    print()
    print("| exporter | median µs/span over both batches |")
    print("| --- | ---: |")
    for name, median in late_rows:
        print(f"| {name} | {median:.2f} |")


if __name__ == "__main__":
    main()
