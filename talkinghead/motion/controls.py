"""Pose and expression controls on motion frames (issue 4; LivePortrait spec §10).

A :class:`Controls` is a set of slider values that edit a motion frame:

* **pose** — ``pitch``, ``yaw``, ``roll`` (degrees, added to the frame's
  angles, so relative to the source), ``x``, ``y`` (added to the translation
  ``t``, moving the whole keypoint cloud; LivePortrait's tab moves keypoint
  5 instead, and stitching, when on, may partly counter a global shift) and
  ``scale`` (multiplies the keypoint scale, LivePortrait's "mov_z");
* **expression** — ``smile``, ``wink``, ``blink``, ``brow``, ``gaze_x``,
  ``gaze_y``, ``pout``, ``purse``, ``grin``, ``mouth_open``: fixed offsets
  added to the 21 expression deltas ``exp`` (table below);
* **eye/lip opening** — ``eyes_open``, ``lips_open``: changes of the
  eye/lip opening ratios (spec §7), realised by the eye and lip retargeting
  MLPs on the implicit keypoints (:func:`retargeting_offsets`), not on
  ``exp``.

Every control is neutral at 0 (``scale`` at 1); all-neutral controls return
the input motion bit for bit.

Expression offsets.  The directions are the per-keypoint offsets of
LivePortrait's Gradio "retargeting" tab (spec §10), rescaled so that +1 (and
−1 for two-sided controls) is the end of that tab's slider; between, an
offset grows linearly with the value (each side of 0 has its own direction
where LivePortrait's has).  ``blink`` is ours: the eye part of LivePortrait's
wink applied to both eyes.  Keypoint rows (normalised units, x right, y
down, z depth): eyes 11/13 (image-left) and 15/16 (image-right), brows 1/2,
lips 14/17/19/20, cheeks 3/7.

=============  ============  =====================================================
control        range         rows moved (LivePortrait slider at +1 / −1)
=============  ============  =====================================================
smile          [−1, 1]       lips 14, 17, 20; lower lids 13, 16; cheeks 3, 7 (1.3 / −0.3)
wink           [0, 1]        image-left eye 11, 13; mouth corner 17; cheek 3 (39)
blink          [0, 1]        eyes 11, 13, 15, 16 (wink's eye part ×2 eyes, 39)
brow           [−1, 1]       brows 1, 2: + raise, − lower/knit (30 / −30) (a)
gaze_x         [−1, 1]       eyes 11, 15 along x: + toward image right (30 / −30)
gaze_y         [−1, 1]       eyes 11, 13, 15, 16 along y: + up (63 / −63)
pout           [−1, 1]       lip 19 along x ("pouting", 0.09 / −0.09)
purse          [−1, 1]       lips 14, 17; cheeks 3, 7 ("pursing", 15 / −20); vowel "woo"
grin           [0, 1]        lips 14, 20 ("grin", 15); vowel "eee"
mouth_open     [−1, 1]       lips 17, 19 ("lip close <-> open", 120 / −90); vowel "aaa"
=============  ============  =====================================================

(a) LivePortrait labels its slider only "eyebrow"; reading + as a raise (rows
1/2 along y) and − as lowering/knitting (rows 1/2 toward each other along x)
is ours and has not been checked on renders with the real weights.

Validation policy: a value that is not a finite real number raises
:class:`~talkinghead.errors.ControlError`; a finite value outside its range is
clamped to the range, listed in :attr:`Controls.clamped` and reported with a
:class:`ControlClampWarning`.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch

from ..errors import ControlError
from .animate import EyeLipRatios
from .frame import NUM_KP, MotionSequence
from .retarget import MLP, combined_ratios, retargeting_delta


class ControlClampWarning(UserWarning):
    """A control value was outside its range and has been clamped."""


@dataclass(frozen=True)
class ControlSpec:
    """Range, unit and neutral value of one control.

    Attributes:
        low: smallest accepted value (smaller values are clamped to it).
        high: largest accepted value.
        neutral: the value that leaves the motion unchanged.
        unit: unit of the value, for documentation and UIs.
    """

    low: float
    high: float
    neutral: float
    unit: str


_DEG, _NORM, _SLIDER, _RATIO = "degrees", "normalised keypoint units", "slider units", "opening-ratio change"

POSE_CONTROLS: dict[str, ControlSpec] = {
    "pitch": ControlSpec(-30.0, 30.0, 0.0, _DEG),
    "yaw": ControlSpec(-45.0, 45.0, 0.0, _DEG),
    "roll": ControlSpec(-30.0, 30.0, 0.0, _DEG),
    "x": ControlSpec(-0.2, 0.2, 0.0, _NORM),
    "y": ControlSpec(-0.2, 0.2, 0.0, _NORM),
    "scale": ControlSpec(0.8, 1.25, 1.0, "factor"),
}
"""Head pose controls (added to pitch/yaw/roll and t[:, :2]; scale multiplies)."""

RATIO_MAX = 0.8
"""Largest eye/lip opening ratio given to the retargeting MLPs (LivePortrait's slider maximum)."""

RATIO_CONTROLS: dict[str, ControlSpec] = {
    "eyes_open": ControlSpec(-RATIO_MAX, RATIO_MAX, 0.0, _RATIO),
    "lips_open": ControlSpec(-RATIO_MAX, RATIO_MAX, 0.0, _RATIO),
}
"""Eye/lip opening controls: target ratio = source ratio + value, clipped to [0, RATIO_MAX]."""

_TWO_SIDED, _ONE_SIDED = ControlSpec(-1.0, 1.0, 0.0, _SLIDER), ControlSpec(0.0, 1.0, 0.0, _SLIDER)

EXPRESSION_CONTROLS: dict[str, ControlSpec] = {
    "smile": _TWO_SIDED, "wink": _ONE_SIDED, "blink": _ONE_SIDED, "brow": _TWO_SIDED,
    "gaze_x": _TWO_SIDED, "gaze_y": _TWO_SIDED, "pout": _TWO_SIDED, "purse": _TWO_SIDED,
    "grin": _ONE_SIDED, "mouth_open": _TWO_SIDED,
}
"""Expression controls (offsets on ``exp``; see the module table)."""

CONTROL_SPECS: dict[str, ControlSpec] = {**POSE_CONTROLS, **RATIO_CONTROLS, **EXPRESSION_CONTROLS}
"""Every control by name, in :class:`Controls` field order."""

ALIASES: dict[str, str] = {"aaa": "mouth_open", "eee": "grin", "woo": "purse"}
"""Other accepted names (vowel mouth shapes) → control name."""

Offsets = tuple[tuple[int, int, float], ...]
"""Expression offsets as (keypoint row, axis 0=x 1=y 2=z, amount in normalised units)."""


def _scaled(per_slider_unit: Offsets, slider_value: float) -> Offsets:
    return tuple((row, axis, amount * slider_value) for row, axis, amount in per_slider_unit)


# Offsets per unit of LivePortrait's Gradio sliders (spec §10).
_SMILE: Offsets = ((20, 1, -0.01), (14, 1, -0.02), (17, 1, 0.0065), (17, 2, 0.003),
                   (13, 1, -0.00275), (16, 1, -0.00275), (3, 1, -0.0035), (7, 1, -0.0035))
_WINK: Offsets = ((11, 1, 0.001), (13, 1, -0.0003), (17, 0, 0.0003), (17, 1, 0.0003), (3, 1, -0.0003))
_BLINK: Offsets = ((11, 1, 0.001), (13, 1, -0.0003), (15, 1, 0.001), (16, 1, -0.0003))
_BROW_UP: Offsets = ((1, 1, 0.001), (2, 1, -0.001))
_BROW_DOWN: Offsets = ((1, 0, -0.001), (2, 0, 0.001), (1, 1, 0.0003), (2, 1, -0.0003))
_GAZE_RIGHT: Offsets = ((11, 0, 0.0007), (15, 0, 0.001))
_GAZE_LEFT: Offsets = ((11, 0, 0.001), (15, 0, 0.0007))
_GAZE_UP: Offsets = ((11, 1, -0.0005), (13, 1, -0.00015), (15, 1, -0.0005), (16, 1, -0.00015))
_POUT: Offsets = ((19, 0, 1.0),)
_PURSE: Offsets = ((14, 1, 0.001), (3, 1, -0.0005), (7, 1, -0.0005), (17, 2, -0.0005))
_GRIN: Offsets = ((20, 2, -0.001), (20, 1, -0.001), (14, 1, -0.001))
_MOUTH_OPEN: Offsets = ((19, 1, 0.001), (19, 2, 0.0001), (17, 1, -0.0001))

EXPRESSION_OFFSETS: dict[str, tuple[Offsets, Offsets]] = {
    "smile": (_scaled(_SMILE, 1.3), _scaled(_SMILE, -0.3)),
    "wink": (_scaled(_WINK, 39.0), ()),
    "blink": (_scaled(_BLINK, 39.0), ()),
    "brow": (_scaled(_BROW_UP, 30.0), _scaled(_BROW_DOWN, -30.0)),
    "gaze_x": (_scaled(_GAZE_RIGHT, 30.0), _scaled(_GAZE_LEFT, -30.0)),
    "gaze_y": (_scaled(_GAZE_UP, 63.0), _scaled(_GAZE_UP, -63.0)),
    "pout": (_scaled(_POUT, 0.09), _scaled(_POUT, -0.09)),
    "purse": (_scaled(_PURSE, 15.0), _scaled(_PURSE, -20.0)),
    "grin": (_scaled(_GRIN, 15.0), ()),
    "mouth_open": (_scaled(_MOUTH_OPEN, 120.0), _scaled(_MOUTH_OPEN, -90.0)),
}
"""Expression control → (offsets at +1, offsets at −1); one-sided controls have no −1 side."""


@dataclass(frozen=True)
class Controls:
    """Slider values for one frame; every field defaults to neutral.

    Ranges, units and meaning: :data:`CONTROL_SPECS` and the module
    docstring.  Pose: ``pitch``/``yaw``/``roll`` degrees added to the
    frame's angles (LivePortrait convention: +pitch = head down); ``x``/``y``
    added to t (normalised units, +x image right, +y image down); ``scale``
    multiplies the keypoint scale.  ``eyes_open``/``lips_open``: change of
    the opening ratio (0 closed … 0.8 wide) that the retargeting MLPs aim
    at.  Expression controls: slider units, 1 = full effect.

    Attributes:
        clamped: names of the controls whose given value was outside the
            range and was clamped (not a control; ignored by ``==``).

    Raises:
        ControlError: a value is not a finite real number.
    """

    pitch: float = 0.0
    yaw: float = 0.0
    roll: float = 0.0
    x: float = 0.0
    y: float = 0.0
    scale: float = 1.0
    eyes_open: float = 0.0
    lips_open: float = 0.0
    smile: float = 0.0
    wink: float = 0.0
    blink: float = 0.0
    brow: float = 0.0
    gaze_x: float = 0.0
    gaze_y: float = 0.0
    pout: float = 0.0
    purse: float = 0.0
    grin: float = 0.0
    mouth_open: float = 0.0
    clamped: tuple[str, ...] = field(default=(), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        clamped = []
        for name, spec in CONTROL_SPECS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ControlError(f"control {name!r} must be a finite number ({spec.unit}), got {value!r}.")
            limited = min(max(float(value), spec.low), spec.high)
            if limited != value:
                clamped.append(name)
            object.__setattr__(self, name, limited)
        if clamped:
            object.__setattr__(self, "clamped", tuple(clamped))
            ranges = ", ".join(f"{n} to [{CONTROL_SPECS[n].low:g}, {CONTROL_SPECS[n].high:g}]" for n in clamped)
            warnings.warn(f"control values out of range were clamped: {ranges}", ControlClampWarning, stacklevel=3)

    @classmethod
    def from_mapping(cls, values: Mapping[str, object], where: str = "controls") -> "Controls":
        """Controls from a name → value mapping (names or :data:`ALIASES`).

        Args:
            values: e.g. ``{"yaw": 15, "aaa": 0.5}``; missing controls are neutral.
            where: what the mapping is, for error messages (e.g. "keyframe 3").

        Raises:
            ControlError: an unknown name, a control given twice (by name and
                alias) or a non-finite / non-numeric value.
        """
        resolved: dict[str, object] = {}
        for key, value in values.items():
            name = ALIASES.get(key, key)
            if name not in CONTROL_SPECS:
                known = ", ".join([*CONTROL_SPECS, *ALIASES])
                raise ControlError(f"{where}: unknown control {key!r}; known controls: {known}.")
            if name in resolved:
                raise ControlError(f"{where}: control {name!r} is given twice (alias {key!r}).")
            resolved[name] = value
        try:
            return cls(**resolved)
        except ControlError as error:
            raise ControlError(f"{where}: {error}") from None

    def as_dict(self) -> dict[str, float]:
        """Every control value by name (:data:`CONTROL_SPECS` order)."""
        return {name: getattr(self, name) for name in CONTROL_SPECS}

    def is_neutral(self) -> bool:
        """Whether every control has its neutral value."""
        return all(getattr(self, name) == spec.neutral for name, spec in CONTROL_SPECS.items())


ControlsLike = Controls | Sequence[Controls]
"""One set of controls (applied to every frame) or one per frame."""


def control_tensor(controls: ControlsLike, names: Sequence[str], like: torch.Tensor) -> torch.Tensor:
    """Values of some controls as a (N, len(names)) tensor (dtype/device of ``like``).

    Args:
        controls: one :class:`Controls` (N = 1) or a sequence of N.
        names: control names, columns of the result.
        like: tensor whose dtype and device the result takes.

    Raises:
        ValueError: ``controls`` is an empty sequence.
    """
    rows = [controls] if isinstance(controls, Controls) else list(controls)
    if not rows:
        raise ValueError("no controls given")
    return torch.tensor([[getattr(c, n) for n in names] for c in rows], dtype=like.dtype, device=like.device)


def expression_direction(name: str, side: int = 1, like: torch.Tensor | None = None) -> torch.Tensor:
    """(21, 3) exp offsets of expression control ``name`` at value ``side`` (+1 or −1).

    Args:
        name: an :data:`EXPRESSION_CONTROLS` name.
        side: +1 or −1 (zeros for the −1 side of a one-sided control).
        like: tensor whose dtype/device the result takes (default float32 CPU).

    Raises:
        KeyError: unknown expression control.
    """
    if name not in EXPRESSION_OFFSETS:
        raise KeyError(f"not an expression control: {name!r}")
    like = torch.zeros((), dtype=torch.float32) if like is None else like
    offsets = torch.zeros(NUM_KP, 3, dtype=like.dtype, device=like.device)
    for row, axis, amount in EXPRESSION_OFFSETS[name][0 if side > 0 else 1]:
        offsets[row, axis] += amount
    return offsets


def _direction_matrix(side: int, like: torch.Tensor) -> torch.Tensor:
    """(C, 63) offsets of every expression control at value ``side`` (+1 or −1)."""
    return torch.stack([expression_direction(name, side, like).reshape(-1) for name in EXPRESSION_OFFSETS])


def expression_offsets(values: torch.Tensor) -> torch.Tensor:
    """Exp offsets of expression control values (piecewise linear per control).

    offsets = Σ_c max(v_c, 0)·D⁺_c + max(−v_c, 0)·D⁻_c, with D± the offsets
    at ±1 (:data:`EXPRESSION_OFFSETS`).  All-zero values give exact zeros.

    Args:
        values: (N, C) values of :data:`EXPRESSION_CONTROLS` in that order.

    Returns:
        (N, 21, 3) offsets in normalised keypoint units, dtype/device of ``values``.
    """
    up, down = _direction_matrix(1, values), _direction_matrix(-1, values)
    offsets = values.clamp(min=0) @ up + (-values).clamp(min=0) @ down
    return offsets.reshape(-1, NUM_KP, 3)


def apply_controls(frames: MotionSequence, controls: ControlsLike) -> MotionSequence:
    """Edit the pose and expression of motion frames with controls.

    pitch/yaw/roll += control degrees; t[:, 0:2] += (x, y); scale ×= scale;
    exp += :func:`expression_offsets`.  ``eyes_open``/``lips_open`` are not
    applied here (they act on implicit keypoints: :func:`retargeting_offsets`).
    Neutral controls return the input values bit for bit.

    Works on a single photo (a source :class:`KeypointInfo`, B = 1) and as
    offsets on a motion sequence: one :class:`Controls` applies to all B
    frames, N controls to N frames, and N controls on one frame give N frames
    (e.g. keyframed edits of a photo).  To edit a relatively driven video,
    apply the controls to the driving frames but not to the anchor frame.

    Args:
        frames: (B) motion, e.g. ``PreparedSource.info`` or a driving sequence.
        controls: one :class:`Controls` or a sequence of N (N = B, or B = 1).

    Returns:
        (max(B, N)) :class:`MotionSequence` (canonical keypoints dropped); the
        edits broadcast over the batch axis.

    Raises:
        ValueError: N and B differ and neither is 1.
    """
    n = 1 if isinstance(controls, Controls) else len(controls)
    if n not in (1, frames.n_frames) and frames.n_frames != 1:
        raise ValueError(f"{n} sets of controls for {frames.n_frames} motion frames")
    pose = control_tensor(controls, list(POSE_CONTROLS), frames.exp)
    expression = control_tensor(controls, list(EXPRESSION_CONTROLS), frames.exp)
    shift = torch.cat([pose[:, 3:5], torch.zeros_like(pose[:, :1])], dim=1)
    return MotionSequence(
        pitch=frames.pitch + pose[:, 0:1],
        yaw=frames.yaw + pose[:, 1:2],
        roll=frames.roll + pose[:, 2:3],
        t=frames.t + shift,
        scale=frames.scale * pose[:, 5:6],
        exp=frames.exp + expression_offsets(expression),
    )


def target_ratios(source_ratios: EyeLipRatios, controls: ControlsLike) -> EyeLipRatios:
    """Eye/lip opening ratios the retargeting MLPs should aim at.

    eye target = mean(source left, right) + eyes_open and lip target =
    source lip + lips_open, both clipped to [0, :data:`RATIO_MAX`] (as
    LivePortrait's retargeting tab: one eye value for both eyes).

    Args:
        source_ratios: (1) source ratios, ``eye`` (1, 2), ``lip`` (1, 1).
        controls: one :class:`Controls` or N.

    Returns:
        (N) ratios: ``eye`` (N, 1), ``lip`` (N, 1).
    """
    change = control_tensor(controls, list(RATIO_CONTROLS), source_ratios.eye)
    eye = (source_ratios.eye.mean(dim=1, keepdim=True) + change[:, 0:1]).clamp(0.0, RATIO_MAX)
    lip = (source_ratios.lip + change[:, 1:2]).clamp(0.0, RATIO_MAX)
    return EyeLipRatios(eye=eye, lip=lip)


def _masked_delta(mlp: MLP, x_s: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
                  active: torch.Tensor) -> torch.Tensor:
    """Retargeting offsets for the ``active`` frames, exact zeros elsewhere."""
    offsets = torch.zeros(active.shape[0], NUM_KP, 3, dtype=x_s.dtype, device=x_s.device)
    if bool(active.any()):
        offsets[active] = retargeting_delta(mlp, x_s, combined_ratios(source, target[active]))
    return offsets


def retargeting_offsets(eye: MLP, lip: MLP, x_s: torch.Tensor, source_ratios: EyeLipRatios,
                        controls: ControlsLike) -> torch.Tensor:
    """Keypoint offsets Δ_eye + Δ_lip realising ``eyes_open``/``lips_open`` (spec §6, §10).

    Add the result to the driven keypoints x_d before stitching (LivePortrait's
    retargeting-tab order).  Frames whose control is 0 get exact zero offsets
    (the MLP is not run for them), so neutral controls leave x_d unchanged.

    Args:
        eye: eye retargeting MLP (66 → 63), e.g. ``networks.stitching.eye``.
        lip: lip retargeting MLP (65 → 63).
        x_s: (1, 21, 3) source implicit keypoints.
        source_ratios: (1) source eye (1, 2) and lip (1, 1) opening ratios.
        controls: one :class:`Controls` or N.

    Returns:
        (N, 21, 3) offsets, normalised keypoint units.
    """
    change = control_tensor(controls, list(RATIO_CONTROLS), x_s)
    targets = target_ratios(source_ratios, controls)
    return (_masked_delta(eye, x_s, source_ratios.eye, targets.eye, change[:, 0] != 0)
            + _masked_delta(lip, x_s, source_ratios.lip, targets.lip, change[:, 1] != 0))
