"""Stitching and eye/lip retargeting applied to implicit keypoints (spec §6, §8).

The MLPs themselves (:mod:`talkinghead.models.stitching`) are passed in as
plain callables, so this module depends on no network code.

* Stitching: δ = S_stitch([x_s, x_d]) (B, 65); x_d + δ[:, :63] as (21, 3),
  then δ[:, 63:65] added to the x and y of every keypoint.
* Retargeting: Δ = S_eye([x_s, c_s_left, c_s_right, c_d_eye]) or
  S_lip([x_s, c_s_lip, c_d_lip]) as (21, 3) offsets, where c are the eye/lip
  opening ratios of spec §7 (unitless, about 0 = closed to 0.5 = wide open).
* Lip normalisation: Δ_lip(x_s; c_s_lip, 0) when c_s_lip ≥ 0.03.
* Driving multiplier: x_s + (x_d − x_s)·k.
"""

from __future__ import annotations

from typing import Callable

import torch

from .frame import NUM_KP

MLP = Callable[[torch.Tensor], torch.Tensor]
"""A network taking a (B, n_in) batch of vectors to (B, n_out)."""

LIP_NORMALIZE_THRESHOLD = 0.03
"""Source lip-opening ratio from which lip normalisation applies (LivePortrait's default)."""


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


def stitching_input(x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
    """Stitching MLP input [x_s.flatten(), x_d.flatten()].

    Args:
        x_s: (1 or B, 21, 3) source keypoints.
        x_d: (B, 21, 3) driven keypoints.

    Returns:
        (B, 126).
    """
    return torch.cat([_flat(x_s.expand_as(x_d)), _flat(x_d)], dim=1)


def apply_stitching_delta(x_d: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Add the stitching output δ to driven keypoints (spec §6).

    Args:
        x_d: (B, 21, 3) driven keypoints.
        delta: (B, 65): 63 per-keypoint offsets (keypoint-major), then one
            (x, y) shift shared by all keypoints.

    Returns:
        (B, 21, 3) stitched keypoints.
    """
    offsets = delta[:, : 3 * NUM_KP].reshape(-1, NUM_KP, 3)
    shift = delta[:, 3 * NUM_KP : 3 * NUM_KP + 2]
    shift = torch.cat([shift, torch.zeros_like(shift[:, :1])], dim=1)
    return x_d + offsets + shift[:, None, :]


def stitch(stitching: MLP, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
    """Stitching: keep the driven face consistent with the source's shoulders/frame.

    Args:
        stitching: the stitching MLP (126 → 65).
        x_s: (1 or B, 21, 3) source keypoints.
        x_d: (B, 21, 3) driven keypoints.

    Returns:
        (B, 21, 3) stitched driven keypoints.
    """
    return apply_stitching_delta(x_d, stitching(stitching_input(x_s, x_d)))


def combined_ratios(source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
    """Ratio part of a retargeting input: [source ratios, driving ratio].

    Eye: source (1 or B, 2) = [left, right], driving (B, 1) = the driving
    LEFT eye only (as LivePortrait does) or a slider value → (B, 3).
    Lip: source (1 or B, 1), driving (B, 1) → (B, 2).

    Returns:
        (B, n_source + 1), unitless opening ratios.
    """
    return torch.cat([source.expand(driving.shape[0], -1), driving], dim=1)


def retargeting_delta(mlp: MLP, x_s: torch.Tensor, ratios: torch.Tensor) -> torch.Tensor:
    """Eye or lip retargeting offsets Δ = mlp([x_s.flatten(), ratios]) (spec §6).

    Args:
        mlp: the eye MLP (66 → 63) or the lip MLP (65 → 63).
        x_s: (1 or B, 21, 3) source keypoints.
        ratios: (B, 3) for the eye MLP or (B, 2) for the lip MLP, from
            :func:`combined_ratios`.

    Returns:
        (B, 21, 3) offsets to add to keypoints.
    """
    x_s = x_s.expand(ratios.shape[0], -1, -1)
    return mlp(torch.cat([_flat(x_s), ratios], dim=1)).reshape(-1, NUM_KP, 3)


def lip_normalization_delta(
    lip: MLP, x_s: torch.Tensor, source_lip_ratio: torch.Tensor, threshold: float = LIP_NORMALIZE_THRESHOLD
) -> torch.Tensor | None:
    """Offsets that close the source's mouth before animation (``flag_normalize_lip``).

    Δ_lip(x_s; [c_s_lip, 0]), or None when the source mouth is already about
    closed (c_s_lip < ``threshold``).

    Args:
        lip: the lip MLP (65 → 63).
        x_s: (1, 21, 3) source keypoints.
        source_lip_ratio: (1, 1) source lip-opening ratio c_s_lip.
        threshold: minimum c_s_lip for the correction to apply.

    Returns:
        (1, 21, 3) offsets, or None.
    """
    if float(source_lip_ratio) < threshold:
        return None
    closed = torch.zeros_like(source_lip_ratio)
    return retargeting_delta(lip, x_s, combined_ratios(source_lip_ratio, closed))


def scale_motion(x_s: torch.Tensor, x_d: torch.Tensor, multiplier: float) -> torch.Tensor:
    """Driving multiplier: x_s + (x_d − x_s)·multiplier (1.0 leaves x_d as is).

    Args:
        x_s: (1 or B, 21, 3) source keypoints.
        x_d: (B, 21, 3) driven keypoints.
        multiplier: motion gain, unitless.

    Returns:
        (B, 21, 3).
    """
    return x_s + (x_d - x_s) * multiplier
