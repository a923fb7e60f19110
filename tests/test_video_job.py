"""End to end: real photo + real driving clip → mp4, through the CLI and the Python API (filled weights)."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
import torch

from talkinghead.cli import main
from talkinghead.engine import RenderOptions
from talkinghead.media.video import probe_video

from conftest import TESTDATA, landmarks_json

ASTRONAUT = TESTDATA / "images" / "astronaut.png"


def _cli(*args: object) -> int:
    return main([str(a) for a in args])


def test_cli_video_astronaut_d0(tmp_path: Path, lp_weights_dir: Path) -> None:
    out = tmp_path / "out.mp4"
    rc = _cli("video", "--source", ASTRONAUT, "--driving", TESTDATA / "driving" / "lp_d0.mp4", "--out", out,
              "--weights", lp_weights_dir, "--device", "cpu", "--max-frames", 2, "--quiet",
              "--source-landmarks", landmarks_json("astronaut.png"),
              "--driving-landmarks", landmarks_json("lp_d0.mp4"))
    assert rc == 0
    info = probe_video(out)
    assert (info.width, info.height) == (512, 512)          # pasted back into the 512x512 photo
    assert info.n_frames == 2 and info.fps == pytest.approx(25.0)
    assert not info.has_audio                              # lp_d0 has no audio track
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"


def test_uncropped_phone_video_is_cropped(tmp_path: Path, engine) -> None:
    """A non-square driving clip is cut around the face by default ("auto" acts as "on"), then rendered.

    Catches "auto" leaving a non-square clip uncropped; the render checks
    alone (a 512² output with paste-back off, at the clip's 30 fps) hold
    whether or not the driving frames were cropped.
    """
    clip, landmarks = TESTDATA / "driving" / "lp_d13_uncropped.mp4", landmarks_json("lp_d13_uncropped.mp4")
    motion = {crop: engine.extract_motion(clip, landmarks=landmarks, max_frames=2, crop=crop)
              for crop in ("auto", "on", "off")}
    assert torch.equal(motion["auto"].exp, motion["on"].exp) and torch.equal(motion["auto"].yaw, motion["on"].yaw)
    assert (motion["auto"].exp - motion["off"].exp).abs().max() > 1e-3
    source = engine.prepare_source(ASTRONAUT, landmarks=landmarks_json("astronaut.png"))
    job = engine.animate_video(source, clip, render=RenderOptions(max_frames=1, paste_back=False),
                               driving_landmarks=landmarks)
    out = engine.write_video(job, tmp_path / "crop.mp4", progress=False)
    info = probe_video(out)
    assert (info.width, info.height, info.n_frames) == (512, 512, 1)
    assert info.fps == pytest.approx(30.0)


def test_driving_audio_is_carried(tmp_path: Path, engine) -> None:
    source = engine.prepare_source(ASTRONAUT, landmarks=landmarks_json("astronaut.png"))
    job = engine.animate_video(source, TESTDATA / "driving" / "lp_d6.mp4", render=RenderOptions(max_frames=2),
                               crop_driving="off")
    out = engine.write_video(job, tmp_path / "audio.mp4", progress=False)
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 1
        audio = c.streams.audio[0]
        duration = float(audio.duration * audio.time_base)
    assert duration == pytest.approx(2 / 30, abs=0.03)


def test_no_face_photo_gives_error_and_no_file(tmp_path: Path, lp_weights_dir: Path, capsys) -> None:
    out = tmp_path / "none.mp4"
    rc = _cli("video", "--source", TESTDATA / "images" / "coffee_noface.png",
              "--driving", TESTDATA / "driving" / "lp_d0.mp4", "--out", out, "--weights", lp_weights_dir,
              "--device", "cpu", "--quiet", "--source-landmarks", landmarks_json("coffee_noface.png"))
    assert rc == 2
    assert "no face" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_driving_file_gives_error_and_no_file(tmp_path: Path, lp_weights_dir: Path, capsys) -> None:
    bogus = tmp_path / "clip.mp4"
    bogus.write_text("not a video")
    out = tmp_path / "o.mp4"
    rc = _cli("video", "--source", ASTRONAUT, "--driving", bogus, "--out", out, "--weights", lp_weights_dir,
              "--device", "cpu", "--quiet", "--source-landmarks", landmarks_json("astronaut.png"))
    assert rc == 2
    assert "clip.mp4" in capsys.readouterr().err
    assert not out.exists()


def test_missing_weights_folder_is_a_clear_error(tmp_path: Path, capsys) -> None:
    rc = _cli("video", "--source", ASTRONAUT, "--driving", TESTDATA / "driving" / "lp_d0.mp4",
              "--out", tmp_path / "o.mp4", "--weights", tmp_path / "nowhere", "--device", "cpu", "--quiet")
    assert rc == 2
    assert "nowhere" in capsys.readouterr().err
