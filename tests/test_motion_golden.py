"""Golden equivalence of S (stitching/retargeting MLPs) and the per-frame motion math.

Fixtures: tests/data/fixtures/liveportrait/golden_S.safetensors and
golden_pipeline.safetensors (README there: tolerances, runs "real" and
"synth"). Raw motion-extractor outputs come from golden_M (real run) or
golden_pipeline ``synth.injected_M.*`` (synth run). Both driving frames are
processed as one batch (B = 2) to exercise batching; frame 0 is the anchor.
The ``frame{i}.image*`` entries need W and G and are tested elsewhere; the
``ratio.*`` entries of golden_S belong to the landmark-ratio tests.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pytest
import torch
from safetensors import safe_open

from conftest import LP_FIXTURES, assert_close, load_golden, lp_file_entry
from talkinghead.errors import ControlError, WeightsError
from talkinghead.models.stitching import StitchingRetargeting
from talkinghead.motion.animate import AnimationOptions, Animator, EyeLipRatios
from talkinghead.motion.frame import KeypointInfo, MotionSequence
from talkinghead.motion.keypoints import (
    RAW_HEADS,
    KeypointTransform,
    degrees_from_bins,
    implicit_keypoints,
    keypoint_info_from_raw,
)
from talkinghead.motion.retarget import (
    combined_ratios,
    lip_normalization_delta,
    retargeting_delta,
    stitch,
    stitching_input,
)
from talkinghead.motion.transfer import (
    ABSOLUTE_EXP_ENTRIES,
    EYE_ROWS,
    LIP_ROWS,
    absolute_transform,
    expression_friendly,
    lip_array,
    motion_multiplier,
    relative_transform,
)

ANGLE_ATOL = 1e-3  # degrees
KP_ATOL = 1e-4  # keypoint math, normalised units
MLP_TOL = 1e-4  # atol and rtol of MLP outputs

RUNS = ("real", "synth")
FRAMES = (0, 1)
WHO = ("source", "driving0", "driving1")
ANGLES = ("pitch", "yaw", "roll")
KP_INFO_FIELDS = (*ANGLES, "t", "exp", "scale", "kp", "R", "x_s")
FRAME_FIELDS = (
    "R_new", "delta_new", "scale_new", "t_new", "x_d_rel", "x_d_expr_friendly",
    "stitch_input", "stitch_delta", "x_d_stitched", "x_d_final",
)
RETARGET_FIELDS = ("eye_ratio_input", "lip_ratio_input", "eyes_delta", "lip_delta", "x_d_before_stitch", "x_d_final")
LIPNORM_FIELDS = ("ratio_input", "applies", "lip_delta_before_animation", "frame1.x_d_final")


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def golden_s() -> dict[str, torch.Tensor]:
    return load_golden(LP_FIXTURES / "golden_S.safetensors")


@pytest.fixture(scope="module")
def golden_pipeline() -> dict[str, torch.Tensor]:
    return load_golden(LP_FIXTURES / "golden_pipeline.safetensors")


@pytest.fixture(scope="module")
def golden_m() -> dict[str, torch.Tensor]:
    return load_golden(LP_FIXTURES / "golden_M.safetensors")


@pytest.fixture(scope="module")
def filled_checkpoint(fill_weights, lp_manifest) -> dict[str, dict[str, torch.Tensor]]:
    """Fill-rule weights with the real checkpoint's nesting and ``module.`` keys."""
    return fill_weights.fill_manifest_file(lp_file_entry(lp_manifest, "S"))


@pytest.fixture(scope="module")
def networks(filled_checkpoint) -> StitchingRetargeting:
    stripped = {
        key: {name.replace("module.", ""): tensor for name, tensor in sd.items()} for key, sd in filled_checkpoint.items()
    }
    return StitchingRetargeting().load_checkpoint_dict(stripped, "filled stitching_retargeting_module.pth").eval()


