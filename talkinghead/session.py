"""What a long-running front end (the Gradio app, a server) needs around :class:`~talkinghead.engine.Engine`.

* :class:`EngineLoader` builds the engine once, in the background, and
  shares it between requests.
* :class:`SourceCache` keeps prepared photos (keyed by file content), so a
  slider preview runs only the warping and generator networks.
* :func:`prefetch_weights` downloads the checkpoints ahead of the first request.
* :func:`stream_segments` turns a speech clip into a live preview: short
  MP4 files, each with its own slice of the speech, written as soon as their
  frames are rendered.  The speech is decoded once per job; every segment's
  sound is a slice of those samples (:func:`write_segments`).

Everything here is thread-safe where a server needs it (the loader and the
cache); nothing here knows about a UI toolkit.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Hashable, Iterable, Iterator

import numpy as np

from talkinghead.drivers.audio import audio_backend
from talkinghead.engine import AudioJobOptions, Engine, PreparedSource, RenderOptions
from talkinghead.errors import TalkingHeadError
from talkinghead.media.audio import load_audio
from talkinghead.media.provenance import ProvenanceOptions
from talkinghead.media.video import AudioSamples, VideoWriter
from talkinghead.drivers.audio.ditto.files import DITTO_FILES
from talkinghead.enhance.files import ENHANCE_FILES
from talkinghead.models.liveportrait import LIVEPORTRAIT_FILES
from talkinghead.weights import WeightStore

log = logging.getLogger(__name__)

class EngineLoader:
    """Builds the :class:`Engine` once and shares it between requests (thread-safe).

    :meth:`warm_up` starts loading in a background thread; :meth:`get`
    returns the engine, waiting for (or retrying) the load.

    Args:
        weights: a local folder laid out like the Hub repos, or ``None`` (the Hub cache).
        device: ``"auto"``, ``"cuda"``, ``"cpu"`` ... (as :meth:`Engine.from_pretrained`).
        precision, compile: W and G's precision and ``torch.compile`` (:class:`~talkinghead.jobs.EngineOptions`).
    """

    def __init__(self, weights: str | os.PathLike | None, device: str, precision: str = "auto",
                 compile: bool = False) -> None:
        self._weights, self._device, self._precision, self._compile = weights, device, precision, compile
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def get(self) -> Engine:
        """The engine. Raises: WeightsError / TalkingHeadError when the weights cannot be loaded."""
        with self._lock:
            if self._engine is None:
                self._engine = Engine.from_pretrained(weights=self._weights, device=self._device, progress=False,
                                                      precision=self._precision, compile=self._compile)
            return self._engine

    def warm_up(self) -> threading.Thread:
        """Load in a background thread (returned); a failure is logged and retried (and reported) by the next :meth:`get`."""
        def load() -> None:
            try:
                self.get()
            except TalkingHeadError as e:
                log.error("could not load the engine: %s", e)
        thread = threading.Thread(target=load, name="engine-loader", daemon=True)
        thread.start()
        return thread


def prefetch_weights(weights: str | os.PathLike | None = None) -> None:
    """Fetch every checkpoint a job may need into the Hub cache (or check ``weights`` has them), so no request waits.

    All but CodeFormer's (non-commercial, fetched only if someone picks it).

    Raises:
        WeightsError: a file cannot be downloaded, or is missing from ``weights``.
    """
    store = WeightStore(weights)
    enhancers = [ENHANCE_FILES["gfpgan"], ENHANCE_FILES["realesrgan_x2"]]
    for file in [*LIVEPORTRAIT_FILES.values(), *DITTO_FILES.values(), *enhancers]:
        store.path(file)


class SourceCache:
    """Prepared photos (landmarks, crop, F and M outputs), least recently used first out (thread-safe).

    Args:
        size: how many prepared photos to keep, >= 1.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self._size = size
        self._items: OrderedDict[tuple[str, str | None, Hashable], PreparedSource] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, engine: Engine, photo: str | os.PathLike, landmarks: str | None = None,
            settings: Hashable | None = None) -> PreparedSource:
        """The :class:`PreparedSource` of a photo file, prepared once per (file content, landmarks, settings).

        Args:
            engine: prepares the photo on a miss (:meth:`Engine.prepare_source`).
            photo: the image file.
            landmarks: a 68-point landmark JSON file for it, or ``None`` (run the detector).
            settings: ``None`` (LivePortrait's crop rules) or the audio job's
                (:meth:`Engine.audio_source_settings`).

        Raises:
            MediaError: unreadable photo; NoFaceError: no face in it.
        """
        key = (hashlib.sha256(Path(photo).read_bytes()).hexdigest(), landmarks, settings)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        source = engine.prepare_source(photo, landmarks=landmarks, settings=settings)
        with self._lock:
            self._items[key] = source
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return source


