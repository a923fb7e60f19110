"""Motion files: save and load a motion sequence as ``.safetensors`` (never pickle).

A motion file lets a driving motion (from a video, audio or the sliders) be
exported once and replayed on any photo.  Schema, format version 1:

Metadata (safetensors header, all strings):

================  ==========================================================
``format``        ``"talkinghead.motion"`` (identifies the file)
``format_version`` ``"1"``
``fps``           frame rate of the sequence in Hz, Python ``repr`` of a float
``producer``      free text, e.g. ``"talkinghead 0.1.0 video driver"``
================  ==========================================================

Tensors (float32, N ≥ 1 frames, fields of :class:`~.frame.MotionSequence`):

=====================  =============  ========================================
``motion.pitch``       (N, 1)         degrees
``motion.yaw``         (N, 1)         degrees
``motion.roll``        (N, 1)         degrees
``motion.t``           (N, 3)         normalised keypoint units
``motion.scale``       (N, 1)         unitless
``motion.exp``         (N, 21, 3)     expression deltas, normalised units
``source.<field>``     (1, …)         optional: the source image's
                                      :class:`~.frame.KeypointInfo` (the six
                                      fields above plus ``source.kp``
                                      (1, 21, 3) canonical keypoints)
=====================  =============  ========================================

No other tensor may be present.  A file that breaks any rule is rejected with
a :class:`~talkinghead.errors.ControlError`; a file written by a newer
format version asks the user to upgrade.  Float32 tensors round-trip bit for
bit.
"""

from __future__ import annotations

import math
import os
import secrets
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import ControlError
from .frame import KeypointInfo, MotionSequence

FORMAT = "talkinghead.motion"
"""Value of the ``format`` metadata key."""

FORMAT_VERSION = 1
"""Newest format version this code reads and the one it writes."""

_MOTION_PREFIX = "motion."
_SOURCE_PREFIX = "source."


@dataclass(frozen=True)
class MotionFile:
    """Contents of a motion file.

    Attributes:
        motion: N ≥ 1 frames of motion (float32 when loaded, on the CPU).
        fps: frame rate in Hz (finite, > 0).
        producer: free text naming what made the motion.
        source: optional keypoint info of the source image (batch of 1).

    Raises:
        ControlError: for an empty motion, a bad fps or a source that is not
            a single frame.
    """

    motion: MotionSequence
    fps: float
    producer: str = "talkinghead"
    source: KeypointInfo | None = None

    def __post_init__(self) -> None:
        if self.motion.n_frames == 0:
            raise ControlError("a motion file needs at least one frame of motion.")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ControlError(f"motion frame rate must be a positive number of frames per second, got {self.fps!r}.")
        if self.source is not None and self.source.n_frames != 1:
            raise ControlError(f"a motion file holds one source image, got {self.source.n_frames}.")


def save_motion(path: str | Path, data: MotionFile) -> None:
    """Write ``data`` to ``path`` in the schema of this module (float32, CPU), atomically.

    Raises:
        ControlError: if the file cannot be written (missing folder, no
            permission, disk full).
    """
    tensors = _flatten(_MOTION_PREFIX, MotionSequence, data.motion)
    if data.source is not None:
        tensors.update(_flatten(_SOURCE_PREFIX, KeypointInfo, data.source))
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "fps": repr(float(data.fps)),
                "producer": data.producer}
    target = Path(path)
    # Written next to the target and renamed over it when complete: a failed write leaves nothing behind.
    tmp = target.with_name(f".{target.stem}.{secrets.token_hex(6)}.partial{target.suffix}")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, target)
    except (OSError, SafetensorError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ControlError(f"cannot write motion file {path} ({reason}); choose another location.") from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def load_motion(path: str | Path) -> MotionFile:
    """Read and validate a motion file written by :func:`save_motion`.

    Returns:
        The :class:`MotionFile`, tensors float32 on the CPU (move them with
        ``MotionSequence.to``).

    Raises:
        ControlError: if the file is missing or unreadable, is not a
            safetensors file, is not a talkinghead motion file, has a newer
            format version, or has missing, extra, mis-typed, mis-shaped or
            non-finite tensors.
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            fps = _check_metadata(path, metadata)  # before reading tensors: a foreign file may be a big checkpoint
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except FileNotFoundError as exc:
        raise ControlError(f"motion file {path} does not exist; check the path.") from exc
    except (OSError, SafetensorError) as exc:
        raise _bad_file(path, f"not a readable safetensors file ({exc})") from exc
    motion = _unflatten(path, MotionSequence, _MOTION_PREFIX, tensors)
    has_source = any(key.startswith(_SOURCE_PREFIX) for key in tensors)
    source = _unflatten(path, KeypointInfo, _SOURCE_PREFIX, tensors) if has_source else None
    if tensors:
        raise _bad_file(path, f"unexpected tensor {sorted(tensors)[0]!r} for format version {FORMAT_VERSION}")
    try:
        return MotionFile(motion=motion, fps=fps, producer=metadata.get("producer", ""), source=source)
    except ControlError as exc:
        raise ControlError(f"{path}: {exc}") from exc


def _bad_file(path: str | Path, problem: str) -> ControlError:
    """The error for a damaged motion file (one line, says what to do)."""
    return ControlError(f"{path}: {problem}; export the motion again.")


def _flatten(prefix: str, cls: type[MotionSequence], frames: MotionSequence) -> dict[str, torch.Tensor]:
    """The ``cls`` fields of ``frames`` as fresh float32 contiguous CPU copies named ``prefix + field``.

    Copies, because safetensors refuses tensors that share memory (e.g. one
    zero tensor used for pitch, yaw and roll).
    """
    return {prefix + f.name: getattr(frames, f.name).detach().to("cpu", torch.float32, copy=True,
                                                                 memory_format=torch.contiguous_format)
            for f in fields(cls)}


def _check_metadata(path: str | Path, metadata: dict[str, str]) -> float:
    """Check format and version; return the fps.  Raises ControlError."""
    if metadata.get("format") != FORMAT:
        raise ControlError(f"{path} is a safetensors file but not a talkinghead motion file "
                           f"(format {metadata.get('format')!r}); choose a file exported by talkinghead.")
    version = metadata.get("format_version", "")
    if not version.isdigit() or int(version) < 1:
        raise _bad_file(path, f"invalid motion file format version {version!r}")
    if int(version) > FORMAT_VERSION:
        raise ControlError(f"{path}: motion file format version {version} is newer than this talkinghead reads "
                           f"({FORMAT_VERSION}); upgrade talkinghead.")
    try:
        return float(metadata.get("fps", ""))
    except ValueError as exc:
        raise _bad_file(path, f"invalid motion frame rate {metadata.get('fps')!r}") from exc


def _unflatten(path: str | Path, cls: type[MotionSequence], prefix: str,
               tensors: dict[str, torch.Tensor]) -> MotionSequence:
    """Build ``cls`` from the ``prefix`` tensors, removing them from ``tensors``.  Raises ControlError."""
    values = {}
    for f in fields(cls):
        key = prefix + f.name
        if key not in tensors:
            raise _bad_file(path, f"motion file lacks tensor {key!r}")
        value = tensors.pop(key)
        if value.dtype != torch.float32:
            raise _bad_file(path, f"tensor {key!r} is {value.dtype}, expected torch.float32")
        if not torch.isfinite(value).all():
            raise _bad_file(path, f"tensor {key!r} holds NaN or infinite values")
        values[f.name] = value
    try:
        return cls(**values)
    except ValueError as exc:
        raise _bad_file(path, f"bad {prefix.rstrip('.')} tensors ({exc})") from exc
