"""Pose/expression controls, action units, keyframes and motion curves (issue 4).

Keypoint-level checks on a real source (astronaut.png through M with the
filled LivePortrait weights); no image is rendered.
"""

from __future__ import annotations

import warnings
from dataclasses import fields

import numpy as np
import pytest
import torch

from talkinghead.errors import ControlError
from talkinghead.motion.action_units import ACTION_UNITS, au_controls, au_direction, estimate_intensities
from talkinghead.motion.controls import (
    CONTROL_SPECS, EXPRESSION_CONTROLS, EXPRESSION_OFFSETS, ControlClampWarning, Controls, apply_controls,
    retargeting_offsets, target_ratios,
)
from talkinghead.motion.curves import motion_curves, plot_curves
from talkinghead.motion.frame import MotionSequence
from talkinghead.motion.keyframes import (
    interpolate_values, keyframe_motion, parse_keyframes, read_keyframes, sample_controls,
)
from talkinghead.motion.keypoints import KeypointTransform, implicit_keypoints
from talkinghead.motion.transfer import EYE_ROWS, LIP_ROWS

from conftest import TESTDATA, landmarks_json

MOTION_FIELDS = ("pitch", "yaw", "roll", "t", "scale", "exp")
CHEEK_ROWS = (3, 7)
BROW_ROWS = (1, 2)


@pytest.fixture(scope="module")
def source(engine):
    """PreparedSource of astronaut.png (real photo, testdata landmarks)."""
    return engine.prepare_source(TESTDATA / "images" / "astronaut.png", landmarks=landmarks_json("astronaut.png"))


@pytest.fixture(scope="module")
def info(source):
    return source.info


def changed_fields(a: MotionSequence, b: MotionSequence) -> set[str]:
    return {name for name in MOTION_FIELDS if not torch.equal(getattr(a, name), getattr(b, name))}


def changed_rows(a: MotionSequence, b: MotionSequence) -> set[int]:
    return set(torch.nonzero((a.exp - b.exp).abs().amax(dim=(0, 2))).flatten().tolist())


# ---------------------------------------------------------------- controls
def test_tables_are_consistent():
    names = [f.name for f in fields(Controls) if f.init]
    assert names == list(CONTROL_SPECS)
    assert list(EXPRESSION_OFFSETS) == list(EXPRESSION_CONTROLS)
    assert Controls().as_dict() == {name: spec.neutral for name, spec in CONTROL_SPECS.items()}
    assert Controls().is_neutral() and not Controls(smile=0.1).is_neutral()


def test_neutral_controls_are_bit_exact(info):
    edited = apply_controls(info, Controls())
    assert changed_fields(edited, info) == set()
    kp = KeypointTransform.from_motion(edited).apply(info.kp)
    assert torch.equal(kp, implicit_keypoints(info))
    sequence = apply_controls(info, [Controls()] * 3)
    assert sequence.n_frames == 3 and all(changed_fields(f, info) == set() for f in sequence.iter_frames())


def test_neutral_retargeting_offsets_are_exact_zeros(engine, source, info):
    s = engine.networks.stitching
    offsets = retargeting_offsets(s.eye, s.lip, implicit_keypoints(info), source.ratios, [Controls()] * 2)
    assert offsets.shape == (2, 21, 3) and torch.equal(offsets, torch.zeros_like(offsets))


@pytest.mark.parametrize("name, value", [("yaw", 15.0), ("pitch", -10.0), ("roll", 7.5)])
def test_angle_controls_change_only_rotation(info, name, value):
    edited = apply_controls(info, Controls(**{name: value}))
    assert changed_fields(edited, info) == {name}
    assert torch.allclose(getattr(edited, name), getattr(info, name) + value)
    assert not torch.allclose(KeypointTransform.from_motion(edited).apply(info.kp), implicit_keypoints(info))


@pytest.mark.parametrize("controls, field", [(Controls(x=0.1), "t"), (Controls(y=-0.05), "t"),
                                             (Controls(scale=1.1), "scale")])
