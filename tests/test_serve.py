"""``python -m langfuse_otel_sessions serve``: one line per batch (what changed, and the page's
URL), and a clear word when the port is taken. The page itself: ``tests/test_browser.py``."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import textwrap
import threading

SENDER = textwrap.dedent(
    """
    import sys
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from langfuse_otel_sessions import SessionSpanProcessor, session

    provider = TracerProvider()
    provider.add_span_processor(SessionSpanProcessor())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    tracer = provider.get_tracer("app")
    for name in sys.argv[1:]:
        if name == "no-session":
            tracer.start_span("GET /health").end()
            continue
        with session(name), tracer.start_as_current_span("answer " + name):
            with tracer.start_as_current_span("chat gpt-4o") as call:
                call.set_attribute("gen_ai.request.model", "gpt-4o")
    provider.shutdown()  # one batch
    """
)


class Output:
    """The view's stdout, line by line, read by a thread so that a wait can time out."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(
            target=lambda: [self.lines.put(line) for line in stdout], daemon=True
        ).start()

    def until(self, needle: str, timeout: float = 60) -> list[str]:
        seen: list[str] = []
        while True:
            line = self.lines.get(timeout=timeout)
            seen.append(line)
            if needle in line:
                return seen


def stop(view: subprocess.Popen[str]) -> None:
    view.kill()
    view.wait(timeout=30)
    if view.stdout is not None:
        view.stdout.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_view(port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "langfuse_otel_sessions", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def send(port: int, *sessions: str) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
    }
    subprocess.run([sys.executable, "-c", SENDER, *sessions], env=env, check=True, timeout=60)


def test_serve_prints_one_line_per_batch_saying_what_changed_and_where_to_look() -> None:
    port = free_port()
    view = start_view(port)
    try:
        output = Output(view)
        output.until("Listening for OTLP/HTTP")
        send(port, "first", "no-session")
        first = output.until("batch 1:")[-1]
        send(port, "second")
        (second,) = output.until("batch 2:")  # one line: not the whole session again
    finally:
        stop(view)
    url = f"http://127.0.0.1:{port}/"
    assert first.strip() == (
        f"batch 1: +3 spans · sessions: first (new) · 1 new trace without a session"
        f" · 1 sessions in all · {url}"
    )
    assert (
        second.strip() == f"batch 2: +2 spans · sessions: second (new) · 2 sessions in all · {url}"
    )


def test_serve_says_when_the_port_is_taken_and_how_to_pick_another() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "langfuse_otel_sessions", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert f"Port {port} on 127.0.0.1 is already in use" in result.stderr
    assert f"serve --port {port + 1}" in result.stderr
    assert f"LANGFUSE_OTEL_COLLECTOR_ENDPOINT=http://127.0.0.1:{port + 1}" in result.stderr
    assert "Traceback" not in result.stderr
