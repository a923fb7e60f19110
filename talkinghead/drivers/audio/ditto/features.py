"""Ditto's audio front end: 16 kHz waveform → 1024-d audio features at 25 fps (spec ``ditto-audio2motion.md`` §2).

The encoder (:mod:`.hubert`) sees the audio in overlapping windows of
``past + current + future`` video frames (Ditto: 3 + 5 + 2 = 10 frames of
640 samples, plus the 80 samples that make 20 encoder rows).  Of each
window's 50 Hz rows only those of the ``current`` frames are kept and
consecutive pairs are averaged, giving ``current`` features at 25 fps
(spec §2.3).  Two schedules, both Ditto's:

* :func:`offline_features` — a whole clip: feature n averages encoder rows
  that cover samples [640n − 80, 640n + 640) of the audio;
* :func:`online_features` — streaming: every 3200 new samples give 5
  features, each 80 samples (5 ms) later than offline: [640n, 640n + 720).
  :func:`warmup_features` gives the rows the online window loop starts with.

Frame counts: the product renders exactly ⌈duration × 25⌉ frames
(:func:`frame_count`); Ditto's float expression (:func:`ditto_frame_count`)
gives one more for some lengths (spec §2.1).

Features are numpy float32 (the encoder is an onnxruntime session); the
window loops take them as tensors (``torch.from_numpy``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from ....errors import WeightsError
from .hubert import ENCODER_RECEPTIVE_FIELD, ENCODER_STRIDE, FEATURE_DIM, SAMPLE_RATE, AudioEncoder

FPS = 25
"""Video (and audio-feature) frame rate, Hz."""

SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
"""640 samples of 16 kHz audio per video frame; two encoder rows."""

_DITTO_FRAME_SECONDS = 0.04
"""Ditto's literal for one frame in seconds; its window starts are computed with it in double precision."""


