"""Dubbing: new speech on an existing video of a face (:meth:`talkinghead.engine.Engine.dub`).

    source video ─ frames at 25 fps ─ landmarks, crop, M per frame ───── own motion (S frames) ─┐
    speech ─ audio backend (one source frame as the photo) ─ mouth deltas ───────────────────────┤
    speech ─ RMS per 40 ms ─ voice-activity envelope ────────────────────── mixed motion (N) ────┘
    ─ per output frame: its source frame's crop + F, x_d, W + G, paste-back into that frame

The rules (LivePortrait's source-video rules for everything but the mouth):

* **Length**: the speech's, N = ⌈duration × fps⌉ frames at the backend's rate
  (Ditto: 25 fps).  The source video is read at that rate
  (:class:`~talkinghead.media.video.VideoReader`, frames repeated or dropped
  by timestamp) and has S frames there; output frame j shows source frame
  ``index[j]``: a longer source is cut (index = j), a shorter one is played
  back and forth (0, 1, …, S−1, S−2, …, 1, 0, 1, …:
  :func:`~talkinghead.motion.edits.ping_pong_indices`), so consecutive output
  frames are always consecutive (or the same) source frames: no jump.
* **Head, eyes, everything but the mouth**: source frame i's own motion as M
  reads it from that frame (pitch/yaw/roll, t, scale and every expression row
  outside :data:`~talkinghead.motion.transfer.LIP_ROWS`), exactly.  LivePortrait's
  source-video rules keep each frame's own scale and t and compose the
  *driving* rotation/expression onto the frame's own; with no driving clip
  the composition is the frame's own, and the whole-clip Kalman smoothing
  that LivePortrait runs on the composed sequences (to take the driver's
  jitter out) is not applied to the source's own motion (it would only move
  the face away from the frame it is pasted back into).
* **Mouth** (expression rows 6, 12, 14, 17, 19, 20): from the audio driver.
  The driver generates its motion once, on one source frame used as the
  photo (the *reference frame* r: the frame whose 68-point lip-open ratio is
  smallest, i.e. the most closed mouth, so the generated mouth starts from a
  rest position; cropped by the backend's own rules, e.g. Ditto's).  Its
  mouth delta is taken relative to that photo's own mouth (Ditto anchors its
  motion so: new = photo + (generated − first generated),
  drivers/audio/ditto/postprocess.py), Δ_t = g·(audio_t − audio photo), with
  the gain g = ``DubOptions.mouth_gain``.  The target mouth is
  ``DubOptions.mouth_base``'s mouth plus Δ_t:

  - "reference" (default): source frame r's own mouth + Δ_t, so while the
    new speech is voiced the original speech's mouth motion is *replaced*
    (adding the delta to each frame's own mouth would superimpose the old
    speech on the new);
  - "frame": source frame i's own mouth + Δ_t (LivePortrait's relative lip
    rule, per frame; the original mouth motion stays underneath).

  Then lips_j = own_j + v_t·(target_t − own_j), v the voice-activity
  envelope: where the speech is silent v = 0 and the mouth is the source
  frame's own, exactly; it returns there smoothly.  The lip-open retargeting
  MLP is not used (the audio driver's lip rows already carry the mouth; the
  ``lips_open`` control still adds it on top, as on every job).
* **Voice activity** (:func:`voice_activity`): the RMS of the speech over
  each output frame's 1/fps s; a frame is voiced when its RMS is above
  :data:`VOICE_FLOOR` (−60 dBFS) and within :data:`VOICE_RANGE_DB` (30 dB) of the
  clip's loud level (95th percentile of the frame RMS); the 0/1 sequence is
  smoothed by a normalised 5-tap Hann window (:data:`VOICE_TAPS`, 0.2 s at
  25 fps), so the mouth leaves and returns over ~0.1 s each side of a voiced
  stretch, and a frame 3 or more frames from any voiced frame has v = 0.
* ``RenderOptions.smoothing`` smooths the audio driver's motion (before the
  deltas), never the source's own; ``RenderOptions.controls`` are stacked on
  every mixed frame.  Stitching runs as the backend says (Ditto: its
  configuration).  Paste-back goes into each output frame's own source frame.

Memory: the motion of every source frame (M's heads and landmarks, a few KB
a frame) is held; decoded frames are not: the video is read frame by frame,
and a backward (ping-pong) pass re-reads it in blocks of
:data:`BACKWARD_BLOCK` frames.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch

from .audio_job import Speech, load_samples
from .drivers.video import ratios_from_landmarks
from .errors import ControlError, MediaError
from .face.landmarks import LandmarkProvider
from .jobs import AudioJobOptions, RenderOptions, VideoJob
from .media.video import AudioSamples, AudioSource, VideoReader, frames_at_rate, probe_video
from .motion.edits import ping_pong_indices
from .motion.frame import MotionSequence
from .motion.keypoints import keypoint_info_from_raw
from .motion.smoothing import smooth_motion
from .motion.timeline import lay_timeline
from .motion.transfer import LIP_ROWS
from .options import check_options, option
from .render.frames import Driven, absolute_keypoints, render_frames
from .render.source import PreparedSource, prepare_image, source_video_motion

if TYPE_CHECKING:
    from .engine import Engine

MOUTH_BASES = ("reference", "frame")
"""What the audio driver's mouth delta is added to (see the module docstring)."""

