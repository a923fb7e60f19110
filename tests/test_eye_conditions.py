"""Ditto's eye conditions (eye_open 2, eye_ball 6): MediaPipe provider, its fallbacks, the
formulas of core/utils/eye_info.py, and the one-OpenCV install that mediapipe needs.

No ``face_landmarker.task`` exists offline, so the real landmarker model never runs here:
the tests check the MediaPipe API we call (names and signatures, without a model), the
fallback for every way MediaPipe can fail (no package, no file, a garbage file, a failing or
face-less landmarker), and the mesh geometry on landmark points. Inputs: the testdata photo
dt_male_face.png and its dlib 68-point landmarks.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import re
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from conftest import REPO, TESTDATA, assert_close, landmarks_json
from talkinghead.drivers.audio.ditto.condition import (
    EyeConditions,
    LandmarkEyeConditions,
    MediaPipeEyeConditions,
    eye_conditions_from_68,
    eye_conditions_from_mesh,
)
from talkinghead.errors import NoFaceError, WeightsError
from talkinghead.face.crop import crop_face, transform_points
from talkinghead.face.landmarks import JsonLandmarks

OPENCV_DISTRIBUTIONS = {"opencv-python", "opencv-contrib-python", "opencv-python-headless",
                        "opencv-contrib-python-headless"}
"""PyPI distributions that each install their own ``cv2`` package."""

FALLBACK = "instead of MediaPipe"


def _name(requirement: str) -> str:
    """Normalised distribution name of a requirement line ("Foo_Bar>=1; extra" → "foo-bar")."""
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9._-]+)", requirement).group(1)).lower()


def _requirement_names(path: Path) -> set[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {_name(line) for line in lines if line and not line.startswith("-")}


@pytest.fixture(scope="module")
def source() -> tuple[np.ndarray, np.ndarray]:
    """(512, 512, 3) uint8 RGB crop of dt_male_face.png and its 68 landmarks in crop pixels."""
    image = cv2.cvtColor(cv2.imread(str(TESTDATA / "images" / "dt_male_face.png")), cv2.COLOR_BGR2RGB)
    points = JsonLandmarks(landmarks_json("dt_male_face.png")).landmarks(image)
    crop = crop_face(image, points)
    return crop.crop, transform_points(points, crop.M_o2c).astype(np.float32)


def _fallback_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if FALLBACK in str(w.message)]


def _measure_three_times(provider: MediaPipeEyeConditions, source) -> tuple[list[EyeConditions], list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [provider(*source) for _ in range(3)]
    return results, _fallback_warnings(caught)


def _assert_is_fallback(results: list[EyeConditions], source) -> None:
    expected = LandmarkEyeConditions()(*source)
    for eyes in results:
        assert torch.equal(eyes.eye_open, expected.eye_open) and torch.equal(eyes.eye_ball, expected.eye_ball)


# ----------------------------------------------------------------------------- install


def test_exactly_one_opencv_distribution_is_installed():
    """Two OpenCV distributions overwrite each other's cv2 package (mediapipe: contrib; face-alignment: plain)."""
    installed = {_name(d.metadata["Name"]) for d in importlib.metadata.distributions()} & OPENCV_DISTRIBUTIONS
    assert len(installed) == 1, f"OpenCV distributions installed: {sorted(installed)}; keep exactly one"


