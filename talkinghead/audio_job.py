"""The audio job's motion: speech → an audio backend's motion → the edits applied to any backend's motion.

:meth:`talkinghead.engine.Engine.audio_motion` (offline) and
:meth:`~talkinghead.engine.Engine.stream_audio` (streaming) are glue over
these functions; the backend (:mod:`talkinghead.drivers.audio.backend`)
generates absolute motion in LivePortrait's motion space, and the edits of
:class:`~talkinghead.jobs.AudioJobOptions` (expression scale, still head,
a reference clip's head pose: :mod:`talkinghead.motion.edits`; a reference
clip's head-motion style: :mod:`talkinghead.motion.pose_style`) come on top.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Iterator

import numpy as np

from .drivers.audio import AudioBackend
from .drivers.audio.backend import iter_audio_chunks
from .drivers.batches import frame_offsets, smoothed_chunks
from .errors import ControlError, MediaError
from .jobs import AudioJobOptions, RenderOptions
from .media.audio import load_audio
from .media.video import probe_video
from .motion.edits import reference_pose, scale_expression, still_head
from .motion.controls import Controls
from .motion.frame import MotionSequence
from .motion.pose_style import PoseStyle, transfer_pose_style
from .motion.timeline import lay_timeline
from .render.source import PreparedSource

Speech = str | os.PathLike | np.ndarray
"""A speech file (any format FFmpeg reads) or a (S,) float32 mono waveform at the backend's sample rate."""

HeadReference = MotionSequence | PoseStyle | None
"""What drives the generated head pose besides the model: a clip's pose track (``pose_from``), a
clip's pose style (``pose_style``), or nothing."""

ExtractMotion = Callable[[str | os.PathLike, str | os.PathLike | None], MotionSequence]
"""(video, its landmark JSON or None) → the video's motion, e.g. :meth:`Engine.extract_motion`."""


def load_samples(audio: Speech, sample_rate: int = 16000) -> np.ndarray:
    """A speech file decoded to (S,) float32 mono at ``sample_rate`` Hz, or a waveform passed through.

    Raises:
        MediaError: the file cannot be read or has no audio.
    """
    return audio.astype(np.float32, copy=False) if isinstance(audio, np.ndarray) else load_audio(audio, sample_rate)


def audio_chunks(audio: Speech | Iterable[np.ndarray], sample_rate: int) -> Iterable[np.ndarray]:
    """Waveform chunks for streaming: a file or waveform is decoded now and cut; an iterable of chunks is kept."""
    if isinstance(audio, (str, os.PathLike, np.ndarray)):
        return iter_audio_chunks(load_samples(audio, sample_rate))
    return audio


def generate_motion(backend: AudioBackend, source: PreparedSource, audio: Speech, options: AudioJobOptions,
                    progress: bool = False) -> MotionSequence:
    """The backend's offline motion for the whole clip, before the edits.

    Raises:
        MediaError: unreadable, empty or silent audio (naming the file).
    """
    samples = load_samples(audio, backend.sample_rate)
    try:
        return backend.generate(samples, source, options, progress=progress)
    except MediaError as error:  # empty or silent: say which file
        if isinstance(audio, np.ndarray):
            raise
        raise MediaError(f"{audio}: {error}") from error


def head_reference(options: AudioJobOptions, extract: ExtractMotion, streamed: bool = False) -> HeadReference:
    """The ``pose_from`` clip's motion, the ``pose_style`` (a saved ``.safetensors`` style, or a clip's
    motion measured here at the clip's frame rate), or None (also with ``still_head``).

    Raises:
        MediaError: an unreadable clip; NoFaceError: no face to crop in it;
        ControlError: a malformed pose-style file, or a pose style for a
            ``streamed`` job (refused before the clip is read).
    """
    if options.still_head or (options.pose_from is None and options.pose_style is None):
        return None
    if streamed and options.pose_from is None:
        raise ControlError(_STREAMED_STYLE)
    if options.pose_from is not None:
        return extract(options.pose_from, options.pose_from_landmarks)
    if str(options.pose_style).lower().endswith(".safetensors"):
        return PoseStyle.load(options.pose_style)
    track = extract(options.pose_style, options.pose_style_landmarks)
    return PoseStyle.from_motion(track, probe_video(options.pose_style).fps)


