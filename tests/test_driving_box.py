"""Driving crop of a non-square clip: LivePortrait's one averaged box vs our per-frame tracked box (issue 10).

The clip is driving/lp_d13_uncropped.mp4 (720×1280, 30 fps, 180 frames) with
its dlib landmarks.  The expected matrix is built by hand here, by
LivePortrait's rule: src/utils/cropper.py ``Cropper.crop_driving_video``
(per-frame ``parse_bbox_from_landmark`` with scale 2.2, vy −0.1 → float32
corners, ``average_bbox_lst`` = ``np.mean`` of the (N, 4) float32 corners,
``crop_image_by_bbox`` with dsize 512 and no rotation), with LivePortrait's
NumPy 1.26 arithmetic (Python floats and float32 scalars promote to float64).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from talkinghead.drivers.video import VideoDriver
from talkinghead.errors import ControlError
from talkinghead.face.crop import face_rect
from talkinghead.face.landmarks import JsonLandmarks
from talkinghead.media.video import VideoReader

from conftest import TESTDATA, landmarks_json

CLIP = TESTDATA / "driving" / "lp_d13_uncropped.mp4"


def driver(box: str = "average") -> VideoDriver:
    """A driver of the clip; M is never run by ``inputs()`` (a one-parameter stand-in gives the device)."""
    return VideoDriver(CLIP, torch.nn.Linear(1, 1), landmarks=JsonLandmarks(landmarks_json(CLIP.name)), box=box)


def liveportrait_matrix() -> np.ndarray:
    """M_o2c of the averaged box, by hand from the landmark JSON."""
    frames = json.loads(landmarks_json(CLIP.name).read_text())["frames"]
    corners = []
    for points in frames:
        rect = face_rect(np.asarray(points, np.float32), scale=2.2, vy=-0.1)   # per-frame rect (golden-tested)
        cx, cy = (float(v) for v in rect.center)                              # float32 values
        w = float(np.float32(rect.size))
        corners.append([cx - w / 2, cy - w / 2, cx + w / 2, cy + w / 2])
    left, top, right, bot = np.mean(np.array(corners, dtype=np.float32), axis=0).tolist()
    size = right - left
    center = np.array([(left + right) / 2, (top + bot) / 2], dtype=np.float32)
    s = 512 / size
    m = np.array([[s, 0, 256.0 - s * float(center[0])], [0, s, 256.0 - s * float(center[1])]], dtype=np.float32)
    return np.vstack([m, np.array([0, 0, 1], dtype=np.float32)])


def test_one_averaged_box_crops_every_frame() -> None:
    expected = liveportrait_matrix()
    matrices, first = [], None
    for item in driver().inputs():
        matrices.append(item.M_o2c)
        first = item if first is None else first
    assert len(matrices) == 180
    for matrix in matrices:
        np.testing.assert_array_equal(matrix, matrices[0])        # one box for the whole clip
    np.testing.assert_array_equal(matrices[0], expected)
    with VideoReader(CLIP) as reader:
        frame = next(iter(reader))
    crop = cv2.warpAffine(frame, expected[:2], (512, 512), flags=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(first.image, cv2.resize(crop, (256, 256)))   # LivePortrait: bilinear 512 → 256


def test_tracked_box_follows_the_face() -> None:
    matrices = [item.M_o2c for item in driver("track").inputs()]
    assert len(matrices) == 180
    spread = np.ptp(np.stack([m[:2, 2] for m in matrices]), axis=0)
    assert spread.max() > 1.0, spread                              # the box moves with the head (pixels of the crop)


def test_unknown_box_mode_is_a_control_error() -> None:
    with pytest.raises(ControlError, match="average, track"):
        driver("middle")


@pytest.mark.parametrize("flag, expected", [([], "average"), (["--driving-box", "track"], "track")])
def test_cli_passes_the_driving_box(tmp_path, lp_weights_dir, flag, expected) -> None:
    """``--driving-box`` reaches the engine (the job itself is cut short before rendering)."""
    from talkinghead.cli import main
    from talkinghead.engine import Engine
    from talkinghead.errors import TalkingHeadError

    seen = {}

    def record(self, source, driving, options, render, **kwargs):
        seen.update(kwargs)
        raise TalkingHeadError("stop here")

    photo = TESTDATA / "images" / "lp_s0_painting.jpg"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Engine, "animate_video", record)
        rc = main([str(a) for a in ("video", "--source", photo, "--source-landmarks", landmarks_json(photo.name),
                                    "--driving", CLIP, "--driving-landmarks", landmarks_json(CLIP.name),
                                    "--out", tmp_path / "o.mp4", "--weights", lp_weights_dir, "--device", "cpu",
                                    "--quiet", *flag)])
    assert rc == 2 and seen["driving_box"] == expected
