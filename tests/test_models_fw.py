"""F (appearance feature extractor) and W (warping module) against the LivePortrait goldens.

Weights come from the fill rule (``tests/data/tools/fill_weights.py``) in
the exact checkpoint layout of the manifest; inputs and expected outputs from
``tests/data/fixtures/liveportrait/golden_{F,W}.safetensors`` (README: module-level
tolerance atol = rtol = 1e-4).  The batching and reduced-precision checks use
small configurations of the same classes on slices of the golden inputs so
that they stay fast on a 2-core CPU.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import LP_FIXTURES, assert_close, load_golden
from talkinghead.models.appearance import AppearanceFeatureExtractor
from talkinghead.models.warping import WarpingNetwork, WarpOutput, identity_grid, sample_volume

GOLDEN_ATOL = GOLDEN_RTOL = 1e-4


SMALL_F = dict(block_expansion=8, max_features=16, reshape_channel=4, reshape_depth=4, num_resblocks=2)
SMALL_W = dict(
    block_expansion=4,
    max_features=16,
    reshape_channel=4,
    dense_motion_params=dict(block_expansion=4, max_features=16, num_blocks=2, reshape_depth=4, compress=2),
)


def _small(cls: type[nn.Module], config: dict, fill_weights) -> nn.Module:
    module = cls(**config)
    fill_weights.fill_module_(module)
    return module.eval()


@pytest.fixture(scope="module")
def golden_f() -> dict[str, torch.Tensor]:
    return load_golden(LP_FIXTURES / "golden_F.safetensors")


@pytest.fixture(scope="module")
def golden_w() -> dict[str, torch.Tensor]:
    return load_golden(LP_FIXTURES / "golden_W.safetensors")


@pytest.fixture(scope="module")
def warp_result(filled, golden_w) -> WarpOutput:
    network, _ = filled("W")
    with torch.inference_mode():
        return network(golden_w["input.feature_3d"], golden_w["input.kp_source"], golden_w["input.kp_driving"])


def test_appearance_feature_extractor_matches_golden(filled, golden_f):
    network, _ = filled("F")
    with torch.inference_mode():
        feature = network(golden_f["input.source_image"])
    assert_close(feature, golden_f["output.feature_3d"], GOLDEN_ATOL, GOLDEN_RTOL, what="F feature_3d")


@pytest.mark.parametrize("field", ["out", "occlusion_map", "deformation"])
def test_warping_network_matches_golden(warp_result, golden_w, field):
    assert_close(getattr(warp_result, field), golden_w[f"output.{field}"], GOLDEN_ATOL, GOLDEN_RTOL, what=f"W {field}")


def test_identity_grid_endpoints_and_order():
    grid = identity_grid(16, 64, 32, dtype=torch.float32, device=torch.device("cpu"))
    assert grid.shape == (16, 64, 32, 3)
    assert grid[0, 0, 0].tolist() == [-1.0, -1.0, -1.0]
    assert grid[-1, -1, -1].tolist() == [1.0, 1.0, 1.0]
    assert grid[0, 0, 1, 0].item() == pytest.approx(-1 + 2 / 31)  # x runs along width
    assert grid[0, 1, 0, 1].item() == pytest.approx(-1 + 2 / 63)  # y along height
    assert grid[1, 0, 0, 2].item() == pytest.approx(-1 + 2 / 15)  # z along depth


def _small_source_images(golden_f) -> torch.Tensor:
    image = golden_f["input.source_image"]
    return torch.cat([image[:, :, 96:160, 64:128], image[:, :, 128:192, 128:192]]).contiguous()


def _small_warp_inputs(golden_w) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    feature = golden_w["input.feature_3d"]
    kp_s, kp_d = golden_w["input.kp_source"], golden_w["input.kp_driving"]
    features = torch.cat([feature[:, :4, :4, :16, :16], feature[:, 4:8, 8:12, 16:32, 32:48]]).contiguous()
    return features, torch.cat([kp_s, kp_d]), torch.cat([kp_d, kp_s])


def _fields(result: WarpOutput) -> dict[str, torch.Tensor]:
    return {"out": result.out, "occlusion_map": result.occlusion_map, "deformation": result.deformation}


def test_appearance_batch_equals_single_samples(fill_weights, golden_f):
    network = _small(AppearanceFeatureExtractor, SMALL_F, fill_weights)
    images = _small_source_images(golden_f)
    with torch.inference_mode():
        batched = network(images)
        assert batched.shape == (2, 4, 4, 16, 16)
        for i in range(2):
            assert_close(batched[i : i + 1], network(images[i : i + 1]), 1e-5, what=f"F sample {i}")


def test_warping_batch_equals_single_samples(fill_weights, golden_w):
    network = _small(WarpingNetwork, SMALL_W, fill_weights)
    features, kp_source, kp_driving = _small_warp_inputs(golden_w)
    with torch.inference_mode():
        batched = _fields(network(features, kp_source, kp_driving))
        assert batched["out"].shape == (2, 16, 16, 16)
        assert batched["occlusion_map"].shape == (2, 1, 16, 16)
        assert batched["deformation"].shape == (2, 4, 16, 16, 3)
        for i in range(2):
            single = _fields(network(features[i : i + 1], kp_source[i : i + 1], kp_driving[i : i + 1]))
            for name, value in single.items():
                assert_close(batched[name][i : i + 1], value, 1e-5, what=f"W {name} sample {i}")


def test_warping_runs_in_bfloat16_autocast(fill_weights, golden_w):
    network = _small(WarpingNetwork, SMALL_W, fill_weights)
    features, kp_source, kp_driving = _small_warp_inputs(golden_w)
    with torch.inference_mode():
        reference = _fields(network(features, kp_source, kp_driving))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            result = _fields(network(features, kp_source, kp_driving))
    assert result["deformation"].dtype == torch.float32, "the deformation grid keeps the keypoints' dtype"
    for name, value in result.items():
        assert_close(value, reference[name], 0.05, 0.05, what=f"bf16 autocast W {name}")


def test_sample_volume_keeps_a_float32_grid_precise_for_half_features(golden_w):
    volume = golden_w["input.feature_3d"][:, :4, :4, :16, :16].contiguous()
    grid = golden_w["output.deformation"][:, :4, :16, :16]
    expected = sample_volume(volume, grid)
    result = sample_volume(volume.to(torch.bfloat16), grid)
    assert result.dtype == torch.bfloat16
    assert_close(result, expected, 0.02, 0.01, what="bf16 sample_volume")


def test_inconsistent_volume_config_is_rejected():
    with torch.device("meta"), pytest.raises(ValueError, match="reshape_channel"):
        AppearanceFeatureExtractor(max_features=256)
    with torch.device("meta"), pytest.raises(ValueError, match="reshape_channel"):
        WarpingNetwork(reshape_channel=16)
