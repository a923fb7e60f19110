"""Pose & expression job: still images and keyframed pose paths from controls (filled weights)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TESTDATA, landmarks_json
from talkinghead.cli import main
from talkinghead.media.image import load_image
from talkinghead.media.video import probe_video
from talkinghead.motion.animate import keypoints_from_motion
from talkinghead.motion.controls import Controls
from talkinghead.motion.keypoints import implicit_keypoints

ASTRONAUT = TESTDATA / "images" / "astronaut.png"


def _cli(*args: object) -> int:
    return main([str(a) for a in args])


def test_neutral_controls_reproduce_the_unedited_render_from_cached_features(engine) -> None:
    source = engine.prepare_source(ASTRONAUT, landmarks=landmarks_json("astronaut.png"))
    calls = {"F": 0, "M": 0}
    hooks = [engine.networks.appearance.register_forward_hook(lambda *_: calls.__setitem__("F", calls["F"] + 1)),
             engine.networks.motion.register_forward_hook(lambda *_: calls.__setitem__("M", calls["M"] + 1))]
    try:
        preview = engine.still_image(source, Controls(), paste_back=False)
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == {"F": 0, "M": 0}                      # only W and G run for a slider update
    with torch.inference_mode():
        x_d = keypoints_from_motion(source.info.motion, source.info, engine.networks.stitching.stitching)
        direct = engine.renderer.render(source.feature_3d, implicit_keypoints(source.info), x_d)[0]
    assert np.array_equal(preview, direct)


def test_cli_still_with_controls(tmp_path: Path, lp_weights_dir: Path) -> None:
    out = tmp_path / "turned.png"
    rc = _cli("pose", "--source", ASTRONAUT, "--still", out, "--yaw", 15, "--smile", 0.5, "--au", "AU45=0.5",
              "--weights", lp_weights_dir, "--device", "cpu", "--quiet", "--source-landmarks", landmarks_json("astronaut.png"))
    assert rc == 0
    assert load_image(out).shape == (512, 512, 3)


def test_cli_keyframed_pose_path(tmp_path: Path, lp_weights_dir: Path) -> None:
    keys = tmp_path / "path.json"
    keys.write_text(json.dumps({"fps": 25, "keyframes": [{"t": 0.0}, {"t": 0.04, "yaw": 20, "eyes_open": -0.2}]}))
    out = tmp_path / "path.mp4"
    rc = _cli("pose", "--source", ASTRONAUT, "--keyframes", keys, "--out", out, "--no-paste-back",
              "--weights", lp_weights_dir, "--device", "cpu", "--quiet", "--source-landmarks", landmarks_json("astronaut.png"))
    assert rc == 0
    info = probe_video(out)
    assert (info.n_frames, info.fps) == (2, 25.0)


@pytest.mark.parametrize("content, message", [
    ("{not json", "JSON"),
    (json.dumps({"fps": 25, "keyframes": [{"t": 0}, {"t": 1, "smirk": 1}]}), "smirk"),
    (json.dumps({"fps": 25, "keyframes": [{"t": 1}, {"t": 0.5}]}), "increas"),
])
def test_cli_bad_keyframes_give_clear_errors(tmp_path: Path, lp_weights_dir: Path, capsys, content: str, message: str) -> None:
    keys = tmp_path / "bad.json"
    keys.write_text(content)
    out = tmp_path / "o.mp4"
    rc = _cli("pose", "--source", ASTRONAUT, "--keyframes", keys, "--out", out, "--weights", lp_weights_dir,
              "--device", "cpu", "--quiet")
    assert rc == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_cli_non_finite_control_is_refused(tmp_path: Path, lp_weights_dir: Path, capsys) -> None:
    rc = _cli("pose", "--source", ASTRONAUT, "--still", tmp_path / "x.png", "--yaw", "nan",
              "--weights", lp_weights_dir, "--device", "cpu", "--quiet")
    assert rc == 2 and "yaw" in capsys.readouterr().err
