"""FACS action units as combinations of expression controls (issue 4).

An action unit (AU) of the Facial Action Coding System (Ekman & Friesen)
with intensity i ∈ [0, 1] (non-finite values are refused, others clamped
to [0, 1] with a :class:`~talkinghead.motion.controls.ControlClampWarning`) sets expression controls (:mod:`.controls`) to
weight × i; several AUs add up (then the controls' clamping applies).  Only
AUs that LivePortrait's expression offsets can express are offered; the
mapping is a design choice, not a measured fit:

======  =====================  =================================================
AU      FACS name              controls at intensity 1
======  =====================  =================================================
AU1     inner brow raiser      brow +0.5 (no separate inner/outer brow offsets)
AU2     outer brow raiser      brow +0.5 (AU1 + AU2 = the full brow raise)
AU4     brow lowerer           brow −1
AU6     cheek raiser           smile +0.3, blink +0.2 (cheeks up, eyes narrowed)
AU12    lip corner puller      smile +1
AU18    lip pucker             purse +1
AU20    lip stretcher          grin +1
AU22    lip funneler           pout +1
AU25    lips part              mouth_open +0.3
AU26    jaw drop               mouth_open +1
AU45    blink                  blink +1
AU46    wink                   wink +1 (image-left eye)
======  =====================  =================================================

Inverse (for motion curves): the intensity of an AU in a frame is estimated
by projecting the frame's expression change (exp − exp_reference) on the
AU's direction u (the exp offsets at intensity 1):  i = ⟨Δexp, u⟩ / ⟨u, u⟩,
clipped to [0, 1].  Each AU is projected on its own, so AUs that share
keypoints (AU6/AU12, AU25/AU26, AU1/AU2) are not told apart; read the
values as approximate activity, not as FACS coding.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Mapping

import torch

from ..errors import ControlError
from .controls import EXPRESSION_CONTROLS, ControlClampWarning, Controls, expression_offsets
from .frame import MotionSequence

ACTION_UNITS: dict[str, tuple[str, dict[str, float]]] = {
    "AU1": ("inner brow raiser", {"brow": 0.5}),
    "AU2": ("outer brow raiser", {"brow": 0.5}),
    "AU4": ("brow lowerer", {"brow": -1.0}),
    "AU6": ("cheek raiser", {"smile": 0.3, "blink": 0.2}),
    "AU12": ("lip corner puller", {"smile": 1.0}),
    "AU18": ("lip pucker", {"purse": 1.0}),
    "AU20": ("lip stretcher", {"grin": 1.0}),
    "AU22": ("lip funneler", {"pout": 1.0}),
    "AU25": ("lips part", {"mouth_open": 0.3}),
    "AU26": ("jaw drop", {"mouth_open": 1.0}),
    "AU45": ("blink", {"blink": 1.0}),
    "AU46": ("wink", {"wink": 1.0}),
}
"""AU code → (FACS name, expression control weights at intensity 1)."""


def _check_au(au: str) -> None:
    if au not in ACTION_UNITS:
        raise ControlError(f"unknown action unit {au!r}; known: {', '.join(ACTION_UNITS)}.")


def _intensity(au: str, value: object) -> float:
    """``value`` as an intensity: refused unless a finite number, clamped to [0, 1] (with a warning)."""
    _check_au(au)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ControlError(f"{au} intensity must be a finite number from 0 to 1, got {value!r}.")
    clamped = min(max(float(value), 0.0), 1.0)
    if clamped != value:
        warnings.warn(f"{au} intensity {value} clamped to {clamped}", ControlClampWarning, stacklevel=3)
    return clamped


def au_controls(intensities: Mapping[str, float], base: Controls = Controls()) -> Controls:
    """Controls that show the given AU intensities (added to ``base``'s expression values).

    Args:
        intensities: AU code → intensity in [0, 1], e.g. ``{"AU12": 0.8, "AU6": 0.5}``.
        base: controls to add to (pose and eye/lip opening are kept).

    Returns:
        :class:`Controls`; sums beyond a control's range are clamped (with a
        :class:`~talkinghead.motion.controls.ControlClampWarning`).

    Raises:
        ControlError: an unknown AU code or a non-finite intensity
            (intensities outside [0, 1] are clamped, with a warning).
    """
    values = base.as_dict()
    for au, intensity in intensities.items():
        level = _intensity(au, intensity)
        for name, weight in ACTION_UNITS[au][1].items():
            values[name] += weight * level
    return Controls(**values)


def au_direction(au: str, like: torch.Tensor | None = None) -> torch.Tensor:
    """(21, 3) exp offsets of action unit ``au`` at intensity 1.

    Args:
        au: an :data:`ACTION_UNITS` code.
        like: tensor whose dtype/device the result takes (default float32 CPU).

    Raises:
        ControlError: unknown AU code.
    """
    _check_au(au)
    like = torch.zeros((), dtype=torch.float32) if like is None else like
    weights = ACTION_UNITS[au][1]
    values = torch.tensor([[weights.get(name, 0.0) for name in EXPRESSION_CONTROLS]], dtype=like.dtype,
                          device=like.device)
    return expression_offsets(values)[0]


def project_expression(delta: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Least-squares amount of ``direction`` in expression changes: ⟨δ, u⟩ / ⟨u, u⟩.

    Args:
        delta: (B, 21, 3) expression changes, normalised units.
        direction: (21, 3) non-zero direction u.

    Returns:
        (B,) unitless amounts (1 = exactly ``direction``; not clipped).
    """
    return (delta * direction).sum(dim=(1, 2)) / (direction * direction).sum()


def estimate_intensities(motion: MotionSequence, reference: MotionSequence) -> dict[str, torch.Tensor]:
    """Approximate AU intensities of motion frames relative to a reference frame.

    Args:
        motion: (B) motion frames (e.g. a driving or generated sequence).
        reference: (1) the neutral frame, usually the source's motion.

    Returns:
        AU code → (B,) intensity in [0, 1] (projection of exp − exp_reference
        on the AU direction, clipped; see the module docstring).
    """
    delta = motion.exp - reference.exp
    return {au: project_expression(delta, au_direction(au, delta)).clamp(0.0, 1.0) for au in ACTION_UNITS}
