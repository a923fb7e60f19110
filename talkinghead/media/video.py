"""Video in and out with PyAV.

* :func:`probe_video` describes a clip (size after rotation, frame rate,
  frame count, duration, rotation, audio).
* :class:`VideoReader` streams RGB uint8 frames lazily — memory does not grow
  with clip length — with the container's rotation (display matrix) applied,
  and can resample variable-frame-rate input to a constant rate.
* :class:`VideoWriter` encodes RGB uint8 frames (or their yuv420p planes,
  :class:`~talkinghead.media.yuv.Yuv420Frame`, converted on the GPU) as H.264
  (libx264, yuv420p, BT.709 limited range) in MP4/MOV/MKV, optionally with an AAC audio track
  cut from another media file (:class:`AudioSource`) or made of samples
  already decoded (:class:`AudioSamples`), and writes atomically;
  :func:`write_frames` encodes a whole stream of frames with it.

Rotation convention: degrees counter-clockwise, as FFmpeg's
``av_display_rotation_get`` / PyAV's ``VideoFrame.rotation`` report them; a
phone clip shot upright usually stores 90 or 270.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable, Iterator, NamedTuple

import av
import av.audio.stream
import av.container
import av.stream
import av.video.stream
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc, Interpolation

from talkinghead.errors import MediaError
from talkinghead.media._files import PathLike, atomic_output, decoding, open_input, stream_duration_s
from talkinghead.media.audio import AUDIO_HINT, decode_audio, first_audio_stream
from talkinghead.media.provenance import ProvenanceOptions
from talkinghead.media.yuv import Yuv420Frame
from talkinghead.threads import BackgroundSink

VIDEO_HINT = "use an MP4, MOV, MKV, WebM or AVI video"
"""What to do when a file is not usable as video (end of MediaError messages)."""

WRITE_SUFFIXES = (".mp4", ".mov", ".mkv")
"""File suffixes :class:`VideoWriter` can write."""

_STILL_IMAGE_DEMUXERS = ("image2",)  # plus every "*_pipe" demuxer (png_pipe, jpeg_pipe, ...)
_MAX_FPS_DENOMINATOR = 1001 * 1000  # exact for 30000/1001-style NTSC rates
_AAC_SAMPLE_RATES = frozenset({96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000})
_AAC_FALLBACK_RATE = 48000
_AAC_BIT_RATE_PER_CHANNEL = 96_000
# swscale flags: its default fast YUV->RGB path is biased (about -1 level on
# average, measured on lp_d0); accurate rounding plus full horizontal chroma
# interpolation is unbiased (|mean error| < 0.3) at about 2x the cost
# (16 ms per 720x1280 frame).  RGB->YUV only needs accurate rounding.
_YUV_TO_RGB_FLAGS = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
_RGB_TO_YUV_FLAGS = Interpolation.BILINEAR | Interpolation.ACCURATE_RND


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` reads from a clip's first video stream.

    Attributes:
        width: displayed frame width in pixels (after rotation).
        height: displayed frame height in pixels (after rotation).
        fps: average frame rate in Hz (frames per second).
        n_frames: frame count stored in the container, or
            ``round(duration_s * fps)`` when it stores none (e.g. WebM).
        duration_s: duration in seconds (0.0 when the container states none).
        rotation: counter-clockwise rotation applied for display, degrees,
            one of 0, 90, 180, 270.
        has_audio: whether the file also has an audio stream.
    """

    width: int
    height: int
    fps: float
    n_frames: int
    duration_s: float
    rotation: int
    has_audio: bool


def probe_video(path: PathLike) -> VideoInfo:
    """Describe a video file; decodes only its first frame (for the rotation).

    Args:
        path: a video file.

    Returns:
        The clip's :class:`VideoInfo`.

    Raises:
        MediaError: missing file, not a video (text, audio-only, still image),
            no decodable frame, or a damaged file.
    """
    with _open_video(path) as (container, stream):
        with decoding(path, "video"):
            first = next(container.decode(stream), None)
        if first is None:
            raise MediaError(f"video {path} contains no frames; {VIDEO_HINT}")
        rotation = _rotation_of(first)
        fps = float(_average_rate(stream, path))
        duration = stream_duration_s(container, stream)
        n_frames = stream.frames or round((duration or 0.0) * fps)
        if duration is None:
            duration = n_frames / fps
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(
            width=width,
            height=height,
            fps=fps,
            n_frames=n_frames,
            duration_s=duration,
            rotation=rotation,
            has_audio=bool(container.streams.audio),
        )


