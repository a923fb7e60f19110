"""Temporal smoothing of motion sequences, offline or streamed with a bounded delay.

A motion sequence (a :class:`~talkinghead.motion.frame.MotionSequence` batch, one
frame per batch element) picks up frame-to-frame jitter from the motion
extractor or a sampler; rendered, that jitter reads as a trembling head.  This
module removes it before rendering, with separate strengths for the head pose
(pitch/yaw/roll in degrees, ``t``, ``scale``) and the expression deltas
(``exp``), because pose jitter is far more visible than expression jitter and
lips must stay crisp.

Filter: local quadratic regression with Gaussian weights (a Gaussian-weighted
Savitzky–Golay filter; Savitzky & Golay 1964, Anal. Chem. 36(8); Fan & Gijbels
1996, *Local Polynomial Modelling and Its Applications*, ch. 3).  Each output
frame i is the value at i of the quadratic fitted by weighted least squares to
the frames i−K..i+K, weights exp(−(j−i)²/(2σ²)), K = ⌈3σ⌉.  Why this filter:

* zero phase: the window is centred, so there is no lag (a causal filter such
  as the One-Euro filter or an exponential average always lags);
* it reproduces quadratics exactly, so peaks of head turns keep their
  amplitude (a moving average or Gaussian blur flattens them);
* it is a finite filter with no feedback: nothing can drift, a constant
  sequence comes back bit for bit, and a streamed run with K frames of
  look-ahead gives *exactly* the offline result (an RTS Kalman smoother's
  output depends on the whole future and would not);
* at the ends of a sequence the same fit is made on the truncated window (no
  padding, no reflection bias); with fewer than 3 frames in the window the
  degree drops to (frames − 1), so sequences of 1 and 2 frames are returned
  unchanged.

Angles are smoothed in degrees directly: LivePortrait's angles lie in
±97.5° (spec §3), far from the ±180° wrap.

Strengths are in [0, 1]; σ = strength · :data:`MAX_SIGMA_FRAMES` frames, and
0 is exactly the identity.  Measured on yaw = 15°·sin(2π·0.5 Hz·t) + N(0, 1°)
at 25 fps (tests/test_smoothing.py), strength 0.5 (σ = 2 frames, 6 frames of
delay) divides the mean |second difference| by 8–9 with no lag and less
than 1 % amplitude loss on the clean sine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby

import numpy as np
import torch
from torch import Tensor

from ..options import check_options, option
from .frame import MotionSequence

MAX_SIGMA_FRAMES = 4.0
"""Gaussian width σ, in frames, at strength 1 (160 ms at 25 fps)."""

POSE_FIELDS = ("pitch", "yaw", "roll", "t", "scale")
"""MotionSequence fields smoothed with the pose strength."""

EXPRESSION_FIELDS = ("exp",)
"""MotionSequence fields smoothed with the expression strength."""

_DEGREE = 2
"""Degree of the local polynomial (quadratic)."""


@dataclass(frozen=True)
class SmoothingOptions:
    """How strongly to smooth the pose and the expression of a motion sequence.

    Attributes:
        pose: strength in [0, 1] for pitch/yaw/roll, ``t`` and ``scale``
            (σ = pose · :data:`MAX_SIGMA_FRAMES` frames; 0 = untouched).
        expression: strength in [0, 1] for the expression deltas ``exp``.

    Raises:
        ControlError: if a strength is not a finite number in [0, 1].
    """

    pose: float = option(0.0, what="pose smoothing strength", range=(0.0, 1.0), flag="--smooth",
                         label="Smoothing (0 = off)",
                         help="motion smoothing strength against jitter (pose and expression; 0 = off)")
    expression: float = option(0.0, what="expression smoothing strength", range=(0.0, 1.0),
                               flag="--smooth-expression", help="expression smoothing strength")

    def __post_init__(self) -> None:
        check_options(self)

    def sigma(self, field: str) -> float:
        """Gaussian width σ in frames for a MotionSequence field (e.g. "yaw", "exp")."""
        strength = self.expression if field in EXPRESSION_FIELDS else self.pose
        return strength * MAX_SIGMA_FRAMES

    @property
    def delay(self) -> int:
        """Look-ahead K in frames: how many frames a streamed output trails its input."""
        return max(_half_width(self.pose * MAX_SIGMA_FRAMES), _half_width(self.expression * MAX_SIGMA_FRAMES))


def smooth_motion(motion: MotionSequence, options: SmoothingOptions) -> MotionSequence:
    """Smooth a whole motion sequence (offline).

    Args:
        motion: B frames (B ≥ 1) in time order, any float dtype and device; a
            :class:`~talkinghead.motion.frame.KeypointInfo` keeps its ``kp``
            untouched.
        options: pose and expression strengths.

    Returns:
        A motion of the same type, shapes, dtype and device (``motion`` itself
        when both strengths are 0).
    """
    if options.delay == 0:
        return motion
    n = motion.n_frames
    return motion.replace(**_smooth_fields(motion, 0, 0, n, n, options))


class MotionSmoother:
    """Streaming form of :func:`smooth_motion` with a delay of ``options.delay`` frames.

    Feed frames in chunks of any size with :meth:`push`; each call returns the
    frames whose look-ahead is complete.  At the end of the stream
    :meth:`flush` returns the rest.  The concatenated outputs equal
    ``smooth_motion(all frames, options)`` bit for bit.  Memory is bounded by
    2·delay frames plus the chunk being pushed.

    Example::

        smoother = MotionSmoother(SmoothingOptions(pose=0.5, expression=0.2))
        for chunk in driver:
            if (ready := smoother.push(chunk)) is not None:
                render(ready)
        if (ready := smoother.flush()) is not None:
            render(ready)
    """

    def __init__(self, options: SmoothingOptions) -> None:
        self.options = options
        self._reset()

    @property
    def delay(self) -> int:
        """Frames an output trails the input (the look-ahead K)."""
        return self.options.delay

    def push(self, frames: MotionSequence) -> MotionSequence | None:
        """Add the next frames of the stream (same type, dtype, device as before).

        Returns:
            The smoothed frames that are now final, in order (possibly fewer
            or more than pushed), or None if none is ready yet.
        """
        self._buffer = frames if self._buffer is None else type(frames).cat([self._buffer, frames])
        self._received += frames.n_frames
        return self._emit(self._received - self.delay, total=None)

    def flush(self) -> MotionSequence | None:
        """End the stream: return the last frames (or None), then start afresh."""
        out = self._emit(self._received, total=self._received)
        self._reset()
        return out

    def _reset(self) -> None:
        self._buffer: MotionSequence | None = None
        self._buffer_start = 0  # stream index of self._buffer[0]
        self._received = 0  # frames pushed so far
        self._next = 0  # stream index of the next frame to emit

    def _emit(self, stop: int, total: int | None) -> MotionSequence | None:
        """Smooth and return frames [self._next, stop), then drop unneeded history."""
        if self._buffer is None or stop <= self._next:
            return None
        first, last = self._next - self._buffer_start, stop - self._buffer_start
        out = self._buffer[first:last].replace(
            **_smooth_fields(self._buffer, self._buffer_start, self._next, stop, total, self.options))
        self._next = stop
        keep_from = max(0, stop - self.delay)
        self._buffer = self._buffer[keep_from - self._buffer_start:]
        self._buffer_start = keep_from
        return out


def jitter(values: Tensor) -> Tensor:
    """Mean absolute second difference along time, the jitter metric of the benchmarks.

    Args:
        values: (T, ...) float, T ≥ 3 frames; units are kept (degrees in,
            degrees per frame² out).

    Returns:
        0-dim tensor: mean over frames and channels of |v[i+1] − 2v[i] + v[i−1]|.
    """
    return (values[2:] - 2 * values[1:-1] + values[:-2]).abs().mean()


def _half_width(sigma: float) -> int:
    """Window half-width K = ⌈3σ⌉ frames (0 for σ = 0)."""
    return math.ceil(3.0 * sigma)


@lru_cache(maxsize=512)
def _local_fit_weights(before: int, after: int, sigma: float) -> tuple[float, ...]:
    """Weights w with fit(0) = Σ w[k]·x[k − before] for the window −before..after.

    The local polynomial of degree min(2, window − 1) is fitted by least
    squares with Gaussian weights exp(−u²/(2σ²)); a pseudo-inverse keeps the
    fit defined when far weights underflow.  The weights sum to 1.
    """
    u = np.arange(-before, after + 1, dtype=np.float64)
    degree = min(_DEGREE, u.size - 1)
    root_w = np.exp(-0.25 * (u / sigma) ** 2)  # square root of the Gaussian weight
    design = np.vander(u, degree + 1, increasing=True)
    return tuple(float(w) for w in np.linalg.pinv(root_w[:, None] * design)[0] * root_w)


def _smooth_fields(frames: MotionSequence, frames_start: int, out_start: int, out_stop: int, total: int | None,
                   options: SmoothingOptions) -> dict[str, Tensor]:
    """Smoothed frames [out_start, out_stop) of every pose and expression field (see :func:`_smooth_span`)."""
    return {name: _smooth_span(getattr(frames, name), frames_start, out_start, out_stop, total, options.sigma(name))
            for name in POSE_FIELDS + EXPRESSION_FIELDS}


def _smooth_span(x: Tensor, x_start: int, out_start: int, out_stop: int, total: int | None, sigma: float) -> Tensor:
    """Smoothed frames [out_start, out_stop) of one field.

    Args:
        x: (n, ...) frames [x_start, x_start + n) of the stream; must cover
            every frame within K of the outputs that lies in the stream.
        total: the stream's length, or None while it is unknown (then every
            output must have its full look-ahead K inside ``x``).
        sigma: Gaussian width in frames (0: copy).

    Each output is x[i] + Σ_k w[k]·(x[i+k] − x[i]) — equal to Σ_k w[k]·x[i+k]
    since Σ w = 1 — accumulated with one multiply and one add per window
    offset, elementwise, so a frame's value does not depend on how the stream
    was chunked, and constant inputs stay exact.
    """
    if sigma == 0.0 or out_stop == out_start:
        return x[out_start - x_start:out_stop - x_start]
    k = _half_width(sigma)
    work = x.to(torch.promote_types(x.dtype, torch.float32))

    def window(i: int) -> tuple[int, int]:
        return min(k, i), k if total is None else min(k, total - 1 - i)

    pieces = []
    for (before, after), run in groupby(range(out_start, out_stop), key=window):
        first = next(run) - x_start
        stop = first + 1 + sum(1 for _ in run)
        centre = work[first:stop]
        acc = torch.zeros_like(centre)
        for offset, weight in zip(range(-before, after + 1), _local_fit_weights(before, after, sigma)):
            if offset != 0:
                acc = acc + (work[first + offset:stop + offset] - centre) * weight
        pieces.append(centre + acc)
    return torch.cat(pieces).to(x.dtype)

