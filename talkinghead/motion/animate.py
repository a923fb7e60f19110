"""The per-frame animation step: driving motion → final driven keypoints x_d.

Composes motion transfer (:mod:`.transfer`), the expression-friendly
rescaling, stitching, eye/lip retargeting, lip normalisation and the driving
multiplier exactly in LivePortrait's order (spec §8, "Then, with no eye/lip
retargeting: …"); the renderer then warps the source features from x_s to x_d.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch

from ..errors import ControlError
from ..options import option
from .frame import KeypointInfo, MotionSequence
from .keypoints import KeypointTransform, implicit_keypoints
from .retarget import MLP, combined_ratios, lip_normalization_delta, retargeting_delta, scale_motion, stitch
from .transfer import (REGIONS, SourceVideoTargets, absolute_transform, check_region, expression_friendly,
                       motion_multiplier, relative_transform, source_video_transform)


class RetargetingNetworks(Protocol):
    """The three S MLPs (e.g. :class:`talkinghead.models.stitching.StitchingRetargeting`)."""

    stitching: MLP
    eye: MLP
    lip: MLP


@dataclass(frozen=True)
class AnimationOptions:
    """How a driving motion animates the source (defaults: LivePortrait CLI, spec §10).

    Attributes:
        relative: relative motion (True) or absolute (False).
        region: animated region, "all", "pose", "exp", "lip" or "eyes".
        stitching: apply the stitching MLP.
        eye_retargeting: drive the eyes from the driving eye-opening ratio
            instead of the driving motion.
        lip_retargeting: drive the lips from the driving lip-opening ratio.
            With either retargeting on, relative mode discards the driving
            motion (x_d = x_s + Δ_eye + Δ_lip), as LivePortrait does.
        normalize_lip: close the source's mouth first (relative mode only,
            ignored while retargeting).
        expression_friendly: rescale relative motion by the hull-volume ratio
            (LivePortrait's "expression-friendly" driving option; used only
            for relative, video driving; False = "pose-friendly").
        driving_multiplier: gain on the final motion x_d − x_s.

    Help, CLI flag and default of each field: its
    :func:`~talkinghead.options.option` spec (the CLI's flags and the app's
    widgets are generated from it).

    Raises:
        ControlError: for an unknown region or a non-finite multiplier.
    """

    relative: bool = option(True, what="relative motion", flag="--relative", off_flag="--absolute",
                            off_help="use the driving pose and expression as they are",
                            help="transfer motion relative to the first driving frame")
    region: str = option("all", what="region", choices=REGIONS, help="which part of the motion to transfer")
    stitching: bool = option(True, what="stitching", off_flag="--no-stitching",
                             off_help="skip the stitching network (shoulders may drift from the pasted-back body)",
                             help="apply the stitching network")
    eye_retargeting: bool = option(False, what="eye retargeting",
                                   help="drive the eyes by the driving eye-open ratio")
    lip_retargeting: bool = option(False, what="lip retargeting",
                                   help="drive the lips by the driving lip-open ratio")
    normalize_lip: bool = option(False, what="lip normalisation",
                                 help="close the source's mouth first (relative mode, without retargeting)")
    expression_friendly: bool = option(True, what="expression-friendly driving", off_flag="--pose-friendly",
                                       off_help="do not rescale the driving expression to the source face's "
                                                "keypoint volume",
                                       help="rescale the driving expression to the source face's keypoint volume")
    driving_multiplier: float = option(1.0, what="driving multiplier", widget_range=(0.0, 2.0),
                                       help="scale of the transferred motion (<1 damps, >1 exaggerates)")

    def __post_init__(self) -> None:
        check_region(self.region)
        if not math.isfinite(self.driving_multiplier):
            raise ControlError(f"driving multiplier must be a finite number, got {self.driving_multiplier}.")

    @property
    def retargeting(self) -> bool:
        """Whether eye and/or lip retargeting is on."""
        return self.eye_retargeting or self.lip_retargeting


@dataclass(frozen=True)
class EyeLipRatios:
    """Eye and lip opening ratios of B faces (spec §7; unitless, 0 = closed).

    Attributes:
        eye: (B, 2) float [left, right] eye-opening ratios.
        lip: (B, 1) float lip-opening ratio.
    """

    eye: torch.Tensor
    lip: torch.Tensor


class Animator:
    """Turns driving motion into the source's driven keypoints x_d, frame by frame or in batches.

    Everything that depends only on the source and the driving anchor (x_s,
    the expression-friendly reference and multiplier, the lip-normalisation
    offsets) is computed once here.

    Args:
        source: (1) :class:`KeypointInfo` of the source image.
        networks: the S MLPs, on the source's device and dtype.
        options: see :class:`AnimationOptions`.
        anchor: (1) motion of the driving video's first frame (relative
            mode); None when the driving input is a single image (relative to
            LivePortrait's neutral ``lip_array``) or in absolute mode.
        source_ratios: (1) source eye/lip ratios; required for eye/lip
            retargeting and lip normalisation.

    Attributes:
        x_s: (1, 21, 3) source implicit keypoints.
        reference: expression-friendly reference (x_d0 (1, 21, 3) = driven
            keypoints of the anchor, multiplier m), or None when not used.
        lip_normalization: (1, 21, 3) offsets added after stitching, or None.

    Raises:
        ValueError: if ``source_ratios`` is needed but missing.
    """

    def __init__(
        self,
        source: KeypointInfo,
        networks: RetargetingNetworks,
        options: AnimationOptions = AnimationOptions(),
        anchor: MotionSequence | None = None,
        source_ratios: EyeLipRatios | None = None,
    ) -> None:
        normalize_lip = options.normalize_lip and options.relative and not options.retargeting
        if source_ratios is None and (options.retargeting or normalize_lip):
            raise ValueError("eye/lip retargeting and lip normalisation need the source's eye/lip ratios")
        self.source = source
        self.networks = networks
        self.options = options
        self.anchor = anchor
        self.source_ratios = source_ratios
        self.x_s = implicit_keypoints(source)
        self.reference: tuple[torch.Tensor, float] | None = None
        if options.relative and options.expression_friendly and anchor is not None:
            x_d0 = self.transfer(anchor).apply(source.kp)
            self.reference = (x_d0, motion_multiplier(self.x_s, x_d0))
        self.lip_normalization = (
            lip_normalization_delta(networks.lip, self.x_s, source_ratios.lip) if normalize_lip else None
        )

    def transfer(self, driving: MotionSequence) -> KeypointTransform:
        """(B) driving motion → (B) new source motion (relative or absolute, region applied)."""
        if self.options.relative:
            return relative_transform(self.source, driving, self.anchor, self.options.region)
        return absolute_transform(self.source, driving, self.options.region)

    def driven_keypoints(self, driving: MotionSequence) -> torch.Tensor:
        """(B, 21, 3) keypoints of the transferred motion, expression-friendly rescaled if on."""
        x_d = self.transfer(driving).apply(self.source.kp)
        if self.reference is not None:
            x_d0, multiplier = self.reference
            x_d = expression_friendly(x_d, x_d0, self.x_s, multiplier)
        return x_d

    def retargeted_keypoints(self, driving: MotionSequence, driving_ratios: EyeLipRatios) -> torch.Tensor:
        """(B, 21, 3) base keypoints plus Δ_eye and/or Δ_lip (before stitching).

        The base is x_s in relative mode (the driving motion is discarded) and
        the driven keypoints in absolute mode. Only the driving LEFT eye ratio
        is used.
        """
        x_d = self.x_s.expand(driving.n_frames, -1, -1) if self.options.relative else self.driven_keypoints(driving)
        if self.options.eye_retargeting:
            ratios = combined_ratios(self.source_ratios.eye, driving_ratios.eye[:, :1])
            x_d = x_d + retargeting_delta(self.networks.eye, self.x_s, ratios)
        if self.options.lip_retargeting:
            ratios = combined_ratios(self.source_ratios.lip, driving_ratios.lip)
            x_d = x_d + retargeting_delta(self.networks.lip, self.x_s, ratios)
        return x_d

    def __call__(self, driving: MotionSequence, driving_ratios: EyeLipRatios | None = None,
                 offsets: torch.Tensor | None = None) -> torch.Tensor:
        """Final driven keypoints for B driving frames (spec §8).

        Args:
            driving: (B) motion of the driving frames (same device/dtype as
                the source).
            driving_ratios: (B) eye/lip ratios of the driving frames; needed
                only with eye/lip retargeting.
            offsets: (B or 1, 21, 3) keypoint offsets in normalised units
                (e.g. the eye/lip deltas of the ``eyes_open``/``lips_open``
                controls, :func:`talkinghead.motion.controls.retargeting_offsets`),
                added to x_d after the transfer and any eye/lip retargeting and
                before stitching, lip normalisation and the driving multiplier
                (spec §6, §8: retargeting deltas come before stitching, as in
                :func:`keypoints_from_motion`); None adds nothing.

        Returns:
            (B, 21, 3) keypoints x_d to warp the source to.

        Raises:
            ValueError: if retargeting is on and ``driving_ratios`` is None.
        """
        if self.options.retargeting:
            if driving_ratios is None:
                raise ValueError("eye/lip retargeting needs the driving frames' eye/lip ratios")
            x_d = self.retargeted_keypoints(driving, driving_ratios)
        else:
            x_d = self.driven_keypoints(driving)
        if offsets is not None:
            x_d = x_d + offsets
        if self.options.stitching:
            x_d = stitch(self.networks.stitching, self.x_s, x_d)
        if self.lip_normalization is not None:
            x_d = x_d + self.lip_normalization
        return scale_motion(self.x_s, x_d, self.options.driving_multiplier)


class SourceVideoAnimator(Animator):
    """The animation step of one frame of a source video (LivePortrait's video-to-video).

    Like :class:`Animator` (stitching, eye/lip retargeting, lip
    normalisation, driving multiplier in LivePortrait's order), but the
    motion transfer is :func:`~talkinghead.motion.transfer.source_video_transform`
    with this frame's smoothed rotation/expression targets, and no
    expression-friendly rescaling (LivePortrait applies it only to a source
    image).

    Args:
        source: (1) keypoint info of this source frame (its x_s is the warp origin).
        networks: the S MLPs.
        options: see :class:`AnimationOptions` (``expression_friendly`` is ignored).
        targets: (1) this frame's smoothed targets
            (:func:`~talkinghead.motion.transfer.smooth_targets`).
        own: (1) motion read for the frame's own R_s, exp_s, t_s and scale_s;
            None: ``source`` itself (e.g. pass ``source`` with pose controls
            applied to its t and scale).
        source_ratios: (1) eye/lip ratios of this source frame.

    Raises:
        ValueError: if ``source_ratios`` is needed but missing.
    """

    def __init__(self, source: KeypointInfo, networks: RetargetingNetworks, options: AnimationOptions,
                 targets: SourceVideoTargets, own: MotionSequence | None = None,
                 source_ratios: EyeLipRatios | None = None) -> None:
        super().__init__(source, networks, options, anchor=None, source_ratios=source_ratios)
        self.targets = targets
        self.own = source if own is None else own

    def transfer(self, driving: MotionSequence) -> KeypointTransform:
        """(1) driving frame → (1) new motion of this source frame (region applied)."""
        return source_video_transform(self.own, self.targets, driving, self.options.region, self.options.relative)


def keypoints_from_motion(motion: MotionSequence, source: KeypointInfo, stitching: MLP | None = None,
                          offsets: torch.Tensor | None = None) -> torch.Tensor:
    """Driven keypoints of an absolute motion sequence on the source's canonical keypoints.

    This is the common path of every driver that produces motion frames
    directly (audio, sliders, motion files): x_d = scale·(kp_s @ R + exp) +
    (t_x, t_y, 0), plus ``offsets`` (e.g. eye/lip retargeting deltas of the
    open-ratio controls), then stitching against x_s if a stitching MLP is
    given (spec §3, §6, §8: retargeting deltas are added before stitching).

    Args:
        motion: (B) motion frames (degrees).
        source: (1) the source's keypoint info (its ``kp`` is used).
        stitching: LivePortrait's stitching MLP, or None.
        offsets: (B or 1, 21, 3) keypoint offsets added before stitching, or None.

    Returns:
        (B, 21, 3) keypoints x_d for the warping network.
    """
    x_d = KeypointTransform.from_motion(motion).apply(source.kp)
    if offsets is not None:
        x_d = x_d + offsets
    return stitch(stitching, implicit_keypoints(source), x_d) if stitching is not None else x_d
