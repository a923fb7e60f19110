"""Timeline edits on any job: a keyframe file laid over another job's frames (issue 13, item 3).

The pose job samples a keyframe file on its own clock (:func:`~.keyframes.sample_controls`).
Every other job — driving video, audio, dub, motion file — already has
its frames, at its own rate; :func:`sample_timeline` reads the same file
at those frames' times (frame k at k / fps seconds, the file's own ``fps``
is not used) and gives one edit per frame:

* outside the file's keyframes and spans the edit is the identity
  (``Controls()`` and neutralize strength 0), so a job stacked with it
  (:func:`stack_job_controls`, :func:`neutralize_expression`) keeps its
  frames bit for bit;
* between the first and the last keyframe the controls follow the keyframes
  with their eases, exactly as in the pose job;
* at the edges nothing jumps: a first (last) keyframe that is not neutral
  is eased in from (out to) the identity over the file's ``fade`` seconds
  before (after) it, with smoothstep 3u² − 2u³; spans ramp inside
  [from, to] (rules and format: :mod:`~.keyframes`, version 2).

The expression part, ``neutralize``, is not a control: it moves the
expression deltas toward the source's neutral expression
(:func:`neutralize_expression`), before the controls are applied (so a
span may neutralize and add a smile).

In a job: smooth the motion first, then apply the edits (a whole-sequence
smoother run after them would spread an edit over the neighbouring frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..errors import ControlError
from .controls import Controls, ControlsLike
from .frame import MotionSequence
from .keyframes import (
    CHANNELS, DEFAULT_EASE, DEFAULT_FADE, FADE_EASES, NEUTRAL, KeyframeTrack, Span, smoothstep,
    controls_from_values, interpolate_values, span_values, stack_values,
)

IDENTITY = Controls()
"""The edit of a frame outside every keyframe and span: all controls neutral."""

_NEUTRALIZE = CHANNELS.index("neutralize")


@dataclass(frozen=True)
class TimelineEdits:
    """Per-frame edits of a keyframe track laid on a job's frames (:func:`sample_timeline`).

    Attributes:
        controls: N :class:`Controls`; :data:`IDENTITY` (the same object) on unedited frames.
        neutralize: (N,) float64 expression neutralize strengths in [0, 1]; 0 on unedited frames.
        fps: the job's frame rate, Hz.
        first_frame: index of the first of these frames in the job.
    """

    controls: tuple[Controls, ...]
    neutralize: np.ndarray
    fps: float
    first_frame: int = 0

    def __len__(self) -> int:
        return len(self.controls)

    @property
    def edited(self) -> np.ndarray:
        """(N,) bool: frames the track changes (a control not neutral, or neutralize > 0)."""
        return np.array([not c.is_neutral() for c in self.controls], dtype=bool) | (self.neutralize > 0)

    @property
    def times(self) -> np.ndarray:
        """(N,) float64 frame times, seconds: (first_frame + k) / fps."""
        return (self.first_frame + np.arange(len(self))) / self.fps

    def __getitem__(self, index: slice) -> "TimelineEdits":
        """The edits of a run of frames (``slice`` with step 1), e.g. one batch of a streamed job."""
        start, stop, step = index.indices(len(self))
        if step != 1:
            raise ValueError("timeline edits are sliced in runs of consecutive frames")
        return TimelineEdits(self.controls[start:stop], self.neutralize[start:stop], self.fps, self.first_frame + start)


def _end_fades(track: KeyframeTrack, values: np.ndarray) -> tuple[float, float]:
    """Fade-in and fade-out lengths (seconds) of the keyframe part: 0 at a neutral end key or at t = 0."""
    fade_in = 0.0 if np.array_equal(values[0], NEUTRAL) else min(track.fade, track.times[0])
    fade_out = 0.0 if np.array_equal(values[-1], NEUTRAL) else track.fade
    return fade_in, fade_out


def keyframe_values(track: KeyframeTrack, at: np.ndarray) -> np.ndarray:
    """(N, C + 1) float64 values of the track's keyframes laid on a job at times ``at`` (seconds).

    Interpolated with the keys' eases on [t_first, t_last]; eased from
    :data:`~.keyframes.NEUTRAL` over the fades at the ends (module docstring);
    exactly NEUTRAL elsewhere.  Columns: :data:`~.keyframes.CHANNELS`.
    """
    at = np.asarray(at, dtype=np.float64)
    if not track.times:
        return np.repeat(NEUTRAL[None], len(at), axis=0)
    keyed = track.key_values()
    first, last = track.times[0], track.times[-1]
    fade_in, fade_out = _end_fades(track, keyed)
    weight = ((at >= first) & (at <= last)).astype(np.float64)
    if fade_in > 0:
        rising = (at >= first - fade_in) & (at < first)
        weight[rising] = smoothstep((at[rising] - (first - fade_in)) / fade_in)
    if fade_out > 0:
        falling = (at > last) & (at <= last + fade_out)
        weight[falling] = smoothstep((last + fade_out - at[falling]) / fade_out)
    values = interpolate_values(np.array(track.times), keyed, track.eases, at)
    return NEUTRAL + (values - NEUTRAL) * weight[:, None]


def sample_timeline(track: KeyframeTrack, fps: float, n_frames: int, first_frame: int = 0) -> TimelineEdits:
    """The track's edits at a job's frames: frame k at (first_frame + k) / fps seconds.

    Keyframes (:func:`keyframe_values`) and spans (:func:`~.keyframes.span_values`)
    are stacked (:func:`~.keyframes.stack_values`).  A track sampled at
    another rate than its own ``fps`` lands at the same times; sampling a
    run of frames with ``first_frame`` gives the same edits as slicing the
    whole job's.

    Args:
        track: parsed keyframe file (version 1 or 2).
        fps: the job's frame rate, Hz (> 0).
        n_frames: number of frames to sample (≥ 0).
        first_frame: index of the first one in the job (≥ 0).

    Returns:
        :class:`TimelineEdits` of ``n_frames`` frames; frames the track does
        not reach get :data:`IDENTITY` and strength 0.

    Raises:
        ControlError: ``fps`` not positive and finite, or a negative frame count / first frame.
    """
    if not (np.isfinite(fps) and fps > 0) or n_frames < 0 or first_frame < 0:
        raise ControlError(f"cannot lay a timeline on {n_frames} frames from frame {first_frame} at {fps} fps.")
    at = (first_frame + np.arange(n_frames)) / fps
    values = stack_values(keyframe_values(track, at), span_values(track.spans, at))
    unedited = np.all(values == NEUTRAL, axis=1)
    edited_controls = iter(controls_from_values(values[~unedited]))
    controls = tuple(IDENTITY if same else next(edited_controls) for same in unedited)
    return TimelineEdits(controls, np.clip(values[:, _NEUTRALIZE], 0.0, 1.0), float(fps), first_frame)


def stack_controls(a: Controls, b: Controls) -> Controls:
    """Two sets of controls as one: values add, ``scale`` multiplies (the slider rule of :func:`~.keyframes.stack_values`).

    Equals applying ``a`` then ``b`` for the pose controls (pitch/yaw/roll
    and x/y add, scale multiplies) and for expression controls of the same
    sign; for opposite signs the sum of the slider values is used (each
    expression control is one slider).  Sums past a control's range are
    clamped (with a :class:`~.controls.ControlClampWarning`).  Stacking
    with a neutral set returns the other set itself (bit for bit).
    """
    if b.is_neutral():
        return a
    if a.is_neutral():
        return b
    values = a.as_dict()
    for name, value in b.as_dict().items():
        values[name] = values[name] * value if name == "scale" else values[name] + value
    return Controls(**values)


def stack_job_controls(job: ControlsLike | None, timeline: Sequence[Controls] | TimelineEdits) -> list[Controls]:
    """Per-frame controls of a job with the timeline's stacked on them (:func:`stack_controls`).

    Args:
        job: the job's controls: None (none), one :class:`Controls` for
            every frame, or one per frame (N).
        timeline: N per-frame controls, or :class:`TimelineEdits`.

    Returns:
        N :class:`Controls`; where the timeline's is neutral, the job's own
        object (so those frames render bit for bit as without the timeline).

    Raises:
        ValueError: ``job`` is a sequence of another length than ``timeline``.
    """
    edits = timeline.controls if isinstance(timeline, TimelineEdits) else tuple(timeline)
    if job is None or isinstance(job, Controls):
        own = [job or IDENTITY] * len(edits)
    else:
        own = list(job)
        if len(own) != len(edits):
            raise ValueError(f"{len(own)} job controls for {len(edits)} timeline frames")
    return [stack_controls(mine, edit) for mine, edit in zip(own, edits)]


def _strengths(strength: float | np.ndarray | torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
    """(n,) float64 strengths on ``like``'s device, checked to be finite and in [0, 1]."""
    s = torch.as_tensor(np.asarray(strength, dtype=np.float64) if not torch.is_tensor(strength) else strength)
    s = s.to(dtype=torch.float64, device=like.device).flatten()
    if s.numel() == 1:
        s = s.expand(n)
    if s.numel() != n:
        raise ValueError(f"{s.numel()} neutralize strengths for {n} motion frames")
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()) or bool((s > 1).any()):
        raise ControlError("neutralize strengths must be finite numbers between 0 and 1.")
    return s


