"""Enhance stage: sha256-verified checkpoints, FFHQ alignment, GFPGAN/CodeFormer restoration, tiled 2× upscaling.

Networks are spandrel's own architecture classes with seeded random weights
(their speed and layout are those of the real checkpoints; their output is
not a restored face).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import TESTDATA, landmarks_json
from talkinghead.enhance import (
    FFHQ_TEMPLATE_512,
    EnhanceOptions,
    FaceRestorer,
    Upscaler,
    alignment,
    five_points,
    from_template,
    load_upscaler,
    to_template,
)
from talkinghead.enhance.align import template_mask
from talkinghead.errors import ControlError, WeightsError
from talkinghead.face.crop import crop_face, transform_points
from talkinghead.enhance.files import ENHANCE_FILES
from talkinghead.weights import HubFile, WeightStore

PHOTO = "lp_d9.jpg"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def face():
    """A real photo's 512² source crop and its five points in crop pixels."""
    image = cv2.cvtColor(cv2.imread(str(TESTDATA / "images" / PHOTO)), cv2.COLOR_BGR2RGB)
    landmarks = np.array(json.loads(landmarks_json(PHOTO).read_text())["frames"][0], dtype=np.float32)
    crop = crop_face(image, landmarks)
    return crop.crop, five_points(transform_points(landmarks, crop.M_o2c))


# ------------------------------------------------------------------ options
@pytest.mark.parametrize("kwargs, message", [
    ({"restorer": "gfpgan2"}, "none, gfpgan, codeformer"),
    ({"weight": 1.5}, "weight"),
    ({"fidelity": -0.1}, "fidelity"),
    ({"upscale": 4}, "upscale"),
    ({"tile": -1}, "tile"),
    ({"tile": 16}, "tile"),
])
def test_options_refuse_bad_values(kwargs, message) -> None:
    with pytest.raises(ControlError, match=message):
        EnhanceOptions(**kwargs)


def test_options_active() -> None:
    assert not EnhanceOptions().active
    assert not EnhanceOptions(restorer="gfpgan", weight=0.0).active
    assert EnhanceOptions(restorer="codeformer").restores
    assert EnhanceOptions(upscale=2, tile=0).active


# ------------------------------------------------------------------ sha256
def test_store_verifies_sha256(tmp_path) -> None:
    path = tmp_path / "sub" / "model.pth"
    path.parent.mkdir()
    path.write_bytes(b"not the official weights")
    store = WeightStore(weights_dir=tmp_path)
    right = HubFile("owner/repo", "sub/model.pth", "main", sha256=_sha256(path))
    assert store.path(right) == path
    assert store.path(right) == path  # second call: cached verification
    wrong = HubFile("owner/repo", "sub/model.pth", "main", sha256="0" * 64)
    with pytest.raises(WeightsError, match=r"model\.pth.*sha256 [0-9a-f]{64} differs from the expected 0{64}.*delete it"):
        store.path(wrong)


