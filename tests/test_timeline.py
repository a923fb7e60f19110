"""Timeline edits on every job (issue 13, item 3): a keyframe file laid over another job's frames.

Real motion: the 150-frame (25 Hz) audio-driver motion of the Ditto
post-processing golden run (tests/data/fixtures/ditto/golden_post.safetensors,
variant "default"; "shipped" stands in for a source video's own per-frame
motion) and its source (inputs.safetensors, ``src.*``).  The keypoint-level
check runs the render side's ``absolute_keypoints`` on astronaut.png with the
filled weights; nothing is rendered.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from conftest import TESTDATA, landmarks_json

from talkinghead.errors import ControlError
from talkinghead.motion.controls import ControlClampWarning, Controls, apply_controls
from talkinghead.motion.frame import MotionSequence
from talkinghead.motion.keyframes import (
    CHANNELS, DEFAULT_FADE, interpolate_values, parse_keyframes, read_keyframes, sample_controls,
)
from talkinghead.motion.keypoints import keypoint_info_from_raw
from talkinghead.motion.timeline import (
    IDENTITY, TimelineEdits, apply_timeline, edited_intervals, keyframe_values, neutralize_expression,
    neutralize_span, sample_timeline, stack_controls, stack_job_controls,
)

FPS = 25.0
SMILE_PATH = '{"keyframes": [{"t": 1.0}, {"t": 2.0, "smile": 0.8, "yaw": 10, "lips_open": 0.2}, {"t": 3.0}]}'
"""A version-1 (pose-job) file: neutral first and last keys, an edit between 1 s and 3 s."""


def _motion(golden: dict[str, torch.Tensor], variant: str) -> MotionSequence:
    prefix = f"post.{variant}."
    angles = {name: golden[f"{prefix}{name}_deg"][:, None] for name in ("pitch", "yaw", "roll")}
    return MotionSequence(**angles, t=golden[prefix + "t"], scale=golden[prefix + "scale"],
                       exp=golden[prefix + "exp"].reshape(-1, 21, 3))


@pytest.fixture(scope="module")
def audio_motion(ditto_post_golden) -> MotionSequence:
    """(150) absolute motion of the audio driver at 25 Hz."""
    return _motion(ditto_post_golden, "default")


@pytest.fixture(scope="module")
def own_motion(ditto_post_golden) -> MotionSequence:
    """(150) another real motion sequence, standing in for a source video's own per-frame motion."""
    return _motion(ditto_post_golden, "shipped")


@pytest.fixture(scope="module")
def source_info(ditto_inputs):
    """(1) the audio run's source motion (M's heads of the source image)."""
    return keypoint_info_from_raw({h: ditto_inputs[f"src.{h}"] for h in ("scale", "pitch", "yaw", "roll", "t", "exp", "kp")})


def _times(n: int, fps: float = FPS) -> np.ndarray:
    return np.arange(n) / fps


def _series(controls, name: str) -> np.ndarray:
    return np.array([getattr(c, name) for c in controls])


def _same_frames(a: MotionSequence, b: MotionSequence, frames: np.ndarray) -> bool:
    index = torch.as_tensor(np.flatnonzero(frames))
    return all(torch.equal(getattr(a, f)[index], getattr(b, f)[index]) for f in ("pitch", "yaw", "roll", "t", "scale", "exp"))


# ------------------------------------------------- outside: bit for bit
@pytest.mark.parametrize("job", [None, Controls(yaw=5.0, smile=0.2, scale=1.1), "per-frame"])
def test_outside_the_keyframes_the_job_is_unchanged_and_inside_it_follows_the_ease(audio_motion, source_info, job):
    n = audio_motion.n_frames
    if job == "per-frame":
        job = [Controls(pitch=float(np.sin(k / 10)), purse=0.1) for k in range(n)]
    track = parse_keyframes(SMILE_PATH)
    edits = sample_timeline(track, FPS, n)
    motion, stacked = apply_timeline(audio_motion, source_info, edits, job)
    at = _times(n)
    outside = (at < 1.0) | (at > 3.0)
    own = [job or IDENTITY] * n if not isinstance(job, list) else job
    assert all(stacked[k] is own[k] for k in np.flatnonzero(outside))
    assert not edits.edited[outside].any() and edits.edited[(at > 1.0) & (at < 3.0)].all()
    plain, edited = apply_controls(audio_motion, own), apply_controls(motion, stacked)
    assert _same_frames(edited, plain, outside)
    assert not _same_frames(edited, plain, ~outside)
    keyed = interpolate_values(np.array(track.times), track.key_values(), track.eases, at)
    inside = ~outside
    for name in ("smile", "yaw", "lips_open"):
        expected = keyed[:, CHANNELS.index(name)] + _series(own, name)
        np.testing.assert_allclose(_series(stacked, name)[inside], expected[inside], rtol=0, atol=1e-12)
    assert _series(stacked, "smile")[50] == pytest.approx(0.8 + _series(own, "smile")[50])  # the key, at t = 2.0 s


