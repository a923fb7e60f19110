"""The mixed job: each face region driven by a driver of its own (a driving video, speech, a motion file).

:meth:`talkinghead.engine.Engine.animate_mixed` is glue over :func:`animate_mixed`: every driver named
by a region is turned into motion (a driving video: :meth:`~talkinghead.engine.Engine.extract_motion`;
speech: :meth:`~talkinghead.engine.Engine.audio_motion`; a motion file: :mod:`talkinghead.motion.io`),
the motions are aligned in time, made absolute on the photo and mixed by region
(:mod:`talkinghead.motion.regions`, which documents the regions and the rules), and the one absolute
sequence is rendered by :meth:`~talkinghead.engine.Engine.animate_absolute_motion`::

    job = engine.animate_mixed(source, MixedDrivers(driving="talk.mp4", audio="speech.wav"),
                               RegionSources(head="video", eyes="video", brows="video", mouth="audio", rest="audio"))

Soundtrack: the speech when one is given, else the driving video's sound when the video drives a
region, else none.  ``render.smoothing`` and ``render.controls`` act on the mixed sequence as a whole
(as on the audio job's motion).  The relative video rule is applied in motion space, so the video job's
expression-friendly rescaling and eye/lip retargeting do not apply to a mixed job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .drivers.audio import audio_backend
from .drivers.video import DrivingCrop
from .errors import ControlError
from .jobs import AudioJobOptions, RenderOptions, VideoJob
from .media.video import AudioSamples, AudioSource, probe_video
from .motion.frame import MotionSequence
from .motion.io import MotionFile, load_motion
from .motion.regions import DriverMotion, RegionSources, mix_drivers
from .render.source import PreparedSource

if TYPE_CHECKING:
    from .engine import Engine

INPUT_FLAGS = {"video": "--driving CLIP", "audio": "--audio SPEECH", "motion": "--motion FILE"}
"""Driver → the input that provides it (the CLI flag; the :class:`MixedDrivers` field is its name)."""


@dataclass(frozen=True)
class MixedDrivers:
    """The inputs of a mixed job; give those the regions name.

    Attributes:
        driving: a driving video (the ``video`` driver); its motion is applied
            relative to its first frame (``video_relative``; False: as it is).
        driving_landmarks: 68-point landmarks of its frames (JSON or a provider).
        crop: how the driving video is cropped (:class:`~talkinghead.drivers.video.DrivingCrop`).
        audio: speech (the ``audio`` driver, a file or a (S,) float32 waveform
            at the backend's rate); also the soundtrack, even when no region uses it.
        audio_options: the audio job's options for its motion (:class:`~talkinghead.jobs.AudioJobOptions`).
        motion: a motion file (path or :class:`~talkinghead.motion.io.MotionFile`; the ``motion`` driver).
        motion_relative: None: relative (like a driving video) unless the file
            carries its source photo (saved by the audio job: absolute motion on
            that photo); or force either.
        default: the driver of the regions left None; None: the only one of
            ``driving``/``audio``/``motion`` given.
        stitching: LivePortrait's stitching; None: the audio backend's rule when
            speech drives the mouth, else on.
    """

    driving: str | os.PathLike | None = None
    driving_landmarks: Any = None
    crop: DrivingCrop = field(default_factory=DrivingCrop)
    video_relative: bool = True
    audio: str | os.PathLike | Any | None = None
    audio_options: AudioJobOptions = field(default_factory=AudioJobOptions)
    motion: str | os.PathLike | MotionFile | None = None
    motion_relative: bool | None = None
    default: str | None = None
    stitching: bool | None = None

    def given(self) -> set[str]:
        """The drivers whose input is given."""
        return {name for name, value in (("video", self.driving), ("audio", self.audio), ("motion", self.motion))
                if value is not None}


def resolve_regions(regions: RegionSources, drivers: MixedDrivers) -> RegionSources:
    """``regions`` with None resolved, checked against the inputs (before any work).

    Raises:
        ControlError: a region names a driver whose input is missing, a
            driving video or motion file no region uses, None regions without
            a ``default`` among several inputs, or every region ``source``.
    """
    given = drivers.given()
    default = drivers.default
    if default is None and len(given) == 1:
        default = next(iter(given))
    elif default is None and any(driver is None for _, driver in regions.items()):
        raise ControlError(f"{len(given) or 'no'} driver inputs are given: choose the driver of every region "
                           "(or a default driver)")
    resolved = regions.resolved(default or "source")
    for region, driver in resolved.items():
        if driver != "source" and driver not in given:
            raise ControlError(f"{region} from {driver} needs the {driver} input: add {INPUT_FLAGS[driver]}")
    if not resolved.drivers():
        raise ControlError("every region is 'source': choose a driver for at least one region")
    for unused in sorted(given - resolved.drivers() - {"audio"}):
        raise ControlError(f"{INPUT_FLAGS[unused].split()[0]} is given but no region uses it: "
                           f"choose it for a region, e.g. --head {unused}")
    return resolved


def _motion_file(motion: str | os.PathLike | MotionFile) -> MotionFile:
    return motion if isinstance(motion, MotionFile) else load_motion(motion)


def driver_motions(engine: "Engine", source: PreparedSource, drivers: MixedDrivers, used: set[str],
                   progress: bool = False) -> dict[str, DriverMotion]:
    """The motion of each driver in ``used``, on its own time line (:class:`~talkinghead.motion.regions.DriverMotion`).

    Raises:
        MediaError, NoFaceError (the driving video or speech), ControlError (a bad motion file), as the
        single-driver jobs do.
    """
    found: dict[str, DriverMotion] = {}
    if "motion" in used:
        saved = _motion_file(drivers.motion)
        relative = saved.source is None if drivers.motion_relative is None else drivers.motion_relative
        found["motion"] = DriverMotion(saved.motion.to(engine.device), saved.fps, relative)
    if "video" in used:
        motion = engine.extract_motion(drivers.driving, landmarks=drivers.driving_landmarks,
                                       crop=drivers.crop.crop_driving, box=drivers.crop.driving_box)
        found["video"] = DriverMotion(motion, probe_video(drivers.driving).fps, drivers.video_relative)
    if "audio" in used:
        motion = engine.audio_motion(source, drivers.audio, drivers.audio_options, progress=progress)
        fps = engine.audio_backend(drivers.audio_options.backend).fps
        found["audio"] = DriverMotion(motion, fps, relative=False, extend="hold")
    return found


def _soundtrack(drivers: MixedDrivers, regions: RegionSources, seconds: float,
                sample_rate: int) -> AudioSource | AudioSamples | None:
    """The speech (a file, or a waveform at ``sample_rate`` Hz), else the driving video's sound (when it
    drives a region and has sound), cut to ``seconds``."""
    if drivers.audio is not None and isinstance(drivers.audio, (str, os.PathLike)):
        return AudioSource(drivers.audio, duration_s=seconds)
    if drivers.audio is not None:
        return AudioSamples(np.ascontiguousarray(drivers.audio, np.float32), sample_rate).cut(0.0, seconds)
    if drivers.audio is None and "video" in regions.drivers() and probe_video(drivers.driving).has_audio:
        return AudioSource(drivers.driving, duration_s=seconds)
    return None


def mixed_motion(engine: "Engine", source: PreparedSource, drivers: MixedDrivers, regions: RegionSources,
                 progress: bool = False) -> tuple[MotionSequence, float]:
    """(the mixed (T) absolute motion, its fps) for ``source`` (:func:`~talkinghead.motion.regions.mix_drivers`).

    Raises:
        ControlError: see :func:`resolve_regions`; else as :func:`driver_motions`.
    """
    resolved = resolve_regions(regions, drivers)
    motions = driver_motions(engine, source, drivers, resolved.drivers(), progress)
    return mix_drivers(source.info.motion.to(engine.device), motions, resolved)


def animate_mixed(engine: "Engine", source: PreparedSource, drivers: MixedDrivers, regions: RegionSources,
                  render: RenderOptions = RenderOptions(), progress: bool = False) -> VideoJob:
    """The mixed job: a lazy :class:`~talkinghead.jobs.VideoJob` at the lead driver's rate, with its motion.

    Length and rate: the lead driver's (:func:`~talkinghead.motion.regions.lead_driver`), at most
    ``render.max_frames`` frames.  Raises: as :func:`mixed_motion`.
    """
    resolved = resolve_regions(regions, drivers)
    motion, fps = mixed_motion(engine, source, drivers, resolved, progress)
    n = motion.n_frames if render.max_frames is None else min(render.max_frames, motion.n_frames)
    stitching = drivers.stitching
    if stitching is None:
        backend = engine.audio_backend(drivers.audio_options.backend) if resolved.mouth == "audio" else None
        stitching = backend.stitching(drivers.audio_options) if backend is not None else True
    rate = audio_backend(drivers.audio_options.backend).sample_rate  # the class's: nothing loaded
    return engine.animate_absolute_motion(source, motion, fps, render, stitching=stitching,
                                          audio=_soundtrack(drivers, resolved, n / fps, rate))