def edit_motion(source: PreparedSource, motion: MotionSequence, options: AudioJobOptions, reference: HeadReference,
                first_frame: int = 0, fps: float = 25.0) -> MotionSequence:
    """``options``' edits on generated motion frames ``first_frame``… (expression scale, then the head).

    Args:
        source: the prepared photo; its motion is the base of the edits.
        motion: (T) generated absolute motion frames at ``fps`` Hz.
        options: ``expression_scale``, ``still_head``, ``pose_blend``, ``pose_style_*``.
        reference: from :func:`head_reference`: a clip's motion whose head pose
            replaces/blends with the generated one (played back and forth), or
            a pose style the generated head motion takes on (needs the whole
            sequence: ``first_frame`` 0), or None.
        first_frame: index of ``motion``'s first frame in the whole clip
            (keeps the reference track in step across streamed chunks).

    Raises:
        ControlError: a pose style on a streamed chunk (``first_frame`` > 0).
    """
    base = source.info.motion
    motion = scale_expression(motion, base, options.expression_scale)
    if options.still_head:
        return still_head(motion, base)
    if isinstance(reference, PoseStyle):
        if first_frame:
            raise ControlError(_STREAMED_STYLE)
        return transfer_pose_style(motion, reference, fps, tempo=options.pose_style_tempo,
                                   keep_mean=options.pose_style_keep_mean)
    if reference is not None:
        motion = reference_pose(motion, base, reference, options.pose_blend, first_frame)
    return motion


_STREAMED_STYLE = ("a pose style (--pose-style) filters the whole head-motion sequence, so a streamed job cannot use "
                   "it: render the clip offline, or use --pose-from")


def stream_edited_motion(backend: AudioBackend, source: PreparedSource, chunks: Iterable[np.ndarray],
                         options: AudioJobOptions, reference: HeadReference,
                         render: RenderOptions) -> Iterator[tuple[MotionSequence, list[Controls]]]:
    """The backend's streamed motion, edited and smoothed in streaming form, in chunks ready to render.

    ``render.smoothing`` runs in streaming form (:class:`~talkinghead.motion.smoothing.MotionSmoother`,
    a few frames late); at most ``render.max_frames`` frames come out in all, and the backend's
    stream stops being read once they have.  Then ``render.timeline`` is laid on each chunk
    (:func:`timeline_chunks`): yields (motion chunk, its per-frame controls).

    Raises:
        ControlError: ``reference`` is a pose style (it needs the whole sequence).
    """
    if isinstance(reference, PoseStyle):
        raise ControlError(_STREAMED_STYLE)
    edited = (edit_motion(source, motion, options, reference, first, backend.fps)
              for first, motion in frame_offsets(backend.stream(chunks, source, options)))
    return timeline_chunks(source, smoothed_chunks(edited, render.smoothing, render.max_frames), render, backend.fps)


def timeline_chunks(source: PreparedSource, chunks: Iterable[MotionSequence], render: RenderOptions,
                    fps: float) -> Iterator[tuple[MotionSequence, list[Controls]]]:
    """Streamed (smoothed) motion chunks with ``render.timeline`` laid on them: (motion, per-frame controls).

    Each chunk is edited at its own frames' times (frame offsets counted along
    the stream; :func:`~talkinghead.motion.timeline.lay_timeline`), so the
    edits and stacked controls of frame k are those of the offline job's frame
    k; neutralize moves toward the photo's expression.  Without a timeline:
    the chunks and ``render.controls`` on every frame, as before.
    """
    for first, motion in frame_offsets(chunks):
        yield lay_timeline(render.timeline, motion, source.info, fps, render.controls, first)
