"""Dubbing (issue 13 item 1): new speech on a real talking clip, the mouth from the audio driver.

Filled weights (LivePortrait, Ditto's LMDM) and the toy audio encoder, real clips with their
landmark files and real speech.  Full-length checks run at the motion level
(:func:`talkinghead.dub_job.dub_motion`: no frame is rendered); one CLI run renders 2 frames.

* shorter source: talking/vr_face2.mp4 (5 s, 125 frames at 25 fps) with espeak_en_us.wav
  (7.6 s, 191 frames) whose 3.0–4.2 s are zeroed: played back and forth, with a silent stretch;
* longer source: talking/hdtf_WDA_KatieHill_000.mp4 (8 s, 200 frames) with 2 s of speech: cut.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import TESTDATA, landmarks_json, write_wav
from talkinghead import dub_job
from talkinghead.cli import main
from talkinghead.drivers.audio.ditto.driver import AudioDriverOptions
from talkinghead.dub_job import DubOptions, dub_motion, frames_in_order, mix_mouth, voice_activity
from talkinghead.engine import AudioJobOptions, RenderOptions
from talkinghead.errors import ControlError, MediaError
from talkinghead.face.landmarks import JsonLandmarks
from talkinghead.media.audio import load_audio
from talkinghead.media.image import load_image
from talkinghead.media.video import VideoReader, VideoWriter, probe_video
from talkinghead.motion.edits import ping_pong_indices
from talkinghead.motion.keypoints import keypoint_info_from_raw
from talkinghead.motion.transfer import LIP_ROWS
from talkinghead.render.source import motion_heads, source_crop

FAST = AudioJobOptions(driver=AudioDriverOptions(steps=2, seed=0))
SHORT = TESTDATA / "talking" / "vr_face2.mp4"
LONG = TESTDATA / "talking" / "hdtf_WDA_KatieHill_000.mp4"
SPEECH = TESTDATA / "audio" / "espeak_en_us.wav"
SILENT_S = (3.0, 4.2)
"""The zeroed span of the shorter job's speech, seconds."""
OTHER_ROWS = [row for row in range(21) if row not in LIP_ROWS]
POSE = ("pitch", "yaw", "roll", "t", "scale")


def _speech_with_silence() -> np.ndarray:
    samples = load_audio(SPEECH).copy()
    samples[int(SILENT_S[0] * 16000):int(SILENT_S[1] * 16000)] = 0.0
    return samples


@pytest.fixture(scope="module")
def short(audio_engine):
    samples = _speech_with_silence()
    dubbed = dub_motion(audio_engine, SHORT, samples, FAST, RenderOptions(), DubOptions(),
                        JsonLandmarks(landmarks_json(SHORT.name)))
    return samples, dubbed


@pytest.fixture(scope="module")
def long(audio_engine):
    """Engine.dub on the longer clip (nothing rendered), with the DubMotion it computed."""
    samples = load_audio(TESTDATA / "audio" / "st_RD_Radio31_000.wav")[: 2 * 16000]
    seen = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dub_job, "dub_motion", lambda *a, **k: seen.append(dub_motion(*a, **k)) or seen[-1])
        job = audio_engine.dub(LONG, samples, FAST, source_landmarks=landmarks_json(LONG.name))
    return job, seen[0]


def test_a_shorter_source_is_played_back_and_forth_to_the_speech_length(short) -> None:
    samples, dubbed = short
    n = math.ceil(samples.size / 640)
    assert dubbed.motion.n_frames == dubbed.audio.n_frames == dubbed.voice.numel() == n == 191
    assert dubbed.own.n_frames == 125 and dubbed.fps == 25.0
    assert torch.equal(dubbed.index.cpu(), ping_pong_indices(n, 125))
    steps = dubbed.index.diff().abs()
    assert int(steps.max()) == 1                       # consecutive source frames, no jump
    assert int(dubbed.index.max()) == 124 and int(dubbed.index[-1]) == 124 - (n - 125)
    # the pose and non-mouth keypoint change across the turn is one that happens elsewhere too
    turn = int(torch.nonzero(dubbed.index == 124)[0])
    change = torch.stack([(getattr(dubbed.motion, f)[1:] - getattr(dubbed.motion, f)[:-1]).reshape(n - 1, -1)
                          .abs().amax(1) for f in ("pitch", "yaw", "roll", "t")]).amax(0)
    change = torch.maximum(change, (dubbed.motion.exp[1:, OTHER_ROWS] - dubbed.motion.exp[:-1, OTHER_ROWS])
                           .abs().flatten(1).amax(1))
    elsewhere = torch.cat([change[:turn - 1], change[turn + 1:]])
    assert change[turn - 1:turn + 1].max() <= elsewhere.max()


