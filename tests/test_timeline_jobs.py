"""Edits along the timeline wired into every job (issue 13, item 3): ``RenderOptions.timeline`` / ``--keyframes``.

Keypoint-level checks with the renderer stubbed out (W + G return blank faces;
nothing is rendered): the audio job (astronaut.png, real speech, the filled
Ditto weights as in test_audio_job.py), the motion-file job, the streamed audio
job and the video job (the real clip lp_d0.mp4 with its testdata landmarks) and the source-video job
(talking/vr_face2.mp4 driven by lp_d6.mp4).
Frames outside the edit are compared bit for bit (``torch.equal``) with the same
job without a timeline; inside they follow the span's ease.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TESTDATA, landmarks_json
from talkinghead import engine as engine_module
from talkinghead.cli import main
from talkinghead.drivers.audio.ditto.driver import AudioDriverOptions
from talkinghead.engine import AudioJobOptions, RenderOptions
from talkinghead.media.audio import load_audio
from talkinghead.motion.animate import AnimationOptions, Animator
from talkinghead.motion.controls import Controls, apply_controls
from talkinghead.motion.keyframes import Span, parse_keyframes
from talkinghead.motion.timeline import neutralize_expression, sample_timeline

FAST = AudioJobOptions(driver=AudioDriverOptions(steps=2, seed=0))
SPAN = Span(start=0.2, end=0.6, controls=Controls(yaw=12.0, smile=0.5), neutralize=0.5, fade=0.12, ease="linear")
EDITS = json.dumps({"version": 2, "spans": [{"from": SPAN.start, "to": SPAN.end, "yaw": 12, "smile": 0.5,
                                             "neutralize": 0.5, "fade": SPAN.fade, "ease": "linear"}]})
"""One span, 0.2 s → 0.6 s: at 25 fps frames 6…14 are edited (weight > 0), 8…12 at full strength."""
TRACK = parse_keyframes(EDITS)


def _weights(n: int, fps: float = 25.0) -> np.ndarray:
    return SPAN.weights(np.arange(n) / fps)


class Stub:
    """Records x_d handed to the renderer and the (motion, controls) handed to ``absolute_keypoints``."""

    def __init__(self, engine, monkeypatch) -> None:
        self.x_d: list[torch.Tensor] = []
        self.motion: list = []
        self.controls: list[Controls] = []
        real = engine_module.absolute_keypoints

        def absolute(source, motion, controls, *args, **kwargs):  # a generator: records once the frames are pulled
            self.motion.append(motion)
            self.controls.extend(controls)
            yield from real(source, motion, controls, *args, **kwargs)

        def render(feature_3d, x_s, x_d):
            self.x_d.append(x_d)
            return np.zeros((x_d.shape[0], 512, 512, 3), np.uint8)

        monkeypatch.setattr(engine.renderer, "render", render)
        monkeypatch.setattr(engine_module, "absolute_keypoints", absolute)

    def run(self, job) -> torch.Tensor:
        self.x_d.clear(), self.motion.clear(), self.controls.clear()
        list(job.frames if hasattr(job, "frames") else job)
        return torch.cat(self.x_d)


def _check_outside_equal_inside_eased(plain: torch.Tensor, edited: torch.Tensor, weights: np.ndarray) -> None:
    outside = weights == 0
    assert outside.any() and (~outside).any()
    for k in np.flatnonzero(outside):
        assert torch.equal(plain[k], edited[k]), f"frame {k} outside the span changed"
    change = (edited - plain).abs().flatten(1).mean(1).numpy()
    assert (change[~outside] > 0).all()
    ramp = (weights > 0) & (weights < 1)
    assert change[ramp].min() < change[weights == 1].min()     # the ramp is softer than full strength


# ------------------------------------------------------------------ audio and motion-file jobs
@pytest.fixture(scope="module")
def astronaut(audio_engine):
    return audio_engine.prepare_source(TESTDATA / "images" / "astronaut.png", landmarks=landmarks_json("astronaut.png"))


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(TESTDATA / "audio" / "espeak_en_us.wav")[: 16000 * 1]   # 25 frames


def _render(**kwargs) -> RenderOptions:
    return RenderOptions(paste_back=False, batch_size=4, **kwargs)


def test_audio_job_edits_only_the_span_with_its_ease(audio_engine, astronaut, speech, monkeypatch) -> None:
    stub = Stub(audio_engine, monkeypatch)
    plain = stub.run(audio_engine.animate_audio(astronaut, speech, FAST, _render()))
    plain_motion, plain_controls = stub.motion[0], list(stub.controls)
    edited = stub.run(audio_engine.animate_audio(astronaut, speech, FAST, _render(timeline=TRACK)))
    weights = _weights(plain.shape[0])
    _check_outside_equal_inside_eased(plain, edited, weights)
    # the controls follow the ease; neutralize moves exp toward the photo's own by 0.5·w
    np.testing.assert_allclose([c.yaw for c in stub.controls], 12.0 * weights, atol=1e-9)
    np.testing.assert_allclose([c.smile for c in stub.controls], 0.5 * weights, atol=1e-9)
    assert all(c == Controls() for c in plain_controls)
    want = neutralize_expression(plain_motion, astronaut.info, 0.5 * weights).exp
    torch.testing.assert_close(stub.motion[0].exp, want, atol=0, rtol=0)


def test_motion_file_job_stacks_the_timeline_on_the_job_controls(audio_engine, astronaut, speech, monkeypatch) -> None:
    motion = audio_engine.audio_motion(astronaut, speech, FAST)
    stub = Stub(audio_engine, monkeypatch)
    own = Controls(pitch=-5.0, smile=0.2)
    plain = stub.run(audio_engine.animate_audio(astronaut, speech, FAST, _render(controls=own), motion=motion, fps=25.0))
    job = audio_engine.animate_audio(astronaut, speech, FAST, _render(controls=own, timeline=TRACK), motion=motion,
                                     fps=25.0)
    record = job.record_motion()
    edited = stub.run(job)
    weights = _weights(motion.n_frames)
    moved = apply_controls(stub.motion[0], list(stub.controls))     # what the renderer got, recorded per batch
    torch.testing.assert_close(record.motion().yaw, moved.yaw, atol=0, rtol=0)
    torch.testing.assert_close(record.motion().exp, moved.exp, atol=0, rtol=0)
    _check_outside_equal_inside_eased(plain, edited, weights)
    np.testing.assert_allclose([c.pitch for c in stub.controls], -5.0)
    np.testing.assert_allclose([c.smile for c in stub.controls], 0.2 + 0.5 * weights, atol=1e-9)


def test_streamed_audio_job_gets_the_offline_edits_frame_by_frame(audio_engine, astronaut, speech, monkeypatch) -> None:
    """Streamed chunks are edited at their own frames' times: the same per-frame controls as the offline job.

    The streamed motion itself is not the offline one (Ditto's online generation, causal smoothing), so
    the comparison is on the edits; frames outside the span are bit-identical to the unedited stream.
    """
    stub = Stub(audio_engine, monkeypatch)
    plain = stub.run(audio_engine.stream_audio(astronaut, speech, FAST, _render()))
    assert len(stub.motion) > 1                                           # several chunks
    edited = stub.run(audio_engine.stream_audio(astronaut, speech, FAST, _render(timeline=TRACK)))
    streamed = list(stub.controls)
    _check_outside_equal_inside_eased(plain, edited, _weights(plain.shape[0]))
    stub.run(audio_engine.animate_audio(astronaut, speech, FAST, _render(timeline=TRACK)))
    n = min(len(streamed), len(stub.controls))
    assert streamed[:n] == stub.controls[:n]


# ------------------------------------------------------------------------------- video job
@pytest.fixture(scope="module")
def photo(engine):
    return engine.prepare_source(TESTDATA / "images" / "astronaut.png", landmarks=landmarks_json("astronaut.png"))


def _video(engine, photo, render: RenderOptions, options: AnimationOptions = AnimationOptions()):
    return engine.animate_video(photo, TESTDATA / "driving" / "lp_d0.mp4", options, render,
                                driving_landmarks=landmarks_json("lp_d0.mp4"))


def test_video_job_edits_only_the_span_relative_to_the_unedited_anchor(engine, photo, monkeypatch) -> None:
    stub = Stub(engine, monkeypatch)
    options = AnimationOptions(stitching=False)
    render = _render(max_frames=16)                                            # no smoothing (the default)
    plain = stub.run(_video(engine, photo, render, options))
    job = _video(engine, photo, dataclasses.replace(render, timeline=TRACK), options)
    record = job.record_motion()                               # the motion as moved onto the face (for the app's curves)
    edited = stub.run(job)
    weights = _weights(plain.shape[0])
    _check_outside_equal_inside_eased(plain, edited, weights)
    # by hand: the clip's motion, neutralized toward the unedited first frame, the span's controls stacked
    driving = engine.extract_motion(TESTDATA / "driving" / "lp_d0.mp4", landmarks=landmarks_json("lp_d0.mp4"),
                                    max_frames=16)
    edits = sample_timeline(TRACK, 25.0, driving.n_frames)
    moved = apply_controls(neutralize_expression(driving, driving[0], edits.neutralize), list(edits.controls))
    with torch.inference_mode():
        want = Animator(photo.info, engine.networks.stitching, options, anchor=driving[0])(moved)
    torch.testing.assert_close(edited, want, atol=1e-5, rtol=0)
    recorded = record.motion()
    assert record.n_frames == recorded.n_frames == 16
    for name in ("pitch", "yaw", "roll", "t", "scale", "exp"):
        torch.testing.assert_close(getattr(recorded, name), getattr(moved, name), atol=1e-5, rtol=0)
    wrapped = dataclasses.replace(job, frames=iter(()))
    assert wrapped.record_motion() is None                     # a caller's own iterator has no record


def test_relative_motion_file_job_keeps_unedited_batches(engine, photo, monkeypatch) -> None:
    driving = engine.extract_motion(TESTDATA / "driving" / "lp_d0.mp4", landmarks=landmarks_json("lp_d0.mp4"),
                                    max_frames=16)
    stub = Stub(engine, monkeypatch)
    plain = stub.run(engine.animate_relative_motion(photo, driving, 25.0, render=_render(controls=Controls(lips_open=0.1))))
    edited = stub.run(engine.animate_relative_motion(photo, driving, 25.0,
                                                     render=_render(controls=Controls(lips_open=0.1), timeline=TRACK)))
    _check_outside_equal_inside_eased(plain, edited, _weights(driving.n_frames))


# ------------------------------------------------------------------------------------- CLI
BAD = {"reversed span": '{"version": 2, "spans": [{"from": 2.0, "to": 1.0, "smile": 0.5}]}',
       "not json": "{keyframes",
       "version-1 file with spans": '{"keyframes": [{"t": 0}], "spans": []}'}


@pytest.mark.parametrize("command", ["video", "audio"])
@pytest.mark.parametrize("bad", sorted(BAD))
def test_cli_refuses_a_bad_keyframe_file_before_any_work(command: str, bad: str, tmp_path: Path, capsys) -> None:
    edits = tmp_path / "edits.json"
    edits.write_text(BAD[bad])
    out = tmp_path / "o.mp4"
    inputs = (["--driving", TESTDATA / "driving" / "lp_d0.mp4"] if command == "video"
              else ["--audio", TESTDATA / "audio" / "espeak_en_us.wav"])
    rc = main([str(a) for a in (command, "--source", TESTDATA / "images" / "astronaut.png", *inputs, "--out", out,
                                "--keyframes", edits, "--weights", tmp_path / "no-weights", "--quiet")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("error: --keyframes:") and "edits.json" in err, err
    assert "weights" not in err and not out.exists()      # refused before the weights were looked for


def test_cli_refuses_a_missing_keyframe_file(tmp_path: Path, capsys) -> None:
    rc = main([str(a) for a in ("audio", "--source", TESTDATA / "images" / "astronaut.png", "--audio",
                                TESTDATA / "audio" / "espeak_en_us.wav", "--out", tmp_path / "o.mp4",
                                "--keyframes", tmp_path / "missing.json", "--weights", tmp_path / "w", "--quiet")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "missing.json" in err, err


# ------------------------------------------------------------------------------ source video
def test_source_video_job_keeps_frames_outside_the_edit(engine, monkeypatch) -> None:
    """vr_face2.mp4 re-animated by lp_d6.mp4 (30 fps): a step span from 0.05 s edits frames 2 and 3 only.

    The whole-clip Kalman smoother would spread an edit to frames 0 and 1; they stay bit-identical.
    """
    track = parse_keyframes(json.dumps({"version": 2, "spans": [
        {"from": 0.05, "to": 1.0, "yaw": 10, "neutralize": 1.0, "fade": 0}]}))
    stub = Stub(engine, monkeypatch)
    source, driving = TESTDATA / "talking" / "vr_face2.mp4", TESTDATA / "driving" / "lp_d6.mp4"

    def job(timeline):
        return engine.animate_source_video(source, driving, AnimationOptions(), _render(max_frames=4, timeline=timeline),
                                           source_landmarks=landmarks_json(source.name),
                                           driving_landmarks=landmarks_json(driving.name))

    plain, edited = stub.run(job(None)), stub.run(job(track))
    assert plain.shape[0] == 4
    for k in (0, 1):
        assert torch.equal(plain[k], edited[k])
    for k in (2, 3):
        assert not torch.equal(plain[k], edited[k])
