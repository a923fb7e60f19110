"""The package layout is a picture of the data flow: no module imports from a stage above it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "talkinghead"

# Lower number = earlier stage. A module may import only from stages with a number <= its own.
STAGES = {
    "errors": 0, "options": 0, "devices": 0, "threads": 0, "weights_strict": 0, "weights": 0, "safe_pickle": 0,
    "models": 1, "motion": 1,
    "media": 2, "face": 2,
    "drivers": 3,
    "render": 4,
    "enhance": 5,
    "engine": 6, "jobs": 6, "audio_job": 6, "mixed_job": 6, "dub_job": 6, "live_job": 6,
    "evaluation": 6,
    "cli": 7, "batch_job": 7, "__main__": 7, "__init__": 7, "session": 7,
}
# models and motion are independent of each other (motion takes the networks it needs as arguments).
FORBIDDEN = {("motion", "models"), ("models", "motion"), ("media", "face"), ("face", "media")}


def _stage(parts: tuple[str, ...]) -> str:
    return parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    rel = path.relative_to(PACKAGE).with_suffix("").parts
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = rel[: len(rel) - node.level]
            target = base + tuple(node.module.split(".")) if node.module else base
            if target:
                found.add(target[0])
            else:  # "from . import x" at package top
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("talkinghead."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("talkinghead."))
    return found


def test_no_module_imports_from_a_later_stage() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _stage(path.relative_to(PACKAGE).parts)
        if own == "__init__" and path.parent != PACKAGE:
            own = path.parent.name
        for target in _imports(path):
            if target not in STAGES or own not in STAGES:
                continue
            if STAGES[target] > STAGES[own] or (own, target) in FORBIDDEN:
                problems.append(f"{path.relative_to(PACKAGE)} imports from {target}")
    assert not problems, "\n".join(problems)
