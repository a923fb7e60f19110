"""Facial landmark providers: 68 points per face, iBUG 300-W convention.

Every provider answers one question — where are the 68 landmarks of the
largest face in this RGB image? — through :class:`LandmarkProvider`.  Two
implementations:

* :class:`JsonLandmarks` reads precomputed landmarks (the format of
  ``tests/data/testdata/landmarks/*.json``, see ``tests/data/testdata/SOURCES.md``),
  one entry per frame of an image or video.
* :class:`FaceAlignmentLandmarks` runs the ``face-alignment`` package (an SFD
  face detector plus the 2D-FAN landmark network).  The package and its
  weights are loaded on the first call only: it downloads its weights itself
  on first use, never at import or construction.

iBUG 68-point indices (0-based): 0–16 jaw, 17–26 brows, 27–35 nose, 36–41 the
image-left eye (the subject's right eye in an unmirrored photo), 42–47 the
image-right eye, 48–59 outer lips (48 and 54 are the mouth corners), 60–67
inner lips.  Coordinates are ``(x, y)`` pixels of the original image in the
OpenCV convention (pixel ``(col, row)`` is centred at ``(col, row)``), as
dlib and face-alignment report them.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import MediaError, WeightsError

NUM_LANDMARKS = 68
"""Points per face in the iBUG 300-W layout used by every provider."""


@runtime_checkable
class LandmarkProvider(Protocol):
    """Anything that finds the 68 landmarks of the largest face in an image."""

    def landmarks(self, image: np.ndarray, frame_index: int = 0) -> np.ndarray | None:
        """Landmarks of the largest face in ``image``.

        Args:
            image: (H, W, 3) uint8 RGB image.
            frame_index: index of ``image`` in its video (0 for a photo);
                providers that detect faces ignore it.

        Returns:
            (68, 2) float32 ``(x, y)`` pixel coordinates in ``image``, or
            ``None`` when there is no face.
        """
        ...


class JsonLandmarks:
    """Precomputed landmarks from a JSON file (testdata format).

    The file holds ``width``, ``height``, ``n_frames``, ``fps`` (a number, or
    ``null`` for a photo) and ``frames``: one entry per decoded frame, either
    68 ``[x, y]`` pairs in original pixels or ``null`` where no face was found
    (``tests/data/testdata/SOURCES.md``).  Other keys (boxes, embeddings, …) are
    ignored.

    Raises:
        MediaError: when the file is missing, is not JSON, or does not follow
            that format (the message names the file and the offending field),
            or a frame's points are no usable face (:func:`landmark_problem`;
            the message names the file and the frame).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        doc = _read_json(self.path)
        self.width: int = _positive_int(doc, "width", self.path)
        self.height: int = _positive_int(doc, "height", self.path)
        self.n_frames: int = _positive_int(doc, "n_frames", self.path)
        self.fps: float | None = _optional_fps(doc, self.path)
        self._frames = _parse_frames(doc, self.n_frames, self.path, self.width, self.height)

    def landmarks(self, image: np.ndarray, frame_index: int = 0) -> np.ndarray | None:
        """Landmarks stored for frame ``frame_index``.

        Args:
            image: (H, W, 3) uint8 RGB frame the landmarks are asked for; only
                its size is used, to check that the file describes it.
            frame_index: 0-based frame number (0 for a photo).

        Returns:
            (68, 2) float32 pixel coordinates (a fresh copy), or ``None`` where
            the file records no face.

        Raises:
            MediaError: when ``image`` is not W×H as recorded in the file, or
                ``frame_index`` is outside ``[0, n_frames)``.
        """
        height, width = image.shape[:2]
        if (width, height) != (self.width, self.height):
            raise MediaError(
                f"landmark file {self.path} is for a {self.width}x{self.height} image but the frame is "
                f"{width}x{height}: use the landmark file made for this photo or video"
            )
        if not 0 <= frame_index < self.n_frames:
            raise MediaError(
                f"frame {frame_index} is outside the {self.n_frames} frames of landmark file {self.path}: "
                "use the landmark file made for this video"
            )
        frame = self._frames[frame_index]
        return None if frame is None else frame.copy()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MediaError(f"landmark file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MediaError(f"cannot read landmark file {path} ({exc}): give a JSON landmark file") from None
    if not isinstance(doc, dict):
        raise MediaError(f"landmark file {path} does not hold a JSON object: give a landmark file in the testdata format")
    return doc


def _format_error(path: Path, what: str) -> MediaError:
    return MediaError(f"landmark file {path}: {what} (format: tests/data/testdata/SOURCES.md)")


def _positive_int(doc: dict[str, Any], key: str, path: Path) -> int:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _format_error(path, f"'{key}' must be a positive integer, got {value!r}")
    return value


def _optional_fps(doc: dict[str, Any], path: Path) -> float | None:
    fps = doc.get("fps")
    if fps is None:
        return None
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise _format_error(path, f"'fps' must be a positive number or null, got {fps!r}")
    return float(fps)


def _parse_frames(doc: dict[str, Any], n_frames: int, path: Path, width: int, height: int) -> list[np.ndarray | None]:
    frames = doc.get("frames")
    if not isinstance(frames, list) or len(frames) != n_frames:
        got = f"{len(frames)} entries" if isinstance(frames, list) else repr(type(frames).__name__)
        raise _format_error(path, f"'frames' must be a list of n_frames={n_frames} entries, got {got}")
    return [None if frame is None else _parse_points(frame, index, path, width, height)
            for index, frame in enumerate(frames)]


MIN_FACE_SPREAD_PX = 2.0
"""Smallest width and height (pixels) of the box around a face's 68 points: below it the face is degenerate."""

MAX_OUTSIDE_FRACTION = 0.5
"""How far outside the image a landmark may lie, as a fraction of the image's width or height."""


def landmark_problem(points: np.ndarray, width: int, height: int) -> str | None:
    """Why a face's landmarks are unusable, or ``None`` when they are fine.

    Args:
        points: (68, 2) ``(x, y)`` pixels.
        width, height: size of the image they belong to, pixels.

    Returns:
        ``None``, or a short reason: non-finite values; all points (nearly)
        coinciding or on one line (the box around them narrower or lower
        than :data:`MIN_FACE_SPREAD_PX`; such a face has no size to crop or
        paste back); a point more than :data:`MAX_OUTSIDE_FRACTION` of the
        image's size outside it.
    """
    if not np.isfinite(points).all():
        return "its points are not all finite numbers"
    extent = points.max(axis=0) - points.min(axis=0)
    if (extent < MIN_FACE_SPREAD_PX).any():
        return (f"its 68 points span only {extent[0]:.3g}x{extent[1]:.3g} px (they coincide or lie on a line), "
                "which is no face")
    margin = MAX_OUTSIDE_FRACTION * np.array([width, height], dtype=np.float64)
    low, high = -margin, np.array([width, height], dtype=np.float64) - 1 + margin
    outside = ((points < low) | (points > high)).any(axis=1)
    if outside.any():
        i = int(np.argmax(outside))
        return (f"point {i} at ({points[i, 0]:.1f}, {points[i, 1]:.1f}) lies far outside the "
                f"{width}x{height} image")
    return None


def _parse_points(frame: Any, index: int, path: Path, width: int, height: int) -> np.ndarray:
    try:
        points = np.asarray(frame, dtype=np.float32)
    except (TypeError, ValueError):
        points = None
    if points is None or points.shape != (NUM_LANDMARKS, 2) or not np.isfinite(points).all():
        raise _format_error(path, f"frame {index} must be null or {NUM_LANDMARKS} finite [x, y] pairs")
    problem = landmark_problem(points, width, height)
    if problem is not None:
        raise MediaError(f"landmark file {path}, frame {index}: {problem}; "
                         "use landmarks detected on this photo or video (or null for a frame without a face)")
    return points


def largest_face(faces: Sequence[np.ndarray] | None, boxes: Sequence[Sequence[float]] | None) -> np.ndarray | None:
    """The landmark set of the face with the largest detection box.

    Args:
        faces: one (68, 2) landmark array per detected face (pixels), or
            ``None`` / empty when nothing was detected.
        boxes: the matching detection boxes, each ``[left, top, right,
            bottom, ...]`` in pixels (extra entries such as a score are
            ignored); ``None`` to rank faces by the box around their
            landmarks instead.

    Returns:
        (68, 2) float32 landmarks of the face whose box has the largest area
        (the first one on ties), or ``None`` when ``faces`` is empty.

    Raises:
        ValueError: when ``boxes`` is given with a different length than
            ``faces`` (a caller bug, not a user error).
    """
    if faces is None or len(faces) == 0:
        return None
    if boxes is None:
        boxes = [(*np.min(face, axis=0), *np.max(face, axis=0)) for face in faces]
    if len(boxes) != len(faces):
        raise ValueError(f"{len(faces)} faces but {len(boxes)} boxes")
    areas = [max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0) for box in boxes]
    return np.array(faces[int(np.argmax(areas))], dtype=np.float32)