VOICE_FLOOR = 1e-3
"""Frame RMS (full scale 1) at or below which a frame is silent whatever the clip's level (−60 dBFS)."""

VOICE_RANGE_DB = 30.0
"""A frame is voiced when its RMS is within this many dB of the clip's loud level (95th percentile)."""

VOICE_TAPS = np.hanning(7)[1:-1] / np.hanning(7)[1:-1].sum()
"""The envelope's smoothing window: 5-tap Hann (0.25, 0.75, 1, 0.75, 0.25)/3, 0.2 s at 25 fps."""

BACKWARD_BLOCK = 16
"""Frames decoded together (then yielded in reverse) on a backward pass over the source video."""


@dataclass(frozen=True)
class DubOptions:
    """The dubbing job's own options (the speech's are :class:`~talkinghead.jobs.AudioJobOptions`).

    Attributes:
        mouth_gain: gain g on the audio driver's mouth delta, 0–3 (0: no speech motion; with
            "frame" the video's own mouth throughout).
        mouth_base: "reference" (the reference frame's mouth + delta while voiced: the original
            speech's mouth motion is replaced) or "frame" (each frame's own mouth + delta).

    Raises:
        ControlError: a value out of its range or choices.
    """

    mouth_gain: float = option(1.0, what="mouth gain", range=(0.0, 3.0),
                               help="gain on the speech's mouth motion (0 = none)")
    mouth_base: str = option("reference", what="mouth base", choices=MOUTH_BASES,
                             help="reference: while the new speech is voiced, the mouth is one rest frame's plus the "
                                  "speech's motion (the original speech's mouth motion is replaced); frame: each "
                                  "frame's own mouth plus the speech's motion")

    def __post_init__(self) -> None:
        check_options(self)


@dataclass(frozen=True)
class DubMotion:
    """The motion of a dubbing job, before rendering.

    Attributes:
        motion: (N) motion of the output frames at ``fps`` Hz: source frame
            ``index[j]``'s own motion with the mixed mouth rows (degrees);
            N = the speech's frames, cut to ``RenderOptions.max_frames``.
        index: (N) int64 source frame (at ``fps``) of each output frame.
        own: (S) the source frames' own motion (M on LivePortrait's crop of each
            frame), for the frames read: those the N output frames show.
        audio: (N) the audio driver's motion, generated on the reference frame (smoothed).
        voice: (N) float32 voice-activity envelope in [0, 1] (:func:`voice_activity`).
        reference: index of the reference frame the audio motion was generated on.
        fps: frame rate, Hz (the backend's).
        points: S (68, 2) float32 landmarks of the source frames (gaps filled).
        raws: S dicts of M's raw heads of the source frames (reused when rendering).
        stitching: whether LivePortrait's stitching runs (the backend's choice).
    """

    motion: MotionSequence
    index: torch.Tensor
    own: MotionSequence
    audio: MotionSequence
    voice: torch.Tensor
    reference: int
    fps: float
    points: list[np.ndarray]
    raws: list[dict[str, torch.Tensor]]
    stitching: bool


def voice_activity(samples: np.ndarray, sample_rate: int, n_frames: int, fps: float) -> torch.Tensor:
    """(n_frames,) float32 voice-activity envelope in [0, 1] of a speech waveform (module docstring, "Voice activity").

    Args:
        samples: (S,) float32 mono waveform, full scale ±1, at ``sample_rate`` Hz.
        n_frames: frames of the envelope; frame t covers samples [t·hop, (t+1)·hop),
            hop = sample_rate / fps (zero past the end).
    """
    edges = np.round(np.arange(n_frames + 1) * sample_rate / fps).astype(np.int64)
    power = np.concatenate([[0.0], np.cumsum(samples.astype(np.float64) ** 2)])
    ends = np.minimum(edges, samples.size)
    rms = np.sqrt((power[ends[1:]] - power[ends[:-1]]) / np.maximum(edges[1:] - edges[:-1], 1))
    loud = np.percentile(rms, 95) if rms.size else 0.0
    voiced = (rms > VOICE_FLOOR) & (rms >= loud * 10 ** (-VOICE_RANGE_DB / 20))
    half = len(VOICE_TAPS) // 2  # the clip's ends repeated: speech at the very start is voiced from frame 0
    envelope = np.convolve(np.pad(voiced.astype(np.float64), half, mode="edge"), VOICE_TAPS, mode="valid")
    return torch.from_numpy(np.clip(envelope, 0.0, 1.0).astype(np.float32))