def test_translation_and_scale_controls(info, controls, field):
    edited = apply_controls(info, controls)
    assert changed_fields(edited, info) == {field}
    assert torch.equal(edited.t[:, 2], info.t[:, 2])
    assert torch.allclose(edited.t[:, :2], info.t[:, :2] + torch.tensor([[controls.x, controls.y]]))
    assert torch.allclose(edited.scale, info.scale * controls.scale)


EXPECTED_ROWS = {
    "blink": set(EYE_ROWS), "gaze_x": set(EYE_ROWS), "gaze_y": set(EYE_ROWS),
    "wink": {11, 13} | {17} | {3},
    "smile": set(LIP_ROWS) | set(CHEEK_ROWS) | {13, 16},
    "brow": set(BROW_ROWS),
    "pout": set(LIP_ROWS), "purse": set(LIP_ROWS) | set(CHEEK_ROWS), "grin": set(LIP_ROWS),
    "mouth_open": set(LIP_ROWS),
}


@pytest.mark.parametrize("name, value", [(name, value) for name, spec in EXPRESSION_CONTROLS.items()
                                         for value in (spec.low, spec.high) if value != 0])
def test_expression_controls_touch_only_their_rows(info, name, value):
    edited = apply_controls(info, Controls(**{name: value}))
    assert changed_fields(edited, info) == {"exp"}
    rows = changed_rows(edited, info)
    assert rows and rows <= EXPECTED_ROWS[name], f"{name}={value} moved rows {sorted(rows)}"


def test_expression_offsets_scale_linearly_per_side(info):
    half = apply_controls(info, Controls(smile=0.5)).exp - info.exp
    full = apply_controls(info, Controls(smile=1.0)).exp - info.exp
    assert torch.allclose(2 * half, full, atol=1e-7)
    # LivePortrait's smile slider at 1.3 moves keypoint 14 down by 0.02·1.3 (y up is negative).
    assert full[0, 14, 1].item() == pytest.approx(-0.026, abs=1e-6)


def test_out_of_range_values_are_clamped_with_a_warning():
    with pytest.warns(ControlClampWarning, match="yaw to \\[-45, 45\\]"):
        controls = Controls(yaw=90, smile=-0.5)
    assert controls.yaw == 45.0 and controls.smile == -0.5 and controls.clamped == ("yaw",)
    with pytest.warns(ControlClampWarning):
        assert Controls(wink=-1).wink == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Controls(yaw=45).clamped == ()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "10", None, True])
def test_non_finite_values_are_refused(value):
    with pytest.raises(ControlError, match="'yaw' must be a finite number"):
        Controls(yaw=value)


def test_from_mapping_aliases_and_unknown_names():
    assert Controls.from_mapping({"aaa": 0.5, "eee": 0.2, "woo": -0.1}) == Controls(mouth_open=0.5, grin=0.2, purse=-0.1)
    with pytest.raises(ControlError, match="unknown control 'jaw'.*known controls: pitch"):
        Controls.from_mapping({"jaw": 1})
    with pytest.raises(ControlError, match="given twice"):
        Controls.from_mapping({"aaa": 0.5, "mouth_open": 0.2})


def test_controls_as_offsets_on_a_sequence(info):
    frames = apply_controls(info, [Controls(yaw=float(i)) for i in range(4)])
    edited = apply_controls(frames, Controls(pitch=5.0, smile=0.5))
    assert torch.allclose(edited.pitch, frames.pitch + 5.0)
    assert torch.equal(edited.yaw, frames.yaw)
    smile = apply_controls(info, Controls(smile=0.5)).exp - info.exp
    assert torch.allclose(edited.exp - frames.exp, smile.expand(4, -1, -1), atol=1e-7)
    per_frame = apply_controls(frames, [Controls(roll=float(i)) for i in range(4)])
    assert torch.allclose(per_frame.roll - frames.roll, torch.arange(4.0)[:, None])
    with pytest.raises(ValueError, match="3 sets of controls for 4 motion frames"):
        apply_controls(frames, [Controls()] * 3)