def frame_count(n_samples: int, sample_rate: int = SAMPLE_RATE, fps: int = FPS) -> int:
    """Number of video frames for an audio clip: exactly ⌈duration × fps⌉, in integers.

    This is the product's count (640 samples per frame at 16 kHz / 25 fps):
    4480 samples → 7 frames.  Ditto computes the same ceiling in floating
    point and over-counts some lengths (:func:`ditto_frame_count`).

    Args:
        n_samples: audio length in samples, ≥ 0.
        sample_rate: Hz, > 0.
        fps: video frame rate, Hz, > 0.

    Raises:
        ValueError: a negative length or a non-positive rate.
    """
    _check_count_args(n_samples, sample_rate, fps)
    return -(-n_samples * fps // sample_rate)


def ditto_frame_count(n_samples: int, sample_rate: int = SAMPLE_RATE, fps: int = FPS) -> int:
    """Ditto's frame count, ``ceil(n / sample_rate * fps)`` in double precision, in that order (spec §2.1).

    Equals :func:`frame_count` except where rounding pushes an exact
    multiple just above an integer (4480, 8960, 17920, 35200, 35840, …
    samples at 16 kHz / 25 fps give one frame more).  Use it only to
    reproduce Ditto's output length.

    Raises:
        ValueError: a negative length or a non-positive rate.
    """
    _check_count_args(n_samples, sample_rate, fps)
    return math.ceil(n_samples / sample_rate * fps)


def _check_count_args(n_samples: int, sample_rate: int, fps: int) -> None:
    if n_samples < 0 or sample_rate <= 0 or fps <= 0:
        raise ValueError(f"need n_samples >= 0 and positive rates, got {n_samples}, {sample_rate} Hz, {fps} fps")


@dataclass(frozen=True)
class Chunking:
    """Ditto's ``chunksize`` (past, current, future), in video frames (spec §2.3).

    A window holds ``past + current + future`` frames of audio plus the 80
    samples that complete the last encoder row (receptive field 400, stride
    320); of its 2·(past + current + future) encoder rows the 2·current rows
    before the last 2·future are pooled into ``current`` features.
    """

    past: int = 3
    current: int = 5
    future: int = 2

    @property
    def window_samples(self) -> int:
        """Samples per encoder window (6480 for Ditto's chunking)."""
        frames = self.past + self.current + self.future
        return frames * SAMPLES_PER_FRAME + ENCODER_RECEPTIVE_FIELD - ENCODER_STRIDE

    @property
    def hop_samples(self) -> int:
        """Samples between consecutive windows: ``current`` frames (3200)."""
        return self.current * SAMPLES_PER_FRAME

    @property
    def offline_front_pad(self) -> int:
        """Zeros before the audio offline (2000): window 0 pools audio from sample −80."""
        return self.window_samples - (self.current + self.future) * SAMPLES_PER_FRAME

    @property
    def online_front_pad(self) -> int:
        """Zeros before the audio online (1920 = ``past`` frames): window 0 pools audio from sample 0."""
        return self.past * SAMPLES_PER_FRAME

    def pool(self, rows: np.ndarray) -> np.ndarray:
        """Encoder rows of one window → its features.

        Args:
            rows: (T, 1024) float32 at 50 Hz, T ≥ 2·(current + future).

        Returns:
            (current, 1024) float32 at 25 fps: rows −2·(current + future) …
            −2·future − 1, consecutive pairs averaged.

        Raises:
            WeightsError: too few rows (the encoder does not fit the window).
        """
        last = rows.shape[0] - 2 * self.future
        first = last - 2 * self.current
        if first < 0:
            raise WeightsError(f"the audio encoder gave {rows.shape[0]} rows for a {self.window_samples}-sample "
                               f"window, need at least {2 * (self.current + self.future)}; use Ditto's HuBERT graph")
        return rows[first:last].reshape(self.current, 2, rows.shape[1]).mean(axis=1, dtype=np.float32)


DITTO_CHUNKING = Chunking()
"""Ditto's chunksize (3, 5, 2), used in training and inference."""


def ditto_window_start(frame: int) -> int:
    """Offline start, in the padded signal, of the window whose first feature is ``frame``.

    Ditto's double-precision ``int(frame · 0.04 · 16000)`` (spec §2.3): 640·frame,
    except 640·frame − 1 for some frames (first 1615, then 3205, 3230, …).
    """
    return int(frame * _DITTO_FRAME_SECONDS * SAMPLE_RATE)


def offline_features(encoder: AudioEncoder, samples: np.ndarray, n_frames: int | None = None,
                     chunking: Chunking = DITTO_CHUNKING) -> np.ndarray:
    """Audio features of a whole clip, Ditto's offline schedule (spec §2.3).

    The audio gets ``offline_front_pad`` zeros in front and one window of
    zeros at the end; windows start at :func:`ditto_window_start` (i) for
    i = 0, current, 2·current, … < n_frames, each encoded on its own (one
    window in memory at a time).  Feature n averages the encoder rows over
    samples [640n − 80, 640n + 640).

    Args:
        encoder: e.g. :class:`~.hubert.OnnxAudioEncoder`.
        samples: (S,) float32 mono waveform at 16 kHz.
        n_frames: features wanted, 0 ≤ n_frames ≤ :func:`ditto_frame_count` (S);
            default :func:`frame_count` (S).
        chunking: window layout (Ditto's by default).

    Returns:
        (n_frames, 1024) float32 at 25 fps.

    Raises:
        ValueError: ``samples`` is not 1-D, or ``n_frames`` is out of range.
        WeightsError: the encoder's output does not fit (see :class:`~.hubert.AudioEncoder`).
    """
    samples = _mono(samples)
    n_frames = frame_count(samples.size) if n_frames is None else n_frames
    if not 0 <= n_frames <= ditto_frame_count(samples.size):
        raise ValueError(f"n_frames must be in [0, {ditto_frame_count(samples.size)}] for {samples.size} samples, "
                         f"got {n_frames}")
    window = chunking.window_samples
    padded = np.concatenate([np.zeros(chunking.offline_front_pad, np.float32), samples, np.zeros(window, np.float32)])
    firsts = range(0, n_frames, chunking.current)
    features = np.empty((len(firsts) * chunking.current, FEATURE_DIM), np.float32)
    for first in firsts:
        start = ditto_window_start(first)
        features[first:first + chunking.current] = chunking.pool(encoder(padded[start:start + window]))
    return features[:n_frames]


def online_features(encoder: AudioEncoder, audio_chunks: Iterable[np.ndarray],
                    chunking: Chunking = DITTO_CHUNKING) -> Iterator[np.ndarray]:
    """Audio features while audio arrives, Ditto's online schedule (spec §2.3 "Online").

    The stream gets ``online_front_pad`` zeros in front; a window is encoded
    as soon as it is complete, the next one starting ``hop_samples`` later.
    When ``audio_chunks`` ends, every window that starts before the end of
    the (padded) stream is encoded zero-padded, so S samples give
    ``current``·⌈(S + 1920) / 3200⌉ features — usually more than
    :func:`frame_count` (S); the window loop stops at the audio's length.
    Feature n averages the encoder rows over samples [640n, 640n + 720),
    80 samples later than :func:`offline_features`.

    Args:
        encoder: e.g. :class:`~.hubert.OnnxAudioEncoder`.
        audio_chunks: (k,) float32 mono 16 kHz pieces of any lengths, in order.
        chunking: window layout (Ditto's by default).

    Yields:
        (current, 1024) float32 features at 25 fps, one array per window.

    Raises:
        ValueError: a chunk is not 1-D.
        WeightsError: the encoder's output does not fit.
    """
    stream = OnlineFeatureStream(encoder, chunking)
    for chunk in audio_chunks:
        yield from stream.push(chunk)
    yield from stream.end()


class OnlineFeatureStream:
    """:func:`online_features` in push form: feed audio with :meth:`push`, finish with :meth:`end`.

    Same windows, same features, whatever the chunk sizes (a window is
    encoded once all its samples are in).  Per-stream state only: the
    samples not yet consumed (at most one window).

    Args:
        encoder: e.g. :class:`~.hubert.OnnxAudioEncoder`.
        chunking: window layout (Ditto's by default).
    """

    def __init__(self, encoder: AudioEncoder, chunking: Chunking = DITTO_CHUNKING) -> None:
        self.encoder, self.chunking = encoder, chunking
        self._pending = np.zeros(chunking.online_front_pad, np.float32)

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        """Add (k,) float32 16 kHz samples; returns the (current, 1024) feature arrays now complete.

        Raises:
            ValueError: ``samples`` is not 1-D.
            WeightsError: the encoder's output does not fit.
        """
        window, hop = self.chunking.window_samples, self.chunking.hop_samples
        self._pending = np.concatenate([self._pending, _mono(samples)])
        ready = []
        while self._pending.size >= window:
            ready.append(self.chunking.pool(self.encoder(self._pending[:window])))
            self._pending = self._pending[hop:]
        return ready

    def end(self) -> list[np.ndarray]:
        """The features of every window that starts before the end, zero-padded (see :func:`online_features`)."""
        window, hop = self.chunking.window_samples, self.chunking.hop_samples
        ready = []
        while self._pending.size:
            ready.append(self.chunking.pool(self.encoder(np.pad(self._pending, (0, window - self._pending.size)))))
            self._pending = self._pending[hop:]
        return ready


def warmup_features(encoder: AudioEncoder, overlap: int, chunking: Chunking = DITTO_CHUNKING) -> np.ndarray:
    """Rows the online window loop starts with: offline features of ``overlap`` frames of silence (spec §2.3).

    Args:
        encoder: the same encoder as for the stream.
        overlap: ``overlap_v2``, ≥ 0 frames.
        chunking: window layout (Ditto's by default).

    Returns:
        (overlap, 1024) float32.

    Raises:
        ValueError: negative ``overlap``.
    """
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    return offline_features(encoder, np.zeros(overlap * SAMPLES_PER_FRAME, np.float32), overlap, chunking)


def _mono(samples: np.ndarray) -> np.ndarray:
    """Check a waveform is 1-D and return it as float32."""
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(f"expected a 1-D mono waveform, got shape {samples.shape}")
    return samples.astype(np.float32, copy=False)
