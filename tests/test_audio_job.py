"""Audio-driven job end to end on real photos and real speech (filled LMDM, toy ONNX encoder).

Full-length clips go through motion only (audio → motion sequence); rendered
runs use short cuts, because one rendered frame costs ~12 s on these CPUs.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import TESTDATA, landmarks_json, write_wav
from talkinghead.cli import main
from talkinghead.drivers.audio.ditto.driver import AudioDriverOptions
from talkinghead.engine import AudioJobOptions, RenderOptions
from talkinghead.errors import MediaError
from talkinghead.media.audio import load_audio
from talkinghead.media.video import probe_video
from talkinghead.motion.io import load_motion

AUDIO = TESTDATA / "audio"
FAST = AudioJobOptions(driver=AudioDriverOptions(steps=2, seed=0))
"""Two DDIM steps: the same code path as the default 10, five times cheaper."""


@pytest.fixture(scope="module")
def astronaut(audio_engine):
    return audio_engine.prepare_source(TESTDATA / "images" / "astronaut.png", landmarks=landmarks_json("astronaut.png"))


def _check_motion(motion, n_frames: int, source) -> None:
    """One finite motion frame per 40 ms, starting at the photo's own head pose.

    Ditto mixes the generated pose onto the source's relative to the first
    generated frame (new = s + (d − d0)·g in bin-logit space), so frame 0 is
    the photo's pitch/yaw/roll/t whatever the weights.  (A bound on the
    angles, |angle| < 97.5°, would hold by construction of the 66-bin
    softmax.)  Catches motion mixed absolutely or against another anchor, and
    a degree conversion that differs between the driver and the photo.
    """
    assert motion.n_frames == n_frames
    for name in ("pitch", "yaw", "roll", "t", "scale", "exp"):
        assert torch.isfinite(getattr(motion, name)).all(), name
    for name in ("pitch", "yaw", "roll", "t", "scale"):
        torch.testing.assert_close(getattr(motion, name)[:1], getattr(source.info.motion, name).to(motion.exp),
                                   atol=1e-3, rtol=0, msg=name)


@pytest.mark.parametrize("clip", sorted(p.name for p in AUDIO.glob("*.wav")))
def test_full_length_motion_for_every_speech_clip(audio_engine, astronaut, clip: str) -> None:
    samples = load_audio(AUDIO / clip)
    motion = audio_engine.audio_motion(astronaut, samples, FAST)
    _check_motion(motion, math.ceil(samples.size / 640), astronaut)


@pytest.mark.parametrize("image", ["lp_d9.jpg", "lp_s0_painting.jpg", "st_happy.png", "dt_male_face.png"])
def test_motion_for_other_photos(audio_engine, image: str) -> None:
    source = audio_engine.prepare_source(TESTDATA / "images" / image, landmarks=landmarks_json(image))
    samples = load_audio(AUDIO / "dt_german1.wav")[: 16000 * 2]
    _check_motion(audio_engine.audio_motion(source, samples, FAST), 50, source)


def test_same_seed_same_motion_other_seed_differs(audio_engine, astronaut) -> None:
    samples = load_audio(AUDIO / "espeak_en_us.wav")[:16000]
    a = audio_engine.audio_motion(astronaut, samples, FAST)
    b = audio_engine.audio_motion(astronaut, samples, FAST)
    other = AudioJobOptions(driver=AudioDriverOptions(steps=2, seed=1))
    c = audio_engine.audio_motion(astronaut, samples, other)
    assert torch.equal(a.exp, b.exp) and torch.equal(a.yaw, b.yaw)
    assert not torch.equal(a.exp, c.exp)


def test_head_motion_choices(audio_engine, astronaut) -> None:
    samples = load_audio(AUDIO / "st_RD_Radio31_000.wav")[:16000]
    model = audio_engine.audio_motion(astronaut, samples, FAST)
    still = audio_engine.audio_motion(astronaut, samples, AudioJobOptions(driver=FAST.driver, still_head=True))
    assert torch.equal(still.exp, model.exp)
    assert torch.equal(still.yaw, astronaut.info.yaw.expand(25, 1))
    personal = audio_engine.audio_motion(astronaut, samples, AudioJobOptions(
        driver=FAST.driver, pose_from=TESTDATA / "talking" / "vr_face2.mp4",
        pose_from_landmarks=landmarks_json("vr_face2.mp4")))
    assert torch.equal(personal.exp, model.exp)              # the expression is untouched
    assert not torch.allclose(personal.yaw, model.yaw)       # the pose track is the clip's
    half = audio_engine.audio_motion(astronaut, samples, AudioJobOptions(
        driver=FAST.driver, pose_from=TESTDATA / "talking" / "vr_face2.mp4", pose_blend=0.5))
    torch.testing.assert_close(half.yaw, (model.yaw + personal.yaw) / 2)
    scaled = audio_engine.audio_motion(astronaut, samples, AudioJobOptions(driver=FAST.driver, expression_scale=0.0))
    assert torch.allclose(scaled.exp, astronaut.info.exp.expand_as(scaled.exp))


def test_silent_and_empty_audio_are_refused(audio_engine, astronaut, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="silent"):
        audio_engine.audio_motion(astronaut, write_wav(tmp_path / "silence.wav", np.zeros(16000)), FAST)
    with pytest.raises(MediaError):
        audio_engine.audio_motion(astronaut, write_wav(tmp_path / "empty.wav", np.zeros(0)), FAST)


def test_cli_renders_a_short_cut_with_its_audio_and_saves_motion(tmp_path: Path, all_weights_dir: Path) -> None:
    """48 kHz stereo Mandarin, cut to 0.1 s → 3 frames at 25 fps with a 0.1 s audio track."""
    cut = write_wav(tmp_path / "cut.wav", load_audio(AUDIO / "st_chinese_news.wav")[16000:17600])
    out, saved = tmp_path / "talk.mp4", tmp_path / "talk.motion.safetensors"
    rc = main([str(a) for a in (
        "audio", "--source", TESTDATA / "images" / "astronaut.png", "--audio", cut, "--out", out,
        "--weights", all_weights_dir, "--device", "cpu", "--steps", 2, "--quiet",
        "--source-landmarks", landmarks_json("astronaut.png"), "--save-motion", saved)])
    assert rc == 0
    info = probe_video(out)
    assert (info.n_frames, info.fps, info.width, info.height, info.has_audio) == (3, 25.0, 512, 512, True)
    with av.open(str(out)) as c:
        stream = c.streams.audio[0]
        assert float(stream.duration * stream.time_base) == pytest.approx(0.1, abs=0.03)
    assert load_motion(saved).motion.n_frames == 3

    # the saved motion drives the video job too (relative to its first frame); 1 frame is enough
    again = tmp_path / "again.mp4"
    rc = main([str(a) for a in (
        "video", "--source", TESTDATA / "images" / "astronaut.png", "--motion", saved, "--out", again,
        "--weights", all_weights_dir, "--device", "cpu", "--quiet", "--max-frames", 1, "--no-paste-back",
        "--source-landmarks", landmarks_json("astronaut.png"))])
    assert rc == 0 and probe_video(again).n_frames == 1


def test_cli_bad_audio_gives_error_and_no_file(tmp_path: Path, all_weights_dir: Path, capsys) -> None:
    bogus = tmp_path / "speech.mp3"
    bogus.write_text("not audio")
    out = tmp_path / "o.mp4"
    rc = main([str(a) for a in (
        "audio", "--source", TESTDATA / "images" / "astronaut.png", "--audio", bogus, "--out", out,
        "--weights", all_weights_dir, "--device", "cpu", "--quiet",
        "--source-landmarks", landmarks_json("astronaut.png"))])
    assert rc == 2 and "speech.mp3" in capsys.readouterr().err
    assert not out.exists()


def test_stream_audio_yields_a_frame_before_the_audio_is_consumed(audio_engine, astronaut) -> None:
    samples = load_audio(AUDIO / "espeak_en_us.wav")[: 16000 * 3]
    pulled = []

    def microphone():
        for i in range(0, samples.size, 3200):
            pulled.append(i)
            yield samples[i:i + 3200]

    frames = audio_engine.stream_audio(astronaut, microphone(), FAST, RenderOptions(paste_back=False))
    first = next(frames)
    assert first.shape == (512, 512, 3) and first.dtype == np.uint8
    assert len(pulled) < samples.size // 3200                # live: most of the audio is still unread
    frames.close()


def test_blink_modes(audio_engine, astronaut) -> None:
    """"off" keeps the photo's eyes; "template" closes them (keypoint 13 moves down) in short seeded blinks."""
    from talkinghead.drivers.audio.ditto.postprocess import BLINK_CURVE, blink_options

    samples = load_audio(AUDIO / "dt_german1.wav")[: 16000 * 10]           # 250 frames: room for blinks 60-100 apart

    def motion(blinks: str, seed: int = 0):
        driver = AudioDriverOptions(steps=2, seed=0, post=blink_options(blinks, seed))
        return audio_engine.audio_motion(astronaut, samples, AudioJobOptions(driver=driver))

    off, template = motion("off"), motion("template")
    lid = (template.exp - off.exp)[:, 13, 1]                               # keypoint 13's y: the blink control only
    closed = (lid < 0).nonzero().flatten().tolist()
    assert closed and lid.min() < -0.01                                    # at least one full closure
    runs = np.split(np.array(closed), np.nonzero(np.diff(closed) > 1)[0] + 1)
    assert all(len(run) <= len(BLINK_CURVE) - 1 for run in runs)          # each blink is one template pass
    assert torch.equal(motion("template").exp, template.exp)               # same seed, same blinks
    assert not torch.equal(motion("template", seed=5).exp, template.exp)
    assert not torch.equal(motion("model").exp, template.exp)


