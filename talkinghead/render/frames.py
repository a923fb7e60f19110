"""The one loop of every job: motion → driven keypoints → rendered faces → finished frames.

Each job only says how its motion becomes driven keypoints x_d (a stream of
:class:`Driven` batches):

* :func:`absolute_keypoints`: an absolute motion sequence (audio, pose paths,
  motion files, a still) with per-frame controls;
* :func:`driven_keypoints`: driving batches transferred relative to their
  first frame (or absolutely) by an :class:`~talkinghead.motion.animate.Animator`;
* :func:`source_video_keypoints`: LivePortrait's video-to-video rules, one
  source per frame (:func:`source_video_driven`: from the two clips);

then :func:`render_frames` renders each batch and hands the faces to the
finishing step (:class:`talkinghead.enhance.finish.Finisher`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import torch

from ..drivers.batches import plain_motion, single_frames
from ..drivers.video import DrivingBatch
from ..face.landmarks import LandmarkProvider
from ..models.stitching import StitchingRetargeting
from ..motion.animate import AnimationOptions, Animator, SourceVideoAnimator, keypoints_from_motion
from ..motion.controls import Controls, apply_controls, retargeting_offsets
from ..motion.frame import MotionSequence
from ..motion.keyframes import KeyframeTrack
from ..motion.keypoints import implicit_keypoints, keypoint_info_from_raw
from ..motion.timeline import TimelineEdits, apply_timeline, neutralize_expression, sample_timeline
from ..threads import prefetch
from ..motion.transfer import SourceVideoTargets, smooth_targets, source_video_targets
from .renderer import Renderer
from .source import PreparedSource, source_video_motion, video_sources

Finish = Callable[[PreparedSource, np.ndarray], Iterable[np.ndarray]]
"""(source, (B, 512, 512, 3) uint8 rendered faces) → B output frames."""


class Driven(NamedTuple):
    """One batch ready to render: the source, its (1, 21, 3) keypoints x_s, (B, 21, 3) driven keypoints x_d.

    ``motion``: the (B) motion frames x_d was made of, as moved onto the face (the driving motion
    after smoothing, controls and timeline edits; an absolute sequence with its controls applied),
    or None; what :meth:`RenderedFrames.record_motion` records.
    """

    source: PreparedSource
    x_s: torch.Tensor
    x_d: torch.Tensor
    motion: MotionSequence | None = None


PREFETCH_BATCHES = 2
"""Driven batches made ahead of the renderer on CUDA (:class:`RenderedFrames`)."""


class RenderedFrames(Iterator[np.ndarray]):
    """W + G on each driven batch, then the finishing step: (H, W, 3) uint8 RGB frames, one at a time.

    An iterator (consumed once).  On CUDA the driven batches are made in a background thread
    (:func:`~talkinghead.threads.prefetch`, :data:`PREFETCH_BATCHES` ahead), so the driving clip's
    decoding, landmarks and M overlap W + G, and a finishing step with a ``finish_tensor`` method
    (:class:`~talkinghead.enhance.finish.Finisher`) pastes back on the GPU, one batch queued ahead (the
    GPU renders batch k + 1 while the host takes batch k's frames); on a CPU everything runs in the
    caller's thread, one batch at a time (the cores are already busy).  :meth:`record_motion`, called before or while the frames are read,
    makes it keep the motion of each batch it renders (:attr:`Driven.motion`, on the CPU: about
    0.3 kB per frame), e.g. to plot the curves of what a video-driven job rendered.
    """

    def __init__(self, renderer: Renderer, driven: Iterable[Driven], finish: Finish) -> None:
        if renderer.device.type == "cuda":  # decode, landmarks and M run ahead while the GPU renders
            driven = prefetch(driven, depth=PREFETCH_BATCHES, name="talkinghead-driving")
        self._frames = self._render(renderer, driven, finish)
        self._record: MotionRecord | None = None
        self._yuv420 = False

    def _render(self, renderer: Renderer, driven: Iterable[Driven], finish: Finish) -> Iterator[np.ndarray]:
        on_device = getattr(finish, "finish_tensor", None) if renderer.device.type == "cuda" else None
        waiting: Callable[[], list[np.ndarray]] | None = None
        for source, x_s, x_d, motion in driven:
            if self._record is not None and motion is not None:
                self._record.add(motion)
            if on_device is None:
                yield from finish(source, renderer.render(source.feature_3d, x_s, x_d))
                continue
            # paste-back on the GPU, only finished frames cross to the host; double-buffered: this batch is
            # queued on the GPU before the host waits for the previous one's frames
            queued = on_device(source, renderer.render_uint8(source.feature_3d, x_s, x_d), yuv420=self._yuv420)
            if waiting is not None:
                yield from waiting()
            waiting = queued
        if waiting is not None:
            yield from waiting()

    def __next__(self) -> np.ndarray:
        return next(self._frames)

    def encoder_frames(self) -> "RenderedFrames":
        """These frames as the video writer takes them (call before reading them; returns ``self``).

        On CUDA with a finishing step on the GPU (no restorer), frames come as their yuv420p planes
        (:class:`~talkinghead.media.yuv.Yuv420Frame`, converted on the GPU: the encoder's thread skips
        swscale and half the bytes cross to the host); elsewhere they stay (H, W, 3) uint8 RGB arrays.
        """
        self._yuv420 = True
        return self

    def record_motion(self) -> "MotionRecord":
        """The (growing) record of the motion rendered from now on (the same record on every call)."""
        if self._record is None:
            self._record = MotionRecord()
        return self._record


class MotionRecord:
    """The motion frames a :class:`RenderedFrames` has rendered so far, in order (CPU tensors)."""

    def __init__(self) -> None:
        self._parts: list[MotionSequence] = []

    def add(self, motion: MotionSequence) -> None:
        """Append (B) motion frames (moved to the CPU; a source's canonical keypoints dropped)."""
        self._parts.append(plain_motion(motion).to("cpu"))

    @property
    def n_frames(self) -> int:
        """Frames recorded so far."""
        return sum(part.n_frames for part in self._parts)

    def motion(self) -> MotionSequence | None:
        """The (T) frames recorded so far as one sequence, or None when none was rendered yet."""
        return MotionSequence.cat(self._parts) if self._parts else None


def render_frames(renderer: Renderer, driven: Iterable[Driven], finish: Finish) -> RenderedFrames:
    """The rendered, finished (H, W, 3) uint8 RGB frames of driven batches (:class:`RenderedFrames`)."""
    return RenderedFrames(renderer, driven, finish)


def _ratio_offsets(s: StitchingRetargeting, x_s: torch.Tensor, source: PreparedSource,
                   controls: Controls | Sequence[Controls] | None) -> torch.Tensor | None:
    """(1 or N, 21, 3) eyes_open/lips_open retargeting offsets of ``controls`` (one or N), None when all are 0."""
    many = controls if isinstance(controls, (list, tuple)) else [controls]
    if not any(c is not None and (c.eyes_open or c.lips_open) for c in many):
        return None
    with torch.inference_mode():
        return retargeting_offsets(s.eye, s.lip, x_s, source.ratios, controls)


def absolute_keypoints(source: PreparedSource, motion: MotionSequence, controls: Sequence[Controls],
                       s: StitchingRetargeting, batch_size: int, stitching: bool = True) -> Iterator[Driven]:
    """x_d of a (T) absolute motion sequence with T per-frame ``controls``, in batches of ``batch_size``."""
    x_s = implicit_keypoints(source.info)
    stitch_mlp = s.stitching if stitching else None
    for start in range(0, motion.n_frames, batch_size):
        chunk, chunk_controls = motion[start:start + batch_size], controls[start:start + batch_size]
        with torch.inference_mode():
            offsets = retargeting_offsets(s.eye, s.lip, x_s, source.ratios, chunk_controls)
            moved = apply_controls(chunk, chunk_controls)
            x_d = keypoints_from_motion(moved, source.info, stitch_mlp, offsets)
        yield Driven(source, x_s, x_d, moved)


def driven_keypoints(source: PreparedSource, batches: Iterable[DrivingBatch], s: StitchingRetargeting,
                     options: AnimationOptions, controls: Controls | None, timeline: KeyframeTrack | None = None,
                     fps: float = 25.0) -> Iterator[Driven]:
    """x_d of driving batches (plain motion) transferred onto ``source``, ``controls`` stacked on every frame.

    Relative transfer is anchored at the first driving frame.  The eye/lip
    offsets of ``controls`` are computed once per job.  ``timeline``: edits
    along the timeline (driving frame k at k / ``fps`` s), batch by batch
    (:func:`_timeline_batch`); batches it does not reach take the plain path.
    """
    animator: Animator | None = None
    first = 0
    for batch in batches:
        if animator is None:
            anchor = batch.motion[0] if options.relative else None  # the unedited first frame
            animator = Animator(source.info, s, options, anchor=anchor, source_ratios=source.ratios)
            offsets = _ratio_offsets(s, animator.x_s, source, controls)
        edits = None if timeline is None else sample_timeline(timeline, fps, batch.motion.n_frames, first)
        first += batch.motion.n_frames
        motion = batch.motion if controls is None else apply_controls(batch.motion, controls)
        batch_offsets = offsets
        if edits is not None and edits.edited.any():
            motion, batch_offsets = _timeline_batch(source, animator, batch.motion, motion, offsets, edits, controls)
        with torch.inference_mode():
            x_d = animator(motion, batch.ratios, batch_offsets)
        yield Driven(source, animator.x_s, x_d, motion)


def _timeline_batch(source: PreparedSource, animator: Animator, plain: MotionSequence, moved: MotionSequence,
                    offsets: torch.Tensor | None, edits: TimelineEdits,
                    controls: Controls | None) -> tuple[MotionSequence, torch.Tensor | None]:
    """A driving batch with timeline edits: (edited driving motion, per-frame eye/lip offsets or None).

    ``plain``: the batch's driving motion; ``moved``/``offsets``: the job's
    own (``controls`` applied, eye/lip offsets of the job).  Neutralize moves
    the driving expression toward the anchor's in relative transfer
    (exp_s + exp_d − exp_d,0 then becomes the source's own) and toward the
    source's in absolute transfer; the timeline's controls are stacked on
    ``controls`` per frame, their eye/lip offsets computed for this batch.
    Unedited frames take ``moved`` and ``offsets`` themselves (bit for bit).
    """
    neutral = animator.anchor if animator.anchor is not None else source.info
    motion, per_frame = apply_timeline(plain, neutral, edits, controls)
    edited = _where(edits.edited, apply_controls(motion, per_frame), moved)
    per_frame_offsets = _ratio_offsets(animator.networks, animator.x_s, source, per_frame)
    if per_frame_offsets is not None and offsets is not None:
        per_frame_offsets = _where(edits.edited, per_frame_offsets, offsets.expand_as(per_frame_offsets))
    return edited, per_frame_offsets


def _where(mask: np.ndarray, edited, plain):
    """Per frame (leading axis), ``edited`` where ``mask`` else ``plain``: tensors or :class:`MotionSequence`."""
    if isinstance(edited, MotionSequence):
        return MotionSequence(**{f.name: _where(mask, getattr(edited, f.name), getattr(plain, f.name))
                                 for f in dataclasses.fields(MotionSequence)})
    pick = torch.as_tensor(mask, device=edited.device).reshape(-1, *([1] * (edited.dim() - 1)))
    return torch.where(pick, edited, plain)


def source_video_keypoints(sources: Iterable[PreparedSource], raws: Sequence[dict[str, torch.Tensor]],
                           drive: Sequence[DrivingBatch], s: StitchingRetargeting, options: AnimationOptions,
                           controls: Controls | None, edits: TimelineEdits | None = None) -> Iterator[Driven]:
    """x_d of source frame i driven by single-frame driving batch i (LivePortrait's video-to-video rules).

    ``sources``: the n per-frame sources; ``raws``: M's heads of the n source
    frames; ``drive``: n single-frame driving batches (plain motion, already
    smoothed by ``RenderOptions.smoothing``).  LivePortrait's source-video
    rules (src/live_portrait_pipeline.py ``LivePortraitPipeline.execute``,
    ``flag_is_source_video``; :func:`~talkinghead.motion.transfer.source_video_transform`):

    * relative: R_i = R_d,i·R_d,0ᵀ·R_s,i and exp_i = exp_s,i + exp_d,i −
      exp_d,0; absolute: R_d,i and exp_d,i;
    * both sequences Kalman-smoothed over the whole clip (RTS smoother,
      observation variance 3e-7, :func:`~talkinghead.motion.transfer.smooth_targets`);
    * rotation: the smoothed R_i; expression: source frame i's own with
      rows 1, 2, 6, 11–20 and entries (3, y), (4, y), (5, z), (8, z),
      (9, y), (9, z) from the smoothed exp_i; scale: source frame i's own;
      t: source frame i's own (relative) or driving frame i's (absolute);
      no expression-friendly rescaling.

    ``controls`` are stacked on the driving frames (pitch/yaw/roll and
    expression controls) and on each source frame's own t and scale
    (``x``/``y``/``scale``, which would otherwise be dropped with the
    driving t and scale).  ``edits`` (n frames; :func:`_timeline_targets`):
    timeline edits, stacked on ``controls`` per frame.
    """
    plain = MotionSequence.cat([batch.motion for batch in drive])
    own = MotionSequence.cat([keypoint_info_from_raw(raw).motion for raw in raws])
    per_frame = [controls] * plain.n_frames
    moved = plain if controls is None else apply_controls(plain, controls)
    targets = smooth_targets(source_video_targets(own, moved, plain[0], options.relative))
    if edits is not None and edits.edited.any():
        moved, targets, per_frame = _timeline_targets(own, plain, moved, targets, options, controls, edits)
    for i, source in enumerate(sources):
        c, own_i = per_frame[i], own[i]
        if c is not None:
            shift = torch.tensor([c.x, c.y, 0.0], dtype=own.t.dtype, device=own.t.device)
            own_i = own_i.replace(t=own_i.t + shift, scale=own_i.scale * c.scale)
        with torch.inference_mode():
            animator = SourceVideoAnimator(source.info, s, options, targets[i], own=own_i, source_ratios=source.ratios)
            x_d = animator(moved[i], drive[i].ratios, _ratio_offsets(s, animator.x_s, source, c))
        yield Driven(source, animator.x_s, x_d, moved[i])


def _timeline_targets(own: MotionSequence, plain: MotionSequence, moved: MotionSequence, targets: SourceVideoTargets,
                      options: AnimationOptions, controls: Controls | None,
                      edits: TimelineEdits) -> tuple[MotionSequence, SourceVideoTargets, list[Controls]]:
    """A source-video job's (driving motion, smoothed targets, per-frame controls) with timeline edits.

    The edited driving frames are smoothed as a whole clip of their own and
    taken on the edited frames only (unedited frames keep ``targets``, bit for
    bit, with ``moved``, the job's driving motion; the whole-clip smoother
    would otherwise spread an edit); then the
    edited frames' target expression is neutralized toward each source
    frame's own (the neutral of a source video).
    """
    _, per_frame = apply_timeline(plain, own, edits, controls)
    edited_moved = apply_controls(plain, per_frame)
    edited = smooth_targets(source_video_targets(own, edited_moved, plain[0], options.relative))
    exp = neutralize_expression(own.replace(exp=edited.exp), own, edits.neutralize).exp
    mask = edits.edited
    return (_where(mask, edited_moved, moved), SourceVideoTargets(_where(mask, edited.rotation, targets.rotation),
            _where(mask, exp, targets.exp)), per_frame)


def source_video_driven(video: str | os.PathLike, provider: LandmarkProvider, driving: Iterable[DrivingBatch],
                        fps: float, n_frames: int, motion: torch.nn.Module, renderer: Renderer,
                        s: StitchingRetargeting, options: AnimationOptions,
                        controls: Controls | None, timeline: KeyframeTrack | None = None) -> Iterator[Driven]:
    """x_d of source-video frame i driven by driving frame i, one :class:`PreparedSource` per frame.

    ``video`` is read at the driving clip's rate ``fps`` Hz (frames
    repeated or dropped by timestamp), at most ``n_frames`` frames; each
    frame gets its own landmarks from ``provider`` (a frame without a face
    reuses the last face's, leading frames the first's), crop, M and F.
    ``driving``: the driving batches (plain motion, already smoothed).  The
    motion of both clips is held (a few KB per frame, for the whole-clip
    Kalman smoothing of :func:`source_video_keypoints`), never frames; the
    video is decoded three times (landmarks; crop + M; crop + F per frame
    while the batches are consumed).  Yields min(source frames, driving
    frames) one-frame batches.  ``timeline``: edits along the timeline at
    the driving frames' times (:func:`source_video_keypoints`).

    Raises:
        NoFaceError: no frame of ``video`` shows a face.
        MediaError: a landmark file that does not fit ``video``.
    """
    points, raws = source_video_motion(video, fps, n_frames, provider, motion, renderer.device)
    drive = list(single_frames(driving))
    n = min(len(drive), len(raws))
    if n == 0:
        return
    sources = video_sources(video, fps, points[:n], raws[:n], motion, renderer)
    edits = None if timeline is None else sample_timeline(timeline, fps, n)
    yield from source_video_keypoints(sources, raws[:n], drive[:n], s, options, controls, edits)