# ------------------------------------------------------------------ alignment
def test_five_points_and_alignment(face) -> None:
    _, points = face
    assert points.shape == (5, 2) and points.dtype == np.float32
    assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]  # image-left first
    assert np.allclose(alignment(FFHQ_TEMPLATE_512), [[1, 0, 0], [0, 1, 0]], atol=1e-6)
    # a rotated, scaled, shifted template is mapped back exactly
    angle, scale, shift = np.deg2rad(12.0), 0.7, np.array([30.0, -20.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = FFHQ_TEMPLATE_512 @ rotation.T + shift
    M = alignment(moved)
    assert np.allclose(moved @ M[:, :2].T + M[:, 2], FFHQ_TEMPLATE_512, atol=1e-3)


def test_align_round_trip_reproduces_the_crop(face) -> None:
    crop, points = face
    M = alignment(points)
    back = from_template(to_template(crop, M), crop, M)
    inside = cv2.warpAffine(template_mask(), cv2.invertAffineTransform(M), crop.shape[1::-1]) > 0.999
    outside = cv2.warpAffine(template_mask(), cv2.invertAffineTransform(M), crop.shape[1::-1]) == 0
    error = np.abs(back.astype(int) - crop.astype(int))
    assert inside.mean() > 0.3  # the face covers a good part of the crop
    assert error[inside].mean() < 1.5 and np.percentile(error[inside], 99) <= 8
    assert np.array_equal(back[outside], crop[outside])


# ------------------------------------------------------------------ restoration
def test_gfpgan_restores_a_real_crop(gfpgan, face) -> None:
    crop, points = face
    restored = gfpgan.restore(crop, points, weight=1.0)
    assert restored.shape == (512, 512, 3) and restored.dtype == np.uint8
    assert np.abs(restored.astype(int) - crop.astype(int)).mean() > 5
    outside = cv2.warpAffine(template_mask(), cv2.invertAffineTransform(alignment(points)), (512, 512)) == 0
    assert np.array_equal(restored[outside], crop[outside])  # only the aligned face square is replaced


def test_weight_zero_returns_the_input_exactly(gfpgan, face) -> None:
    batch = face[0][None]
    out = gfpgan.restore(batch, face[1], weight=0.0)
    assert out.shape == (1, 512, 512, 3) and np.array_equal(out, batch)


def test_codeformer_loads(gfpgan_state_dict) -> None:
    """Loading only: one CodeFormer forward costs 15–25 s on CPU (benchmarks/bench_enhance.py runs it)."""
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    restorer = FaceRestorer.from_state_dict({"params_ema": CodeFormer().state_dict()}, "codeformer")
    assert type(restorer.net).__name__ == "CodeFormer"
    with pytest.raises(WeightsError, match="not a CodeFormer checkpoint"):
        FaceRestorer.from_state_dict(gfpgan_state_dict, "codeformer")


def test_wrong_architecture_is_refused(gfpgan_state_dict, x2plus_state_dict) -> None:
    with pytest.raises(WeightsError, match="expected a GFPGAN checkpoint, found a ESRGAN one"):
        FaceRestorer.from_state_dict(x2plus_state_dict, "gfpgan")
    with pytest.raises(WeightsError, match="unknown face restorer 'restoreformer'"):
        FaceRestorer.from_state_dict(gfpgan_state_dict, "restoreformer")


def test_missing_or_misshaped_tensor_is_refused(x2plus_state_dict) -> None:
    state = dict(x2plus_state_dict["params_ema"])
    del state["body.0.rdb2.conv3.weight"]
    with pytest.raises(WeightsError, match=r"Missing key.*model\.1\.sub\.0\.RDB2\.conv3\.0\.weight"):
        Upscaler.from_state_dict(state)
    state = dict(x2plus_state_dict["params_ema"], **{"conv_hr.bias": torch.zeros(32)})
    with pytest.raises(WeightsError, match=r"size mismatch for model\.8\.bias"):
        Upscaler.from_state_dict(state)


def test_other_scales_are_refused() -> None:
    from spandrel.architectures.ESRGAN import ESRGAN

    x4 = ESRGAN(num_filters=16, num_blocks=1, scale=4).state_dict()
    with pytest.raises(WeightsError, match="expected a 2x network, found 4x"):
        Upscaler.from_state_dict(x4)


# ------------------------------------------------------------------ upscaling
def test_upscaler_loads_the_verified_file_and_doubles_odd_sizes(tmp_path, monkeypatch, x2plus_state_dict, face) -> None:
    official = ENHANCE_FILES["realesrgan_x2"]
    path = tmp_path / official.filename
    path.parent.mkdir(parents=True)
    torch.save(x2plus_state_dict, path)
    store = WeightStore(weights_dir=tmp_path)
    with pytest.raises(WeightsError, match="RealESRGAN_x2plus.pth.*differs from the expected"):
        load_upscaler(store)  # the real digest: this file is refused
    monkeypatch.setitem(ENHANCE_FILES, "realesrgan_x2", HubFile(official.repo_id, official.filename,
                                                                official.revision, sha256=_sha256(path)))
    upscaler = load_upscaler(store, tile=0)
    frame = np.ascontiguousarray(face[0][100:197, 200:331])  # 97 × 131
    out = upscaler.upscale(frame)
    assert out.shape == (194, 262, 3) and out.dtype == np.uint8
    assert abs(np.corrcoef(out[::2, ::2, 1].ravel(), frame[..., 1].ravel())[0, 1]) > 0.2  # the picture, not noise


def test_tiled_equals_untiled(x2plus_state_dict, face) -> None:
    frame = cv2.resize(face[0], (120, 88), interpolation=cv2.INTER_AREA)
    upscaler = Upscaler.from_state_dict(x2plus_state_dict, tile=0)
    whole = upscaler.upscale(frame)
    upscaler.tile = 48  # 3 × 2 tiles, the last ones partial
    tiled = upscaler.upscale(frame)
    assert tiled.shape == whole.shape == (176, 240, 3)
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 2


def test_upscale_tensor_is_upscale_frame_by_frame(x2plus_state_dict, face) -> None:
    small = cv2.resize(face[0], (40, 30), interpolation=cv2.INTER_AREA)
    frames = np.stack([small, small[:, ::-1]])                        # two frames: the crop and its mirror
    upscaler = Upscaler.from_state_dict(x2plus_state_dict, tile=24)   # tiled: 2 × 2 tiles
    batch = upscaler.upscale_tensor(torch.from_numpy(frames))
    assert batch.shape == (2, 60, 80, 3) and batch.dtype == torch.uint8
    for frame, upscaled in zip(frames, batch):
        assert np.array_equal(upscaled.numpy(), upscaler.upscale(frame))
    with pytest.raises(ValueError, match="uint8"):
        upscaler.upscale_tensor(torch.from_numpy(frames).float())