def rotate_frame(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate an image counter-clockwise by a multiple of 90 degrees.

    Args:
        frame: (H, W, C) array.
        rotation: counter-clockwise degrees, a multiple of 90 (any sign).

    Returns:
        C-contiguous (H, W, C) array for 0/180, (W, H, C) for 90/270.

    Raises:
        ValueError: ``rotation`` is not a multiple of 90.
    """
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    return np.ascontiguousarray(np.rot90(frame, k=(rotation // 90) % 4))


class VideoReader:
    """Stream the frames of a video file as RGB uint8 arrays.

    Frames are decoded lazily, one at a time, so memory does not depend on the
    clip length.  The container's rotation is applied to every frame.  With
    ``fps`` given, the output is resampled to that constant rate by
    timestamps: output tick ``i`` is at ``t0 + i / fps`` (``t0`` = the first
    frame's timestamp, computed exactly, so there is no drift) and shows the
    latest decoded frame at or before it; ticks run until the end of the last
    frame (its timestamp plus its duration).  Frames are dropped or repeated
    as needed, never blended.

    Iterate it once, as a context manager::

        with VideoReader("clip.mp4", fps=25) as reader:
            for frame in reader:      # (H, W, 3) uint8 RGB
                ...

    Args:
        path: a video file.
        max_frames: stop after this many output frames (``None``: all).
        fps: constant output rate in Hz, or ``None`` to return every decoded
            frame at its own timing.

    Attributes:
        info: the clip's :class:`VideoInfo` (source rate, size, rotation...).
        decoded_frames: frames decoded so far; once iteration has run to the
            end of the clip (no ``max_frames`` cut), the clip's true frame
            count, whatever ticks the rate resampling dropped or repeated.

    Raises:
        MediaError: (on construction) the file is missing or not a video, see
            :func:`probe_video`; (while iterating) the file is damaged.
        ValueError: ``max_frames`` < 1 or ``fps`` not a positive finite number.
    """

    def __init__(self, path: PathLike, *, max_frames: int | None = None, fps: float | None = None) -> None:
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be at least 1, got {max_frames}")
        self._out_rate = _as_rate(fps) if fps is not None else None
        self._path = Path(path)
        self._max_frames = max_frames
        self.decoded_frames = 0
        self.info = probe_video(path)
        self._resources = contextlib.ExitStack()
        self._container, self._stream = self._resources.enter_context(_open_video(path))
        self._stream.thread_type = "AUTO"

    @property
    def fps(self) -> float:
        """Rate of the frames this reader yields, Hz (the ``fps`` asked for, else the clip's average)."""
        return float(self._out_rate) if self._out_rate is not None else self.info.fps

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file; iteration stops."""
        self._resources.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield (H, W, 3) uint8 RGB frames, H/W as in :attr:`info` (rotation applied)."""
        return (frame for _, frame in self.indexed())

    def indexed(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(decoded index, frame)``: each frame of :meth:`__iter__` with the index of the decoded frame it is.

        Without ``fps`` the index counts up from 0; with it, a decoded frame
        shown at several ticks repeats its index and a dropped one is skipped
        (per-frame data of the clip, such as landmark files, is indexed by
        decoded frame).
        """
        timed = (_TimedFrame((i, t.frame), t.start, t.duration) for i, t in enumerate(self._timed_frames()))
        pairs: Iterable[tuple[int, av.VideoFrame]] = (
            _resample_to_rate(timed, self._out_rate) if self._out_rate is not None else (t.frame for t in timed)
        )
        for index, frame in itertools.islice(pairs, self._max_frames):
            yield index, _frame_to_rgb(frame)

    def _timed_frames(self) -> Iterator[_TimedFrame]:
        """Decoded frames with exact timestamps in seconds (pts, or the previous one + one frame when missing)."""
        nominal = 1 / _average_rate(self._stream, self._path)
        time_base = self._stream.time_base
        previous: _TimedFrame | None = None
        with decoding(self._path, "video"):
            for frame in self._container.decode(self._stream):
                if frame.pts is not None:
                    start = frame.pts * time_base
                else:
                    start = previous.start + previous.duration if previous else Fraction(0)
                duration = frame.duration * time_base if frame.duration else nominal
                self.decoded_frames += 1
                previous = _TimedFrame(frame, start, duration)
                yield previous


class _TimedFrame(NamedTuple):
    """A decoded frame (or a payload carrying it) with its exact presentation time and display duration."""

    frame: Any
    start: Fraction  # presentation time, seconds
    duration: Fraction  # display duration, seconds


def _resample_to_rate(frames: Iterator[_TimedFrame], rate: Fraction) -> Iterator[Any]:
    """For ticks ``t0 + i / rate`` up to the end of the last frame, yield the latest frame's payload at or before each tick."""
    current = next(frames, None)
    if current is None:
        return
    t0 = current.start
    emitted = 0
    for following in itertools.chain(frames, [None]):
        until = following.start if following is not None else current.start + current.duration
        ticks_before_until = math.ceil((until - t0) * rate)  # count of i with t0 + i / rate < until
        for _ in range(emitted, ticks_before_until):
            yield current.frame
        emitted = max(emitted, ticks_before_until)
        if following is not None:
            current = following


@dataclass(frozen=True)
class AudioSource:
    """Audio to put into a written video: the first audio track of a media file.

    The track is cut from ``start_s`` for ``duration_s`` seconds (or to its
    end), transcoded to AAC and placed at time 0 of the video; it is also cut
    at the video's end.

    Attributes:
        path: an audio file or a video with sound (e.g. the driving video).
        start_s: offset into the file, seconds, >= 0.
        duration_s: longest duration to take, seconds, > 0, or ``None``.

    Raises:
        ValueError: negative ``start_s`` or non-positive ``duration_s``.
    """

    path: PathLike
    start_s: float = 0.0
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if not self.start_s >= 0.0:
            raise ValueError(f"start_s must be >= 0 seconds, got {self.start_s}")
        if self.duration_s is not None and not self.duration_s > 0.0:
            raise ValueError(f"duration_s must be > 0 seconds, got {self.duration_s}")


@dataclass(frozen=True, eq=False)
class AudioSamples:
    """Audio to put into a written video, already decoded: mono samples in memory.

    A writer given these encodes them as they are (no file is opened or
    decoded), so a long speech clip decoded once can be cut into many short
    videos at the cost of the pieces only (see :meth:`cut`).

    Attributes:
        samples: (N,) float32 mono samples, full scale ±1 (e.g. from
            :func:`talkinghead.media.audio.load_audio`).
        sample_rate: Hz, a rate AAC supports (8000, 11025, 12000, 16000,
            22050, 24000, 32000, 44100, 48000, 64000, 88200 or 96000).

    Raises:
        ValueError: samples that are not a 1-D float32 array, or an
            unsupported rate.
    """

    samples: np.ndarray
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if self.samples.ndim != 1 or self.samples.dtype != np.float32:
            raise ValueError(f"samples must be a (N,) float32 array, got {self.samples.shape} {self.samples.dtype}")
        if self.sample_rate not in _AAC_SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {sorted(_AAC_SAMPLE_RATES)} Hz, got {self.sample_rate}")

    @property
    def duration_s(self) -> float:
        """Length in seconds (N / sample_rate)."""
        return self.samples.size / self.sample_rate

    def cut(self, start_s: float, duration_s: float | None = None) -> AudioSamples:
        """The samples from ``start_s`` for ``duration_s`` seconds (or to the end), as a view (no copy).

        Cut points are rounded to the nearest sample.

        Raises:
            ValueError: negative ``start_s`` or non-positive ``duration_s``.
            MediaError: ``start_s`` is at or past the end.
        """
        if not start_s >= 0.0:
            raise ValueError(f"start_s must be >= 0 seconds, got {start_s}")
        if duration_s is not None and not duration_s > 0.0:
            raise ValueError(f"duration_s must be > 0 seconds, got {duration_s}")
        start = round(start_s * self.sample_rate)
        if start >= self.samples.size:
            raise MediaError(f"audio start {start_s:.2f} s is past the end of the audio ({self.duration_s:.2f} s long); "
                             "use a smaller offset")
        end = None if duration_s is None else start + round(duration_s * self.sample_rate)
        return AudioSamples(self.samples[start:end], self.sample_rate)


class VideoWriter:
    """Encode RGB uint8 frames to an H.264 video file, atomically.

    Frames are encoded with libx264 (``crf``, preset "medium") as yuv420p,
    BT.709 limited range, at a constant ``fps``; MP4/MOV files get
    ``+faststart`` for web playback.  Odd frame sizes are padded to even by
    repeating the last row/column (yuv420p needs even sizes); :attr:`size` is
    the encoded size.  With ``audio``, the source's audio track is decoded,
    cut (see :class:`AudioSource`) and encoded as AAC, interleaved with the
    video and ending with it, with timestamps starting at 0.

    Everything goes to a temporary file next to ``path`` that is renamed over
    ``path`` only when :meth:`close` succeeds; on any exception inside the
    ``with`` block the temporary file is deleted and ``path`` is untouched::

        with VideoWriter("out.mp4", fps=25, audio=AudioSource("speech.wav")) as writer:
            for frame in frames:      # (H, W, 3) uint8 RGB
                writer.write(frame)

    Args:
        path: output file (.mp4, .mov or .mkv); its folder must exist.
        fps: frame rate in Hz, positive and finite (29.97 etc. are exact:
            stored as a fraction).
        size: (width, height) in pixels that every frame must have, or
            ``None`` to take it from the first frame.
        audio: optional audio track: a file's (:class:`AudioSource`) or
            decoded samples (:class:`AudioSamples`).
        crf: libx264 constant rate factor, 0 (lossless) .. 51; 18 is visually
            near-lossless.
        provenance: C2PA marking of the finished file (see
            :mod:`talkinghead.media.provenance`); ``None``: a plain file.

    Raises:
        ValueError: bad ``fps``, ``size`` or ``crf``.
        MediaError: unsupported suffix or missing output folder; the audio
            source is missing, has no audio stream, or ``start_s`` is past
            its end.
    """

    def __init__(
        self,
        path: PathLike,
        fps: float,
        size: tuple[int, int] | None = None,
        audio: AudioSource | AudioSamples | None = None,
        crf: int = 18,
        provenance: ProvenanceOptions | None = None,
    ) -> None:
        if not 0 <= crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {crf}")
        if size is not None and min(size) < 1:
            raise ValueError(f"size must be (width, height) in pixels, got {size}")
        self._rate = _as_rate(fps)
        self._size = size
        self._crf = crf
        self._n_frames = 0
        self._closed = False
        self._container: av.container.OutputContainer | None = None
        self._video: av.video.stream.VideoStream | None = None
        with contextlib.ExitStack() as stack:
            self._audio = stack.enter_context(_AudioTrack(audio)) if audio is not None else None
            self._tmp = stack.enter_context(atomic_output(path, WRITE_SUFFIXES, "video", provenance))
            self._resources = stack.pop_all()

    @property
    def size(self) -> tuple[int, int] | None:
        """Encoded (width, height) in pixels (even), ``None`` before the first frame when no size was given."""
        if self._size is None:
            return None
        width, height = self._size
        return width + width % 2, height + height % 2

    @property
    def n_frames(self) -> int:
        """Number of frames written so far."""
        return self._n_frames

    def write(self, frame: np.ndarray | Yuv420Frame) -> None:
        """Encode one frame.

        Args:
            frame: (H, W, 3) uint8 RGB of the writer's size (see ``size``), converted to yuv420p with
                swscale; or its planes already converted (:class:`~talkinghead.media.yuv.Yuv420Frame`,
                e.g. by :func:`~talkinghead.media.yuv.rgb_to_yuv420` on the GPU), encoded as they are.

        Raises:
            ValueError: wrong shape, dtype or size, or the writer is closed.
            MediaError: the audio source turned out to be damaged.
        """
        if self._closed:
            raise ValueError("write() on a closed VideoWriter")
        width = self._check_size(frame)[0]
        if self._video is None:
            self._open_output()
        if isinstance(frame, Yuv420Frame):
            planes = np.concatenate([frame.y.reshape(-1), frame.u.reshape(-1), frame.v.reshape(-1)])
            yuv = av.VideoFrame.from_ndarray(planes.reshape(-1, width + width % 2), format="yuv420p")
            yuv.colorspace, yuv.color_range = Colorspace.ITU709, ColorRange.MPEG
        else:
            yuv = swscale_yuv420(frame)
        yuv.pts = self._n_frames
        self._mux(self._video.encode(yuv))
        self._n_frames += 1
        if self._audio is not None:
            self._audio.write_until(self._n_frames / self._rate)

    def _check_size(self, frame: np.ndarray | Yuv420Frame) -> tuple[int, int]:
        """The frame's (width, height), after checking its form and that it is the video's size (ValueError)."""
        if isinstance(frame, Yuv420Frame):
            width, height = frame.size
            luma = (height + height % 2, width + width % 2)
            chroma = (luma[0] // 2, luma[1] // 2)
            shapes = (frame.y.shape, frame.u.shape, frame.v.shape)
            if shapes != (luma, chroma, chroma) or any(p.dtype != np.uint8 for p in frame[:3]):
                raise ValueError(f"a {width}x{height} Yuv420Frame needs uint8 planes of {luma}, {chroma}, {chroma}; "
                                 f"got {shapes}")
        elif frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frames must be (H, W, 3) uint8 RGB arrays, got {frame.shape} {frame.dtype}")
        else:
            height, width = frame.shape[:2]
        if self._size is None:
            self._size = (width, height)
        if (width, height) != self._size:
            raise ValueError(f"frame is {width}x{height} but the video is {self._size[0]}x{self._size[1]}")
        return width, height

    def close(self) -> None:
        """Flush the encoders and move the finished file to its path.

        Raises:
            ValueError: no frame was written (nothing is left on disk).
        """
        if self._closed:
            return
        try:
            if self._video is None:
                raise ValueError("no frames were written; the video was not created")
            self._mux(self._video.encode(None))
            if self._audio is not None:
                self._audio.finish(self._n_frames / self._rate)
        except BaseException as exc:
            self._discard(exc)
            raise
        self._closed = True
        self._resources.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
        elif not self._closed:
            self._discard(exc)

    def _discard(self, exc: BaseException) -> None:
        """Close everything after ``exc`` went wrong; the temporary file is deleted, ``path`` untouched."""
        self._closed = True
        self._resources.__exit__(type(exc), exc, exc.__traceback__)

    def _open_output(self) -> None:
        """Create the container and streams once the frame size is known."""
        assert self._size is not None
        options = {"movflags": "+faststart"} if self._tmp.suffix.lower() in (".mp4", ".mov") else {}
        container = av.open(str(self._tmp), "w", container_options=options)
        self._resources.callback(container.close)
        self._container = container
        width, height = self.size
        video = container.add_stream("libx264", rate=self._rate, options={"crf": str(self._crf), "preset": "medium"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        ctx = video.codec_context
        ctx.colorspace, ctx.color_range = Colorspace.ITU709, ColorRange.MPEG
        ctx.color_primaries, ctx.color_trc = ColorPrimaries.BT709, ColorTrc.BT709
        self._video = video
        if self._audio is not None:
            self._audio.add_output(container)

    def _mux(self, packets: list[av.Packet]) -> None:
        assert self._container is not None
        self._container.mux(packets)


ENCODE_QUEUE = 8
"""Frames :func:`write_frames` lets wait for the encoder (memory: 8 × H × W × 3 bytes, e.g. 39 MB at 1280×1280)."""


def write_frames(frames: Iterable[np.ndarray | Yuv420Frame], path: PathLike, fps: float, n_frames: int | None = None,
                 audio: AudioSource | AudioSamples | None = None, progress: bool = False,
                 provenance: ProvenanceOptions | None = None) -> Path:
    """Encode a stream of (H, W, 3) uint8 RGB frames (or their :class:`~talkinghead.media.yuv.Yuv420Frame`
    planes) to ``path`` with a :class:`VideoWriter`, atomically.

    ``n_frames`` is the expected count, for the tqdm progress bar
    ("rendering", shown when ``progress``); the other arguments are the
    writer's.  Frames are pulled one at a time in the caller's thread (a lazy
    job renders there) and encoded in a background thread
    (:class:`~talkinghead.threads.BackgroundSink`, at most :data:`ENCODE_QUEUE`
    frames waiting), so rendering and H.264 encoding overlap; an exception from
    ``frames`` or from the encoder leaves no file at ``path``.

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError, MediaError: as :class:`VideoWriter` (no frame at all: ValueError).
    """
    from tqdm import tqdm

    with VideoWriter(path, fps=fps, audio=audio, provenance=provenance) as writer:
        with BackgroundSink(writer.write, depth=ENCODE_QUEUE, name="talkinghead-encode") as encoder:
            for frame in tqdm(frames, total=n_frames, unit="frame", disable=not progress, desc="rendering"):
                encoder.put(frame)
    return Path(path)


class _AudioTrack:
    """Decodes an :class:`AudioSource` (or takes :class:`AudioSamples`) and muxes it as AAC, in step with the video.

    Opening checks the source (file, audio stream, offset within the track)
    before any output exists.  Samples are counted after resampling, so the
    cut points are exact to the sample.
    """

    def __init__(self, source: AudioSource | AudioSamples) -> None:
        if isinstance(source, AudioSamples):
            self._resources = contextlib.ExitStack()
            self.rate, self.layout = source.sample_rate, "mono"
            self._chunks: Iterator[np.ndarray] = iter([source.samples[None, :]])
            self._skip, self._limit = 0, math.inf
        else:
            self._open_file(source)
        self._pending = np.zeros((0, 0), np.float32)
        self._written = 0
        self._container: av.container.OutputContainer | None = None
        self._stream: av.audio.stream.AudioStream | None = None

    def _open_file(self, source: AudioSource) -> None:
        """Open ``source``'s file and set up its lazily decoded, cut chunks."""
        with contextlib.ExitStack() as stack:
            container = stack.enter_context(open_input(source.path, "audio", AUDIO_HINT))
            stream = first_audio_stream(container, source.path)
            length_s = stream_duration_s(container, stream)
            if length_s is not None and source.start_s >= length_s:
                raise MediaError(
                    f"audio start {source.start_s:.2f} s is past the end of {source.path} ({length_s:.2f} s long); "
                    "use a smaller offset"
                )
            self._resources = stack.pop_all()
        ctx = stream.codec_context
        self.rate = ctx.sample_rate if ctx.sample_rate in _AAC_SAMPLE_RATES else _AAC_FALLBACK_RATE
        self.layout = "mono" if ctx.channels == 1 else "stereo"
        self._chunks = decode_audio(container, stream, source.path, self.rate, self.layout)
        self._skip = round(source.start_s * self.rate)
        self._limit = math.inf if source.duration_s is None else round(source.duration_s * self.rate)

    def __enter__(self) -> _AudioTrack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._resources.close()

    def add_output(self, container: av.container.OutputContainer) -> None:
        """Add the AAC stream to ``container`` (before anything is muxed)."""
        stream = container.add_stream("aac", rate=self.rate)
        stream.layout = self.layout
        stream.bit_rate = _AAC_BIT_RATE_PER_CHANNEL * (1 if self.layout == "mono" else 2)
        self._container, self._stream = container, stream

    def write_until(self, t: Fraction) -> None:
        """Encode and mux source audio up to ``t`` seconds of output (or until the source ends)."""
        target = min(math.floor(t * self.rate), self._limit)
        while self._written < target:
            chunk = self._take(target - self._written)
            if chunk is None:
                return
            self._encode(chunk)

    def finish(self, t: Fraction) -> None:
        """Write audio up to ``t`` seconds (the video's end) and flush the encoder."""
        self.write_until(t)
        self._mux(self._stream.encode(None))

    def _take(self, n: int) -> np.ndarray | None:
        """Up to ``n`` samples (C, m) after the start offset, or ``None`` when the source is exhausted."""
        while self._pending.shape[1] == 0:
            chunk = next(self._chunks, None)
            if chunk is None:
                return None
            dropped = min(self._skip, chunk.shape[1])
            self._skip -= dropped
            self._pending = chunk[:, dropped:]
        taken, self._pending = self._pending[:, :n], self._pending[:, n:]
        return taken

    def _encode(self, samples: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=self.layout)
        frame.sample_rate = self.rate
        frame.time_base = Fraction(1, self.rate)
        frame.pts = self._written
        self._mux(self._stream.encode(frame))
        self._written += samples.shape[1]

    def _mux(self, packets: list[av.Packet]) -> None:
        self._container.mux(packets)


@contextlib.contextmanager
def _open_video(path: PathLike) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """Open ``path`` and pick its first real video stream (cover art excluded).

    Raises:
        MediaError: missing file, unreadable file, a still image, or no video stream.
    """
    with open_input(path, "video", VIDEO_HINT) as container:
        demuxer = container.format.name
        if demuxer in _STILL_IMAGE_DEMUXERS or demuxer.endswith("_pipe"):
            raise MediaError(f"{path} is a still image, not a video; {VIDEO_HINT}")
        streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not streams:
            raise MediaError(f"{path} has no video stream; {VIDEO_HINT}")
        yield container, streams[0]


def _rotation_of(frame: av.VideoFrame) -> int:
    """The frame's display-matrix rotation rounded to 0, 90, 180 or 270 degrees counter-clockwise."""
    return round(frame.rotation / 90) * 90 % 360


def _frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """Decoded frame -> (H, W, 3) uint8 RGB, converted with the frame's own colour tags, rotation applied."""
    return rotate_frame(frame.to_ndarray(format="rgb24", interpolation=_YUV_TO_RGB_FLAGS), _rotation_of(frame))


def _average_rate(stream: av.video.stream.VideoStream, path: PathLike) -> Fraction:
    """The stream's average frame rate, else FFmpeg's guess, in Hz.

    Raises:
        MediaError: the container states no frame rate at all.
    """
    rate = stream.average_rate or stream.guessed_rate
    if not rate:
        raise MediaError(f"video {path} states no frame rate; re-encode it ({VIDEO_HINT})")
    return rate


def frames_at_rate(info: VideoInfo, fps: float) -> int:
    """Frames :class:`VideoReader` yields for a constant-rate clip read at ``fps`` Hz (ticks up to the end of its last frame).

    Raises:
        ValueError: ``fps`` or the clip's rate not a positive finite number.
    """
    return math.ceil(info.n_frames * _as_rate(fps) / _as_rate(info.fps))


def _as_rate(fps: float) -> Fraction:
    """A frame rate in Hz as an exact fraction (29.97002997 -> 30000/1001).

    Raises:
        ValueError: not a positive finite number.
    """
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number of frames per second, got {fps}")
    return Fraction(fps).limit_denominator(_MAX_FPS_DENOMINATOR)


def swscale_yuv420(frame: np.ndarray) -> av.VideoFrame:
    """An (H, W, 3) uint8 RGB frame as the yuv420p frame :class:`VideoWriter` encodes: padded to even sizes
    (last row/column repeated), BT.709 limited range, converted by swscale on the CPU (bilinear chroma,
    accurate rounding)."""
    return av.VideoFrame.from_ndarray(_pad_to_even(frame), format="rgb24").reformat(
        format="yuv420p",
        dst_colorspace=Colorspace.ITU709,
        dst_color_range=ColorRange.MPEG,
        interpolation=_RGB_TO_YUV_FLAGS,
    )


def _pad_to_even(frame: np.ndarray) -> np.ndarray:
    """Repeat the last row/column of an odd-sized (H, W, 3) frame so that H and W are even."""
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frame
