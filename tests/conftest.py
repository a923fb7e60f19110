"""Shared test fixtures: paths to ../shared and the deterministic weight filler."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TALKINGHEAD_SHARED", REPO.parent / "shared")).resolve()
FIXTURES = SHARED / "fixtures"
TESTDATA = SHARED / "testdata"
LP_FIXTURES = FIXTURES / "liveportrait"
DITTO_FIXTURES = FIXTURES / "ditto"

torch.set_num_threads(2)


def _load_fill_module():
    path = SHARED / "tools" / "fill_weights.py"
    spec = importlib.util.spec_from_file_location("fill_weights", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def fill_weights():
    """The shared fill-rule module (``shared/tools/fill_weights.py``)."""
    return _load_fill_module()


@pytest.fixture(scope="session")
def lp_manifest():
    """The LivePortrait fixture manifest (dict)."""
    return json.loads((LP_FIXTURES / "manifest.json").read_text())


def lp_file_entry(manifest: dict, file_id_or_suffix: str) -> dict:
    """The manifest ``files[]`` entry whose id or hub path suffix matches."""
    for f in manifest["files"]:
        if f.get("id") == file_id_or_suffix or f["hub_path"].endswith(file_id_or_suffix):
            return f
    raise KeyError(file_id_or_suffix)


def load_golden(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float = 0.0, what: str = "") -> None:
    """Assert |a - e| <= atol + rtol*|e| elementwise, with a helpful message."""
    a = actual.detach().to(torch.float64).cpu()
    e = expected.detach().to(torch.float64).cpu()
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    diff = (a - e).abs()
    bound = atol + rtol * e.abs()
    bad = diff > bound
    assert not bad.any(), f"{what}: max |diff| {diff.max().item():.3g} (atol {atol}, rtol {rtol}), {int(bad.sum())} values out of tolerance"


@pytest.fixture(scope="session")
def lp_weights_dir(tmp_path_factory, fill_weights, lp_manifest) -> Path:
    """A folder laid out like the Hub repo, holding the five LivePortrait ``.pth``
    files filled by ``shared/tools/fill_weights.py`` (same nesting and key layout
    as the real checkpoints)."""
    root = tmp_path_factory.mktemp("weights")
    for entry in lp_manifest["files"]:
        path = root / entry["hub_path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(fill_weights.fill_manifest_file(entry), path)
    return root


@pytest.fixture(scope="session")
def engine(lp_weights_dir):
    """An :class:`talkinghead.Engine` on CPU with the filled LivePortrait weights."""
    from talkinghead.engine import Engine

    return Engine.from_pretrained(weights=lp_weights_dir, device="cpu", progress=False)


def landmarks_json(name: str) -> Path:
    """Path of the testdata landmark file for a testdata media file name (e.g. ``"lp_d0.mp4"``)."""
    return TESTDATA / "landmarks" / f"{name}.json"
