"""Golden equivalence of Ditto's motion post-processing and condition assembly.

Fixtures: tests/data/fixtures/ditto/golden_post.safetensors (both variants,
settings in manifest.json → generation_info.post) and ditto_inputs.safetensors;
tolerances from tests/data/fixtures/ditto/README.md ("Tolerances").
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from conftest import DITTO_FIXTURES, assert_close, landmarks_json

from talkinghead.drivers.audio.ditto.condition import (
    EMOTIONS,
    ConditionBuilder,
    EyeConditions,
    MediaPipeEyeConditions,
    eye_conditions_from_68,
    eye_conditions_from_mesh,
    emotion_probabilities,
    emotion_sequence,
)
from talkinghead.drivers.audio.ditto.postprocess import (
    EYE_ROWS,
    LIP_ROWS,
    DittoControls,
    MotionPostprocessor,
    PostprocessOptions,
    blink_schedule,
    motion_row_from_raw,
)
from talkinghead.errors import WeightsError
from talkinghead.face.landmarks import JsonLandmarks

VARIANTS = ("default", "shipped")
DEGREE_TOL = 1e-4
KEYPOINT_TOL = 1e-5


@pytest.fixture(scope="module")
def post_info() -> dict:
    return json.loads((DITTO_FIXTURES / "manifest.json").read_text())["generation_info"]["post"]


def source_raw(ditto_inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {head: ditto_inputs[f"src.{head}"] for head in ("scale", "pitch", "yaw", "roll", "t", "exp", "kp")}


def options_for(variant: str, post_info: dict, ditto_post_golden: dict[str, torch.Tensor]) -> PostprocessOptions:
    """Our options reproducing a fixture variant."""
    if variant == "default":
        return PostprocessOptions()
    info = post_info["shipped"]
    per_frame = {
        int(frame): DittoControls(**{k: torch.tensor(v) if k == "delta_exp" else v for k, v in ctrl.items()})
        for frame, ctrl in info["ctrl_info"].items()
    }
    return PostprocessOptions(blink_template=ditto_post_golden["post.blink_template"], blink_gaps=20,
                              driven=info["use_d_keys"], overall=DittoControls(**info["overall_ctrl_info"]),
                              per_frame=per_frame)


def test_fixture_settings_match_our_model(post_info):
    """The fixture's masks and keys are the ones the postprocessor hard-codes."""
    assert sorted(post_info["default"]["fix_exp_a1_rows"]) == sorted(LIP_ROWS + EYE_ROWS)
    assert post_info["shipped"]["fix_exp_a1_rows"] == list(LIP_ROWS)
    assert post_info["shipped"]["fix_exp_a3_rows"] == list(EYE_ROWS)
    assert post_info["shipped"]["use_d_keys"]["t"] == 1


def test_blink_schedule_matches_shipped(post_info):
    assert blink_schedule(150, 15, 20) == post_info["shipped"]["blink_idx"]


def test_random_blink_gaps_are_seeded_and_in_range():
    rows = blink_schedule(3000, 15, None, random.Random(0))
    starts = [i for i in range(1, len(rows)) if rows[i] == 1]
    gaps = np.diff(starts) - 15
    assert 60 <= starts[0] - 1 <= 100 and gaps.min() >= 60 and gaps.max() <= 100
    assert rows == blink_schedule(3000, 15, None, random.Random(0))


def test_source_motion_row(ditto_inputs):
    assert torch.equal(motion_row_from_raw(source_raw(ditto_inputs)), ditto_inputs["s_kp_cond"])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("chunks", [1, 3], ids=["whole", "chunked"])
