"""Live sessions (issue 14) on a real photo and real speech: push form, idle motion, crossfade, latency.

One DDIM step (filled LMDM, toy ONNX encoder): the same code path as the
default 10, cheaper; motion only, except one CLI test that renders 2 frames.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import TESTDATA, landmarks_json, write_wav
from talkinghead.audio_job import audio_chunks, stream_edited_motion
from talkinghead.cli import main
from talkinghead.drivers.audio.ditto.driver import AudioDriverOptions
from talkinghead.drivers.audio.ditto.stream import online_lookahead_ms, samples_needed
from talkinghead.engine import AudioJobOptions, RenderOptions
from talkinghead.errors import ControlError, MediaError
from talkinghead.live_job import LiveOptions, LiveSession, latency_summary, play_out
from talkinghead.media.audio import load_audio
from talkinghead.motion.controls import expression_direction
from talkinghead.motion.frame import KeypointInfo, MotionSequence
from talkinghead.motion.idle import IdleMotion, IdleOptions
from talkinghead.motion.keypoints import implicit_keypoints
from talkinghead.motion.io import load_motion
from talkinghead.motion.speech_gate import SpeechGate

AUDIO = TESTDATA / "audio"
FAST = AudioJobOptions(driver=AudioDriverOptions(steps=1, seed=0))
NO_IDLE = LiveOptions(idle=IdleOptions(idle=False))
FIELDS = ("pitch", "yaw", "roll", "t", "scale", "exp")


@pytest.fixture(scope="module")
def astronaut(audio_engine):
    return audio_engine.prepare_source(TESTDATA / "images" / "astronaut.png", landmarks=landmarks_json("astronaut.png"))


def _run(session, pieces) -> list:
    frames = [frame for piece in pieces for frame in session.push(piece)]
    return frames + session.end()


def _random_pieces(samples: np.ndarray, seed: int) -> list[np.ndarray]:
    """Cut at random points: pieces of 1 sample to 0.5 s, empty ones included."""
    rng, pieces, at = np.random.default_rng(seed), [], 0
    while at < samples.size:
        size = int(rng.choice([0, 1, 17, 640, 1999, 3200, 8000]))
        pieces.append(samples[at:at + size])
        at += size
    return pieces


def _motion(frames) -> MotionSequence:
    return MotionSequence.cat([f.motion for f in frames])


def _assert_equal(a: MotionSequence, b: MotionSequence) -> None:
    assert a.n_frames == b.n_frames
    for name in FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("clip", sorted(p.name for p in AUDIO.glob("*.wav")))
def test_random_chunks_give_the_motion_of_one_push(audio_engine, astronaut, clip: str) -> None:
    """Idle motion and crossfade included; one frame per 40 ms, ⌈duration·25⌉ in all, consecutive."""
    samples = load_audio(AUDIO / clip)
    whole = _run(audio_engine.live(astronaut, audio=FAST, render=False), [samples])
    pieces = _run(audio_engine.live(astronaut, audio=FAST, render=False), _random_pieces(samples, len(clip)))
    assert len(whole) == math.ceil(samples.size * 25 / 16000)
    assert [f.index for f in pieces] == list(range(len(whole)))
    _assert_equal(_motion(whole), _motion(pieces))
    assert [f.speech for f in whole] == [f.speech for f in pieces]
    assert all(f.image is None for f in whole)


def test_without_idle_the_motion_is_stream_audios(audio_engine, astronaut) -> None:
    samples = load_audio(AUDIO / "espeak_en_us_with_silence.wav")[:64000]
    live = _run(audio_engine.live(astronaut, NO_IDLE, FAST, render=False), _random_pieces(samples, 1))
    backend = audio_engine.audio_backend("ditto")
    streamed = [m for m, _ in stream_edited_motion(backend, astronaut, audio_chunks(samples, 16000), FAST, None,
                                                   RenderOptions())]
    _assert_equal(_motion(live), MotionSequence.cat(streamed))
    assert {f.speech for f in live} == {1.0}


def _closure(motion: MotionSequence, source) -> torch.Tensor:
    """Eye closure along the blink control's direction (1 = the control at 1: closed)."""
    direction = expression_direction("blink")
    delta = motion.exp - source.info.exp[:1]
    return (delta * direction).sum(dim=(1, 2)) / (direction * direction).sum()


