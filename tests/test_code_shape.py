"""The code stays easy to read: a short engine, short functions (issue 12's targets).

The bounds are the values reached so far; lower them as the code shrinks
(the goal: ``engine.py`` under 350 lines, no function over 60 lines).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE_MAX_LINES = 350
FUNCTION_MAX_LINES = 60
KNOWN_LONG: dict[tuple[str, str], int] = {}  # (file, function) → cap, for a long function still to split


def _functions() -> list[tuple[str, str, int]]:
    """(file, function name, lines from `def` to its last line, docstring included) of every function."""
    found = []
    for path in sorted([*(ROOT / "talkinghead").rglob("*.py"), ROOT / "app.py"]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((path.relative_to(ROOT).as_posix(), node.name, node.end_lineno - node.lineno + 1))
    return found


def test_engine_stays_short() -> None:
    lines = len((ROOT / "talkinghead" / "engine.py").read_text().splitlines())
    assert lines <= ENGINE_MAX_LINES, f"talkinghead/engine.py has {lines} lines (bound {ENGINE_MAX_LINES})"


def test_no_function_is_long() -> None:
    long = [f"{file}:{name} has {n} lines" for file, name, n in _functions()
            if n > KNOWN_LONG.get((file, name), FUNCTION_MAX_LINES)]
    assert not long, "\n".join(long)


def test_the_measure_sees_the_engine_methods() -> None:
    names = {name for file, name, _ in _functions() if file == "talkinghead/engine.py"}
    assert {"prepare_source", "animate_video", "animate_absolute_motion", "stream_audio"} <= names


def test_public_names_are_unique() -> None:
    """One meaning per public name (issue 12 item 6): two top-level classes or functions of the
    same name in different modules (once: two ``Controls``, two ``smooth_motion``) mislead readers
    and make ``from x import Name`` pick one silently."""
    where: dict[str, list[str]] = {}
    for path in sorted((ROOT / "talkinghead").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                where.setdefault(node.name, []).append(path.relative_to(ROOT).as_posix())
    clashes = {name: files for name, files in where.items() if len(files) > 1}
    assert not clashes, clashes