def test_postprocess_golden(variant, chunks, ditto_inputs, ditto_post_golden, post_info, filled_stitching):
    rows = ditto_post_golden["post.motion_clipped"]
    post = MotionPostprocessor(ditto_inputs["s_kp_cond"], ditto_inputs["src.kp"], options_for(variant, post_info, ditto_post_golden),
                               stitching=filled_stitching, num_frames=rows.shape[0])
    pieces = rows.chunk(chunks)
    starts = np.cumsum([0] + [len(piece) for piece in pieces])
    with torch.no_grad():
        parts = [post(piece, rows[0], first_frame=int(start)) for piece, start in zip(pieces, starts)]
    motion = type(parts[0].motion).cat([p.motion for p in parts])
    prefix = f"post.{variant}."
    for angle in ("pitch", "yaw", "roll"):
        assert_close(getattr(motion, angle)[:, 0], ditto_post_golden[prefix + f"{angle}_deg"], DEGREE_TOL, what=angle)
    assert_close(motion.exp.reshape(-1, 63), ditto_post_golden[prefix + "exp"], KEYPOINT_TOL, what="exp")
    assert_close(motion.t, ditto_post_golden[prefix + "t"], KEYPOINT_TOL, what="t")
    assert_close(motion.scale, ditto_post_golden[prefix + "scale"], KEYPOINT_TOL, what="scale")
    assert_close(parts[0].x_s, ditto_post_golden[prefix + "x_s"], KEYPOINT_TOL, what="x_s")
    assert_close(torch.cat([p.x_d_raw for p in parts]), ditto_post_golden[prefix + "x_d_raw"], KEYPOINT_TOL, what="x_d_raw")
    assert_close(torch.cat([p.x_d for p in parts]), ditto_post_golden[prefix + "x_d_stitched"], KEYPOINT_TOL, what="x_d")


def test_without_stitching_x_d_is_raw(ditto_inputs, ditto_post_golden):
    rows = ditto_post_golden["post.motion_clipped"][:4]
    result = MotionPostprocessor(ditto_inputs["s_kp_cond"], ditto_inputs["src.kp"])(rows, rows[0])
    assert result.x_d is result.x_d_raw


# ---------------------------------------------------------------- condition


def test_emotion_encoding():
    probs = emotion_probabilities(4)
    assert probs.shape == (8,) and probs.dtype == torch.float32
    assert probs[4].item() == pytest.approx(0.997657, abs=1e-6)
    assert probs[0].item() == pytest.approx(0.000335, abs=1e-6)
    assert torch.equal(emotion_probabilities("Neutral"), probs)
    both = emotion_probabilities(["happy", 4])
    assert both[3] == both[4] and both.sum().item() == pytest.approx(1.0)
    assert EMOTIONS[3] == "happy"


def test_emotion_sequence_forms():
    table = torch.rand(5, 8)
    assert torch.equal(emotion_sequence(table), table)
    assert emotion_sequence(["sad", "angry"]).shape == (1, 8)
    with pytest.raises(Exception, match="emotion"):
        emotion_sequence("bored")


def test_condition_matches_golden(ditto_inputs):
    eyes = EyeConditions(ditto_inputs["src.eye_open"][0], ditto_inputs["src.eye_ball"][0])
    builder = ConditionBuilder(ditto_inputs["src.kp"], eyes, emotion=4)
    assert_close(builder(ditto_inputs["hubert_feat"], 0), ditto_inputs["cond_all"], 1e-7, what="cond")
    assert_close(builder.emotion[0], ditto_inputs["src.emo"][0], 1e-7, what="emo")


def test_condition_uses_emotion_table_cyclically(ditto_inputs):
    eyes = EyeConditions(ditto_inputs["src.eye_open"][0], ditto_inputs["src.eye_ball"][0])
    table = torch.eye(8)[:3]
    cond = ConditionBuilder(ditto_inputs["src.kp"], eyes, emotion=table)(ditto_inputs["hubert_feat"][:6], -2)
    emo = cond[:, 1024:1032]
    assert torch.equal(emo, table[[0, 0, 0, 1, 2, 0]])


