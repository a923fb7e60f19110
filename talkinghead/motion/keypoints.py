"""Pose and implicit-keypoint math (LivePortrait spec §3).

From the motion extractor M's raw heads to :class:`KeypointInfo` (angles in
degrees), from angles to rotation matrices, and from canonical keypoints to
implicit keypoints::

    x = scale * (kp @ R + exp) + (t_x, t_y, 0)

Keypoints are row vectors multiplied on the right by R (``kp @ R``), in
normalised volume coordinates (x right, y down, z depth; nominal range
[-1, 1]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch

from .frame import NUM_KP, KeypointInfo, MotionSequence

NUM_BINS = 66
"""Number of 3-degree bins of M's pitch/yaw/roll heads."""

RAW_HEADS = ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")
"""Keys of M's raw output dict."""


def degrees_from_bins(pred: torch.Tensor) -> torch.Tensor:
    """Head-pose angle in degrees from M's bin logits (spec §3).

    degree = 3 · Σ_i softmax(pred)_i · i − 97.5 for i = 0..65, so the range is
    (−97.5°, 97.5°).

    Args:
        pred: (B, 66) float logits, or (B, 1) degrees already converted
            (returned unchanged).

    Returns:
        (B, 1) degrees, same dtype and device as ``pred``.

    Raises:
        ValueError: if ``pred`` is neither (B, 66) nor (B, 1).
    """
    if pred.ndim != 2 or pred.shape[1] not in (NUM_BINS, 1):
        raise ValueError(
            f"head-pose prediction must be (B, {NUM_BINS}) logits or (B, 1) degrees, got {tuple(pred.shape)}"
        )
    if pred.shape[1] == 1:
        return pred
    bins = torch.arange(NUM_BINS, dtype=pred.dtype, device=pred.device)
    return (torch.sum(torch.softmax(pred, dim=1) * bins, dim=1) * 3 - 97.5)[:, None]


def rotation_matrix(pitch: torch.Tensor, yaw: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """Rotation matrix for row-vector keypoints, R = (Rz(roll)·Ry(yaw)·Rx(pitch))ᵀ (spec §3).

    Args:
        pitch: (B, 1) degrees, rotation about x.
        yaw: (B, 1) degrees, rotation about y.
        roll: (B, 1) degrees, rotation about z.

    Returns:
        (B, 3, 3) rotation matrices, dtype/device of the inputs; apply as
        ``kp @ R``.
    """
    x, y, z = (angle.reshape(-1) / 180 * math.pi for angle in (pitch, yaw, roll))
    one, zero = torch.ones_like(x), torch.zeros_like(x)

    def matrix(*rows: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)

    rot_x = matrix((one, zero, zero), (zero, x.cos(), -x.sin()), (zero, x.sin(), x.cos()))
    rot_y = matrix((y.cos(), zero, y.sin()), (zero, one, zero), (-y.sin(), zero, y.cos()))
    rot_z = matrix((z.cos(), -z.sin(), zero), (z.sin(), z.cos(), zero), (zero, zero, one))
    return (rot_z @ rot_y @ rot_x).transpose(1, 2)


def keypoint_info_from_raw(raw: Mapping[str, torch.Tensor]) -> KeypointInfo:
    """LivePortrait's ``get_kp_info``: M's raw heads → :class:`KeypointInfo`.

    Args:
        raw: M's output dict: ``pitch``, ``yaw``, ``roll`` (B, 66) logits (or
            (B, 1) degrees), ``t`` (B, 3), ``exp`` (B, 63), ``scale`` (B, 1),
            ``kp`` (B, 63).

    Returns:
        Angles in degrees (B, 1); ``exp`` and ``kp`` reshaped to (B, 21, 3)
        (keypoint-major: value 3·k + c is component c of keypoint k).

    Raises:
        KeyError: if a head is missing.
        ValueError: if a head has the wrong shape.
    """
    missing = [head for head in RAW_HEADS if head not in raw]
    if missing:
        raise KeyError(f"motion-extractor output lacks {', '.join(missing)}")
    batch = raw["kp"].shape[0]
    return KeypointInfo(
        pitch=degrees_from_bins(raw["pitch"]),
        yaw=degrees_from_bins(raw["yaw"]),
        roll=degrees_from_bins(raw["roll"]),
        t=raw["t"],
        scale=raw["scale"],
        exp=raw["exp"].reshape(batch, NUM_KP, 3),
        kp=raw["kp"].reshape(batch, NUM_KP, 3),
    )


@dataclass(frozen=True)
class KeypointTransform:
    """A head pose as a rotation matrix, plus expression, scale and translation.

    This is the "new motion" (R_new, exp_new, scale_new, t_new) that maps a
    source's canonical keypoints to implicit keypoints; unlike
    :class:`MotionSequence` it holds a matrix, because relative rotations
    (R_i·R_0ᵀ·R_s) are not kept as Euler angles.

    Attributes:
        rotation: (B, 3, 3), applied as ``kp @ rotation``.
        exp: (B, 21, 3) expression deltas, normalised units.
        scale: (B, 1) unitless.
        t: (B, 3) translation, normalised units; ``t[:, 2]`` is ignored.
    """

    rotation: torch.Tensor
    exp: torch.Tensor
    scale: torch.Tensor
    t: torch.Tensor

    def __post_init__(self) -> None:
        b = self.exp.shape[0]
        expected = {"rotation": (b, 3, 3), "exp": (b, NUM_KP, 3), "scale": (b, 1), "t": (b, 3)}
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"KeypointTransform.{name} must have shape {shape}, got {got}")

    @classmethod
    def from_motion(cls, motion: MotionSequence) -> "KeypointTransform":
        """Transform of a :class:`MotionSequence` (rotation from its angles)."""
        return cls(rotation_matrix(motion.pitch, motion.yaw, motion.roll), motion.exp, motion.scale, motion.t)

    def apply(self, kp: torch.Tensor) -> torch.Tensor:
        """Implicit keypoints x = scale·(kp @ R + exp) + (t_x, t_y, 0) (spec §3).

        Args:
            kp: (B, 21, 3) or (1, 21, 3) canonical keypoints (broadcast over
                the transform's batch).

        Returns:
            (B, 21, 3) implicit keypoints, normalised units.
        """
        shift = torch.cat([self.t[:, :2], torch.zeros_like(self.t[:, 2:])], dim=1)
        return self.scale[:, :, None] * (kp @ self.rotation + self.exp) + shift[:, None, :]


def implicit_keypoints(info: KeypointInfo) -> torch.Tensor:
    """Implicit keypoints of an image from its own motion (x_s for a source).

    Args:
        info: M's output for B images.

    Returns:
        (B, 21, 3) float, scale·(kp @ R(pitch, yaw, roll) + exp) + (t_x, t_y, 0).
    """
    return KeypointTransform.from_motion(info).apply(info.kp)
