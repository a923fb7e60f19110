"""Eye/lip open-ratio controls on video-driven jobs (issue 4).

Keypoint-level checks on a real source (astronaut.png) driven by a real clip
(lp_d0.mp4, 3 frames, testdata landmarks) with the filled LivePortrait
weights; the renderer is stubbed out, so no image is rendered.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest
import torch

from talkinghead.drivers.video import DrivingBatch, VideoDriver
from talkinghead.engine import RenderOptions
from talkinghead.face.landmarks import JsonLandmarks
from talkinghead.motion.animate import AnimationOptions, Animator
from talkinghead.motion.controls import Controls, retargeting_offsets
from talkinghead.motion.frame import MotionSequence
from talkinghead.motion.retarget import stitch

from conftest import TESTDATA, landmarks_json

CLIP = "lp_d0.mp4"
EYES_OPEN = Controls(eyes_open=0.3)


@pytest.fixture(scope="module")
def source(engine):
    return engine.prepare_source(TESTDATA / "images" / "astronaut.png", landmarks=landmarks_json("astronaut.png"))


@pytest.fixture(scope="module")
def driving(engine) -> DrivingBatch:
    """Motion and eye/lip ratios of the clip's first 3 frames, as one batch."""
    driver = VideoDriver(TESTDATA / "driving" / CLIP, engine.networks.motion, landmarks=JsonLandmarks(landmarks_json(CLIP)),
                         max_frames=3, need_ratios=True, batch_size=3)
    (batch,) = list(driver)
    return DrivingBatch(batch.motion.motion, batch.ratios)


@pytest.fixture
def mlp_calls(engine) -> Iterator[dict[str, int]]:
    """Forward calls of the eye and lip retargeting MLPs while a test runs."""
    calls = {"eye": 0, "lip": 0}
    s = engine.networks.stitching
    hooks = [getattr(s, name).register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
             for name in calls]
    yield calls
    for hook in hooks:
        hook.remove()


def job_keypoints(engine, source, motion: MotionSequence, monkeypatch, controls: Controls | None,
                  options: AnimationOptions = AnimationOptions()) -> torch.Tensor:
    """(T, 21, 3) x_d that a video-driven job hands to the renderer (renderer stubbed out)."""
    seen: list[torch.Tensor] = []

    def render(feature_3d, x_s, x_d):
        seen.append(x_d)
        return np.zeros((x_d.shape[0], 512, 512, 3), np.uint8)

    monkeypatch.setattr(engine.renderer, "render", render)
    job = engine.animate_relative_motion(source, motion, 25.0, options,
                                        RenderOptions(controls=controls, batch_size=2, paste_back=False))
    assert len(list(job.frames)) == motion.n_frames
    return torch.cat(seen)


def test_zero_ratio_controls_leave_video_keypoints_bit_identical(engine, source, driving, monkeypatch, mlp_calls):
    plain = job_keypoints(engine, source, driving.motion, monkeypatch, None)
    neutral = job_keypoints(engine, source, driving.motion, monkeypatch, Controls(eyes_open=0.0, lips_open=0.0))
    assert torch.equal(plain, neutral)
    assert mlp_calls == {"eye": 0, "lip": 0}                 # no retargeting MLP run for zero controls


def test_eyes_open_adds_the_eye_delta_before_stitching(engine, source, driving, monkeypatch, mlp_calls):
    s = engine.networks.stitching
    unstitched = AnimationOptions(stitching=False)
    before = job_keypoints(engine, source, driving.motion, monkeypatch, None, unstitched)
    opened = job_keypoints(engine, source, driving.motion, monkeypatch, EYES_OPEN, unstitched)
    assert mlp_calls == {"eye": 1, "lip": 0}                 # once per job, not per frame; lips untouched
    with torch.inference_mode():
        x_s = Animator(source.info, s).x_s
        delta = retargeting_offsets(s.eye, s.lip, x_s, source.ratios, EYES_OPEN)
        restitched = stitch(s.stitching, x_s, opened)
    assert delta.abs().max() > 0
    torch.testing.assert_close(opened - before, delta.expand_as(opened), atol=1e-6, rtol=0)
    stitched = job_keypoints(engine, source, driving.motion, monkeypatch, EYES_OPEN)
    torch.testing.assert_close(stitched, restitched, atol=1e-6, rtol=0)


@pytest.mark.parametrize("options", [AnimationOptions(stitching=False, eye_retargeting=True),
                                     AnimationOptions(stitching=False, relative=False, lip_retargeting=True)])
def test_ratio_controls_stack_on_eye_lip_retargeting(engine, source, driving, options):
    s = engine.networks.stitching
    anchor = driving.motion[0] if options.relative else None
    animator = Animator(source.info, s, options, anchor=anchor, source_ratios=source.ratios)
    with torch.inference_mode():
        offsets = retargeting_offsets(s.eye, s.lip, animator.x_s, source.ratios, Controls(eyes_open=-0.2, lips_open=0.2))
        driven = animator(driving.motion, driving.ratios)
        edited = animator(driving.motion, driving.ratios, offsets)
    torch.testing.assert_close(edited - driven, offsets.expand_as(driven), atol=1e-6, rtol=0)

