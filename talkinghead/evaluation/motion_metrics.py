"""Expression, pose and temporal metrics from the motion extractor M's output (our representation).

AED: mean absolute difference of M's expression deltas ``exp`` ((21, 3) keypoint offsets, normalised
keypoint units) per frame; APD: mean absolute difference of yaw, pitch and roll in degrees.  (Papers
compute these with other face models, e.g. EMOCA/3DMM coefficients; ours use LivePortrait's M so that
the numbers need no extra network, and are comparable only between runs of this tool.)
"""

from __future__ import annotations

import numpy as np
import torch

from ..face.ratios import eye_open_ratios
from ..motion.frame import MotionSequence
from ..motion.keypoints import KeypointTransform


def _angles(motion: MotionSequence) -> torch.Tensor:
    """(T, 3) float32 yaw, pitch, roll in degrees."""
    return torch.cat([motion.yaw, motion.pitch, motion.roll], dim=1).float().cpu()


def expression_distance(pred: MotionSequence, ref: MotionSequence) -> list[float]:
    """AED per frame: mean |exp_pred − exp_ref| over 21×3 values (normalised units), for min(T_pred, T_ref) frames."""
    n = min(pred.n_frames, ref.n_frames)
    return (pred.exp[:n].float().cpu() - ref.exp[:n].float().cpu()).abs().mean(dim=(1, 2)).tolist()


def pose_distance(pred: MotionSequence, ref: MotionSequence) -> list[float]:
    """APD per frame: mean |Δyaw|, |Δpitch|, |Δroll| in degrees, for min(T_pred, T_ref) frames."""
    n = min(pred.n_frames, ref.n_frames)
    return (_angles(pred)[:n] - _angles(ref)[:n]).abs().mean(dim=1).tolist()


def pose_diversity(motion: MotionSequence) -> dict[str, float]:
    """Standard deviation (degrees, population) of yaw, pitch and roll over the T frames of ``motion``."""
    std = _angles(motion).std(dim=0, unbiased=False).tolist()
    return {"yaw": std[0], "pitch": std[1], "roll": std[2]}


def keypoint_jitter(motion: MotionSequence, canonical: torch.Tensor) -> float | None:
    """Mean absolute second difference (normalised keypoint units per frame²) of the implicit keypoints
    x_t = scale·(kp @ R + exp) + t made from ``canonical`` (1, 21, 3) keypoints; None below 3 frames."""
    if motion.n_frames < 3:
        return None
    kp = KeypointTransform.from_motion(motion.to(canonical.device)).apply(canonical).float().cpu()
    return float((kp[2:] - 2 * kp[1:-1] + kp[:-2]).abs().mean())


def blink_rate(landmarks: list[np.ndarray | None], fps: float, closed_below: float = 0.2) -> float | None:
    """Blinks per minute: falls of the mean eye opening ratio (lid gap / eye width, both eyes, from 68
    landmarks) below ``closed_below`` after an open frame; None when fewer than 2 frames have a face."""
    ratios = [float(eye_open_ratios(points).mean()) for points in landmarks if points is not None]
    if len(ratios) < 2:
        return None
    closed = np.asarray(ratios) < closed_below
    blinks = int(np.sum(closed[1:] & ~closed[:-1]))
    return blinks / (len(landmarks) / fps / 60.0)
