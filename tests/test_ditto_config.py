"""Ditto's configuration pickle: safe reading, mapping onto our options, and the shipped ditto_post_golden through the loader.

The real ``ditto_cfg/*.pkl`` files cannot be downloaded here; the tests write
pickles in Ditto's layout (core/atomic_components/cfg.py) themselves, with
the values of the ``shipped`` variant of tests/data/fixtures/ditto/golden_post.
"""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import (
    DITTO_FIXTURES,
    TESTDATA,
    TEST_OFFLINE_KWARGS,
    assert_close,
    landmarks_json,
    write_ditto_config,
)
from talkinghead.cli import main
from talkinghead.drivers.audio.ditto.condition import ConditionBuilder, ConditionParts, EyeConditions, mirror_index
from talkinghead.drivers.audio.ditto.config import DittoConfig, SourceSettings
from talkinghead.drivers.audio.ditto.driver import DEFAULT_STEPS
from talkinghead.drivers.audio.ditto.postprocess import IMAGE_DRIVEN, MotionPostprocessor
from talkinghead.drivers.audio.ditto.windows import clip_motion
from talkinghead.engine import AudioJobOptions
from talkinghead.errors import WeightsError
from talkinghead.media.audio import load_audio
from talkinghead.media.image import ditto_size
from talkinghead.safe_pickle import load_plain_pickle, loads_plain_pickle

KEYPOINT_TOL, DEGREE_TOL = 1e-5, 1e-4


@pytest.fixture(scope="module")
def shipped() -> dict:
    return json.loads((DITTO_FIXTURES / "manifest.json").read_text())["generation_info"]["post"]["shipped"]


def shipped_kwargs(ditto_inputs, ditto_post_golden, shipped) -> dict:
    """``default_kwargs`` holding the fixture's ``shipped`` settings, as NumPy data the way Ditto stores them."""
    src = {k: ditto_inputs[f"src.{k}"].numpy() for k in ("pitch", "yaw", "roll", "t", "exp", "kp")}
    reference_scale = np.float32(1.2)
    assert math.isclose(reference_scale.item() / ditto_inputs["src.scale"].item(), shipped["scale_ratio"], rel_tol=1e-7)
    ch_info = {
        "x_s_info_lst": [{**src, "scale": np.full((1, 1), reference_scale, np.float32)}],
        "sc": src["kp"].reshape(63).copy(),
        "eye_open_lst": [ditto_inputs["src.eye_open"].numpy()],
        "eye_ball_lst": [ditto_inputs["src.eye_ball"].numpy()],
    }
    ctrl_info = {int(frame): {k: np.asarray(v, np.float32) if k == "delta_exp" else v for k, v in ctrl.items()}
                 for frame, ctrl in shipped["ctrl_info"].items()}
    return {
        "v_min_max_for_clip": ditto_post_golden["post.v_min_max"].numpy(),
        "delta_eye_arr": ditto_post_golden["post.blink_template"].numpy(),
        "delta_eye_open_n": 20,
        "ch_info": ch_info,
        "use_d_keys": ("exp", "pitch", "yaw", "roll", "t"),
        "overall_ctrl_info": {k: np.float32(v) for k, v in shipped["overall_ctrl_info"].items()},
        "ctrl_info": ctrl_info,
        "sampling_timesteps": 10,
        "overlap_v2": 10,
        "flag_stitching": True,
    }


# ---------------------------------------------------------------- the restricted unpickler


@pytest.mark.parametrize("numpy1", [False, True], ids=["numpy2-names", "numpy1-names"])
def test_config_pickles_in_both_numpy_spellings_load(tmp_path, ditto_inputs, ditto_post_golden, shipped, numpy1):
    path = write_ditto_config(tmp_path / "cfg.pkl", shipped_kwargs(ditto_inputs, ditto_post_golden, shipped), numpy1=numpy1)
    raw = path.read_bytes()
    assert (b"numpy.core.multiarray" in raw) == numpy1 and (b"numpy._core.multiarray" in raw) != numpy1
    cfg = load_plain_pickle(path)
    kwargs = cfg["default_kwargs"]
    assert np.array_equal(kwargs["delta_eye_arr"], ditto_post_golden["post.blink_template"].numpy())
    assert kwargs["overall_ctrl_info"]["delta_pitch"] == np.float32(2.0)
    assert cfg["audio2motion_cfg"]["audio_feat_dim"] == 1103


