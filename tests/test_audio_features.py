"""Audio front end (spec ditto-audio2motion.md §2): frame counts, the ONNX encoder wrapper, Ditto's chunking.

The real HuBERT graph is 1.4 GB and not available offline, so the plumbing is
checked with a toy ONNX graph built here: encoder row k = mean of the window's
samples [320k, 320k + 400) times a fixed 1024-vector.  Its features have a
closed form (the mean of two 400-sample averages of the audio), computed
below straight from the audio, which pins down window starts, row slicing,
pairing and alignment to the sample.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from talkinghead.drivers.audio.ditto.features import (
    DITTO_CHUNKING, ditto_frame_count, ditto_window_start, frame_count, offline_features, online_features,
    warmup_features,
)
from talkinghead.drivers.audio.ditto.hubert import FEATURE_DIM, OnnxAudioEncoder, encoder_frame_count
from talkinghead.drivers.audio.ditto import hubert
from talkinghead.errors import WeightsError
from talkinghead.media.audio import load_audio

from conftest import TESTDATA, write_toy_audio_encoder

AUDIO = TESTDATA / "audio"
ROW_VECTOR = np.linspace(0.5, 1.5, FEATURE_DIM, dtype=np.float32)
"""Every toy encoder row is (window mean) × this vector."""


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("toy_encoders")


@pytest.fixture(scope="module")
def encoder(toy_dir: Path) -> OnnxAudioEncoder:
    return OnnxAudioEncoder(write_toy_audio_encoder(toy_dir / "toy.onnx"))


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """8 s of Chinese news, 48 kHz stereo on disk, as 16 kHz mono."""
    return load_audio(AUDIO / "st_chinese_news.wav")


def _window_mean(audio: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Mean of audio[s : s + 400] for each start s, the audio zero-extended on both sides."""
    pad = 4000
    cumsum = np.concatenate([[0.0], np.cumsum(np.pad(audio.astype(np.float64), pad))])
    return (cumsum[starts + pad + 400] - cumsum[starts + pad]) / 400


def _expected(audio: np.ndarray, n: int, offset: int, shifts: np.ndarray | int = 0) -> np.ndarray:
    """Toy features: feature i pools rows at audio samples 640i + offset (+ shift) and 320 later."""
    first = 640 * np.arange(n) + offset + shifts
    pooled = (_window_mean(audio, first) + _window_mean(audio, first + 320)) / 2
    return pooled[:, None].astype(np.float32) * ROW_VECTOR


# --- frame counts ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_samples", [4480, 8960, 17920, 35200, 35840])
def test_ditto_frame_count_overcounts_listed_lengths(n_samples: int) -> None:
    assert frame_count(n_samples) == n_samples // 640
    assert ditto_frame_count(n_samples) == n_samples // 640 + 1


