"""Refresh tests/data from the project's shared data folder (../shared beside the repository).

Usage: ``python tests/data/sync.py [SHARED]`` (default: ``../shared`` next to the repository root).
Each mirrored part (:data:`PARTS`) is replaced by an exact copy of the same folder under SHARED:
files are copied byte for byte, files that SHARED no longer has are removed. Nothing else under
tests/data is touched. tests/test_data_copy.py checks the result whenever ../shared is present.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PARTS = ("fixtures", "testdata", "tools", "specs")
"""The folders of ../shared that tests/data mirrors (../shared's hooks/ and STYLE.md are not test data)."""


def files_under(root: Path) -> dict[str, Path]:
    """Relative POSIX path → path of every regular file of the mirrored parts under ``root``."""
    found = {}
    for part in PARTS:
        for path in sorted((root / part).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                found[path.relative_to(root).as_posix()] = path
    return found


def sync(shared: Path, target: Path = HERE) -> list[str]:
    """Make the mirrored parts under ``target`` equal those under ``shared``; return the changes made.

    Raises FileNotFoundError when ``shared`` lacks one of :data:`PARTS`.
    """
    for part in PARTS:
        if not (shared / part).is_dir():
            raise FileNotFoundError(f"{shared / part} is not a folder")
    want, have = files_under(shared), files_under(target)
    changes = []
    for rel in sorted(have.keys() - want.keys()):
        have[rel].unlink()
        changes.append(f"removed {rel}")
    for rel, src in sorted(want.items()):
        dst = target / rel
        if rel in have and dst.read_bytes() == src.read_bytes():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        changes.append(f"{'updated' if rel in have else 'added'} {rel}")
    return changes


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared"
    done = sync(source.resolve())
    print("\n".join(done) if done else f"tests/data already equals {source}")
