"""Video-to-video (issue 5): a source VIDEO re-animated by a driving video.

The source talking/vr_face2.mp4 (844x844, 25 fps) is driven by driving/lp_d6.mp4
(480x480, 30 fps, with audio), with the testdata landmarks and the filled
LivePortrait weights.  The source is read at the driving rate, so output
frames 0, 1, 2 show decoded source frames 0, 0, 1.  The keypoint tests stub
out W + G only (``engine.renderer.render`` returns blank faces; paste-back
runs for real); one CLI run renders a real frame.

The expected x_d are built by hand here from the motion tensors, by
LivePortrait's source-video rules (src/live_portrait_pipeline.py
``LivePortraitPipeline.execute``, ``flag_is_source_video`` branches): the
composed rotation and expression sequences smoothed by pykalman's RTS
smoother (src/utils/filter.py ``smooth``, the library and call LivePortrait
uses), the expression rows {1, 2, 6, 11..20}, [3:5, 1], [5, 2], [8, 2],
[9, 1:] from the smoothed sequence, the source frame's own scale and
(relative) t, then stitching.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch

from talkinghead.cli import main
from talkinghead.drivers.video import VideoDriver
from talkinghead.engine import PreparedSource, RenderOptions, VideoJob
from talkinghead.render import source as render_source
from talkinghead.errors import NoFaceError
from talkinghead.face.landmarks import JsonLandmarks
from talkinghead.face.paste import paste_back
from talkinghead.media.image import load_image
from talkinghead.media.video import VideoWriter, probe_video
from talkinghead.motion.animate import AnimationOptions
from talkinghead.motion.controls import Controls
from talkinghead.motion.frame import MotionSequence
from talkinghead.motion.keypoints import implicit_keypoints, rotation_matrix
from talkinghead.motion.retarget import stitch

from conftest import TESTDATA, landmarks_json

SOURCE, SOURCE_SIZE = TESTDATA / "talking" / "vr_face2.mp4", (844, 844)
DRIVING = TESTDATA / "driving" / "lp_d6.mp4"
DECODED = [0, 0, 1]
"""Decoded source frame shown by output frames 0, 1, 2 (25 fps read at 30 fps)."""
BLANK_FACE = np.zeros((512, 512, 3), np.uint8)
"""What the stubbed renderer returns for every frame."""


class Run(NamedTuple):
    """What a stubbed-renderer source-video job produced."""

    job: VideoJob
    frames: list[np.ndarray]
    sources: list[PreparedSource]   # per-frame sources, in the order they were prepared
    x_s: list[torch.Tensor]         # (1, 21, 3) per rendered frame
    x_d: list[torch.Tensor]         # (1, 21, 3) per rendered frame
    f_calls: int                    # forward calls of the appearance extractor F


def stubbed_run(engine, options: AnimationOptions = AnimationOptions(), max_frames: int = 3,
                landmarks=None, controls: Controls | None = None) -> Run:
    """Run a source-video job to the end with W + G replaced by blank 512 faces."""
    sources: list[PreparedSource] = []
    x_s: list[torch.Tensor] = []
    x_d: list[torch.Tensor] = []
    f_calls = [0]
    prepare = render_source.prepare_image

    def record_source(*args, **kwargs):
        sources.append(prepare(*args, **kwargs))
        return sources[-1]

    def render(feature_3d, keypoints_s, keypoints_d):
        x_s.append(keypoints_s)
        x_d.append(keypoints_d)
        return np.stack([BLANK_FACE] * keypoints_d.shape[0])

    hook = engine.networks.appearance.register_forward_hook(lambda *_: f_calls.__setitem__(0, f_calls[0] + 1))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(render_source, "prepare_image", record_source)
            patch.setattr(engine.renderer, "render", render)
            job = engine.animate_source_video(SOURCE, DRIVING, options,
                                              RenderOptions(max_frames=max_frames, controls=controls),
                                              source_landmarks=landmarks or landmarks_json(SOURCE.name))
            frames = list(job.frames)
    finally:
        hook.remove()
    return Run(job, frames, sources, x_s, x_d, f_calls[0])


@pytest.fixture(scope="module")
def relative(engine) -> Run:
    return stubbed_run(engine)


@pytest.fixture(scope="module")
def driving(engine) -> MotionSequence:
    """(3) motion of lp_d6's first frames (square clip: not cropped)."""
    (batch,) = list(VideoDriver(DRIVING, engine.networks.motion, crop="off", max_frames=3, batch_size=3))
    return batch.motion.motion


