"""Every example runs and does what it says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_quickstart_groups_every_span_into_its_session() -> None:
    lines = run_example("quickstart.py").splitlines()
    assert len(lines) == 2
    assert "(user alice): 4 spans" in lines[0]
    assert "(user bob): 2 spans" in lines[1]
    assert all("session_" in line and "None" not in line for line in lines)
