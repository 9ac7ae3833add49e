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
