"""Enhancement wired into the engine and the CLI: restore → paste-back → upscale, and weights refused when unverified.

The rendered face is stood in for by the photo's own 512² crop (what the
renderer's output looks like in size and content), so nothing is rendered;
the networks are spandrel's classes with seeded random weights (conftest).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import TESTDATA, landmarks_json
from talkinghead.cli import main
from talkinghead.engine import RenderOptions
from talkinghead.enhance import EnhanceOptions, Upscaler, load_restorer
from talkinghead.enhance.finish import Finisher
from talkinghead.errors import WeightsError
from talkinghead.face.paste import paste_back
from talkinghead.enhance.files import ENHANCE_FILES
from talkinghead.weights import WeightStore

ASTRONAUT = TESTDATA / "images" / "astronaut.png"


@pytest.fixture(scope="module")
def source(engine):
    return engine.prepare_source(ASTRONAUT, landmarks=landmarks_json("astronaut.png"))


@pytest.fixture
def enhanced_engine(engine, gfpgan, x2plus_state_dict, monkeypatch):
    """The shared engine whose public loaders give the seeded restorer and upscaler (restored after the test)."""
    upscaler = Upscaler.from_state_dict(x2plus_state_dict, tile=128)
    monkeypatch.setattr(engine, "restorer", lambda kind: gfpgan if kind == "gfpgan" else pytest.fail(kind))
    monkeypatch.setattr(engine, "upscaler", lambda tile: upscaler)
    return engine


def _outside(box_image: np.ndarray, M_c2o: np.ndarray) -> np.ndarray:
    """Mask of the pixels outside the pasted crop square (with a 2-px margin)."""
    h, w = box_image.shape[:2]
    corners = np.array([[-2, -2, 1], [514, -2, 1], [-2, 514, 1], [514, 514, 1]], dtype=np.float64) @ M_c2o[:2].T
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int)
    mask = np.ones((h, w), bool)
    mask[max(y0, 0):y1, max(x0, 0):x1] = False
    return mask


def test_default_options_are_plain_paste_back(engine, source) -> None:
    face = source.crop.crop
    finish = engine.finisher(RenderOptions())
    assert np.array_equal(finish(source, face[None])[0], paste_back(source.image, face, source.crop.M_c2o))


def test_restoration_changes_only_the_face_region(enhanced_engine, source) -> None:
    face = source.crop.crop
    plain = paste_back(source.image, face, source.crop.M_c2o)
    restored = enhanced_engine.finisher(
        RenderOptions(enhance=EnhanceOptions(restorer="gfpgan", weight=0.5)))(source, face[None])[0]
    assert restored.shape == plain.shape and restored.dtype == np.uint8
    assert not np.array_equal(restored, plain)
    outside = _outside(plain, source.crop.M_c2o)
    assert outside.any() and np.array_equal(restored[outside], plain[outside])


def test_weight_zero_never_runs_the_restorer(engine, source, monkeypatch) -> None:
    monkeypatch.setattr(engine, "restorer", lambda kind: pytest.fail("restorer loaded for weight 0"))
    face = source.crop.crop
    finish = engine.finisher(RenderOptions(enhance=EnhanceOptions(restorer="gfpgan", weight=0.0)))
    assert np.array_equal(finish(source, face[None])[0], paste_back(source.image, face, source.crop.M_c2o))


def test_upscale_doubles_the_output_frame(enhanced_engine, source) -> None:
    face = source.crop.crop
    crop_out = enhanced_engine.finisher(
        RenderOptions(paste_back=False, enhance=EnhanceOptions(upscale=2, tile=128)))(source, face[None])[0]
    assert crop_out.shape == (1024, 1024, 3) and crop_out.dtype == np.uint8


def test_unverified_enhancer_weights_are_refused(tmp_path: Path) -> None:
    wrong = tmp_path / ENHANCE_FILES["gfpgan"].filename
    wrong.write_bytes(b"not GFPGAN v1.4")
    with pytest.raises(WeightsError, match="GFPGANv1.4.pth.*sha256"):
        load_restorer(WeightStore(weights_dir=tmp_path), "gfpgan")


def test_the_finisher_restores_a_batch_as_it_restores_each_face_alone(gfpgan, source) -> None:
    """N faces finished together = each finished alone, in order.

    Catches a batched restore that mixes the faces up: every face aligned,
    restored or blended with the first one's (or a wrong one's), the batch
    reordered, or only the first face restored.
    """
    face = source.crop.crop
    faces = np.stack([face, np.ascontiguousarray(face[:, ::-1]), (face * 0.7).astype(np.uint8)])
    finish = Finisher(enhance=EnhanceOptions(restorer="gfpgan", weight=0.7), restorer=gfpgan)
    together = finish(source, faces)
    alone = [finish(source, one[None])[0] for one in faces]
    plain = [paste_back(source.image, one, source.crop.M_c2o) for one in faces]
    assert len(together) == len(faces)
    for i, (a, b, p) in enumerate(zip(together, alone, plain)):
        assert np.abs(a.astype(int) - b).max() <= 1, i  # the batch's convolutions may round differently
        assert not np.array_equal(a, p), i  # restored, not just pasted
    assert not np.array_equal(together[0], together[1])


def test_cli_enhance_without_its_weights_fails_cleanly(tmp_path: Path, lp_weights_dir: Path, capsys) -> None:
    out = tmp_path / "still.png"
    rc = main(["pose", "--source", str(ASTRONAUT), "--still", str(out), "--enhance", "gfpgan",
               "--weights", str(lp_weights_dir), "--device", "cpu", "--quiet",
               "--source-landmarks", str(landmarks_json("astronaut.png"))])
    assert rc == 2 and not out.exists()
    assert "GFPGANv1.4.pth" in capsys.readouterr().err


def test_cli_refuses_a_bad_enhance_weight(tmp_path: Path, capsys) -> None:
    rc = main(["pose", "--source", str(ASTRONAUT), "--still", str(tmp_path / "x.png"), "--enhance-weight", "1.5"])
    assert rc == 2 and "weight" in capsys.readouterr().err
