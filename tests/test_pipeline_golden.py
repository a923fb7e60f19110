"""Whole chain against golden_pipeline: M → degrees → R → keypoints → expression-friendly →
stitching → W → G → uint8, with the engine's own loaded networks (filled weights)."""

from __future__ import annotations

import pytest
import torch

from conftest import LP_FIXTURES, assert_close, load_golden
from talkinghead.models.images import tensor_to_images
from talkinghead.motion.animate import AnimationOptions, Animator
from talkinghead.motion.keypoints import keypoint_info_from_raw

HEADS = ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")


@pytest.fixture(scope="module")
def pipeline():
    return load_golden(LP_FIXTURES / "golden_pipeline.safetensors")


@pytest.fixture(scope="module")
def golden_m():
    return load_golden(LP_FIXTURES / "golden_M.safetensors")


def _render_and_compare(engine, feature, raw_source, raw_anchor, raw_frame, pipeline, prefix):
    info = keypoint_info_from_raw(raw_source)
    animator = Animator(info, engine.networks.stitching, AnimationOptions(),
                        anchor=keypoint_info_from_raw(raw_anchor).motion)
    x_d = animator(keypoint_info_from_raw(raw_frame).motion)
    assert_close(x_d, pipeline[f"{prefix}.x_d_final"], atol=1e-4, what=f"{prefix}.x_d_final")
    image = engine.renderer.render_tensor(feature, animator.x_s, x_d)
    assert_close(image, pipeline[f"{prefix}.image"], atol=1e-3, what=f"{prefix}.image")
    got = torch.from_numpy(tensor_to_images(image)[0]).int()
    diff = (got - pipeline[f"{prefix}.image_uint8"].int()).abs()
    assert int(diff.max()) <= 1 and float((diff > 0).float().mean()) <= 0.005, f"{prefix}.image_uint8"


def test_real_run_frame1_from_images(engine, golden_m, pipeline) -> None:
    """Real images in, every network of the engine in the loop."""
    nets = engine.networks
    with torch.inference_mode():
        raw = {who: nets.motion(golden_m[f"input.{who}_image"]) for who in ("source", "driving0", "driving1")}
        feature = nets.appearance(golden_m["input.source_image"])
        for who in raw:
            for head in HEADS:
                assert_close(raw[who][head], golden_m[f"output.{who}.{head}"], atol=1e-4, rtol=1e-4, what=f"M {who}.{head}")
        _render_and_compare(engine, feature, raw["source"], raw["driving0"], raw["driving1"], pipeline, "real.frame1")


def test_synth_run_frame0(engine, golden_m, pipeline) -> None:
    """Realistic injected motion: frame 0 must reproduce the source keypoints' image."""
    raw = {who: {h: pipeline[f"synth.injected_M.{who}.{h}"] for h in HEADS} for who in ("source", "driving0")}
    with torch.inference_mode():
        feature = engine.networks.appearance(golden_m["input.source_image"])
        _render_and_compare(engine, feature, raw["source"], raw["driving0"], raw["driving0"], pipeline, "synth.frame0")