def test_ten_seconds_of_silence_stay_alive_within_the_stated_bound(audio_engine, astronaut) -> None:
    session = audio_engine.live(astronaut, audio=FAST, render=False)
    frames = []
    for _ in range(100):
        frames += session.push_silence(0.1)
    frames += session.end()
    motion = _motion(frames)
    assert motion.n_frames == 250 and {f.speech for f in frames} == {0.0}
    bound = IdleOptions().pose_bound()
    for name in ("yaw", "pitch", "roll"):
        offset = (getattr(motion, name) - getattr(astronaut.info, name)[:1]).abs()
        assert offset.std() > 0.05, f"{name} is (nearly) constant"
        assert offset.max() <= bound[name] + 1e-4, name
    closure = _closure(motion, astronaut)
    assert closure.max() > 0.95 and closure.min() > -1e-4  # eyes close at least once, never beyond open
    assert int(((closure[1:] > 0.5) & (closure[:-1] <= 0.5)).sum()) >= 2  # two blinks or more in 10 s
    # latency accounting: each frame came out once the audio it needs was in (pushes of 1600 samples)
    for f in (f for f in frames if f.audio_s < 10.0):  # the rest came out at the end
        assert samples_needed(f.index) <= round(f.audio_s * 16000) < samples_needed(f.index) + 1600
    assert frames[0].audio_s == pytest.approx(0.9)  # 0.885 s needed, pushed by 0.1 s


def _keypoint_jumps(motion: MotionSequence, source) -> np.ndarray:
    info = KeypointInfo(**{n: getattr(motion, n) for n in FIELDS}, kp=source.info.kp.expand(motion.n_frames, -1, -1))
    points = implicit_keypoints(info)
    return (points[1:] - points[:-1]).norm(dim=-1).amax(dim=-1).numpy()


def test_entering_and_leaving_speech_jumps_no_more_than_speech_itself(audio_engine, astronaut) -> None:
    speech = load_audio(AUDIO / "espeak_en_us.wav")[:48000]
    silence = np.zeros(32000, np.float32)
    frames = _run(audio_engine.live(astronaut, audio=FAST, render=False), [silence, speech, silence])
    weights = np.array([f.speech for f in frames])
    jumps = _keypoint_jumps(_motion(frames), astronaut)
    inside = (weights[1:] == 1) & (weights[:-1] == 1)
    edges = ~inside & ((weights[1:] > 0) | (weights[:-1] > 0))
    fade = IdleOptions().crossfade * 25
    assert inside.sum() > 50 and edges.sum() >= 2 * fade
    assert weights[0] == 0 and weights[-1] == 0
    # The filled LMDM's speech motion is noise with keypoint jumps of ~2-4 units a frame; the crossfade adds at
    # most 1/(F + 1) of the idle-to-speech gap per frame, so the edges stay within the speech's own jumps (+10 %)
    assert jumps[edges].max() <= 1.1 * jumps[inside].max()
    assert jumps[edges].mean() <= jumps[inside].mean()
    quiet = (weights[1:] < 0.5) & (weights[:-1] < 0.5) & edges  # the idle side of the fades: smaller still
    assert quiet.any() and jumps[quiet].max() <= jumps[inside].max()


def test_interleaved_sessions_give_what_each_gives_alone(audio_engine, astronaut) -> None:
    a = load_audio(AUDIO / "dt_german1.wav")[:40000]
    b = load_audio(AUDIO / "st_chinese_news.wav")[:40000]
    seeded = AudioJobOptions(driver=AudioDriverOptions(steps=1, seed=7))
    alone_a = _run(audio_engine.live(astronaut, audio=FAST, render=False), [a])
    alone_b = _run(audio_engine.live(astronaut, LiveOptions(IdleOptions(idle_seed=3)), seeded, render=False), [b])
    first = audio_engine.live(astronaut, audio=FAST, render=False)
    second = audio_engine.live(astronaut, LiveOptions(IdleOptions(idle_seed=3)), seeded, render=False)
    got_a, got_b = [], []
    for start in range(0, 40000, 3000):
        got_b += second.push(b[start:start + 3000])
        got_a += first.push(a[start:start + 1234])
        got_a += first.push(a[start + 1234:start + 3000])
    got_a, got_b = got_a + first.end(), got_b + second.end()
    _assert_equal(_motion(alone_a), _motion(got_a))
    _assert_equal(_motion(alone_b), _motion(got_b))


