"""The Collector path: our recipes, and a real collector binary (Rotel) in between."""

from __future__ import annotations

import base64
import os
import platform
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

from langfuse_otel_sessions import LangfuseSpanExporter, SessionSpanProcessor, session
from langfuse_otel_sessions.testing import LangfuseReceiver, langfuse_receiver

__all__ = ["langfuse_receiver"]

COLLECTOR = Path(__file__).resolve().parent.parent / "examples" / "collector"


def expand(value: str, env: dict[str, str]) -> str:
    """otelcol's ``${env:NAME}`` substitution."""
    return re.sub(r"\$\{env:([A-Z_]+)\}", lambda m: env[m.group(1)], value)


def test_otel_collector_config_has_what_langfuse_needs(langfuse_receiver: LangfuseReceiver) -> None:
    config = yaml.safe_load((COLLECTOR / "otel-collector.yaml").read_text())
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    pipeline = config["service"]["pipelines"]["traces"]
    assert pipeline == {
        "receivers": ["otlp"],
        "processors": ["batch"],
        "exporters": ["otlphttp/langfuse"],
    }
    exporter = config["exporters"]["otlphttp/langfuse"]
    assert exporter["traces_endpoint"] == "${env:LANGFUSE_BASE_URL}/api/public/otel/v1/traces"
    assert exporter["headers"]["x-langfuse-ingestion-version"] == "4"
    assert "${env:" in exporter["headers"]["Authorization"]  # no key in the file

    # What the collector would send with these settings is accepted by a Langfuse-like server.
    auth = base64.b64encode(
        f"{langfuse_receiver.public_key}:{langfuse_receiver.secret_key}".encode()
    )
    env = {"LANGFUSE_BASE_URL": langfuse_receiver.url, "LANGFUSE_AUTH": auth.decode()}
    sender = OTLPSpanExporter(
        endpoint=expand(exporter["traces_endpoint"], env),
        headers={k: expand(v, env) for k, v in exporter["headers"].items()},
        compression=Compression(exporter["compression"]),
    )
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(sender))
    provider.get_tracer("t").start_span("through otelcol", attributes={"session.id": "c"}).end()
    assert [r.status for r in langfuse_receiver.requests()] == [200]
    assert list(langfuse_receiver.sessions()) == ["c"]


def _rotel_agent() -> Path:
    if sys.platform != "linux" or platform.machine() != "x86_64":
        pytest.skip(
            f"the rotel wheel carries a linux x86-64 binary; this is {sys.platform} {platform.machine()}"
        )
    try:
        import rotel
    except ImportError:
        pytest.skip("rotel is not installed (requirements/test.txt installs it on CPython 3.11)")
    binary = Path(rotel.__file__).parent / "rotel-agent"
    try:
        subprocess.run([str(binary), "--version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"the rotel-agent binary cannot run here: {error}")
    return binary


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"rotel exited early: {process.communicate()[0]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # polling a port that is not open yet, under a deadline
    pytest.fail("rotel did not open its OTLP/HTTP port")


@pytest.fixture
def rotel(langfuse_receiver: LangfuseReceiver, tmp_path: Path) -> Iterator[str]:
    """Rotel, started from our recipe script, forwarding to the receiver; yields its OTLP URL."""
    binary = _rotel_agent()
    http_port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "ROTEL_AGENT": str(binary),
        "ROTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http_port}",
        "ROTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{_free_port()}",
        "ROTEL_PID_FILE": str(tmp_path / "rotel.pid"),
        "ROTEL_LOG_FILE": str(tmp_path / "rotel.log"),
        **langfuse_receiver.env(),
    }
    process = subprocess.Popen(
        ["bash", str(COLLECTOR / "rotel.sh")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_port(http_port, process)
        yield f"http://127.0.0.1:{http_port}"
    finally:
        process.terminate()
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def test_sessions_arrive_grouped_through_a_real_collector(
    rotel: str, langfuse_receiver: LangfuseReceiver
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SessionSpanProcessor())
    provider.add_span_processor(
        BatchSpanProcessor(LangfuseSpanExporter(endpoint=f"{rotel}/v1/traces"))
    )
    tracer = provider.get_tracer("app")
    for conversation in ("conv-1", "conv-2", "conv-3"):
        for turn in range(2):
            with (
                tracer.start_as_current_span(f"{conversation} turn {turn}"),
                session(conversation, user_id=f"u-{conversation}"),
            ):
                tracer.start_span("llm").end()
    assert provider.force_flush(10_000)
    assert langfuse_receiver.wait_for_spans(12, timeout=30)
    provider.shutdown()

    sessions = langfuse_receiver.sessions()
    assert sorted(sessions) == ["conv-1", "conv-2", "conv-3"]
    for view in sessions.values():
        assert [t.name for t in view.traces] == [f"{view.id} turn 0", f"{view.id} turn 1"]
        assert view.observations_in_session == 4  # every span, the ones started first too
        assert {t.user_id for t in view.traces} == {f"u-{view.id}"}
    spans = langfuse_receiver.spans()
    assert len(spans) == 12
    assert len({(s.trace_id, s.span_id) for s in spans}) == 12  # each span exactly once
    for request in langfuse_receiver.requests("traces"):
        assert request.status == 200
        assert request.headers["authorization"] == langfuse_receiver.authorization
        assert request.headers["x-langfuse-ingestion-version"] == "4"
