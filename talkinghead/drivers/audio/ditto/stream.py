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
"""

from __future__ import annotations

from typing import Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import Tensor

from ....errors import ControlError, MediaError
from ....motion.frame import MotionSequence
from .condition import ConditionBuilder, EyeConditions
from .diffusion import DDIMSampler
from .driver import AudioDriver, AudioDriverOptions
from .features import frame_count, online_features, warmup_features
from .hubert import AudioEncoder
from .postprocess import MotionPostprocessor, motion_row_from_raw
from .windows import SHIPPED_ONLINE, WindowConfig, stream_online

class _AudioTally:
    """Passes audio chunks through, counting their samples; ``ended`` once the input is exhausted."""

    def __init__(self, chunks: Iterable[np.ndarray]) -> None:
        self._chunks = chunks
        self.samples = 0
        self.ended = False

    def __iter__(self) -> Iterator[np.ndarray]:
        for chunk in self._chunks:
            self.samples += np.asarray(chunk).size
            yield chunk
        self.ended = True


def _feature_rows(encoder: AudioEncoder, audio: _AudioTally, min_rows: int, device: torch.device) -> Iterator[Tensor]:
    """Online features as tensors; at least ``min_rows`` rows, so that the first window runs.

    Raises:
        MediaError: the audio stream held no samples.
    """
    rows, last = 0, None
    for features in online_features(encoder, audio):
        last = torch.from_numpy(features).to(device)
        rows += last.shape[0]
        yield last
    if audio.samples == 0:
        raise MediaError("the audio stream is empty: send at least 0.04 s of 16 kHz speech")
    if rows < min_rows:
        yield last[-1:].expand(min_rows - rows, -1)


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
    seq_len = driver.lmdm.config.seq_len
    valid = seq_len - config.overlap
    if config.overlap < valid:
        raise ControlError(f"streaming needs a window overlap of at least {-(-seq_len // 2)} frames "
                           f"(half the {seq_len}-frame window), got {config.overlap}")
    source_kp = source_raw["kp"].to(driver.device)
    source_row = motion_row_from_raw(source_raw).to(driver.device)[0]
    sampler = DDIMSampler(driver.lmdm, steps=options.steps, seed=options.seed)
    condition, first_condition = options.condition(source_row, source_kp, eyes)
    post = MotionPostprocessor(source_row, source_kp, options.post, stitching=None, num_frames=None)
    warmup = torch.from_numpy(warmup_features(driver.encoder, config.overlap)).to(driver.device)
    audio = _AudioTally(audio_chunks)
    features = _feature_rows(driver.encoder, audio, valid, driver.device)
    return _stream(sampler, features, audio, first_condition, condition, post, warmup, config)


@torch.inference_mode()
def _stream(sampler: DDIMSampler, features: Iterator[Tensor], audio: _AudioTally, first_condition: Tensor,
            condition: ConditionBuilder, post: MotionPostprocessor, warmup: Tensor,
            config: WindowConfig) -> Iterator[MotionSequence]:
    """Run the online window loop and post-process each emitted chunk, cut at the audio's end."""
    for chunk in stream_online(sampler, features, first_condition, condition, warmup, config):
        frames = chunk.frames
        if audio.ended:
            frames = frames[:max(0, frame_count(audio.samples) - chunk.first_frame)]
        if frames.shape[0]:
            yield post(frames, chunk.anchor, chunk.first_frame).motion