def test_bad_pushes_say_what_was_wrong(audio_engine, astronaut) -> None:
    session = audio_engine.live(astronaut, audio=FAST, render=False)
    with pytest.raises(MediaError, match="1-D"):
        session.push(np.zeros((2, 640), np.float32))
    with pytest.raises(MediaError, match="NaN"):
        session.push(np.full(640, np.nan, np.float32))
    with pytest.raises(MediaError, match="empty"):
        session.end()
    session = audio_engine.live(astronaut, audio=FAST, render=False)
    assert len(_run(session, [np.zeros(700, np.float32)])) == 2
    with pytest.raises(MediaError, match="ended"):
        session.push(np.zeros(640, np.float32))


def test_lookahead_is_derived_from_the_window_constants() -> None:
    """Shipped online windows: frames 0-9 need 14160 samples (0.885 s), 6400 more per 10 frames."""
    assert [samples_needed(k) for k in (0, 9, 10, 19, 20)] == [14160, 14160, 20560, 20560, 26960]
    assert online_lookahead_ms() == (485.0, 845.0)
    assert online_lookahead_ms(extra_frames=10) == (485.0, 845.0)  # the 0.4 s crossfade adds nothing
    assert online_lookahead_ms(extra_frames=14)[0] == 560.0


def test_speech_gate_weights_do_not_depend_on_the_chunks() -> None:
    speech = load_audio(AUDIO / "espeak_en_us_with_silence.wav")
    weights = []
    for pieces in ([speech], _random_pieces(speech, 5)):
        gate = SpeechGate()
        for piece in pieces:
            gate.push(piece)
        gate.end()
        weights.append(gate.take(gate.ready).numpy())
    np.testing.assert_array_equal(*weights)
    w = weights[0]
    assert len(w) == math.ceil(speech.size / 640) and w[0] == 0 and w.max() == 1
    assert np.abs(np.diff(w)).max() <= 1 / 11 + 1e-6  # linear over F + 1 = 11 frames: no step


def test_idle_motion_is_a_function_of_the_frame_index_and_seed(astronaut) -> None:
    idle = IdleMotion(astronaut.info.motion)
    late = idle.frames(200, 50)
    _assert_equal(IdleMotion(astronaut.info.motion).frames(0, 250)[200:], late)
    other = IdleMotion(astronaut.info.motion, IdleOptions(idle_seed=1)).frames(200, 50)
    assert not torch.equal(other.yaw, late.yaw)
    listening = IdleMotion(astronaut.info.motion, IdleOptions(listening=1.0)).frames(200, 50)
    assert (listening.roll - late.roll).mean() == pytest.approx(2.0, abs=1e-4)


def test_a_higher_window_overlap_lowers_the_lookahead_and_keeps_the_push_form(audio_engine, astronaut) -> None:
    """Overlap 75 (5 new frames a window) with a 0.2 s crossfade: 285-445 ms instead of 485-845 ms; still
    ⌈duration·25⌉ frames, the same motion for any chunking; a different motion from the shipped windows."""
    samples = load_audio(AUDIO / "espeak_en_us.wav")[:32000]
    low = LiveOptions(idle=IdleOptions(crossfade=0.2), window_overlap=75)
    session = audio_engine.live(astronaut, low, FAST, render=False)
    assert session.lookahead_ms == (285.0, 445.0)
    whole = _run(session, [samples])
    pieces = _run(audio_engine.live(astronaut, low, FAST, render=False), _random_pieces(samples, 3))
    assert len(whole) == math.ceil(samples.size * 25 / 16000) == 50
    _assert_equal(_motion(whole), _motion(pieces))
    shipped = _run(audio_engine.live(astronaut, LiveOptions(idle=IdleOptions(crossfade=0.2)), FAST, render=False),
                   [samples])
    assert not torch.equal(_motion(whole).exp, _motion(shipped).exp)
    with pytest.raises(ControlError, match="window overlap"):
        LiveOptions(window_overlap=30)