def test_eye_and_lip_opening_through_retargeting(engine, source, info):
    s = engine.networks.stitching
    controls = [Controls(), Controls(eyes_open=-0.8), Controls(lips_open=0.3)]
    targets = target_ratios(source.ratios, controls)
    assert torch.allclose(targets.eye[:, 0], torch.stack([source.ratios.eye.mean(), torch.tensor(0.0),
                                                         source.ratios.eye.mean()]))
    assert torch.allclose(targets.lip[:, 0], (source.ratios.lip[0] + torch.tensor([0.0, 0.0, 0.3])).clamp(0, 0.8))
    offsets = retargeting_offsets(s.eye, s.lip, implicit_keypoints(info), source.ratios, controls)
    assert torch.equal(offsets[0], torch.zeros(21, 3))
    assert offsets[1].abs().max() > 0 and offsets[2].abs().max() > 0


# ------------------------------------------------------------ action units
def test_action_unit_mapping():
    assert au_controls({"AU1": 1.0, "AU2": 1.0}) == Controls(brow=1.0)
    assert au_controls({"AU4": 0.5}) == Controls(brow=-0.5)
    assert au_controls({"AU45": 1.0}, base=Controls(yaw=10)) == Controls(yaw=10, blink=1.0)
    assert au_controls({"AU12": 0.5, "AU6": 1.0}) == Controls(smile=0.8, blink=0.2)
    assert set(ACTION_UNITS) >= {"AU1", "AU2", "AU4", "AU6", "AU12", "AU25", "AU26", "AU45"}
    with pytest.raises(ControlError, match="unknown action unit 'AU99'"):
        au_controls({"AU99": 1.0})
    with pytest.raises(ControlError, match="AU12 intensity must be a finite number"):
        au_controls({"AU12": float("nan")})
    with pytest.warns(ControlClampWarning, match="AU12 intensity 1.5 clamped to 1.0"):
        assert au_controls({"AU12": 1.5}) == Controls(smile=1.0)


@pytest.mark.parametrize("au", ["AU4", "AU12", "AU26", "AU45", "AU46"])
def test_action_unit_estimate_inverts_the_mapping(info, au):
    motion = apply_controls(info, [au_controls({au: level}) for level in (0.0, 0.3, 0.7)])
    estimate = estimate_intensities(motion, info)
    assert torch.allclose(estimate[au], torch.tensor([0.0, 0.3, 0.7]), atol=1e-4)
    direction = au_direction(au).flatten()
    for other, values in estimate.items():  # AUs pointing away from this one read 0
        if torch.dot(au_direction(other).flatten(), direction) <= 0:
            assert float(values.max()) <= 1e-6, other


# --------------------------------------------------------------- keyframes
KEYS = '{"fps": 10, "keyframes": [{"t": 0, "yaw": 0}, {"t": 1, "yaw": 20, "smile": 0.8}, ' \
       '{"t": 2, "yaw": -10, "aaa": 0.5, "ease": "cubic"}, {"t": 2.5, "yaw": 5, "ease": "linear"}]}'


@pytest.mark.parametrize("text, message", [
    ('{"fps": 25, "keyframes": [', "not valid JSON: .* at line 1"),
    ('[1, 2]', "must be a JSON object"),
    ('{"fps": 25}', "non-empty \"keyframes\" list"),
    ('{"fps": 25, "keyframes": []}', "non-empty \"keyframes\" list"),
    ('{"fps": 0, "keyframes": [{"t": 0}]}', "fps must be positive"),
    ('{"fps": "fast", "keyframes": [{"t": 0}]}', "fps must be a finite number"),
    ('{"speed": 1, "keyframes": [{"t": 0}]}', "unknown top-level key\\(s\\) speed"),
    ('{"keyframes": [{"yaw": 3}]}', "keyframe 0 has no time"),
    ('{"keyframes": [{"t": -1}]}', "keyframe 0 time -1.0 s is negative"),
    ('{"keyframes": [{"t": 0}, {"t": 1}, {"t": 1}]}', "keyframe 2 \\(t = 1.0 s\\) does not come after keyframe 1"),
    ('{"keyframes": [{"t": 0}, {"t": 2}, {"t": 1}]}', "times must increase"),
    ('{"keyframes": [{"t": 0, "smirk": 1}]}', "keyframe 0: unknown control 'smirk'"),
    ('{"keyframes": [{"t": 0, "yaw": "left"}]}', "keyframe 0: control 'yaw' must be a finite number"),
    ('{"keyframes": [{"t": 0}, {"t": 1, "ease": "bounce"}]}', "keyframe 1: unknown ease 'bounce'"),
    ('{"keyframes": [3]}', "keyframe 0 must be an object"),
])
def test_bad_keyframe_files_give_clear_errors(text, message):
    with pytest.raises(ControlError, match=message):
        parse_keyframes(text)