def mix_mouth(own: MotionSequence, index: torch.Tensor, audio: MotionSequence, audio_photo: torch.Tensor,
              voice: torch.Tensor, reference: int, gain: float = 1.0, base: str = "reference") -> MotionSequence:
    """(N) output motion: source frame ``index[j]``'s own motion, its lip rows mixed with the audio driver's.

    lips_j = own_j + v_j·(target_j − own_j), target_j = base_j + gain·(audio_j − audio_photo) on
    :data:`~talkinghead.motion.transfer.LIP_ROWS`, base_j = own[reference] ("reference") or own_j
    ("frame"); every other field and row is own_j's, bit for bit (and so are the lips where v_j = 0).

    Args:
        own: (S) the source frames' own motion.
        index: (N) int64 source frame of each output frame.
        audio: (N) the audio driver's motion.
        audio_photo: (1, 21, 3) expression of the photo the audio motion was generated on.
        voice: (N) envelope in [0, 1].
    """
    frames = own.replace(**{name: getattr(own, name)[index] for name in ("pitch", "yaw", "roll", "t", "scale", "exp")})
    rows = list(LIP_ROWS)
    lips = frames.exp[:, rows]
    base = own.exp[reference:reference + 1, rows] if base == "reference" else lips
    target = base + gain * (audio.exp[:, rows].to(lips) - audio_photo[:, rows].to(lips))
    exp = frames.exp.clone()
    exp[:, rows] = lips + voice.to(lips)[:, None, None] * (target - lips)
    return frames.replace(exp=exp)


def _check(video: str | os.PathLike, options: AudioJobOptions) -> None:
    """Refuse what a dubbing job cannot do, before any work (MediaError, ControlError)."""
    if options.still_head or options.pose_from is not None or options.pose_style is not None:
        raise ControlError("dubbing keeps the source video's own head motion: --still-head, --pose-from and "
                           "--pose-style are for a photo (the audio job)")
    if probe_video(video).n_frames <= 1:
        raise MediaError(f"{video} is a still image, not a video: dubbing needs a video of a face "
                         "(for a photo, use the audio job)")


def _frame(video: str | os.PathLike, fps: float, index: int) -> np.ndarray:
    """Frame ``index`` of ``video`` read at ``fps`` Hz, (H, W, 3) uint8 RGB."""
    with VideoReader(video, fps=fps, max_frames=index + 1) as reader:
        for i, frame in enumerate(reader):
            if i == index:
                return frame
    raise MediaError(f"{video} has no frame {index} at {fps:g} fps")


def dub_motion(engine: Engine, video: str | os.PathLike, audio: Speech, options: AudioJobOptions,
               render: RenderOptions, dubbing: DubOptions, provider: LandmarkProvider,
               progress: bool = False) -> DubMotion:
    """The whole dubbing motion (the module docstring's rules); no frame is rendered.

    Raises:
        MediaError: the source is missing, not a video or a still image; the speech is unreadable, has
            no audio, is empty or silent; a landmark file does not fit the video.
        NoFaceError: no source frame shows a face.
        ControlError: ``options`` that move the head (still head, pose from/style) or out of range.
    """
    _check(video, options)
    backend = engine.audio_backend(options.backend)
    samples = load_samples(audio, backend.sample_rate)
    n_out = math.ceil(samples.size * backend.fps / backend.sample_rate)
    n_src = min(frames_at_rate(probe_video(video), backend.fps), n_out)
    index = ping_pong_indices(n_out, n_src)[: render.max_frames or n_out]
    points, raws = source_video_motion(video, backend.fps, int(index.max()) + 1, provider, engine.networks.motion,
                                       engine.device)
    if len(raws) <= index.max():  # fewer frames decoded than the container said
        index = ping_pong_indices(n_out, len(raws))[: index.numel()]
    own = MotionSequence.cat([keypoint_info_from_raw(raw).motion for raw in raws])
    reference = int(ratios_from_landmarks(np.stack(points)).lip[:, 0].argmin())
    photo = prepare_image(_frame(video, backend.fps, reference), points[reference], engine.networks.motion,
                          engine.renderer, engine.audio_source_settings(options))
    generated = smooth_motion(engine.audio_motion(photo, samples, options, progress), render.smoothing)
    generated, index = generated[: index.numel()], index[: generated.n_frames].to(own.exp.device)
    voice = voice_activity(samples, backend.sample_rate, n_out, backend.fps)[: index.numel()]
    motion = mix_mouth(own, index, generated, photo.info.exp, voice, reference, dubbing.mouth_gain,
                       dubbing.mouth_base)
    return DubMotion(motion, index, own, generated, voice, reference, backend.fps, points, raws,
                     backend.stitching(options))