def test_cli_replays_a_file_motion_only(tmp_path, all_weights_dir, capsys) -> None:
    motion_file = tmp_path / "live.safetensors"
    code = main(["live", "--source", str(TESTDATA / "images" / "astronaut.png"),
                 "--source-landmarks", str(landmarks_json("astronaut.png")), "--audio", str(AUDIO / "dt_german1.wav"),
                 "--weights", str(all_weights_dir), "--device", "cpu", "--steps", "1", "--chunk-ms", "100",
                 "--motion-only", "--save-motion", str(motion_file), "--quiet"])
    assert code == 0
    saved = load_motion(motion_file)
    assert saved.motion.n_frames == math.ceil(8.712 * 25) and saved.fps == 25.0
    report = capsys.readouterr().out
    assert "look-ahead 485-845 ms" in report and "real-time factor" in report


def test_cli_renders_at_most_max_frames(tmp_path, all_weights_dir) -> None:
    from talkinghead.media.video import probe_video

    clip = write_wav(tmp_path / "short.wav", load_audio(AUDIO / "espeak_en_us.wav")[:16000])
    out = tmp_path / "live.mp4"
    code = main(["live", "--source", str(TESTDATA / "images" / "astronaut.png"),
                 "--source-landmarks", str(landmarks_json("astronaut.png")), "--audio", str(clip),
                 "--weights", str(all_weights_dir), "--device", "cpu", "--steps", "1", "--max-frames", "2",
                 "--no-paste-back", "--out", str(out), "--quiet"])
    assert code == 0 and probe_video(out).n_frames == 2


def test_cli_refuses_a_live_job_without_an_output(tmp_path, capsys) -> None:
    code = main(["live", "--source", "p.png", "--audio", "a.wav"])
    assert code == 2 and "--out" in capsys.readouterr().err


def test_latency_summary_of_a_played_out_session(audio_engine, astronaut) -> None:
    session = audio_engine.live(astronaut, audio=FAST, render=False)
    frames = play_out(_run(session, [load_audio(AUDIO / "espeak_en_us.wav")[:20000]]))
    summary = latency_summary(frames, session)
    assert summary["frames"] == 32 and summary["lookahead_min_ms"] == 485.0
    assert all(b.shown_s >= a.shown_s + 0.04 - 1e-9 for a, b in zip(frames, frames[1:]))
    assert summary["rtf"] > 0 and summary["first_ready_s"] > 0


def test_app_live_tab_streams_the_microphone_and_says_why_not_on_a_cpu(monkeypatch) -> None:
    gr = pytest.importorskip("gradio")
    import app

    demo = app.build_app()
    live = next(fn for fn in demo.fns.values() if fn.name == "live_step")
    assert live.api_name == "live" and live.stream_every == app.LIVE_CHUNK_S
    monkeypatch.setattr(app, "DEVICE", torch.device("cpu"))
    with pytest.raises(gr.Error, match="needs a CUDA GPU"):
        app.live_step((48000, np.zeros(9600, np.int16)), str(TESTDATA / "images" / "astronaut.png"), 0.0, None)


def test_microphone_chunks_at_48_khz_give_the_motion_of_16_khz_pushes(audio_engine, astronaut) -> None:
    """push_audio: int16 stereo at 48 kHz, resampled on one clock; a 3x upsampled clip comes back sample for sample."""
    speech = load_audio(AUDIO / "espeak_en_us.wav")[:16000]
    up = np.interp(np.arange(speech.size * 3) / 3, np.arange(speech.size), speech)
    stereo = np.round(np.stack([up, up], axis=1) * 32768).clip(-32768, 32767).astype(np.int16)
    session = audio_engine.live(astronaut, audio=FAST, render=False)
    frames = [f for at in range(0, stereo.shape[0], 4800) for f in session.push_audio(stereo[at:at + 4800], 48000)]
    frames += session.end()
    direct = _run(audio_engine.live(astronaut, audio=FAST, render=False),
                  [np.round(speech * 32768).clip(-32768, 32767) / 32768])
    assert session.samples == speech.size
    _assert_equal(_motion(frames), _motion(direct))