def test_read_keyframes_file(tmp_path):
    path = tmp_path / "path.json"
    path.write_text(KEYS)
    assert read_keyframes(path).times == (0.0, 1.0, 2.0, 2.5)
    with pytest.raises(ControlError, match="cannot read keyframe file"):
        read_keyframes(tmp_path / "missing.json")
    path.write_text('{"keyframes": [{"t": 0, "yaw": 99}]}')
    with pytest.warns(ControlClampWarning):
        assert read_keyframes(path).controls[0].yaw == 45.0


def test_interpolation_hits_keys_and_does_not_overshoot():
    track = parse_keyframes(KEYS)
    frames = sample_controls(track)
    assert track.n_frames == len(frames) == 26
    yaw = np.array([c.yaw for c in frames])
    for time, key in zip(track.times, track.controls):
        assert yaw[round(time * track.fps)] == pytest.approx(key.yaw, abs=1e-9)
    assert frames[20].mouth_open == pytest.approx(0.5) and frames[10].smile == pytest.approx(0.8)
    for a, b in zip(track.times, track.times[1:]):  # every segment stays between its key values
        segment = yaw[round(a * track.fps): round(b * track.fps) + 1]
        assert np.all(segment >= min(segment[0], segment[-1]) - 1e-9)
        assert np.all(segment <= max(segment[0], segment[-1]) + 1e-9)


@pytest.mark.parametrize("ease", ["linear", "ease-in-out", "cubic"])
def test_interpolation_is_monotone_between_monotone_keys(ease):
    times, values = np.array([0.0, 1.0, 1.5, 4.0]), np.array([[0.0], [2.0], [2.5], [10.0]])
    curve = interpolate_values(times, values, (ease,) * 4, np.linspace(0, 4, 401))[:, 0]
    assert np.all(np.diff(curve) >= -1e-12) and curve[0] == 0.0 and curve[-1] == pytest.approx(10.0)


def test_ease_in_out_starts_and_stops_at_rest():
    times, values = np.array([0.0, 1.0]), np.array([[0.0], [1.0]])
    curve = interpolate_values(times, values, ("ease-in-out",) * 2, np.array([0.0, 0.01, 0.5, 0.99, 1.0]))[:, 0]
    assert curve[1] < 0.001 and curve[3] > 0.999 and curve[2] == pytest.approx(0.5)


def test_keyframe_motion_of_a_photo(info):
    track = parse_keyframes(KEYS)
    motion = keyframe_motion(info, track)
    assert motion.n_frames == track.n_frames
    assert changed_fields(motion[0], info) == set()  # first key is neutral: the source itself
    assert torch.allclose(motion.yaw[10], info.yaw[0] + 20.0)


# ------------------------------------------------------------------ curves
def test_motion_curves_and_figure(info):
    track = parse_keyframes(KEYS)
    motion = keyframe_motion(info, track)
    curves = motion_curves(motion, reference=info)
    assert list(curves)[:5] == ["pitch", "yaw", "roll", "eyes_open", "mouth_open"]
    assert set(curves) >= set(ACTION_UNITS)
    assert all(c.shape == (track.n_frames,) and c.dtype == np.float32 for c in curves.values())
    assert curves["yaw"][10] == pytest.approx(float(info.yaw) + 20.0, abs=1e-4)
    assert curves["mouth_open"][20] == pytest.approx(0.5, abs=1e-4)
    assert curves["AU12"][10] == pytest.approx(0.8, abs=1e-4)
    assert curves["eyes_open"][0] == 1.0 and curves["AU4"].max() == 0.0
    assert curves["AU45"].max() < 0.05  # cross-talk: smile also lowers rows 13/16 (lower lids)
    figure = plot_curves(curves, fps=track.fps)
    assert type(figure).__name__ == "Figure" and len(figure.axes) == 3
    assert len(figure.axes[2].lines) == len(ACTION_UNITS)