def test_absolute_keypoints_outside_the_timeline_are_bit_identical(engine, audio_motion):
    """The render side's x_d (stitching, eye/lip retargeting offsets) of frames outside the edit equals the unedited job's."""
    from talkinghead.render.frames import absolute_keypoints

    source = engine.prepare_source(TESTDATA / "images" / "astronaut.png", landmarks=landmarks_json("astronaut.png"))
    n, stitching = 60, engine.networks.stitching
    motion = audio_motion[:n]
    job = [Controls(yaw=3.0)] * n
    edits = sample_timeline(parse_keyframes(SMILE_PATH), FPS, n)
    edited_motion, stacked = apply_timeline(motion, source.info, edits, job)
    plain = torch.cat([d.x_d for d in absolute_keypoints(source, motion, job, stitching, 8)])
    edited = torch.cat([d.x_d for d in absolute_keypoints(source, edited_motion, stacked, stitching, 8)])
    outside = torch.as_tensor(~edits.edited)
    assert torch.equal(edited[outside], plain[outside])
    assert (edited[~outside] - plain[~outside]).abs().amax() > 1e-3


# ------------------------------------------------------------ the edges
def _edge_and_ramp_steps(values: np.ndarray, edited: np.ndarray) -> tuple[float, float]:
    """Largest frame-to-frame change where the edit starts or stops, and anywhere else while edited."""
    steps = np.abs(np.diff(values))
    edge = edited[1:] != edited[:-1]
    return float(steps[edge].max()), float(steps[~edge & edited[1:] & edited[:-1]].max())


@pytest.mark.parametrize("text", [
    '{"keyframes": [{"t": 2.0, "smile": 0.8, "yaw": -20}, {"t": 3.0, "smile": 0.8, "yaw": 20, "ease": "linear"}]}',
    '{"version": 2, "spans": [{"from": 2.0, "to": 3.0, "smile": 0.8, "neutralize": 1}]}',
    '{"version": 2, "spans": [{"from": 2.0, "to": 3.0, "smile": 0.8, "fade": 0.4, "ease": "linear"}]}',
    '{"version": 2, "fade": 0.5, "keyframes": [{"t": 2.0, "smile": 0.8}, {"t": 2.5, "smile": 0.4}]}',
])
def test_no_jump_at_the_edges(text):
    track = parse_keyframes(text)
    edits = sample_timeline(track, FPS, 150)
    for name in ("smile", "neutralize"):
        values = edits.neutralize if name == "neutralize" else _series(edits.controls, name)
        if values.max() == 0:
            continue
        edge, ramp = _edge_and_ramp_steps(values, edits.edited)
        assert edge <= ramp, (name, edge, ramp)
    start, end = edited_intervals(track)[0]
    at = _times(150)
    assert not edits.edited[(at <= start) | (at >= end)].any()


def test_end_keys_that_are_not_neutral_fade_outside_and_are_met_at_their_times():
    track = parse_keyframes('{"keyframes": [{"t": 2.0, "smile": 0.8}, {"t": 3.0, "smile": 0.8}]}')
    smile = _series(sample_timeline(track, FPS, 100).controls, "smile")
    assert edited_intervals(track) == [(2.0 - DEFAULT_FADE, 3.0 + DEFAULT_FADE)]
    assert np.all(smile[50:76] == 0.8)  # 2.0 s … 3.0 s
    assert np.all(smile[:45] == 0) and np.all(smile[81:] == 0)  # before 1.8 s, after 3.2 s
    assert np.all(np.diff(smile[45:51]) > 0) and np.all(np.diff(smile[75:81]) < 0)
    at_zero = parse_keyframes('{"keyframes": [{"t": 0.0, "yaw": 10}, {"t": 1.0, "yaw": 10}]}')
    assert _series(sample_timeline(at_zero, FPS, 5).controls, "yaw")[0] == 10.0  # nothing before t = 0 to fade from


