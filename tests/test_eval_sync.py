"""Sync-C / Sync-D (SyncNet): strict loading of a file in syncnet_v2.model's key layout, the towers' shapes,
the offset/confidence math on known embeddings, the MFCCs on real speech, the face crop's geometry, and the
scoring of a real talking clip (random weights: it runs and gives finite numbers), alone and through
``eval compare --syncnet`` and the hook the audio protocol calls."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from talkinghead.cli import main
from talkinghead.errors import WeightsError
from talkinghead.evaluation import sync
from talkinghead.evaluation.protocols import EvalOptions, Evaluator, sync_skips
from talkinghead.evaluation.report_json import loads_results
from talkinghead.evaluation.syncnet import SyncNet, load_syncnet
from talkinghead.face.landmarks import JsonLandmarks
from talkinghead.media.audio import load_audio
from talkinghead.media.video import VideoReader

from conftest import TESTDATA, landmarks_json

CLIP = TESTDATA / "talking" / "hdtf_RD_Radio10_0_clip_0.mp4"  # 512×512, 29.97 fps, 2.1 s, speech

# syncnet_v2.model's layout, written out from joonson/syncnet_python SyncNetModel.py (class S):
# (Sequential, index, weight shape) of each conv/linear; the BatchNorm after it has index + 1.
_AUDIO = [(0, (64, 1, 3, 3)), (4, (192, 64, 3, 3)), (8, (384, 192, 3, 3)), (11, (256, 384, 3, 3)),
          (14, (256, 256, 3, 3)), (18, (512, 256, 5, 4))]
_LIP = [(0, (96, 3, 5, 7, 7)), (4, (256, 96, 1, 5, 5)), (8, (256, 256, 1, 3, 3)), (11, (256, 256, 1, 3, 3)),
        (14, (256, 256, 1, 3, 3)), (18, (512, 256, 1, 6, 6))]
_FC = [(0, (512, 512)), (3, (1024, 512))]


def _layout(counters: bool) -> dict[str, tuple[int, ...]]:
    """Key → shape of the published file (``counters``: with BatchNorm's num_batches_tracked, 0-d)."""
    keys: dict[str, tuple[int, ...]] = {}
    for tower, layers in (("netcnnaud", _AUDIO), ("netfcaud", _FC), ("netfclip", _FC), ("netcnnlip", _LIP)):
        for index, shape in layers:
            keys[f"{tower}.{index}.weight"], keys[f"{tower}.{index}.bias"] = shape, shape[:1]
            if tower.startswith("netfc") and index == 3:
                continue
            for name in ("weight", "bias", "running_mean", "running_var"):
                keys[f"{tower}.{index + 1}.{name}"] = shape[:1]
            if counters:
                keys[f"{tower}.{index + 1}.num_batches_tracked"] = ()
    return keys


def _random_file(path: Path, counters: bool = False, seed: int = 0, legacy: bool = False) -> Path:
    g = torch.Generator().manual_seed(seed)
    state = {k: (torch.tensor(7) if not shape else
                 torch.rand(shape, generator=g) + 0.5 if k.endswith("running_var") else
                 torch.randn(shape, generator=g) * (0.05 if len(shape) > 1 else 0.1))
             for k, shape in _layout(counters).items()}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)  # legacy: torch < 1.6's format
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return _random_file(tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model")


@pytest.fixture(scope="module")
def model(weights) -> SyncNet:
    return load_syncnet(weights)


@pytest.mark.parametrize("counters, legacy", [(False, True), (True, False)])
def test_a_file_in_the_syncnet_v2_layout_loads_strictly(tmp_path, counters, legacy) -> None:
    """As an old torch saves it (no BatchNorm counters, the pre-1.6 file format) and as a newer one does."""
    path = _random_file(tmp_path / "syncnet_v2.model", counters, legacy=legacy)
    net = load_syncnet(path)
    stored = torch.load(path, weights_only=True)
    assert list(net.state_dict()) == list(_layout(True))  # the reference's key order, counters included
    assert all(torch.equal(net.state_dict()[k], v) for k, v in stored.items())
    assert not net.training


def test_a_wrong_file_is_refused_naming_the_keys(tmp_path) -> None:
    state = torch.load(_random_file(tmp_path / "a.model"), weights_only=True)
    del state["netcnnlip.19.running_var"]
    state["module.extra.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "wrong.model")
    named = r"missing key 'netcnnlip\.19\.running_var'.*unexpected key 'module\.extra\.weight'"
    with pytest.raises(WeightsError, match=named):
        load_syncnet(tmp_path / "wrong.model")
    state = torch.load(_random_file(tmp_path / "b.model"), weights_only=True)
    state["netfcaud.3.weight"] = torch.zeros(512, 512)
    torch.save(state, tmp_path / "narrow.model")
    with pytest.raises(WeightsError, match=r"'netfcaud\.3\.weight' has shape \[512, 512\], expected \[1024, 512\]"):
        load_syncnet(tmp_path / "narrow.model")


def test_both_towers_give_1024_d_embeddings(model) -> None:
    with torch.no_grad():
        audio = model.forward_audio(torch.randn(3, 1, 13, 20))
        lips = model.forward_lips(torch.rand(2, 3, 5, 224, 224) * 255)
    assert audio.shape == (3, 1024) and lips.shape == (2, 1024)
    assert torch.isfinite(audio).all() and torch.isfinite(lips).all()


def _reference_mean_distances(video: torch.Tensor, audio: torch.Tensor, vshift: int) -> torch.Tensor:
    """The reference's calc_pdist + mean, written as a plain loop over frames (known-value check)."""
    padded = torch.nn.functional.pad(audio, (0, 0, vshift, vshift))
    rows = [torch.nn.functional.pairwise_distance(video[[i]].repeat(2 * vshift + 1, 1), padded[i:i + 2 * vshift + 1])
            for i in range(len(video))]
    return torch.stack(rows, 1).mean(1)


@pytest.mark.parametrize("k", [0, 4, -3])
def test_audio_shifted_by_k_frames_gives_offset_k(k) -> None:
    """audio[t] = video[t + k] (the audio leads by k frames): offset k, Sync-D = the unmatched frames'
    distance to the zero padding only (≈ 0 for k = 0), Sync-C = median − min > 0."""
    g = torch.Generator().manual_seed(1)
    n = 40
    video = torch.randn(n, 1024, generator=g)
    audio = torch.randn(n, 1024, generator=g)
    for t in range(n):
        if 0 <= t + k < n:
            audio[t] = video[t + k]
    result = sync.sync_offsets(video, audio)
    assert result.offset == k
    unmatched = [i for i in range(n) if not 0 <= i - k < n]
    expected = sum(float(torch.linalg.norm(video[i])) for i in unmatched) / n
    assert result.sync_d == pytest.approx(expected, abs=1e-3)
    assert k != 0 or result.sync_d < 1e-4
    assert result.sync_c > 30  # random 1024-d vectors: ≈ 45 apart
    reference = _reference_mean_distances(video, audio, 15)
    assert np.array_equal(result.distances, reference.numpy())
    assert result.sync_c == float(torch.median(reference) - reference.min())
    assert result.frame_confidence.shape == (n,) and result.distances.shape == (31,)


def test_mfcc_of_real_speech_is_13_by_100_per_second() -> None:
    """dt_german1.wav (16 kHz, 8.7 s): 13 × (1 + ceil((N − 400)/160)) MFCCs, 100 per second = 4 per video frame
    at 25 fps; the same as python_speech_features.mfcc where it is installed (bit for bit)."""
    wav = TESTDATA / "audio" / "dt_german1.wav"
    samples = np.round(load_audio(wav, 16000).astype(np.float64) * 32768)
    mfcc = sync.speech_mfcc(samples)
    n = len(samples)
    assert mfcc.shape == (13, 1 + math.ceil((n - 400) / 160)) and np.isfinite(mfcc).all()
    assert mfcc.shape[1] / (n / 16000) == pytest.approx(100, abs=0.5)
    assert mfcc.shape[1] / (n / 16000 * sync.SYNC_FPS) == pytest.approx(sync.MFCC_PER_FRAME, abs=0.01)
    psf = pytest.importorskip("python_speech_features")
    from scipy.io import wavfile

    rate, pcm = wavfile.read(wav)
    assert np.array_equal(pcm, samples)  # load_audio's float, back on the 16-bit scale, is the WAV's
    assert np.array_equal(np.asarray(psf.mfcc(pcm, rate)).T, mfcc)


def test_face_crop_geometry_and_grey_outside() -> None:
    """A box with s = 80 spans exactly 224 × 224 pixels (1 + 1.8 = 2.8 s both ways): no resize, the crop is
    the frame's pixels in BGR order; a box off the frame's corner is grey 110 there."""
    with VideoReader(CLIP, max_frames=1) as reader:
        frame = next(iter(reader))
    crop = sync.face_crop(frame, np.array([256.4, 200.7, 80.0]))
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    assert np.array_equal(crop, frame[120:344, 144:368, ::-1])
    corner = sync.face_crop(frame, np.array([10.0, 10.0, 80.0]))
    assert (corner[:10, :10] == 110).all() and not (corner[-10:, -10:] == 110).all()


def test_face_boxes_fill_missing_frames_and_smooth() -> None:
    doc = json.loads(landmarks_json(CLIP.name).read_text())
    points = [np.array(p, np.float64) for p in doc["frames"][:20]]
    boxes = sync.face_boxes([None, *points[1:]])
    assert boxes.shape == (20, 3) and (boxes[:, 2] > 50).all()
    assert np.isfinite(boxes).all() and abs(boxes[5, 0] - 288) < 20  # the face centre (x ≈ 288 in this clip)
    with pytest.raises(Exception, match="no face landmarks"):
        sync.face_boxes([None, None])


def test_sync_of_a_real_talking_clip_runs(model) -> None:
    """20 frames at 25 fps of a real clip with its speech, random weights: 15 windows, finite scores."""
    result = sync.score_video(model, CLIP, JsonLandmarks(landmarks_json(CLIP.name)), max_frames=20)
    assert -15 <= result.offset <= 15 and result.frame_confidence.shape == (15,)
    assert math.isfinite(result.sync_c) and result.sync_c >= 0 and math.isfinite(result.sync_d) and result.sync_d > 0
    assert result.sync_d == pytest.approx(float(result.distances.min()))


def test_the_audio_protocols_hook_scores_or_says_why(weights) -> None:
    evaluator = Evaluator(None, EvalOptions(max_frames=8, syncnet=str(weights)))
    doc = json.loads(landmarks_json(CLIP.name).read_text())
    points = [np.array(p, np.float32) for p in doc["frames"]]
    values, skipped, confidence = evaluator.sync_metrics(CLIP, points)
    assert set(values) == {"sync_c", "sync_d", "sync_offset"} and not skipped and len(confidence) == 3
    assert all(math.isfinite(v) for v in values.values())
    evaluator.options.max_frames = 5
    values, skipped, _ = evaluator.sync_metrics(CLIP, points)
    assert values["sync_c"] is None and "at least 6 frames" in skipped["sync_c"]
    assert Evaluator(None, EvalOptions()).sync_metrics(CLIP, points) == ({}, {}, [])


def _refuse_bare_constant(token: str) -> None:
    raise AssertionError(f"REPORT.json holds a bare {token}, which strict JSON parsers refuse")


def test_eval_compare_with_syncnet_reports_sync(tmp_path, weights, capsys) -> None:
    marks = str(landmarks_json(CLIP.name))
    command = ["eval", "compare", "--pred", str(CLIP), "--ref", str(CLIP), "--pred-landmarks", marks,
               "--ref-landmarks", marks, "--max-frames", "6", "--weights", str(tmp_path / "no_weights"),
               "--device", "cpu", "--quiet", "--out"]
    assert main([*command, str(tmp_path / "r.json"), "--syncnet", str(weights)]) == 0
    text = (tmp_path / "r.json").read_text()
    report = json.loads(text, parse_constant=_refuse_bare_constant)  # strict RFC 8259 JSON
    assert report["metrics"]["psnr"] == "Infinity" and loads_results(text)["metrics"]["psnr"] == math.inf
    assert all(math.isfinite(report["metrics"][m]) for m in ("sync_c", "sync_d", "sync_offset"))
    assert "syncnet" in report["models"]
    torch.save({"netcnnaud.0.weight": torch.zeros(64, 1, 3, 3)}, tmp_path / "bad.model")
    assert main([*command, str(tmp_path / "bad.json"), "--syncnet", str(tmp_path / "bad.model")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing key" in err[0] and "bad.model" in err[0]


def test_run_level_sync_reasons() -> None:
    assert "--syncnet" in sync_skips({}, None)["sync_c"]
    resumed = {"a": {"metrics": {"csim": 0.9}}}
    assert "resumed" in sync_skips(resumed, "syncnet_v2.model")["sync_d"]
    assert sync_skips({"b": {"metrics": {"sync_c": None}}, **resumed}, "syncnet_v2.model") == {}
