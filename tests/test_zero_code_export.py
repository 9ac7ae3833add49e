"""`OTEL_TRACES_EXPORTER=langfuse opentelemetry-instrument python app.py` ships to Langfuse."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from langfuse_otel_sessions.testing import LangfuseReceiver, langfuse_receiver

__all__ = ["langfuse_receiver"]

APP = textwrap.dedent(
    """
    from opentelemetry import trace

    tracer = trace.get_tracer("zero-code-app")
    with tracer.start_as_current_span("handle request") as span:
        span.set_attribute("langfuse.session.id", "zero-code-session")
        with tracer.start_as_current_span("llm call"):
            pass
    """
)


def test_the_langfuse_exporter_entry_point_under_opentelemetry_instrument(
    tmp_path: Path, langfuse_receiver: LangfuseReceiver
) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "OTEL_TRACES_EXPORTER": "langfuse",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "zero-code-app",
        **langfuse_receiver.env(),
    }
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    result = subprocess.run(
        [str(instrument), sys.executable, str(app)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (session,) = langfuse_receiver.sessions().values()
    assert session.id == "zero-code-session"
    assert sorted(s.name for s in session.spans) == ["handle request", "llm call"]
    assert session.observations_in_session == 2  # the exporter completed the child
    (request,) = langfuse_receiver.requests("traces")
    assert request.headers["authorization"] == langfuse_receiver.authorization
