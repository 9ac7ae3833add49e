"""The README's two commands stay true: CI runs the test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bash_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL)]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test_command = _bash_blocks()[1]
    assert "tox run" in test_command
    ci_script = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_script


def test_the_example_command_names_an_existing_example() -> None:
    example_command = _bash_blocks()[0]
    (script,) = re.findall(r"examples/\S+\.py", example_command)
    assert (ROOT / script).is_file()


def _python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


def test_every_python_block_in_the_readme_compiles() -> None:
    blocks = _python_blocks()
    assert len(blocks) >= 7
    for block in blocks:
        compile(block, "README.md", "exec")


def test_the_self_contained_readme_blocks_run(tmp_path: Path) -> None:
    from langfuse_otel_sessions.testing import LangfuseReceiver

    from .servers import run_python

    runnable = [
        block
        for block in _python_blocks()
        if block.startswith(
            ("from opentelemetry.sdk.trace import TracerProvider", "import langfuse")
        )
    ]
    assert len(runnable) == 2
    with LangfuseReceiver() as receiver:
        for index, block in enumerate(runnable):
            script = tmp_path / f"block{index}.py"
            script.write_text(block)
            run_python(str(script), env=receiver.env(), timeout=60)
        assert len(receiver.sessions()) == 1  # the smallest setup's conversation arrived