def test_a_span_without_fade_is_a_step_on_from_le_t_lt_to():
    edits = sample_timeline(parse_keyframes('{"version": 2, "spans": [{"from": 1.0, "to": 2.0, "yaw": 5, "fade": 0}]}'),
                            FPS, 75)
    assert np.flatnonzero(edits.edited).tolist() == list(range(25, 50))
    assert set(_series(edits.controls, "yaw")[25:50]) == {5.0}


# --------------------------------------------------------- neutralize
def test_neutralize_at_strength_one_gives_the_neutral_on_the_span(audio_motion, source_info):
    track = parse_keyframes('{"version": 2, "spans": [{"from": 2.0, "to": 4.0, "neutralize": 1.0}]}')
    edits = sample_timeline(track, FPS, audio_motion.n_frames)
    motion, stacked = apply_timeline(audio_motion, source_info, edits)
    at = _times(audio_motion.n_frames)
    full = (at >= 2.0 + DEFAULT_FADE) & (at <= 4.0 - DEFAULT_FADE)
    outside = (at <= 2.0) | (at >= 4.0)
    assert torch.equal(motion.exp[torch.as_tensor(full)], source_info.exp.expand(int(full.sum()), -1, -1))
    assert _same_frames(motion, audio_motion, outside)
    assert all(c is IDENTITY for c in stacked)  # neutralize is no control
    for field in ("pitch", "yaw", "roll", "t", "scale"):  # only the expression moves
        assert torch.equal(getattr(motion, field), getattr(audio_motion, field))
    distance = (motion.exp - source_info.exp).flatten(1).norm(dim=1) / (audio_motion.exp - source_info.exp).flatten(1).norm(dim=1)
    ramp = distance[50:56].numpy()  # 2.0 s … 2.2 s: the expression eases toward the neutral
    assert ramp[0] == 1.0 and ramp[-1] == 0.0 and np.all(np.diff(ramp) < 0)
    same = neutralize_span(audio_motion, source_info, FPS, 2.0, 4.0, strength=1.0)
    assert torch.equal(same.exp, motion.exp)


def test_neutralize_strength_and_a_per_frame_neutral(audio_motion, own_motion):
    half = neutralize_span(audio_motion, own_motion, FPS, 1.0, 5.0, strength=0.5, fade=0.0)
    span = slice(25, 125)
    expected = own_motion.exp[span] + (audio_motion.exp[span] - own_motion.exp[span]) * 0.5
    torch.testing.assert_close(half.exp[span], expected, rtol=0, atol=1e-7)
    assert torch.equal(half.exp[:25], audio_motion.exp[:25]) and torch.equal(half.exp[125:], audio_motion.exp[125:])
    full = neutralize_expression(audio_motion, own_motion, 1.0)  # a source video: every frame its own neutral
    assert torch.equal(full.exp, own_motion.exp)
    assert neutralize_expression(audio_motion, own_motion, np.zeros(150)) is audio_motion


def test_neutralize_keyframes_interpolate_like_controls(audio_motion, source_info):
    track = parse_keyframes('{"version": 2, "keyframes": [{"t": 1.0}, {"t": 2.0, "neutralize": 1, "ease": "linear"}, '
                            '{"t": 3.0, "neutralize": 1}, {"t": 4.0}]}')
    edits = sample_timeline(track, FPS, 150)
    np.testing.assert_allclose(edits.neutralize[25:51], np.linspace(0, 1, 26), atol=1e-12)
    assert edits.neutralize[50:76].min() == 1.0 and edits.neutralize[100:].max() == 0.0
    motion, _ = apply_timeline(audio_motion, source_info, edits)
    assert torch.equal(motion.exp[50:76], source_info.exp.expand(26, -1, -1))
    assert sample_controls(track) == [IDENTITY] * track.n_frames  # the pose job has no expression to neutralize


