"""Landmark and identity metrics: AKD (68 landmarks) and CSIM (cosine similarity of face embeddings).

Landmarks come from precomputed files (:class:`~talkinghead.face.landmarks.JsonLandmarks`, the testdata
format) or from dlib's HOG detector + ``shape_predictor_68_face_landmarks.dat`` (the
``face_recognition_models`` package; the tool that made ``tests/data/testdata/landmarks``).

CSIM embeddings: with ``arcface`` (an ONNX file, e.g. insightface's ``buffalo_l/w600k_r50.onnx``, ArcFace
ResNet-50 trained on WebFace600K; insightface's models are for non-commercial research use only) through
onnxruntime on the 112×112 crop aligned to ArcFace's 5-point template; otherwise, offline, dlib's
``dlib_face_recognition_resnet_model_v1.dat`` (128-d, from ``face_recognition_models``; CC0 / Boost licence).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import MediaError
from ..face.landmarks import largest_face

ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)
"""ArcFace's 112×112 alignment template (left eye, right eye, nose tip, mouth corners; insightface's
``face_align.arcface_dst``, a published constant)."""


def _dlib_models() -> tuple[object, Path] | None:
    """(dlib, folder of face_recognition_models' .dat files), or None when either is missing."""
    spec = importlib.util.find_spec("face_recognition_models")  # located, not imported (it needs pkg_resources)
    if importlib.util.find_spec("dlib") is None or spec is None or not spec.submodule_search_locations:
        return None
    import dlib

    return dlib, Path(list(spec.submodule_search_locations)[0]) / "models"


class DlibFaces:
    """dlib's offline face tools: 68 landmarks (HOG detector + shape predictor) and 128-d embeddings.

    Raises MediaError when dlib or face_recognition_models is not installed.
    """

    def __init__(self) -> None:
        found = _dlib_models()
        if found is None:
            raise MediaError("dlib and face_recognition_models are needed for landmark detection here: "
                             "pip install dlib-bin face_recognition_models, or give precomputed landmark files")
        self._dlib, models = found
        self._detector = self._dlib.get_frontal_face_detector()
        self._predictor = self._dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))
        self._recognizer = None
        self._models = models

    def landmarks(self, image: np.ndarray, frame_index: int = 0) -> np.ndarray | None:
        """(68, 2) float32 pixel landmarks of the largest face of an (H, W, 3) uint8 RGB frame, or None."""
        image = np.ascontiguousarray(image)
        rects = self._detector(image, 1)
        faces = [np.array([[p.x, p.y] for p in self._predictor(image, r).parts()], np.float32) for r in rects]
        return largest_face(faces, [[r.left(), r.top(), r.right(), r.bottom()] for r in rects])

    def embedding(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """(128,) float32 dlib face descriptor of the face with (68, 2) landmarks ``points``."""
        dlib = self._dlib
        if self._recognizer is None:
            self._recognizer = dlib.face_recognition_model_v1(str(self._models / "dlib_face_recognition_resnet_model_v1.dat"))
        x0, y0 = points.min(0)
        x1, y1 = points.max(0)
        shape = dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)),
                                           [dlib.point(int(round(x)), int(round(y))) for x, y in points])
        return np.asarray(self._recognizer.compute_face_descriptor(np.ascontiguousarray(image), shape), np.float32)


class ArcFace:
    """ArcFace embeddings from an insightface ONNX recognition model (input 1×3×112×112, (x − 127.5)/127.5).

    Raises MediaError when onnxruntime is missing or the file cannot be loaded.
    """

    def __init__(self, path: str | Path) -> None:
        try:
            import onnxruntime

            self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:
            raise MediaError(f"ArcFace model {path} could not be loaded: {e}") from None
        self._input = self._session.get_inputs()[0].name

    def embedding(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """(512,) float32 embedding of the face with (68, 2) landmarks, aligned on ArcFace's template."""
        import cv2

        five = np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])
        matrix, _ = cv2.estimateAffinePartial2D(five.astype(np.float32), ARCFACE_TEMPLATE)
        crop = cv2.warpAffine(np.ascontiguousarray(image), matrix, (112, 112), borderValue=0.0)
        blob = ((crop.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
        return self._session.run(None, {self._input: blob})[0][0].astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings (unitless, in [−1, 1]): CSIM of one frame pair."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def keypoint_distance(pred: np.ndarray, ref: np.ndarray) -> float:
    """AKD of one frame: mean Euclidean distance (pixels of the reference frame) of two (68, 2) landmark sets."""
    return float(np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(ref, np.float64), axis=1).mean())
