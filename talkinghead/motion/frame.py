"""Typed motion structures shared by every driver, control and the renderer.

The motion space is LivePortrait's implicit 3-D keypoints (see
``tests/data/specs/liveportrait-architecture.md`` §3): a head pose (pitch, yaw,
roll in degrees), a translation ``t``, a scale and 21 expression deltas
``exp``.  Together with a source's canonical keypoints ``kp`` they give the
implicit keypoints::

    x = scale * (kp @ R(pitch, yaw, roll) + exp) + (t_x, t_y, 0)

A :class:`MotionSequence` holds T frames: every field carries a leading
frame axis (one motion frame per row; T = 1 for a single image).  All tensors
are float32 on the same device.  (Before issue 12 this class was called
``MotionFrame``; that name still imports, with a DeprecationWarning.)
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Iterable, Sequence

import torch

NUM_KP = 21
"""Number of implicit keypoints in LivePortrait's motion space."""


@dataclass(frozen=True)
class MotionSequence:
    """Head pose and expression of a sequence of T frames (T ≥ 0; one image: T = 1).

    Attributes:
        pitch: (T, 1) float32, degrees; rotation about the x (width) axis,
            positive = head tilts down in LivePortrait's convention.
        yaw: (T, 1) float32, degrees; rotation about the y (height) axis.
        roll: (T, 1) float32, degrees; rotation about the z (depth) axis.
        t: (T, 3) float32, translation in normalised keypoint units (the
            keypoint volume spans [-1, 1]); ``t[:, 2]`` is carried but never
            used by the keypoint transform.
        scale: (T, 1) float32, unitless scale of the keypoint cloud (about
            1.5 to 1.7 for real faces).
        exp: (T, 21, 3) float32, expression deltas added to the rotated
            canonical keypoints, in normalised keypoint units.
    """

    pitch: torch.Tensor
    yaw: torch.Tensor
    roll: torch.Tensor
    t: torch.Tensor
    scale: torch.Tensor
    exp: torch.Tensor

    def __post_init__(self) -> None:
        b = self.exp.shape[0]
        expected = {
            "pitch": (b, 1), "yaw": (b, 1), "roll": (b, 1),
            "t": (b, 3), "scale": (b, 1), "exp": (b, NUM_KP, 3),
        }
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"MotionSequence.{name} must have shape {shape}, got {got}")

    # ------------------------------------------------------------------ basics
    @property
    def n_frames(self) -> int:
        """Number of frames T."""
        return int(self.exp.shape[0])

    def __len__(self) -> int:
        return self.n_frames

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "MotionSequence":
        """Return a copy with every tensor moved/cast (like ``Tensor.to``)."""
        return type(self)(**{f.name: getattr(self, f.name).to(device=device, dtype=dtype) for f in fields(self)})

    def __getitem__(self, index: int | slice) -> "MotionSequence":
        """Frame ``index`` (kept as a sequence of one) or a slice of frames."""
        if isinstance(index, int):
            if index < 0:
                index += self.n_frames
            if not 0 <= index < self.n_frames:
                raise IndexError(index)
            index = slice(index, index + 1)
        return type(self)(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def replace(self, **changes: torch.Tensor) -> "MotionSequence":
        """Copy with some fields replaced (``dataclasses.replace``)."""
        return replace(self, **changes)

    @classmethod
    def cat(cls, frames: Sequence["MotionSequence"]) -> "MotionSequence":
        """Concatenate frames along the frame axis.

        Raises:
            ValueError: if ``frames`` is empty.
        """
        frames = list(frames)
        if not frames:
            raise ValueError("cannot concatenate an empty list of motion frames")
        return cls(**{f.name: torch.cat([getattr(m, f.name) for m in frames], 0) for f in fields(frames[0])})

    def iter_frames(self) -> Iterable["MotionSequence"]:
        """Yield each frame as a sequence of one."""
        for i in range(self.n_frames):
            yield self[i]


@dataclass(frozen=True)
class KeypointInfo(MotionSequence):
    """A :class:`MotionSequence` plus the canonical keypoints of the same image.

    This is what the motion extractor M gives for an image (LivePortrait's
    ``get_kp_info``): the source's identity lives in ``kp``, its pose and
    expression in the inherited fields.

    Attributes:
        kp: (T, 21, 3) float32 canonical keypoints, normalised units.
    """

    kp: torch.Tensor = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kp is None or tuple(self.kp.shape) != (self.n_frames, NUM_KP, 3):
            got = None if self.kp is None else tuple(self.kp.shape)
            raise ValueError(f"KeypointInfo.kp must have shape {(self.n_frames, NUM_KP, 3)}, got {got}")

    @property
    def motion(self) -> MotionSequence:
        """The pose/expression part only (drops the canonical keypoints)."""
        return MotionSequence(self.pitch, self.yaw, self.roll, self.t, self.scale, self.exp)


def __getattr__(name: str):
    """``MotionFrame``: the former name of :class:`MotionSequence` (it holds T frames), deprecated."""
    if name == "MotionFrame":
        import warnings
        warnings.warn("talkinghead.motion.frame.MotionFrame is now MotionSequence", DeprecationWarning, stacklevel=2)
        return MotionSequence
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
