"""``python -m langfuse_otel_sessions serve``: what changed per batch, the traces without a
session, observation types and durations, and a clear word when the port is taken."""

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


def start_view(port: int, batches: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "langfuse_otel_sessions",
            "serve",
            "--port",
            str(port),
            "--stop-after",
            str(batches),
        ],
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


def test_serve_prints_only_what_changed_and_the_traces_without_a_session() -> None:
    port = free_port()
    view = start_view(port, batches=2)
    try:
        output = Output(view)
        output.until("Listening for OTLP/HTTP")
        send(port, "first", "no-session")
        first = "".join(output.until("(no session id on this span)"))
        send(port, "second")
        second = "".join(output.until("chat gpt-4o"))
        assert view.wait(timeout=60) == 0
    finally:
        stop(view)
    assert "--- +3 spans: 3 spans in 2 traces, 1 sessions, 1 traces without a session ---" in first
    assert "session first  traces=1  observations in session=2/2" in first
    assert "traces without a session: 1" in first
    assert "└─ GET /health  [span, " in first.split("traces without a session: 1")[1]
    assert "--- +2 spans: 5 spans in 3 traces, 2 sessions, 1 traces without a session ---" in second
    assert "session second  traces=1" in second
    assert "session first" not in second  # not everything again
    assert "GET /health" not in second.split("chat gpt-4o")[0]


def test_serve_shows_observation_types_and_durations() -> None:
    port = free_port()
    view = start_view(port, batches=1)
    try:
        output = Output(view)
        output.until("Listening for OTLP/HTTP")
        send(port, "typed")
        lines = output.until("chat gpt-4o")
        assert view.wait(timeout=60) == 0
    finally:
        stop(view)
    (trace_line,) = [line for line in lines if line.strip().startswith('trace "answer typed"')]
    assert trace_line.rstrip().endswith(("µs", "ms", " s"))
    (root,) = [line for line in lines if "└─ answer typed  [span, " in line]
    (call,) = [line for line in lines if "└─ chat gpt-4o  [generation, " in line]
    assert root.rstrip().endswith(("µs]", "ms]", " s]"))
    assert call.index("└─") > root.index("└─")  # the child is indented under its parent


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