# ------------------------------------------------------------- timing
def test_a_30_fps_track_lands_at_the_right_times_of_a_25_fps_job():
    track = parse_keyframes('{"fps": 30, "keyframes": [{"t": 1.0}, {"t": 2.0, "yaw": 20, "ease": "linear"}, '
                            '{"t": 3.0, "ease": "linear"}]}')
    job = sample_timeline(track, 25.0, 100)
    yaw = _series(job.controls, "yaw")
    assert yaw[50] == 20.0 and yaw[25] == 0.0 and yaw[75] == 0.0  # t = 2.0, 1.0, 3.0 s
    assert yaw[37] == pytest.approx(20.0 * 0.48) and yaw[60] == pytest.approx(20.0 * 0.6)  # 1.48 s, 2.4 s
    own = _series(sample_timeline(track, 30.0, 120).controls, "yaw")
    np.testing.assert_allclose(yaw[::5], own[::6][:20], rtol=0, atol=1e-12)  # every 0.2 s, both clocks
    pose_job = _series(sample_controls(track), "yaw")
    np.testing.assert_allclose(yaw[25:76:5], pose_job[30:91:6], rtol=0, atol=1e-12)


def test_chunks_sample_like_the_whole_job():
    track = parse_keyframes(SMILE_PATH)
    whole = sample_timeline(track, FPS, 104)
    for start in (0, 8, 48, 96):
        chunk = sample_timeline(track, FPS, 8, first_frame=start)
        part = whole[start:start + 8]
        assert chunk.controls == part.controls and np.array_equal(chunk.neutralize, part.neutralize)
        assert chunk.first_frame == part.first_frame == start and np.array_equal(chunk.times, part.times)


# ------------------------------------------------------------ stacking
def test_stack_controls_adds_sliders_and_multiplies_scale(source_info):
    a, b = Controls(yaw=5.0, x=0.01, scale=1.1, smile=0.2), Controls(yaw=10.0, x=0.02, scale=1.1, smile=0.3)
    both = stack_controls(a, b)
    assert (both.yaw, both.x, both.smile) == pytest.approx((15.0, 0.03, 0.5)) and both.scale == pytest.approx(1.21)
    once, twice = apply_controls(source_info, both), apply_controls(apply_controls(source_info, a), b)
    for field in ("pitch", "yaw", "roll", "t", "scale", "exp"):
        torch.testing.assert_close(getattr(once, field), getattr(twice, field))
    assert stack_controls(a, Controls()) is a and stack_controls(Controls(), b) is b
    with pytest.warns(ControlClampWarning):
        assert stack_controls(Controls(yaw=40.0), Controls(yaw=40.0)).yaw == 45.0
    with pytest.raises(ValueError, match="3 job controls for 2 timeline frames"):
        stack_job_controls([a] * 3, [b] * 2)


def test_overlapping_edits_stack():
    track = parse_keyframes('{"version": 2, "keyframes": [{"t": 1.0}, {"t": 2.0, "yaw": 10}, {"t": 3.0}], "spans": ['
                            '{"from": 1.5, "to": 2.5, "yaw": 5, "scale": 1.1, "neutralize": 0.5, "fade": 0},'
                            '{"from": 1.8, "to": 2.2, "neutralize": 0.5, "fade": 0}]}')
    edits = sample_timeline(track, FPS, 100)
    assert edits.controls[50].yaw == pytest.approx(15.0) and edits.controls[50].scale == pytest.approx(1.1)
    assert edits.neutralize[50] == pytest.approx(0.75) and edits.neutralize[40] == pytest.approx(0.5)
    assert edited_intervals(track) == [(1.0, 3.0)]


# --------------------------------------------------------- the format
def test_version_1_files_stay_valid_and_the_pose_job_gains_spans(tmp_path):
    old = parse_keyframes(SMILE_PATH)
    assert old.version == 1 and old.spans == () and old.neutralize == () and old.n_frames == 76
    path = tmp_path / "spans.json"
    path.write_text(json.dumps({"version": 2, "fps": 10, "spans": [{"from": 1.0, "to": 2.0, "smile": 0.5, "fade": 0.5}]}))
    spans = read_keyframes(path)
    assert spans.times == () and spans.end == 2.0 and spans.n_frames == 21
    smile = _series(sample_controls(spans), "smile")
    assert smile[15] == 0.5 and smile[10] == 0.0 and smile[20] == 0.0 and 0 < smile[12] < 0.5


