"""Personal head-pose style (talkinghead/motion/pose_style.py) on real head-motion tracks.

The tracks are the real head motion of the test clips, measured from their
dlib 68-point landmarks (tests/data/testdata/landmarks/*.json): pitch, yaw and
roll from OpenCV's solvePnP on a generic 6-point face model (nose tip, chin,
outer eye corners, mouth corners), as REFERENCE_STATS.json's note describes
for its pose statistics; ``t`` from the landmark centroid (x, y, in half
image widths) and the relative inter-ocular distance (z, a depth proxy).
The filled (fake-weight) motion extractor and Ditto goldens do not give
real head motion, so they are not used here.  "Model motion" is a talking
clip's track (speech-synchronised head motion of a real speaker); the
"reference" is another person's clip of another length and frame rate.

Tolerances stated by these tests: output mean within 1e-3 of the reference's
(degrees / units; float32 rounding) and std within 0.1 % of it; with the
full tempo match, Pearson correlation with the model's own track ≥ 0.7 on
every axis and ≥ 0.85 averaged over the six axes (1.0 with tempo = 0: the
statistics match is affine); the spectral centroid's distance to the
reference's shrinks to ≤ 0.75 of what it was on every axis where the two
differ by > 0.1 Hz, and to ≤ 0.5 on average over those axes.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from talkinghead.errors import ControlError
from talkinghead.face.landmarks import JsonLandmarks
from talkinghead.motion.edits import reference_pose
from talkinghead.motion.frame import KeypointInfo, MotionSequence
from talkinghead.motion.pose_style import AXES, MIN_SPREAD, PoseStyle, transfer_pose_style

from conftest import TESTDATA, landmarks_json

# Generic face model, millimetres, x right, y down, z away from the camera (image axes): a frontal face has R ≈ I.
_MODEL_POINTS = np.array([(0, 0, 0), (0, 330, 65), (-225, -170, 135), (225, -170, 135),
                          (-150, 150, 125), (150, 150, 125)], dtype=np.float64)
_LANDMARKS = [30, 8, 36, 45, 48, 54]  # nose tip, chin, outer eye corners, mouth corners (iBUG 68)
_EYE_GAP_MM = 450.0


def _euler_degrees(rotation: np.ndarray) -> tuple[float, float, float]:
    """(pitch, yaw, roll) of R = Rz(roll)·Ry(yaw)·Rx(pitch), degrees."""
    pitch = np.arctan2(rotation[2, 1], rotation[2, 2])
    yaw = np.arctan2(-rotation[2, 0], np.hypot(rotation[0, 0], rotation[1, 0]))
    roll = np.arctan2(rotation[1, 0], rotation[0, 0])
    return tuple(float(np.degrees(a)) for a in (pitch, yaw, roll))


def _head_pose(points: np.ndarray, width: int, height: int) -> tuple[float, float, float]:
    """Head pose of one frame's (68, 2) landmarks, seeded frontal at the face's distance (no flipped solutions)."""
    image = points[_LANDMARKS].astype(np.float64)
    focal = float(width)
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    depth = focal * _EYE_GAP_MM / np.linalg.norm(image[3] - image[2])
    t0 = np.array([[(image[0, 0] - width / 2) * depth / focal], [(image[0, 1] - height / 2) * depth / focal], [depth]])
    ok, rvec, _ = cv2.solvePnP(_MODEL_POINTS, image, camera, None, np.zeros((3, 1)), t0,
                               useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    assert ok
    return _euler_degrees(cv2.Rodrigues(rvec)[0])


@lru_cache(maxsize=None)
def real_track(name: str) -> tuple[KeypointInfo, float]:
    """(N) real head-motion track of testdata clip ``name`` and its frame rate (scale 1.5, exp and kp 0)."""
    marks = JsonLandmarks(landmarks_json(name))
    frames = [marks.landmarks(np.zeros((marks.height, marks.width, 3), np.uint8), i) for i in range(marks.n_frames)]
    assert all(f is not None for f in frames), f"{name}: a frame without a face"
    points = np.stack(frames).astype(np.float64)
    angles = np.array([_head_pose(p, marks.width, marks.height) for p in points])
    centre = points.mean(1)
    eye_gap = np.linalg.norm(points[:, 45] - points[:, 36], axis=1)
    t = np.stack([(centre[:, 0] - marks.width / 2) * 2 / marks.width,
                  (centre[:, 1] - marks.height / 2) * 2 / marks.width, eye_gap / eye_gap.mean() - 1], 1)
    n = len(points)
    pose = torch.tensor(np.concatenate([angles, t], 1), dtype=torch.float32)
    info = KeypointInfo(pitch=pose[:, 0:1], yaw=pose[:, 1:2], roll=pose[:, 2:3], t=pose[:, 3:6],
                        scale=torch.full((n, 1), 1.5), exp=torch.zeros(n, 21, 3), kp=torch.zeros(n, 21, 3))
    return info, float(marks.fps)


def pose(motion: MotionSequence) -> np.ndarray:
    """(N, 6) float64 pitch, yaw, roll, t."""
    return torch.cat([motion.pitch, motion.yaw, motion.roll, motion.t], 1).double().numpy()


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


# Speech tracks (model motion) × style references: shorter and longer, same and other frame rates.
PAIRS = [
    ("hdtf_WDA_KatieHill_000.mp4", "lp_d3.mp4"),      # 200 f @ 25 fps  ← 300 f @ 30 fps (longer, faster rate)
    ("hdtf_WDA_KatieHill_000.mp4", "lp_d0.mp4"),      # 200 f @ 25 fps  ← 78 f @ 25 fps (shorter)
    ("vr_face4.mp4", "lp_d11.mp4"),                   # 199 f @ 30 fps  ← 225 f @ 25 fps (slower rate)
    ("hdtf_RD_Radio10_0_clip_0.mp4", "mead_M030_front_angry_level3_001.mp4"),  # 61 f @ 29.97 ← 98 f @ 25
]


def test_the_real_tracks_are_real_head_motion() -> None:
    """The landmark-derived tracks are plausible head motion: frontal-ish, moving, no flipped poses."""
    for name in {n for pair in PAIRS for n in pair}:
        track, fps = real_track(name)
        angles = pose(track)[:, :3]
        assert np.all(np.abs(angles) < 45), name
        assert np.all(angles.std(0) > 0.3), name
        assert np.abs(np.diff(angles, axis=0)).max() < 15, name  # no frame-to-frame jumps from a flipped solution
        assert fps in (25.0, 30.0) or abs(fps - 29.97) < 0.01


@pytest.mark.parametrize("model_name,reference_name", PAIRS)
def test_statistics_match_the_reference(model_name: str, reference_name: str) -> None:
    motion, fps = real_track(model_name)
    reference, reference_fps = real_track(reference_name)
    out = transfer_pose_style(motion, reference, fps, reference_fps)
    got, want = pose(out), pose(reference)
    assert out.n_frames == motion.n_frames
    np.testing.assert_allclose(got.mean(0), want.mean(0), rtol=0, atol=1e-3)
    np.testing.assert_allclose(got.std(0), want.std(0), rtol=1e-3, atol=0)


@pytest.mark.parametrize("model_name,reference_name", PAIRS)
def test_output_stays_correlated_with_the_model_motion(model_name: str, reference_name: str) -> None:
    motion, fps = real_track(model_name)
    reference, reference_fps = real_track(reference_name)
    x = pose(motion)
    y = pose(transfer_pose_style(motion, reference, fps, reference_fps))
    r = np.array([pearson(x[:, a], y[:, a]) for a in range(6)])
    assert r.min() >= 0.7 and r.mean() >= 0.85, dict(zip(AXES, r.round(3)))
    # Replaying the clip's own track (edits.reference_pose) loses the speech synchrony; the style transfer does not.
    replayed = pose(reference_pose(motion, motion[0], reference))
    assert np.mean([abs(pearson(x[:, a], replayed[:, a])) for a in range(6)]) < 0.5 < r.min()


@pytest.mark.parametrize("model_name,reference_name", PAIRS)
def test_tempo_moves_toward_the_reference(model_name: str, reference_name: str) -> None:
    motion, fps = real_track(model_name)
    reference, reference_fps = real_track(reference_name)
    out = transfer_pose_style(motion, reference, fps, reference_fps)
    before = PoseStyle.from_motion(motion, fps).centroid_hz()
    after = PoseStyle.from_motion(out, fps).centroid_hz()
    target = PoseStyle.from_motion(reference, reference_fps).centroid_hz()
    differs = np.abs(before - target) > 0.1
    assert differs.any()
    shrink = np.abs(after - target)[differs] / np.abs(before - target)[differs]
    assert shrink.max() <= 0.75 and shrink.mean() <= 0.5, (before, after, target)


def test_tempo_zero_is_an_affine_statistics_match() -> None:
    motion, fps = real_track("hdtf_WDA_KatieHill_000.mp4")
    reference, reference_fps = real_track("lp_d3.mp4")
    x, y = pose(motion), pose(transfer_pose_style(motion, reference, fps, reference_fps, tempo=0.0))
    assert all(pearson(x[:, a], y[:, a]) > 1 - 1e-6 for a in range(6))
    np.testing.assert_allclose(y.std(0), pose(reference).std(0), rtol=1e-3)


def test_keep_mean_keeps_the_model_centre() -> None:
    motion, fps = real_track("vr_face4.mp4")
    reference, reference_fps = real_track("lp_d11.mp4")
    y = pose(transfer_pose_style(motion, reference, fps, reference_fps, keep_mean=True))
    np.testing.assert_allclose(y.mean(0), pose(motion).mean(0), atol=1e-3)
    np.testing.assert_allclose(y.std(0), pose(reference).std(0), rtol=1e-3)


def test_only_the_head_pose_changes() -> None:
    motion, fps = real_track("hdtf_RD_Radio10_0_clip_0.mp4")
    reference, reference_fps = real_track("lp_d3.mp4")
    out = transfer_pose_style(motion, reference, fps, reference_fps)
    assert isinstance(out, KeypointInfo)
    assert out.scale is motion.scale and out.exp is motion.exp and out.kp is motion.kp
    assert out.pitch.dtype == torch.float32 and out.t.shape == motion.t.shape and out.t.device == motion.t.device
    assert not torch.equal(out.yaw, motion.yaw)


def test_deterministic_and_a_saved_style_gives_the_same_result(tmp_path) -> None:
    motion, fps = real_track("hdtf_WDA_KatieHill_000.mp4")
    reference, reference_fps = real_track("lp_d0.mp4")
    first = transfer_pose_style(motion, reference, fps, reference_fps)
    again = transfer_pose_style(motion, reference, fps, reference_fps)
    style = PoseStyle.from_motion(reference, reference_fps)
    style.save(tmp_path / "style.safetensors")
    loaded = PoseStyle.load(tmp_path / "style.safetensors")
    assert loaded.fps == style.fps and loaded.n_frames == style.n_frames
    for name in ("mean", "std", "psd"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(style, name))
    from_file = transfer_pose_style(motion, loaded, fps)
    for field in ("pitch", "yaw", "roll", "t"):
        assert torch.equal(getattr(first, field), getattr(again, field))
        assert torch.equal(getattr(first, field), getattr(from_file, field))


def test_a_still_reference_axis_gives_a_constant_track_and_no_blow_up() -> None:
    motion, fps = real_track("hdtf_WDA_KatieHill_000.mp4")
    reference, reference_fps = real_track("lp_d3.mp4")
    n = reference.n_frames
    still = reference.replace(yaw=torch.full((n, 1), 4.0),  # exactly still, and nearly still (below MIN_SPREAD)
                              roll=2.0 + 1e-4 * torch.sin(torch.arange(n, dtype=torch.float32)).unsqueeze(1))
    y = pose(transfer_pose_style(motion, still, fps, reference_fps))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y[:, 1], 4.0, atol=1e-5)
    np.testing.assert_allclose(y[:, 2], pose(still)[:, 2].mean(), atol=1e-5)
    np.testing.assert_allclose(y[:, 0].std(), pose(reference)[:, 0].std(), rtol=1e-3)  # other axes still matched


def test_a_still_model_axis_is_moved_not_amplified() -> None:
    motion, fps = real_track("hdtf_WDA_KatieHill_000.mp4")
    reference, reference_fps = real_track("lp_d3.mp4")
    n = motion.n_frames
    wobble = 1e-3 * torch.sin(torch.arange(n, dtype=torch.float32)).unsqueeze(1)  # std 7e-4° < MIN_SPREAD
    flat = motion.replace(pitch=torch.full((n, 1), -3.0), roll=-1.0 + wobble)
    y = pose(transfer_pose_style(flat, reference, fps, reference_fps))
    want = pose(reference).mean(0)
    np.testing.assert_allclose(y[:, 0], want[0], atol=1e-4)
    np.testing.assert_allclose(y[:, 2].mean(), want[2], atol=1e-4)
    assert y[:, 2].std() < MIN_SPREAD[2]


@pytest.mark.parametrize("frames", [1, 2, 3])
def test_very_short_motions(frames: int) -> None:
    motion, fps = real_track("vr_face4.mp4")
    reference, reference_fps = real_track("lp_d11.mp4")
    short = motion[40:40 + frames]
    y = pose(transfer_pose_style(short, reference, fps, reference_fps))
    want = pose(reference)
    assert y.shape == (frames, 6) and np.all(np.isfinite(y))
    np.testing.assert_allclose(y.mean(0), want.mean(0), atol=1e-3)
    if frames > 1:  # spread matched too (no tempo filter on so few frames)
        moving = pose(short).std(0) >= MIN_SPREAD
        np.testing.assert_allclose(y.std(0)[moving], want.std(0)[moving], rtol=1e-3)
        assert all(pearson(pose(short)[:, a], y[:, a]) > 0.999 for a in np.flatnonzero(moving))


@pytest.mark.parametrize("frames", [1, 2, 3])
def test_very_short_references(frames: int) -> None:
    motion, fps = real_track("vr_face4.mp4")
    reference, reference_fps = real_track("lp_d11.mp4")
    y = pose(transfer_pose_style(motion, reference[100:100 + frames], fps, reference_fps))
    want = pose(reference[100:100 + frames])
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.mean(0), want.mean(0), atol=1e-3)
    spread = want.std(0) >= MIN_SPREAD  # axes with less count as still: held at the reference mean
    np.testing.assert_allclose(y.std(0)[spread], want.std(0)[spread], rtol=1e-3)
    assert np.all(y.std(0)[~spread] < 1e-5)


def test_empty_motion_is_returned_as_is() -> None:
    motion, fps = real_track("vr_face4.mp4")
    reference, reference_fps = real_track("lp_d11.mp4")
    empty = motion[0:0]
    assert transfer_pose_style(empty, reference, fps, reference_fps) is empty


def test_bad_inputs_raise_one_clear_error(tmp_path) -> None:
    motion, fps = real_track("vr_face4.mp4")
    reference, reference_fps = real_track("lp_d11.mp4")
    nan = reference.replace(yaw=reference.yaw.clone().index_fill_(0, torch.tensor([3]), float("nan")))
    cases = [
        (lambda: transfer_pose_style(motion, reference, fps), "reference_fps"),
        (lambda: transfer_pose_style(motion, reference, 0.0, reference_fps), "frame rate"),
        (lambda: transfer_pose_style(motion, reference, fps, float("inf")), "frame rate"),
        (lambda: transfer_pose_style(motion, reference[0:0], fps, reference_fps), "no frames"),
        (lambda: transfer_pose_style(motion, nan, fps, reference_fps), "non-finite"),
        (lambda: transfer_pose_style(motion, reference, fps, reference_fps, tempo=1.5), "tempo"),
        (lambda: transfer_pose_style(motion, reference, fps, reference_fps, smoothing_hz=0.0), "smoothing"),
        (lambda: transfer_pose_style(motion, reference, fps, reference_fps, max_gain=0.5), "max gain"),
        (lambda: PoseStyle.load(tmp_path / "missing.safetensors"), "does not exist"),
    ]
    not_a_style = tmp_path / "motion.safetensors"
    save_file({"mean": np.zeros(6)}, str(not_a_style), metadata={"format": "talkinghead.motion"})
    cases.append((lambda: PoseStyle.load(not_a_style), "not a talkinghead pose style"))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not safetensors")
    cases.append((lambda: PoseStyle.load(garbage), "not a readable pose style"))
    for call, words in cases:
        with pytest.raises(ControlError, match=words):
            call()


def test_pose_style_checks_its_fields_and_files(tmp_path) -> None:
    reference, reference_fps = real_track("lp_d0.mp4")
    style = PoseStyle.from_motion(reference, reference_fps)
    assert style.freqs.shape == (style.n_frames // 2 + 1,) and style.freqs[-1] == pytest.approx(reference_fps / 2)
    assert style.duration_s == pytest.approx(78 / 25)
    assert np.all(style.centroid_hz() > 0)
    still = PoseStyle.from_motion(reference[:1], reference_fps)
    np.testing.assert_array_equal(still.centroid_hz(), np.zeros(6))  # one frame: no spectrum
    bad = [
        dict(fps=-1.0), dict(fps="fast"), dict(n_frames=0), dict(mean=np.zeros(5)), dict(psd=np.zeros((6, 3))),
        dict(std=np.full(6, np.nan)), dict(mean=[0.0] * 6),
    ]
    fields = dict(fps=style.fps, n_frames=style.n_frames, mean=style.mean, std=style.std, psd=style.psd)
    for change in bad:
        with pytest.raises(ControlError):
            PoseStyle(**{**fields, **change})
    with pytest.raises(ControlError, match="cannot write"):
        style.save(tmp_path / "no" / "such" / "folder" / "style.safetensors")
    newer = tmp_path / "newer.safetensors"
    style.save(newer)
    save_file(load_file(str(newer)), str(newer), metadata={"format": "talkinghead.pose_style", "format_version": "2",
                                                          "fps": "25.0", "n_frames": "78"})
    with pytest.raises(ControlError, match="upgrade"):
        PoseStyle.load(newer)
    save_file(load_file(str(newer)), str(newer), metadata={"format": "talkinghead.pose_style", "format_version": "1",
                                                          "fps": "25.0", "n_frames": "80"})
    with pytest.raises(ControlError, match="newer.safetensors: pose style psd must be an array of shape"):
        PoseStyle.load(newer)


def test_the_engine_call_on_an_extracted_reference(engine) -> None:
    """The call the audio job makes: the reference clip's motion as the motion extractor gives it (filled weights:
    the track's values are not a real head's, only its types, shapes and rate are the engine's)."""
    clip = TESTDATA / "driving" / "lp_d0.mp4"
    reference = engine.extract_motion(clip, landmarks=landmarks_json(clip.name), max_frames=12)
    motion, fps = real_track("hdtf_WDA_KatieHill_000.mp4")
    out = transfer_pose_style(motion.motion, reference, fps, JsonLandmarks(landmarks_json(clip.name)).fps)
    assert type(out) is MotionSequence and out.n_frames == motion.n_frames
    want = pose(reference)
    spread = want.std(0) >= MIN_SPREAD
    np.testing.assert_allclose(pose(out).mean(0), want.mean(0), atol=1e-3)
    np.testing.assert_allclose(pose(out).std(0)[spread], want.std(0)[spread], rtol=1e-3)