def neutralize_expression(motion: MotionSequence, neutral: MotionSequence,
                          strength: float | np.ndarray | torch.Tensor) -> MotionSequence:
    """Move the expression deltas toward a neutral expression: exp = n + (exp − n)·(1 − s), per frame.

    The neutral n is the source's own expression, not exp = 0 (the bare
    canonical keypoints).  In LivePortrait's motion space exp are deltas on
    the canonical keypoints (x = s·(x_c·R + exp) + t, spec §3, in
    tests/data/specs/liveportrait-architecture.md); nothing in it makes
    exp = 0 a neutral-looking face (not checked here: the tests have no
    real weights), and LivePortrait itself never drives toward exp = 0: its
    relative modes keep the source's exp (exp_s + exp_d − exp_d,0, spec
    §8) and its image driving subtracts a fixed "neutral closed-lip"
    expression (``lip_array``) rather than zero.  The source's own exp is
    also what every job shows with no driving expression, so a neutralized
    span looks like the unedited source.  Per job: a photo with an absolute
    motion sequence (audio, motion file) → the photo's ``source.info``;
    a driving video in relative mode → the anchor (driving frame 0), so the
    transferred expression becomes the source's; a source video (dub) →
    each source frame's own motion (T frames).

    Args:
        motion: (T) motion sequence.
        neutral: (1) or (T) neutral expression (only ``exp`` is used).
        strength: 0 … 1, one number or T (numpy, torch or a list): 0 leaves
            the frame untouched (bit for bit), 1 gives the neutral ``exp``
            exactly; pose, t and scale are never changed.

    Returns:
        (T) :class:`MotionSequence`, ``motion`` itself when every strength is 0.

    Raises:
        ControlError: a strength not finite or outside [0, 1].
        ValueError: ``neutral`` or ``strength`` has another length than 1 or T.
    """
    n = motion.n_frames
    if neutral.n_frames not in (1, n):
        raise ValueError(f"a neutral of {neutral.n_frames} frames for {n} motion frames")
    s = _strengths(strength, n, motion.exp)
    active = s > 0
    if not bool(active.any()):
        return motion
    target = neutral.exp.to(motion.exp).expand(n, -1, -1)
    keep = (1.0 - s).to(motion.exp.dtype)[:, None, None]
    exp = torch.where(active[:, None, None], target + (motion.exp - target) * keep, motion.exp)
    return motion.replace(exp=exp)