def test_eye_conditions_from_mesh_geometry():
    """§3's formulas on a mesh built from the indices they use (normalised units)."""
    mesh = np.zeros((478, 3), np.float32)
    # Image-left eye: corners 0.1 apart, lid gaps 0.02 + 0.03 + 0.01, iris 0.01 below the centre.
    mesh[33], mesh[133] = (0.3, 0.4, 0.0), (0.4, 0.4, 0.0)
    for (low, up), gap in zip([(145, 159), (144, 160), (153, 158)], (0.02, 0.03, 0.01)):
        mesh[low], mesh[up] = (0.35, 0.4 + gap / 2, 0.0), (0.35, 0.4 - gap / 2, 0.0)
    mesh[468] = (0.35, 0.41, 0.0)
    # Image-right eye: corners 0.1 apart, every lid gap 0.01, iris at the centre.
    mesh[263], mesh[362] = (0.7, 0.4, 0.0), (0.6, 0.4, 0.0)
    for low, up in [(374, 386), (373, 387), (380, 385)]:
        mesh[low], mesh[up] = (0.65, 0.405, 0.0), (0.65, 0.395, 0.0)
    mesh[473] = (0.65, 0.4, 0.0)
    eyes = eye_conditions_from_mesh(mesh)
    assert_close(eyes.eye_open, torch.tensor([0.6, 0.3]), 1e-6, what="eye_open")
    # left ball = (unit(0, 0.01, 0) − unit(outer − inner)) · 0.01 = ((0, 1, 0) − (−1, 0, 0)) · 0.01
    assert_close(eyes.eye_ball, torch.tensor([0.01, 0.0, 0.01, 0.0, 0.0, 0.0]), 1e-6, what="eye_ball")


def landmark_track(name: str) -> list[np.ndarray]:
    """The testdata 68-point landmarks of every frame of ``name`` that has a face."""
    track = JsonLandmarks(landmarks_json(name))
    frame = np.zeros((track.height, track.width, 3), np.uint8)
    points = (track.landmarks(frame, i) for i in range(track.n_frames))
    return [p for p in points if p is not None]


