"""Eye-open and lip-open ratios from 2-D landmarks (LivePortrait spec §7).

A ratio is the opening (lid-to-lid or lip-to-lip distance) divided by the
width (corner-to-corner distance, + 1e-6), so it does not depend on the
face's size, position or in-plane rotation.  LivePortrait's eye and lip
retargeting MLPs take these ratios as inputs (spec §6, §8).

"Left" is always the image-left eye: the subject's right eye in an
unmirrored photo (LivePortrait's 203-point indices 0–23, iBUG 36–41).

203 points (LivePortrait's landmark model), spec §7:

* eye (image-left) = d(6, 18) / d(0, 12); eye (image-right) = d(30, 42) / d(24, 36)
  — mid upper lid to mid lower lid, over the eye corners;
* lip = d(90, 102) / d(48, 66) — mid inner upper lip to mid inner lower lip,
  over the mouth corners.

68 points (iBUG), the same construction on the points iBUG has:

* eye (image-left) = (d(37, 41) + d(38, 40)) / (2·d(36, 39)); eye
  (image-right) = (d(43, 47) + d(44, 46)) / (2·d(42, 45)) — the usual eye
  aspect ratio (Soukupová & Čech, "Real-Time Eye Blink Detection using
  Facial Landmarks", 2016).  iBUG has no mid-lid point: its lid points sit at
  about 1/3 and 2/3 of the eye width, where an eye is a little less open
  than at the middle, so the 68-point eye ratio is about 0.9 × the 203-point
  one.  Measured on the three golden synthetic 203-point sets (golden_S
  ``ratio.lmk203_*``), taking 203 points {4, 8, 16, 20} / {28, 32, 40, 44}
  (1/3 and 2/3 along each lid) for iBUG's {37, 38, 40, 41} / {43, 44, 46,
  47}: ratio 68-style / 203 = 0.83–1.05, mean 0.91 over six eyes.
* lip = d(62, 66) / d(48, 54) — point for point the 203-point definition
  (mid inner lips over mouth corners); the two landmark models place those
  points by their own annotation rules, so values are comparable, not equal.

Treat 68-point ratios as on a comparable but not identical scale to the
203-point ratios LivePortrait's MLPs were trained with.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-6
"""Added to the width, as LivePortrait does."""

# Per layout: ((lid pairs, corner pair) for the image-left eye, same for the image-right eye).
_EYES: dict[int, tuple[tuple[list[tuple[int, int]], tuple[int, int]], ...]] = {
    68: (([(37, 41), (38, 40)], (36, 39)), ([(43, 47), (44, 46)], (42, 45))),
    203: (([(6, 18)], (0, 12)), ([(30, 42)], (24, 36))),
}
# Per layout: (inner-lip pair, mouth-corner pair).
_LIP: dict[int, tuple[list[tuple[int, int]], tuple[int, int]]] = {
    68: ([(62, 66)], (48, 54)),
    203: ([(90, 102)], (48, 66)),
}


def eye_open_ratios(landmarks: np.ndarray) -> np.ndarray:
    """Eye-open ratios ``[image-left, image-right]``.

    Args:
        landmarks: (..., 68, 2) iBUG or (..., 203, 2) LivePortrait landmarks,
            pixels (any leading batch axes, e.g. frames).

    Returns:
        (..., 2) float64, unitless: about 0.25–0.45 for open eyes, below
        about 0.15 when closed (scales differ slightly between layouts: see
        the module docstring).

    Raises:
        ValueError: for a landmark count other than 68 or 203.
    """
    points = _as_points(landmarks)
    return np.stack([_opening(points, lids, corners) for lids, corners in _EYES[points.shape[-2]]], axis=-1)


def lip_open_ratio(landmarks: np.ndarray) -> np.ndarray:
    """Lip-open ratio: inner-lip gap over mouth width.

    Args:
        landmarks: (..., 68, 2) or (..., 203, 2) pixels.

    Returns:
        (...) float64, unitless: near 0 for a closed mouth, about 0.3 or more
        for a wide-open one.

    Raises:
        ValueError: for a landmark count other than 68 or 203.
    """
    points = _as_points(landmarks)
    lips, corners = _LIP[points.shape[-2]]
    return _opening(points, lips, corners)


def _as_points(landmarks: np.ndarray) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim < 2 or points.shape[-1] != 2 or points.shape[-2] not in _EYES:
        raise ValueError(f"expected (..., 68, 2) or (..., 203, 2) landmarks, got shape {points.shape}")
    return points


def _distance(points: np.ndarray, pair: tuple[int, int]) -> np.ndarray:
    return np.linalg.norm(points[..., pair[0], :] - points[..., pair[1], :], axis=-1)


def _opening(points: np.ndarray, pairs: list[tuple[int, int]], corners: tuple[int, int]) -> np.ndarray:
    """Mean distance of ``pairs`` over the ``corners`` distance (+ 1e-6)."""
    gap = np.mean([_distance(points, pair) for pair in pairs], axis=0)
    return gap / (_distance(points, corners) + _EPS)
