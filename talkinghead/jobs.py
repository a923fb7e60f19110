"""The jobs' option and result types: what a caller hands :class:`talkinghead.engine.Engine` and gets back.

:class:`AudioJobOptions`, :class:`RenderOptions` and :class:`EngineOptions` carry their fields' help,
range and default (:func:`talkinghead.options.option`), from which the CLI's
flags and the app's widgets are generated; :class:`VideoJob` is a lazily
rendered result.  Re-exported by :mod:`talkinghead.engine` and ``talkinghead``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .drivers.audio import AUDIO_BACKENDS, audio_backend
from .drivers.audio.ditto.condition import EMOTIONS
from .drivers.audio.ditto.driver import DEFAULT_STEPS, AudioDriverOptions
from .devices import PRECISIONS
from .enhance import EnhanceOptions
from .errors import ControlError
from .media.video import AudioSource
from .media.yuv import Yuv420Frame
from .motion.controls import Controls
from .motion.frame import MotionSequence
from .motion.keyframes import KeyframeTrack
from .motion.smoothing import SmoothingOptions
from .options import check_options, option, option_like, spec_of
from .render.frames import MotionRecord, RenderedFrames

DEVICES = ("auto", "cuda", "cpu")
"""Where the networks can run (:func:`talkinghead.engine.resolve_device`)."""


@dataclass
class VideoJob:
    """A video being generated: a lazy stream of frames plus what the writer needs.

    Attributes:
        frames: iterator of (H, W, 3) uint8 RGB output frames (consumed once).
        fps: frame rate, Hz.
        n_frames: expected number of frames (for progress bars).
        audio: audio track to mux, or None.
        motion: the whole absolute motion sequence of the job (audio and
            motion-file jobs; smoothed, not cut to ``max_frames``), e.g. to
            save it as a motion file; None for video-driven jobs.
    """

    frames: Iterator[np.ndarray]
    fps: float
    n_frames: int
    audio: AudioSource | None = None
    motion: MotionSequence | None = None

    def record_motion(self) -> MotionRecord | None:
        """Keep the motion of every frame as it renders (call before writing the job; any job kind).

        Returns a :class:`~talkinghead.render.frames.MotionRecord` that fills while ``frames`` is
        read: its ``motion()`` is the (T) motion frames as moved onto the face (driving motion after
        smoothing, controls and timeline edits; an absolute sequence with its controls applied), e.g.
        for :func:`~talkinghead.motion.curves.motion_curves`.  None when ``frames`` is not the
        engine's own stream (a caller's wrapper).
        """
        return self.frames.record_motion() if isinstance(self.frames, RenderedFrames) else None

    def encoder_frames(self) -> Iterator[np.ndarray | Yuv420Frame]:
        """``frames`` as :func:`~talkinghead.media.video.write_frames` takes them: on the GPU path their
        yuv420p planes, converted there (:meth:`~talkinghead.render.frames.RenderedFrames.encoder_frames`),
        else the RGB frames themselves.  Consumes ``frames`` as they do."""
        return self.frames.encoder_frames() if isinstance(self.frames, RenderedFrames) else self.frames


@dataclass(frozen=True)
class AudioJobOptions:
    """Options of the audio-driven job.

    The motion comes from the audio backend ``backend``
    (:mod:`talkinghead.drivers.audio.backend`); the fields from ``driver`` to
    ``blinks`` are its generation choices (those of Ditto; another backend
    reads those it knows), the rest are edits the engine applies to any
    backend's motion.  With Ditto the generation settings come from its
    shipped configuration (:mod:`talkinghead.drivers.audio.ditto.config`: the
    offline one for files, the online one for :meth:`Engine.stream_audio`),
    with the explicit choices here (``steps``, ``seed``, ``emotion``,
    ``blinks``) on top.

    Attributes:
        backend: registered audio backend name
            (:data:`talkinghead.drivers.audio.AUDIO_BACKENDS`), default "ditto".
        driver: complete generation settings that replace the configuration
            (``steps``/``seed``/``emotion``/``blinks`` and ``config`` are then
            not used); None = from the configuration.
        config: another Ditto cfg pickle for the offline job; None = Ditto's
            ``ditto_cfg/v0.4_hubert_cfg_pytorch.pkl`` (Hub or ``--weights DIR``).
        steps: DDIM steps per window; None = the configuration's.
        seed: random seed (sampler noise, random blink gaps); None = fresh.
        emotion: emotion label(s) or table; None = the configuration's.
        blinks: "model", "template" or "off" (see
            :meth:`~talkinghead.drivers.audio.ditto.config.DittoConfig.driver_options`);
            None = the configuration's.
        expression_scale: gain on the generated expression deltas, 0–3 (1 = as generated).
        still_head: keep the photo's head pose (only the face moves; CLI ``--still-head``).
        pose_from: a short clip of the same person whose head-pose track
            replaces/blends with the generated pose (personalized head motion).
        pose_from_landmarks: 68-point landmarks of that clip (JSON) if it
            needs cropping and no detector should run.
        pose_blend: 0 = generated pose, 1 = the clip's pose.
        pose_style: a clip of the person, or its saved
            :class:`~talkinghead.motion.pose_style.PoseStyle` (``.safetensors``),
            whose head-motion *style* (per-axis mean pose, spread and tempo of
            yaw/pitch/roll and t) the generated, speech-synchronised head
            motion takes on (:func:`~talkinghead.motion.pose_style.transfer_pose_style`);
            unlike ``pose_from`` the clip's own track is not replayed.
        pose_style_landmarks: 68-point landmarks of the ``pose_style`` clip (JSON).
        pose_style_tempo: 0 = match mean and spread only, 1 = also the clip's
            tempo (its spectrum envelope).
        pose_style_keep_mean: keep the photo's own mean head pose (the clip
            gives spread and tempo only).

    ``still_head``, ``pose_from`` and ``pose_style`` exclude each other.
    """

    backend: str = "ditto"
    driver: AudioDriverOptions | None = None
    config: str | os.PathLike | None = None
    steps: int | None = option_like(AudioDriverOptions, "steps", default=None, widget_range=(0, DEFAULT_STEPS),
                                    label="Diffusion steps (0 = Ditto's configuration)",
                                    help=f"{spec_of(AudioDriverOptions, 'steps')[0].help} (default: the "
                                         f"configuration's; Ditto's code default {DEFAULT_STEPS})")
    seed: int | None = option_like(AudioDriverOptions, "seed")
    emotion: str | int | None = option(None, what="emotion", choices=EMOTIONS, check_choices=False,
                                       help=f"{', '.join(EMOTIONS[:-1])} or {EMOTIONS[-1]} "
                                            "(default: the configuration's, neutral if it has none)")
    blinks: str | None = option(None, what="blinks", choices=("model", "template", "off"),
                                help="default: as the configuration says (its blink template if it has one, else "
                                     "the generated eye motion); model: eyes follow the generated motion; template: "
                                     "the configuration's blink template (a synthetic one if it has none) every "
                                     "2.4-4 s, seeded by --seed; off: the photo's eyes throughout")
    expression_scale: float = option(1.0, what="expression scale", range=(0.0, 3.0),
                                     help="gain on the generated expression")
    still_head: bool = option(False, what="still head", help="keep the photo's head pose; only the face moves")
    pose_from: str | os.PathLike | None = None
    pose_from_landmarks: str | os.PathLike | None = None
    pose_blend: float = option(1.0, what="pose blend", range=(0.0, 1.0),
                               label="Pose blend (0 = model, 1 = reference clip)",
                               help="0 = generated head pose, 1 = the --pose-from clip's pose")
    pose_style: str | os.PathLike | None = None
    pose_style_landmarks: str | os.PathLike | None = None
    pose_style_tempo: float = option(1.0, what="pose style tempo", range=(0.0, 1.0),
                                     help="0 = match the --pose-style clip's mean and spread only, 1 = also its tempo "
                                          "(spectrum envelope)")
    pose_style_keep_mean: bool = option(False, what="keep the photo's mean pose",
                                        help="with --pose-style: keep the photo's own mean head pose (the clip gives "
                                             "spread and tempo only)")

    def __post_init__(self) -> None:
        """Check the numeric options at once, before any work.

        Raises:
            ControlError: ``expression_scale`` outside 0..3, ``pose_blend``
                outside 0..1, ``steps`` below 1, ``blinks`` not one of its
                choices (the ranges are the fields' :func:`~talkinghead.options.option`
                specs), an unregistered ``backend``, or more than one of
                ``still_head``, ``pose_from``, ``pose_style``.
        """
        heads = [name for name, on in (("still head", self.still_head), ("pose from", self.pose_from is not None),
                                       ("pose style", self.pose_style is not None)) if on]
        if len(heads) > 1:
            raise ControlError(f"{' and '.join(heads)} exclude each other: choose one way to drive the head")
        if self.backend not in AUDIO_BACKENDS:
            audio_backend(self.backend)  # raises, naming the registered backends
        check_options(self)  # ranges and choices of the option fields


@dataclass(frozen=True)
class RenderOptions:
    """How any job's motion becomes output frames.

    Attributes:
        smoothing: motion smoothing strengths (pose, expression), 0 = off.
        controls: pose/expression controls stacked on every frame (e.g. turn
            the head 10° or add a smile to a driven or generated sequence);
            None = none.  The eye/lip open-ratio controls (``eyes_open``,
            ``lips_open``) add the retargeting MLPs' offsets for the source's
            ratio + the control to x_d before stitching, on every job; on
            video-driven jobs they come on top of whatever the driver produced
            (eye/lip retargeting included) and are scaled by the driving
            multiplier like the rest of the motion.
        paste_back: paste the face into the photo (output = photo size);
            False outputs the 512×512 face crop.
        batch_size: frames rendered together (default: on CUDA as many as fit
            in the free memory, up to 32 (:func:`talkinghead.devices.frames_per_batch`);
            1 on CPU).
        max_frames: render at most this many frames.
        enhance: face restoration of each rendered 512 crop before
            paste-back (GFPGAN v1.4 / CodeFormer, blend weight) and 2×
            super-resolution of each output frame (Real-ESRGAN x2plus);
            default off.  Their weights are fetched on first use.
        timeline: edits along the timeline (a parsed keyframe file,
            :func:`~talkinghead.motion.keyframes.read_keyframes`; version 2
            adds spans and ``neutralize``), laid on the job's own frames at
            their times (frame k at k / fps s) and stacked on ``controls``
            (:mod:`talkinghead.motion.timeline`): on the audio, motion-file,
            streamed-audio, driving-video and source-video jobs, after any
            whole-clip smoothing.  Frames outside its keyframes and spans are
            bit-identical to the job without it; ``neutralize`` moves the
            expression toward the source's own (a photo's; in relative
            driving, the anchor's, which transfers as the source's; a source
            video's own frame).  The pose job's path is its own keyframe file
            (``Engine.animate_keyframes``), on which a timeline also stacks.
            None = no edits.

    Help, range and default of each field: its :func:`~talkinghead.options.option`
    spec (the CLI flags and the app's widgets are generated from it).

    Raises:
        ControlError: ``batch_size`` or ``max_frames`` below 1.
    """

    smoothing: SmoothingOptions = field(default_factory=SmoothingOptions)
    controls: Controls | None = None
    paste_back: bool = option(True, what="paste back", off_flag="--no-paste-back",
                              off_help="write the 512x512 face crop instead of pasting it back into the photo",
                              help="paste the face back into the photo (off: write the 512x512 face crop)")
    batch_size: int | None = option(None, what="batch size", range=(1, None), type=int,
                                    help="frames rendered together (default: on CUDA as many as fit in free memory, "
                                         "up to 32; 1 on CPU)")
    max_frames: int | None = option(None, what="max frames", range=(1, None), type=int, widget_range=(0, None),
                                    label="Max frames (0 = all; rendering is ~10-20 s per frame on a CPU)",
                                    help="render at most N frames")
    enhance: EnhanceOptions = field(default_factory=EnhanceOptions)
    timeline: KeyframeTrack | None = None

    def __post_init__(self) -> None:
        check_options(self)


@dataclass(frozen=True)
class EngineOptions:
    """Where and how the engine runs (the CLI's ``--device``, ``--precision``, ``--compile``; the app's
    ``TALKINGHEAD_DEVICE``, ``TALKINGHEAD_PRECISION``, ``TALKINGHEAD_COMPILE``).

    Attributes:
        device: "auto" (CUDA when available, else CPU), "cuda" or "cpu";
            see :func:`talkinghead.engine.resolve_device`.
        precision: W and G's arithmetic: "auto" (CUDA: fp16 autocast, as
            LivePortrait; CPU: fp32), "fp32", "bf16" (CUDA, or a CPU with
            AVX512-BF16/AMX: ~2× faster there, within the tolerance of
            ``tests/test_precision.py``) or "fp16" (CUDA only); see
            :func:`talkinghead.devices.resolve_precision`.
        compile: run W and G through ``torch.compile`` (off by default: the
            compile takes longer than a short job renders).

    Raises:
        ControlError: ``device`` or ``precision`` not one of its choices.
    """

    device: str = option("auto", what="device", choices=DEVICES,
                         help="where the networks run: auto = cuda if available, else cpu")
    precision: str = option("auto", what="precision", choices=PRECISIONS,
                            help="W and G's arithmetic: auto = fp16 autocast on CUDA (LivePortrait's default), fp32 "
                                 "on CPU; bf16 on CUDA or on a CPU with AVX512-BF16/AMX (about 2x faster there, "
                                 "slightly different pixels); fp16 on CUDA only; fp32 = the reference results")
    compile: bool = option(False, what="compile",
                           help="compile W and G with torch.compile (pays on long GPU jobs; the first batch "
                                "then takes tens of seconds to compile, and on a CPU it needs a C++ compiler)")

    def __post_init__(self) -> None:
        check_options(self)
