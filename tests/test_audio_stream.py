"""Streaming audio → motion on a real photo and real speech (filled LMDM, toy ONNX encoder).

Two DDIM steps keep each 80-frame window cheap (0.25–2 s on 2 shared CPU cores); the
tests run 18 windows in all.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import pytest
import torch

from conftest import TESTDATA, landmarks_json
from talkinghead.drivers.audio.ditto.condition import LandmarkEyeConditions
from talkinghead.drivers.audio.ditto.driver import AudioDriverOptions
from talkinghead.drivers.audio.ditto.features import frame_count
from talkinghead.drivers.audio.backend import iter_audio_chunks
from talkinghead.drivers.audio.ditto.stream import stream_motion
from talkinghead.drivers.audio.ditto.windows import SHIPPED_ONLINE, WindowConfig
from talkinghead.errors import ControlError, MediaError
from talkinghead.face.crop import transform_points
from talkinghead.media.audio import load_audio
from talkinghead.motion.frame import MotionSequence

FAST = AudioDriverOptions(steps=2, seed=0)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """2 s of English speech, 16 kHz mono float32."""
    return load_audio(TESTDATA / "audio" / "espeak_en_us.wav")[:32000]


@pytest.fixture(scope="module")
def astronaut(audio_engine):
    """(M's raw heads, eye conditions) of the astronaut photo, as ``Engine.audio_motion`` measures them."""
    source = audio_engine.prepare_source(TESTDATA / "images" / "astronaut.png", landmarks=landmarks_json("astronaut.png"))
    eyes = LandmarkEyeConditions()(source.crop.crop, transform_points(source.landmarks, source.crop.M_o2c))
    return source.raw, eyes


@pytest.fixture(scope="module")
def stream(audio_engine, astronaut):
    """``stream(chunks, options, config)`` → the generator of MotionSequence chunks for the astronaut photo."""
    driver = audio_engine.audio_backend("ditto").driver

    def run(chunks: Iterable[np.ndarray], options: AudioDriverOptions = FAST,
            config: WindowConfig = SHIPPED_ONLINE) -> Iterator[MotionSequence]:
        return stream_motion(driver, chunks, *astronaut, options, config)

    return run


def _check(chunks: list[MotionSequence], n_frames: int) -> MotionSequence:
    motion = MotionSequence.cat(chunks)
    assert motion.n_frames == n_frames
    for name in ("pitch", "yaw", "roll", "t", "scale", "exp"):
        assert torch.isfinite(getattr(motion, name)).all(), name
    return motion


@pytest.mark.parametrize("n_samples", [1000, 1600, 7761])
def test_exactly_one_frame_per_40_ms_for_any_length(stream, speech, n_samples: int) -> None:
    """0.0625 s (no window completes: features padded), 0.1 s, and 0.485 s (Ditto emits 20 frames: 7 cut)."""
    _check(list(stream(iter_audio_chunks(speech[:n_samples]))), frame_count(n_samples))


def test_chunk_size_does_not_change_the_motion_but_the_seed_does(stream, speech) -> None:
    """0.75 s: three windows (two while the audio arrives, one at its end), fed in 4 or 12 pieces."""
    clip = speech[:12000]
    a = _check(list(stream(iter_audio_chunks(clip, 3200))), 19)
    b = _check(list(stream(iter_audio_chunks(clip, 1000))), 19)
    assert torch.equal(a.exp, b.exp) and torch.equal(a.yaw, b.yaw) and torch.equal(a.t, b.t)
    other = _check(list(stream(iter_audio_chunks(clip, 3200), AudioDriverOptions(steps=2, seed=1))), 19)
    assert not torch.equal(a.exp, other.exp)


def test_first_chunk_arrives_after_0_9_s_of_audio(stream, speech) -> None:
    """The first window only sets the anchor; the second needs 20 features = 14160 samples → 5 chunks of 3200."""
    pulled = 0

    def counted(chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal pulled
        for chunk in chunks:
            pulled += 1
            yield chunk

    motion = stream(counted(iter_audio_chunks(speech, 3200)))
    first = next(motion)
    assert (pulled, first.n_frames) == (5, 10)  # of 10 chunks; V = 80 − 70 frames per window
    motion.close()


def test_empty_stream_and_short_overlap_are_refused(stream) -> None:
    with pytest.raises(MediaError, match="empty"):
        list(stream([np.zeros(0, np.float32)]))
    with pytest.raises(ControlError, match="overlap"):
        stream([], config=WindowConfig(overlap=10))  # refused at the call, before any audio is read