def test_head_eyes_and_the_rest_are_each_source_frames_own(short, audio_engine) -> None:
    _, dubbed = short
    own = dubbed.own
    for field in POSE:
        assert torch.equal(getattr(dubbed.motion, field), getattr(own, field)[dubbed.index]), field
    assert torch.equal(dubbed.motion.exp[:, OTHER_ROWS], own.exp[dubbed.index][:, OTHER_ROWS])
    # own motion = M on LivePortrait's crop of that very frame (checked independently on three frames)
    points = json.loads(landmarks_json(SHORT.name).read_text())["frames"]
    with VideoReader(SHORT, fps=25.0, max_frames=125) as reader:
        for i, frame in enumerate(reader):
            if i in (0, 61, 124):
                crop = source_crop(frame, np.asarray(points[i], np.float32))[2]
                info = keypoint_info_from_raw(motion_heads(audio_engine.networks.motion, crop, torch.device("cpu")))
                torch.testing.assert_close(own[i].exp, info.exp, atol=1e-5, rtol=0)
                torch.testing.assert_close(own[i].yaw, info.yaw, atol=1e-4, rtol=0)


def test_the_mouth_follows_the_speech_relative_to_the_reference_frames_own(short) -> None:
    _, dubbed = short
    rows = list(LIP_ROWS)
    voiced = dubbed.voice == 1.0
    assert voiced.sum() > 100
    photo_exp = dubbed.audio.exp[:1]  # Ditto anchors its motion on the photo: frame 0 is the photo's own expression
    target = dubbed.own.exp[dubbed.reference, rows] + (dubbed.audio.exp[:, rows] - photo_exp[:, rows])
    torch.testing.assert_close(dubbed.motion.exp[voiced][:, rows], target[voiced], atol=1e-5, rtol=0)
    assert not torch.allclose(dubbed.motion.exp[voiced][:, rows], dubbed.own.exp[dubbed.index][voiced][:, rows])


def test_in_silence_the_mouth_is_the_source_frames_own(short) -> None:
    _, dubbed = short
    first, last = (math.ceil(s * 25) for s in SILENT_S)
    envelope = dubbed.voice
    assert (envelope[first + 2:last - 2] == 0).all()    # 0 from 2 frames (0.08 s) into the silence
    quiet = slice(first + 2, last - 2)
    own = dubbed.own.exp[dubbed.index][quiet]
    torch.testing.assert_close(dubbed.motion.exp[quiet], own, atol=1e-6, rtol=0)
    # and it returns smoothly: the envelope moves by at most 1/3 per frame
    assert float(envelope.diff().abs().max()) <= 1 / 3 + 1e-6


def test_mouth_base_frame_and_gain(short) -> None:
    _, dubbed = short
    rows = list(LIP_ROWS)
    photo = dubbed.audio.exp[:1]
    frame = mix_mouth(dubbed.own, dubbed.index, dubbed.audio, photo, dubbed.voice, dubbed.reference, 0.5, "frame")
    own = dubbed.own.exp[dubbed.index]
    expected = own[:, rows] + dubbed.voice[:, None, None] * 0.5 * (dubbed.audio.exp[:, rows] - photo[:, rows])
    torch.testing.assert_close(frame.exp[:, rows], expected, atol=1e-6, rtol=0)
    still = mix_mouth(dubbed.own, dubbed.index, dubbed.audio, photo, dubbed.voice, dubbed.reference, 0.0, "frame")
    assert torch.equal(still.exp, own)
    rest = mix_mouth(dubbed.own, dubbed.index, dubbed.audio, photo, dubbed.voice, dubbed.reference, 0.0)
    voiced = dubbed.voice == 1.0  # gain 0, "reference": the reference frame's own mouth while voiced
    reference = dubbed.own.exp[dubbed.reference, rows].expand(int(voiced.sum()), -1, -1)
    torch.testing.assert_close(rest.exp[voiced][:, rows], reference, atol=1e-6, rtol=0)
    with pytest.raises(ControlError, match="mouth gain"):
        DubOptions(mouth_gain=4.0)
    with pytest.raises(ControlError, match="mouth base"):
        DubOptions(mouth_base="lips")


def test_a_longer_source_is_cut_and_the_job_carries_the_speech(long) -> None:
    job, dubbed = long
    assert job.n_frames == job.motion.n_frames == dubbed.own.n_frames == 50 and job.fps == 25.0
    assert torch.equal(dubbed.index.cpu(), torch.arange(50))
    for field in POSE:
        assert torch.equal(getattr(job.motion, field), getattr(dubbed.own, field)), field
    assert job.audio.duration_s == pytest.approx(2.0)


def test_max_frames_reads_only_the_frames_shown(audio_engine) -> None:
    samples = load_audio(SPEECH)[: 16000]
    dubbed = dub_motion(audio_engine, LONG, samples, FAST, RenderOptions(max_frames=3), DubOptions(),
                        JsonLandmarks(landmarks_json(LONG.name)))
    assert dubbed.motion.n_frames == dubbed.own.n_frames == 3


def test_voice_activity_envelope() -> None:
    tone = (0.3 * np.sin(np.arange(16000 * 2) * 2 * np.pi * 200 / 16000)).astype(np.float32)
    tone[16000:] = 0.0
    envelope = voice_activity(tone, 16000, 50, 25.0)
    assert (envelope[:23] == 1).all() and (envelope[27:] == 0).all()
    assert ((envelope[23:27] > 0) & (envelope[23:27] < 1)).all()
    assert (voice_activity(np.zeros(16000, np.float32), 16000, 25, 25.0) == 0).all()


