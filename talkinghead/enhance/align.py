"""Alignment of a face crop to the FFHQ 5-point template, and back.

GFPGAN and CodeFormer were trained on 512×512 faces aligned like FFHQ: the
two eye centres, the nose tip and the two mouth corners sit near
:data:`FFHQ_TEMPLATE_512`.  A face crop is mapped there by the least-squares
similarity transform of its five points (:func:`alignment`), restored, and
warped back with a feathered mask so that no seam shows
(:func:`from_template`).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

TEMPLATE_SIZE = 512
"""Side in pixels of the aligned face the restoration networks take."""

FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],  # left eye centre (image left)
        [318.90277, 240.1936],  # right eye centre
        [256.63416, 314.01935],  # nose tip
        [201.26117, 371.41043],  # left mouth corner
        [313.08905, 371.15118],  # right mouth corner
    ],
    dtype=np.float32,
)
"""(5, 2) float32 ``(x, y)`` pixels of the five points in a 512² FFHQ-aligned face."""

MASK_ERODE = 24
"""Pixels (template scale) cleared along each edge of the paste-back mask."""
MASK_FEATHER_SIGMA = 8.0
"""σ in pixels (template scale) of the Gaussian that softens the mask's edge."""

# iBUG 68-point indices: eye contours (averaged), nose tip, mouth corners; image-left first.
_LEFT_EYE = slice(36, 42)
_RIGHT_EYE = slice(42, 48)
_NOSE_TIP = 30
_MOUTH_CORNERS = (48, 54)


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """The template's five points from iBUG 68-point landmarks.

    Left eye centre = mean of points 36–41, right eye centre = mean of
    42–47, nose tip = 30, mouth corners = 48 and 54 (image-left first, the
    template's order).

    Args:
        landmarks68: (68, 2) ``(x, y)`` pixels.

    Returns:
        (5, 2) float32 pixels, in the landmarks' coordinates.

    Raises:
        ValueError: when the landmarks are not (68, 2).
    """
    points = np.asarray(landmarks68, dtype=np.float32)
    if points.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got shape {points.shape}")
    return np.stack([
        points[_LEFT_EYE].mean(axis=0),
        points[_RIGHT_EYE].mean(axis=0),
        points[_NOSE_TIP],
        *points[list(_MOUTH_CORNERS)],
    ])


def alignment(points5: np.ndarray) -> np.ndarray:
    """The similarity transform (rotation, uniform scale, shift) taking ``points5`` onto the template.

    Closed-form least squares over the five point pairs (Umeyama 1991,
    without reflection): with both point sets centred, ``a = Σ p·q / Σ|p|²``
    and ``b = Σ p×q / Σ|p|²`` give the linear part ``[[a, −b], [b, a]]``.

    Args:
        points5: (5, 2) ``(x, y)`` pixels in the crop (:func:`five_points`).

    Returns:
        (2, 3) float64 crop pixels → template pixels (``cv2.warpAffine`` form).

    Raises:
        ValueError: when the points are not (5, 2) or all coincide.
    """
    source = np.asarray(points5, dtype=np.float64)
    if source.shape != (5, 2):
        raise ValueError(f"expected (5, 2) points, got shape {source.shape}")
    target = FFHQ_TEMPLATE_512.astype(np.float64)
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    p, q = source - source_mean, target - target_mean
    norm = (p ** 2).sum()
    if norm < 1e-12:
        raise ValueError("the five face points coincide: no alignment exists")
    a = (p * q).sum() / norm
    b = (p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]).sum() / norm
    linear = np.array([[a, -b], [b, a]])
    return np.hstack([linear, (target_mean - linear @ source_mean)[:, None]])


def to_template(crop: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Warp a face crop into template space.

    Args:
        crop: (S, S, 3) uint8 RGB face crop.
        M: (2, 3) crop → template transform (:func:`alignment`).

    Returns:
        (512, 512, 3) uint8 RGB, bilinear, border reflected (no black wedges
        for the network to restore).
    """
    return cv2.warpAffine(crop, M, (TEMPLATE_SIZE, TEMPLATE_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def from_template(face: np.ndarray, crop: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Warp a template-space face back into the crop, blended through a feathered mask.

    The mask is 1 inside the template square, 0 on its outer
    :data:`MASK_ERODE` pixels, softened by a Gaussian of σ =
    :data:`MASK_FEATHER_SIGMA` (both in template pixels), then warped with
    the face; ``result = mask·face' + (1 − mask)·crop``.

    Args:
        face: (512, 512, 3) uint8 RGB face in template space.
        crop: (S, S, 3) uint8 RGB crop the face was aligned from.
        M: (2, 3) crop → template transform used for :func:`to_template`.

    Returns:
        (S, S, 3) uint8 RGB, a new array (rounded to nearest).
    """
    size = (crop.shape[1], crop.shape[0])
    inverse = cv2.invertAffineTransform(M)
    warped = cv2.warpAffine(face, inverse, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(template_mask(), inverse, size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
    blended = alpha * warped.astype(np.float32) + (1 - alpha) * crop.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def template_mask() -> np.ndarray:
    """(512, 512) float32 paste-back mask in template space, 0 … 1 (read-only, cached)."""
    mask = np.zeros((TEMPLATE_SIZE, TEMPLATE_SIZE), dtype=np.float32)
    mask[MASK_ERODE:-MASK_ERODE, MASK_ERODE:-MASK_ERODE] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), MASK_FEATHER_SIGMA, borderType=cv2.BORDER_CONSTANT)
    mask.flags.writeable = False
    return mask
