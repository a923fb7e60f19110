"""Edits on whole motion sequences: expression scale, still head, personalized head pose.

A motion sequence is a :class:`~talkinghead.motion.frame.MotionSequence` whose
batch axis is time.  All edits are relative to the source photo's own motion
(``source``, a batch of one): zero/neutral settings return the input.

Personalized head pose (after Yi et al., 2020, "Audio-driven talking face
video generation with learning-based personalized head pose"): instead of
learning a per-person pose network from ~300 frames, we take the head-pose
track (pitch, yaw, roll, t) of a short reference clip of the same person, as
extracted by the motion extractor, remove its mean (so the photo's own pose
stays the centre of motion) and loop it back and forth ("ping-pong", so there
is no jump at the loop point) over the sequence's length.
"""

from __future__ import annotations

import torch

from ..errors import ControlError
from .frame import MotionSequence

POSE_FIELDS = ("pitch", "yaw", "roll", "t")
"""Fields that make up the rigid head motion (scale stays the source's)."""


def scale_expression(motion: MotionSequence, source: MotionSequence, scale: float) -> MotionSequence:
    """Scale the expression deltas relative to the source: exp = exp_s + (exp − exp_s)·scale.

    Args:
        motion: (T) motion sequence.
        source: (1) the source photo's motion.
        scale: 1 keeps the motion, 0 gives the source's expression, >1
            exaggerates; must be finite and in [0, 3].

    Raises:
        ControlError: scale out of range.
    """
    if not 0.0 <= scale <= 3.0:
        raise ControlError(f"expression scale must be between 0 and 3, got {scale}")
    if scale == 1.0:
        return motion
    return motion.replace(exp=source.exp + (motion.exp - source.exp) * scale)


def still_head(motion: MotionSequence, source: MotionSequence) -> MotionSequence:
    """Keep the source's head pose (pitch/yaw/roll/t) on every frame; expression untouched."""
    n = motion.n_frames
    return motion.replace(**{f: getattr(source, f).expand(n, -1).clone() for f in POSE_FIELDS})


def ping_pong_indices(length: int, period: int, start: int = 0) -> torch.Tensor:
    """Indices 0, 1, …, p−1, p−2, …, 1, 0, 1, … of a track of ``period`` frames, ``length`` long,
    beginning at position ``start`` of that endless sequence (for streamed chunks).

    Raises:
        ValueError: ``period`` < 1.
    """
    if period < 1:
        raise ValueError(f"a pose track needs at least one frame, got {period}")
    if period == 1:
        return torch.zeros(length, dtype=torch.long)
    cycle = torch.cat([torch.arange(period), torch.arange(period - 2, 0, -1)])
    return cycle[(start + torch.arange(length)) % len(cycle)]


def reference_pose(motion: MotionSequence, source: MotionSequence, reference: MotionSequence, blend: float = 1.0,
                   first_frame: int = 0) -> MotionSequence:
    """Replace (blend=1) or mix (0<blend<1) the head pose with a reference clip's pose track.

    The reference track's mean is removed and the source pose added, so
    pose_ref(i) = source + (ref[i mod] − mean(ref)); then
    pose = (1 − blend)·pose_model + blend·pose_ref, field by field for
    pitch, yaw, roll (degrees) and t.  Expression and scale are untouched.

    Args:
        motion: (T) generated motion sequence.
        source: (1) the source photo's motion.
        reference: (R) motion of the reference clip (only its pose is used).
        blend: in [0, 1]; 0 returns ``motion`` unchanged.
        first_frame: index of ``motion``'s first frame in the whole clip
            (when the sequence arrives in chunks).

    Raises:
        ControlError: blend out of range.
    """
    if not 0.0 <= blend <= 1.0:
        raise ControlError(f"pose blend must be between 0 and 1, got {blend}")
    if blend == 0.0:
        return motion
    index = ping_pong_indices(motion.n_frames, reference.n_frames, first_frame).to(motion.exp.device)
    changes = {}
    for field in POSE_FIELDS:
        track = getattr(reference, field).to(motion.exp)
        personal = getattr(source, field) + (track - track.mean(0, keepdim=True))[index]
        changes[field] = torch.lerp(getattr(motion, field), personal, blend)
    return motion.replace(**changes)