def source_points(index: int) -> np.ndarray:
    return np.asarray(json.loads(landmarks_json(SOURCE.name).read_text())["frames"][index], np.float32)


def test_every_output_frame_has_its_own_source_frame(relative: Run) -> None:
    assert len(relative.frames) == relative.job.n_frames == 3
    assert len(relative.sources) == relative.f_calls == 3          # crop + M + F once per source frame
    for source, decoded in zip(relative.sources, DECODED):
        np.testing.assert_array_equal(source.landmarks, source_points(decoded))
    assert torch.equal(relative.sources[0].feature_3d, relative.sources[1].feature_3d)   # the same decoded frame
    assert not torch.equal(relative.sources[1].feature_3d, relative.sources[2].feature_3d)
    assert not torch.equal(relative.sources[1].info.kp, relative.sources[2].info.kp)


def test_frames_are_pasted_into_their_source_frames(relative: Run) -> None:
    job = relative.job
    assert job.fps == pytest.approx(30.0)
    assert job.audio is not None and job.audio.duration_s == pytest.approx(3 / 30)   # lp_d6's sound
    for frame, source in zip(relative.frames, relative.sources):
        assert frame.shape == (*SOURCE_SIZE, 3) == source.image.shape
        np.testing.assert_array_equal(frame, paste_back(source.image, BLANK_FACE, source.crop.M_c2o))