def test_frames_in_order_reads_back_and_forth_holding_a_block() -> None:
    with VideoReader(SHORT, fps=25.0, max_frames=12) as reader:
        forward = list(reader)
    order = ping_pong_indices(40, 12).tolist() + [3, 3, 7]
    got = list(frames_in_order(SHORT, 25.0, order, block=4))
    assert len(got) == len(order)
    for i, frame in zip(order, got):
        np.testing.assert_array_equal(frame, forward[i])
    with pytest.raises(MediaError, match="no frame 10000"):
        list(frames_in_order(SHORT, 25.0, [0, 10_000]))


def test_cli_writes_the_dubbed_video_with_the_new_speech(tmp_path: Path, all_weights_dir: Path) -> None:
    speech = write_wav(tmp_path / "speech.wav", load_audio(SPEECH)[: 16000 * 2])
    out = tmp_path / "dub.mp4"
    rc = main([str(a) for a in (
        "dub", "--source", LONG, "--audio", speech, "--out", out, "--max-frames", 2, "--steps", 2, "--seed", 0,
        "--weights", all_weights_dir, "--device", "cpu", "--quiet", "--source-landmarks", landmarks_json(LONG.name))])
    assert rc == 0
    info = probe_video(out)
    assert (info.n_frames, info.fps, info.width, info.height, info.has_audio) == (2, 25.0, 512, 512, True)
    with av.open(str(out)) as c:
        stream = c.streams.audio[0]
        assert float(stream.duration * stream.time_base) == pytest.approx(0.08, abs=0.03)
        assert stream.sample_rate == 16000  # the speech's, not the source clip's own track


def _no_face_video(tmp_path: Path) -> tuple[Path, Path]:
    """A real photo without a face (images/coffee_noface.png) as a 5-frame clip, and its landmark file (no face)."""
    image = load_image(TESTDATA / "images" / "coffee_noface.png")
    image = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]
    video = tmp_path / "coffee.mp4"
    with VideoWriter(video, fps=25.0) as writer:
        for _ in range(5):
            writer.write(image)
    marks = tmp_path / "coffee.json"
    marks.write_text(json.dumps({"width": image.shape[1], "height": image.shape[0], "n_frames": 5, "fps": 25.0,
                                 "frames": [None] * 5}))
    return video, marks


@pytest.mark.parametrize("case", ["no audio", "photo", "no face"])
def test_cli_bad_input_gives_one_error_line_and_no_file(tmp_path: Path, all_weights_dir: Path, capsys,
                                                         case: str) -> None:
    speech = write_wav(tmp_path / "speech.wav", load_audio(SPEECH)[:16000])
    source, marks = LONG, landmarks_json(LONG.name)
    if case == "no audio":
        speech = TESTDATA / "driving" / "lp_d0.mp4"   # a video without a sound track
    elif case == "photo":
        source, marks = TESTDATA / "images" / "astronaut.png", landmarks_json("astronaut.png")
    else:
        source, marks = _no_face_video(tmp_path)
    out = tmp_path / "o.mp4"
    rc = main([str(a) for a in ("dub", "--source", source, "--audio", speech, "--out", out, "--steps", 2,
                                "--weights", all_weights_dir, "--device", "cpu", "--quiet", "--source-landmarks", marks)])
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert {"no audio": "no audio stream", "photo": "still image", "no face": "no face"}[case] in lines[0]


def test_dub_refuses_head_options(audio_engine) -> None:
    with pytest.raises(ControlError, match="head motion"):
        audio_engine.dub(LONG, load_audio(SPEECH)[:16000], AudioJobOptions(still_head=True))


def test_timeline_edits_a_span_of_the_dub_and_nothing_else(short, audio_engine) -> None:
    """--keyframes on the dub job: frames outside the span give bit-identical driven keypoints,
    frames inside differ (the smile and the neutralize toward each source frame's own mouth).
    Catches the timeline being ignored by the dub job or leaking outside its span."""
    import dataclasses
    import json

    from talkinghead.dub_job import dub_keypoints
    from talkinghead.motion.keyframes import parse_keyframes

    _, dubbed = short
    cut = dataclasses.replace(dubbed, motion=dubbed.motion[:10], index=dubbed.index[:10])
    track = parse_keyframes(json.dumps({"version": 2, "spans": [
        {"from": 0.12, "to": 0.28, "smile": 1.0, "neutralize": 1.0, "fade": 0.04}]}))
    plain = [d.x_d for d in dub_keypoints(audio_engine, SHORT, cut, RenderOptions())]
    edited = [d.x_d for d in dub_keypoints(audio_engine, SHORT, cut, RenderOptions(timeline=track))]
    inside = [j for j in range(10) if 0.12 < j / 25 < 0.28]
    for j in range(10):
        if j in inside:
            assert not torch.equal(plain[j], edited[j]), j
        elif not 0.12 <= j / 25 <= 0.28:
            assert torch.equal(plain[j], edited[j]), j