def test_frame_count_is_exact_ceiling_and_ditto_differs_only_at_frame_multiples() -> None:
    lengths = range(0, 200_000)
    exact = [frame_count(n) for n in lengths]
    assert exact == [math.ceil(n / 640) if n % 640 else n // 640 for n in lengths]
    differ = [n for n, e in zip(lengths, exact) if ditto_frame_count(n) != e]
    assert differ and all(n % 640 == 0 and ditto_frame_count(n) == frame_count(n) + 1 for n in differ)
    assert frame_count(48_001, sample_rate=48_000) == 26
    with pytest.raises(ValueError):
        frame_count(-1)


def test_ditto_window_start_reproduces_the_float_expression() -> None:
    starts = {i: ditto_window_start(i) - 640 * i for i in range(0, 3300, 5)}
    assert {i for i, d in starts.items() if d} >= {1615, 3205, 3230}
    assert min(i for i, d in starts.items() if d) == 1615
    assert set(starts.values()) == {0, -1}


def test_window_layout_and_encoder_rows() -> None:
    assert (DITTO_CHUNKING.window_samples, DITTO_CHUNKING.hop_samples) == (6480, 3200)
    assert (DITTO_CHUNKING.offline_front_pad, DITTO_CHUNKING.online_front_pad) == (2000, 1920)
    assert encoder_frame_count(6480) == 20
    for n in range(400, 20_000, 7):  # cascaded valid convs, kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2
        length = n
        for kernel, stride in zip((10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)):
            length = (length - kernel) // stride + 1
        assert encoder_frame_count(n) == length


# --- offline / online features with the toy encoder ---------------------------------------------------------------

@pytest.mark.parametrize("batch_axis", [False, True])
def test_offline_features_match_closed_form(toy_dir: Path, speech: np.ndarray, batch_axis: bool) -> None:
    encoder = OnnxAudioEncoder(write_toy_audio_encoder(toy_dir / f"toy_{batch_axis}.onnx", batch_axis=batch_axis))
    features = offline_features(encoder, speech)
    assert features.shape == (frame_count(speech.size), FEATURE_DIM) == (200, FEATURE_DIM)
    assert features.dtype == np.float32
    np.testing.assert_allclose(features, _expected(speech, 200, offset=-80), rtol=0, atol=1e-6)


def test_offline_features_keep_ditto_window_start_quirk(encoder: OnnxAudioEncoder, speech: np.ndarray) -> None:
    long_speech = np.tile(speech, 9)[:1620 * 640 - 100]  # 66 s: frames 1615..1619 use the window starting 1 early
    n = frame_count(long_speech.size)
    features = offline_features(encoder, long_speech)
    firsts = 5 * (np.arange(n) // 5)
    shifts = np.array([ditto_window_start(i) for i in firsts]) - 640 * firsts
    assert shifts[1615:].tolist() == [-1] * 5 and not shifts[:1615].any()
    np.testing.assert_allclose(features, _expected(long_speech, n, -80, shifts), rtol=0, atol=1e-6)
    assert not np.allclose(features[1615:], _expected(long_speech, n, -80)[1615:], rtol=0, atol=1e-5)


def test_offline_features_encode_one_window_at_a_time(encoder: OnnxAudioEncoder, speech: np.ndarray) -> None:
    lengths = []

    def spy(window: np.ndarray) -> np.ndarray:
        lengths.append(window.size)
        return encoder(window)

    n = ditto_frame_count(4480)
    features = offline_features(spy, speech[:4480], n_frames=n)
    assert features.shape == (8, FEATURE_DIM) and lengths == [6480, 6480]
    with pytest.raises(ValueError):
        offline_features(encoder, speech[:4480], n_frames=9)


@pytest.mark.parametrize("name", sorted(p.name for p in AUDIO.glob("*.wav")))
def test_real_speech_feature_count_equals_frame_count(encoder: OnnxAudioEncoder, name: str) -> None:
    samples = load_audio(AUDIO / name)
    assert offline_features(encoder, samples).shape == (frame_count(samples.size), FEATURE_DIM)
    online = list(online_features(encoder, [samples]))
    assert len(online) == math.ceil((samples.size + 1920) / 3200)
    assert sum(rows.shape[0] for rows in online) >= frame_count(samples.size)


def test_online_features_are_offline_features_80_samples_later(encoder: OnnxAudioEncoder, speech: np.ndarray) -> None:
    whole = np.concatenate(list(online_features(encoder, [speech])))
    np.testing.assert_allclose(whole, _expected(speech, whole.shape[0], offset=0), rtol=0, atol=1e-6)
    delayed = offline_features(encoder, speech[80:])  # feature 0 differs: offline it starts in the front padding
    np.testing.assert_allclose(whole[1:delayed.shape[0]], delayed[1:], rtol=0, atol=1e-6)


def test_online_features_do_not_depend_on_chunk_sizes(encoder: OnnxAudioEncoder, speech: np.ndarray) -> None:
    cuts = np.cumsum([0, 1000, 0, 7000, 3200, 1, 50_000])
    chunks = np.split(speech, cuts[1:])
    streamed = list(online_features(encoder, iter(chunks)))
    assert all(rows.shape == (5, FEATURE_DIM) for rows in streamed)
    np.testing.assert_array_equal(np.concatenate(streamed), np.concatenate(list(online_features(encoder, [speech]))))


def test_warmup_features_are_offline_features_of_silence(encoder: OnnxAudioEncoder) -> None:
    warm = warmup_features(encoder, 7)  # 4480 samples: Ditto's count would say 8, the warm-up has 7 rows
    assert warm.shape == (7, FEATURE_DIM) and not warm.any()
    assert warmup_features(encoder, 0).shape == (0, FEATURE_DIM)


# --- encoder checks ---------------------------------------------------------------------------------------------

def test_encoder_runs_on_cpu_and_falls_back_from_cuda(toy_dir: Path, encoder: OnnxAudioEncoder,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert encoder.providers == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; the fallback does not apply")
    monkeypatch.setattr(hubert, "_warned", set())
    with pytest.warns(UserWarning, match="CUDA"):
        fallback = OnnxAudioEncoder(toy_dir / "toy.onnx", device="cuda")
    assert fallback.providers == ["CPUExecutionProvider"]


class _SessionSpy:
    """Stands in for ort.InferenceSession: records the providers asked for, runs the graph on the real CPU
    session, and reports ``reported`` (default: what was asked) as the providers in use."""

    asked: list = []

    def __init__(self, path: str, providers: list, reported: list[str] | None = None) -> None:
        type(self).asked.append(providers)
        self._real = _REAL_SESSION(path, providers=["CPUExecutionProvider"])
        self._reported = reported if reported is not None else [p[0] if isinstance(p, tuple) else p for p in providers]

    def get_providers(self) -> list[str]:
        return self._reported

    def __getattr__(self, name: str):
        return getattr(self._real, name)


_REAL_SESSION = ort.InferenceSession


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch):
    """ort as hubert sees it, with a CUDA-capable provider list and the session spy; warnings not yet given."""
    monkeypatch.setattr(hubert, "_warned", set())
    monkeypatch.setattr(_SessionSpy, "asked", [])
    monkeypatch.setattr(hubert.ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(hubert.ort, "InferenceSession", _SessionSpy)
    return _SessionSpy


def test_cuda_device_puts_the_cuda_provider_first(toy_dir: Path, encoder: OnnxAudioEncoder, spy, speech: np.ndarray) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gpu = OnnxAudioEncoder(toy_dir / "toy.onnx", device="cuda:1")
        cpu = OnnxAudioEncoder(toy_dir / "toy.onnx", device="cpu")
    assert spy.asked == [[("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"], ["CPUExecutionProvider"]]
    assert gpu.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"] and cpu.providers == ["CPUExecutionProvider"]
    assert hubert.execution_providers("cuda") == [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    assert gpu(speech[:6480]).shape == (20, FEATURE_DIM)  # the session still runs the graph


def test_cuda_asked_with_the_cpu_build_warns_once(toy_dir: Path, encoder: OnnxAudioEncoder, spy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hubert.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.warns(UserWarning) as caught:
        first = OnnxAudioEncoder(toy_dir / "toy.onnx", device="cuda")
        second = OnnxAudioEncoder(toy_dir / "toy.onnx", device="cuda")
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "runs on CPU" in message and "pip uninstall -y onnxruntime onnxruntime-gpu" in message
    assert spy.asked == [["CPUExecutionProvider"]] * 2
    assert first.providers == second.providers == ["CPUExecutionProvider"]


def test_cuda_offered_but_not_started_warns_once(toy_dir: Path, encoder: OnnxAudioEncoder, spy, monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime-gpu installed but its CUDA libraries missing: the session falls back to CPU by itself."""
    monkeypatch.setattr(hubert.ort, "InferenceSession",
                        lambda path, providers: _SessionSpy(path, providers, reported=["CPUExecutionProvider"]))
    with pytest.warns(UserWarning, match="could not start CUDA") as caught:
        OnnxAudioEncoder(toy_dir / "toy.onnx", device="cuda")
        OnnxAudioEncoder(toy_dir / "toy.onnx", device="cuda")
    assert len(caught) == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"input_name": "waveform"}, "input_values"),
    ({"width": 512}, "1024"),
])
def test_mismatched_graph_raises_weights_error(toy_dir: Path, kwargs: dict, message: str) -> None:
    path = write_toy_audio_encoder(toy_dir / f"bad_{next(iter(kwargs))}.onnx", **kwargs)
    with pytest.raises(WeightsError, match=message):
        OnnxAudioEncoder(path)


def test_too_few_rows_raises_weights_error(toy_dir: Path, speech: np.ndarray) -> None:
    coarse = OnnxAudioEncoder(write_toy_audio_encoder(toy_dir / "coarse.onnx", stride=640))  # 10 rows per window
    with pytest.raises(WeightsError, match="rows"):
        offline_features(coarse, speech)


def test_missing_or_broken_file_raises_weights_error(toy_dir: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        OnnxAudioEncoder(toy_dir / "absent.onnx")
    broken = toy_dir / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(WeightsError, match="not a loadable ONNX model"):
        OnnxAudioEncoder(broken)
