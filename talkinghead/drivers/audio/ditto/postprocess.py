"""Ditto's motion post-processing: 265-d motion rows → LivePortrait keypoints.

Spec ``ditto-audio2motion.md`` §4, §7.2, §7.3 (what Ditto's ``motion_stitch.py``
does for an image source; called post-processing here, because it is not
LivePortrait's stitching network, which runs later on the driven keypoints).
Per generated frame d, with the source's own motion s and the anchor d0 (the
first generated frame offline, the online anchor otherwise):

1. split the row into scale = v[0] + 1, pitch/yaw/roll bin logits (66 each),
   t (3) and exp (63) (§4);
2. relative motion in *logit* space: new = s + (d − d0)·g for exp, pitch,
   yaw, roll (g = ``delta_gain``) and t (g = 1); scale is the source's (§7.2);
3. expression masks: lip rows always generated; eye rows generated when eyes
   are driven and no blink template is given, source + template row when one
   is; every other row is the source's (§7.3);
4. per-frame controls: ``vad_alpha`` towards the source expression, pose
   offsets in degrees, ``delta_exp`` (§7.3);
5. gaze fix: eye keypoints 11 and 15 nudged by the yaw/pitch change (§7.3);
6. implicit keypoints with the source's canonical keypoints, then
   LivePortrait's stitching MLP (§7.3; LivePortrait spec §3, §6).

Everything is batched over frames and stateless: the caller passes the
anchor and the index of the first frame (for the blink schedule), so a
stream can be processed chunk by chunk with the same result as in one go.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields, replace
from typing import Mapping, Sequence

import torch
from torch import Tensor

from ....errors import ControlError
from ....motion.controls import expression_direction
from ....motion.frame import NUM_KP, MotionSequence
from ....motion.keypoints import NUM_BINS, KeypointTransform, degrees_from_bins
from ....motion.retarget import MLP, stitch

MOTION_DIM = 1 + 3 * NUM_BINS + 3 + 3 * NUM_KP
"""Width of a Ditto motion row: [scale − 1 | pitch 66 | yaw 66 | roll 66 | t 3 | exp 63] (spec §4)."""

LIP_ROWS = (6, 12, 14, 17, 19, 20)
"""Expression rows (keypoints) of the mouth: always taken from the generated motion (§7.3)."""

EYE_ROWS = (11, 13, 15, 16, 18)
"""Expression rows of the eyes: generated, or source + blink template (§7.3)."""

BLINK_GAP_RANGE = (60, 100)
"""Open frames between blinks when drawn at random (Ditto's ``delta_eye_open_n`` = 0), inclusive."""

UNKNOWN_LENGTH = 3000
"""Frames covered by the blink schedule when the clip length is unknown (Ditto's default)."""

GAZE_RATIO = (0.26, 0.28)
"""Gaze fix: eye shift per degree of (yaw, pitch) change (§7.3)."""

_ANGLES = ("pitch", "yaw", "roll")


@dataclass(frozen=True)
class MotionRows:
    """The fields of a batch of Ditto motion rows (spec §4).

    Attributes:
        scale: (B, 1) unitless keypoint scale (row value + 1).
        pitch: (B, 66) head-pose bin logits; degrees = 3·Σ softmax·i − 97.5.
        yaw: (B, 66) bin logits.
        roll: (B, 66) bin logits.
        t: (B, 3) translation, normalised keypoint units.
        exp: (B, 63) expression deltas, keypoint-major (value 3·k + c).
    """

    scale: Tensor
    pitch: Tensor
    yaw: Tensor
    roll: Tensor
    t: Tensor
    exp: Tensor

    @classmethod
    def split(cls, rows: Tensor) -> "MotionRows":
        """Split (B, 265) or (265,) float rows into fields.

        Raises:
            ValueError: if the last axis is not 265 wide.
        """
        if rows.ndim == 1:
            rows = rows[None]
        if rows.ndim != 2 or rows.shape[1] != MOTION_DIM:
            raise ValueError(f"motion rows must be (B, {MOTION_DIM}), got {tuple(rows.shape)}")
        scale, pitch, yaw, roll, t, exp = rows.split([1, NUM_BINS, NUM_BINS, NUM_BINS, 3, 3 * NUM_KP], dim=1)
        return cls(scale + 1, pitch, yaw, roll, t, exp)


def motion_row_from_raw(raw: Mapping[str, Tensor]) -> Tensor:
    """A source's motion row (Ditto's ``s_kp_cond``, spec §4) from M's raw heads.

    Args:
        raw: motion-extractor output: ``scale`` (B, 1), ``pitch``/``yaw``/
            ``roll`` (B, 66) bin logits, ``t`` (B, 3), ``exp`` (B, 63);
            ``kp`` is not part of the row.

    Returns:
        (B, 265) float rows ``[scale − 1 | pitch | yaw | roll | t | exp]``.

    Raises:
        KeyError: if a head is missing.
    """
    exp = raw["exp"].reshape(raw["exp"].shape[0], -1)
    return torch.cat([raw["scale"] - 1, raw["pitch"], raw["yaw"], raw["roll"], raw["t"], exp], dim=1)


DRIVABLE_KEYS = ("scale", "pitch", "yaw", "roll", "t", "exp")
"""Motion fields Ditto's post-processing can take from the generated motion (``use_d_keys``)."""

IMAGE_DRIVEN = {"exp": 1.0, "pitch": 1.0, "yaw": 1.0, "roll": 1.0, "t": 1.0}
"""Ditto's driven keys for an image source, each with gain 1 (motion_stitch.py ``setup``)."""

REFERENCE_SCALED = ("exp", "pitch", "yaw", "roll")
"""Keys whose gain a reference character's scale ratio multiplies (motion_stitch.py ``_set_scale_ratio``)."""

FADE_TARGETS = ("", "d0", "s")
"""``fade_type``: no fading, fade towards the first driven frame, or towards the source."""


@dataclass(frozen=True, eq=False)
class DittoControls:
    """Manual adjustments of one frame, or of every frame (Ditto's ``ctrl_info``, §7.3).

    ``None`` means "not set", so per-frame controls can override the overall
    ones field by field (:meth:`over`).  Order of application (Ditto
    ``motion_stitch.py`` ``MotionStitch.__call__``, ``ctrl_motion``, ``fade``):
    ``vad_alpha``, then the pose offsets and gains and ``delta_exp``, then
    ``fade_alpha``, then the gaze fix.

    Attributes:
        delta_pitch: degrees added to the pitch.
        delta_yaw: degrees added to the yaw.
        delta_roll: degrees added to the roll.
        alpha_pitch: gain on the pitch.  With ``delta_pitch`` set it
            multiplies the degrees after the offset; without, Ditto multiplies
            the 66 bin *logits* (a softmax temperature, not a gain in
            degrees), and so do we, for the same result.
        alpha_yaw: as ``alpha_pitch``, for the yaw.
        alpha_roll: as ``alpha_pitch``, for the roll.
        delta_exp: (63,) or (21, 3) expression offset, normalised keypoint units.
        vad_alpha: in [0, 1]; exp ← α·exp + (1 − α)·source exp (1 = no change).
        fade_alpha: in [0, 1]; the faded fields (``PostprocessOptions.fade_keys``)
            ← α·value + (1 − α)·fade target (``PostprocessOptions.fade``);
            1 = no change.
    """

    delta_pitch: float | None = None
    delta_yaw: float | None = None
    delta_roll: float | None = None
    alpha_pitch: float | None = None
    alpha_yaw: float | None = None
    alpha_roll: float | None = None
    delta_exp: Tensor | None = None
    vad_alpha: float | None = None
    fade_alpha: float | None = None

    def __post_init__(self) -> None:
        for name in ("vad_alpha", "fade_alpha"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ControlError(f"{name} must be between 0 and 1, got {value}")
        if self.delta_exp is not None and self.delta_exp.numel() != 3 * NUM_KP:
            raise ControlError(f"delta_exp must have {3 * NUM_KP} values (21 keypoints × 3), "
                               f"got shape {tuple(self.delta_exp.shape)}")

    def over(self, base: "DittoControls") -> "DittoControls":
        """These controls, with unset fields taken from ``base``."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return DittoControls(**{name: getattr(base, name) if value is None else value for name, value in values.items()})


@dataclass(frozen=True, eq=False)
class PostprocessOptions:
    """Settings of the motion post-processing (Ditto's setup kwargs, spec §7.2, §7.3, §8).

    Defaults are Ditto's code defaults for an image source (motion_stitch.py
    ``setup``): relative motion, exp/pitch/yaw/roll/t driven with gain 1,
    eyes driven, gaze fix and stitching on, no blink template, no reference
    character, no fading, no controls.

    Attributes:
        drive_eyes: ``drive_eye``; eye rows follow the generated motion (or
            the blink template) instead of staying the source's.
        fix_gaze: apply the gaze fix (Ditto always does when eyes are driven).
        blink_template: (n, 63) float32 ``delta_eye_arr`` (Ditto's has n = 15),
            eye-row offsets added to the source expression, row 0 = open;
            ``None`` = eyes from the generated motion.
        blink_gaps: ``delta_eye_open_n``: open frames before the first blink
            and between blinks; an int, a sequence used in a loop, ``None``
            (Ditto's 0) = random 60..100 frames each time, or a negative int =
            never blink (the template's row 0 on every frame).
        blink_seed: seed of the random gaps (``None`` = unseeded).
        driven: ``use_d_keys``: the motion fields taken from the generated
            motion (a subset of :data:`DRIVABLE_KEYS`), each with its gain g
            (new = s + (d − d0)·g relative, d·g absolute); the other fields are
            the source's.
        relative: ``relative_d``; motion relative to the anchor d0 (default)
            or the generated values as they are.
        reference_scale: the reference character's keypoint scale
            (``ch_info``); when set, the gains of exp/pitch/yaw/roll are
            multiplied by reference_scale / source scale.
        fade: ``fade_type`` (:data:`FADE_TARGETS`): what frames with a
            ``fade_alpha`` control fade towards: "" none, "d0" the first
            driven frame (after its controls), "s" the source.
        fade_keys: ``fade_out_keys``: the faded fields.
        stitching: ``flag_stitching``; the renderer applies LivePortrait's
            stitching network to the driven keypoints (this module only
            reports the setting; :class:`MotionPostprocessor` stitches when
            it is given the MLP).
        overall: controls applied on every frame (``overall_ctrl_info``).
        per_frame: frame index → controls overriding ``overall`` field by
            field (``ctrl_info``).

    Raises:
        ControlError: a bad template, gap, driven key, gain or fade setting.
    """

    drive_eyes: bool = True
    fix_gaze: bool = True
    blink_template: Tensor | None = None
    blink_gaps: int | Sequence[int] | None = None
    blink_seed: int | None = None
    driven: Mapping[str, float] = field(default_factory=lambda: dict(IMAGE_DRIVEN))
    relative: bool = True
    reference_scale: float | None = None
    fade: str = ""
    fade_keys: Sequence[str] = ("exp",)
    stitching: bool = True
    overall: DittoControls = field(default_factory=DittoControls)
    per_frame: Mapping[int, DittoControls] = field(default_factory=dict)

    def __post_init__(self) -> None:
        template = self.blink_template
        if template is not None and (template.ndim != 2 or template.shape[1] != 3 * NUM_KP or not len(template)):
            raise ControlError(f"blink template must be (n, {3 * NUM_KP}) with n ≥ 1, got {tuple(template.shape)}")
        never = isinstance(self.blink_gaps, int) and self.blink_gaps < 0
        gaps = [] if never else [self.blink_gaps] if isinstance(self.blink_gaps, int) else self.blink_gaps or []
        if any(gap < 1 for gap in gaps) or (self.blink_gaps is not None and not never and not gaps):
            raise ControlError(f"blink gaps must be positive frame counts (or negative for no blinks), "
                               f"got {self.blink_gaps}")
        for keys, what in ((self.driven, "driven"), (self.fade_keys, "faded")):
            unknown = [k for k in keys if k not in DRIVABLE_KEYS]
            if unknown:
                raise ControlError(f"unknown {what} motion field {unknown[0]!r}: use {', '.join(DRIVABLE_KEYS)}")
        if self.fade not in FADE_TARGETS:
            raise ControlError(f"unknown fade target {self.fade!r}: use '', 'd0' or 's'")
        if self.reference_scale is not None and not self.reference_scale > 0:
            raise ControlError(f"the reference character's scale must be positive, got {self.reference_scale}")


BLINK_CURVE = (0.0, 0.45, 0.85, 1.0, 0.95, 0.75, 0.5, 0.3, 0.15, 0.05)
"""Closure (0 open … 1 closed) of one synthetic blink, per 25 fps frame: closed
within 3 frames (120 ms), reopened more slowly over 6 (a spontaneous blink
lasts about 300–400 ms, its closing phase being the faster)."""

BLINK_MODES = ("model", "template", "off")
"""Where the audio job's blinks come from: the generated eye rows, the
synthetic blink template on a random schedule, or none (the source's eyes)."""


def synthetic_blink_template(curve: Sequence[float] = BLINK_CURVE) -> Tensor:
    """A blink template built from the ``blink`` expression control (our own; Ditto's ships in its cfg pickle).

    Row k = ``curve[k]`` × the ``blink`` control's expression offsets at 1
    (:func:`talkinghead.motion.controls.expression_direction`), which move
    only eye keypoints.  Row 0 must be open (0).

    Args:
        curve: closure per frame, 0 … 1, starting with 0.

    Returns:
        (len(curve), 63) float32, a :attr:`PostprocessOptions.blink_template`.

    Raises:
        ControlError: an empty curve, one not starting open, or values outside [0, 1].
    """
    values = torch.tensor(list(curve), dtype=torch.float32)
    if not len(values) or values[0] != 0 or bool(((values < 0) | (values > 1)).any()):
        raise ControlError(f"a blink curve starts at 0 (open) and stays within [0, 1], got {list(curve)}")
    return values[:, None] * expression_direction("blink").reshape(1, 3 * NUM_KP)


def blink_options(blinks: str, seed: int | None = None,
                  base: PostprocessOptions | None = None) -> PostprocessOptions:
    """``base`` (default: Ditto's code defaults) with a :data:`BLINK_MODES` choice applied.

    ``"model"``: eye rows from the generated motion; ``"template"``:
    ``base``'s blink template (e.g. the one of Ditto's configuration), or
    :func:`synthetic_blink_template` when it has none, on ``base``'s schedule
    (default: every 60–100 frames, Ditto's random gaps, drawn with ``seed``);
    ``"off"``: the source's eyes throughout.

    Raises:
        ControlError: unknown ``blinks``.
    """
    if blinks not in BLINK_MODES:
        raise ControlError(f"unknown blink mode {blinks!r}: choose one of {', '.join(BLINK_MODES)}")
    base = base or PostprocessOptions()
    template = None
    if blinks == "template":
        template = base.blink_template if base.blink_template is not None else synthetic_blink_template()
    return replace(base, drive_eyes=blinks != "off", blink_template=template, blink_seed=seed)


def blink_schedule(num_frames: int, blink_length: int, gaps: int | Sequence[int] | None,
                   rng: random.Random | None = None) -> list[int]:
    """Blink-template row for every frame (Ditto's ``_set_eye_blink_idx``, §7.3).

    Row 0 (open) everywhere except blinks: the first starts after ``gaps``'
    first entry, each covers rows 0..blink_length−1 on consecutive frames and
    is followed by the next gap; blinks start only below
    num_frames − max(last gap, blink_length), so the clip ends with open eyes.

    Args:
        num_frames: length of the schedule in frames.
        blink_length: frames per blink (template rows).
        gaps: open frames between blinks: an int, a sequence used in a loop,
            ``None`` for random 60..100 (drawn from ``rng``), or a negative
            int for no blink at all (Ditto's −1).
        rng: random generator for ``gaps=None``.

    Returns:
        ``num_frames`` template-row indices.
    """
    if isinstance(gaps, int) and gaps < 0:
        return [0] * num_frames
    loop = [gaps] if isinstance(gaps, int) else list(gaps or [])
    rng = rng or random.Random()

    def gap(i: int) -> int:
        return loop[i % len(loop)] if loop else rng.randint(*BLINK_GAP_RANGE)

    rows = [0] * num_frames
    start = gap(0)
    last = loop[-1] if loop else rng.randint(*BLINK_GAP_RANGE)
    blink = list(range(blink_length))
    count = 1
    while start < num_frames - max(last, blink_length):
        rows[start:start + blink_length] = blink
        start += blink_length + gap(count)
        count += 1
    return rows


@dataclass(frozen=True)
class PostprocessResult:
    """Post-processed motion of a batch of B frames.

    Attributes:
        motion: the motion at keypoint-transform time (degrees, source scale).
        x_s: (1, 21, 3) source implicit keypoints.
        x_d_raw: (B, 21, 3) driven implicit keypoints before stitching.
        x_d: (B, 21, 3) driven keypoints for the warping network (stitched
            when a stitching MLP is set, else ``x_d_raw``).
    """

    motion: MotionSequence
    x_s: Tensor
    x_d_raw: Tensor
    x_d: Tensor


class MotionPostprocessor:
    """Ditto's image-source motion post-processing (``motion_stitch.py``; spec §7.2, §7.3), batched over frames.

    Args:
        source_row: (1, 265) or (265,) float32 motion row of the source image
            (:func:`motion_row_from_raw` of M's output), pose as bin logits.
        source_kp: (1, 21, 3) or (1, 63) source canonical keypoints.
        options: post-processing settings.
        stitching: LivePortrait's stitching MLP (126 → 65), or ``None`` to
            skip stitching.
        num_frames: clip length for the blink schedule; ``None`` = 3000 as
            Ditto does when the length is unknown (streaming).

    Raises:
        ValueError: badly shaped source tensors.
    """

    def __init__(self, source_row: Tensor, source_kp: Tensor, options: PostprocessOptions = PostprocessOptions(),
                 stitching: MLP | None = None, num_frames: int | None = None) -> None:
        self.source = MotionRows.split(source_row)
        self.source_kp = source_kp.reshape(1, NUM_KP, 3)
        self.options = options
        self.stitching = stitching
        self.source_degrees = {name: degrees_from_bins(getattr(self.source, name)) for name in _ANGLES}
        self.x_s = KeypointTransform.from_motion(self._frame(self.source, self.source_degrees)).apply(self.source_kp)
        self.gains = dict(options.driven)
        if options.reference_scale is not None:
            # Ditto: scale_ratio = reference scale / source scale (a Python float), on exp/pitch/yaw/roll.
            ratio = options.reference_scale / self.source.scale.item()
            self.gains = {k: g * (ratio if k in REFERENCE_SCALED else 1) for k, g in self.gains.items()}
        template = options.blink_template
        self.blink_rows = None if template is None else torch.tensor(blink_schedule(
            num_frames or UNKNOWN_LENGTH, len(template), options.blink_gaps, random.Random(options.blink_seed)))
        self._fade_target: MotionRows | None = None

    def __call__(self, rows: Tensor, anchor: Tensor, first_frame: int = 0) -> PostprocessResult:
        """Post-process generated motion rows.

        Args:
            rows: (B, 265) float32 generated (smoothed, clipped) motion rows.
            anchor: (265,) or (1, 265) the relative-motion reference d0: the
                first generated frame offline, ``MotionChunk.anchor`` online.
            first_frame: clip frame index of ``rows[0]`` (blink schedule and
                per-frame controls).  With ``fade="d0"`` the first call must
                hold frame 0 (its fade target).

        Returns:
            :class:`PostprocessResult` for the B frames.

        Raises:
            ValueError: badly shaped rows or anchor.
            ControlError: a "d0" fade whose first call does not start at frame 0.
        """
        frames = range(first_frame, first_frame + rows.shape[0])
        controls = [self.options.per_frame.get(f, DittoControls()).over(self.options.overall) for f in frames]
        mixed = self._mix(MotionRows.split(rows), MotionRows.split(anchor))
        exp = self._apply_vad(self._mask_expression(mixed.exp, frames), controls)
        exp = exp + self._stack(controls, "delta_exp", torch.zeros(3 * NUM_KP), exp)
        mixed = replace(mixed, exp=exp)
        mixed, degrees = self._control_pose(mixed, controls)
        mixed, degrees = self._fade(mixed, degrees, controls, first_frame)
        exp = mixed.exp
        if self.options.drive_eyes and self.options.fix_gaze:
            exp = self._fix_gaze(exp, degrees)
        motion = self._frame(replace(mixed, exp=exp), degrees)
        x_d_raw = KeypointTransform.from_motion(motion).apply(self.source_kp)
        x_d = x_d_raw if self.stitching is None else stitch(self.stitching, self.x_s, x_d_raw)
        return PostprocessResult(motion, self.x_s, x_d_raw, x_d)

    # ------------------------------------------------------------ steps
    def _mix(self, generated: MotionRows, anchor: MotionRows) -> MotionRows:
        """Driven fields: s + (d − d0)·g (relative) or d·g (absolute); the rest the source's (§7.2)."""
        size = generated.scale.shape[0]

        def mix(name: str) -> Tensor:
            source = getattr(self.source, name)
            if name not in self.gains:
                return source.expand(size, -1)
            if self.options.relative:
                return source + (getattr(generated, name) - getattr(anchor, name)) * self.gains[name]
            return getattr(generated, name) * self.gains[name]

        return MotionRows(*(mix(name) for name in DRIVABLE_KEYS))

    def _control_pose(self, mixed: MotionRows, controls: list[DittoControls]) -> tuple[MotionRows, dict[str, Tensor]]:
        """Degrees of each angle with ``delta_*`` added and ``alpha_*`` applied (Ditto ``ctrl_motion``).

        Where only ``alpha_*`` is set, Ditto scales the bin logits; the
        returned rows hold those scaled logits so that a later logit-space
        fade sees what Ditto's does.
        """
        degrees, logits = {}, {}
        for name in _ANGLES:
            delta = [c.__dict__[f"delta_{name}"] for c in controls]
            alpha = [c.__dict__[f"alpha_{name}"] for c in controls]
            values = getattr(mixed, name)
            if any(a is not None for a in alpha):
                on_logits = torch.tensor([a if a is not None and d is None else 1.0 for a, d in zip(alpha, delta)])
                values = values * on_logits.to(values)[:, None]
            deg = degrees_from_bins(values) + self._stack(controls, f"delta_{name}", 0.0, values)[:, None]
            if any(a is not None and d is not None for a, d in zip(alpha, delta)):
                on_degrees = torch.tensor([a if a is not None and d is not None else 1.0 for a, d in zip(alpha, delta)])
                deg = deg * on_degrees.to(deg)[:, None]
            degrees[name], logits[name] = deg, values
        return replace(mixed, **logits), degrees

    def _fade(self, mixed: MotionRows, degrees: dict[str, Tensor], controls: list[DittoControls],
              first_frame: int) -> tuple[MotionRows, dict[str, Tensor]]:
        """value·α + target·(1 − α) on frames with ``fade_alpha`` (Ditto ``fade``, §7.3).

        Angles fade as bin logits (what Ditto mixes when no pose offset is
        set on the frame); on frames with a ``delta_*`` offset they fade in
        degrees (Ditto mixes degrees with logits there, which has no meaning).
        """
        if self.options.fade == "d0" and self._fade_target is None:
            if first_frame != 0:
                raise ControlError("a fade towards the first frame needs frame 0 post-processed first")
            self._fade_target = MotionRows(*(getattr(mixed, k)[:1] for k in DRIVABLE_KEYS))
            self._fade_degrees = {k: v[:1] for k, v in degrees.items()}
        alphas = [c.fade_alpha for c in controls]
        if not self.options.fade or all(a is None for a in alphas):
            return mixed, degrees
        target = self._fade_target if self.options.fade == "d0" else self.source
        target_degrees = self._fade_degrees if self.options.fade == "d0" else self.source_degrees
        alpha = torch.tensor([1.0 if a is None else a for a in alphas]).to(mixed.exp)[:, None]
        faded, degrees = {}, dict(degrees)
        for key in self.options.fade_keys:
            value = getattr(mixed, key) * alpha + getattr(target, key) * (1 - alpha)
            faded[key] = torch.where(alpha < 1, value, getattr(mixed, key))
            if key in _ANGLES:
                has_delta = torch.tensor([c.__dict__[f"delta_{key}"] is not None for c in controls])[:, None]
                in_degrees = degrees[key] * alpha + target_degrees[key] * (1 - alpha)
                from_logits = degrees_from_bins(faded[key]) + self._stack(controls, f"delta_{key}", 0.0, value)[:, None]
                degrees[key] = torch.where(alpha < 1, torch.where(has_delta.to(alpha.device), in_degrees, from_logits),
                                           degrees[key])
        return replace(mixed, **faded), degrees

    def _mask_expression(self, exp: Tensor, frames: range) -> Tensor:
        """Lip rows generated; eye rows generated, blink-templated or the source's; rest the source's (§7.3)."""
        generated_rows = list(LIP_ROWS)
        if self.options.drive_eyes and self.blink_rows is None:
            generated_rows += EYE_ROWS
        out = self.source.exp.expand_as(exp).reshape(-1, NUM_KP, 3).clone()
        out[:, generated_rows] = exp.reshape(-1, NUM_KP, 3)[:, generated_rows]
        if self.options.drive_eyes and self.blink_rows is not None:
            index = self.blink_rows[torch.tensor(frames) % len(self.blink_rows)]
            blink = self.options.blink_template.to(exp)[index].reshape(-1, NUM_KP, 3)
            out[:, EYE_ROWS] = out[:, EYE_ROWS] + blink[:, EYE_ROWS]
        return out.reshape(exp.shape)

    def _apply_vad(self, exp: Tensor, controls: list[DittoControls]) -> Tensor:
        """exp·α + source exp·(1 − α) on frames with ``vad_alpha`` < 1."""
        alpha = self._stack(controls, "vad_alpha", 1.0, exp)[:, None]
        return torch.where(alpha < 1, exp * alpha + self.source.exp * (1 - alpha), exp)

    def _fix_gaze(self, exp: Tensor, degrees: dict[str, Tensor]) -> Tensor:
        """Shift eye keypoints 11 and 15 with the yaw/pitch change from the source (§7.3).

        dx = 0.26·Δyaw, dy = 0.28·Δpitch (degrees); exp[33] += 0.0007·dx and
        exp[45] += 0.001·dx when dx > 0 (weights swapped otherwise);
        exp[34] and exp[46] −= 0.001·dy.
        """
        dx = (degrees["yaw"] - self.source_degrees["yaw"])[:, 0] * GAZE_RATIO[0]
        dy = (degrees["pitch"] - self.source_degrees["pitch"])[:, 0] * GAZE_RATIO[1]
        right = dx > 0
        shift = torch.zeros_like(exp)
        shift[:, 33] = dx * torch.where(right, 0.0007, 0.001)
        shift[:, 45] = dx * torch.where(right, 0.001, 0.0007)
        shift[:, 34] = dy * -0.001
        shift[:, 46] = dy * -0.001
        return exp + shift

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _stack(controls: list[DittoControls], name: str, default: float | Tensor, like: Tensor) -> Tensor:
        """Per-frame values of one control field, ``default`` where unset: (B,) or (B, 63)."""
        values = [getattr(c, name) for c in controls]
        return torch.stack([torch.as_tensor(default if v is None else v).reshape(-1).to(like)
                            for v in values]).squeeze(1)

    @staticmethod
    def _frame(rows: MotionRows, degrees: dict[str, Tensor]) -> MotionSequence:
        return MotionSequence(pitch=degrees["pitch"], yaw=degrees["yaw"], roll=degrees["roll"], t=rows.t,
                           scale=rows.scale, exp=rows.exp.reshape(-1, NUM_KP, 3))
