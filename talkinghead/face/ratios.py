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
  Facial Landmarks", 2016);
* lip = d(62, 66) / d(48, 54) — point for point the 203-point definition:
  iBUG 62/66 are the mid inner lips and 48/54 the outer mouth corners, as
  203-point 90/102 and 48/66 are (LivePortrait src/utils/crop.py
  ``parse_pt2_from_pt203`` takes (48 + 66)/2 as the lip centre).

Calibration of the 68-point eye ratio onto the 203-point definition
(:data:`EYE_RATIO_68_TO_203`).  The retargeting MLPs were trained on the
203-point ratios (LivePortrait src/utils/retargeting_utils.py
``calc_eye_close_ratio``, ``calc_lip_close_ratio``).  The 203 layout (not
documented in LivePortrait's code; inferred from those indices and from
src/utils/crop.py ``parse_pt2_from_pt203``, which averages 0, 6, 12, 18 as
the eye centre) runs each eye contour through 24 points, 0 → 12 along one
lid and 12 → 24 = 0 along the other, so 6 and 18 are the mid-lids and its
opening is taken at the MIDDLE of the lids.  iBUG has no mid-lid point:
37/38 (41/40) sit at 0.30 and 0.66 of the way from the outer corner
(mean projections on the corner axis over the data below, std 0.02–0.03),
where an eye is less open than at the middle, so the 68-point ratio runs
low.  Measured with :func:`mid_lid_eye_ratios`, which
approximates the 203-point definition from the 68 points that both layouts
share (corners 36/39, 42/45 ↔ 0/12, 24/36): per lid, the cubic through
corner, the two lid points and the other corner, parameterised by chord
length, evaluated at half the lid's length (where index 6 of 0–12 lies if
the 203 points are evenly spaced along the lid), opening = |upper mid − lower mid| / corner distance.

* Data: every frame with a face in ``tests/data/testdata/landmarks/*.json``
  (dlib 68-point; 20 files with a face — 8 photos, 12 videos — 2182 frames,
  4364 eyes; landmarks/REFERENCE_STATS.json holds no ratio statistics).
* Quotient mid-lid ratio / 68-point ratio over the 4323 eyes with a
  68-point ratio > 0.1 (closed eyes make a quotient of two tiny numbers):
  mean 1.1230, median 1.1229, std 0.0134, 5–95 % 1.1015–1.1455; per file
  means 1.110 (lp_d3.mp4) – 1.144 (lp_s0_painting.jpg).  Least squares
  through 0 over all 4364 eyes: 1.126.
* Model sensitivity: uniform parameter (lid points at exactly 1/3, 2/3):
  1.124; interpolating over the corner axis at its midpoint: 1.151.  The
  spread between definitions (≈ 0.03) is larger than the data's spread.
* The earlier estimate on golden_S's three SYNTHETIC 203-point sets (203
  points {4, 8, 16, 20} for iBUG {37, 38, 40, 41}): 203/68 = 0.96–1.20,
  mean 1.11 — consistent, but those sets are not a landmark model's output.
* Not measurable offline: how LivePortrait's landmark model places its lid
  points on real faces (no 203-point model here), and any systematic offset
  between its and dlib's annotation of the same points.  The lip ratio needs
  no factor (:data:`LIP_RATIO_68_TO_203` = 1: same points).

:func:`liveportrait_ratios` applies the factors; it is what feeds the
retargeting MLPs (drivers/video.py ``ratios_from_landmarks``: source photo,
driving frames, and through them the ``eyes_open``/``lips_open`` controls).
:func:`eye_open_ratios` and :func:`lip_open_ratio` stay the raw geometric
ratios of each layout.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-6
"""Added to the width, as LivePortrait does."""

EYE_RATIO_68_TO_203 = 1.123
"""203-point eye ratio ≈ this × the 68-point one (mean over the testdata; module docstring)."""

LIP_RATIO_68_TO_203 = 1.0
"""The 68-point lip ratio uses the 203-point definition's own points (module docstring)."""

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


def liveportrait_ratios(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eye and lip ratios on LivePortrait's 203-point scale, the retargeting MLPs' inputs.

    203 points: spec §7 exactly.  68 points: :func:`eye_open_ratios` ×
    :data:`EYE_RATIO_68_TO_203` and :func:`lip_open_ratio` ×
    :data:`LIP_RATIO_68_TO_203` (calibration in the module docstring).

    Args:
        landmarks: (..., 68, 2) iBUG or (..., 203, 2) LivePortrait landmarks, pixels.

    Returns:
        ``(eye, lip)``: (..., 2) ``[image-left, image-right]`` and (...)
        float64, unitless (open eyes about 0.28–0.5 on this scale).

    Raises:
        ValueError: for a landmark count other than 68 or 203.
    """
    eye, lip = eye_open_ratios(landmarks), lip_open_ratio(landmarks)
    if np.shape(landmarks)[-2] == 68:
        return eye * EYE_RATIO_68_TO_203, lip * LIP_RATIO_68_TO_203
    return eye, lip


def mid_lid_eye_ratios(landmarks: np.ndarray) -> np.ndarray:
    """The 203-point eye-ratio definition (opening at mid-lid) estimated from 68 points.

    Per eye and lid, the cubic through (corner, lid point, lid point,
    corner) — image-left upper lid 36, 37, 38, 39, lower 36, 41, 40, 39;
    image-right 42, 43, 44, 45 and 42, 47, 46, 45 — with the chord length
    as parameter (Lagrange form), evaluated at half the total chord length;
    ratio = |upper − lower| / (corner distance + 1e-6).  Used to measure
    :data:`EYE_RATIO_68_TO_203`; not on the rendering path.

    Args:
        landmarks: (..., 68, 2) iBUG landmarks, pixels.

    Returns:
        (..., 2) float64 ``[image-left, image-right]``, unitless.

    Raises:
        ValueError: if ``landmarks`` is not (..., 68, 2).
    """
    points = _as_points(landmarks)
    if points.shape[-2] != 68:
        raise ValueError(f"expected (..., 68, 2) landmarks, got shape {points.shape}")
    ratios = []
    for upper, lower in _LIDS_68:
        width = _distance(points, (upper[0], upper[-1]))
        gap = np.linalg.norm(_mid_lid(points[..., upper, :]) - _mid_lid(points[..., lower, :]), axis=-1)
        ratios.append(gap / (width + _EPS))
    return np.stack(ratios, axis=-1)


# Per eye (image-left, image-right): (upper lid, lower lid), each corner → corner.
_LIDS_68 = (([36, 37, 38, 39], [36, 41, 40, 39]), ([42, 43, 44, 45], [42, 47, 46, 45]))


def _mid_lid(lid: np.ndarray) -> np.ndarray:
    """(..., 4, 2) lid points → (..., 2) point of their chord-length cubic at half the length."""
    knots = np.concatenate([np.zeros(lid.shape[:-2] + (1,)),
                            np.cumsum(np.linalg.norm(np.diff(lid, axis=-2), axis=-1), axis=-1)], axis=-1)
    at = knots[..., -1:] / 2
    weights = []
    for j in range(4):
        weight = np.ones_like(at)
        for m in range(4):
            if m != j:
                weight = weight * (at - knots[..., m:m + 1]) / (knots[..., j:j + 1] - knots[..., m:m + 1] + _EPS)
        weights.append(weight)
    return (np.stack(weights, axis=-2) * lid).sum(axis=-2)


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
