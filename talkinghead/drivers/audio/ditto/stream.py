"""Streaming audio driver: speech arriving piece by piece → motion chunks as soon as they are ready.

The online counterpart of :meth:`.driver.AudioDriver.generate` (spec
``ditto-audio2motion.md`` §2.3 "Online", §7.1 "Online", §7.2): 16 kHz mono
audio chunks of any size (a microphone, a file read piece by piece) →
:func:`.features.online_features` (5 features per 3200 samples) →
:func:`.windows.stream_online` (one LMDM window per V new features) →
:class:`.postprocess.MotionPostprocessor` with the online anchor →
:class:`~talkinghead.motion.frame.MotionSequence` chunks (degrees, source scale).

Window settings: Ditto's shipped online config (:data:`.windows.SHIPPED_ONLINE`:
overlap 70, kernel 3, ``fix_kp_cond`` 1 on dims [0, 202)), so V = 10 new
frames per window, one LMDM call per 0.4 s of audio.  The first window only
sets the relative-motion anchor, so the first chunk (frames 0–9) comes after
the second window, i.e. once 14 160 samples (0.885 s) have been read
(20 features; the encoder looks 2 frames ahead); each later chunk after
another 6400 samples, i.e. 10 frames (0.4 s) per 0.4 s of audio.

Frame count: exactly :func:`.features.frame_count` (total samples), as
offline.  Ditto's loop emits a few frames past the end of the audio; they
are cut.  Audio so short that no window would complete (1280 samples or
fewer: 5 features, fewer than V) gets its features padded to V rows by
repeating the last one, as Ditto pads a short last window, so it still
yields its frames instead of nothing.

Push form: :class:`MotionStream` (``push(samples)`` → the chunks that became
ready, ``end()`` → the rest) holds the same loop's state explicitly, for a
caller that receives audio rather than pulling it (a live session, a
WebRTC callback); :func:`stream_motion` is a loop over it, so both give the
same motion.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import Tensor

from ....errors import ControlError, MediaError
from ....motion.frame import MotionSequence
from .condition import EyeConditions
from .diffusion import DDIMSampler
from .driver import AudioDriver, AudioDriverOptions
from .features import DITTO_CHUNKING, SAMPLES_PER_FRAME, Chunking, OnlineFeatureStream, frame_count, warmup_features
from .hubert import SAMPLE_RATE
from .postprocess import MotionPostprocessor, motion_row_from_raw
from .windows import SHIPPED_ONLINE, MotionChunk, OnlineWindows, WindowConfig


def stream_motion(driver: AudioDriver, audio_chunks: Iterable[np.ndarray], source_raw: Mapping[str, Tensor],
                  eyes: EyeConditions, options: AudioDriverOptions = AudioDriverOptions(),
                  config: WindowConfig = SHIPPED_ONLINE) -> Iterator[MotionSequence]:
    """Motion of a speech stream, yielded chunk by chunk while the audio arrives.

    Settings are checked, the sampler is seeded and the warm-up features
    (``overlap`` frames of silence) are encoded at the call; the audio is
    read lazily, only as far as the next chunk needs.  Silence is not
    refused (a live stream may start silent); an empty stream is.

    Args:
        driver: the audio driver (its LMDM and encoder are used).
        audio_chunks: (k,) float32 mono 16 kHz pieces of any lengths, in order.
        source_raw: M's raw heads for the source (pitch/yaw/roll logits
            (1, 66), t (1, 3), exp (1, 63), scale (1, 1), kp (1, 63)).
        eyes: the source's eye conditions.
        options: steps, seed, emotion and post-processing; ``options.windows``
            (the offline window settings) is not used.
        config: online window settings; overlap ≥ L/2 (40), so that the first
            emitted frame is frame 0.  Default: Ditto's shipped online config.

    Yields:
        :class:`MotionSequence` chunks of consecutive frames (degrees, source
        scale), 10 frames each with the default config; N frames in all,
        N = ⌈duration·25⌉ of the audio read.

    Raises:
        ControlError: overlap below L/2, an invalid emotion or window setting.
        WeightsError: the encoder's output does not fit (at the call).
        DiffusionError: an unsafe step count (at the call), or NaN motion.
        MediaError: the stream held no audio (when it ends).
        ValueError: a chunk that is not 1-D (when it is read).
    """
    stream = MotionStream(driver, source_raw, eyes, options, config)
    return _pulled(stream, audio_chunks)


def _pulled(stream: "MotionStream", audio_chunks: Iterable[np.ndarray]) -> Iterator[MotionSequence]:
    """Read the chunks one by one into ``stream``, yielding its motion as soon as each is ready."""
    for chunk in audio_chunks:
        yield from stream.push(chunk)
    yield from stream.end()


def samples_needed(frame: int, config: WindowConfig = SHIPPED_ONLINE, seq_len: int = 80,
                   chunking: Chunking = DITTO_CHUNKING) -> int:
    """Audio samples that must have arrived before the online loop emits motion frame ``frame``.

    Window j ≥ 1 emits frames (j − 1)·V … j·V − 1 (V = L − overlap) and needs
    the features up to (j + 1)·V − 1; feature n comes with encoder window
    g = n // current, complete once g·hop + window − front pad samples are in
    (:class:`.features.Chunking`).  Shipped settings: 14 160 samples (0.885 s)
    for frames 0–9, 6400 more per later 10 frames.
    """
    valid = seq_len - config.overlap
    window = frame // valid + 1
    group = ((window + 1) * valid - 1) // chunking.current
    return group * chunking.hop_samples + chunking.window_samples - chunking.online_front_pad


def online_lookahead_ms(config: WindowConfig = SHIPPED_ONLINE, seq_len: int = 80, chunking: Chunking = DITTO_CHUNKING,
                        extra_frames: int = 0) -> tuple[float, float]:
    """(least, most) algorithmic look-ahead of the online loop, ms: audio past a frame's end needed to emit it.

    Derived from the window constants (:func:`samples_needed`): with Ditto's
    shipped online windows (L 80, overlap 70, chunking 3/5/2) 485 ms for the
    last frame of each 10-frame chunk, 845 ms for its first.  ``extra_frames``:
    a consumer that also needs that many frames of audio past each frame
    (a crossfade's look-ahead) — the larger need counts.
    """
    valid = seq_len - config.overlap
    ahead = []
    for frame in range(2 * valid * chunking.current):
        end = (frame + 1) * SAMPLES_PER_FRAME
        need = max(samples_needed(frame, config, seq_len, chunking), end + extra_frames * SAMPLES_PER_FRAME)
        ahead.append((need - end) * 1000.0 / SAMPLE_RATE)
    return min(ahead), max(ahead)


class MotionStream:
    """:func:`stream_motion` in push form: :meth:`push` audio as it arrives, :meth:`end` to flush.

    The same encoder windows and LMDM windows run whatever the sizes of the
    pieces pushed, so the motion equals :func:`stream_motion`'s (and one push
    of the whole clip gives the same motion as many small ones).  All state
    (feature buffer, motion sequence, the sampler's seeded generator) is the
    instance's own: several streams can run side by side in one process.
    Settings are checked, the sampler seeded and the warm-up encoded here.

    Args: as :func:`stream_motion` (without the chunks).

    Attributes:
        samples: audio samples pushed so far.
        frames: motion frames returned so far.

    Raises:
        ControlError: overlap below L/2, an invalid emotion or window setting.
        WeightsError, DiffusionError: as :func:`stream_motion`.
    """

    def __init__(self, driver: AudioDriver, source_raw: Mapping[str, Tensor], eyes: EyeConditions,
                 options: AudioDriverOptions = AudioDriverOptions(), config: WindowConfig = SHIPPED_ONLINE) -> None:
        seq_len = driver.lmdm.config.seq_len
        self.valid = seq_len - config.overlap
        if config.overlap < self.valid:
            raise ControlError(f"streaming needs a window overlap of at least {-(-seq_len // 2)} frames "
                               f"(half the {seq_len}-frame window), got {config.overlap}")
        self.device, self.config, self.seq_len = driver.device, config, seq_len
        source_kp = source_raw["kp"].to(driver.device)
        source_row = motion_row_from_raw(source_raw).to(driver.device)[0]
        sampler = DDIMSampler(driver.lmdm, steps=options.steps, seed=options.seed)
        condition, first_condition = options.condition(source_row, source_kp, eyes)
        self._post = MotionPostprocessor(source_row, source_kp, options.post, stitching=None, num_frames=None)
        warmup = torch.from_numpy(warmup_features(driver.encoder, config.overlap)).to(driver.device)
        self._features = OnlineFeatureStream(driver.encoder)
        self._windows = OnlineWindows(sampler, first_condition, condition, warmup, config)
        self._rows, self._last_row = 0, None
        self.samples, self.frames = 0, 0

    @torch.inference_mode()
    def push(self, samples: np.ndarray) -> list[MotionSequence]:
        """Add (k,) float32 mono 16 kHz samples (k ≥ 0); returns the motion chunks now ready (often none).

        Raises:
            ValueError: ``samples`` is not 1-D.
        """
        features = self._features.push(samples)
        self.samples += np.asarray(samples).size
        return self._motion([chunk for rows in features for chunk in self._windows.push(self._tensor(rows))])

    @torch.inference_mode()
    def end(self) -> list[MotionSequence]:
        """Flush: the last frames, cut at the audio's end (⌈duration·25⌉ frames in all).

        Raises:
            MediaError: nothing was pushed.
        """
        if self.samples == 0:
            raise MediaError("the audio stream is empty: send at least 0.04 s of 16 kHz speech")
        chunks = [chunk for rows in self._features.end() for chunk in self._windows.push(self._tensor(rows))]
        if self._rows < self.valid:  # so short that no window ran: pad, as Ditto pads a short window
            chunks += self._windows.push(self._last_row[-1:].expand(self.valid - self._rows, -1))
        chunks += self._windows.end()
        total = frame_count(self.samples)
        return self._motion([replace(chunk, frames=chunk.frames[:max(0, total - chunk.first_frame)])
                             for chunk in chunks])

    def _tensor(self, rows: np.ndarray) -> Tensor:
        self._last_row = torch.from_numpy(rows).to(self.device)
        self._rows += rows.shape[0]
        return self._last_row

    def _motion(self, chunks: list[MotionChunk]) -> list[MotionSequence]:
        ready = [self._post(chunk.frames, chunk.anchor, chunk.first_frame).motion for chunk in chunks
                 if chunk.frames.shape[0]]
        self.frames += sum(motion.n_frames for motion in ready)
        return ready