@dataclass(frozen=True)
class Run:
    """One pipeline run's inputs and golden values."""

    name: str
    golden: dict[str, torch.Tensor]
    infos: dict[str, KeypointInfo]

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.golden[f"{self.name}.{key}"]

    @property
    def source(self) -> KeypointInfo:
        return self.infos["source"]

    @property
    def anchor(self) -> MotionSequence:
        return self.infos["driving0"].motion

    @property
    def driving(self) -> MotionSequence:
        """Both driving frames as one batch."""
        return MotionSequence.cat([self.infos["driving0"].motion, self.infos["driving1"].motion])

    def frames(self, field: str) -> torch.Tensor:
        """Golden ``frame{i}.<field>`` for both frames, concatenated on the batch axis."""
        return torch.cat([self[f"frame{i}.{field}"] for i in FRAMES])


@pytest.fixture(scope="module", params=RUNS)
def run(request, golden_pipeline, golden_m) -> Run:
    def raw(who: str) -> dict[str, torch.Tensor]:
        if request.param == "real":
            return {head: golden_m[f"output.{who}.{head}"] for head in RAW_HEADS}
        return {head: golden_pipeline[f"synth.injected_M.{who}.{head}"] for head in RAW_HEADS}

    return Run(request.param, golden_pipeline, {who: keypoint_info_from_raw(raw(who)) for who in WHO})


@pytest.fixture(scope="module")
def ratios(golden_s) -> tuple[EyeLipRatios, EyeLipRatios]:
    """(source, driving frames 0 and 1) eye/lip ratios from golden_S."""
    source = EyeLipRatios(golden_s["ratio.eye.source"], golden_s["ratio.lip.source"])
    driving = EyeLipRatios(
        torch.cat([golden_s[f"ratio.eye.driving{i}"] for i in FRAMES]),
        torch.cat([golden_s[f"ratio.lip.driving{i}"] for i in FRAMES]),
    )
    return source, driving


# ----------------------------------------------------- coverage of fixtures
def test_every_golden_pipeline_key_is_covered():
    with safe_open(str(LP_FIXTURES / "golden_pipeline.safetensors"), "pt") as f:
        keys = {k for k in f.keys() if not k.endswith((".image", ".image_uint8"))}
    covered = {"const.lip_array"}
    for r in RUNS:
        covered |= {f"{r}.{who}.{field}" for who in WHO for field in KP_INFO_FIELDS}
        covered |= {f"{r}.frame{i}.{field}" for i in FRAMES for field in FRAME_FIELDS}
        covered |= {f"{r}.frame{i}.retarget.{field}" for i in FRAMES for field in RETARGET_FIELDS}
        covered |= {f"{r}.lipnorm.{field}" for field in LIPNORM_FIELDS}
        covered.add(f"{r}.motion_multiplier")
    covered |= {f"synth.injected_M.{who}.{head}" for who in WHO for head in RAW_HEADS}
    assert keys == covered, f"untested: {sorted(keys - covered)}; absent: {sorted(covered - keys)}"


# ------------------------------------------------------------------ weights
def test_filled_weights_match_manifest_digests(fill_weights, lp_manifest, filled_checkpoint):
    for sub in lp_file_entry(lp_manifest, "S")["sub_dicts"]:
        assert fill_weights.state_dict_digest(filled_checkpoint[sub["key"]]) == sub["fill_digest_sha256"], sub["key"]


def test_parameter_counts_match_checkpoint(lp_manifest, networks):
    for sub in lp_file_entry(lp_manifest, "S")["sub_dicts"]:
        attribute = {v: k for k, v in StitchingRetargeting.CHECKPOINT_KEYS.items()}[sub["key"]]
        assert sum(p.numel() for p in getattr(networks, attribute).parameters()) == sub["num_parameters"]