def test_requirements_name_one_opencv_and_mediapipe():
    runtime = _requirement_names(REPO / "requirements.txt")
    assert runtime & OPENCV_DISTRIBUTIONS == {"opencv-contrib-python"}  # the one mediapipe requires
    assert "mediapipe" in runtime and "face-alignment" not in runtime
    assert _requirement_names(REPO / "requirements-nodeps.txt") == {"face-alignment"}
    # face-alignment comes with --no-deps: requirements.txt must bring the rest of what it needs.
    needs = {_name(r) for r in importlib.metadata.requires("face-alignment") or [] if "extra ==" not in r}
    assert needs - OPENCV_DISTRIBUTIONS <= runtime, needs - OPENCV_DISTRIBUTIONS - runtime
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = {_name(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert project & OPENCV_DISTRIBUTIONS == {"opencv-contrib-python"} and "mediapipe" in project
    assert "face-alignment" not in project
    assert "requirements-nodeps.txt" in (REPO / ".ci" / "run").read_text()


def test_mediapipe_api_we_call_exists():
    """The names and signatures MediaPipeEyeConditions uses, checked without a model file."""
    mp = pytest.importorskip("mediapipe", reason="mediapipe is not installed: pip install -r requirements.txt")
    from mediapipe.tasks.python import BaseOptions, vision

    assert "model_asset_path" in inspect.signature(BaseOptions).parameters
    options = inspect.signature(vision.FaceLandmarkerOptions).parameters
    assert {"base_options", "num_faces", "running_mode"} <= set(options)
    assert options["running_mode"].default.name == "IMAGE" and options["num_faces"].default == 1
    assert list(inspect.signature(vision.FaceLandmarker.create_from_options).parameters) == ["options"]
    assert "image" in inspect.signature(vision.FaceLandmarker.detect).parameters
    assert "face_landmarks" in inspect.signature(vision.FaceLandmarkerResult).parameters
    crop = np.zeros((512, 512, 3), np.uint8)
    crop[100:200, 50:60] = (255, 128, 7)
    image = mp.Image(image_format=mp.ImageFormat.SRGB, data=crop)
    assert (image.width, image.height, image.channels) == (512, 512, 3)
    np.testing.assert_array_equal(image.numpy_view(), crop)


# ----------------------------------------------------------------------------- fallbacks


def test_missing_mediapipe_falls_back_with_one_warning(monkeypatch, tmp_path, source):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # makes `import mediapipe` raise ImportError
    results, warned = _measure_three_times(MediaPipeEyeConditions(tmp_path / "x.task", LandmarkEyeConditions()), source)
    _assert_is_fallback(results, source)
    assert len(warned) == 1 and "'mediapipe' package" in warned[0], warned


def test_missing_task_file_falls_back_with_one_warning(tmp_path, source):
    pytest.importorskip("mediapipe", reason="mediapipe is not installed: pip install -r requirements.txt")
    task = tmp_path / "face_landmarker.task"
    results, warned = _measure_three_times(MediaPipeEyeConditions(task, LandmarkEyeConditions()), source)
    _assert_is_fallback(results, source)
    assert len(warned) == 1 and str(task) in warned[0] and "not found" in warned[0], warned


def test_garbage_task_file_falls_back_with_one_warning(tmp_path, source):
    pytest.importorskip("mediapipe", reason="mediapipe is not installed: pip install -r requirements.txt")
    task = tmp_path / "face_landmarker.task"
    task.write_bytes(np.random.default_rng(0).integers(0, 256, 37, dtype=np.uint8).tobytes())
    results, warned = _measure_three_times(MediaPipeEyeConditions(task, LandmarkEyeConditions()), source)
    _assert_is_fallback(results, source)
    assert len(warned) == 1, warned
    assert str(task) in warned[0] and "cannot create the face landmarker" in warned[0], warned
    assert re.search(r"\(\w+: [^)]+\)", warned[0]), f"the warning should name MediaPipe's error: {warned[0]}"
    with pytest.raises(WeightsError, match="cannot create the face landmarker"):  # no fallback: raised
        MediaPipeEyeConditions(task)(*source)


class _Landmarker:
    """Stands in for a created FaceLandmarker (no .task file exists offline): records what it is fed."""

    def __init__(self, faces=None, error: Exception | None = None):
        self.faces, self.error, self.images = faces or [], error, []

    def detect(self, image):
        self.images.append(image)
        if self.error is not None:
            raise self.error
        return SimpleNamespace(face_landmarks=self.faces)


def _provider_with(landmarker: _Landmarker, fallback=True) -> MediaPipeEyeConditions:
    mp = pytest.importorskip("mediapipe", reason="mediapipe is not installed: pip install -r requirements.txt")
    provider = MediaPipeEyeConditions("face_landmarker.task", LandmarkEyeConditions() if fallback else None)
    provider._create = lambda: (mp, landmarker)
    return provider


def test_landmarker_failure_falls_back_with_one_warning(source):
    results, warned = _measure_three_times(_provider_with(_Landmarker(error=RuntimeError("graph broke"))), source)
    _assert_is_fallback(results, source)
    assert len(warned) == 1 and "failed on the source crop (RuntimeError: graph broke)" in warned[0], warned


def test_no_face_falls_back_with_one_warning(source):
    results, warned = _measure_three_times(_provider_with(_Landmarker(faces=[])), source)
    _assert_is_fallback(results, source)
    assert len(warned) == 1 and "no face" in warned[0], warned
    with pytest.raises(NoFaceError):
        _provider_with(_Landmarker(faces=[]), fallback=False)(*source)


def _mesh_from_68(points: np.ndarray, size: int) -> np.ndarray:
    """(478, 3) normalised mesh whose eye vertices sit on the photo's iBUG eye points.

    Corners 33/133, 263/362 on iBUG 36/39, 45/42; the three lid pairs on iBUG 37/41, the
    lid midpoints, 38/40 (and 43..47 for the image-right eye); irises 468/473 a little
    inward of each eye's centre; z varies so that the 3-D formulas are exercised.
    """
    p = points / size
    mesh = np.zeros((478, 3), np.float32)
    eyes = ((33, 133, ((144, 160), (145, 159), (153, 158)), 468, (36, 39, (37, 41), (38, 40))),
            (263, 362, ((373, 387), (374, 386), (380, 385)), 473, (45, 42, (44, 46), (43, 47))))
    for outer, inner, lids, iris, (o, i, (u1, l1), (u2, l2)) in eyes:
        mesh[outer, :2], mesh[inner, :2] = p[o], p[i]
        mesh[outer, 2], mesh[inner, 2] = 0.03, -0.01
        pairs = [(p[l1], p[u1]), ((p[l1] + p[l2]) / 2, (p[u1] + p[u2]) / 2), (p[l2], p[u2])]
        for (low, up), (a, b) in zip(lids, pairs):
            mesh[low, :2], mesh[up, :2], mesh[low, 2], mesh[up, 2] = a, b, 0.005, -0.005
        mesh[iris, :2] = (p[o] + p[i]) / 2 + 0.1 * (p[i] - p[o])
        mesh[iris, 2] = -0.02
    return mesh


def _eye_info_formulas(mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ditto core/utils/eye_info.py EyeAttrUtilsByMP, written out per eye (not the code under test)."""
    opens, moves = [], []
    for (o, i), lid_pairs, ball in (((33, 133), ((145, 159), (144, 160), (153, 158)), 468),
                                    ((263, 362), ((374, 386), (373, 387), (380, 385)), 473)):
        outer, inner = mesh[o].astype(np.float64), mesh[i].astype(np.float64)
        width = np.sqrt(((outer - inner) ** 2).sum())
        opens.append(sum(np.sqrt(((mesh[a] - mesh[b]) ** 2).sum()) for a, b in lid_pairs) / (width + 1e-8))
        centre = (outer + inner) * 0.5
        iris = mesh[ball].astype(np.float64)
        dist = np.sqrt(((iris - centre) ** 2).sum())
        eye_direc = (outer - inner) / (width + 1e-8)
        moves.append(((iris - centre) / (dist + 1e-8) - eye_direc) * dist)
    return np.array(opens), np.stack(moves, -1).reshape(6)  # [3, 2] → (lx, rx, ly, ry, lz, rz)


def test_provider_feeds_the_rgb_crop_and_applies_eye_info_formulas(source):
    crop, points = source
    mesh = _mesh_from_68(points, crop.shape[1])
    face = [SimpleNamespace(x=float(x), y=float(y), z=float(z)) for x, y, z in mesh]
    landmarker = _Landmarker(faces=[face])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eyes = _provider_with(landmarker)(crop, points)
    assert not _fallback_warnings(caught)
    (image,) = landmarker.images
    mp = pytest.importorskip("mediapipe")
    assert image.image_format == mp.ImageFormat.SRGB  # RGB uint8, as Ditto's Landmark478.detect_from_npimage
    np.testing.assert_array_equal(image.numpy_view(), crop)
    opens, balls = _eye_info_formulas(mesh)
    assert_close(eyes.eye_open, torch.tensor(opens, dtype=torch.float32), 1e-6, what="eye_open")
    assert_close(eyes.eye_ball, torch.tensor(balls, dtype=torch.float32), 1e-7, what="eye_ball")
    assert ((eyes.eye_open > 0.6) & (eyes.eye_open < 1.5)).all()  # open eyes, on Ditto's scale


def test_wrong_landmark_count_falls_back(source):
    face = [SimpleNamespace(x=0.5, y=0.5, z=0.0)] * 468  # a mesh model without irises
    results, warned = _measure_three_times(_provider_with(_Landmarker(faces=[face])), source)
    _assert_is_fallback(results, source)
    assert len(warned) == 1 and "468 landmarks, not 478" in warned[0], warned


# ----------------------------------------------------------------------------- geometry


def test_mesh_formulas_on_the_photos_eye_points(source):
    """eye_conditions_from_mesh = eye_info.py's formulas on a mesh placed on real eye points."""
    crop, points = source
    mesh = _mesh_from_68(points, crop.shape[1])
    eyes = eye_conditions_from_mesh(mesh)
    opens, balls = _eye_info_formulas(mesh)
    assert_close(eyes.eye_open, torch.tensor(opens, dtype=torch.float32), 1e-6, what="eye_open")
    assert_close(eyes.eye_ball, torch.tensor(balls, dtype=torch.float32), 1e-7, what="eye_ball")
    # The 68-point fallback measures the same eyes on Ditto's scale, 2-D and without the mid-lid pair.
    approx = eye_conditions_from_68(points).eye_open
    assert torch.allclose(approx, eyes.eye_open, rtol=0.05), (approx, eyes.eye_open)


def test_eye_ball_move_properties(source):
    """Ditto's ball_move = (unit(iris − centre) − unit(outer − inner)) · |iris − centre|."""
    crop, points = source
    mesh = _mesh_from_68(points, crop.shape[1])
    for outer, inner, iris, column in ((33, 133, 468, 0), (263, 362, 473, 1)):
        centre = (mesh[outer] + mesh[inner]) / 2
        along = (mesh[outer] - mesh[inner]) / np.linalg.norm(mesh[outer] - mesh[inner])
        moved = mesh.copy()
        moved[iris] = centre
        assert eye_conditions_from_mesh(moved).eye_ball.reshape(3, 2)[:, column].abs().max() < 1e-6
        moved[iris] = centre + 0.02 * along  # toward the outer corner: the formula gives 0
        assert eye_conditions_from_mesh(moved).eye_ball.reshape(3, 2)[:, column].abs().max() < 1e-6
        moved[iris] = centre - 0.02 * along  # toward the inner corner: −2 · unit · distance
        ball = eye_conditions_from_mesh(moved).eye_ball.reshape(3, 2)[:, column].numpy()
        np.testing.assert_allclose(ball, -2 * 0.02 * along, atol=1e-6)


# ----------------------------------------------------------------------------- engine


def test_engine_falls_back_once_without_the_task_file(audio_engine):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        provider = audio_engine.audio_backend("ditto").eye_condition_provider()
    assert isinstance(provider, LandmarkEyeConditions)
    warned = _fallback_warnings(caught)
    assert len(warned) == 1 and "face_landmarker.task" in warned[0], warned


def test_engine_falls_back_once_for_a_garbage_task_file(all_weights_dir, tmp_path):
    pytest.importorskip("mediapipe", reason="mediapipe is not installed: pip install -r requirements.txt")
    from talkinghead.engine import Engine

    root = tmp_path / "weights"
    for path in all_weights_dir.rglob("*"):
        if path.is_file():
            target = root / path.relative_to(all_weights_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path.resolve())
    task = root / "ditto_pytorch" / "aux_models" / "face_landmarker.task"
    task.write_bytes(b"\x00not a task file\xff")
    engine = Engine.from_pretrained(weights=root, device="cpu", progress=False)
    photo = TESTDATA / "images" / "dt_male_face.png"
    prepared = engine.prepare_source(photo, landmarks_json("dt_male_face.png"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = (engine.audio_backend("ditto").eye_conditions(prepared) for _ in range(2))
    warned = _fallback_warnings(caught)
    assert len(warned) == 1 and str(task) in warned[0], warned
    crop_points = transform_points(prepared.landmarks, prepared.crop.M_o2c).astype(np.float32)
    expected = LandmarkEyeConditions()(prepared.crop.crop, crop_points)
    assert torch.equal(first.eye_open, expected.eye_open) and torch.equal(second.eye_open, expected.eye_open)