@pytest.mark.parametrize("text, message", [
    ('{"spans": [{"from": 1, "to": 2, "yaw": 5}]}', 'spans need\\(s\\) "version": 2'),
    ('{"fade": 0.3, "keyframes": [{"t": 0}]}', 'fade need\\(s\\) "version": 2'),
    ('{"keyframes": [{"t": 0, "neutralize": 1}]}', 'keyframe 0: "neutralize" needs "version": 2'),
    ('{"version": 3, "keyframes": [{"t": 0}]}', "unknown keyframe-file version 3"),
    ('{"version": "2", "keyframes": [{"t": 0}]}', "unknown keyframe-file version '2'"),
    ('{"version": 2}', 'non-empty "keyframes" or "spans" list'),
    ('{"version": 2, "spans": {"from": 1}}', '"spans" must be a list'),
    ('{"version": 2, "spans": [{"from": 1, "yaw": 5}]}', 'span 0 must be an object like'),
    ('{"version": 2, "spans": [{"from": 2, "to": 1, "yaw": 5}]}', 'span 0: need 0 ≤ "from" < "to"'),
    ('{"version": 2, "spans": [{"from": 1, "to": 2, "yaw": 5, "fade": 0.6}]}', 'span 0: "fade" must be between 0 and half'),
    ('{"version": 2, "spans": [{"from": 1, "to": 2, "yaw": 5, "ease": "cubic"}]}', "span 0: unknown fade ease 'cubic'"),
    ('{"version": 2, "spans": [{"from": 1, "to": 2}]}', "span 0 changes nothing"),
    ('{"version": 2, "spans": [{"from": 1, "to": 2, "grimace": 1}]}', "span 0: unknown control 'grimace'"),
    ('{"version": 2, "spans": [{"from": 1, "to": 2, "neutralize": "all"}]}', 'span 0: "neutralize" must be a finite number'),
    ('{"version": 2, "fade": -1, "keyframes": [{"t": 0}]}', "fade must be between 0 and 10 s"),
    ('{"version": 2, "speed": 2, "keyframes": [{"t": 0}]}', "unknown top-level key\\(s\\) speed"),
])
def test_bad_files_give_one_clear_error(text, message):
    with pytest.raises(ControlError, match=message):
        parse_keyframes(text)


def test_bad_arguments_give_clear_errors(audio_motion, source_info):
    track = parse_keyframes(SMILE_PATH)
    with pytest.raises(ControlError, match="cannot lay a timeline"):
        sample_timeline(track, 0.0, 10)
    with pytest.raises(ControlError, match="between 0 and 1"):
        neutralize_expression(audio_motion, source_info, 1.5)
    with pytest.raises(ControlError, match="bad neutralize span"):
        neutralize_span(audio_motion, source_info, FPS, 3.0, 2.0)
    with pytest.raises(ControlError, match="neutralize strength must be between 0 and 1"):
        neutralize_span(audio_motion, source_info, FPS, 2.0, 3.0, strength=2.0)
    with pytest.raises(ValueError, match="3 neutralize strengths for 150 motion frames"):
        neutralize_expression(audio_motion, source_info, [0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="a neutral of 2 frames for 150 motion frames"):
        neutralize_expression(audio_motion, audio_motion[:2], 1.0)
    with pytest.raises(ValueError, match="runs of consecutive frames"):
        sample_timeline(track, FPS, 10)[::2]
    with pytest.raises(ValueError, match="timeline frames for 150 motion frames"):
        apply_timeline(audio_motion, source_info, sample_timeline(track, FPS, 10))
    with pytest.warns(ControlClampWarning, match="neutralize strength 1.5 clamped"):
        assert parse_keyframes('{"version": 2, "spans": [{"from": 0, "to": 1, "neutralize": 1.5}]}').spans[0].neutralize == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert isinstance(sample_timeline(track, FPS, 10), TimelineEdits)
    assert keyframe_values(parse_keyframes('{"version": 2, "spans": [{"from": 0, "to": 1, "yaw": 1}]}'),
                           _times(3)).shape == (3, len(CHANNELS))