def write_segments(frames: Iterable[np.ndarray], speech: AudioSamples, path: Path, fps: float,
                   frames_per_segment: int, provenance: ProvenanceOptions | None = None) -> Iterator[str]:
    """Write frames as consecutive short MP4 files, each with its slice of ``speech`` as sound, yielding each path.

    Segment ``i`` holds frames ``i·n .. i·n + n - 1`` (n = ``frames_per_segment``;
    the last may hold fewer) and the speech from ``i·n / fps`` seconds for
    ``n / fps`` seconds (H.264 + AAC, see :class:`VideoWriter`), and is named
    ``<path stem>_<i>.mp4`` next to ``path``.  A segment is written as soon
    as its frames have arrived.  The speech is already decoded: each segment
    costs only its own slice, whatever the clip's length.

    Args:
        frames: (H, W, 3) uint8 RGB frames, all one size.
        speech: the decoded speech the frames were made from.
        path: where the segments go (its folder must exist; its stem names them).
        fps: frame rate, Hz.
        frames_per_segment: n, >= 1.
        provenance: C2PA marking of each segment (default: signed, job kind "live").

    Raises:
        ValueError: ``frames_per_segment`` < 1.
        MediaError: the speech ends before a segment starts.
    """
    if frames_per_segment < 1:
        raise ValueError(f"frames_per_segment must be >= 1, got {frames_per_segment}")
    provenance = ProvenanceOptions().for_job("live") if provenance is None else provenance
    frames = iter(frames)
    duration_s = frames_per_segment / fps
    for index in itertools.count():
        batch = list(itertools.islice(frames, frames_per_segment))
        if not batch:
            return
        segment = path.with_name(f"{path.stem}_{index:04d}.mp4")
        with VideoWriter(segment, fps, audio=speech.cut(index * duration_s, duration_s),
                         provenance=provenance) as writer:
            for frame in batch:
                writer.write(frame)
        yield str(segment)


def stream_segments(engine: Engine, source: PreparedSource, audio: str | os.PathLike, path: Path,
                    frames_per_segment: int, options: AudioJobOptions = AudioJobOptions(),
                    render: RenderOptions = RenderOptions(),
                    provenance: ProvenanceOptions | None = None) -> Iterator[str]:
    """Photo + speech → a live preview: MP4 segments (paths) as :meth:`Engine.stream_audio` renders the frames.

    The speech file is decoded once, mono at the audio backend's sample rate
    (``options.backend``; Ditto: 16 kHz); those samples drive the motion and
    each segment's sound is a slice of them (see :func:`write_segments`), so
    the work per segment does not grow with the clip's length.  Frames come
    at the backend's rate (Ditto: 25 fps).

    Args:
        engine, source, options, render: as for :meth:`Engine.stream_audio`.
        audio: the speech file (any format FFmpeg reads).
        path, frames_per_segment, provenance: as for :func:`write_segments`.

    Raises:
        MediaError: unreadable or empty speech, or as :meth:`Engine.stream_audio`.
    """
    backend = audio_backend(options.backend)  # its class: frame and sample rate, nothing loaded
    samples = load_audio(audio, backend.sample_rate)
    frames = engine.stream_audio(source, samples, options, render)
    yield from write_segments(frames, AudioSamples(samples, backend.sample_rate), path, backend.fps,
                              frames_per_segment, provenance)
