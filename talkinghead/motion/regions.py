"""Driver mixing by face region: each part of the face takes its motion from a driver of its own.

Five regions partition LivePortrait's motion (21 expression rows ``exp`` and
the head pose); each is taken from one driver:

=======  ==========================================  ===========================================
region   motion it holds                             source of the set
=======  ==========================================  ===========================================
head     pitch, yaw, roll, t, scale                  LivePortrait's "pose" region (R, t) plus the
                                                     scale, which "all" also takes from the driver
eyes     exp rows 11, 13, 15, 16, 18                 LivePortrait's "eyes" region (transfer.EYE_ROWS)
brows    exp rows 1, 2                               the brow rows of LivePortrait's eyebrow slider
                                                     (:mod:`talkinghead.motion.controls`)
mouth    exp rows 6, 12, 14, 17, 19, 20              LivePortrait's "lip" region (transfer.LIP_ROWS)
rest     exp rows 0, 3, 4, 5, 7, 8, 9, 10            every other row (cheeks, nose, jaw line)
=======  ==========================================  ===========================================

The head includes the scale (the head's distance to the camera): a video-driven
job takes it from the driver, so "everything from the video" stays what the
video job does; the audio driver's scale is the photo's own.

Drivers: ``source`` (keep the photo's own motion), ``video`` (a driving clip),
``audio`` (speech through an audio backend), ``motion`` (a motion file).

Absolute and relative drivers.  Every driver is first turned into an absolute
motion sequence on the source (:func:`absolute_on_source`):

* a *relative* driver (a driving video, or a motion file extracted from one)
  follows LivePortrait's relative rule (src/live_portrait_pipeline.py,
  ``flag_relative_motion``; :func:`talkinghead.motion.transfer.relative_transform`)
  with the driver's first frame as anchor: R = R_i·R_0ᵀ·R_s (turned back into
  pitch/yaw/roll), exp = exp_s + (exp_i − exp_0), scale = scale_s·scale_i/scale_0,
  t = t_s + (t_i − t_0);
* an *absolute* driver (the audio backend's motion, which is already on the
  source; a motion file saved by the audio job) is used as it is.

Then :func:`mix_regions` copies each region's rows/fields from its driver onto
the photo's own motion; a row no region names from a driver keeps the photo's.

Time alignment (:func:`align`).  The output runs at the rate of the *lead*
driver and lasts as long as it: the driver of the mouth, or, when the mouth is
the photo's own, the longest (in seconds) of the other drivers used.  Output
frame k (time k/fps) takes each driver's nearest frame in time,
round(k·fps_d/fps).  A driver shorter than the output goes on back and forth
(ping-pong: 0, 1, …, n−1, n−2, …, no jump at the turn) when it is a video or a
motion file; the audio driver holds its last frame (speech played backwards
would not fit the sound; its last frame is the end of speech).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal, Mapping

import torch

from ..errors import ControlError
from ..options import check_options, option
from .edits import ping_pong_indices
from .frame import NUM_KP, MotionSequence
from .keypoints import rotation_matrix
from .transfer import EYE_ROWS, LIP_ROWS

DRIVERS: tuple[str, ...] = ("source", "video", "audio", "motion")
"""What can supply a region: the photo itself, a driving video, speech, a motion file."""

BROW_ROWS = (1, 2)
"""Keypoints of the brows (LivePortrait's eyebrow slider moves these)."""

HEAD_FIELDS = ("pitch", "yaw", "roll", "t", "scale")
"""The head region's pose fields."""

_NAMED_ROWS = set(LIP_ROWS) | set(EYE_ROWS) | set(BROW_ROWS)
REST_ROWS = tuple(row for row in range(NUM_KP) if row not in _NAMED_ROWS)
"""Expression rows of no other region: 0, 3, 4, 5, 7, 8, 9, 10."""


@dataclass(frozen=True)
class FaceRegion:
    """One region: the expression rows and the pose fields it takes from its driver."""

    rows: tuple[int, ...] = ()
    fields: tuple[str, ...] = ()


FACE_REGIONS: dict[str, FaceRegion] = {
    "head": FaceRegion(fields=HEAD_FIELDS),
    "eyes": FaceRegion(rows=EYE_ROWS),
    "brows": FaceRegion(rows=BROW_ROWS),
    "mouth": FaceRegion(rows=LIP_ROWS),
    "rest": FaceRegion(rows=REST_ROWS),
}
"""Region name → its rows/fields (the table of this module); together they cover all motion once."""

Extend = Literal["pingpong", "hold"]


def _region_option(region: str, holds: str) -> str | None:
    return option(None, what=f"{region} driver", choices=DRIVERS,
                  help=f"which driver moves the {holds}: source (keep the photo's), video (--driving), audio "
                       "(--audio), motion (--motion); default: the job's own driver")


@dataclass(frozen=True)
class RegionSources:
    """Which driver supplies each face region (one of :data:`DRIVERS`, or None = the job's own driver).

    Attributes:
        head: pitch, yaw, roll (degrees), t and scale.
        eyes: exp rows 11, 13, 15, 16, 18 (lids and gaze).
        brows: exp rows 1, 2.
        mouth: exp rows 6, 12, 14, 17, 19, 20 (lips and jaw).
        rest: exp rows 0, 3, 4, 5, 7, 8, 9, 10.

    All None (the default) reproduces each job as it is: the video job takes
    everything from the video, the audio job everything from the speech.

    Raises:
        ControlError: a value that is not one of :data:`DRIVERS`.
    """

    head: str | None = _region_option("head", "head pose (pitch, yaw, roll, position, scale)")
    eyes: str | None = _region_option("eyes", "eyes (lids, gaze)")
    brows: str | None = _region_option("brows", "brows")
    mouth: str | None = _region_option("mouth", "mouth (lips, jaw)")
    rest: str | None = _region_option("rest", "rest of the expression (cheeks, nose, jaw line)")

    def __post_init__(self) -> None:
        check_options(self)

    def resolved(self, default: str) -> "RegionSources":
        """A copy with every None replaced by ``default`` (the job's own driver; one of :data:`DRIVERS`)."""
        if default not in DRIVERS:
            raise ControlError(f"the default driver must be one of {', '.join(DRIVERS)}, got {default!r}")
        return RegionSources(**{f.name: getattr(self, f.name) or default for f in fields(self)})

    def items(self) -> list[tuple[str, str | None]]:
        """(region, driver) pairs in :data:`FACE_REGIONS` order."""
        return [(f.name, getattr(self, f.name)) for f in fields(self)]

    def drivers(self) -> set[str]:
        """The drivers named by some region (None and ``source`` left out)."""
        return {driver for _, driver in self.items() if driver not in (None, "source")}

    @property
    def is_default(self) -> bool:
        """Whether no region is chosen (every job then runs as it always has)."""
        return all(driver is None for _, driver in self.items())


@dataclass(frozen=True)
class DriverMotion:
    """One driver's motion on its own time line.

    Attributes:
        motion: (N ≥ 1) motion frames (degrees, normalised keypoint units).
        fps: its frame rate, Hz (finite, > 0).
        relative: True: driving motion applied relative to its first frame
            (a driving video, LivePortrait's rule); False: absolute motion on
            the source (the audio backend's).
        extend: how it goes on past its end: "pingpong" (back and forth) or
            "hold" (its last frame).

    Raises:
        ControlError: no frames, or a bad ``fps`` or ``extend``.
    """

    motion: MotionSequence
    fps: float
    relative: bool
    extend: Extend = "pingpong"

    def __post_init__(self) -> None:
        if self.motion.n_frames < 1:
            raise ControlError("a driver needs at least one frame of motion")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ControlError(f"a driver's frame rate must be a positive number, got {self.fps!r}")
        if self.extend not in ("pingpong", "hold"):
            raise ControlError(f"extend must be 'pingpong' or 'hold', got {self.extend!r}")

    @property
    def duration_s(self) -> float:
        """Length in seconds, N / fps."""
        return self.motion.n_frames / self.fps


def frame_indices(n_frames: int, fps: float, driver: DriverMotion) -> torch.Tensor:
    """(n_frames,) int64 index of ``driver``'s frame shown at each output frame (nearest in time).

    Output frame k (time k/fps s) takes driver frame floor(k·fps_d/fps + 0.5);
    past the driver's end, ``driver.extend`` applies (ping-pong or hold).
    """
    position = torch.floor(torch.arange(n_frames, dtype=torch.float64) * (driver.fps / fps) + 0.5).long()
    period = driver.motion.n_frames
    if driver.extend == "hold":
        return position.clamp(max=period - 1)
    table = ping_pong_indices(int(position.max()) + 1 if n_frames else 0, period)
    return table[position]


def align(driver: DriverMotion, n_frames: int, fps: float) -> MotionSequence:
    """(n_frames) frames of ``driver`` at ``fps`` Hz (:func:`frame_indices`); same rate and length: itself."""
    if driver.motion.n_frames == n_frames and driver.fps == fps:
        return driver.motion
    index = frame_indices(n_frames, fps, driver).to(driver.motion.exp.device)
    return type(driver.motion)(**{f.name: getattr(driver.motion, f.name)[index] for f in fields(driver.motion)})


def angles_from_rotation(rotation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pitch, yaw, roll), each (B, 1) degrees, of (B, 3, 3) matrices R of :func:`~.keypoints.rotation_matrix`.

    Inverts R = (Rz(roll)·Ry(yaw)·Rx(pitch))ᵀ: with M = Rᵀ, yaw = asin(−M₂₀),
    pitch = atan2(M₂₁, M₂₂), roll = atan2(M₁₀, M₀₀) (the Z-Y-X Euler angles;
    exact for |yaw| < 90°, which M's 66 bins of ±97.5° nearly cover).
    """
    m = rotation.transpose(1, 2).to(torch.float64)
    yaw = torch.asin((-m[:, 2, 0]).clamp(-1.0, 1.0))
    pitch = torch.atan2(m[:, 2, 1], m[:, 2, 2])
    roll = torch.atan2(m[:, 1, 0], m[:, 0, 0])
    return tuple(torch.rad2deg(a)[:, None].to(rotation.dtype) for a in (pitch, yaw, roll))


def absolute_on_source(source: MotionSequence, driving: MotionSequence, anchor: MotionSequence) -> MotionSequence:
    """LivePortrait's relative rule as absolute motion on the source (the rule in this module's docstring).

    Args:
        source: (1) the photo's motion.
        driving: (T) driving frames.
        anchor: (1) the driver's first frame.

    Returns:
        (T) absolute motion: its keypoints equal those of
        :func:`~talkinghead.motion.transfer.relative_transform` (region "all") up to float rounding.
    """
    own, first = rotation_matrix(source.pitch, source.yaw, source.roll), rotation_matrix(anchor.pitch, anchor.yaw,
                                                                                        anchor.roll)
    turned = rotation_matrix(driving.pitch, driving.yaw, driving.roll) @ first.transpose(1, 2) @ own
    pitch, yaw, roll = angles_from_rotation(turned)
    return MotionSequence(pitch=pitch, yaw=yaw, roll=roll, t=source.t + (driving.t - anchor.t),
                          scale=source.scale * (driving.scale / anchor.scale),
                          exp=source.exp + (driving.exp - anchor.exp))


def mix_regions(base: MotionSequence, parts: Mapping[str, MotionSequence], sources: RegionSources) -> MotionSequence:
    """One absolute (T) motion sequence: each region's rows/fields from the driver ``sources`` names.

    Args:
        base: (1 or T) the photo's own motion (what ``source`` regions keep).
        parts: driver name → (T) absolute motion on the source, all of one length.
        sources: a resolved :class:`RegionSources` (no None).

    Returns:
        (T) motion: a region from driver d equals ``parts[d]`` on its rows/fields
        bit for bit; everything else is ``base``'s.

    Raises:
        ControlError: a region left None, a driver missing from ``parts``, or parts of different lengths.
    """
    lengths = {name: part.n_frames for name, part in parts.items()}
    if len(set(lengths.values())) > 1:
        raise ControlError(f"driver motions of different lengths {lengths}: align them first")
    n = next(iter(lengths.values()), base.n_frames)
    values = {f.name: getattr(base, f.name).expand(n, *getattr(base, f.name).shape[1:]).clone() for f in fields(base)}
    for region, driver in sources.items():
        if driver is None:
            raise ControlError(f"no driver chosen for the {region}: resolve the region sources first")
        if driver == "source":
            continue
        if driver not in parts:
            raise ControlError(f"{region} from {driver}, but there is no {driver} driver")
        part, chosen = parts[driver], FACE_REGIONS[region]
        for name in chosen.fields:
            values[name] = getattr(part, name).to(values[name]).clone()
        if chosen.rows:
            rows = list(chosen.rows)
            values["exp"][:, rows] = part.exp[:, rows].to(values["exp"])
    return MotionSequence(**values)


def lead_driver(sources: RegionSources, drivers: Mapping[str, DriverMotion]) -> str:
    """The driver that sets the output's rate and length: the mouth's, else the longest (seconds) used.

    Raises:
        ControlError: every region is the photo's own (nothing drives it).
    """
    if sources.mouth not in (None, "source"):
        return sources.mouth
    used = [name for name in DRIVERS if name in sources.drivers()]
    if not used:
        raise ControlError("every region is 'source': choose a driver for at least one region")
    return max(used, key=lambda name: drivers[name].duration_s)


def mix_drivers(source: MotionSequence, drivers: Mapping[str, DriverMotion], sources: RegionSources,
                max_frames: int | None = None) -> tuple[MotionSequence, float]:
    """Align, make absolute and mix the drivers: (the (T) mixed motion, its fps).

    T and fps are the lead driver's (:func:`lead_driver`; T capped at
    ``max_frames``); drivers no region uses are not read.

    Raises:
        ControlError: a region names a driver not in ``drivers``, or every region is ``source``.
    """
    missing = sorted(sources.drivers() - set(drivers))
    if missing:
        raise ControlError(f"a region is set to {missing[0]}, but no {missing[0]} driver is given")
    lead = drivers[lead_driver(sources, drivers)]
    n = lead.motion.n_frames if max_frames is None else min(max_frames, lead.motion.n_frames)
    parts = {}
    for name in sources.drivers():
        driver = drivers[name]
        aligned = align(driver, n, lead.fps)
        if driver.relative:
            like = (aligned.exp.device, aligned.exp.dtype)
            aligned = absolute_on_source(source.to(*like), aligned, driver.motion[0].to(*like))
        parts[name] = aligned
    return mix_regions(source, parts, sources), lead.fps