def neutralize_span(motion: MotionSequence, neutral: MotionSequence, fps: float, start: float, end: float,
                    strength: float = 1.0, fade: float = DEFAULT_FADE, ease: str = DEFAULT_EASE,
                    first_frame: int = 0) -> MotionSequence:
    """Neutralize the expression over [start, end) seconds of a motion sequence, with eased edges.

    The strength at frame k (time (first_frame + k) / fps) is
    ``strength · w(t)``, w the ramp of a :class:`~.keyframes.Span` (0 at
    ``start``, 1 from ``start + fade`` to ``end − fade``, 0 at ``end``);
    then :func:`neutralize_expression`.  Frames outside [start, end] are
    returned bit for bit.

    Args:
        motion: (T) motion sequence at ``fps`` Hz.
        neutral: (1) or (T) neutral (see :func:`neutralize_expression`).
        fps: frame rate, Hz.
        start, end: the span, seconds, 0 ≤ start < end.
        strength: in [0, 1].
        fade: ramp length at each end, seconds, at most (end − start) / 2.
        ease: "linear" or "ease-in-out".
        first_frame: index of ``motion``'s first frame in the whole job.

    Raises:
        ControlError: a bad span, fade, ease or strength.
    """
    if not (0 <= start < end) or not 0 <= fade <= (end - start) / 2 or ease not in FADE_EASES:
        raise ControlError(f"bad neutralize span: from {start} s to {end} s, fade {fade} s, ease {ease!r} "
                           f"(need 0 ≤ from < to, 0 ≤ fade ≤ half the span, ease one of {', '.join(FADE_EASES)}).")
    if not 0 <= strength <= 1:
        raise ControlError(f"neutralize strength must be between 0 and 1, got {strength}.")
    at = (first_frame + np.arange(motion.n_frames)) / fps
    weights = Span(start=start, end=end, neutralize=strength, fade=fade, ease=ease).weights(at)
    return neutralize_expression(motion, neutral, strength * weights)


