"""talkinghead.session through its public names: the live-preview segments, the source cache, the engine loader.

Nothing here renders: frames are real clip frames, and where an engine is
needed, a small recording object with the one Engine method the code calls.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from conftest import TESTDATA
from talkinghead import EngineLoader, SourceCache, prefetch_weights, stream_segments, write_segments
from talkinghead.errors import MediaError, WeightsError
from talkinghead.media.audio import load_audio, probe_audio
from talkinghead.media.provenance import read_provenance
from talkinghead.media.video import AudioSamples, VideoReader, probe_video

SPEECH = TESTDATA / "audio" / "espeak_en_us.wav"


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    with VideoReader(TESTDATA / "driving" / "lp_d0.mp4", max_frames=5) as reader:
        return list(reader)


def _assert_segments_carry_their_slices(segments: list[str], full: np.ndarray) -> None:
    """Each segment's sound is the AAC of its own 2-frame slice of ``full`` (16 kHz: 640 samples per frame)."""
    for index, segment in enumerate(segments):
        sound = load_audio(segment)
        expected = full[index * 1280: index * 1280 + sound.size]
        assert np.corrcoef(sound, expected)[0, 1] > 0.99   # the right slice, not the clip's start


# ------------------------------------------------------------------------------ AudioSamples
def test_audio_samples_cut_is_a_view_at_sample_precision() -> None:
    speech = AudioSamples(load_audio(SPEECH), 16000)
    piece = speech.cut(0.08, 0.04)
    assert piece.samples.size == 640 and piece.sample_rate == 16000
    assert np.shares_memory(piece.samples, speech.samples)
    assert np.array_equal(piece.samples, speech.samples[1280:1920])
    assert speech.cut(speech.duration_s - 0.01).samples.size == 160     # to the end
    with pytest.raises(MediaError, match="past the end"):
        speech.cut(speech.duration_s)
    with pytest.raises(ValueError, match="start_s"):
        speech.cut(-1.0)


@pytest.mark.parametrize("samples, rate, message", [
    (np.zeros((2, 100), np.float32), 16000, r"\(N,\) float32"),
    (np.zeros(100, np.float64), 16000, r"\(N,\) float32"),
    (np.zeros(100, np.float32), 17000, "sample_rate"),
])
def test_audio_samples_refuse_what_the_writer_cannot_encode(samples: np.ndarray, rate: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AudioSamples(samples, rate)


# ---------------------------------------------------------------------------- live preview
def test_write_segments_gives_each_segment_its_slice_of_the_decoded_speech(frames, tmp_path: Path) -> None:
    """5 real frames in segments of 2 → 2 + 2 + 1 frames, each with its slice of the samples passed in."""
    full = load_audio(SPEECH)
    segments = list(write_segments(frames, AudioSamples(full, 16000), tmp_path / "live.mp4", fps=25.0,
                                   frames_per_segment=2))
    assert [Path(s).name for s in segments] == ["live_0000.mp4", "live_0001.mp4", "live_0002.mp4"]
    assert [probe_video(s).n_frames for s in segments] == [2, 2, 1]
    assert [read_provenance(s).job["kind"] for s in segments] == ["live"] * 3
    assert [probe_audio(s).duration_s for s in segments] == pytest.approx([0.08, 0.08, 0.04], abs=1e-3)
    _assert_segments_carry_their_slices(segments, full)


def test_write_segments_refuses_an_empty_segment_size(frames, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="frames_per_segment"):
        next(write_segments(frames, AudioSamples(load_audio(SPEECH)), tmp_path / "live.mp4", 25.0, 0))


class _StreamingEngine:
    """Records what ``stream_audio`` is given and yields real clip frames (the one Engine method used)."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames, self.calls = frames, []

    def stream_audio(self, source: Any, audio: Any, options: Any, render: Any) -> Iterator[np.ndarray]:
        self.calls.append(audio)
        yield from self.frames


def test_stream_segments_decodes_the_speech_once_for_the_motion_and_every_segment(frames, tmp_path: Path) -> None:
    """The speech file is read once, at the start: the engine gets the samples, and the file can be gone
    before the later segments are written (each is cut from those samples, not decoded again)."""
    speech = tmp_path / "speech.wav"
    shutil.copy(SPEECH, speech)
    engine = _StreamingEngine(frames)
    segments = stream_segments(engine, source=None, audio=speech, path=tmp_path / "live.mp4", frames_per_segment=2)
    written = [next(segments)]
    speech.unlink()
    written += list(segments)
    assert len(written) == 3
    (samples,), full = engine.calls, load_audio(SPEECH)
    assert isinstance(samples, np.ndarray) and np.array_equal(samples, full)
    _assert_segments_carry_their_slices(written, full)


# ---------------------------------------------------------------------------- source cache
class _PreparingEngine:
    """Counts ``prepare_source`` calls and returns a fresh object for each (the one Engine method used)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any]] = []

    def prepare_source(self, photo: Any, landmarks: Any = None, settings: Any = None) -> object:
        self.calls.append((Path(photo).name, landmarks, settings))
        return object()


def test_source_cache_prepares_a_photo_once_per_content_landmarks_and_settings(tmp_path: Path) -> None:
    images = TESTDATA / "images"
    copy = tmp_path / "copy.png"
    shutil.copy(images / "astronaut.png", copy)
    engine, cache = _PreparingEngine(), SourceCache(2)
    first = cache.get(engine, images / "astronaut.png")
    assert cache.get(engine, copy) is first                      # same bytes, other name: cached
    assert cache.get(engine, copy, settings=("audio",)) is not first
    assert len(engine.calls) == 2
    cache.get(engine, images / "lp_s9_monalisa.jpg")            # a third: the least recently used goes
    assert len(cache) == 2
    cache.get(engine, images / "astronaut.png")
    assert len(engine.calls) == 4 and engine.calls[-1] == ("astronaut.png", None, None)


def test_source_cache_needs_room_for_one() -> None:
    with pytest.raises(ValueError, match="size"):
        SourceCache(0)


# ------------------------------------------------------------------------- engine and weights
def test_engine_loader_reports_missing_weights_on_get_and_only_logs_them_in_the_background(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    loader = EngineLoader(tmp_path, "cpu")
    thread = loader.warm_up()
    assert isinstance(thread, threading.Thread)
    thread.join(timeout=60)
    assert "could not load the engine" in caplog.text
    with pytest.raises(WeightsError):
        loader.get()


def test_prefetch_weights_names_a_missing_file_of_a_local_folder(tmp_path: Path) -> None:
    with pytest.raises(WeightsError):
        prefetch_weights(tmp_path)