class _Payload:
    """Stands for a poisoned config: unpickling it would create a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_reduce_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    cfg = {"audio2motion_cfg": {}, "default_kwargs": {"emo": _Payload(marker)}}
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(cfg))
    with pytest.raises(WeightsError, match=r"global pathlib\.(Path|PosixPath)\.touch|global pathlib"):
        DittoConfig.load(path)
    assert not marker.exists()
    evil = pickle.dumps(os.system)  # a bare reference to a function
    with pytest.raises(WeightsError, match=r"global (posix|os)\.system"):
        loads_plain_pickle(evil)


def test_corrupt_and_missing_files_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"default_kwargs": {}})[:-5])
    with pytest.raises(WeightsError, match="not a readable pickle"):
        DittoConfig.load(bad)
    with pytest.raises(WeightsError, match="cannot read"):
        DittoConfig.load(tmp_path / "absent.pkl")
    wrong = write_ditto_config(tmp_path / "wrong.pkl", {"v_min_max_for_clip": np.zeros((2, 200), np.float32)})
    with pytest.raises(WeightsError, match="v_min_max_for_clip"):
        DittoConfig.load(wrong)
    not_dict = tmp_path / "list.pkl"
    not_dict.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(WeightsError, match="expected a dict"):
        DittoConfig.load(not_dict)


# ---------------------------------------------------------------- mapping


def test_missing_keys_keep_dittos_code_defaults(tmp_path):
    config = DittoConfig.load(write_ditto_config(tmp_path / "empty.pkl", {}))
    driver = config.driver
    assert driver.steps == DEFAULT_STEPS == 50
    assert (driver.windows.overlap, driver.windows.smoothing_kernel, driver.windows.fix_kp_cond) == (10, 3, 0)
    assert driver.windows.clip_range is None and driver.windows.fix_kp_cond_dims is None
    assert driver.emotion == 4 and driver.reference is None
    post = driver.post
    assert dict(post.driven) == IMAGE_DRIVEN and post.relative and post.drive_eyes and post.stitching
    assert post.blink_template is None and post.fade == "" and tuple(post.fade_keys) == ("exp",)
    assert config.source_settings == SourceSettings(1920, 2.3, 0.0, -0.125, True)
    assert (config.condition_dim, config.motion_dim, config.seq_len) == (1103, 265, 80)


def test_every_setting_is_mapped(tmp_path, ditto_inputs, ditto_post_golden, shipped):
    kwargs = {**shipped_kwargs(ditto_inputs, ditto_post_golden, shipped), "emo": [[3], [3, 4]], "relative_d": False,
              "fix_kp_cond": 1, "fix_kp_cond_dim": [0, 202], "smo_k_d": 5, "drive_eye": False,
              "fade_type": "s", "fade_out_keys": ("exp", "t"), "flag_stitching": False, "max_size": 1024,
              "crop_scale": 2.5, "crop_vx_ratio": 0.1, "crop_vy_ratio": -0.2, "crop_flag_do_rot": False,
              "delta_eye_open_n": [30, 40], "ctrl_info": [{}, {"fade_alpha": 0.5}]}
    config = DittoConfig.load(write_ditto_config(tmp_path / "all.pkl", kwargs))
    d = config.driver
    assert (d.steps, d.windows.overlap, d.windows.fix_kp_cond, d.windows.fix_kp_cond_dims,
            d.windows.smoothing_kernel) == (10, 10, 1, (0, 202), 5)
    assert torch.equal(d.windows.clip_range, ditto_post_golden["post.v_min_max"])
    assert d.emotion == [[3], [3, 4]]
    assert d.reference is not None and d.reference.scale == np.float32(1.2).item()
    expected_row = torch.cat([torch.tensor([np.float32(1.2) - np.float32(1)]), ditto_inputs["s_kp_cond"][0, 1:]])
    assert torch.equal(d.reference.motion_row, expected_row)
    p = d.post
    assert not p.relative and not p.drive_eyes and not p.stitching and p.fade == "s"
    assert tuple(p.fade_keys) == ("exp", "t") and p.blink_gaps == [30, 40]
    assert p.reference_scale == d.reference.scale and p.overall.delta_pitch == 2.0
    assert list(p.per_frame) == [1] and p.per_frame[1].fade_alpha == 0.5
    assert config.source_settings == SourceSettings(1024, 2.5, 0.1, -0.2, False)


def test_user_choices_override_the_config(tmp_path, ditto_inputs, ditto_post_golden, shipped):
    config = DittoConfig.load(write_ditto_config(tmp_path / "cfg.pkl", shipped_kwargs(ditto_inputs, ditto_post_golden, shipped)))
    assert config.driver_options().steps == 10
    assert config.driver_options(steps=2).steps == 2
    assert config.driver_options(emotion="happy").emotion == "happy"
    assert torch.equal(config.driver_options().post.blink_template, ditto_post_golden["post.blink_template"])
    assert config.driver_options(blinks="model").post.blink_template is None
    assert not config.driver_options(blinks="off").post.drive_eyes
    assert torch.equal(config.driver_options(blinks="template").post.blink_template, ditto_post_golden["post.blink_template"])
    assert config.driver_options(seed=7).post.blink_seed == 7


def test_unknown_settings_warn(tmp_path):
    with pytest.warns(UserWarning, match="frobnicate"):
        DittoConfig.load(write_ditto_config(tmp_path / "cfg.pkl", {"frobnicate": 1}))


# ---------------------------------------------------------------- the shipped ditto_post_golden, from the pickle


@pytest.mark.parametrize("numpy1", [False, True], ids=["numpy2-names", "numpy1-names"])
def test_shipped_golden_through_the_loader(tmp_path, ditto_inputs, ditto_post_golden, shipped, filled_stitching, numpy1):
    """Pickle → DittoConfig → clipping → Ditto's stitcher → keypoints equals ``golden_post``'s ``shipped`` variant."""
    path = write_ditto_config(tmp_path / "cfg.pkl", shipped_kwargs(ditto_inputs, ditto_post_golden, shipped), numpy1=numpy1)
    options = DittoConfig.load(path).driver_options()
    rows = clip_motion(ditto_post_golden["post.motion_in"], options.windows.clip_range)
    assert_close(rows, ditto_post_golden["post.motion_clipped"], 1e-7, what="clipped motion")  # 1 ulp: the producer clipped before casting
    post = MotionPostprocessor(ditto_inputs["s_kp_cond"], ditto_inputs["src.kp"], options.post, stitching=filled_stitching,
                               num_frames=rows.shape[0])
    assert post.blink_rows.tolist() == shipped["blink_idx"]  # 20 open frames between blinks: Ditto's fixed schedule
    for name in ("exp", "pitch", "yaw", "roll"):
        assert post.gains[name] == pytest.approx(shipped["use_d_keys"][name], rel=1e-7)
    with torch.no_grad():
        result = post(rows, rows[0])
    prefix = "post.shipped."
    for angle in ("pitch", "yaw", "roll"):
        assert_close(getattr(result.motion, angle)[:, 0], ditto_post_golden[prefix + f"{angle}_deg"], DEGREE_TOL, what=angle)
    assert_close(result.motion.exp.reshape(-1, 63), ditto_post_golden[prefix + "exp"], KEYPOINT_TOL, what="exp")
    assert_close(result.x_d_raw, ditto_post_golden[prefix + "x_d_raw"], KEYPOINT_TOL, what="x_d_raw")
    assert_close(result.x_d, ditto_post_golden[prefix + "x_d_stitched"], KEYPOINT_TOL, what="x_d")


def test_reference_character_conditions_the_model(tmp_path, ditto_inputs, ditto_post_golden, shipped):
    """With ch_info the first motion condition, sc and eyes are the reference's (condition_handler.py setup)."""
    options = DittoConfig.load(write_ditto_config(tmp_path / "cfg.pkl", shipped_kwargs(ditto_inputs, ditto_post_golden, shipped))).driver
    source_row = ditto_inputs["s_kp_cond"][0] + 0.5
    source_kp = ditto_inputs["src.kp"] * 2
    own_eyes = EyeConditions(torch.ones(2), torch.zeros(6))
    builder, first = options.condition(source_row, source_kp, own_eyes)
    assert torch.equal(first[1:], ditto_inputs["s_kp_cond"][0, 1:]) and first[0] == np.float32(1.2) - 1
    cond = builder(ditto_inputs["hubert_feat"][:3], 0)
    assert torch.equal(cond[:, 1040:], ditto_inputs["src.kp"].reshape(1, 63).expand(3, -1))
    assert torch.equal(cond[:, 1032:1034], ditto_inputs["src.eye_open"].expand(3, -1))


