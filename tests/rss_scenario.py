"""Issue 23 item 4's scenario, run in a process of its own: running requests without a session,
each with 5 spans carrying a 128 KiB prompt, exported as they end (no queue) to a server that
accepts everything. Prints the largest RSS growth seen, in bytes."""

from __future__ import annotations

import gc
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from langfuse_otel_sessions import LangfuseSpanExporter, SessionSpanProcessor
from langfuse_otel_sessions.spans.memory import MEMORY


class Accepting(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def rss() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def main(requests: int, budget: int) -> None:
    MEMORY.budget = budget
    server = ThreadingHTTPServer(("127.0.0.1", 0), Accepting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    provider = TracerProvider()
    provider.add_span_processor(SessionSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(LangfuseSpanExporter(endpoint=url)))
    tracer = provider.get_tracer("app")
    gc.collect()
    before = rss()
    grown = 0
    roots = []
    for request in range(requests):
        root = tracer.start_span(f"request {request}")  # running: its session may still come
        roots.append(root)
        with trace.use_span(root):
            for step in range(5):
                prompt = "x" * (128 * 1024 - 1) + str(step)  # a string of its own per span
                tracer.start_span("llm", attributes={"gen_ai.prompt": prompt}).end()
        grown = max(grown, rss() - before)
    print(grown)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
