"""Face stage: landmark providers, LivePortrait crop, paste-back, eye/lip ratios.

Goldens: tests/data/fixtures/liveportrait/golden_crop (crop, paste-back) and
golden_S ``ratio.*`` (203-point ratios); real inputs: tests/data/testdata images,
videos and their dlib 68-point landmark files.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import LP_FIXTURES, REPO, TESTDATA
from talkinghead.errors import MediaError, NoFaceError
from talkinghead.face.crop import (
    crop_box,
    crop_face,
    crop_matrix,
    driving_box,
    face_rect,
    smooth_boxes,
    transform_points,
)
from talkinghead.face.landmarks import FaceAlignmentLandmarks, JsonLandmarks, LandmarkProvider, largest_face
from talkinghead.face.paste import mask_template, paste_back
from talkinghead.face.ratios import (
    EYE_RATIO_68_TO_203,
    LIP_RATIO_68_TO_203,
    eye_open_ratios,
    lip_open_ratio,
    liveportrait_ratios,
    mid_lid_eye_ratios,
)

IMAGES = TESTDATA / "images"
LANDMARKS = TESTDATA / "landmarks"


# ----------------------------------------------------------------------------- helpers


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def video_frame(path: Path, index: int) -> np.ndarray:
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="rgb24")
    raise IndexError(index)


def landmark_file(name: str) -> JsonLandmarks:
    return JsonLandmarks(LANDMARKS / f"{name}.json")


def json_frames(name: str) -> list[np.ndarray | None]:
    """Every frame's landmarks, read straight from the testdata file."""
    frames = json.loads((LANDMARKS / f"{name}.json").read_text())["frames"]
    return [None if points is None else np.array(points, dtype=np.float32) for points in frames]


def photo_and_landmarks(name: str) -> tuple[np.ndarray, np.ndarray]:
    image = read_rgb(IMAGES / name)
    return image, landmark_file(name).landmarks(image)