def test_condition_parts_eye_tracks_and_emotion_lists(ditto_inputs):
    eyes = [EyeConditions(torch.full((2,), float(i)), torch.full((6,), float(i))) for i in range(3)]
    builder = ConditionBuilder(ditto_inputs["src.kp"], eyes, emotion=[[3], [3, 4]],
                               parts=ConditionParts(eye_ball=False, sc=False))
    cond = builder(ditto_inputs["hubert_feat"][:8], -1)
    assert cond.shape == (8, 1024 + 8 + 2) == (8, builder.parts.width)
    # frames -1, 0..6 → eye entries 0, 0, 1, 2, 2, 1, 0, 0 (Ditto's mirror looping)
    assert cond[:, -1].tolist() == [0, 0, 1, 2, 2, 1, 0, 0]
    assert mirror_index(torch.arange(8), 3).tolist() == [0, 1, 2, 2, 1, 0, 0, 1]
    emo = cond[:, 1024:1032]
    assert emo[0, 3] > 0.99 and emo[1, 3] > 0.99 and emo[2, 3] == emo[2, 4]  # frames −1, 0 → row 0; 1 → row 1


def test_ditto_size_rule():
    image = np.zeros((1001, 2881, 3), np.uint8)
    out = ditto_size(image, 1920)
    assert out.shape == (666, 1920, 3)  # 1001·1920/2881 = 667.05 → 667 → even 666 (resized, not cut)
    small = np.zeros((401, 300, 3), np.uint8)
    assert ditto_size(small).shape == (400, 300, 3)
    assert ditto_size(np.zeros((400, 300, 3), np.uint8)).shape == (400, 300, 3)


