"""Audio in: speech for the audio driver, and audio tracks to copy into videos.

Any file FFmpeg (via PyAV) reads is accepted — WAV, MP3, M4A/AAC,
WebM/Opus, OGG/Vorbis, FLAC, or the audio track of a video — in any channel
layout and sample rate.  Resampling uses PyAV's :class:`av.AudioResampler`
(FFmpeg's libswresample with its default windowed-sinc filter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import av
import av.audio.stream
import av.container
import numpy as np

from talkinghead.errors import MediaError
from talkinghead.media._files import PathLike, decoding, open_input, stream_duration_s

AUDIO_HINT = "use a WAV, MP3, M4A/AAC, OGG, Opus/WebM or FLAC file, or a video with sound"
"""What to do when a file is not usable as audio (end of MediaError messages)."""


@dataclass(frozen=True)
class AudioInfo:
    """What :func:`probe_audio` reads from a file's first audio stream.

    Attributes:
        duration_s: duration in seconds (as stored; counted by decoding when
            the container does not store it).
        sample_rate: samples per second per channel, Hz.
        channels: number of channels (1 = mono, 2 = stereo, ...).
        codec: FFmpeg decoder name (``"pcm_s16le"``, ``"aac"``, ``"opus"``...).
    """

    duration_s: float
    sample_rate: int
    channels: int
    codec: str


def probe_audio(path: PathLike) -> AudioInfo:
    """Describe the first audio stream of a media file without decoding it.

    Args:
        path: an audio file, or a video file with an audio track.

    Returns:
        The stream's :class:`AudioInfo`.

    Raises:
        MediaError: missing file, not a media file, no audio stream, or a
            damaged file (when its duration has to be counted by decoding).
    """
    with open_input(path, "audio", AUDIO_HINT) as container:
        stream = first_audio_stream(container, path)
        ctx = stream.codec_context
        duration = stream_duration_s(container, stream)
        if duration is None:
            duration = _count_samples(container, stream, path) / ctx.sample_rate
        return AudioInfo(duration_s=duration, sample_rate=ctx.sample_rate, channels=ctx.channels, codec=ctx.name)


def load_audio(path: PathLike, sample_rate: int = 16000) -> np.ndarray:
    """Decode the first audio stream of a file to mono float samples.

    Channels are resampled to ``sample_rate`` by libswresample (PyAV's
    :class:`av.AudioResampler`, default filter), then averaged to mono.
    Integer PCM is scaled by 1/32768 (16-bit) etc., so full scale is ±1;
    values are clipped to [-1, 1] (the resampling filter can overshoot on
    clipped input by a few percent).

    Args:
        path: an audio file, or a video file with an audio track.
        sample_rate: output rate in Hz, > 0 (16000 for the speech encoders).

    Returns:
        (N,) float32 array in [-1, 1], N ≈ duration_s * sample_rate.

    Raises:
        ValueError: ``sample_rate`` is not positive.
        MediaError: missing file, not a media file, no audio stream, a
            damaged file, or no audio samples at all.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    with open_input(path, "audio", AUDIO_HINT) as container:
        stream = first_audio_stream(container, path)
        chunks = [planar.mean(axis=0) for planar in decode_audio(container, stream, path, sample_rate)]
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise MediaError(f"{path} contains no audio samples; check that the recording is not empty")
    return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)


def first_audio_stream(container: av.container.InputContainer, path: PathLike) -> av.audio.stream.AudioStream:
    """The first audio stream of an open container.

    Raises:
        MediaError: the file has no audio stream (e.g. a silent video).
    """
    if not container.streams.audio:
        raise MediaError(f"{path} has no audio stream; {AUDIO_HINT}")
    return container.streams.audio[0]


def decode_audio(
    container: av.container.InputContainer,
    stream: av.audio.stream.AudioStream,
    path: PathLike,
    sample_rate: int,
    layout: str | None = None,
) -> Iterator[np.ndarray]:
    """Decode ``stream`` lazily into planar float chunks at ``sample_rate``.

    When the container states the stream's duration, output stops there: the
    decoder would otherwise also return the encoder's end padding (up to one
    codec frame, e.g. 1024 AAC samples, that MP4 edit lists hide).

    Args:
        container: the open input container holding ``stream``.
        stream: the audio stream to decode.
        path: the file, for error messages.
        sample_rate: output rate in Hz.
        layout: output channel layout (``"mono"``, ``"stereo"``) mixed by
            libswresample, or ``None`` to keep the stream's channels.

    Yields:
        (C, n) float32 chunks, full scale ±1, in stream order; n varies.

    Raises:
        MediaError: the file is damaged or truncated.
    """
    remaining = None
    if stream.duration is not None and stream.time_base is not None:
        remaining = round(stream.duration * stream.time_base * sample_rate)
    for chunk in _resampled_chunks(container, stream, path, sample_rate, layout):
        if remaining is not None:
            chunk = chunk[:, :remaining]
            remaining -= chunk.shape[1]
        if chunk.shape[1]:
            yield chunk


def _resampled_chunks(
    container: av.container.InputContainer,
    stream: av.audio.stream.AudioStream,
    path: PathLike,
    sample_rate: int,
    layout: str | None,
) -> Iterator[np.ndarray]:
    """Every decoded frame of ``stream`` through libswresample, as (C, n) float32 arrays."""
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate)
    with decoding(path, "audio"):
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                yield out.to_ndarray()
        for out in resampler.resample(None):
            yield out.to_ndarray()


def _count_samples(container: av.container.InputContainer, stream: av.audio.stream.AudioStream, path: PathLike) -> int:
    """Number of samples per channel in ``stream``, by decoding it."""
    with decoding(path, "audio"):
        return sum(frame.samples for frame in container.decode(stream))
