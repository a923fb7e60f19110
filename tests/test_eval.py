"""``talkinghead eval``: the metrics on real clips (identical, shifted, reversed), known values, and the
reenactment and audio protocols end to end (2 rendered frames per clip, filled weights) with resumption."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from talkinghead.cli import main
from talkinghead.evaluation import identity, metrics, report_json
from talkinghead.evaluation.protocols import EvalOptions, Evaluator
from talkinghead.evaluation.syncnet import SyncNet
from talkinghead.face.landmarks import JsonLandmarks
from talkinghead.media.provenance import ProvenanceOptions
from talkinghead.media.video import VideoReader, write_frames

from conftest import TESTDATA, landmarks_json

CLIP = TESTDATA / "talking" / "hdtf_RD_Radio10_0_clip_0.mp4"  # 512×512, 29.97 fps, 62 frames
N = 8
DISTANCES = ("l1", "akd", "aed", "apd")


class Shifted:
    """A landmark provider: the clip's stored landmarks of frame ``order[i]`` for frame i."""

    def __init__(self, order: list[int]) -> None:
        self.order, self.file = order, JsonLandmarks(landmarks_json(CLIP.name))

    def landmarks(self, image: np.ndarray, frame_index: int = 0) -> np.ndarray | None:
        return self.file.landmarks(image, self.order[frame_index])


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    with VideoReader(CLIP, max_frames=N + 3) as reader:
        return list(reader)


@pytest.fixture(scope="module")
def evaluator(engine) -> Evaluator:
    return Evaluator(engine, EvalOptions(max_frames=N))


def _clip(frames: list[np.ndarray], order: list[int], path: Path) -> Path:
    return write_frames([frames[i] for i in order], path, 30000 / 1001, len(order), None, False,
                        ProvenanceOptions(enabled=False))


@pytest.fixture(scope="module")
def compared(tmp_path_factory, frames, evaluator) -> dict[str, dict]:
    """Results of the clip (re-encoded, frames 0..N-1) against itself, shifted by 1 and 3 frames, reversed."""
    folder = tmp_path_factory.mktemp("eval_clips")
    orders = {"same": list(range(N)), "shift1": list(range(1, N + 1)), "shift3": list(range(3, N + 3)),
              "reversed": list(range(N))[::-1]}
    ref = _clip(frames, orders["same"], folder / "ref.mp4")
    return {name: evaluator.compare(_clip(frames, order, folder / f"{name}.mp4") if name != "same" else ref, ref,
                                    Shifted(order), Shifted(orders["same"])) for name, order in orders.items()}


def test_identical_videos_score_perfectly(compared) -> None:
    m = compared["same"]["metrics"]
    assert m["psnr"] == math.inf or m["psnr"] >= 60
    assert abs(m["ssim"] - 1) <= 1e-6
    assert m["l1"] == 0 and m["akd"] == 0 and m["aed"] == 0 and m["apd"] == 0
    assert m["csim"] == pytest.approx(1, abs=1e-6)


def test_a_shifted_clip_is_farther_and_a_reversed_one_farther_still(compared) -> None:
    for name in ("shift1", "shift3", "reversed"):
        m = compared[name]["metrics"]
        assert math.isfinite(m["psnr"]) and m["ssim"] < 1 and m["csim"] < 1, name
        assert all(m[d] > 0 for d in DISTANCES), (name, m)
    one, rev = compared["shift1"]["metrics"], compared["reversed"]["metrics"]
    assert rev["psnr"] < one["psnr"] and rev["ssim"] < one["ssim"]
    assert all(rev[d] > one[d] for d in DISTANCES), (one, rev)