class FaceAlignmentLandmarks:
    """Landmarks from the ``face-alignment`` package (SFD detector + 2D-FAN).

    Nothing is imported or downloaded until the first :meth:`landmarks`
    call; then the package fetches its weights into the torch hub cache
    (``~/.cache/torch/hub/checkpoints``) if they are not there yet.  Inputs
    are not flipped (``flip_input=False``) and ``torch.compile`` is disabled
    where the installed version offers it (first-use compilation costs
    minutes and needs a C++ compiler).

    Args:
        device: torch device string for both networks, e.g. ``"cpu"`` or
            ``"cuda"``.
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._model: Any = None

    def landmarks(self, image: np.ndarray, frame_index: int = 0) -> np.ndarray | None:
        """Landmarks of the largest detected face (``frame_index`` is unused).

        Args:
            image: (H, W, 3) uint8 RGB image.
            frame_index: ignored; every frame is detected afresh.

        Returns:
            (68, 2) float32 pixel coordinates, or ``None`` when no face is
            detected.

        Raises:
            WeightsError: when the package is missing or its weights cannot
                be loaded (e.g. no network on first use).
        """
        faces, _, boxes = self._load_model().get_landmarks_from_image(image, return_bboxes=True)
        return largest_face(faces, boxes)

    def _load_model(self) -> Any:
        if self._model is None:
            try:
                import face_alignment
            except ImportError:
                raise WeightsError("the face-alignment package is missing: pip install --no-deps -r requirements-nodeps.txt "
                                   "(--no-deps: it would bring a second OpenCV)") from None
            options: dict[str, Any] = {"device": self.device, "flip_input": False}
            if "compile" in inspect.signature(face_alignment.FaceAlignment).parameters:
                options["compile"] = False
            try:
                self._model = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, **options)
            except Exception as exc:  # download, unpickling or device errors all mean "model unavailable"
                raise WeightsError(
                    f"cannot load the face-alignment landmark model ({type(exc).__name__}: {exc}): "
                    "connect to the internet once so it can download its weights, or give precomputed "
                    "landmarks (--source-landmarks FILE.json, --driving-landmarks FILE.json)"
                ) from exc
        return self._model
