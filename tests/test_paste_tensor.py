"""Paste-back on the renderer's device (the GPU fast path): equal to OpenCV's paste-back within 1 grey level.

``paste_back_tensor`` runs wherever its tensors are, so these tests check it on the CPU against
:func:`talkinghead.face.paste.paste_back` (LivePortrait's formula through ``cv2.warpAffine``) on real photos
with their real source crops; the face pasted is another photo's 512² crop (real face content).  The
wiring of :class:`RenderedFrames` to :meth:`Finisher.finish_tensor` is checked with a renderer that says
it is on CUDA; the CUDA run itself is marked and skipped without a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TESTDATA, landmarks_json
from talkinghead.enhance.finish import Finisher
from talkinghead.face.crop import crop_face
from talkinghead.face.landmarks import JsonLandmarks
from talkinghead.face.paste import paste_back, paste_back_tensor
from talkinghead.media.image import load_image

PHOTOS = ["astronaut.png", "lp_s9_monalisa.jpg", "lp_s0_painting.jpg", "dt_male_face.png"]
MAX_LEVELS = 1
"""Largest difference, in grey levels, from OpenCV's paste-back (its 1/32-pixel sample positions)."""
MAX_FRACTION = 1e-3
"""Largest fraction of pixel values that may differ at all (measured: ≤ 2.3e-4 on these photos)."""


def _photo_and_crop(name: str):
    image = load_image(TESTDATA / "images" / name)
    return image, crop_face(image, JsonLandmarks(landmarks_json(name)).landmarks(image, 0))


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """(2, 512, 512, 3) uint8: the 512² source crops of two other photos."""
    return np.stack([_photo_and_crop(name)[1].crop for name in ("st_happy.png", "lp_d9.jpg")])


@pytest.mark.parametrize("name", PHOTOS)
def test_tensor_paste_back_equals_opencv_within_one_level(name: str, faces: np.ndarray) -> None:
    image, crop = _photo_and_crop(name)
    pasted = paste_back_tensor(torch.from_numpy(image), torch.from_numpy(faces), crop.M_c2o).numpy()
    assert pasted.shape == (2, *image.shape) and pasted.dtype == np.uint8
    for face, ours in zip(faces, pasted):
        reference = paste_back(image, face, crop.M_c2o)
        diff = np.abs(reference.astype(int) - ours.astype(int))
        assert diff.max() <= MAX_LEVELS and (diff > 0).mean() <= MAX_FRACTION, (diff.max(), (diff > 0).mean())
        assert not np.array_equal(ours, image)                       # the face went in


def test_batch_equals_each_face_alone_and_outside_the_crop_is_the_photo(faces: np.ndarray) -> None:
    image, crop = _photo_and_crop("lp_s9_monalisa.jpg")
    both = paste_back_tensor(torch.from_numpy(image), torch.from_numpy(faces), crop.M_c2o)
    for i in range(2):
        alone = paste_back_tensor(torch.from_numpy(image), torch.from_numpy(faces[i:i + 1]), crop.M_c2o)
        assert torch.equal(both[i], alone[0])
    changed = np.any(both[0].numpy() != image, axis=-1)
    rows, cols = np.nonzero(changed)
    corners = np.array([[0, 0, 1], [512, 0, 1], [0, 512, 1], [512, 512, 1]], float) @ np.asarray(crop.M_c2o)[:2].T
    assert rows.min() >= corners[:, 1].min() - 2 and rows.max() <= corners[:, 1].max() + 2
    assert cols.min() >= corners[:, 0].min() - 2 and cols.max() <= corners[:, 0].max() + 2


def test_bad_tensors_are_refused(faces: np.ndarray) -> None:
    image, crop = _photo_and_crop("astronaut.png")
    with pytest.raises(ValueError, match="uint8"):
        paste_back_tensor(torch.from_numpy(image).float(), torch.from_numpy(faces), crop.M_c2o)
    with pytest.raises(ValueError, match="same size"):
        paste_back_tensor(torch.from_numpy(image), torch.from_numpy(faces), crop.M_c2o,
                          torch.zeros(256, 256, dtype=torch.uint8))


def test_finish_tensor_matches_the_host_finisher(engine, faces: np.ndarray) -> None:
    source = engine.prepare_source(TESTDATA / "images" / "astronaut.png", landmarks=landmarks_json("astronaut.png"))
    finish = Finisher()
    host = finish(source, faces)
    device = finish.finish_tensor(source, torch.from_numpy(faces))()
    assert len(device) == 2 and all(d.shape == h.shape for d, h in zip(device, host))
    assert max(np.abs(d.astype(int) - h.astype(int)).max() for d, h in zip(device, host)) <= MAX_LEVELS
    crops = Finisher(paste_back=False).finish_tensor(source, torch.from_numpy(faces))()
    assert np.array_equal(np.stack(crops), faces)                    # no paste-back: the faces themselves


class _CudaLabelledRenderer:
    """A renderer that reports a CUDA device but renders on the CPU: which finishing call does the loop make?"""

    device = torch.device("cuda")

    def __init__(self, faces: np.ndarray) -> None:
        self.faces, self.calls = faces, []

    def render_uint8(self, feature_3d, x_s, x_d) -> torch.Tensor:
        self.calls.append("render_uint8")
        return torch.from_numpy(self.faces[: x_d.shape[0]])

    def render(self, feature_3d, x_s, x_d) -> np.ndarray:
        self.calls.append("render")
        return self.faces[: x_d.shape[0]]


def test_rendered_frames_on_cuda_paste_back_on_the_device_one_batch_ahead(engine, faces: np.ndarray) -> None:
    from talkinghead.render.frames import Driven, render_frames

    source = engine.prepare_source(TESTDATA / "images" / "astronaut.png", landmarks=landmarks_json("astronaut.png"))
    driven = [Driven(source, torch.zeros(1, 21, 3), torch.zeros(2, 21, 3))] * 3
    renderer = _CudaLabelledRenderer(faces)
    frames, rendered_before = [], []
    for frame in render_frames(renderer, driven, Finisher()):
        frames.append(frame)
        rendered_before.append(len(renderer.calls))
    assert renderer.calls == ["render_uint8"] * 3 and len(frames) == 6 and frames[0].shape == source.image.shape
    assert rendered_before == [2, 2, 3, 3, 3, 3]       # batch k + 1 queued before batch k's frames come out
    expected = Finisher()(source, faces)
    assert all(np.abs(f.astype(int) - expected[i % 2].astype(int)).max() <= MAX_LEVELS for i, f in enumerate(frames))
    renderer = _CudaLabelledRenderer(faces)
    plain = list(render_frames(renderer, driven, lambda s, f: list(f)))   # a finishing step without finish_tensor
    assert renderer.calls == ["render"] * 3 and np.array_equal(np.stack(plain), np.concatenate([faces] * 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_paste_back_equals_opencv_within_one_level(faces: np.ndarray) -> None:
    image, crop = _photo_and_crop("lp_s9_monalisa.jpg")
    pasted = paste_back_tensor(torch.from_numpy(image).cuda(), torch.from_numpy(faces).cuda(), crop.M_c2o).cpu()
    for face, ours in zip(faces, pasted.numpy()):
        diff = np.abs(paste_back(image, face, crop.M_c2o).astype(int) - ours.astype(int))
        assert diff.max() <= MAX_LEVELS and (diff > 0).mean() <= MAX_FRACTION
