"""Face crops in LivePortrait's convention (LivePortrait spec §9).

Source crop: a square, rotated so that the eyes-to-lip axis is vertical, is
fitted around all landmarks (side = ``scale`` × their larger extent along
that axis and across it), shifted by ``vx``/``vy`` times its side along the
rotated axes, and warped to ``dsize`` × ``dsize`` pixels (512 for the
renderer, resized to 256 for the networks).

The two anchor points that fix the rotation are the eye centre (midpoint of
both eye centres) and the lip centre:

* 203 points (LivePortrait's landmark model): eyes = mean of {0, 6, 12, 18}
  and of {24, 30, 36, 42}, lip = mean of 48 and 66 (spec §9).
* 68 points (iBUG, our providers): each eye centre is the midpoint of its two
  corners, {36, 39} and {42, 45}; lip = midpoint of the mouth corners 48 and
  54.  This is LivePortrait's own 68-point variant.  Corners, unlike the
  mean of all six eye points, do not move when the lids blink, which keeps
  the crop still across a video.

The geometry is computed in float32 with the same operations as LivePortrait
so that crops match its pixels exactly (golden_crop); the matrices are 3×3
float32, ``M_o2c`` mapping original pixels to crop pixels and ``M_c2o`` its
inverse.

Driving crop: LivePortrait fits the same rectangle per frame (scale 2.2,
vy −0.1), drops its rotation, and crops every frame of the clip with ONE
box, the average of the per-frame boxes (:func:`average_box`), so the
driver's head translation and zoom inside the frame reach the motion
extractor.  The alternative, :func:`smooth_boxes`, follows the face with a
box smoothed over about half a second, so a head that travels across the
frame stays centred (and its travel is cancelled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from ..errors import NoFaceError

SOURCE_SCALE = 2.3
"""Source crop side as a multiple of the landmarks' extent (spec §10)."""
SOURCE_VY = -0.125
"""Source crop shift along the face's vertical axis, × crop side (negative = up)."""
DRIVING_SCALE = 2.2
"""Driving crop side as a multiple of the landmarks' extent (spec §10)."""
DRIVING_VY = -0.1
"""Driving crop shift along the face's vertical axis, × crop side."""
CROP_SIZE = 512
"""Side in pixels of the crop that the renderer's output is pasted back from."""
NETWORK_SIZE = 256
"""Side in pixels of the motion/appearance networks' input."""

DrivingBoxMode = Literal["average", "track"]
"""How a non-square driving clip is cropped: one averaged box (LivePortrait) or a per-frame smoothed box."""
DRIVING_BOX_MODES: tuple[str, ...] = ("average", "track")

# (left-eye indices, right-eye indices, lip indices) per landmark layout; "left" = image-left.
_ANCHOR_INDICES: dict[int, tuple[list[int], list[int], list[int]]] = {
    68: ([36, 39], [42, 45], [48, 54]),
    203: ([0, 6, 12, 18], [24, 30, 36, 42], [48, 66]),
}


@dataclass(frozen=True)
class CropRect:
    """A square in the original image, possibly rotated.

    Attributes:
        center: (2,) float32, ``(x, y)`` pixels.
        size: side length in pixels.
        angle: radians; rotation of the square's x axis from the image's x
            axis, positive clockwise on screen (image y points down).
    """

    center: np.ndarray
    size: float
    angle: float


@dataclass(frozen=True)
class FaceCrop:
    """A face crop and the transforms between it and the original image.

    Attributes:
        M_o2c: (3, 3) float32, original pixels → crop pixels (homogeneous,
            applied to column vectors ``(x, y, 1)``).
        M_c2o: (3, 3) float32, crop pixels → original pixels (inverse of
            ``M_o2c``), the matrix paste-back needs.
        crop: (dsize, dsize, 3) uint8 RGB, ``cv2.warpAffine`` bilinear with
            a constant black border.
        crop_256: (256, 256, 3) uint8 RGB, ``crop`` resized with
            ``cv2.INTER_AREA``: the networks' input.
    """

    M_o2c: np.ndarray
    M_c2o: np.ndarray
    crop: np.ndarray
    crop_256: np.ndarray


