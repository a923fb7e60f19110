"""Streams of driving batches and motion chunks: smoothing with a bounded delay, splitting, frame limits."""

from __future__ import annotations

import itertools
from collections import deque
from typing import Iterable, Iterator

import torch

from ..motion.animate import EyeLipRatios
from ..motion.frame import KeypointInfo, MotionSequence
from ..motion.smoothing import MotionSmoother, SmoothingOptions
from .video import DrivingBatch


def plain_motion(motion: MotionSequence) -> MotionSequence:
    """The plain motion frames of M's keypoint info (or of plain motion, returned as it is)."""
    return motion.motion if isinstance(motion, KeypointInfo) else motion


def _split_ratios(ratios: EyeLipRatios) -> list[EyeLipRatios]:
    return [EyeLipRatios(eye=ratios.eye[i:i + 1], lip=ratios.lip[i:i + 1]) for i in range(ratios.eye.shape[0])]


def smoothed_batches(batches: Iterable[DrivingBatch], options: SmoothingOptions) -> Iterator[DrivingBatch]:
    """Driving batches as plain motion frames, smoothed with a bounded delay.

    With smoothing on, batches come out ``delay`` frames late (the
    smoother's look-ahead) and re-chunked; per-frame eye/lip ratios travel
    with their frames.
    """
    if not (options.pose or options.expression):
        for batch in batches:
            yield DrivingBatch(plain_motion(batch.motion), batch.ratios)
        return
    smoother = MotionSmoother(options)
    pending: deque[EyeLipRatios] = deque()

    def emit(motion: MotionSequence | None) -> Iterator[DrivingBatch]:
        if motion is None:
            return
        ratios = None
        if pending:
            taken = [pending.popleft() for _ in range(motion.n_frames)]
            ratios = EyeLipRatios(eye=torch.cat([r.eye for r in taken]), lip=torch.cat([r.lip for r in taken]))
        yield DrivingBatch(motion, ratios)

    for batch in batches:
        if batch.ratios is not None:
            pending.extend(_split_ratios(batch.ratios))
        yield from emit(smoother.push(plain_motion(batch.motion)))
    yield from emit(smoother.flush())


def single_frames(batches: Iterable[DrivingBatch]) -> Iterator[DrivingBatch]:
    """Driving batches split into batches of one frame (eye/lip ratios split alike)."""
    for batch in batches:
        ratios = [None] * batch.motion.n_frames if batch.ratios is None else _split_ratios(batch.ratios)
        for i in range(batch.motion.n_frames):
            yield DrivingBatch(batch.motion[i], ratios[i])


def frame_offsets(chunks: Iterable[MotionSequence]) -> Iterator[tuple[int, MotionSequence]]:
    """(index of the chunk's first frame in the stream, chunk) for a stream of motion chunks."""
    first = 0
    for chunk in chunks:
        yield first, chunk
        first += chunk.n_frames


def smoothed_chunks(chunks: Iterable[MotionSequence], options: SmoothingOptions,
                    max_frames: int | None = None) -> Iterator[MotionSequence]:
    """A stream of motion chunks smoothed in streaming form (a few frames late), cut to ``max_frames``.

    Stops reading ``chunks`` as soon as ``max_frames`` frames have come out.
    """
    smoother, emitted = MotionSmoother(options), 0
    for motion in itertools.chain(chunks, [None]):
        ready = smoother.push(motion) if motion is not None else smoother.flush()
        if ready is None:
            continue
        if max_frames is not None:
            ready = ready[: max(max_frames - emitted, 0)]
            if ready.n_frames == 0:
                return
        emitted += ready.n_frames
        yield ready
