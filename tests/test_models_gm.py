"""G (SPADE generator) and M (motion extractor) against the LivePortrait goldens.

Weights come from the fill rule (``tests/data/tools/fill_weights.py``) in
the exact checkpoint layout of the manifest; inputs and expected outputs from
``tests/data/fixtures/liveportrait/golden_{G,M}.safetensors`` (README: module-level
tolerance atol = rtol = 1e-4).  The full G forward (~10 s on 2 CPU cores) runs
once per module; batching, precision and spectral-norm checks use a small G
configuration on slices of the golden input.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import LP_FIXTURES, assert_close, load_golden
from talkinghead.models.spade import SPADEDecoder, SpectralNormConv2d, conv3x3_nearest_upsampled
from talkinghead.weights_strict import load_state_dict_strict

GOLDEN_ATOL = GOLDEN_RTOL = 1e-4

M_HEADS = ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")
M_INPUTS = ("source", "driving0", "driving1")

SMALL_G = dict(block_expansion=8, max_features=16, out_channels=8)  # 16 input channels


@pytest.fixture(scope="module")
def golden_m() -> dict[str, torch.Tensor]:
    return load_golden(LP_FIXTURES / "golden_M.safetensors")


@pytest.fixture(scope="module")
def golden_g() -> dict[str, torch.Tensor]:
    return load_golden(LP_FIXTURES / "golden_G.safetensors")


@pytest.fixture(scope="module")
def decoded_image(filled, golden_g) -> torch.Tensor:
    network, _ = filled("G")
    with torch.inference_mode():
        return network(golden_g["input.feature"])


def _small_decoder(fill_weights) -> SPADEDecoder:
    decoder = SPADEDecoder(**SMALL_G)
    fill_weights.fill_module_(decoder)
    return decoder.eval()


def _small_features(golden_g) -> torch.Tensor:
    """(2, 16, 16, 16): two crops of the golden W output."""
    feature = golden_g["input.feature"]
    return torch.cat([feature[:, :16, 16:32, 16:32], feature[:, 100:116, 32:48, 24:40]]).contiguous()


@pytest.mark.parametrize("who", M_INPUTS)
def test_motion_extractor_matches_golden(filled, golden_m, who):
    network, _ = filled("M")
    with torch.inference_mode():
        heads = network(golden_m[f"input.{who}_image"])
    assert set(heads) == set(M_HEADS)
    for head in M_HEADS:
        assert_close(heads[head], golden_m[f"output.{who}.{head}"], GOLDEN_ATOL, GOLDEN_RTOL, what=f"M {who}.{head}")


def test_motion_extractor_batch_matches_golden(filled, golden_m):
    network, _ = filled("M")
    with torch.inference_mode():
        heads = network(torch.cat([golden_m[f"input.{who}_image"] for who in M_INPUTS]))
    for head in M_HEADS:
        expected = torch.cat([golden_m[f"output.{who}.{head}"] for who in M_INPUTS])
        assert_close(heads[head], expected, GOLDEN_ATOL, GOLDEN_RTOL, what=f"M batch {head}")


def test_motion_extractor_runs_in_bfloat16_autocast(filled, golden_m):
    network, _ = filled("M")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        heads = network(golden_m["input.source_image"])
    for head in M_HEADS:
        expected = golden_m[f"output.source.{head}"]
        assert_close(heads[head], expected, 0.05 * expected.abs().max().item(), what=f"bf16 autocast M {head}")


def test_spade_decoder_matches_golden(decoded_image, golden_g):
    assert decoded_image.shape == (1, 3, 512, 512)
    assert 0 < decoded_image.min() and decoded_image.max() < 1
    assert_close(decoded_image, golden_g["output.image"], GOLDEN_ATOL, GOLDEN_RTOL, what="G image")


def test_spade_decoder_batch_equals_single_samples(fill_weights, golden_g):
    decoder = _small_decoder(fill_weights)
    features = _small_features(golden_g)
    with torch.inference_mode():
        batched = decoder(features)
        assert batched.shape == (2, 3, 128, 128)
        for i in range(2):
            assert_close(batched[i : i + 1], decoder(features[i : i + 1]), 1e-5, what=f"G sample {i}")


def test_spade_decoder_runs_in_bfloat16_autocast(fill_weights, golden_g):
    decoder = _small_decoder(fill_weights)
    features = _small_features(golden_g)
    with torch.inference_mode():
        reference = decoder(features)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            result = decoder(features)
    assert_close(result, reference, 0.05, what="bf16 autocast G image")


@pytest.mark.parametrize("factor", [1, 2, 3, 4])
def test_conv3x3_nearest_upsampled_equals_upsample_then_conv(factor, golden_g):
    x = golden_g["input.feature"][:, :6, 20:27, 30:35].double()
    generator = torch.Generator().manual_seed(factor)
    weight = torch.randn(5, 6, 3, 3, generator=generator, dtype=torch.float64)
    bias = torch.randn(5, generator=generator, dtype=torch.float64)
    expected = F.conv2d(F.interpolate(x, scale_factor=factor, mode="nearest"), weight, bias, padding=1)
    assert_close(conv3x3_nearest_upsampled(x, weight, bias, factor), expected, 1e-12, what=f"factor {factor}")


def test_spectral_norm_conv_matches_torch_spectral_norm(fill_weights, golden_g):
    x = golden_g["input.feature"][:, :8, :12, :12].contiguous()
    ours = SpectralNormConv2d(8, 6, 3)
    fill_weights.fill_module_(ours, prefix="snconv.")
    reference = nn.utils.spectral_norm(nn.Conv2d(8, 6, 3, padding=1))
    reference.load_state_dict(ours.state_dict())
    ours.eval()
    reference.eval()
    expected = reference(x).detach()
    assert_close(ours(x), expected, 1e-6, what="spectral-norm conv, autograd on (uncached)")
    with torch.inference_mode():
        assert_close(ours(x), expected, 1e-6, what="spectral-norm conv, inference (cached)")


def test_spectral_norm_cache_follows_loaded_and_cast_weights(fill_weights, golden_g):
    x = golden_g["input.feature"][:, :8, :12, :12].contiguous()
    conv = SpectralNormConv2d(8, 6, 3).eval()
    fill_weights.fill_module_(conv, prefix="first.")
    other = SpectralNormConv2d(8, 6, 3).eval()
    fill_weights.fill_module_(other, prefix="second.")
    with torch.inference_mode():
        conv(x)  # caches the first weights
        expected = other(x)
    load_state_dict_strict(conv, other.state_dict(), "second fill")
    with torch.inference_mode():
        assert_close(conv(x), expected, 0.0, what="after load_state_dict")
        result = conv.double()(x.double())
    assert result.dtype == torch.float64
    assert_close(result, expected, 1e-5, what="after .double()")
