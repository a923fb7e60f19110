"""Motion smoothing: identity at strength 0, exact constants and ramps, jitter/lag/amplitude on a noisy sine,
dlib landmark tracks of the test clips, and bit-exact streaming ≡ offline."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import LP_FIXTURES, landmarks_json, load_golden

from talkinghead.errors import ControlError
from talkinghead.motion.frame import KeypointInfo, MotionSequence
from talkinghead.motion.smoothing import (
    EXPRESSION_FIELDS, POSE_FIELDS, MotionSmoother, SmoothingOptions, jitter, smooth_motion,
)

FPS = 25.0
FIELDS = POSE_FIELDS + EXPRESSION_FIELDS


@pytest.fixture(scope="module")
def golden_motion() -> dict[str, KeypointInfo]:
    """Source and the two driving frames of the synthetic golden pipeline run (realistic magnitudes)."""
    g = load_golden(LP_FIXTURES / "golden_pipeline.safetensors")
    return {
        who: KeypointInfo(**{f: g[f"synth.{who}.{f}"] for f in FIELDS + ("kp",)})
        for who in ("source", "driving0", "driving1")
    }


def _noisy_motion(golden_motion: dict[str, KeypointInfo], n: int, seed: int = 0) -> KeypointInfo:
    """n frames blending the two golden driving frames along a 0.5 Hz sine, plus Gaussian noise."""
    gen = torch.Generator().manual_seed(seed)
    a, b = golden_motion["driving0"], golden_motion["driving1"]
    w = 0.5 + 0.5 * torch.sin(2 * math.pi * 0.5 * torch.arange(n) / FPS)

    def blend(name: str) -> torch.Tensor:
        x, y = getattr(a, name), getattr(b, name)
        clean = x + (y - x) * w.view(-1, *[1] * (x.dim() - 1))
        return clean + 0.05 * (y - x).abs().mean() * torch.randn(clean.shape, generator=gen)

    return KeypointInfo(**{f: blend(f) for f in FIELDS}, kp=a.kp.expand(n, -1, -1).clone())


def _assert_same(actual: MotionSequence, expected: MotionSequence) -> None:
    for f in FIELDS:
        assert torch.equal(getattr(actual, f), getattr(expected, f)), f


def _stream(frames: MotionSequence, options: SmoothingOptions, chunks: list[int]) -> MotionSequence:
    smoother, out, start = MotionSmoother(options), [], 0
    for size in chunks:
        pushed = frames[start:start + size]
        start += size
        ready = smoother.push(pushed)
        emitted = sum(len(o) for o in out) + (len(ready) if ready is not None else 0)
        assert emitted == max(0, start - smoother.delay), "output must trail the input by exactly `delay` frames"
        if ready is not None:
            out.append(ready)
    assert start == len(frames)
    if (rest := smoother.flush()) is not None:
        out.append(rest)
    return type(frames).cat(out)


def test_strength_zero_is_identity(golden_motion) -> None:
    motion = _noisy_motion(golden_motion, 30)
    assert smooth_motion(motion, SmoothingOptions()) is motion
    _assert_same(_stream(motion, SmoothingOptions(), [7, 23]), motion)


def test_zero_pose_strength_leaves_pose_untouched(golden_motion) -> None:
    motion = _noisy_motion(golden_motion, 40)
    out = smooth_motion(motion, SmoothingOptions(pose=0.0, expression=1.0))
    for f in POSE_FIELDS:
        assert torch.equal(getattr(out, f), getattr(motion, f)), f
    assert not torch.equal(out.exp, motion.exp)
    assert torch.equal(out.kp, motion.kp) and isinstance(out, KeypointInfo)


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), "0.5"])
def test_invalid_strength_raises_control_error(value) -> None:
    with pytest.raises(ControlError, match="smoothing strength"):
        SmoothingOptions(pose=value)


def test_constant_sequence_is_unchanged_bit_exact(golden_motion) -> None:
    constant = MotionSequence.cat([golden_motion["driving1"].motion] * 50)
    _assert_same(smooth_motion(constant, SmoothingOptions(1.0, 1.0)), constant)


def test_linear_ramp_has_no_lag_or_drift(golden_motion) -> None:
    """A local quadratic fit reproduces a ramp, also at the ends of the sequence."""
    a, b = golden_motion["driving0"], golden_motion["driving1"]
    s = torch.linspace(0, 1, 60, dtype=torch.float64)
    ramp = MotionSequence(**{
        f: (getattr(a, f) + (getattr(b, f) - getattr(a, f)) * s.view(-1, *[1] * (getattr(a, f).dim() - 1))).double()
        for f in FIELDS
    })
    out = smooth_motion(ramp, SmoothingOptions(1.0, 1.0))
    for f in FIELDS:
        torch.testing.assert_close(getattr(out, f), getattr(ramp, f), atol=1e-9, rtol=0)


@pytest.mark.parametrize("n", [1, 2])
def test_sequences_of_one_and_two_frames_are_unchanged(golden_motion, n) -> None:
    motion = _noisy_motion(golden_motion, n)
    out = smooth_motion(motion, SmoothingOptions(1.0, 1.0))
    for f in FIELDS:
        torch.testing.assert_close(getattr(out, f), getattr(motion, f), atol=1e-6, rtol=0)
    _assert_same(_stream(motion, SmoothingOptions(1.0, 1.0), [n]), out)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dtype_and_device_are_preserved(golden_motion, dtype) -> None:
    motion = _noisy_motion(golden_motion, 20).to(dtype=dtype)
    out = smooth_motion(motion, SmoothingOptions(0.5, 0.5))
    for f in FIELDS:
        assert getattr(out, f).dtype == dtype and getattr(out, f).device == getattr(motion, f).device


def test_noisy_sine_loses_jitter_without_lag_or_amplitude_loss() -> None:
    """yaw = 15°·sin(2π·0.5 Hz·t) + N(0, 1°) at 25 fps, 10 s, strength 0.5 (σ = 2 frames)."""
    n = 250
    gen = torch.Generator().manual_seed(0)
    clean = 15.0 * torch.sin(2 * math.pi * 0.5 * torch.arange(n, dtype=torch.float64) / FPS)
    noisy = clean + torch.randn(n, generator=gen, dtype=torch.float64)

    def smoothed(yaw: torch.Tensor) -> torch.Tensor:
        zeros = torch.zeros(n, 1, dtype=yaw.dtype)
        motion = MotionSequence(zeros, yaw[:, None], zeros, zeros.expand(n, 3), zeros + 1.5,
                             torch.zeros(n, 21, 3, dtype=yaw.dtype))
        return smooth_motion(motion, SmoothingOptions(pose=0.5)).yaw[:, 0]

    out = smoothed(noisy)
    factor = float(jitter(noisy) / jitter(out))
    lags = range(-5, 6)
    xcorr = [float((out[max(0, k):n + min(0, k)] * clean[max(0, -k):n - max(0, k)]).sum()) for k in lags]
    lag = lags[max(range(len(lags)), key=xcorr.__getitem__)]
    amplitude_loss = 1 - float(smoothed(clean)[25:-25].abs().max()) / 15.0
    assert factor >= 3.0, factor  # measured 9.2
    assert abs(lag) <= 2, lag  # measured 0
    assert amplitude_loss <= 0.10, amplitude_loss  # measured 0.2 %


@pytest.mark.parametrize("clip", ["lp_d0.mp4", "mead_W009_front_happy_level3_001.mp4", "hdtf_WDA_KatieHill_000.mp4"])
def test_jitter_drops_on_real_landmark_tracks(clip) -> None:
    """Proxy pose from dlib tracks (engine motion needs real weights): eye line roll (degrees), eye centre (px)."""
    frames = json.loads(landmarks_json(clip).read_text())["frames"]
    pts = torch.tensor([f for f in frames if f is not None], dtype=torch.float32)
    left, right = pts[:, 36:42].mean(1), pts[:, 42:48].mean(1)
    eye_line = right - left
    roll = torch.rad2deg(torch.atan2(eye_line[:, 1], eye_line[:, 0]))[:, None]
    centre = (left + right) / 2
    n = len(pts)
    motion = MotionSequence(torch.zeros(n, 1), torch.zeros(n, 1), roll, torch.cat([centre, torch.zeros(n, 1)], 1),
                         torch.ones(n, 1), torch.zeros(n, 21, 3))
    out = smooth_motion(motion, SmoothingOptions(pose=0.5))
    assert jitter(roll) / jitter(out.roll) >= 3.0  # measured 4.5–10×
    assert jitter(centre) / jitter(out.t[:, :2]) >= 2.0  # measured 2.1–5.4×
    assert float((out.t[:, :2] - centre).mean(0).abs().max()) < 0.5  # no drift: mean offset < 0.5 px


@pytest.mark.parametrize("chunks", [[1] * 40, [3, 1, 7, 2, 20, 7], [40], [13, 27]])
def test_streaming_equals_offline_bit_exact(golden_motion, chunks) -> None:
    motion = _noisy_motion(golden_motion, 40)
    options = SmoothingOptions(pose=0.6, expression=0.3)
    streamed = _stream(motion, options, chunks)
    _assert_same(streamed, smooth_motion(motion, options))
    assert torch.equal(streamed.kp, motion.kp)


@pytest.mark.parametrize("n", range(1, 16))
def test_streaming_equals_offline_for_short_sequences(golden_motion, n) -> None:
    """Lengths around the window (delay 5: 2K+1 = 11 frames), frame by frame."""
    motion = _noisy_motion(golden_motion, n)
    options = SmoothingOptions(pose=0.4, expression=0.2)
    assert options.delay == 5
    _assert_same(_stream(motion, options, [1] * n), smooth_motion(motion, options))


def test_smoother_is_reusable_after_flush(golden_motion) -> None:
    motion = _noisy_motion(golden_motion, 25)
    options = SmoothingOptions(0.5, 0.5)
    smoother = MotionSmoother(options)
    first = [smoother.push(motion), smoother.flush()]
    second = [smoother.push(motion), smoother.flush()]
    _assert_same(KeypointInfo.cat(first), KeypointInfo.cat(second))
