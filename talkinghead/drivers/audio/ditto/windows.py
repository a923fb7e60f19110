"""Ditto's window loops: overlapping 80-frame LMDM windows → one continuous motion sequence.

Spec ``ditto-audio2motion.md`` §7.1.  Each window is sampled from the motion
frame that precedes it (``cond_frame``) and its per-frame condition rows;
consecutive windows overlap by ``overlap`` frames, of which the last
``fuse_length`` of the sequence so far are crossfaded into the new
prediction, the ``valid = L − overlap`` new frames are appended and the seam
is smoothed.  Two drivers share that step:

* :func:`generate_offline` — a whole clip at once (windows at 0, V, 2V, …;
  the last one padded; the result cut, smoothed once more and clipped);
* :func:`stream_online` — a generator over incoming audio-feature chunks that
  yields motion as soon as each window completes (warm-up buffer, an
  anchor-only first window, end-of-stream flush).

Motion rows are 265-d (spec §4: ``[scale − 1 | pitch 66 | yaw 66 | roll 66 |
t 3 | exp 63]``, pose as raw bin logits), float32, on the sampler's device.
Post-processing into keypoints (relative motion, masks, blinks) consumes
these rows and the online anchor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch
from torch import Tensor

from ....errors import ControlError
from .diffusion import DDIMSampler

SMOOTHED_DIMS = 202
"""Motion dims 0..201 (scale, pose logits, t) are smoothed; exp (202..264) never is."""

ConditionFn = Callable[[Tensor, int], Tensor]
"""Online condition builder: features (L, A) of one window and the stream
index of its first frame (negative inside the warm-up) → condition rows (L, C)."""


@dataclass(frozen=True, eq=False)
class WindowConfig:
    """Settings of the window loops (Ditto's setup kwargs, spec §7.1, §8).

    Attributes:
        overlap: ``overlap_v2``, frames shared by consecutive windows, in
            [0, L); valid frames per window V = L − overlap.
        smoothing_kernel: ``smo_k_d``, width of the moving average on dims
            0..201; ≤ 1 disables it.
        fix_kp_cond: ``fix_kp_cond``; 0 conditions every window on the
            previous frame; n > 0 restarts from the source motion on every
            n-th window, keeping ``fix_kp_cond_dims`` from the previous frame.
        fix_kp_cond_dims: ``fix_kp_cond_dim`` [a, b) or ``None``.
        clip_range: ``v_min_max_for_clip`` (≥ 2, 265) float32: row 0 the
            per-dimension minimum, row 1 the maximum; ``None`` = no clipping.
    """

    overlap: int = 10
    smoothing_kernel: int = 3
    fix_kp_cond: int = 0
    fix_kp_cond_dims: tuple[int, int] | None = None
    clip_range: Tensor | None = None


SHIPPED_ONLINE = WindowConfig(overlap=70, fix_kp_cond=1, fix_kp_cond_dims=(0, SMOOTHED_DIMS))
"""Window settings of Ditto's shipped online config, as reported second-hand
(spec §7.1 [3rd]); its clip range is not known and left out."""


@dataclass(frozen=True)
class WindowRecord:
    """What one window did (passed to ``on_window`` callbacks, for tracing).

    Attributes:
        index: window number, from 0.
        cond_frame: (F,) motion frame the window was conditioned on.
        condition: (L, C) condition rows fed to the model (padded as Ditto pads).
        x_T: (1, L, F) initial noise of the window.
        prediction: (L, F) sampled window.
        sequence: (n, F) motion sequence after fusing and smoothing (online:
            the last 2·L frames at most).
    """

    index: int
    cond_frame: Tensor
    condition: Tensor
    x_T: Tensor
    prediction: Tensor
    sequence: Tensor


@dataclass(frozen=True)
class MotionChunk:
    """Motion frames emitted by the online loop.

    Attributes:
        frames: (k, F) float32 clipped motion rows.
        first_frame: output index of ``frames[0]`` (0 for the first emitted frame).
        anchor: (F,) clipped frame 0 of the first window, the reference d0 of
            relative motion (spec §7.2).
    """

    frames: Tensor
    first_frame: int
    anchor: Tensor


def smooth_window(motion: Tensor, start: int, end: int, kernel: int) -> Tensor:
    """Centred moving average of frames [start, end) on dims 0..201 (Ditto's ``_smo``).

    Each output averages the ±kernel//2 neighbouring input frames (fewer at
    the sequence ends), all read from the input; exp dims are copied.

    Args:
        motion: (n, F) float32 motion rows.
        start, end: frame range to smooth, 0 ≤ start ≤ end ≤ n.
        kernel: window width; ≤ 1 returns the input unchanged.

    Returns:
        (n, F) float32, a new tensor unless nothing is smoothed.
    """
    if kernel <= 1 or start >= end:
        return motion
    half = kernel // 2
    frames = torch.arange(start, end, device=motion.device)
    total = torch.zeros(end - start, SMOOTHED_DIMS, dtype=motion.dtype, device=motion.device)
    count = torch.zeros(end - start, 1, dtype=motion.dtype, device=motion.device)
    for offset in range(-half, half + 1):
        neighbour = frames + offset
        inside = (neighbour >= 0) & (neighbour < motion.shape[0])
        total[inside] += motion[neighbour[inside], :SMOOTHED_DIMS]
        count[inside] += 1
    smoothed = motion.clone()
    smoothed[start:end, :SMOOTHED_DIMS] = total / count
    return smoothed


def fuse_window(motion: Tensor, prediction: Tensor, valid: int, fuse_length: int) -> Tensor:
    """Crossfade a new window into the sequence and append its new frames (Ditto's ``_fuse``).

    The last Φ = ``fuse_length`` frames become ``R·(1 − w) + P[L−V−Φ+j]·w``
    with ``w_j = j/Φ``; then ``P[L−V:]`` (V = ``valid`` frames) is appended.

    Args:
        motion: (n, F) sequence so far, n ≥ Φ.
        prediction: (L, F) new window.

    Returns:
        (n + V, F) float32.
    """
    seq_len = prediction.shape[0]
    weight = (torch.arange(fuse_length, dtype=motion.dtype, device=motion.device) / fuse_length)[:, None]
    old = motion[motion.shape[0] - fuse_length:]
    new = prediction[seq_len - valid - fuse_length: seq_len - valid]
    kept = motion[: motion.shape[0] - fuse_length]
    return torch.cat((kept, old * (1 - weight) + new * weight, prediction[seq_len - valid:]))


def clip_motion(motion: Tensor, clip_range: Tensor | None) -> Tensor:
    """Clamp every dimension to ``[clip_range[0], clip_range[1]]``; ``None`` leaves it unchanged.

    Args:
        motion: (..., F) float32 motion rows.
        clip_range: (≥ 2, F) float32 ``v_min_max_for_clip`` or ``None``.
    """
    if clip_range is None:
        return motion
    bounds = clip_range.to(motion.device, motion.dtype)
    return torch.clamp(motion, min=bounds[0], max=bounds[1])


def _pad_rows(rows: Tensor, length: int) -> Tensor:
    """Repeat the last row until there are ``length`` rows (Ditto pads short windows so)."""
    return torch.cat((rows, rows[-1:].expand(length - rows.shape[0], -1)))


class _WindowLoop:
    """State shared by both drivers: the motion sequence R and the next condition frame."""

    def __init__(self, sampler: DDIMSampler, source_motion: Tensor, config: WindowConfig, online: bool,
                 initial_noise: Iterable[Tensor] | None, on_window: Callable[[WindowRecord], None] | None) -> None:
        self.seq_len = sampler.model.config.seq_len
        if not 0 <= config.overlap < self.seq_len:
            raise ControlError(
                f"window overlap must be between 0 and {self.seq_len - 1} frames, got {config.overlap}."
            )
        if config.fix_kp_cond < 0:
            raise ControlError(
                f"fix_kp_cond must be 0 (never) or a positive window count, got {config.fix_kp_cond}."
            )
        self.sampler = sampler
        self.config = config
        self.valid = self.seq_len - config.overlap
        self.fuse_length = min(config.overlap, self.valid) if online else config.overlap
        self.source_motion = source_motion.to(sampler.device, torch.float32).reshape(-1)
        self.cond_frame = self.source_motion
        self.sequence = torch.empty(0, self.source_motion.shape[0], device=sampler.device)
        self.windows = 0
        self._noise = None if initial_noise is None else iter(initial_noise)
        self._on_window = on_window

    def run(self, condition: Tensor) -> None:
        """Sample one window from (L, C) condition rows and merge it into the sequence."""
        condition = condition.to(self.sampler.device, torch.float32)
        x_T = self._initial_noise()
        prediction = self.sampler.sample(self.cond_frame[None], condition[None], x_T)[0]
        if self.windows == 0:
            self.sequence = smooth_window(prediction, 0, self.seq_len, self.config.smoothing_kernel)
        else:
            fused = fuse_window(self.sequence, prediction, self.valid, self.fuse_length)
            n = fused.shape[0]
            seam = (n - self.valid - self.fuse_length, n - self.valid + 1)
            self.sequence = smooth_window(fused, *seam, self.config.smoothing_kernel)
        if self._on_window is not None:
            self._on_window(WindowRecord(self.windows, self.cond_frame, condition, x_T, prediction, self.sequence))
        self.windows += 1
        self.cond_frame = self._next_cond_frame()

    def trim(self, keep: int) -> int:
        """Drop all but the last ``keep`` frames of the sequence; returns how many were dropped."""
        dropped = max(0, self.sequence.shape[0] - keep)
        self.sequence = self.sequence[dropped:]
        return dropped

    def _initial_noise(self) -> Tensor:
        if self._noise is None:
            return self.sampler.initial_noise()
        x_T = next(self._noise, None)
        if x_T is None:
            raise ValueError(f"initial_noise ran out after {self.windows} windows")
        return x_T

    def _next_cond_frame(self) -> Tensor:
        """Ditto's ``_update_kp_cond``: the frame before the next window's start (source on reset windows)."""
        previous = self.sequence[self.sequence.shape[0] - self.config.overlap - 1]
        every = self.config.fix_kp_cond
        if every == 0 or self.windows % every != 0:
            return previous
        frame = self.source_motion.clone()
        if self.config.fix_kp_cond_dims is not None:
            a, b = self.config.fix_kp_cond_dims
            frame[a:b] = previous[a:b]
        return frame


def generate_offline(sampler: DDIMSampler, condition: Tensor, source_motion: Tensor,
                     config: WindowConfig = WindowConfig(), initial_noise: Iterable[Tensor] | None = None,
                     on_window: Callable[[WindowRecord], None] | None = None) -> Tensor:
    """Motion for a whole clip (Ditto's offline loop, spec §7.1).

    Windows start at 0, V, 2V, … while the start is below N; a short last
    window repeats its last condition row.  The sequence is then cut to N
    frames, smoothed once more over its whole length and clipped.

    Args:
        sampler: DDIM sampler of the LMDM (its S, step noise and generator are used).
        condition: (N, C) float32 per-frame condition rows (spec §3), N ≥ 1.
        source_motion: (F,) float32 motion vector of the source (``s_kp_cond``),
            the condition frame of the first window.
        config: window settings (offline default: overlap 10, kernel 3).
        initial_noise: one (1, L, F) x_T per window instead of drawing them.
        on_window: called after every window with its :class:`WindowRecord`.

    Returns:
        (N, F) float32 motion rows on the sampler's device.

    Raises:
        ValueError: empty condition, or ``initial_noise`` runs out.
        ControlError: invalid window settings.
        DiffusionError: sampling gave non-finite motion.
    """
    num_frames = condition.shape[0]
    if num_frames == 0:
        raise ValueError("condition has no frames")
    loop = _WindowLoop(sampler, source_motion, config, False, initial_noise, on_window)
    for start in range(0, num_frames, loop.valid):
        loop.run(_pad_rows(condition[start:start + loop.seq_len], loop.seq_len))
    motion = smooth_window(loop.sequence[:num_frames], 0, num_frames, config.smoothing_kernel)
    return clip_motion(motion, config.clip_range)


class _OnlineState:
    """Feature buffer and emission bookkeeping of :func:`stream_online`."""

    def __init__(self, loop: _WindowLoop, condition_fn: ConditionFn, warmup_features: Tensor) -> None:
        self.loop = loop
        self.condition_fn = condition_fn
        self.features = warmup_features
        self.first_index = -warmup_features.shape[0]  # stream index of features[0]
        self.emit_from = 0  # sequence row of the next frame to emit, once the anchor is set
        self.emitted = 0
        self.anchor: Tensor | None = None

    def append(self, chunk: Tensor) -> None:
        self.features = torch.cat((self.features, chunk.to(self.features)))

    def window_ready(self) -> bool:
        return self.features.shape[0] >= self.loop.seq_len

    def pending(self) -> bool:
        return self.features.shape[0] > 0

    def run_window(self) -> Iterator[MotionChunk]:
        """Run the window at the buffer start and yield what it emits.

        A full window advances the stream by V frames; a short (final) one is
        padded and advances by its real length, which is also how many frames
        it may emit (Ditto's ``real_valid_len``).
        """
        seq_len = self.loop.seq_len
        window = self.features[:seq_len]
        advance = self.loop.valid if window.shape[0] == seq_len else window.shape[0]
        self.loop.run(self.condition_fn(_pad_rows(window, seq_len), self.first_index))
        self.features = self.features[advance:]
        self.first_index += advance
        sequence = self.loop.sequence
        clip_range = self.loop.config.clip_range
        if self.anchor is None:
            self.anchor = clip_motion(sequence[0], clip_range)
            self.emit_from = sequence.shape[0] - self.loop.fuse_length
        else:
            frames = clip_motion(sequence[self.emit_from: self.emit_from + advance], clip_range)
            self.emit_from += advance
            yield MotionChunk(frames, self.emitted, self.anchor)
            self.emitted += frames.shape[0]
        self.emit_from -= self.loop.trim(2 * seq_len)


def stream_online(sampler: DDIMSampler, feature_chunks: Iterable[Tensor], source_motion: Tensor,
                  condition_fn: ConditionFn, warmup_features: Tensor, config: WindowConfig = SHIPPED_ONLINE,
                  initial_noise: Iterable[Tensor] | None = None,
                  on_window: Callable[[WindowRecord], None] | None = None) -> Iterator[MotionChunk]:
    """Stream motion while audio features arrive (Ditto's online loop, spec §7.1).

    The feature buffer starts with the ``overlap`` warm-up rows (stream
    indices −overlap..−1); a window runs as soon as L rows from its start
    are buffered.  The first window only sets the anchor (its clipped frame
    0) and marks emission to start at ``len(R) − fuse_length``; every later
    window yields the next V frames.  When ``feature_chunks`` is exhausted the
    remaining rows are padded (last row repeated) to a final window, which
    yields up to that many frames from what the sequence holds.  The motion
    sequence is trimmed to its last 2·L frames.

    Args:
        sampler: DDIM sampler of the LMDM.
        feature_chunks: (k, A) float32 audio-feature rows in arrival order
            (25 fps, e.g. 5 HuBERT rows per 0.2 s of audio).
        source_motion: (F,) float32 source motion vector (first condition frame).
        condition_fn: builds a window's condition rows, see :data:`ConditionFn`.
        warmup_features: (overlap, A) features of ``overlap``·640 zero samples.
        config: window settings (default: Ditto's shipped online settings).
        initial_noise: one (1, L, F) x_T per window instead of drawing them.
        on_window: called after every window with its :class:`WindowRecord`.

    Yields:
        :class:`MotionChunk` per emitting window.

    Raises:
        ValueError: warm-up of the wrong length, or ``initial_noise`` runs out.
        ControlError: invalid window settings.
        DiffusionError: sampling gave non-finite motion.
    """
    stream = OnlineWindows(sampler, source_motion, condition_fn, warmup_features, config, initial_noise, on_window)
    for chunk in feature_chunks:
        yield from stream.push(chunk)
    yield from stream.end()


class OnlineWindows:
    """:func:`stream_online` in push form: :meth:`push` feature rows as they arrive, :meth:`end` to flush.

    The same windows run on the same rows whatever the pieces pushed, so the
    chunks equal :func:`stream_online`'s.  State is per instance (the motion
    sequence, the feature buffer, the sampler's generator): several streams
    can run side by side.  Arguments and errors: as :func:`stream_online`
    (checked here).
    """

    def __init__(self, sampler: DDIMSampler, source_motion: Tensor, condition_fn: ConditionFn,
                 warmup_features: Tensor, config: WindowConfig = SHIPPED_ONLINE,
                 initial_noise: Iterable[Tensor] | None = None,
                 on_window: Callable[[WindowRecord], None] | None = None) -> None:
        loop = _WindowLoop(sampler, source_motion, config, True, initial_noise, on_window)
        if warmup_features.shape[0] != config.overlap:
            raise ValueError(
                f"warmup_features must have {config.overlap} rows (the window overlap), got {warmup_features.shape[0]}"
            )
        self._state = _OnlineState(loop, condition_fn, warmup_features)

    def push(self, features: Tensor) -> list[MotionChunk]:
        """Add (k, A) feature rows; returns the chunks of the windows that completed (often none)."""
        self._state.append(features)
        ready = []
        while self._state.window_ready():
            ready.extend(self._state.run_window())
        return ready

    def end(self) -> list[MotionChunk]:
        """Run the final, padded window on the rows left (if any) and return what it emits."""
        return list(self._state.run_window()) if self._state.pending() else []
