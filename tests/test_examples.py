"""Every example runs and does what it says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_quickstart_without_keys_shows_the_sessions_langfuse_would_show() -> None:
    out = run_example("quickstart.py")
    assert "No Langfuse keys set: sending to a local receiver" in out
    sessions = [line for line in out.splitlines() if line.startswith("session ")]
    assert len(sessions) == 2
    assert "user=alice  traces=2  observations in session=4/4" in sessions[0]
    assert "user=bob  traces=1  observations in session=2/2" in sessions[1]
    assert out.count("input='what is OTel?'  output='echo: what is OTel?'") == 1
    assert "no session id on this span" not in out