def test_pose_style_gives_the_clip_style_to_the_generated_head(audio_engine, astronaut, tmp_path) -> None:
    """--pose-style (issue 13 item 4) through the engine: the generated head motion takes the clip's
    mean and spread (its own track is not replayed), the expression is untouched, and a saved
    PoseStyle gives the same motion as the clip it was measured on.  Catches the style not reaching
    the job, being applied to the expression, or measured at the wrong frame rate."""
    from talkinghead.motion.pose_style import PoseStyle

    clip, marks = TESTDATA / "talking" / "vr_face2.mp4", landmarks_json("vr_face2.mp4")
    samples = load_audio(AUDIO / "st_RD_Radio31_000.wav")[:3 * 16000]
    model = audio_engine.audio_motion(astronaut, samples, FAST)
    styled = audio_engine.audio_motion(astronaut, samples, AudioJobOptions(
        driver=FAST.driver, pose_style=clip, pose_style_landmarks=marks))
    style = PoseStyle.from_motion(audio_engine.extract_motion(clip, landmarks=marks), probe_video(clip).fps)
    assert torch.equal(styled.exp, model.exp) and torch.equal(styled.scale, model.scale)
    pose = torch.cat([styled.pitch, styled.yaw, styled.roll, styled.t], 1).double().numpy()
    np.testing.assert_allclose(pose.mean(0), style.mean, atol=1e-3)
    np.testing.assert_allclose(pose.std(0), style.std, rtol=1e-3, atol=1e-5)
    model_yaw = model.yaw[:, 0].double().numpy()
    if model_yaw.std() > 0.01:  # the styled yaw follows the model's timing, not the clip's track
        assert np.corrcoef(model_yaw, pose[:, 1])[0, 1] > 0.7
    saved = tmp_path / "style.safetensors"
    style.save(saved)
    again = audio_engine.audio_motion(astronaut, samples, AudioJobOptions(driver=FAST.driver, pose_style=saved))
    assert torch.equal(again.yaw, styled.yaw) and torch.equal(again.t, styled.t)
    kept = audio_engine.audio_motion(astronaut, samples, AudioJobOptions(
        driver=FAST.driver, pose_style=saved, pose_style_keep_mean=True))
    torch.testing.assert_close(kept.yaw.mean(), model.yaw.mean(), atol=1e-3, rtol=0)


def test_pose_style_choices_are_checked(audio_engine, astronaut) -> None:
    """One way to drive the head; the streamed job refuses a pose style before reading the clip."""
    from talkinghead.errors import ControlError

    with pytest.raises(ControlError, match="exclude each other"):
        AudioJobOptions(still_head=True, pose_style="clip.mp4")
    with pytest.raises(ControlError, match="exclude each other"):
        AudioJobOptions(pose_from="a.mp4", pose_style="b.mp4")
    with pytest.raises(ControlError, match="pose style tempo"):
        AudioJobOptions(pose_style="b.mp4", pose_style_tempo=1.5)
    stream = audio_engine.stream_audio(astronaut, np.zeros(16000, np.float32),
                                       AudioJobOptions(driver=FAST.driver, pose_style="missing.mp4"))
    with pytest.raises(ControlError, match="streamed job cannot use it"):
        next(iter(stream))


def test_cli_pose_style_and_pose_from_exclude_each_other(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["audio", "--source", str(TESTDATA / "images" / "astronaut.png"), "--audio",
              str(AUDIO / "st_RD_Radio31_000.wav"), "--out", "x.mp4", "--pose-from", "a.mp4", "--pose-style", "b.mp4"])
    assert stop.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