class _Clock:
    """A wall clock the test moves (seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_keep_alive_is_the_silence_of_the_wall_clock_when_no_audio_comes(audio_engine, astronaut) -> None:
    """Between turns with no audio: once 0.6 s pass without a push, each call pushes the silence that brings
    the audio timeline up to the clock (the same motion as pushing those zeros), at most 1 s per call."""
    clock = _Clock()
    session = LiveSession(audio_engine, astronaut, audio=FAST, render=False, clock=clock)
    speech = load_audio(AUDIO / "espeak_en_us.wav")[:24000]                   # 1.5 s, pushed at once at t = 0
    frames, pushed = session.push(speech), [speech.size]
    clock.now = 0.4
    assert session.keep_alive() == [] and session.samples == speech.size      # 0.4 s quiet: audio may still come
    while clock.now < 12.0:                                                    # a timer every 0.2 s up to 12 s
        clock.now = round(clock.now + 0.2, 6)
        before = session.samples
        frames += session.keep_alive()
        pushed.append(session.samples - before)
    assert abs(session.samples - 12.0 * 16000) <= 1 and session.skipped_s == 0.0
    assert [f.index for f in frames] == list(range(len(frames))) and len(frames) >= (12.0 - 0.9) * 25
    assert frames[-1].speech == 0.0                                            # idle by then
    same = audio_engine.live(astronaut, audio=FAST, render=False)
    again = [f for n, piece in zip(pushed, [speech] + [None] * len(pushed)) for f in
             (same.push(piece) if piece is not None else same.push(np.zeros(n, np.float32)))]
    _assert_equal(_motion(frames), _motion(again))
    clock.now += 30.0                                                          # a stalled caller: 30 s gap
    before = session.samples
    session.keep_alive()
    assert session.samples - before == 16000 and session.skipped_s == pytest.approx(29.0, abs=1e-3)
    clock.now += 0.2
    before = session.samples
    session.keep_alive()
    assert abs(session.samples - before - 3200) <= 1                          # then on in step again
    with session._lock:                                                        # a push running in another thread
        clock.now += 1.0
        assert session.keep_alive() == []
    session.end()
    assert session.keep_alive() == []


def test_app_live_stop_keeps_the_session_and_the_timer_keeps_it_alive(audio_engine, astronaut) -> None:
    """Stopping the microphone leaves the session open; the idle timer then pushes silence in step with the
    clock (frames come out), and drops the session after LIVE_SLEEP_S without the microphone."""
    gr = pytest.importorskip("gradio")
    import app

    demo = app.build_app()
    tick = next(fn for fn in demo.fns.values() if fn.name == "live_tick")
    (timer_id, event), = tick.targets
    timer = demo.blocks[timer_id]
    assert event == "tick" and isinstance(timer, gr.Timer) and timer.value == app.LIVE_CHUNK_S
    assert timer.active is (app.DEVICE.type == "cuda")                        # no idle rendering on a CPU host
    clock = _Clock()
    session = LiveSession(audio_engine, astronaut, audio=FAST, render=False, clock=clock)
    session.push(load_audio(AUDIO / "espeak_en_us.wav")[:24000])
    clock.now = 1.5
    _, kept, status = app.live_stop(session)
    assert kept is session and not session.ended and "idles" in status
    clock.now = 2.5
    assert app.live_tick(session)[1] is session and session.samples == 2.5 * 16000
    clock.now = 1.5 + app.LIVE_SLEEP_S + 1
    _, dropped, status = app.live_tick(session)
    assert dropped is None and "asleep" in status
    assert app.live_stop(None)[1:] == (None, "") and app.live_tick(None)[1] is None
