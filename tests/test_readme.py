"""The README stays true: its Python blocks run, its links resolve, CI runs its test command.

Its shell commands are run as written, on a fresh copy of the repository, by
``tests/test_readme_commands.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FRAGMENT_MARK = "# fragment"


def bash_blocks(path: Path = README) -> list[str]:
    """Every ```bash block of a Markdown file, stripped."""
    return [
        block.strip() for block in re.findall(r"```bash\n(.*?)```", path.read_text(), re.DOTALL)
    ]


def python_blocks(path: Path = README) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.DOTALL)


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    (test_command,) = [block for block in bash_blocks() if "tox run" in block]
    ci_script = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_script


def test_the_readme_names_the_interpreters_the_test_command_covers() -> None:
    text = README.read_text()
    assert "3.10, 3.11, 3.12 and 3.13" in text
    tox_ini = (ROOT / "tox.ini").read_text()
    assert "env_list = py310, py311, py312, py313," in tox_ini
    assert "skip_missing_interpreters = true" in tox_ini


def test_every_example_command_names_an_existing_script() -> None:
    scripts = {s for block in bash_blocks() for s in re.findall(r"examples/\S+\.py", block)}
    assert "examples/quickstart.py" in scripts
    for script in scripts:
        assert (ROOT / script).is_file(), script


def test_the_license_matches_the_package_metadata() -> None:
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_the_readme_fits_a_first_read() -> None:
    assert len(README.read_text().splitlines()) <= 200


def test_every_python_block_compiles_and_fragments_say_so() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 4
    for block in blocks:
        compile(block, "README.md", "exec")


def test_the_complete_readme_blocks_run(tmp_path: Path) -> None:
    """Every block not marked ``# fragment`` is a whole program: it runs against a local
    Langfuse and what it sends arrives in its session."""
    from langfuse_otel_sessions.testing import LangfuseReceiver

    from .servers import run_python

    complete = [block for block in python_blocks() if not block.startswith(FRAGMENT_MARK)]
    assert len(complete) >= 3
    with LangfuseReceiver() as receiver:
        for index, block in enumerate(complete):
            script = tmp_path / f"block{index}.py"
            script.write_text(block)
            run_python(str(script), env=receiver.env(), timeout=60)
        receiver.wait_for(lambda: len(receiver.scores()) >= 3, timeout=10)
        sessions = list(receiver.sessions().values())
        assert len(sessions) == 2  # the smallest setup's and the scores block's
        scored = [s for s in sessions if s.scores]
        assert len(scored) == 1
        assert {score["name"] for score in scored[0].scores} == {"goal_completed", "judge"}
        assert {score["name"] for score in receiver.scores()} >= {"latency_ok"}


# --- links -------------------------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _markdown_files() -> list[Path]:
    return [README, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


def _without_code(text: str) -> str:
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


def anchors(path: Path) -> set[str]:
    """The anchors GitHub makes from a Markdown file's headings."""
    seen: dict[str, int] = {}
    result = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _strip_fences(path.read_text()), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def _strip_fences(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.DOTALL)


def links(path: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(_without_code(path.read_text()))
        if not re.match(r"[a-z]+:", target)
    ]


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(path: Path) -> None:
    for target in links(path):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{path.name}: broken link {target}"
        if anchor:
            assert linked.suffix == ".md", f"{path.name}: anchor into a non-Markdown file {target}"
            assert anchor in anchors(linked), f"{path.name}: no heading for {target}"


def test_the_link_check_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [bad](missing.md) [bad anchor](#nowhere)\n")
    assert links(page) == ["#title", "missing.md", "#nowhere"]
    assert anchors(page) == {"title"}
