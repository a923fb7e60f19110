"""The audio job's motion: speech → an audio backend's motion → the edits applied to any backend's motion.

:meth:`talkinghead.engine.Engine.audio_motion` (offline) and
:meth:`~talkinghead.engine.Engine.stream_audio` (streaming) are glue over
these functions; the backend (:mod:`talkinghead.drivers.audio.backend`)
generates absolute motion in LivePortrait's motion space, and the edits of
:class:`~talkinghead.jobs.AudioJobOptions` (expression scale, still head,
a reference clip's head pose: :mod:`talkinghead.motion.edits`) come on top.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator

import numpy as np

from .drivers.audio import AudioBackend
from .drivers.audio.backend import iter_audio_chunks
from .drivers.batches import frame_offsets, smoothed_chunks
from .errors import MediaError
from .jobs import AudioJobOptions, RenderOptions
from .media.audio import load_audio
from .motion.edits import reference_pose, scale_expression, still_head
from .motion.controls import Controls
from .motion.frame import MotionSequence
from .motion.timeline import lay_timeline
from .render.source import PreparedSource

Speech = str | os.PathLike | np.ndarray
"""A speech file (any format FFmpeg reads) or a (S,) float32 mono waveform at the backend's sample rate."""


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


def edit_motion(source: PreparedSource, motion: MotionSequence, options: AudioJobOptions, reference: MotionSequence | None,
                first_frame: int = 0) -> MotionSequence:
    """``options``' edits on generated motion frames ``first_frame``… (expression scale, then still head or pose).

    Args:
        source: the prepared photo; its motion is the base of the edits.
        motion: (T) generated absolute motion frames.
        options: ``expression_scale``, ``still_head``, ``pose_blend``.
        reference: a reference clip's motion whose head pose replaces/blends
            with the generated one (played back and forth), or None.
        first_frame: index of ``motion``'s first frame in the whole clip
            (keeps the reference track in step across streamed chunks).
    """
    base = source.info.motion
    motion = scale_expression(motion, base, options.expression_scale)
    if options.still_head:
        return still_head(motion, base)
    if reference is not None:
        motion = reference_pose(motion, base, reference, options.pose_blend, first_frame)
    return motion


def stream_edited_motion(backend: AudioBackend, source: PreparedSource, chunks: Iterable[np.ndarray], options: AudioJobOptions,
                         reference: MotionSequence | None,
                         render: RenderOptions) -> Iterator[tuple[MotionSequence, list[Controls]]]:
    """The backend's streamed motion, edited and smoothed in streaming form, in chunks ready to render.

    ``render.smoothing`` runs in streaming form (:class:`~talkinghead.motion.smoothing.MotionSmoother`,
    a few frames late); at most ``render.max_frames`` frames come out in all, and the backend's
    stream stops being read once they have.  Then ``render.timeline`` is laid on each chunk
    (:func:`timeline_chunks`): yields (motion chunk, its per-frame controls).
    """
    edited = (edit_motion(source, motion, options, reference, first)
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
