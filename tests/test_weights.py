"""Checkpoint resolution (local folder, default folder, Hub cache) and safe, strict reading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from talkinghead.errors import WeightsError
from talkinghead.weights import HubFile, WeightStore, read_checkpoint, strip_prefix
from talkinghead.weights_strict import load_state_dict_strict

SHA = "0123456789abcdef0123456789abcdef01234567"
FILE = HubFile("KwaiVGI/LivePortrait", "liveportrait/base_models/tiny.pth", "main")


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.norm = nn.BatchNorm1d(2)


def _tiny_sd() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return Tiny().state_dict()


def _make_hub_cache(root: Path, data: dict) -> Path:
    """Lay out ``root`` like huggingface_hub's cache holding FILE at revision ``main`` = SHA."""
    repo = root / "models--KwaiVGI--LivePortrait"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(SHA)
    target = repo / "snapshots" / SHA / FILE.filename
    target.parent.mkdir(parents=True)
    torch.save(data, target)
    return target


def test_local_weights_dir(tmp_path: Path) -> None:
    target = tmp_path / FILE.filename
    target.parent.mkdir(parents=True)
    torch.save(_tiny_sd(), target)
    store = WeightStore(weights_dir=tmp_path)
    assert store.path(FILE) == target
    model = load_state_dict_strict(Tiny(), read_checkpoint(store.path(FILE)), str(target))
    assert torch.equal(model.fc.weight, _tiny_sd()["fc.weight"])


def test_missing_file_in_weights_dir_names_it(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="tiny.pth"):
        WeightStore(weights_dir=tmp_path).path(FILE)
    with pytest.raises(WeightsError, match="does not exist"):
        WeightStore(weights_dir=tmp_path / "nope")


def test_default_local_dir_is_used_before_the_hub(tmp_path: Path) -> None:
    target = tmp_path / FILE.filename
    target.parent.mkdir(parents=True)
    torch.save(_tiny_sd(), target)
    assert WeightStore(local_dir=tmp_path, cache_dir=tmp_path / "cache").path(FILE) == target


def test_hub_cache_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real huggingface_hub code path resolves a cached file with HF_HUB_OFFLINE."""
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    cache = tmp_path / "cache"
    target = _make_hub_cache(cache, _tiny_sd())
    store = WeightStore(local_dir=None, cache_dir=cache)
    got = store.path(FILE)
    assert got.resolve() == target.resolve()
    load_state_dict_strict(Tiny(), read_checkpoint(store.path(FILE)), str(got))
    pinned = HubFile(FILE.repo_id, FILE.filename, SHA)
    assert store.path(pinned).resolve() == target.resolve()
    # a file the cache does not hold gives a clear, actionable error
    with pytest.raises(WeightsError, match="not in the Hub cache"):
        store.path(HubFile(FILE.repo_id, "liveportrait/base_models/other.pth", "main"))


def test_renamed_key_is_refused_with_its_name(tmp_path: Path) -> None:
    sd = _tiny_sd()
    sd["fc.weight_renamed"] = sd.pop("fc.weight")
    with pytest.raises(WeightsError) as e:
        load_state_dict_strict(Tiny(), sd, "tiny.pth")
    assert "'fc.weight'" in str(e.value) and "fc.weight_renamed" in str(e.value) and "tiny.pth" in str(e.value)


def test_wrong_shape_is_refused_with_its_name() -> None:
    sd = _tiny_sd()
    sd["fc.weight"] = torch.zeros(2, 4)
    with pytest.raises(WeightsError, match=r"'fc.weight' has shape \[2, 4\], expected \[2, 3\]"):
        load_state_dict_strict(Tiny(), sd, "tiny.pth")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_code_executing_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"fc.weight": _Exploit()}, path)
    with pytest.raises(WeightsError, match="refused"):
        read_checkpoint(path)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.pth"
    torch.save(_tiny_sd(), path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(WeightsError, match="not a readable checkpoint"):
        read_checkpoint(path)


def test_safetensors_is_read(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "tiny.safetensors"
    save_file(_tiny_sd(), str(path))
    assert set(read_checkpoint(path)) == set(_tiny_sd())


def test_strip_prefix_removes_every_occurrence() -> None:
    sd = {"module.mlp.0.weight": torch.zeros(1), "module.mlp.module.x": torch.zeros(1)}
    assert set(strip_prefix(sd, "module.")) == {"mlp.0.weight", "mlp.x"}


def test_liveportrait_loader_names_file_and_key(tmp_path: Path, lp_weights_dir: Path, lp_manifest, fill_weights) -> None:
    """The real loader (all five files, S's nested ``module.`` layout) refuses a renamed key in S."""
    from talkinghead.models.liveportrait import load_liveportrait

    for entry in lp_manifest["files"]:
        target = tmp_path / entry["hub_path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry["id"] != "S":
            target.symlink_to(lp_weights_dir / entry["hub_path"])
            continue
        ckpt = fill_weights.fill_manifest_file(entry)
        eye = ckpt["retarget_eye"]
        eye["module.mlp.0.weight_renamed"] = eye.pop("module.mlp.0.weight")
        torch.save(ckpt, target)
    with pytest.raises(WeightsError) as e:
        load_liveportrait(WeightStore(weights_dir=tmp_path))
    message = str(e.value)
    assert "stitching_retargeting_module.pth:retarget_eye" in message and "'mlp.0.weight'" in message