def test_eye_conditions_from_68_on_real_landmarks():
    points = landmark_track("dt_male_face.png")[0]
    eyes = eye_conditions_from_68(points)
    assert ((eyes.eye_open > 0.6) & (eyes.eye_open < 1.3)).all(), eyes.eye_open
    assert not eyes.eye_ball.any()
    angle = np.deg2rad(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = eye_conditions_from_68(points @ rotation.T * 0.4 + (100.0, -30.0))
    assert_close(moved.eye_open, eyes.eye_open, 1e-5, what="similarity invariance")


def test_eye_open_68_sees_a_blink():
    opens = np.array([eye_conditions_from_68(p).eye_open.numpy() for p in landmark_track("lp_d0.mp4")])
    assert opens.min() < 0.5 * opens.max()


def test_mediapipe_provider_reports_missing_model(tmp_path):
    provider = MediaPipeEyeConditions(tmp_path / "face_landmarker.task")
    with pytest.raises(WeightsError):
        provider(np.zeros((512, 512, 3), np.uint8), np.zeros((68, 2)))


# ---------------------------------------------------------------- settings beyond the goldens (Ditto motion_stitch.py)


def _softmax_degrees(logits: torch.Tensor) -> torch.Tensor:
    """degrees = 3·Σ softmax(logits)·i − 97.5 over 66 bins, in float64 (Ditto ``bin66_to_degree``)."""
    p = torch.softmax(logits.double(), dim=-1)
    return (p * torch.arange(66, dtype=torch.float64)).sum(-1) * 3 - 97.5


def test_absolute_mode_and_driven_subset(ditto_inputs, ditto_post_golden):
    rows = ditto_post_golden["post.motion_clipped"][:5]
    options = PostprocessOptions(driven={"exp": 1.0, "t": 2.0}, relative=False, fix_gaze=False)
    result = MotionPostprocessor(ditto_inputs["s_kp_cond"], ditto_inputs["src.kp"], options)(rows, rows[0])
    assert_close(result.motion.t, rows[:, 199:202] * 2, 1e-7, what="absolute t × gain")
    src_yaw = _softmax_degrees(ditto_inputs["src.yaw"][0])
    assert_close(result.motion.yaw[:, 0], src_yaw.expand(5), 1e-4, what="undriven yaw is the source's")
    assert_close(result.motion.scale[:, 0], ditto_inputs["src.scale"][0].expand(5), 0, what="scale")
    lips = list(LIP_ROWS)
    assert_close(result.motion.exp[:, lips], rows[:, 202:].reshape(5, 21, 3)[:, lips], 1e-7, what="absolute lips")


def test_pose_gains_follow_dittos_order(ditto_inputs, ditto_post_golden):
    """alpha_* alone scales the bin logits; with delta_* it scales degrees after the offset (ctrl_motion)."""
    rows = ditto_post_golden["post.motion_clipped"][:2]
    options = PostprocessOptions(fix_gaze=False, per_frame={0: DittoControls(alpha_yaw=0.5),
                                                            1: DittoControls(alpha_yaw=0.5, delta_yaw=4.0)})
    post = MotionPostprocessor(ditto_inputs["s_kp_cond"], ditto_inputs["src.kp"], options)
    result = post(rows, rows[0])
    mixed = ditto_inputs["src.yaw"][0] + (rows[:, 67:133] - rows[0, 67:133])
    assert result.motion.yaw[0, 0].item() == pytest.approx(_softmax_degrees(mixed[0] * 0.5).item(), abs=1e-4)
    assert result.motion.yaw[1, 0].item() == pytest.approx(((_softmax_degrees(mixed[1]) + 4.0) * 0.5).item(), abs=1e-4)


@pytest.mark.parametrize("target", ["s", "d0"])
def test_fade_towards_the_source_or_the_first_frame(ditto_inputs, ditto_post_golden, target):
    rows = ditto_post_golden["post.motion_clipped"][:4]
    base = PostprocessOptions(fix_gaze=False)
    faded = PostprocessOptions(fix_gaze=False, fade=target, fade_keys=("exp", "t"),
                               per_frame={2: DittoControls(fade_alpha=0.25)})
    plain = MotionPostprocessor(ditto_inputs["s_kp_cond"], ditto_inputs["src.kp"], base)(rows, rows[0]).motion
    motion = MotionPostprocessor(ditto_inputs["s_kp_cond"], ditto_inputs["src.kp"], faded)(rows, rows[0]).motion
    exp_to = ditto_inputs["src.exp"].reshape(21, 3) if target == "s" else plain.exp[0]
    t_to = ditto_inputs["src.t"][0] if target == "s" else plain.t[0]
    assert_close(motion.exp[2], plain.exp[2] * 0.25 + exp_to * 0.75, 1e-7, what="faded exp")
    assert_close(motion.t[2], plain.t[2] * 0.25 + t_to * 0.75, 1e-7, what="faded t")
    for i in (0, 1, 3):
        assert torch.equal(motion.exp[i], plain.exp[i]) and torch.equal(motion.t[i], plain.t[i])
    assert torch.equal(motion.yaw, plain.yaw)


def test_fade_to_first_frame_needs_frame_zero_first(ditto_inputs, ditto_post_golden):
    rows = ditto_post_golden["post.motion_clipped"][:4]
    post = MotionPostprocessor(ditto_inputs["s_kp_cond"], ditto_inputs["src.kp"], PostprocessOptions(fade="d0"))
    with pytest.raises(Exception, match="frame 0"):
        post(rows[2:], rows[0], first_frame=2)


def test_no_blink_schedule_keeps_template_row_zero():
    assert blink_schedule(50, 15, -1) == [0] * 50