def anchor_points(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eye centre and lip centre, the two points that fix the crop's rotation.

    Args:
        landmarks: (68, 2) iBUG or (203, 2) LivePortrait landmarks, pixels.

    Returns:
        ``(eye_centre, lip_centre)``, each (2,) float32 pixels (module
        docstring lists the indices).

    Raises:
        ValueError: for any other number of points.
    """
    points = np.asarray(landmarks, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) not in _ANCHOR_INDICES:
        raise ValueError(f"expected (68, 2) or (203, 2) landmarks, got shape {points.shape}")
    left_eye, right_eye, lip = _ANCHOR_INDICES[len(points)]
    eye_centre = (points[left_eye].mean(axis=0) + points[right_eye].mean(axis=0)) / 2
    return eye_centre, points[lip].mean(axis=0)


def face_rect(landmarks: np.ndarray, scale: float, vx: float = 0.0, vy: float = 0.0) -> CropRect:
    """The rotated square around a face (LivePortrait spec §9).

    The vertical axis ``uy`` points from the eye centre to the lip centre
    (straight down if they are within 1e-3 px), ``ux`` is ``uy`` turned 90°
    counter-clockwise on screen.  All landmarks, projected on ``(ux, uy)``,
    give a box whose larger side × ``scale`` is the square's side; its centre
    is the box centre moved by ``vx``·side along ``ux`` and ``vy``·side along
    ``uy``.

    Args:
        landmarks: (68, 2) or (203, 2) pixels.
        scale: side / landmark extent (2.3 source, 2.2 driving, 1.5 for
            LivePortrait's landmark-model crop).
        vx: horizontal shift, × side.
        vy: vertical shift, × side (negative moves the square up the face).

    Returns:
        The :class:`CropRect` (float32 arithmetic, as LivePortrait).

    Raises:
        ValueError: for a landmark count other than 68 or 203.
    """
    points = np.asarray(landmarks, dtype=np.float32)
    eye_centre, lip_centre = anchor_points(points)
    uy = lip_centre - eye_centre
    length = np.linalg.norm(uy)
    uy = uy / length if length > 1e-3 else np.array([0.0, 1.0], dtype=np.float32)
    ux = np.array([uy[1], -uy[0]], dtype=np.float32)
    angle = math.acos(min(max(float(ux[0]), -1.0), 1.0))  # clamp: float32 rounding may leave |ux| a hair above 1
    if ux[1] < 0:
        angle = -angle

    mean = points.mean(axis=0)
    projected = (points - mean) @ np.stack([ux, uy]).T
    low, high = projected.min(axis=0), projected.max(axis=0)
    middle = (low + high) / 2
    size = (high - low).max() * np.float32(scale)
    center = mean + ux * middle[0] + uy * middle[1]
    center = center + ux * (np.float32(vx) * size) + uy * (np.float32(vy) * size)
    return CropRect(center=center, size=float(size), angle=angle)


def crop_matrix(rect: CropRect, dsize: int, rotate: bool = True) -> np.ndarray:
    """The similarity transform that maps ``rect`` onto a ``dsize`` square.

    ``M_o2c = [[s·cos, s·sin, d/2 − s(cos·cx + sin·cy)], [−s·sin, s·cos,
    d/2 − s(−sin·cx + cos·cy)], [0, 0, 1]]`` with ``s = dsize / rect.size``
    (spec §9); ``rotate=False`` uses angle 0 (an axis-aligned crop).

    Args:
        rect: the square in original pixels.
        dsize: output side in pixels.
        rotate: whether to undo ``rect.angle``.

    Returns:
        (3, 3) float32 ``M_o2c`` (computed in float32, as LivePortrait).
    """
    f32 = np.float32
    scale = f32(dsize) / f32(rect.size)
    angle = rect.angle if rotate else 0.0
    cos, sin = f32(math.cos(angle)), f32(math.sin(angle))
    half = f32(dsize / 2)
    cx, cy = np.asarray(rect.center, dtype=np.float32)
    return np.array(
        [
            [scale * cos, scale * sin, half - scale * (cos * cx + sin * cy)],
            [-scale * sin, scale * cos, half - scale * (-sin * cx + cos * cy)],
            [0.0, 0.0, 1.0],
        ],
        dtype=np.float32,
    )


def warp_crop(image: np.ndarray, M_o2c: np.ndarray, dsize: int = CROP_SIZE,
              interpolation: int = cv2.INTER_AREA) -> FaceCrop:
    """Cut the crop ``M_o2c`` describes out of ``image``.

    Args:
        image: (H, W, 3) uint8 RGB.
        M_o2c: (3, 3) float32 original → crop transform.
        dsize: crop side in pixels.
        interpolation: OpenCV flag of the resize to the 256² network input
            (``cv2.INTER_AREA`` for source crops, ``cv2.INTER_LINEAR`` for
            driving crops, as in LivePortrait).

    Returns:
        The :class:`FaceCrop` (bilinear warp, black outside the image).
    """
    M_o2c = np.asarray(M_o2c, dtype=np.float32)
    crop = cv2.warpAffine(
        image, M_o2c[:2], (dsize, dsize), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0)
    )
    crop_256 = cv2.resize(crop, (NETWORK_SIZE, NETWORK_SIZE), interpolation=interpolation)
    return FaceCrop(M_o2c=M_o2c, M_c2o=np.linalg.inv(M_o2c), crop=crop, crop_256=crop_256)


def crop_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    scale: float = SOURCE_SCALE,
    vx: float = 0.0,
    vy: float = SOURCE_VY,
    dsize: int = CROP_SIZE,
    rotate: bool = True,
) -> FaceCrop:
    """The source crop of a photo (defaults: LivePortrait's, spec §10).

    Args:
        image: (H, W, 3) uint8 RGB.
        landmarks: (68, 2) or (203, 2) pixels of the face in ``image``.
        scale, vx, vy: see :func:`face_rect`.
        dsize: crop side in pixels.
        rotate: undo the head roll (LivePortrait default) or crop axis-aligned.

    Returns:
        The :class:`FaceCrop`.

    Raises:
        ValueError: for a landmark count other than 68 or 203.
    """
    rect = face_rect(landmarks, scale, vx=vx, vy=vy)
    return warp_crop(image, crop_matrix(rect, dsize, rotate=rotate), dsize)


def transform_points(points: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Apply a 2×3 or 3×3 affine matrix to (N, 2) points: ``p @ M[:2, :2]ᵀ + M[:2, 2]``."""
    M = np.asarray(M)
    return np.asarray(points) @ M[:2, :2].T + M[:2, 2]


def driving_box(landmarks: np.ndarray, scale: float = DRIVING_SCALE, vy: float = DRIVING_VY) -> np.ndarray:
    """The axis-aligned square of one driving frame (spec §9).

    The square of :func:`face_rect` (size and centre from the rotated
    landmark frame, ``vx`` ignored as in LivePortrait) with its rotation
    dropped.

    Args:
        landmarks: (68, 2) or (203, 2) pixels.
        scale: side / landmark extent.
        vy: vertical shift, × side.

    Returns:
        (3,) float64 ``[centre x, centre y, side]`` in pixels.
    """
    rect = face_rect(landmarks, scale, vy=vy)
    return np.array([rect.center[0], rect.center[1], rect.size], dtype=np.float64)


def smooth_boxes(boxes: Sequence[np.ndarray | None], fps: float, window_s: float = 0.5) -> np.ndarray:
    """Fill and smooth a video's per-frame driving boxes.

    Frames without a face (``None``) take the box of the nearest frame that
    has one (the earlier on ties).  Each of centre x, centre y and side is
    then smoothed by a centred Gaussian with σ = ``window_s``·fps/4 frames,
    truncated at ±2σ (the kernel spans ``window_s``); beyond either end of
    the video the first/last box is repeated, so a face moving at the very
    start or end lags by about σ frames, harmless inside a 2.2× box.

    Args:
        boxes: per frame ``[centre x, centre y, side]`` pixels (from
            :func:`driving_box`) or ``None``.
        fps: frame rate of the video, Hz.
        window_s: smoothing window, seconds (0 disables smoothing).

    Returns:
        (T, 3) float64 boxes, T = ``len(boxes)``; a constant sequence comes
        back unchanged (up to float rounding).

    Raises:
        NoFaceError: when no frame has a box.
        ValueError: for ``fps`` ≤ 0 or ``window_s`` < 0.
    """
    if fps <= 0 or window_s < 0:
        raise ValueError(f"need fps > 0 and window_s >= 0, got fps={fps}, window_s={window_s}")
    found = np.array([box is not None for box in boxes], dtype=bool)
    if not found.any():
        raise NoFaceError("no face was found in any frame of the driving video: use a video that shows a face")
    known = np.flatnonzero(found)
    filled = np.stack([np.asarray(boxes[i], dtype=np.float64) for i in _nearest(known, len(boxes))])
    sigma = window_s * fps / 4
    return gaussian_filter1d(filled, sigma, axis=0, mode="nearest", truncate=2.0) if sigma > 0 else filled


def _nearest(known: np.ndarray, length: int) -> np.ndarray:
    """For each of ``length`` frames, the nearest index in sorted ``known`` (earlier on ties)."""
    frames = np.arange(length)
    after = np.minimum(np.searchsorted(known, frames), len(known) - 1)
    before = np.maximum(after - 1, 0)
    use_before = np.abs(frames - known[before]) <= np.abs(known[after] - frames)
    return np.where(use_before, known[before], known[after])


def average_box(boxes: Sequence[np.ndarray | None]) -> np.ndarray:
    """The one driving box of a whole clip: LivePortrait's average of the per-frame boxes.

    LivePortrait (src/utils/cropper.py ``Cropper.crop_driving_video``; helpers
    in src/utils/crop.py) turns each frame's square (``parse_bbox_from_landmark``,
    scale 2.2, vy −0.1, unrotated) into float32 corners ``[left, top, right,
    bottom]`` = centre ∓ side/2, averages them over the frames
    (``average_bbox_lst``: ``np.mean`` of the float32 (N, 4) array), and crops
    every frame with that box (``crop_image_by_bbox``: side = right − left,
    centre = ((left + right)/2, (top + bottom)/2)).  Frames without a face
    (``None``) do not take part; LivePortrait's tracker has no such frames
    after the first detection (frames before it are dropped there, kept and
    cropped with the average box here).

    Args:
        boxes: per frame ``[centre x, centre y, side]`` pixels (from
            :func:`driving_box`) or ``None``.

    Returns:
        (3,) float64 ``[centre x, centre y, side]`` pixels of the average box
        (for :func:`crop_box`); centre and side computed in float64 from the
        float32 mean corners, as LivePortrait does.

    Raises:
        NoFaceError: when no frame has a box.
    """
    known = [np.asarray(box, dtype=np.float64) for box in boxes if box is not None]
    if not known:
        raise NoFaceError("no face was found in any frame of the driving video: use a video that shows a face")
    corners = np.array([[cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]
                        for cx, cy, side in (np.float32(box).astype(np.float64) for box in known)], dtype=np.float32)
    left, top, right, bottom = np.mean(corners, axis=0).tolist()
    return np.array([(left + right) / 2, (top + bottom) / 2, right - left], dtype=np.float64)


def box_matrix(box: np.ndarray, dsize: int = CROP_SIZE) -> np.ndarray:
    """``M_o2c`` of an axis-aligned square box (LivePortrait src/utils/crop.py ``crop_image_by_bbox``, no rotation).

    ``[[s, 0, d/2 − s·cx], [0, s, d/2 − s·cy], [0, 0, 1]]`` with
    ``s = dsize / side``: ``s`` and the products in float64, the centre
    rounded to float32 first, the matrix stored as float32 (LivePortrait's
    arithmetic under its pinned NumPy 1.26).

    Args:
        box: (3,) ``[centre x, centre y, side]`` pixels.
        dsize: crop side in pixels.

    Returns:
        (3, 3) float32 original → crop transform.
    """
    side = float(box[2])
    scale = dsize / side
    cx, cy = (float(np.float32(v)) for v in box[:2])
    half = dsize / 2
    return np.array([[scale, 0.0, half - scale * cx], [0.0, scale, half - scale * cy], [0.0, 0.0, 1.0]],
                    dtype=np.float32)


def crop_box(image: np.ndarray, box: np.ndarray, dsize: int = CROP_SIZE) -> FaceCrop:
    """Cut an axis-aligned square box out of a driving frame.

    Args:
        image: (H, W, 3) uint8 RGB frame.
        box: (3,) ``[centre x, centre y, side]`` pixels (from
            :func:`average_box` or a row of :func:`smooth_boxes`).
        dsize: crop side in pixels.

    Returns:
        The :class:`FaceCrop` (:func:`box_matrix`, black outside the frame;
        the 256² network input resized bilinearly, as LivePortrait resizes
        driving crops: ``cv2.resize`` default in src/live_portrait_pipeline.py
        ``LivePortraitPipeline.execute``).
    """
    return warp_crop(image, box_matrix(box, dsize), dsize, interpolation=cv2.INTER_LINEAR)
