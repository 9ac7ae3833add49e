"""Cost per span of exporting 512-span batches to a loopback server in another process, in one
interleaved run: OpenTelemetry's ``OTLPSpanExporter`` against ``LangfuseSpanExporter`` (mapping
included) by default, without ISA-L and without compression, on two workloads (``workloads.py``):

* ``realistic``: chat traces with ``gen_ai.*`` attributes, 200-2,000-character prompts and
  completions and events, whose server spans started before the session (the mapping completes
  and copies them);
* ``small``: spans with three short attributes.

Each round runs every exporter once on the same batch, in a shuffled order; the ratio to stock is
taken within the round, and the table shows medians over the rounds, with the body size each
setting sent.

A second table measures the encoders alone, in the same interleaved way: ours
(``SpanEncoder``) against OpenTelemetry's ``encode_spans`` + ``SerializeToString``.

Run: ``python benchmarks/exporter.py`` (``--rounds`` to change the length).
"""

from __future__ import annotations

import argparse
import gzip
import random
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter

sys.path.insert(0, str(Path(__file__).parent))
from langfuse_otel_sessions import LangfuseSpanExporter
from langfuse_otel_sessions.export.compression import BodyCompression
from langfuse_otel_sessions.export.encoder import SpanEncoder
from langfuse_otel_sessions.export.mapping import map_spans
from workloads import WORKLOADS

SINK = textwrap.dedent(
    """
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Sink(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        def do_POST(self):
            length = int(self.headers["Content-Length"])
            self.rfile.read(length)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.send_header("X-Received", str(length))
            self.end_headers()
            self.wfile.write(b"{}")
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink)
    print("ready", flush=True)
    server.serve_forever()
    """
)
ISAL = BodyCompression("gzip").backend == "isal"
STOCK = "OTLPSpanExporter (stock, gzip level 9)"
DEFAULT = "LangfuseSpanExporter, default (gzip level 2, " + (
    "ISA-L)" if ISAL else "zlib: isal is not installed)"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def exporters(url: str) -> dict[str, Callable[[], SpanExporter]]:
    keys = {"public_key": "pk-lf-bench", "secret_key": "sk-lf-bench", "base_url": url}
    cases: dict[str, Callable[[], SpanExporter]] = {
        STOCK: lambda: OTLPSpanExporter(
            endpoint=url + "/api/public/otel/v1/traces", compression=Compression.Gzip
        ),
        DEFAULT: lambda: LangfuseSpanExporter(**keys),
        "LangfuseSpanExporter, compression='none'": lambda: LangfuseSpanExporter(
            **keys, compression="none"
        ),
    }
    if ISAL:  # the default without the [fast] extra: the same level through zlib
        cases["LangfuseSpanExporter, without isal (zlib level 2)"] = lambda: with_zlib(
            LangfuseSpanExporter(**keys)
        )
    return cases


def with_zlib(exporter: LangfuseSpanExporter) -> LangfuseSpanExporter:
    exporter._compression = BodyCompression("gzip", "zlib")  # bench: as if isal were missing
    return exporter


def body_size(exporter: SpanExporter, batch: Sequence[ReadableSpan]) -> int:
    """The bytes one batch puts on the wire, as the exporter sends it."""
    if isinstance(exporter, LangfuseSpanExporter):
        attributes, _ = map_spans(batch, lambda _key, _span: None)
        return len(exporter._compression.compress(SpanEncoder().encode(batch, attributes)))
    return len(gzip.compress(encode_spans(batch).SerializePartialToString(), compresslevel=9))


def run(rounds: int, workload: str, url: str) -> list[tuple[str, float, float | None, int]]:
    """Median µs per span, median per-round ratio to stock, and body bytes of each exporter."""
    batch = WORKLOADS[workload]()
    cases = {name: make() for name, make in exporters(url).items()}
    for exporter in cases.values():  # warm up connections and caches
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
            ratios[name].append(micros / this_round[STOCK])
    rows = [
        (
            name,
            statistics.median(timings[name]),
            None if name == STOCK else statistics.median(ratios[name]),
            body_size(exporter, batch),
        )
        for name, exporter in cases.items()
    ]
    for exporter in cases.values():
        exporter.shutdown()
    return rows


def run_encoders(rounds: int, workload: str) -> tuple[float, float, float]:
    """Median µs per span of the stock encoder and ours, and the median per-round ratio."""
    batch = WORKLOADS[workload]()
    ours = SpanEncoder()
    cases: dict[str, Callable[[], bytes]] = {
        "stock": lambda: encode_spans(batch).SerializeToString(),
        "ours": lambda: ours.encode(batch),
    }
    timings: dict[str, list[float]] = {name: [] for name in cases}
    ratios = []
    for _ in range(rounds):
        order = list(cases.items())
        random.shuffle(order)
        for name, encode in order:
            begin = time.perf_counter_ns()
            encode()
            timings[name].append((time.perf_counter_ns() - begin) / len(batch) / 1000)
        ratios.append(timings["ours"][-1] / timings["stock"][-1])
    return (
        statistics.median(timings["stock"]),
        statistics.median(timings["ours"]),
        statistics.median(ratios),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    args = parser.parse_args(argv)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SINK, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        print(f"Python {sys.version.split()[0]}, {args.rounds} rounds of one 512-span batch each")
        for workload in WORKLOADS if args.workload == "all" else [args.workload]:
            rows = run(args.rounds, workload, f"http://127.0.0.1:{port}")
            stock_bytes = rows[0][3]
            print()
            print(f"Workload: {workload}")
            print()
            print("| exporter | median µs/span | median ratio to stock | body bytes (vs stock) |")
            print("| --- | ---: | ---: | ---: |")
            for name, median, ratio, size in rows:
                shown_ratio = "1.00x" if ratio is None else f"{ratio:.2f}x"
                print(
                    f"| {name} | {median:.1f} | {shown_ratio} "
                    f"| {size:,} ({size / stock_bytes - 1:+.1%}) |"
                )
        print()
        print("Encoders alone (no mapping, no compression, no HTTP)")
        print()
        print("| workload | stock µs/span | ours µs/span | median ratio ours/stock |")
        print("| --- | ---: | ---: | ---: |")
        for workload in WORKLOADS if args.workload == "all" else [args.workload]:
            stock, ours, ratio = run_encoders(args.rounds, workload)
            print(f"| {workload} | {stock:.1f} | {ours:.1f} | {ratio:.2f}x |")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
