"""tests/data is an exact copy of ../shared's mirrored folders (checked whenever ../shared is present)."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest

from conftest import REPO

SHARED = REPO.parent / "shared"
DATA = REPO / "tests" / "data"


def _sync_module():
    spec = importlib.util.spec_from_file_location("tests_data_sync", DATA / "sync.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def _digests(root: Path, sync) -> dict[str, str]:
    return {rel: hashlib.sha256(path.read_bytes()).hexdigest() for rel, path in sync.files_under(root).items()}


def test_in_repo_data_has_every_part():
    """The copy exists on its own: every mirrored folder is present and holds files."""
    sync = _sync_module()
    for part in sync.PARTS:
        assert any((DATA / part).rglob("*")), f"tests/data/{part} is empty"
    assert (DATA / "testdata" / "SOURCES.md").is_file()
    assert (DATA / "fixtures" / "liveportrait" / "README.md").is_file()
    assert (DATA / "fixtures" / "ditto" / "README.md").is_file()


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"no ../shared beside the repository ({SHARED}): nothing to compare the in-repo copy with")
def test_in_repo_data_equals_shared():
    """Every file of the mirrored parts of ../shared is in tests/data with the same sha256, and no other file is."""
    sync = _sync_module()
    want, have = _digests(SHARED, sync), _digests(DATA, sync)
    missing = sorted(want.keys() - have.keys())
    extra = sorted(have.keys() - want.keys())
    changed = sorted(rel for rel in want.keys() & have.keys() if want[rel] != have[rel])
    hint = " (refresh with: python tests/data/sync.py)"
    assert not missing, f"in ../shared but not in tests/data: {missing}{hint}"
    assert not extra, f"in tests/data but not in ../shared: {extra}{hint}"
    assert not changed, f"differ from ../shared: {changed}{hint}"
    assert want, "../shared holds none of the mirrored folders"