def test_ssim_psnr_l1_match_scikit_image_and_numpy(frames) -> None:
    """SSIM vs ``skimage.metrics.structural_similarity`` (Gaussian σ 1.5, population covariance: Wang et
    al.'s setting) within 2e-3 (the two treat the 5-pixel border differently); PSNR within 1e-3 dB."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a, b = frames[0], frames[5]
    reference = structural_similarity(a, b, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, data_range=255)
    assert metrics.ssim(a, b) == pytest.approx(reference, abs=2e-3)
    assert metrics.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(b, a, data_range=255), abs=1e-3)
    assert metrics.l1(a, b) == pytest.approx(np.abs(a / 255.0 - b / 255.0).mean(), abs=1e-6)


def test_dlib_embedding_reproduces_the_testdata_embedding(frames) -> None:
    """CSIM's offline model: our 68-point-aligned dlib descriptor of frame 0 against the one stored in the
    testdata landmark file (dlib's own 5-point alignment): cosine ≥ 0.995."""
    doc = json.loads(landmarks_json(CLIP.name).read_text())
    ours = identity.DlibFaces().embedding(frames[0], np.array(doc["frames"][0], np.float32))
    assert identity.cosine(ours, np.array(doc["embeddings"][0])) >= 0.995


def test_lpips_matches_the_lpips_package_where_alexnet_loads(frames) -> None:
    """LPIPS needs torchvision's AlexNet download: offline it is skipped with the reason (checked here)."""
    meter = metrics.Lpips()
    if not meter.available:
        assert "alexnet" in meter.reason.lower() or "lpips" in meter.reason
        assert meter(frames[0], frames[1]) is None
        pytest.skip(meter.reason)
    import lpips
    import torch

    t = [torch.from_numpy(f).permute(2, 0, 1)[None].float() / 127.5 - 1 for f in (frames[0], frames[1])]
    assert meter(frames[0], frames[1]) == pytest.approx(float(lpips.LPIPS(net="alex", verbose=False)(*t)), abs=1e-5)
    assert meter(frames[0], frames[0]) == pytest.approx(0, abs=1e-6)


def test_bad_eval_input_is_one_line_and_exit_2(tmp_path, capsys) -> None:
    assert main(["eval", "compare", "--pred", str(tmp_path / "no.mp4"), "--ref", str(CLIP),
                 "--out", str(tmp_path / "r.json")]) == 2
    assert main(["eval", "reenact", "--clips", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert main(["eval", "compare", "--pred", str(CLIP), "--ref", str(CLIP), "--out", str(tmp_path / "r.txt")]) == 2
    assert main(["eval", "compare", "--pred", str(CLIP), "--ref", str(CLIP), "--out", str(tmp_path / "r.json"),
                 "--device", "cpu", "--precision", "fp16"]) == 2         # fp16 is CUDA-only: refused before any work
    speech = TESTDATA / "audio" / "espeak_en_us.wav"                           # not a video: probed before any work
    assert main(["eval", "compare", "--pred", str(speech), "--ref", str(CLIP), "--out", str(tmp_path / "r.json")]) == 2
    other_rate = TESTDATA / "talking" / "vr_face2.mp4"                         # 25 fps against 29.97
    assert main(["eval", "compare", "--pred", str(other_rate), "--ref", str(CLIP), "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 6 and all(line.startswith("error: ") for line in err), err
    assert "fp16" in err[3] and not (tmp_path / "r.json").exists()
    assert "espeak_en_us.wav" in err[4] and "video" in err[4]
    assert "25 fps" in err[5] and "29.97 fps" in err[5] and "one rate" in err[5]
    assert not (tmp_path / "o").exists()


def _folder(tmp_path: Path, names: list[str]) -> Path:
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in names:
        (clips / name).symlink_to(TESTDATA / "talking" / name)
    return clips


def _run(protocol: str, clips: Path, out: Path, weights: Path, *extra: str) -> dict:
    assert main(["eval", protocol, "--clips", str(clips), "--out", str(out), "--landmarks", str(TESTDATA / "landmarks"),
                 "--max-frames", "2", "--weights", str(weights), "--device", "cpu", "--quiet", *extra]) == 0
    return json.loads((out / "REPORT.json").read_text())


def test_eval_reenact_end_to_end_and_resumes(tmp_path, all_weights_dir) -> None:
    clips, out = _folder(tmp_path, ["hdtf_RD_Radio10_0_clip_0.mp4", "vr_face2.mp4"]), tmp_path / "out"
    report = _run("reenact", clips, out, all_weights_dir)
    assert set(report["clips"]) == {"hdtf_RD_Radio10_0_clip_0", "vr_face2"}
    for name in ("psnr", "ssim", "l1", "aed", "apd"):
        assert report["metrics"][name] is not None and math.isfinite(report["metrics"][name]), name
    assert all(clip["frames"] == 2 for clip in report["clips"].values())
    assert report["metrics"]["fid"] is None and "fid" in report["skipped"]
    assert (out / "REPORT.md").read_text().count("|") > 10 and (out / "REPORT.png").stat().st_size > 0
    rendered = {p: p.stat().st_mtime_ns for p in (out / "clips").glob("*.mp4")}
    again = _run("reenact", clips, out, all_weights_dir)
    assert all(clip.get("resumed") for clip in again["clips"].values())
    assert {p: p.stat().st_mtime_ns for p in (out / "clips").glob("*.mp4")} == rendered
    assert again["metrics"] == report["metrics"]


def test_eval_audio_end_to_end_and_resumes(tmp_path, all_weights_dir) -> None:
    clips, out = _folder(tmp_path, ["hdtf_RD_Radio10_0_clip_0.mp4"]), tmp_path / "out"
    report = _run("audio", clips, out, all_weights_dir)
    m = report["metrics"]
    assert m["rtf"] > 0 and all(m[f"pose_std_{a}"] >= 0 for a in ("yaw", "pitch", "roll"))
    assert m["sync_c"] is None and "--syncnet" in report["skipped"]["sync_c"]
    assert m["fvd"] is None and "fvd" in report["skipped"]
    torch.save(SyncNet().state_dict(), tmp_path / "syncnet_v2.model")  # random SyncNet weights, strict layout
    again = _run("audio", clips, out, all_weights_dir, "--syncnet", str(tmp_path / "syncnet_v2.model"))
    assert all(clip.get("resumed") for clip in again["clips"].values())
    assert again["metrics"]["sync_c"] is None and "resumed" in again["skipped"]["sync_c"]  # (scoring: test_eval_sync)


def test_eval_cross_reenactment_end_to_end(tmp_path, all_weights_dir) -> None:
    clips, out = _folder(tmp_path, ["hdtf_RD_Radio10_0_clip_0.mp4"]), tmp_path / "out"
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "st_happy.png").symlink_to(TESTDATA / "images" / "st_happy.png")
    assert main(["eval", "reenact", "--clips", str(clips), "--sources", str(photos), "--out", str(out),
                 "--landmarks", str(TESTDATA / "landmarks"), "--max-frames", "2", "--weights", str(all_weights_dir),
                 "--device", "cpu", "--quiet"]) == 0
    report = json.loads((out / "REPORT.json").read_text())
    assert report["protocol"] == "cross-reenact"
    assert report["clips"]["hdtf_RD_Radio10_0_clip_0"]["source"] == "st_happy.png"
    assert math.isfinite(report["metrics"]["aed"]) and math.isfinite(report["metrics"]["apd"])
    assert report["metrics"]["csim"] is not None or "csim" in report["skipped"]


def test_results_json_is_strict_and_reads_back_non_finite_values() -> None:
    results = {"psnr": math.inf, "low": -math.inf, "bad": math.nan, "frames": [30.5, math.inf], "name": "a",
               "Infinity": 1}
    text = report_json.dumps_results(results)
    assert "Infinity" in text and json.loads(text)["psnr"] == "Infinity"  # no bare token: any parser reads it
    back = report_json.loads_results(text)
    assert back["psnr"] == math.inf and back["low"] == -math.inf and math.isnan(back["bad"])
    assert back["frames"] == [30.5, math.inf] and back["name"] == "a" and back["Infinity"] == 1
    assert report_json.loads_results('{"psnr": Infinity}')["psnr"] == math.inf  # files of earlier runs