def test_loading_rejects_wrong_layout(filled_checkpoint):
    with pytest.raises(WeightsError, match="module.mlp.0.weight"):  # prefix not stripped
        StitchingRetargeting().load_checkpoint_dict(filled_checkpoint, "ckpt")
    with pytest.raises(WeightsError, match="retarget_eye"):
        StitchingRetargeting().load_checkpoint_dict({"retarget_shoulder": {}, "retarget_mouth": {}}, "ckpt")


# --------------------------------------------------------------------- MLPs
@pytest.mark.parametrize("net", ["stitching", "eye", "lip"])
@pytest.mark.parametrize("frame", FRAMES)
@pytest.mark.parametrize("run_name", RUNS)
def test_mlp_matches_golden(networks, golden_s, run_name, frame, net):
    key = f"{run_name}.frame{frame}.{net}"
    with torch.no_grad():
        out = getattr(networks, net)(golden_s[f"{key}.input"])
    assert_close(out, golden_s[f"{key}.output"], atol=MLP_TOL, rtol=MLP_TOL, what=key)


# ----------------------------------------------------------- keypoint math
@pytest.mark.parametrize("who", WHO)
def test_keypoint_info_matches_golden(run, who):
    info = run.infos[who]
    for angle in ANGLES:
        assert_close(getattr(info, angle), run[f"{who}.{angle}"], ANGLE_ATOL, what=f"{who}.{angle}")
    for field in ("t", "exp", "scale", "kp"):
        assert_close(getattr(info, field), run[f"{who}.{field}"], KP_ATOL, what=f"{who}.{field}")
    assert_close(KeypointTransform.from_motion(info).rotation, run[f"{who}.R"], KP_ATOL, what=f"{who}.R")
    assert_close(implicit_keypoints(info), run[f"{who}.x_s"], KP_ATOL, what=f"{who}.x_s")


def test_degrees_pass_through_and_shape_check():
    degrees = torch.tensor([[12.5], [-3.0]])
    assert degrees_from_bins(degrees) is degrees
    with pytest.raises(ValueError):
        degrees_from_bins(torch.zeros(2, 65))


def test_relative_motion_matches_golden(run):
    transform = relative_transform(run.source, run.driving, run.anchor)
    for name, field in (("rotation", "R_new"), ("exp", "delta_new"), ("scale", "scale_new"), ("t", "t_new")):
        assert_close(getattr(transform, name), run.frames(field), KP_ATOL, what=field)
    assert_close(transform.apply(run.source.kp), run.frames("x_d_rel"), KP_ATOL, what="x_d_rel")


def test_expression_friendly_matches_golden(run):
    x_s = implicit_keypoints(run.source)
    x_d = relative_transform(run.source, run.driving, run.anchor).apply(run.source.kp)
    multiplier = motion_multiplier(x_s, x_d[:1])
    assert multiplier == pytest.approx(float(run["motion_multiplier"]), abs=1e-6)
    friendly = expression_friendly(x_d, x_d[:1], x_s, multiplier)
    assert_close(friendly, run.frames("x_d_expr_friendly"), KP_ATOL, what="x_d_expr_friendly")


def test_stitching_and_final_keypoints_match_golden(run, networks):
    x_s = implicit_keypoints(run.source)
    x_d = run.frames("x_d_expr_friendly")
    features = stitching_input(x_s, x_d)
    assert_close(features, run.frames("stitch_input"), KP_ATOL, what="stitch_input")
    with torch.no_grad():
        assert_close(networks.stitching(features), run.frames("stitch_delta"), MLP_TOL, MLP_TOL, what="stitch_delta")
        assert_close(stitch(networks.stitching, x_s, x_d), run.frames("x_d_stitched"), KP_ATOL, what="x_d_stitched")
        final = Animator(run.source, networks, AnimationOptions(), anchor=run.anchor)(run.driving)
    assert_close(final, run.frames("x_d_final"), KP_ATOL, what="x_d_final")


