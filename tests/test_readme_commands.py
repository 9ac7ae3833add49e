"""Every shell command of the README, run as written on a fresh copy of the repository.

Slow (a new virtual environment, packages from the index), so it runs in its own tox env
(``tox run -e readme``, part of ``tox run`` and so of CI), which sets ``RUN_README_COMMANDS=1``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from langfuse_otel_sessions.testing import LangfuseReceiver

from .test_readme import ROOT, bash_blocks
from .test_serve import Output

pytestmark = pytest.mark.skipif(
    os.environ.get("RUN_README_COMMANDS") != "1",
    reason="slow: runs in the tox env `readme` (RUN_README_COMMANDS=1)",
)

NOT_COPIED = shutil.ignore_patterns(
    ".git",
    ".venv*",
    ".tox",
    "dist",
    "build",
    "__pycache__",
    "*.egg-info",
    ".*_cache",
    ".hypothesis",
)
LOCAL_VIEW = "http://127.0.0.1:4318"


def shell(command: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run ``command`` with bash, as a user would paste it; fail with its output unless it
    succeeds; return its stdout."""
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of the repository with the README's install command run in it."""
    copy = tmp_path_factory.mktemp("fresh") / "langfuse-otel-sessions"
    shutil.copytree(ROOT, copy, ignore=NOT_COPIED)
    (install,) = [b for b in bash_blocks() if "pip install" in b and "tox" not in b]
    shell(install, copy, timeout=900)
    return copy


def kind(block: str) -> str:
    if "tox run" in block:
        return "ci"
    if "pip install" in block:
        return "install"
    if "pip wheel" in block:
        return "wheel"
    if "langfuse_otel_sessions serve" in block:
        return "serve"
    if LOCAL_VIEW in block:
        return "to the local view"
    if "opentelemetry-instrument" in block:
        return "zero code"
    return "other"


def test_every_readme_command_is_run_here() -> None:
    kinds = [kind(block) for block in bash_blocks()]
    for expected in ("ci", "install", "wheel", "serve", "to the local view", "zero code"):
        assert expected in kinds, expected


def test_the_wheel_command_builds_a_wheel(clone: Path) -> None:
    (block,) = [b for b in bash_blocks() if kind(b) == "wheel"]
    shell(block, clone)
    assert list((clone / "dist").glob("langfuse_otel_sessions-*-py3-none-any.whl"))


def test_the_main_example_runs_after_the_install_line(clone: Path) -> None:
    (block,) = [b for b in bash_blocks() if "examples/quickstart.py" in b]
    out = shell(block, clone)
    assert "session " in out
    assert "score helpful=" in out


def test_the_zero_code_command_exports_the_session(clone: Path) -> None:
    (block,) = [b for b in bash_blocks() if kind(b) == "zero code"]
    with LangfuseReceiver() as receiver:
        shell(block, clone, env=receiver.env())
        assert receiver.wait_for(lambda: "zero-code-demo" in receiver.sessions(), timeout=10)


def test_the_local_view_shows_what_the_app_sends(clone: Path) -> None:
    (serve,) = [b for b in bash_blocks() if kind(b) == "serve"]
    (app,) = [b for b in bash_blocks() if kind(b) == "to the local view"]
    view = subprocess.Popen(
        ["bash", "-c", f"exec {serve}"],
        cwd=clone,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert view.stdout is not None
    first = view.stdout.readline()
    if not first:  # 4318 is taken on this machine: the view said so; take any free port
        assert "--port" in (view.stderr.read() if view.stderr else "")
        view.wait(timeout=30)
        view = subprocess.Popen(
            ["bash", "-c", f"exec {serve} --port 0"],
            cwd=clone,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert view.stdout is not None
        first = view.stdout.readline()
    (url,) = re.findall(r"http://127\.0\.0\.1:\d+", first)
    try:
        output = Output(view)
        shell(app.replace(LOCAL_VIEW, url), clone)
        assert any("session zero-code-demo" in line for line in output.until("chat gpt-4o"))
    finally:
        os.killpg(view.pid, signal.SIGINT)
        view.communicate(timeout=30)


def test_every_other_readme_command_runs(clone: Path) -> None:
    """The examples' commands, and anything added later, as a new user runs them (no keys: the
    examples then print what Langfuse would show)."""
    others = [b for b in bash_blocks() if kind(b) == "other"]
    examples = "\n".join(others)
    for script in ("quickstart.py", "fastapi_app.py", "flask_app.py", "two_services/run.py"):
        assert f"examples/{script}" in examples
    for block in others:
        out = shell(textwrap.dedent(block), clone, timeout=600)
        assert "session " in out or "examples/" not in block