def full_frame_paste(original: np.ndarray, face: np.ndarray, M_c2o: np.ndarray) -> np.ndarray:
    """LivePortrait's paste-back formula on the whole image, literally as in spec §9."""
    size = (original.shape[1], original.shape[0])
    warp = dict(flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mask = np.repeat(mask_template(face.shape[0])[..., None], 3, axis=2)
    mask_ori = cv2.warpAffine(mask, M_c2o[:2], size, **warp).astype(np.float32) / 255
    warped = cv2.warpAffine(face, M_c2o[:2], size, **warp)
    return np.clip(mask_ori * warped + (1 - mask_ori) * original, 0, 255).astype(np.uint8)


def assert_uint8_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    """Golden rule for uint8 images: |diff| <= 1 on at most 0.5% of values."""
    assert actual.shape == expected.shape and actual.dtype == np.uint8, what
    diff = np.abs(actual.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 1, f"{what}: max |diff| {diff.max()}"
    assert np.count_nonzero(diff) <= 0.005 * diff.size, f"{what}: {np.count_nonzero(diff)} values differ"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


@pytest.fixture(scope="module")
def golden_crop() -> dict[str, np.ndarray]:
    return load_file(str(LP_FIXTURES / "golden_crop.safetensors"))


@pytest.fixture(scope="module")
def golden_ratios() -> dict[str, np.ndarray]:
    return {k: v for k, v in load_file(str(LP_FIXTURES / "golden_S.safetensors")).items() if k.startswith("ratio.")}


# ----------------------------------------------------------------------------- crop (golden)


def test_source_rect_matches_golden(golden_crop):
    rect = face_rect(golden_crop["lmk203_source"], scale=2.3, vy=-0.125)
    np.testing.assert_allclose(rect.center, golden_crop["rect.center"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(rect.size, golden_crop["rect.size"][0], rtol=0, atol=1e-4)
    np.testing.assert_allclose(rect.angle, golden_crop["rect.angle_rad"][0], rtol=0, atol=1e-7)


def test_source_crop_matches_golden(golden_crop):
    crop = crop_face(golden_crop["source_rgb"], golden_crop["lmk203_source"])
    assert crop.M_o2c.dtype == crop.M_c2o.dtype == np.float32
    np.testing.assert_allclose(crop.M_o2c, golden_crop["crop512.M_o2c"], rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(crop.M_c2o, golden_crop["crop512.M_c2o"], rtol=1e-6, atol=1e-4)
    pt_crop = transform_points(golden_crop["lmk203_source"], crop.M_o2c)
    np.testing.assert_allclose(pt_crop, golden_crop["crop512.pt_crop"], rtol=0, atol=1e-3)
    assert_uint8_close(crop.crop, golden_crop["crop512.img_crop"], "crop512")
    assert_uint8_close(crop.crop_256, golden_crop["crop512.img_crop_256x256"], "crop 256x256")


def test_landmark_model_crop_matrices_match_golden(golden_crop):
    M_o2c = crop_matrix(face_rect(golden_crop["lmk203_source"], scale=1.5, vy=-0.1), 224)
    np.testing.assert_allclose(M_o2c, golden_crop["crop224.M_o2c"], rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(np.linalg.inv(M_o2c), golden_crop["crop224.M_c2o"], rtol=1e-6, atol=1e-4)


def test_68_point_crop_puts_the_face_upright_in_the_middle():
    image, landmarks = photo_and_landmarks("lp_s0_painting.jpg")
    crop = crop_face(image, landmarks)
    inside = transform_points(landmarks, crop.M_o2c)
    eye_left, eye_right = inside[36:42].mean(axis=0), inside[42:48].mean(axis=0)
    assert abs(eye_left[1] - eye_right[1]) < 3  # roll undone: eyes level
    assert 0.3 * 512 < inside[:, 0].mean() < 0.7 * 512 and 0.3 * 512 < inside[:, 1].mean() < 0.7 * 512
    extent = inside.max(axis=0) - inside.min(axis=0)
    assert 512 / 2.3 - 1 < extent.max() < 512 / 2.3 + 1  # scale 2.3 of the landmarks' extent


def test_unsupported_landmark_count_is_rejected(golden_crop):
    with pytest.raises(ValueError, match="68"):
        face_rect(golden_crop["lmk203_source"][:106], scale=2.3)


# ----------------------------------------------------------------------------- paste-back


def test_mask_template_is_exact(golden_crop):
    mask = mask_template()
    assert mask.shape == (512, 512) and mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, golden_crop["paste.mask_template"])


def test_full_frame_reference_matches_golden(golden_crop):
    """The test's literal spec formula reproduces LivePortrait's mask_ori and result."""
    M_c2o = golden_crop["crop512.M_c2o"]
    height, width = golden_crop["source_rgb"].shape[:2]
    mask_ori = cv2.warpAffine(mask_template(), M_c2o[:2], (width, height), flags=cv2.INTER_LINEAR).astype(np.float32) / 255
    np.testing.assert_array_equal(mask_ori, golden_crop["paste.mask_ori"])
    reference = full_frame_paste(golden_crop["source_rgb"], golden_crop["paste.I_p"], M_c2o)
    np.testing.assert_array_equal(reference, golden_crop["paste.result"])


def test_paste_back_matches_golden(golden_crop):
    result = paste_back(golden_crop["source_rgb"], golden_crop["paste.I_p"], golden_crop["crop512.M_c2o"])
    assert_uint8_close(result, golden_crop["paste.result"], "paste result")


@pytest.mark.parametrize("name", ["astronaut.png", "lp_s0_painting.jpg"])
def test_identity_renderer_pastes_the_photo_back(name):
    image, landmarks = photo_and_landmarks(name)
    crop = crop_face(image, landmarks)
    result = paste_back(image, crop.crop, crop.M_c2o)
    np.testing.assert_array_equal(result, full_frame_paste(image, crop.crop, crop.M_c2o))
    face_area = cv2.warpAffine(mask_template(), crop.M_c2o[:2], image.shape[1::-1]) > 0
    assert psnr(result[face_area], image[face_area]) >= 40  # measured 41.8 / 50.5 dB
    assert psnr(result, image) >= 40


def test_box_paste_equals_full_frame_paste_on_a_large_photo():
    """A real photo in a 3000x2000 canvas, face far from the origin, renderer output ≠ crop."""
    photo, landmarks = photo_and_landmarks("astronaut.png")
    canvas = np.zeros((2000, 3000, 3), dtype=np.uint8)
    canvas[:] = photo.mean(axis=(0, 1)).astype(np.uint8)
    offset = np.array([2211, 1301])
    canvas[offset[1] : offset[1] + 512, offset[0] : offset[0] + 512] = photo
    crop = crop_face(canvas, landmarks + offset.astype(np.float32))
    generated = cv2.GaussianBlur(crop.crop, (0, 0), 3)  # stands in for the renderer: differs from the crop
    result = paste_back(canvas, generated, crop.M_c2o)
    np.testing.assert_array_equal(result, full_frame_paste(canvas, generated, crop.M_c2o))
    assert np.any(result != canvas)


def test_paste_back_off_image_crop_returns_the_original(golden_crop):
    original = golden_crop["source_rgb"]
    M_c2o = golden_crop["crop512.M_c2o"].copy()
    M_c2o[0, 2] += 5000  # the crop square lies right of the image
    np.testing.assert_array_equal(paste_back(original, golden_crop["paste.I_p"], M_c2o), original)


# ----------------------------------------------------------------------------- ratios


@pytest.mark.parametrize("who", ["source", "driving0", "driving1"])
def test_203_point_ratios_match_golden(golden_ratios, who):
    landmarks = golden_ratios[f"ratio.lmk203_{who}"]
    np.testing.assert_allclose(eye_open_ratios(landmarks), golden_ratios[f"ratio.eye.{who}"][0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(lip_open_ratio(landmarks), golden_ratios[f"ratio.lip.{who}"][0, 0], rtol=0, atol=1e-6)


def test_ratios_accept_batches(golden_ratios):
    batch = np.stack([golden_ratios[f"ratio.lmk203_{w}"] for w in ("source", "driving0", "driving1")])
    assert eye_open_ratios(batch).shape == (3, 2) and lip_open_ratio(batch).shape == (3,)
    np.testing.assert_allclose(eye_open_ratios(batch)[2], eye_open_ratios(batch[2]))


def test_68_point_ratios_on_real_photos():
    names = ["astronaut.png", "dt_male_face.png", "lp_d8.jpg", "lp_d9.jpg", "lp_s9_monalisa.jpg", "st_happy.png"]
    landmarks = {name: photo_and_landmarks(name)[1] for name in names}
    for name, points in landmarks.items():
        assert np.all((0.2 < eye_open_ratios(points)) & (eye_open_ratios(points) < 0.5)), name  # all eyes open
    lips = {name: float(lip_open_ratio(points)) for name, points in landmarks.items()}
    assert lips["lp_d9.jpg"] > 0.3  # open mouth (measured 0.59)
    for closed in ("dt_male_face.png", "lp_d8.jpg", "lp_s9_monalisa.jpg"):
        assert lips[closed] < 0.05 and lips["lp_d9.jpg"] > lips[closed] + 0.2, closed


def test_68_point_eye_ratio_sees_blinks_in_a_video():
    frames = np.stack(json_frames("lp_d9.mp4"))  # every frame has a face
    eyes = eye_open_ratios(frames)
    assert eyes.shape == (300, 2)
    assert np.median(eyes) > 0.25 and eyes.min() < 0.1  # open most of the time, closed at least once


def all_testdata_landmarks() -> tuple[list[str], np.ndarray]:
    """Every frame with a face in every testdata landmark file: (file names, (N, 68, 2))."""
    names, frames = [], []
    for path in sorted(LANDMARKS.glob("*.json")):
        if path.name == "REFERENCE_STATS.json":
            continue
        found = [points for points in json_frames(path.name[:-len(".json")]) if points is not None]
        if found:
            names.append(path.name)
            frames.extend(found)
    return names, np.stack(frames).astype(np.float64)


def test_eye_ratio_calibration_recomputed_from_testdata():
    """EYE_RATIO_68_TO_203 = mean of mid-lid (203-point definition) / 68-point ratio, all testdata frames."""
    names, frames = all_testdata_landmarks()
    assert len(names) == 20 and frames.shape == (2182, 68, 2)  # the counts the docstring reports
    ours, mid_lid = eye_open_ratios(frames), mid_lid_eye_ratios(frames)
    open_eyes = ours > 0.1
    quotient = mid_lid[open_eyes] / ours[open_eyes]
    assert open_eyes.sum() == 4323
    assert abs(quotient.mean() - EYE_RATIO_68_TO_203) < 5e-4, quotient.mean()
    assert abs(np.median(quotient) - EYE_RATIO_68_TO_203) < 2e-3 and quotient.std() < 0.02
    lsq = (mid_lid * ours).sum() / (ours**2).sum()  # through 0, closed eyes included
    assert abs(lsq - EYE_RATIO_68_TO_203) < 5e-3, lsq


def test_mid_lid_ratio_is_similarity_invariant_and_exact_for_equal_chords():
    points = photo_and_landmarks("dt_male_face.png")[1].astype(np.float64)
    angle = np.deg2rad(25.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    np.testing.assert_allclose(mid_lid_eye_ratios(points @ rotation.T * 2.5 + (40.0, -7.0)),
                               mid_lid_eye_ratios(points), rtol=1e-6)
    # Lid points with three equal chords (corner, (0.3, ±b), (0.7, ±b), corner; 0.4 = |(0.3, b)|):
    # the chord-length cubic at half the length is (9·(p1 + p2) − (p0 + p3)) / 16, height 9b/8,
    # so the mid-lid ratio is 9b/4 and exactly 9/8 × the 68-point ratio 2b.
    b = np.sqrt(0.4**2 - 0.3**2)
    eyes = points.copy()
    for outer, upper, lower, inner, dx in ((36, (37, 38), (41, 40), 39, 0.0), (45, (44, 43), (46, 47), 42, 3.0)):
        eyes[outer], eyes[inner] = (dx, 0.0), (dx + (1.0 if dx == 0 else -1.0), 0.0)
        side = 1.0 if dx == 0 else -1.0
        for index, (x, y) in zip((*upper, *lower), ((0.3, b), (0.7, b), (0.3, -b), (0.7, -b))):
            eyes[index] = (dx + side * x, y)
    np.testing.assert_allclose(mid_lid_eye_ratios(eyes), [9 * b / 4] * 2, rtol=1e-5)
    np.testing.assert_allclose(mid_lid_eye_ratios(eyes) / eye_open_ratios(eyes), [9 / 8] * 2, rtol=1e-5)


def test_liveportrait_ratios_scale_68_points_only(golden_ratios):
    points = photo_and_landmarks("dt_male_face.png")[1]
    eye, lip = liveportrait_ratios(points)
    np.testing.assert_allclose(eye, EYE_RATIO_68_TO_203 * eye_open_ratios(points))
    np.testing.assert_allclose(lip, LIP_RATIO_68_TO_203 * lip_open_ratio(points))
    assert LIP_RATIO_68_TO_203 == 1.0  # iBUG 62/66 over 48/54 are the 203 definition's own points
    landmarks = golden_ratios["ratio.lmk203_source"]  # 203 points: spec §7 as is
    eye, lip = liveportrait_ratios(landmarks)
    np.testing.assert_allclose(eye, golden_ratios["ratio.eye.source"][0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(lip, golden_ratios["ratio.lip.source"][0, 0], rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- landmark providers


def test_json_landmarks_for_a_photo():
    provider = landmark_file("astronaut.png")
    assert isinstance(provider, LandmarkProvider)
    assert (provider.width, provider.height, provider.n_frames, provider.fps) == (512, 512, 1, None)
    image = read_rgb(IMAGES / "astronaut.png")
    points = provider.landmarks(image)
    assert points.shape == (68, 2) and points.dtype == np.float32
    np.testing.assert_array_equal(points, json_frames("astronaut.png")[0])
    points[:] = 0
    assert provider.landmarks(image).any()  # callers get copies


def test_json_landmarks_for_a_video():
    provider = landmark_file("lp_d0.mp4")
    assert (provider.n_frames, provider.fps) == (78, 25.0)
    frame = video_frame(TESTDATA / "driving" / "lp_d0.mp4", 40)
    points = provider.landmarks(frame, frame_index=40)
    assert points.shape == (68, 2)
    assert not np.array_equal(points, provider.landmarks(frame, frame_index=0))
    with pytest.raises(MediaError, match="frame 78"):
        provider.landmarks(frame, frame_index=78)


def test_json_landmarks_without_a_face():
    image = read_rgb(IMAGES / "coffee_noface.png")
    assert landmark_file("coffee_noface.png").landmarks(image) is None


def test_json_landmarks_size_mismatch():
    painting = read_rgb(IMAGES / "lp_s0_painting.jpg")
    with pytest.raises(MediaError, match="512x512 image but the frame is 600x704"):
        landmark_file("astronaut.png").landmarks(painting)


def test_json_landmarks_rejects_bad_files(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        JsonLandmarks(tmp_path / "missing.json")
    doc = json.loads((LANDMARKS / "astronaut.png.json").read_text())
    broken = {
        "not_json.json": "{",
        "short.json": json.dumps({**doc, "n_frames": 2}),
        "bad_point.json": json.dumps({**doc, "frames": [doc["frames"][0][:67]]}),
        "no_width.json": json.dumps({k: v for k, v in doc.items() if k != "width"}),
    }
    for name, text in broken.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(MediaError, match=name):
            JsonLandmarks(tmp_path / name)


def test_face_alignment_provider_is_lazy_and_offline():
    """Importing and constructing the provider opens no socket and loads no model."""
    script = (
        "import socket, sys\n"
        "def refuse(*args, **kwargs): raise AssertionError('network access')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from talkinghead.face.landmarks import FaceAlignmentLandmarks, LandmarkProvider\n"
        "provider = FaceAlignmentLandmarks(device='cpu')\n"
        "assert isinstance(provider, LandmarkProvider)\n"
        "assert 'face_alignment' not in sys.modules, 'face_alignment imported eagerly'\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=60)
    assert FaceAlignmentLandmarks()._model is None


def test_largest_face_choice_on_real_landmarks():
    files = [json.loads((LANDMARKS / f"{name}.json").read_text()) for name in ("st_happy.png", "lp_d9.jpg", "astronaut.png")]
    faces = [np.array(doc["frames"][0], dtype=np.float32) for doc in files]
    boxes = [doc["boxes"][0] + [0.99] for doc in files]  # face-alignment appends a score
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    expected = faces[int(np.argmax(areas))]
    np.testing.assert_array_equal(largest_face(faces, boxes), expected)
    np.testing.assert_array_equal(largest_face(faces[::-1], boxes[::-1]), expected)
    np.testing.assert_array_equal(largest_face(faces, None), expected)  # ranked by landmark extent
    assert largest_face([], []) is None and largest_face(None, None) is None


# ----------------------------------------------------------------------------- driving boxes


@pytest.fixture(scope="module")
def d0_boxes() -> np.ndarray:
    return np.stack([driving_box(points) for points in json_frames("lp_d0.mp4")])


def test_driving_box_is_the_unrotated_face_rect():
    image, landmarks = photo_and_landmarks("lp_d8.jpg")  # tilted head
    rect = face_rect(landmarks, scale=2.2, vy=-0.1)
    assert abs(rect.angle) > 0.05
    np.testing.assert_allclose(driving_box(landmarks), [*rect.center, rect.size], rtol=1e-6)
    crop = crop_box(image, driving_box(landmarks))
    assert crop.crop.shape == (512, 512, 3) and crop.crop_256.shape == (256, 256, 3)
    assert crop.M_o2c[0, 1] == 0 and crop.M_o2c[1, 0] == 0  # axis-aligned


def test_smoothing_keeps_constant_boxes(d0_boxes):
    constant = [d0_boxes[0]] * 30
    np.testing.assert_allclose(smooth_boxes(constant, fps=25.0), np.stack(constant), rtol=0, atol=1e-9)


def test_smoothing_removes_jitter_but_follows_the_face(d0_boxes):
    smoothed = smooth_boxes(list(d0_boxes), fps=25.0)
    assert smoothed.shape == d0_boxes.shape
    jitter_raw = np.abs(np.diff(d0_boxes, n=2, axis=0)).mean(axis=0)
    jitter_smooth = np.abs(np.diff(smoothed, n=2, axis=0)).mean(axis=0)
    assert np.all(jitter_smooth < jitter_raw / 4), (jitter_raw, jitter_smooth)
    assert np.abs(smoothed - d0_boxes).max() < 0.05 * d0_boxes[:, 2].mean()  # stays on the face


def test_smoothing_fills_frames_without_a_face(d0_boxes):
    boxes: list[np.ndarray | None] = list(d0_boxes[:10])
    for i in (0, 1, 4, 5, 6, 9):
        boxes[i] = None
    filled = smooth_boxes(boxes, fps=25.0, window_s=0.0)
    for frame, source in {0: 2, 1: 2, 4: 3, 5: 3, 6: 7, 9: 8}.items():
        np.testing.assert_array_equal(filled[frame], d0_boxes[source])
    assert np.isfinite(smooth_boxes(boxes, fps=25.0)).all()
    with pytest.raises(NoFaceError):
        smooth_boxes([None, None], fps=25.0)