def test_frame_by_frame_equals_batch(run, networks):
    animator = Animator(run.source, networks, AnimationOptions(), anchor=run.anchor)
    with torch.no_grad():
        batched = animator(run.driving)
        single = torch.cat([animator(frame) for frame in run.driving.iter_frames()])
    assert_close(single, batched, 1e-6, what="per-frame vs batch")


def test_float64_matches_float32_golden(run, networks):
    f64 = torch.float64
    animator = Animator(run.source.to(dtype=f64), copy.deepcopy(networks).to(f64), anchor=run.anchor.to(dtype=f64))
    with torch.no_grad():
        final = animator(run.driving.to(dtype=f64))
    assert final.dtype == f64
    assert_close(final, run.frames("x_d_final"), KP_ATOL, what="x_d_final (float64)")


def test_retargeting_variant_matches_golden(run, networks, ratios):
    source_ratios, driving_ratios = ratios
    x_s = implicit_keypoints(run.source)
    eye_input = combined_ratios(source_ratios.eye, driving_ratios.eye[:, :1])
    lip_input = combined_ratios(source_ratios.lip, driving_ratios.lip)
    assert_close(eye_input, run.frames("retarget.eye_ratio_input"), KP_ATOL, what="eye_ratio_input")
    assert_close(lip_input, run.frames("retarget.lip_ratio_input"), KP_ATOL, what="lip_ratio_input")
    options = AnimationOptions(eye_retargeting=True, lip_retargeting=True)
    animator = Animator(run.source, networks, options, anchor=run.anchor, source_ratios=source_ratios)
    with torch.no_grad():
        eyes_delta = retargeting_delta(networks.eye, x_s, eye_input)
        lip_delta = retargeting_delta(networks.lip, x_s, lip_input)
        before = animator.retargeted_keypoints(run.driving, driving_ratios)
        final = animator(run.driving, driving_ratios)
    assert_close(eyes_delta, run.frames("retarget.eyes_delta"), KP_ATOL, what="eyes_delta")
    assert_close(lip_delta, run.frames("retarget.lip_delta"), KP_ATOL, what="lip_delta")
    assert_close(before, run.frames("retarget.x_d_before_stitch"), KP_ATOL, what="x_d_before_stitch")
    assert_close(final, run.frames("retarget.x_d_final"), KP_ATOL, what="retarget.x_d_final")


def test_lip_normalization_variant_matches_golden(run, networks, ratios):
    source_ratios, _ = ratios
    ratio_input = combined_ratios(source_ratios.lip, torch.zeros(1, 1))
    assert_close(ratio_input, run["lipnorm.ratio_input"], KP_ATOL, what="lipnorm.ratio_input")
    options = AnimationOptions(normalize_lip=True)
    animator = Animator(run.source, networks, options, anchor=run.anchor, source_ratios=source_ratios)
    assert (animator.lip_normalization is not None) == bool(run["lipnorm.applies"])
    with torch.no_grad():
        final = animator(run.driving)
    assert_close(animator.lip_normalization, run["lipnorm.lip_delta_before_animation"], KP_ATOL, what="lip delta")
    assert_close(final[1:], run["lipnorm.frame1.x_d_final"], KP_ATOL, what="lipnorm.frame1.x_d_final")


def test_lip_normalization_skips_closed_mouth(networks, run):
    x_s = implicit_keypoints(run.source)
    assert lip_normalization_delta(networks.lip, x_s, torch.tensor([[0.029]])) is None


# -------------------------------------------------- regions, modes, options
def _rows_mask(rows) -> torch.Tensor:
    mask = torch.zeros(21, 3, dtype=torch.bool)
    mask[list(rows)] = True
    return mask


