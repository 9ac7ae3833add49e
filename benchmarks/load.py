"""Load: 1,000,000 spans through BatchSpanProcessor + LangfuseSpanExporter at full speed, then
100,000 scores, against a loopback sink in another process that counts what arrives; then a
burst of 200,000 LLM spans through the SDK's default ``BatchSpanProcessor``, with OpenTelemetry's
``OTLPSpanExporter`` and with ours in the same run (several runs, order alternating), to show
how many spans each loses when its export thread cannot keep up.

Prints peak RSS next to the idle baseline (the same process after setup, before the load),
what was delivered, and what was dropped (counted by our score sender; for spans, created minus
received: the SDK's batch processor drops when its queue is full and logs it).
Not a test: run ``python benchmarks/load.py`` (``--spans``/``--scores``/``--burst``/``--runs`` to
change the sizes; ``--only burst`` or ``--only memory`` for one part).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import resource
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from pydoc_data.topics import topics

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from langfuse_otel_sessions import LangfuseSpanExporter, ScoreClient, SessionSpanProcessor, session

SINK = textwrap.dedent(
    """
    import gzip, json, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    counts = {"spans": 0, "scores": 0}
    lock = threading.Lock()

    class Sink(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path.endswith("/traces"):
                request = ExportTraceServiceRequest.FromString(body)
                n = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
                with lock:
                    counts["spans"] += n
                answer = b"{}"
            else:
                batch = json.loads(body)["batch"]
                with lock:
                    counts["scores"] += len(batch)
                answer = json.dumps(
                    {"successes": [{"id": e["id"], "status": 201} for e in batch], "errors": []}
                ).encode()
            self.send_response(207 if b"successes" in answer else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    for _ in sys.stdin:  # each line asks for the counts so far
        with lock:
            print(json.dumps(counts), flush=True)
    """
)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ask_counts(sink: subprocess.Popen[str]) -> dict[str, int]:
    assert sink.stdin is not None
    assert sink.stdout is not None
    sink.stdin.write("\n")
    sink.stdin.flush()
    counts: dict[str, int] = json.loads(sink.stdout.readline())
    return counts


def burst_once(exporter: SpanExporter, spans: int, texts: list[str]) -> None:
    """``spans`` LLM spans as fast as one thread can make them, then a clean shutdown."""
    provider = TracerProvider()
    provider.add_span_processor(SessionSpanProcessor())
    provider.add_span_processor(BatchSpanProcessor(exporter))  # the SDK's defaults
    tracer = provider.get_tracer("openinference.instrumentation.openai")
    for turn in range(spans // 4):
        with (
            session(f"burst-{turn // 5}", user_id=f"user-{turn % 97}"),
            tracer.start_as_current_span("POST /chat"),
        ):
            for call in range(3):
                tracer.start_span(
                    "chat gpt-4o",
                    attributes={
                        "gen_ai.system": "openai",
                        "gen_ai.request.model": "gpt-4o",
                        "gen_ai.usage.input_tokens": 100 + call,
                        "input.value": texts[(turn + call) % len(texts)],
                        "output.value": texts[(turn + call + 7) % len(texts)],
                    },
                ).end()
    provider.shutdown()


def burst(url: str, sink: subprocess.Popen[str], spans: int, runs: int) -> None:
    """Share of spans dropped by the batch processor, stock exporter against ours."""
    rng = random.Random(3)
    corpus = " ".join(topics[name] for name in sorted(topics))
    texts = []
    for _ in range(64):
        length = rng.randint(200, 2000)
        start = rng.randrange(len(corpus) - length)
        texts.append(corpus[start : start + length])
    makers = {
        "OTLPSpanExporter (stock)": lambda: OTLPSpanExporter(
            endpoint=url + "/api/public/otel/v1/traces", compression=Compression.Gzip
        ),
        "LangfuseSpanExporter (defaults)": lambda: LangfuseSpanExporter(
            public_key="pk",
            secret_key="sk",  # noqa: S106 - the sink takes any key
            base_url=url,
        ),
    }
    dropped: dict[str, list[float]] = {name: [] for name in makers}
    for run in range(runs):
        for name in list(makers)[:: 1 if run % 2 == 0 else -1]:
            before = ask_counts(sink)["spans"]
            begin = time.perf_counter()
            burst_once(makers[name](), spans, texts)
            seconds = time.perf_counter() - begin
            received = ask_counts(sink)["spans"] - before
            dropped[name].append(1 - received / spans)
            print(f"  run {run + 1}, {name}: {received:,} of {spans:,} received in {seconds:.1f} s")
    print()
    print(
        f"| exporter, burst of {spans:,} spans, default BatchSpanProcessor "
        f"| spans dropped (median of {runs} runs) | range |"
    )
    print("| --- | ---: | ---: |")
    for name, shares in dropped.items():
        print(f"| {name} | {statistics.median(shares):.0%} | {min(shares):.0%}-{max(shares):.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--scores", type=int, default=100_000)
    parser.add_argument("--burst", type=int, default=200_000, help="spans in each burst")
    parser.add_argument("--runs", type=int, default=3, help="bursts per exporter")
    parser.add_argument("--only", choices=["memory", "burst"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None
    assert sink.stdin is not None
    assert sink.stdout.readline().strip() == "ready"
    url = f"http://127.0.0.1:{port}"
    print(f"Python {sys.version.split()[0]}")
    if args.only != "memory":
        print()
        burst(url, sink, args.burst, args.runs)
    if args.only == "burst":
        sink.stdin.close()
        sink.wait(timeout=30)
        return
    base = ask_counts(sink)  # what the burst part delivered
    exporter = LangfuseSpanExporter(public_key="pk", secret_key="sk", base_url=url)  # noqa: S106
    provider = TracerProvider()
    provider.add_span_processor(SessionSpanProcessor())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("load")
    client = ScoreClient("pk", "sk", url)
    idle = peak_rss_mib()

    begin = time.perf_counter()
    for chunk in range(args.spans // 1000):
        with session(f"load-{chunk % 100}"), tracer.start_as_current_span("request"):
            for _ in range(999):
                tracer.start_span("step").end()
    span_seconds = time.perf_counter() - begin
    provider.shutdown()
    after_spans = peak_rss_mib()

    begin = time.perf_counter()
    for i in range(args.scores):
        client.score_session(f"load-{i % 100}", name="load", value=i)
    score_seconds = time.perf_counter() - begin
    client.flush(300)
    stats = client.stats
    client.shutdown(30)
    peak = peak_rss_mib()

    counts = {key: value - base[key] for key, value in ask_counts(sink).items()}
    sink.stdin.close()
    sink.wait(timeout=30)
    spans = (args.spans // 1000) * 1000
    print()
    print("| measure | value |")
    print("| --- | ---: |")
    print(f"| peak RSS, idle baseline (after setup) | {idle:.0f} MiB |")
    print(f"| peak RSS after {spans:,} spans | {after_spans:.0f} MiB |")
    print(f"| peak RSS after {args.scores:,} scores | {peak:.0f} MiB |")
    print(f"| spans created | {spans:,} in {span_seconds:.1f} s |")
    print(f"| spans received | {counts['spans']:,} |")
    print(f"| spans dropped (queue full, logged by the SDK) | {spans - counts['spans']:,} |")
    print(f"| spans the exporter failed to deliver (counted) | {exporter.stats.failed_spans:,} |")
    print(f"| scores submitted | {args.scores:,} in {score_seconds:.1f} s |")
    print(f"| scores received | {counts['scores']:,} |")
    print(f"| scores dropped, queue full (counted and logged) | {stats.dropped:,} |")
    print(f"| scores failed (counted and logged) | {stats.failed:,} |")


if __name__ == "__main__":
    main()