EXP_ROWS = [1, 2, 6, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
"""Keypoints whose whole expression a source-video frame takes from the smoothed sequence."""


def pykalman_smooth(sequence: list[np.ndarray]) -> list[torch.Tensor]:
    """LivePortrait src/utils/filter.py ``smooth``: pykalman RTS smoother, r = 3e-7, q = 1e-5, float32 out."""
    pykalman = pytest.importorskip("pykalman")
    stacked = np.vstack([x.reshape(-1) for x in sequence])
    dim = stacked.shape[1]
    kf = pykalman.KalmanFilter(initial_state_mean=stacked[0], n_dim_obs=dim,
                               transition_covariance=1e-5 * np.eye(dim), observation_covariance=3e-7 * np.eye(dim))
    means, _ = kf.smooth(stacked)
    return [torch.tensor(m.reshape(sequence[0].shape[-2:]), dtype=torch.float32) for m in means]


def by_hand(engine, sources: list[PreparedSource], driving: MotionSequence, relative: bool,
            stitching: bool = True) -> list[torch.Tensor]:
    """x_d of every frame by LivePortrait's source-video rules, written out from the motion tensors."""
    n = len(sources)
    src = [s.info for s in sources]
    rot = lambda m: rotation_matrix(m.pitch, m.yaw, m.roll)[0].numpy()           # (3, 3), kp @ R
    R_s = [rot(m) for m in src]
    R_d = [rot(driving[i]) for i in range(n)]
    exp_s = [m.exp[0].numpy() for m in src]
    exp_d = [driving.exp[i].numpy() for i in range(n)]
    if relative:
        r_seq = [(R_d[i] @ R_d[0].T) @ R_s[i] for i in range(n)]
        e_seq = [exp_s[i] + exp_d[i] - exp_d[0] for i in range(n)]
    else:
        r_seq, e_seq = R_d, exp_d
    r_smooth, e_smooth = pykalman_smooth(r_seq), pykalman_smooth(e_seq)
    out = []
    for i, info in enumerate(src):
        delta = info.exp.clone()
        for row in EXP_ROWS:
            delta[:, row, :] = e_smooth[i][row, :]
        delta[:, 3:5, 1] = e_smooth[i][3:5, 1]
        delta[:, 5, 2] = e_smooth[i][5, 2]
        delta[:, 8, 2] = e_smooth[i][8, 2]
        delta[:, 9, 1:] = e_smooth[i][9, 1:]
        t = (info.t if relative else driving.t[i:i + 1]).clone()
        t[:, 2] = 0
        x_d = info.scale[:, :, None] * (info.kp @ r_smooth[i] + delta) + t[:, None, :]   # source frame's own scale
        x_s = implicit_keypoints(info)
        with torch.inference_mode():
            out.append(stitch(engine.networks.stitching.stitching, x_s, x_d) if stitching else x_d)
    return out


@pytest.mark.parametrize("i", [1, 2])
def test_relative_motion_follows_liveportraits_source_video_rules(engine, relative: Run, driving, i) -> None:
    """Source frames 1 and 2 (decoded frames 0 and 1): smoothed R/exp, row rule, own t and scale, no expression-friendly."""
    expected = by_hand(engine, relative.sources, driving, relative=True)
    torch.testing.assert_close(relative.x_s[i], implicit_keypoints(relative.sources[i].info), atol=0, rtol=0)
    torch.testing.assert_close(relative.x_d[i], expected[i], atol=1e-5, rtol=0)   # M batched differently here


def test_smoothing_and_the_row_rule_matter(engine, relative: Run, driving) -> None:
    """The rules above are not vacuous: without smoothing, or with every exp row, x_d moves measurably."""
    source = relative.sources[2].info
    rot = lambda m: rotation_matrix(m.pitch, m.yaw, m.roll)
    r_raw = (rot(driving[2]) @ rot(driving[0]).transpose(1, 2)) @ rot(source)
    exp_all = source.exp + driving.exp[2:3] - driving.exp[0:1]
    t = source.t.clone()
    t[:, 2] = 0
    with torch.inference_mode():
        unsmoothed_all_rows = stitch(engine.networks.stitching.stitching, implicit_keypoints(source),
                                     source.scale[:, :, None] * (source.kp @ r_raw + exp_all) + t[:, None, :])
    assert (relative.x_d[2] - unsmoothed_all_rows).abs().max() > 1e-4


def test_absolute_mode_and_frames_without_a_face(engine, driving) -> None:
    """Decoded frame 0 hidden: output frames 0 and 1 borrow the landmarks of the next frame with a face."""
    class WithoutFirstFrame(JsonLandmarks):
        def landmarks(self, image: np.ndarray, frame_index: int = 0) -> np.ndarray | None:
            return None if frame_index == 0 else super().landmarks(image, frame_index)

    options = AnimationOptions(relative=False)
    run = stubbed_run(engine, options, landmarks=WithoutFirstFrame(landmarks_json(SOURCE.name)))
    for source in run.sources:
        np.testing.assert_array_equal(source.landmarks, source_points(1))
    expected = by_hand(engine, run.sources, driving, relative=False)   # driving t, source scale
    for i in (1, 2):
        torch.testing.assert_close(run.x_d[i], expected[i], atol=1e-5, rtol=0)


def test_translation_control_moves_each_source_frame(engine, driving) -> None:
    """x/y controls act on the source frame's own t (the driving t is not used in relative mode)."""
    options = AnimationOptions(stitching=False)
    run = stubbed_run(engine, options, max_frames=2, controls=Controls(x=0.05, y=-0.03))
    expected = by_hand(engine, run.sources, driving, relative=True, stitching=False)
    for got, want in zip(run.x_d, expected):
        torch.testing.assert_close(got, want + torch.tensor([0.05, -0.03, 0.0]), atol=1e-5, rtol=0)


def test_source_video_without_a_face_is_a_clear_error(engine, tmp_path: Path) -> None:
    no_face = tmp_path / "coffee_noface.mp4"
    with VideoWriter(no_face, fps=25) as writer:
        writer.write(load_image(TESTDATA / "images" / "coffee_noface.png"))
    job = engine.animate_source_video(no_face, DRIVING, source_landmarks=landmarks_json("coffee_noface.png"))
    with pytest.raises(NoFaceError, match="no face found in any frame of source video"):
        next(job.frames)


def test_cli_reanimates_a_source_video(tmp_path: Path, lp_weights_dir: Path) -> None:
    out = tmp_path / "v2v.mp4"
    source = TESTDATA / "talking" / "vr_face4.mp4"
    rc = main([str(a) for a in (
        "video", "--source", source, "--source-landmarks", landmarks_json(source.name),
        "--driving", TESTDATA / "driving" / "lp_d0.mp4", "--driving-landmarks", landmarks_json("lp_d0.mp4"),
        "--out", out, "--max-frames", 1, "--weights", lp_weights_dir, "--device", "cpu", "--quiet")])
    assert rc == 0
    info = probe_video(out)
    assert (info.width, info.height, info.n_frames) == (700, 700, 1)    # the source video's frame size
    assert info.fps == pytest.approx(25.0)                              # the driving clip's rate


def test_cli_refuses_a_motion_file_for_a_source_video(tmp_path: Path, capsys) -> None:
    (tmp_path / "m.safetensors").write_bytes(b"not read: refused before")  # an input file that exists
    rc = main(["video", "--source", str(SOURCE), "--motion", str(tmp_path / "m.safetensors"),
               "--out", str(tmp_path / "o.mp4"), "--quiet"])
    assert rc == 2
    assert "--driving" in capsys.readouterr().err
