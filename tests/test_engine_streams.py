"""Engine plumbing that needs no rendering: smoothing of streamed driving batches."""

from __future__ import annotations

import torch

from talkinghead.drivers.video import DrivingBatch
from talkinghead.drivers.batches import smoothed_batches
from talkinghead.motion.animate import EyeLipRatios
from talkinghead.motion.frame import MotionSequence
from talkinghead.motion.smoothing import SmoothingOptions, smooth_motion


def _motion(n: int) -> MotionSequence:
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return MotionSequence(pitch=r(n, 1), yaw=r(n, 1), roll=r(n, 1), t=r(n, 3), scale=1 + 0.01 * r(n, 1), exp=r(n, 21, 3))


def _batches(motion: MotionSequence, size: int, with_ratios: bool):
    for i in range(0, motion.n_frames, size):
        chunk = motion[i:i + size]
        ratios = None
        if with_ratios:
            idx = torch.arange(i, i + chunk.n_frames, dtype=torch.float32)[:, None]
            ratios = EyeLipRatios(eye=idx.expand(-1, 2), lip=idx)
        yield DrivingBatch(chunk, ratios)


def test_streamed_smoothing_equals_offline_and_keeps_ratios_aligned() -> None:
    motion = _motion(23)
    options = SmoothingOptions(pose=0.5, expression=0.3)
    out = list(smoothed_batches(_batches(motion, 4, with_ratios=True), options))
    joined = MotionSequence.cat([b.motion for b in out])
    expected = smooth_motion(motion, options)
    assert joined.n_frames == 23
    assert torch.equal(joined.yaw, expected.yaw) and torch.equal(joined.exp, expected.exp)
    lips = torch.cat([b.ratios.lip for b in out])[:, 0]
    assert torch.equal(lips, torch.arange(23, dtype=torch.float32))   # each frame keeps its own ratios


def test_no_smoothing_passes_batches_through() -> None:
    motion = _motion(5)
    out = list(smoothed_batches(_batches(motion, 2, with_ratios=False), SmoothingOptions()))
    assert [b.motion.n_frames for b in out] == [2, 2, 1]
    assert torch.equal(MotionSequence.cat([b.motion for b in out]).exp, motion.exp)
