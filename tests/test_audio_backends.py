"""A second audio backend is a local change: a tiny backend registered here drives the engine's audio job.

The test backend ("loudness", 40 fps) opens the mouth with the speech's loudness
(RMS per 1/40 s frame → a shift of the lower-lip keypoints) and keeps
the head still.  It needs no file of its own, so the engine here has
LivePortrait's weights only: nothing of Ditto is loaded.
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator

import numpy as np
import pytest
import torch

from conftest import TESTDATA, landmarks_json
from talkinghead.drivers.audio import AUDIO_BACKENDS, audio_backend, register_audio_backend
from talkinghead.drivers.audio.backend import AudioBackend, unregister_audio_backend
from talkinghead.engine import AudioJobOptions, RenderOptions
from talkinghead.errors import ControlError, MediaError
from talkinghead.media.audio import load_audio
from talkinghead.motion.frame import MotionSequence

SPEECH = TESTDATA / "audio" / "espeak_en_us_with_silence.wav"
LOWER_LIP = (19, 20)
"""Implicit keypoints moved down by the test backend (LivePortrait's lower-lip rows)."""


class LoudnessBackend:
    """Mouth opening = RMS loudness of each 1/40 s (400 samples) of speech; head still."""

    name = "loudness"
    fps = 40.0
    sample_rate = 16000
    gain = 0.5
    frame_samples = 400

    def __init__(self, store) -> None:
        self.store = store
        self.streamed_chunks = 0

    @classmethod
    def from_pretrained(cls, weights=None, revision=None, device="cpu") -> "LoudnessBackend":
        return cls(weights)

    def source_settings(self, options) -> None:
        return None

    def stitching(self, options, online: bool = False) -> bool:
        return True

    def _mouth(self, source, samples: np.ndarray) -> MotionSequence:
        """One frame per 400 samples (the last may be shorter): the photo's motion, lower lip moved by the RMS."""
        rms = torch.tensor([float(np.sqrt(np.mean(np.square(samples[i:i + self.frame_samples]))))
                            for i in range(0, samples.size, self.frame_samples)])
        motion = MotionSequence.cat([source.info.motion] * rms.numel())
        exp = motion.exp.clone()
        exp[:, LOWER_LIP, 1] += self.gain * rms[:, None]
        return MotionSequence(pitch=motion.pitch, yaw=motion.yaw, roll=motion.roll, t=motion.t, scale=motion.scale, exp=exp)

    def generate(self, samples: np.ndarray, source, options, progress: bool = False) -> MotionSequence:
        if samples.size == 0:
            raise MediaError("the audio is empty")
        return self._mouth(source, samples)

    def stream(self, chunks: Iterable[np.ndarray], source, options) -> Iterator[MotionSequence]:
        pending = np.zeros(0, np.float32)
        for chunk in chunks:
            self.streamed_chunks += 1
            pending = np.concatenate([pending, chunk])
            whole = pending.size - pending.size % self.frame_samples
            if whole:
                yield self._mouth(source, pending[:whole])
                pending = pending[whole:]
        if pending.size:
            yield self._mouth(source, pending)


@pytest.fixture(scope="module", autouse=True)
def loudness_backend():
    register_audio_backend("loudness", LoudnessBackend)
    yield LoudnessBackend
    unregister_audio_backend("loudness")


@pytest.fixture(scope="module")
def photo(engine):
    return engine.prepare_source(TESTDATA / "images" / "astronaut.png", landmarks=landmarks_json("astronaut.png"))


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(SPEECH)


def test_the_registry_lists_ditto_and_the_test_backend() -> None:
    assert list(AUDIO_BACKENDS)[:1] == ["ditto"] and "loudness" in AUDIO_BACKENDS
    assert audio_backend("loudness") is LoudnessBackend
    assert isinstance(LoudnessBackend(None), AudioBackend)  # follows the protocol
    ditto = audio_backend("ditto")  # imported on first look-up
    assert (ditto.name, ditto.fps, ditto.sample_rate) == ("ditto", 25.0, 16000)


def test_an_unknown_backend_is_one_line_naming_the_registered_ones(engine) -> None:
    for attempt in (lambda: AudioJobOptions(backend="joyvasa"), lambda: engine.audio_backend("joyvasa"),
                    lambda: audio_backend("joyvasa")):
        with pytest.raises(ControlError) as caught:
            attempt()
        message = str(caught.value)
        assert "\n" not in message and "'joyvasa'" in message and "ditto" in message and "loudness" in message


def test_the_offline_job_runs_through_the_backend(engine, photo, speech) -> None:
    options = AudioJobOptions(backend="loudness")
    job = engine.animate_audio(photo, SPEECH, options)  # frames are rendered lazily: none here
    n = math.ceil(speech.size / 400)
    assert (job.fps, job.n_frames, job.motion.n_frames) == (40.0, n, n)
    motion = job.motion
    base = photo.info.motion
    for name in ("pitch", "yaw", "roll", "t", "scale"):
        assert torch.equal(getattr(motion, name), getattr(base, name).expand_as(getattr(motion, name))), name
    opening = (motion.exp - base.exp)[:, LOWER_LIP, 1].mean(dim=1)
    rms = torch.tensor([float(np.sqrt(np.mean(np.square(speech[i * 400:(i + 1) * 400])))) for i in range(n)])
    torch.testing.assert_close(opening, LoudnessBackend.gain * rms, rtol=1e-5, atol=1e-6)
    assert opening.max() > 10 * opening.min() + 1e-4  # the clip has silence and speech: the mouth moves
    assert engine.audio_source_settings(options) is None  # the backend keeps LivePortrait's crop rules
    assert engine.audio_backend("loudness").store is engine.store  # loaded from the engine's weight store


def test_the_engine_edits_apply_to_any_backend(engine, photo, speech) -> None:
    flat = engine.audio_motion(photo, speech, AudioJobOptions(backend="loudness", expression_scale=0.0))
    assert torch.allclose(flat.exp, photo.info.motion.exp.expand_as(flat.exp))
    with pytest.raises(MediaError, match="empty"):
        engine.audio_motion(photo, np.zeros(0, np.float32), AudioJobOptions(backend="loudness"))


def test_the_streaming_job_runs_through_the_backend(engine, photo, speech) -> None:
    backend = engine.audio_backend("loudness")
    before = backend.streamed_chunks
    frames = list(engine.stream_audio(photo, speech, AudioJobOptions(backend="loudness"),
                                      RenderOptions(max_frames=1, paste_back=False)))
    assert len(frames) == 1 and frames[0].shape == (512, 512, 3) and frames[0].dtype == np.uint8
    assert backend.streamed_chunks > before  # the audio went through the backend's stream


def test_the_cli_offers_the_registered_backends(capsys) -> None:
    from talkinghead.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["audio", "--source", "a.png", "--audio", "a.wav", "--out", "o.mp4",
                              "--audio-backend", "loudness"])
    assert args.audio_backend == "loudness"
    assert parser.parse_args(["audio", "--source", "a.png", "--audio", "a.wav", "--out", "o.mp4"]).audio_backend == "ditto"
    with pytest.raises(SystemExit):
        parser.parse_args(["audio", "--source", "a.png", "--audio", "a.wav", "--out", "o.mp4", "--audio-backend", "x"])
    assert "ditto" in capsys.readouterr().err


def test_ditto_loads_from_a_store_or_a_folder(all_weights_dir) -> None:
    from talkinghead.errors import WeightsError
    from talkinghead.weights import WeightStore

    ditto = audio_backend("ditto")
    store = WeightStore(all_weights_dir)
    from_store, from_folder = ditto.from_pretrained(store), ditto.from_pretrained(all_weights_dir)
    assert from_store.store is store and from_folder.store.weights_dir == all_weights_dir
    assert from_store.source_settings(AudioJobOptions()) == from_folder.source_settings(AudioJobOptions())
    for weights in (store, all_weights_dir):  # a store carries its revisions; a folder has none
        with pytest.raises(WeightsError, match="revision"):
            ditto.from_pretrained(weights, revision="v1")
