"""Every shell command of the README, run as written on a fresh copy of the repository.

Slow (a new virtual environment, packages from the index), so it runs in its own tox env
(``tox run -e readme``, part of ``tox run`` and so of CI), which sets ``RUN_README_COMMANDS=1``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import textwrap
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

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


def interrupt(view: subprocess.Popen[str]) -> str:
    """Ctrl-C, as a user stops it; its pipes closed. Returns its stderr."""
    os.killpg(view.pid, signal.SIGINT)
    return view.communicate(timeout=30)[1]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], dict[str, Any]]:
    """A fresh copy of the repository with the README's one command run in it: it installs, runs
    the quickstart and keeps its page open. The copy, what it printed, and the page's data."""
    copy = tmp_path_factory.mktemp("fresh") / "langfuse-otel-sessions"
    shutil.copytree(ROOT, copy, ignore=NOT_COPIED)
    (command,) = [b for b in bash_blocks() if kind(b) == "install"]
    view = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=copy,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        printed = Output(view).until("in a browser: http://", timeout=900)
        (url,) = re.findall(r"http://127\.0\.0\.1:\d+/", printed[-1])
        with urllib.request.urlopen(url + "api/overview", timeout=10) as answer:
            page = json.load(answer)
    except BaseException:
        print(interrupt(view))  # pip's or the quickstart's complaint, in the report
        raise
    interrupt(view)
    return copy, printed, page


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


def test_the_one_command_installs_runs_the_quickstart_and_shows_its_page(
    clone: tuple[Path, list[str], dict[str, Any]],
) -> None:
    _, printed, page = clone
    assert "score helpful=" in "".join(printed)
    assert len(page["sessions"]) == 2
    assert all(session["scores"] for session in page["sessions"])


def test_the_wheel_command_builds_a_wheel(clone: tuple[Path, list[str], dict[str, Any]]) -> None:
    (block,) = [b for b in bash_blocks() if kind(b) == "wheel"]
    shell(block, clone[0])
    (wheel,) = (clone[0] / "dist").glob("langfuse_otel_sessions-*-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as built:  # the local view's page ships with the package
        page = {name.rsplit("/", 1)[-1] for name in built.namelist() if "/testing/page/" in name}
    assert page == {"index.html", "view.css", "view.js"}


def test_the_zero_code_command_exports_the_session(
    clone: tuple[Path, list[str], dict[str, Any]],
) -> None:
    (block,) = [b for b in bash_blocks() if kind(b) == "zero code"]
    with LangfuseReceiver() as receiver:
        shell(block, clone[0], env=receiver.env())
        assert receiver.wait_for(lambda: "zero-code-demo" in receiver.sessions(), timeout=10)


def test_the_local_view_shows_what_the_app_sends(
    clone: tuple[Path, list[str], dict[str, Any]],
) -> None:
    (serve,) = [b for b in bash_blocks() if kind(b) == "serve"]
    (app,) = [b for b in bash_blocks() if kind(b) == "to the local view"]

    def start(command: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=clone[0],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    view = start(serve)
    assert view.stdout is not None
    first = view.stdout.readline()
    if not first:  # 4318 is taken (the README's own serve is running?): take any free port
        _, said = view.communicate(timeout=30)
        assert "--port" in said
        view = start(f"{serve} --port 0")
        assert view.stdout is not None
        first = view.stdout.readline()
    (url,) = re.findall(r"http://127\.0\.0\.1:\d+", first)
    try:
        shell(app.replace(LOCAL_VIEW, url), clone[0])
        Output(view).until("zero-code-demo")
        with urllib.request.urlopen(url + "/api/overview", timeout=10) as answer:
            assert "zero-code-demo" in [s["id"] for s in json.load(answer)["sessions"]]
    finally:
        interrupt(view)


def test_every_other_readme_command_runs(clone: tuple[Path, list[str], dict[str, Any]]) -> None:
    """The examples' commands, and anything added later, as a new user runs them (no keys: the
    examples then print what Langfuse would show)."""
    others = [b for b in bash_blocks() if kind(b) == "other"]
    examples = "\n".join(others)
    for script in ("fastapi_app.py", "flask_app.py", "two_services/run.py"):
        assert f"examples/{script}" in examples
    for block in others:
        out = shell(textwrap.dedent(block), clone[0], timeout=600)
        assert "session " in out or "examples/" not in block