def test_pose_region_keeps_source_expression_and_scale(run):
    transform = relative_transform(run.source, run.driving, run.anchor, region="pose")
    assert_close(transform.rotation, run.frames("R_new"), KP_ATOL, what="R")
    assert_close(transform.t, run.frames("t_new"), KP_ATOL, what="t")
    assert torch.equal(transform.exp, run.source.exp.expand(2, -1, -1))
    assert torch.equal(transform.scale, run.source.scale.expand(2, -1))


def _assert_source_rotation(transform: KeypointTransform, run) -> None:
    """The pose is the source's own, exactly (the same computation), and LivePortrait's R_s within KP_ATOL: a
    3×3 product's last bit depends on the CPU's kernels (FMA or not), so the golden is compared with a tolerance."""
    own = KeypointTransform.from_motion(run.source).rotation
    assert torch.equal(transform.rotation, own.expand(2, -1, -1))
    assert_close(own, run["source.R"], KP_ATOL, what="source.R")


@pytest.mark.parametrize("region, rows", [("exp", range(21)), ("lip", LIP_ROWS), ("eyes", EYE_ROWS)])
def test_expression_regions_keep_source_pose(run, region, rows):
    transform = relative_transform(run.source, run.driving, run.anchor, region=region)
    mask = _rows_mask(rows)
    expected = torch.where(mask, run.frames("delta_new"), run.source.exp)
    assert_close(transform.exp, expected, KP_ATOL, what=f"{region} exp")
    _assert_source_rotation(transform, run)
    assert torch.equal(transform.scale, run.source.scale.expand(2, -1))
    assert torch.equal(transform.t[:, :2], run.source.t[:, :2].expand(2, -1))
    assert not transform.t[:, 2].any()


def test_absolute_mode(run):
    transform = absolute_transform(run.source, run.driving)
    assert_close(transform.rotation, torch.cat([run[f"driving{i}.R"] for i in FRAMES]), KP_ATOL, what="R")
    driving_t = torch.cat([run[f"driving{i}.t"] for i in FRAMES])
    assert torch.equal(transform.t[:, :2], driving_t[:, :2]) and not transform.t[:, 2].any()
    assert torch.equal(transform.scale, run.source.scale.expand(2, -1))
    mask = torch.zeros(21, 3, dtype=torch.bool)
    for row, components in ABSOLUTE_EXP_ENTRIES:
        mask[row, list(components)] = True
    assert int(mask.sum()) == 13 * 3 + 6
    assert torch.equal(transform.exp, torch.where(mask, run.driving.exp, run.source.exp))


def test_single_image_driving_uses_lip_array(run, golden_pipeline):
    constant = lip_array(torch.zeros((), dtype=torch.float64))
    assert torch.equal(constant, golden_pipeline["const.lip_array"])
    transform = relative_transform(run.source, run.driving, anchor=None)
    expected_exp = run.source.exp + (run.driving.exp - golden_pipeline["const.lip_array"].float())
    assert torch.equal(transform.exp, expected_exp)
    _assert_source_rotation(transform, run)
    assert torch.equal(transform.scale, run.source.scale.expand(2, -1))


def test_driving_multiplier(run, networks):
    def animate(multiplier: float) -> torch.Tensor:
        options = AnimationOptions(stitching=False, driving_multiplier=multiplier)
        return Animator(run.source, networks, options, anchor=run.anchor)(run.driving)

    x_s, x_d = implicit_keypoints(run.source), animate(1.0)
    assert torch.equal(animate(0.0), x_s.expand(2, -1, -1))
    assert_close(animate(2.0), x_s + 2 * (x_d - x_s), 1e-6, what="multiplier 2")


def test_options_and_missing_ratios_are_rejected(run, networks):
    with pytest.raises(ControlError, match="region"):
        AnimationOptions(region="mouth")
    with pytest.raises(ControlError, match="multiplier"):
        AnimationOptions(driving_multiplier=math.nan)
    with pytest.raises(ValueError, match="ratios"):
        Animator(run.source, networks, AnimationOptions(eye_retargeting=True), anchor=run.anchor)
