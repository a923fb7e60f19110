"""Speech weight per video frame: where a live session shows the speech motion, the idle motion, or a crossfade.

Each 40 ms frame of audio (640 samples at 16 kHz) is *voiced* when its RMS
exceeds :attr:`~talkinghead.motion.idle.IdleOptions.threshold`.  The weight
of frame k is 1 on voiced frames and within ``hold`` after one (pauses
between words stay speech), then falls linearly to 0 over F = ``crossfade``
frames; before a voiced frame it rises over the F frames that precede it,
so the mouth is already in speech motion when the voice starts::

    w(k) = max(1 − d⁺(k) / (F + 1),  1 − max(0, d⁻(k) − H) / (F + 1)),  clamped to [0, 1]

with d⁺ the frames to the next voiced frame (within F), d⁻ the frames since
the last one, H the hold in frames.  Frame k's weight therefore needs the
audio up to frame k + F: F·40 ms of look-ahead (0.4 s by default, inside
the 485 ms Ditto's online windows already need, so it adds no latency).
State is bounded (the flags of the last F + 1 frames and the last voiced
index); the weights do not depend on how the audio was cut into chunks.
"""

from __future__ import annotations

import numpy as np
import torch

from .idle import IdleOptions


class SpeechGate:
    """Voice activity → per-frame speech weights, in push form.

    Args:
        options: threshold, hold and crossfade.
        fps: video frame rate, Hz.
        sample_rate: audio rate, Hz (a multiple of ``fps``).

    Attributes:
        fade: crossfade length F, frames.
        hold: hold H, frames.
    """

    def __init__(self, options: IdleOptions = IdleOptions(), fps: float = 25.0, sample_rate: int = 16000) -> None:
        self.frame_samples = int(round(sample_rate / fps))
        self.fade = max(1, int(round(options.crossfade * fps)))
        self.hold = int(round(options.hold * fps))
        self.threshold = options.threshold
        self._rest = np.zeros(0, np.float32)
        self._flags: list[bool] = []  # frames [self._next, self._known)
        self._next = 0  # first frame whose weight is not taken yet
        self._last_voiced = -10 ** 9
        self.ended = False

    @property
    def known(self) -> int:
        """Frames whose voicing is known."""
        return self._next + len(self._flags)

    @property
    def ready(self) -> int:
        """Frames (from 0) whose weight is final: all known once ended, else those F frames before the last known."""
        return self.known if self.ended else max(self._next, self.known - self.fade)

    def push(self, samples: np.ndarray) -> None:
        """Add (k,) float32 audio samples."""
        audio = np.concatenate([self._rest, np.asarray(samples, np.float32).reshape(-1)])
        whole = audio.size // self.frame_samples * self.frame_samples
        self._add(audio[:whole].reshape(-1, self.frame_samples))
        self._rest = audio[whole:]

    def end(self) -> None:
        """The stream ended: a last partial frame counts (its RMS over the samples it has); frames after it are silent."""
        if self._rest.size:
            self._add(self._rest[None])
            self._rest = self._rest[:0]
        self.ended = True

    def _add(self, frames: np.ndarray) -> None:
        rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1)) if frames.size else np.zeros(0)
        self._flags.extend(bool(v) for v in rms > self.threshold)

    def take(self, n: int) -> torch.Tensor:
        """(n,) float32 weights of the next n frames, in [0, 1].

        Raises:
            ValueError: fewer than n weights are final (see :attr:`ready`).
        """
        if n > self.ready - self._next:
            raise ValueError(f"only {self.ready - self._next} speech weights are final, asked for {n}")
        out = np.zeros(n, np.float32)
        span = self.fade + 1
        for i in range(n):
            ahead = self._flags[i:i + span]
            if ahead[0]:
                self._last_voiced = self._next + i
            upcoming = next((d for d, voiced in enumerate(ahead) if voiced), None)
            rising = 0.0 if upcoming is None else 1 - upcoming / span
            since = self._next + i - self._last_voiced
            falling = 1 - max(0, since - self.hold) / span
            out[i] = min(1.0, max(0.0, rising, falling))
        del self._flags[:n]
        self._next += n
        return torch.from_numpy(out)
