"""The package's imports point one way: no import circle, and no room imports a room it may not.

A room is a subpackage; its ``__init__`` docstring names the rooms it may import in a line
``May import: top, sessions.`` (a note in parentheses may follow a name). ``top`` is the modules
at the top of the package (baggage_keys, ids, errors, environment, logging, ...): they import only each
other. ``__init__`` and ``__main__`` are the front door and may import any room.

Every import counts: at module level, inside a function, and under ``if TYPE_CHECKING:``. An
import moved into a function so that a circle does not fail at import time is still a circle in
the design (each module needs the other), and so is a type-only one.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

import langfuse_otel_sessions

PACKAGE = Path(langfuse_otel_sessions.__file__).resolve().parent
ROOT = Path(__file__).resolve().parent.parent  # the checkout (tox installs the package elsewhere)
TOP = "top"
FRONT_DOOR = "front door"
_ALLOWED = re.compile(r"^\s*May import:(.*)$", re.MULTILINE)


def module_files(package: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of ``package`` (subpackages by their __init__)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = [package.name, *path.relative_to(package).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: Mapping[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports, wherever the import statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            # ``from pkg import module`` imports the module; ``from module import name`` the module
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                for alias in node.names
            ]
        else:
            continue
        found.update(target for target in targets if target in modules and target != name)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    modules = module_files(package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def circles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The import circles: each group of modules that reach each other (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def room_of(name: str, rooms: Iterable[str]) -> str:
    """The room of module ``name``: a subpackage's name, ``top`` or the front door."""
    parts = name.split(".")
    if len(parts) == 1 or parts[1:] == ["__main__"]:
        return FRONT_DOOR
    return parts[1] if parts[1] in rooms else TOP


def declared_rooms(package: Path) -> dict[str, set[str]]:
    """Room -> the rooms its docstring says it may import (``top`` may import only ``top``)."""
    rooms: dict[str, set[str]] = {TOP: {TOP}}
    for init in sorted(package.glob("*/__init__.py")):
        docstring = ast.get_docstring(ast.parse(init.read_text())) or ""
        match = _ALLOWED.search(docstring)
        assert match, f"{init.parent.name}/__init__.py does not say what it may import"
        listed = re.sub(r"\([^)]*\)", "", match.group(1)).strip().rstrip(".")
        rooms[init.parent.name] = {room.strip() for room in listed.split(",") if room.strip()}
    return rooms


def upward_imports(package: Path) -> list[str]:
    """Each import of a room that the importing module's room may not import."""
    rooms = declared_rooms(package)
    problems = [
        f"{room} may import {sorted(allowed - set(rooms))}, which are no rooms"
        for room, allowed in rooms.items()
        if allowed - set(rooms)
    ]
    for name, targets in sorted(import_graph(package).items()):
        room = room_of(name, rooms)
        if room == FRONT_DOOR:
            continue
        for target in sorted(targets):
            target_room = room_of(target, rooms)
            if target_room not in (room, *rooms[room]):
                problems.append(f"{name} ({room}) imports {target} ({target_room})")
    return problems


def test_the_package_has_no_import_circle() -> None:
    assert circles(import_graph(PACKAGE)) == []


def test_imports_point_the_way_each_room_says() -> None:
    assert upward_imports(PACKAGE) == []


# --- the rooms, and what sits at the top ------------------------------------------------------

ROOMS = {"sessions", "boundary", "spans", "export", "scores", "web", "setup", "testing"}
#: The front door and the shared leaves: nothing else sits at the top of the package.
TOP_MODULES = {
    "__init__",
    "__main__",
    "_logging",
    "attributes",
    "environment",
    "baggage_keys",
    "errors",
    "ids",
}


def test_the_package_is_grouped_in_rooms() -> None:
    assert {init.parent.name for init in PACKAGE.glob("*/__init__.py")} == ROOMS
    assert {module.stem for module in PACKAGE.glob("*.py")} == TOP_MODULES


def test_the_design_doc_shows_every_room_and_module() -> None:
    design = (ROOT / "docs" / "design.md").read_text()
    shown = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" and path.parent.name != "testing"
    }
    assert [room for room in sorted(ROOMS) if f"{room}/" not in design] == []
    assert [module for module in sorted(shown) if Path(module).name not in design] == []


# --- the checks themselves find what they are for --------------------------------------------


def _tree(root: Path, files: Mapping[str, str]) -> Path:
    package = root / "pkg"
    for relative, text in files.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return package


@pytest.mark.parametrize(
    "importer",
    [
        "from .b import x\n",
        "def f():\n    from .b import x\n",  # lazy: still a circle
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import x\n",
        "from . import b\n",
        "import pkg.b\n",
    ],
)
def test_a_circle_is_found_however_it_is_written(tmp_path: Path, importer: str) -> None:
    package = _tree(tmp_path, {"__init__.py": "", "a.py": importer, "b.py": "from .a import y\n"})
    assert circles(import_graph(package)) == [["pkg.a", "pkg.b"]]


def test_a_circle_through_rooms_is_found(tmp_path: Path) -> None:
    package = _tree(
        tmp_path,
        {
            "__init__.py": "from .low.a import x\n",
            "low/__init__.py": '"""Low.\nMay import: top."""\n',
            "low/a.py": "from ..high.b import y\n",
            "high/__init__.py": '"""High.\nMay import: top, low."""\n',
            "high/b.py": "from ..low import a\n",
        },
    )
    assert circles(import_graph(package)) == [["pkg.high.b", "pkg.low.a"]]


def test_an_upward_import_is_found(tmp_path: Path) -> None:
    package = _tree(
        tmp_path,
        {
            "__init__.py": "from .web.app import App\nfrom .core.engine import Engine\n",
            "__main__.py": "from .web.app import App\n",
            "keys.py": "",
            "leaf.py": "from .core.engine import Engine\n",
            "core/__init__.py": '"""The core.\nMay import: top."""\n',
            "core/engine.py": "from ..keys import KEY\nfrom ..web.app import App\n",
            "web/__init__.py": '"""The web layer.\nMay import: top, core (the engine)."""\n',
            "web/app.py": "from ..core.engine import Engine\nfrom ..keys import KEY\n",
        },
    )
    assert upward_imports(package) == [
        "pkg.core.engine (core) imports pkg.web.app (web)",
        "pkg.leaf (top) imports pkg.core.engine (core)",
    ]


def test_a_room_must_say_what_it_may_import(tmp_path: Path) -> None:
    package = _tree(tmp_path, {"__init__.py": "", "core/__init__.py": '"""The core."""\n'})
    with pytest.raises(AssertionError, match=r"core/__init__\.py does not say"):
        upward_imports(package)


def test_a_room_may_name_only_rooms(tmp_path: Path) -> None:
    package = _tree(
        tmp_path,
        {"__init__.py": "", "core/__init__.py": '"""The core.\nMay import: top, web."""\n'},
    )
    assert upward_imports(package) == ["core may import ['web'], which are no rooms"]
