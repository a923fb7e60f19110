"""Motion transfer: a driving motion → the motion the source is rendered with.

LivePortrait spec §8. Three ways to combine the source's own motion with a
driving frame's:

* relative to a driving anchor frame (default; video driving):
  R_new = R_i·R_0ᵀ·R_s, exp_new = exp_s + (exp_i − exp_0),
  scale_new = scale_s·(scale_i / scale_0), t_new = t_s + (t_i − t_0);
* relative to LivePortrait's neutral expression (single driving image):
  exp_new = exp_s + (exp_d − lip_array), pose/scale/t of the source;
* absolute: R_new = R_i, t_new = t_i, scale_s, and the driving expression on
  a fixed set of entries (:data:`ABSOLUTE_EXP_ENTRIES`).

A source *video* has rules of its own (:func:`source_video_targets`,
:func:`smooth_targets`, :func:`source_video_transform`): each frame keeps its
own scale and (relative mode) translation, and the rotation and expression
sequences are Kalman-smoothed over the whole clip.

An animation region restricts which parts are taken from the driving side
("all", "pose", "exp", "lip", "eyes"); t_new's depth component is always 0.
The "expression-friendly" option then rescales the motion by the ratio of
keypoint convex-hull volumes (:func:`motion_multiplier`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal, get_args

import torch
from scipy.spatial import ConvexHull

from ..errors import ControlError
from .frame import NUM_KP, MotionSequence
from .kalman import OBSERVATION_VARIANCE, PROCESS_VARIANCE, kalman_smooth
from .keypoints import KeypointTransform

Region = Literal["all", "pose", "exp", "lip", "eyes"]
REGIONS: tuple[str, ...] = get_args(Region)
"""Animation regions (LivePortrait's ``animation_region``)."""

LIP_ROWS = (6, 12, 14, 17, 19, 20)
"""Keypoints whose expression the "lip" region animates."""

EYE_ROWS = (11, 13, 15, 16, 18)
"""Keypoints whose expression the "eyes" region animates."""

ExpEntries = tuple[tuple[int, tuple[int, ...]], ...]
"""A set of expression entries: (keypoint index, component indices) pairs."""

_XYZ = (0, 1, 2)

ALL_EXP_ENTRIES: ExpEntries = tuple((row, _XYZ) for row in range(NUM_KP))
"""Every exp entry: what relative mode takes for the "all"/"exp" regions."""

ABSOLUTE_EXP_ENTRIES: ExpEntries = (
    *((row, _XYZ) for row in (1, 2, 6, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)),
    (3, (1,)), (4, (1,)), (5, (2,)), (8, (2,)), (9, (1, 2)),
)
"""Exp entries absolute mode takes from the driving frame for "all"/"exp".

Rows 1, 2, 6, 11–20 whole, plus (3, y), (4, y), (5, z), (8, z), (9, y), (9, z):
LivePortrait src/live_portrait_pipeline.py ``LivePortraitPipeline.execute``,
the ``flag_relative_motion`` False branch (``delta_new[:, idx, :]`` for idx
in [1, 2, 6, 11, …, 20], ``[:, 3:5, 1]``, ``[:, 5, 2]``, ``[:, 8, 2]``,
``[:, 9, 1:]``); the remaining entries keep the source's expression.
"""

SOURCE_VIDEO_EXP_ENTRIES: ExpEntries = ABSOLUTE_EXP_ENTRIES
"""Exp entries a source-video frame takes from the smoothed expression sequence for "all"/"exp".

The same set as absolute mode, in relative mode too (LivePortrait
``LivePortraitPipeline.execute``, ``flag_is_source_video`` branch of the
relative-motion path).
"""


def check_region(region: str) -> None:
    """Raise ControlError unless ``region`` is one of :data:`REGIONS`."""
    if region not in REGIONS:
        raise ControlError(f"unknown animation region {region!r}; use one of {', '.join(REGIONS)}.")


def _region_exp_mask(region: str, whole_face: ExpEntries, device: torch.device) -> torch.Tensor:
    """(21, 3) bool mask of the exp entries ``region`` takes from the driving side.

    "all"/"exp" take ``whole_face``, "lip"/"eyes" their rows, "pose" nothing.
    """
    if region in ("all", "exp"):
        entries = whole_face
    else:
        entries = tuple((row, _XYZ) for row in {"lip": LIP_ROWS, "eyes": EYE_ROWS, "pose": ()}[region])
    mask = torch.zeros(NUM_KP, 3, dtype=torch.bool, device=device)
    for row, components in entries:
        mask[row, list(components)] = True
    return mask


def _without_depth(t: torch.Tensor) -> torch.Tensor:
    """(B, 3) translation with its z component set to 0."""
    return torch.cat([t[:, :2], torch.zeros_like(t[:, 2:])], dim=1)


def _select_region(
    source: KeypointTransform,
    driven: KeypointTransform,
    region: str,
    whole_face: ExpEntries,
) -> KeypointTransform:
    """Take from ``driven`` what ``region`` animates, the rest from ``source``.

    Pose (R, t) comes from ``driven`` for "all"/"pose", scale for "all" only,
    exp on the entries of :func:`_region_exp_mask`. The result has the
    driving batch size and t_z = 0.
    """
    check_region(region)
    batch = driven.exp.shape[0]

    def pick(take_driven: bool, name: str) -> torch.Tensor:
        value = getattr(driven if take_driven else source, name)
        return value.expand(batch, *value.shape[1:])

    take_pose = region in ("all", "pose")
    mask = _region_exp_mask(region, whole_face, driven.exp.device)
    return KeypointTransform(
        rotation=pick(take_pose, "rotation"),
        exp=torch.where(mask, driven.exp, source.exp),
        scale=pick(region == "all", "scale"),
        t=_without_depth(pick(take_pose, "t")),
    )


@lru_cache(maxsize=1)
def _lip_array_values() -> list:
    """Nested (1, 21, 3) float list from the packaged lip_array.json."""
    text = resources.files(__package__).joinpath("lip_array.json").read_text(encoding="utf-8")
    return json.loads(text)["values"]


def lip_array(like: torch.Tensor) -> torch.Tensor:
    """LivePortrait's constant neutral closed-lip expression (spec §8).

    Data from LivePortrait (MIT), shipped as ``motion/lip_array.json``.

    Args:
        like: any tensor; the result takes its device and floating dtype.

    Returns:
        (1, 21, 3) expression deltas, normalised units (stored as float64,
        cast once).
    """
    return torch.tensor(_lip_array_values(), dtype=torch.float64).to(device=like.device, dtype=like.dtype)


def relative_transform(
    source: MotionSequence,
    driving: MotionSequence,
    anchor: MotionSequence | None = None,
    region: str = "all",
) -> KeypointTransform:
    """Relative motion transfer (LivePortrait's default; spec §8).

    With an ``anchor`` (driving video frame 0):
    R_new = (R_i @ R_0ᵀ) @ R_s, exp_new = exp_s + (exp_i − exp_0),
    scale_new = scale_s·(scale_i / scale_0), t_new = t_s + (t_i − t_0).
    Without one (a single driving image): R_s, exp_s + (exp_d − lip_array),
    scale_s, t_s. Then the region selection, and t_new_z := 0.

    Args:
        source: (1 or B) motion of the source image.
        driving: (B) motion of the driving frames.
        anchor: (1) motion of the driving video's first frame, or None.
        region: one of :data:`REGIONS`.

    Returns:
        (B) transform; apply it to the source's canonical keypoints.

    Raises:
        ControlError: for an unknown region.
    """
    own = KeypointTransform.from_motion(source)
    if anchor is None:
        batch = driving.n_frames
        driven = KeypointTransform(
            rotation=own.rotation.expand(batch, 3, 3),
            exp=source.exp + (driving.exp - lip_array(driving.exp)),
            scale=own.scale.expand(batch, 1),
            t=own.t.expand(batch, 3),
        )
    else:
        rot_i = KeypointTransform.from_motion(driving).rotation
        rot_0 = KeypointTransform.from_motion(anchor).rotation
        driven = KeypointTransform(
            rotation=(rot_i @ rot_0.transpose(1, 2)) @ own.rotation,
            exp=source.exp + (driving.exp - anchor.exp),
            scale=source.scale * (driving.scale / anchor.scale),
            t=source.t + (driving.t - anchor.t),
        )
    return _select_region(own, driven, region, whole_face=ALL_EXP_ENTRIES)


def absolute_transform(source: MotionSequence, driving: MotionSequence, region: str = "all") -> KeypointTransform:
    """Absolute motion transfer (``flag_relative_motion`` off; spec §8).

    R_new = R_i, t_new = t_i (z := 0), scale = scale_s, and exp = exp_s with
    the :data:`ABSOLUTE_EXP_ENTRIES` replaced by the driving exp (only
    :data:`LIP_ROWS` / :data:`EYE_ROWS` for the "lip" / "eyes" regions).

    Args:
        source: (1 or B) motion of the source image.
        driving: (B) motion of the driving frames.
        region: one of :data:`REGIONS`.

    Returns:
        (B) transform; apply it to the source's canonical keypoints.

    Raises:
        ControlError: for an unknown region.
    """
    own = KeypointTransform.from_motion(source)
    driven = KeypointTransform.from_motion(driving)
    driven = KeypointTransform(driven.rotation, driven.exp, own.scale.expand_as(driven.scale), driven.t)
    return _select_region(own, driven, region, whole_face=ABSOLUTE_EXP_ENTRIES)


@dataclass(frozen=True)
class SourceVideoTargets:
    """Per-frame rotation and expression of a source-video job, before the row rule.

    Attributes:
        rotation: (T, 3, 3) float rotation matrices (``kp @ rotation``); after
            :func:`smooth_targets` no longer exactly orthonormal, used as they
            are (as LivePortrait does).
        exp: (T, 21, 3) float expression deltas, normalised units.
    """

    rotation: torch.Tensor
    exp: torch.Tensor

    def __len__(self) -> int:
        return int(self.exp.shape[0])

    def __getitem__(self, index: int | slice) -> "SourceVideoTargets":
        """Frame ``index`` (as a batch of one) or a slice of frames."""
        if isinstance(index, int):
            index = index + len(self) if index < 0 else index
            index = slice(index, index + 1)
        return SourceVideoTargets(self.rotation[index], self.exp[index])


def source_video_targets(source: MotionSequence, driving: MotionSequence, anchor: MotionSequence | None,
                         relative: bool = True) -> SourceVideoTargets:
    """The rotation and expression sequences LivePortrait smooths for a source video.

    LivePortrait src/live_portrait_pipeline.py ``LivePortraitPipeline.execute``
    (``flag_is_source_video`` with a driving video; ``x_d_r_lst`` and
    ``x_d_exp_lst``):

    * relative: R_i = (R_d,i · R_d,0ᵀ) · R_s,i and
      exp_i = (exp_s,i + exp_d,i) − exp_d,0 (the composed result, in this
      order of operations);
    * absolute: R_i = R_d,i and exp_i = exp_d,i (the driving frames as they are).

    Args:
        source: (T) motion of the source frames (angles in degrees).
        driving: (T) motion of the driving frames, frame i driving source frame i.
        anchor: (1) driving frame 0 (relative mode; ignored in absolute mode).
        relative: relative (True) or absolute motion.

    Returns:
        (T) targets, on the inputs' device and dtype.

    Raises:
        ValueError: the two sequences differ in length, or relative mode without an anchor.
    """
    if source.n_frames != driving.n_frames:
        raise ValueError(f"{source.n_frames} source frames but {driving.n_frames} driving frames")
    drive = KeypointTransform.from_motion(driving)
    if not relative:
        return SourceVideoTargets(drive.rotation, driving.exp)
    if anchor is None:
        raise ValueError("relative source-video motion needs the driving anchor frame")
    own = KeypointTransform.from_motion(source)
    first = KeypointTransform.from_motion(anchor)
    return SourceVideoTargets(
        rotation=(drive.rotation @ first.rotation.transpose(1, 2)) @ own.rotation,
        exp=(source.exp + driving.exp) - anchor.exp,
    )


def smooth_targets(targets: SourceVideoTargets, observation_variance: float = OBSERVATION_VARIANCE,
                   process_variance: float = PROCESS_VARIANCE) -> SourceVideoTargets:
    """Kalman-smooth both sequences over the whole clip, as LivePortrait's ``smooth``.

    Each sequence is flattened to (T, 9) or (T, 63) and smoothed by
    :func:`talkinghead.motion.kalman.kalman_smooth` (an RTS smoother: it
    needs every frame, so the caller holds the T frames of motion); the
    result is cast back to float32 (LivePortrait src/utils/filter.py).

    Args:
        targets: (T) targets from :func:`source_video_targets`.
        observation_variance: LivePortrait's ``driving_smooth_observation_variance`` (default 3e-7).
        process_variance: LivePortrait's ``process_variance`` (default 1e-5).

    Returns:
        (T) smoothed targets, float32, on the input's device.
    """
    def smooth(x: torch.Tensor) -> torch.Tensor:
        flat = x.detach().to("cpu", torch.float64).reshape(x.shape[0], -1).numpy()
        out = kalman_smooth(flat, observation_variance, process_variance)
        return torch.from_numpy(out).to(device=x.device, dtype=torch.float32).reshape(x.shape)

    return SourceVideoTargets(smooth(targets.rotation), smooth(targets.exp))


def source_video_transform(source: MotionSequence, targets: SourceVideoTargets, driving: MotionSequence,
                           region: str = "all", relative: bool = True) -> KeypointTransform:
    """The new motion of source-video frames (LivePortrait's ``flag_is_source_video`` rules).

    LivePortrait src/live_portrait_pipeline.py ``LivePortraitPipeline.execute``:

    * rotation: the (smoothed) target rotation for "all"/"pose", else R_s;
    * exp: exp_s with the :data:`SOURCE_VIDEO_EXP_ENTRIES` ("all"/"exp"),
      :data:`LIP_ROWS` ("lip") or :data:`EYE_ROWS` ("eyes") replaced by the
      target expression; "pose" keeps exp_s;
    * scale: always scale_s (the source frame's own);
    * t: relative mode t_s (the source frame's own); absolute mode t_d for
      "all"/"pose", t_s otherwise; t_z := 0.

    No expression-friendly rescaling follows for a source video (LivePortrait
    applies it only to a source image).

    Args:
        source: (B) motion of the source frames.
        targets: (B) smoothed targets of the same frames (:func:`smooth_targets`).
        driving: (B) driving frames (only their ``t`` is read, absolute mode).
        region: one of :data:`REGIONS`.
        relative: relative (True) or absolute motion.

    Returns:
        (B) transform; apply it to each source frame's canonical keypoints.

    Raises:
        ControlError: for an unknown region.
    """
    check_region(region)
    own = KeypointTransform.from_motion(source)
    take_pose = region in ("all", "pose")
    mask = _region_exp_mask(region, SOURCE_VIDEO_EXP_ENTRIES, source.exp.device)
    t = driving.t if (take_pose and not relative) else source.t
    return KeypointTransform(
        rotation=targets.rotation if take_pose else own.rotation,
        exp=torch.where(mask, targets.exp, source.exp),
        scale=source.scale,
        t=_without_depth(t),
    )


def _hull_volume(points: torch.Tensor) -> float:
    """Volume of the 3-D convex hull (Qhull) of a (1, 21, 3) keypoint set."""
    if tuple(points.shape) != (1, NUM_KP, 3):
        raise ValueError(f"expected one keypoint set of shape (1, {NUM_KP}, 3), got {tuple(points.shape)}")
    return float(ConvexHull(points.detach().to("cpu", torch.float64).numpy()[0]).volume)


def motion_multiplier(x_s: torch.Tensor, x_d0: torch.Tensor) -> float:
    """Expression-friendly motion multiplier m = sqrt(V(x_s)) / sqrt(V(x_d0)) (spec §8).

    V is the volume of the 3-D convex hull of the 21 keypoints
    (scipy.spatial.ConvexHull), computed in float64.

    Args:
        x_s: (1, 21, 3) source implicit keypoints.
        x_d0: (1, 21, 3) driven keypoints of the anchor frame (frame 0).

    Returns:
        m, unitless (about 1 when the driving face resembles the source's).

    Raises:
        ValueError: if a tensor is not (1, 21, 3).
        scipy.spatial.QhullError: if a keypoint set is flat (zero volume).
    """
    return math.sqrt(_hull_volume(x_s)) / math.sqrt(_hull_volume(x_d0))


def expression_friendly(x_d: torch.Tensor, x_d0: torch.Tensor, x_s: torch.Tensor, multiplier: float) -> torch.Tensor:
    """x_d := (x_d − x_d0)·m + x_s, so frame 0 reproduces the source (spec §8).

    Args:
        x_d: (B, 21, 3) driven keypoints.
        x_d0: (1, 21, 3) driven keypoints of the anchor frame.
        x_s: (1, 21, 3) source keypoints.
        multiplier: m from :func:`motion_multiplier`.

    Returns:
        (B, 21, 3) keypoints.
    """
    return (x_d - x_d0) * multiplier + x_s