def frames_in_order(video: str | os.PathLike, fps: float, order: Sequence[int],
                    block: int = BACKWARD_BLOCK) -> Iterator[np.ndarray]:
    """Frames ``order[0]``, ``order[1]``, … of ``video`` read at ``fps`` Hz, (H, W, 3) uint8 RGB.

    Forward steps stream from one open reader (a repeated index is served
    again without decoding); a backward step decodes the video again from the
    start and keeps the ``block`` frames ending at it (the next backward
    steps are served from them), so at most ``block`` decoded frames are held
    whatever the order.

    Raises:
        MediaError: an index past the video's end.
    """
    kept: dict[int, np.ndarray] = {}
    reader: VideoReader | None = None
    frames: Iterator[np.ndarray] = iter(())
    position = 0  # index of the next frame ``frames`` yields
    try:
        for wanted in order:
            if wanted not in kept:
                backward = wanted < position
                if reader is None or backward:  # (re)start at the beginning
                    if reader is not None:
                        reader.close()
                    reader = VideoReader(video, fps=fps)
                    frames, position = iter(reader), 0
                low = wanted - block + 1 if backward else wanted
                kept = {}
                while position <= wanted:
                    frame = next(frames, None)
                    if frame is None:
                        raise MediaError(f"{video} has no frame {wanted} at {fps:g} fps")
                    if position >= low:
                        kept[position] = frame
                    position += 1
            yield kept[wanted]
    finally:
        if reader is not None:
            reader.close()


def dub_keypoints(engine: Engine, video: str | os.PathLike, dubbed: DubMotion,
                  render: RenderOptions) -> Iterator[Driven]:
    """x_d of every output frame of ``dubbed``, one :class:`PreparedSource` (crop + F) per source frame shown.

    Output frame j warps source frame ``dubbed.index[j]`` (its own x_s and
    features) to the keypoints of ``dubbed.motion[j]`` (controls and
    ``render.timeline`` stacked, the timeline's neutralize moving toward
    source frame ``index[j]``'s own expression; stitching as the backend
    says); consecutive frames showing the same source frame share its
    prepared source.
    """
    order = dubbed.index.tolist()
    motion, controls = lay_timeline(render.timeline, dubbed.motion, dubbed.own[order], dubbed.fps, render.controls)
    stitching = engine.networks.stitching
    source: PreparedSource | None = None
    shown = -1
    for j, (i, frame) in enumerate(zip(order, frames_in_order(video, dubbed.fps, order))):
        if i != shown:
            source = prepare_image(frame, dubbed.points[i], engine.networks.motion, engine.renderer,
                                   raw=dubbed.raws[i])
            shown = i
        yield from absolute_keypoints(source, motion[j], controls[j:j + 1], stitching, 1, dubbed.stitching)


def dub_video(engine: Engine, video: str | os.PathLike, audio: Speech, options: AudioJobOptions,
              render: RenderOptions, dubbing: DubOptions, provider: LandmarkProvider,
              progress: bool = False) -> VideoJob:
    """New speech on a video of a face: a lazy job at the backend's rate (Ditto: 25 fps) carrying the speech.

    The motion is computed first (:func:`dub_motion`; ``job.motion`` is the
    mixed sequence), then its N frames (the speech's, at most
    ``render.max_frames``) are rendered lazily and pasted back into their
    source frames (``render.paste_back``; 512×512 crops without); the audio
    track is the speech, cut to N frames.  Errors: as :func:`dub_motion`.
    """
    dubbed = dub_motion(engine, video, audio, options, render, dubbing, provider, progress)
    n = dubbed.motion.n_frames
    frames = render_frames(engine.renderer, dub_keypoints(engine, video, dubbed, render), engine.finisher(render))
    if isinstance(audio, np.ndarray):
        rate = engine.audio_backend(options.backend).sample_rate
        track = AudioSamples(np.ascontiguousarray(audio, np.float32), rate).cut(0.0, n / dubbed.fps)
    else:
        track = AudioSource(audio, duration_s=n / dubbed.fps)
    return VideoJob(frames=frames, fps=dubbed.fps, n_frames=n, audio=track, motion=dubbed.motion)