# ---------------------------------------------------------------- through the engine and CLI


@pytest.fixture(scope="module")
def astronaut(audio_engine):
    return audio_engine.prepare_source(TESTDATA / "images" / "astronaut.png", landmarks=landmarks_json("astronaut.png"))


def test_engine_reads_the_shipped_configs(audio_engine):
    offline = audio_engine.audio_backend("ditto").driver_options(AudioJobOptions())
    online = audio_engine.audio_backend("ditto").driver_options(AudioJobOptions(), online=True)
    assert (offline.steps, offline.windows.overlap) == (TEST_OFFLINE_KWARGS["sampling_timesteps"], 10)
    assert (online.windows.overlap, online.windows.fix_kp_cond, online.windows.fix_kp_cond_dims) == (70, 1, (0, 202))
    assert audio_engine.audio_backend("ditto").driver_options(AudioJobOptions(steps=2)).steps == 2


def test_equal_clip_bounds_make_motion_independent_of_the_seed(tmp_path, audio_engine, astronaut):
    row = np.concatenate([np.full(1, 0.1), np.linspace(-1, 1, 198), [0.01, -0.02, 0.0], np.linspace(-0.01, 0.01, 63)])
    clip = np.stack([row, row]).astype(np.float32)
    config = write_ditto_config(tmp_path / "pinned.pkl", {**TEST_OFFLINE_KWARGS, "v_min_max_for_clip": clip})
    samples = load_audio(TESTDATA / "audio" / "espeak_en_us.wav")[:16000]
    a, b = (audio_engine.audio_motion(astronaut, samples, AudioJobOptions(config=config, steps=2, seed=seed))
            for seed in (0, 1))
    free = [audio_engine.audio_motion(astronaut, samples, AudioJobOptions(steps=2, seed=seed)) for seed in (0, 1)]
    assert not torch.equal(free[0].exp, free[1].exp)
    for name in ("pitch", "yaw", "roll", "t", "exp", "scale"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_cli_refuses_an_unsafe_config(tmp_path, all_weights_dir, capsys):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"default_kwargs": {"emo": _Payload(tmp_path / "pwned")}}))
    out = tmp_path / "out.mp4"
    status = main([str(a) for a in (
        "audio", "--source", TESTDATA / "images" / "astronaut.png", "--audio", TESTDATA / "audio" / "espeak_en_us.wav",
        "--out", out, "--weights", all_weights_dir, "--device", "cpu", "--quiet", "--ditto-config", evil,
        "--source-landmarks", landmarks_json("astronaut.png"))])
    assert status == 2 and not out.exists() and not (tmp_path / "pwned").exists()
    err = capsys.readouterr().err
    assert "refused to load" in err and "Traceback" not in err


def test_cli_renders_a_saved_motion_without_any_ditto_file(tmp_path, lp_weights_dir, engine):
    """``audio --motion FILE`` needs no Ditto file (nor its configuration): the motion is not generated."""
    from talkinghead.motion.frame import MotionSequence
    from talkinghead.motion.io import MotionFile, save_motion

    source = engine.prepare_source(TESTDATA / "images" / "astronaut.png", landmarks=landmarks_json("astronaut.png"))
    saved = tmp_path / "still.motion.safetensors"
    save_motion(saved, MotionFile(MotionSequence.cat([source.info.motion.to("cpu")] * 2), 25.0))
    out = tmp_path / "out.mp4"
    status = main([str(a) for a in (
        "audio", "--source", TESTDATA / "images" / "astronaut.png", "--audio", TESTDATA / "audio" / "espeak_en_us.wav",
        "--motion", saved, "--out", out, "--weights", lp_weights_dir, "--device", "cpu", "--quiet",
        "--max-frames", 1, "--no-paste-back", "--source-landmarks", landmarks_json("astronaut.png"))])
    assert status == 0 and out.exists()