def apply_timeline(motion: MotionSequence, neutral: MotionSequence, edits: TimelineEdits,
                   controls: ControlsLike | None = None) -> tuple[MotionSequence, list[Controls]]:
    """A job's (T) motion and controls with a timeline's edits: (neutralized motion, stacked per-frame controls).

    For an absolute motion sequence (audio, motion file): pass the result to
    ``Engine.animate_absolute_motion(..., controls=...)`` after smoothing; frames the
    timeline does not edit keep their motion and controls bit for bit.

    Raises:
        ValueError: ``edits`` or ``controls`` not one per frame of ``motion``.
    """
    if len(edits) != motion.n_frames:
        raise ValueError(f"{len(edits)} timeline frames for {motion.n_frames} motion frames")
    return neutralize_expression(motion, neutral, edits.neutralize), stack_job_controls(controls, edits)


def lay_timeline(track: KeyframeTrack | None, motion: MotionSequence, neutral: MotionSequence, fps: float,
                 controls: ControlsLike | None = None, first_frame: int = 0) -> tuple[MotionSequence, list[Controls]]:
    """A track sampled on frames ``first_frame``… of a job at ``fps`` Hz and applied (:func:`apply_timeline`).

    For absolute motion sequences (audio, motion file, each chunk of a
    streamed job with its ``first_frame``), after any smoothing.  ``track``
    None: ``motion`` itself and the job's ``controls`` per frame (neutral
    ``Controls()`` where None).  ``controls``: None, one :class:`Controls`
    for every frame, or at least T per frame (the first T are used, e.g.
    for a motion cut to ``max_frames``).

    Raises:
        ControlError: a bad ``fps`` or ``first_frame`` (:func:`sample_timeline`).
        ValueError: fewer per-frame ``controls`` than frames.
    """
    if isinstance(controls, (list, tuple)):
        controls = list(controls)[: motion.n_frames]
    if track is None:
        own = list(controls) if isinstance(controls, (list, tuple)) else [controls or Controls()] * motion.n_frames
        return motion, own
    return apply_timeline(motion, neutral, sample_timeline(track, fps, motion.n_frames, first_frame), controls)


def edited_intervals(track: KeyframeTrack) -> list[tuple[float, float]]:
    """Time intervals (seconds) a track can change on a job, merged and sorted (for marking edited spans).

    The keyframe part covers [t_first − fade-in, t_last + fade-out] unless
    every keyframe is neutral; each span covers [from, to].
    """
    intervals = [(span.start, span.end) for span in track.spans]
    if track.times:
        keyed = track.key_values()
        if not np.all(keyed == NEUTRAL):
            fade_in, fade_out = _end_fades(track, keyed)
            intervals.append((track.times[0] - fade_in, track.times[-1] + fade_out))
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
