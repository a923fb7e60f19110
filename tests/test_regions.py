"""Driver mixing by face region (issue 13 item 2): real photo, real driving clips, real speech, filled weights.

Everything is checked at the motion level (the one sequence the renderer gets); one CLI run renders a
single frame to check that the mixed job reaches an output file with the speech as its soundtrack.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TESTDATA, landmarks_json
from test_audio_job import FAST
from talkinghead.cli import main
from talkinghead.errors import ControlError
from talkinghead.jobs import RenderOptions
from talkinghead.media.audio import load_audio
from talkinghead.media.video import probe_video
from talkinghead.mixed_job import MixedDrivers, mixed_motion, resolve_regions
from talkinghead.motion.frame import NUM_KP
from talkinghead.motion.io import load_motion
from talkinghead.motion.keypoints import KeypointTransform, rotation_matrix
from talkinghead.motion.regions import (FACE_REGIONS, HEAD_FIELDS, DriverMotion, RegionSources, absolute_on_source,
                                        align, angles_from_rotation, frame_indices, lead_driver, mix_drivers,
                                        mix_regions)
from talkinghead.motion.transfer import relative_transform

DRIVING = TESTDATA / "driving"
D0 = DRIVING / "lp_d0.mp4"  # 25 fps, 78 frames
D3 = DRIVING / "lp_d3.mp4"  # 30 fps, 300 frames
SPEECH = TESTDATA / "audio" / "espeak_en_us.wav"
ASTRONAUT = TESTDATA / "images" / "astronaut.png"
FIELDS = ("pitch", "yaw", "roll", "t", "scale", "exp")


@pytest.fixture(scope="module")
def source(audio_engine):
    settings = audio_engine.audio_source_settings(FAST)
    return audio_engine.prepare_source(ASTRONAUT, landmarks=landmarks_json("astronaut.png"), settings=settings)


@pytest.fixture(scope="module")
def speech():
    return load_audio(SPEECH)[: 16000 * 2]  # 2 s: 50 frames at 25 fps


@pytest.fixture(scope="module")
def drivers(audio_engine, source, speech) -> dict[str, DriverMotion]:
    """The three drivers on their own time lines: lp_d0 (video, 25 fps), speech (25 fps), lp_d3's first 2 s
    as a motion file (30 fps)."""
    video = audio_engine.extract_motion(D0, landmarks=landmarks_json("lp_d0.mp4"))
    clip = audio_engine.extract_motion(D3, landmarks=landmarks_json("lp_d3.mp4"), max_frames=60)
    return {"video": DriverMotion(video, 25.0, relative=True),
            "audio": DriverMotion(audio_engine.audio_motion(source, speech, FAST), 25.0, relative=False, extend="hold"),
            "motion": DriverMotion(clip, 30.0, relative=True)}


def _rows(region: str) -> list[int]:
    return list(FACE_REGIONS[region].rows)


def test_the_regions_cover_every_expression_row_once_and_the_head_pose() -> None:
    rows = sorted(row for region in FACE_REGIONS.values() for row in region.rows)
    assert rows == list(range(NUM_KP))
    assert FACE_REGIONS["mouth"].rows == (6, 12, 14, 17, 19, 20) and FACE_REGIONS["eyes"].rows == (11, 13, 15, 16, 18)
    assert FACE_REGIONS["brows"].rows == (1, 2) and FACE_REGIONS["rest"].rows == (0, 3, 4, 5, 7, 8, 9, 10)
    assert FACE_REGIONS["head"].fields == HEAD_FIELDS == ("pitch", "yaw", "roll", "t", "scale")


@pytest.mark.parametrize("driver", ["video", "audio", "motion"])
@pytest.mark.parametrize("region", list(FACE_REGIONS))
def test_each_region_comes_from_its_driver_and_nothing_else_moves(source, drivers, region, driver) -> None:
    """One region from one driver, every other region 'source': that region's rows/fields equal the driver's
    (absolute, aligned) motion bit for bit; every other row and field is the photo's own."""
    sources = RegionSources(**{name: (driver if name == region else "source") for name in FACE_REGIONS})
    own = source.info.motion
    mixed, fps = mix_drivers(own, drivers, sources)
    lead = drivers[driver]  # the mouth's driver, or the only one used
    assert fps == lead.fps and mixed.n_frames == lead.motion.n_frames
    expected = align(drivers[driver], mixed.n_frames, fps)
    if drivers[driver].relative:
        expected = absolute_on_source(own, expected, drivers[driver].motion[0])
    chosen = FACE_REGIONS[region]
    for name in HEAD_FIELDS:
        want = getattr(expected if name in chosen.fields else own, name).expand_as(getattr(mixed, name))
        assert torch.equal(getattr(mixed, name), want), name
    rows = _rows(region)
    others = [row for row in range(NUM_KP) if row not in rows]
    assert torch.equal(mixed.exp[:, others], own.exp[:, others].expand(mixed.n_frames, -1, -1))
    if rows:
        assert torch.equal(mixed.exp[:, rows], expected.exp[:, rows])
        if driver != "audio" or region == "mouth":  # (Ditto's post-processing may keep the photo's brows)
            assert not torch.equal(mixed.exp[:, rows], own.exp[:, rows].expand(mixed.n_frames, -1, -1))


def test_a_mix_of_three_drivers_takes_each_region_from_its_own(source, drivers) -> None:
    """--mouth audio --head video --eyes video --brows motion (rest: the photo's): the audio sets the length."""
    sources = RegionSources(head="video", eyes="video", brows="motion", mouth="audio", rest="source")
    own = source.info.motion
    mixed, fps = mix_drivers(own, drivers, sources)
    n = drivers["audio"].motion.n_frames
    assert (mixed.n_frames, fps) == (n, 25.0)
    video = absolute_on_source(own, align(drivers["video"], n, fps), drivers["video"].motion[0])
    clip = absolute_on_source(own, align(drivers["motion"], n, fps), drivers["motion"].motion[0])
    for name in HEAD_FIELDS:
        assert torch.equal(getattr(mixed, name), getattr(video, name)), name
    assert torch.equal(mixed.exp[:, _rows("eyes")], video.exp[:, _rows("eyes")])
    assert torch.equal(mixed.exp[:, _rows("brows")], clip.exp[:, _rows("brows")])
    assert torch.equal(mixed.exp[:, _rows("mouth")], drivers["audio"].motion.exp[:, _rows("mouth")])
    assert torch.equal(mixed.exp[:, _rows("rest")], own.exp[:, _rows("rest")].expand(n, -1, -1))


def test_all_from_the_video_is_livePortraits_relative_transfer(source, drivers) -> None:
    """The video region's rule in motion space gives the keypoints of LivePortrait's relative transfer."""
    own, video = source.info.motion, drivers["video"].motion
    mixed, _ = mix_drivers(own, drivers, RegionSources().resolved("video"))
    ours = KeypointTransform.from_motion(mixed).apply(source.info.kp)
    theirs = relative_transform(own, video, video[0]).apply(source.info.kp)
    torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=0)
    torch.testing.assert_close(mixed[0].exp, own.exp, atol=1e-6, rtol=0)  # frame 0: the photo itself


def test_angles_from_rotation_inverts_rotation_matrix() -> None:
    angles = [torch.tensor([[a], [b], [c]], dtype=torch.float32) for a, b, c in
              [(-40.0, 0.0, 12.5), (25.0, -60.0, 85.0), (-3.0, 30.0, -170.0)]]
    back = angles_from_rotation(rotation_matrix(*angles))
    for got, want in zip(back, angles):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_defaults_reproduce_the_audio_jobs_motion_bit_for_bit(audio_engine, source, speech) -> None:
    """The audio job with no region chosen: the mixed motion is the audio job's own, bit for bit."""
    today = audio_engine.audio_motion(source, speech, FAST)
    mixed, fps = mixed_motion(audio_engine, source, MixedDrivers(audio=speech, audio_options=FAST), RegionSources())
    assert fps == 25.0
    for name in FIELDS:
        assert torch.equal(getattr(mixed, name), getattr(today, name)), name


def test_defaults_and_inputs_of_each_job_resolve_to_its_own_driver() -> None:
    assert resolve_regions(RegionSources(), MixedDrivers(driving=D0)) == RegionSources().resolved("video")
    assert resolve_regions(RegionSources(mouth="audio"), MixedDrivers(driving=D0, audio=SPEECH, default="video")) == \
        RegionSources("video", "video", "video", "audio", "video")
    assert RegionSources().is_default and not RegionSources(eyes="source").is_default


def test_time_alignment_nearest_frame_and_ping_pong_or_hold() -> None:
    clip = DriverMotion(_motion(30), 30.0, relative=True)  # 1 s at 30 fps
    # output at 25 fps: frame k shows the clip's frame nearest to k/25 s, floor(k·1.2 + 0.5)
    assert frame_indices(6, 25.0, clip).tolist() == [0, 1, 2, 4, 5, 6]
    # past the end (k·1.2 ≥ 30) it goes back: 29, 28, …
    assert frame_indices(30, 25.0, clip)[24:].tolist() == [29, 28, 27, 26, 24, 23]
    held = DriverMotion(_motion(30), 30.0, relative=False, extend="hold")
    assert frame_indices(30, 25.0, held)[24:].tolist() == [29] * 6
    assert torch.equal(align(clip, 30, 30.0).exp, clip.motion.exp)  # same rate and length: itself


def _motion(n: int):
    from talkinghead.motion.frame import MotionSequence

    z = torch.zeros(n, 1)
    return MotionSequence(z, z, z, torch.zeros(n, 3), torch.ones(n, 1),
                          torch.arange(n, dtype=torch.float32)[:, None, None].expand(n, NUM_KP, 3).clone())


def test_output_length_is_the_mouths_drivers_else_the_longest(source, drivers) -> None:
    own = source.info.motion
    short = {**drivers, "audio": DriverMotion(drivers["audio"].motion[:20], 25.0, False, "hold")}  # 0.8 s
    # mouth from the 0.8 s speech: 20 frames at 25 fps, the video (3.1 s) cut
    mixed, fps = mix_drivers(own, short, RegionSources("video", "video", "video", "audio", "video"))
    assert (mixed.n_frames, fps) == (20, 25.0)
    # mouth from the photo: the longest driver used (lp_d0: 78 frames = 3.12 s > lp_d3 cut: 60 frames = 2 s)
    sources = RegionSources(head="motion", eyes="video", brows="source", mouth="source", rest="source")
    assert lead_driver(sources, short) == "video"
    mixed, fps = mix_drivers(own, short, sources)
    assert (mixed.n_frames, fps) == (78, 25.0)
    # the 30 fps motion file, 60 frames long, is resampled at 25 fps and goes back and forth after 2 s
    index = frame_indices(78, 25.0, short["motion"])
    clip = absolute_on_source(own, short["motion"].motion[index], short["motion"].motion[0])
    assert torch.equal(mixed.yaw, clip.yaw)
    assert index[48:53].tolist() == [58, 59, 58, 57, 56]
    # mouth from the 0.8 s speech but head from the 3.1 s video: the speech's last frame holds? no: output is 0.8 s
    mixed, _ = mix_drivers(own, short, RegionSources(head="video", mouth="audio", eyes="source", brows="source",
                                                     rest="source"))
    assert mixed.n_frames == 20


def test_a_shorter_audio_driver_holds_its_last_frame(source, drivers) -> None:
    own = source.info.motion
    short = {**drivers, "audio": DriverMotion(drivers["audio"].motion[:20], 25.0, False, "hold")}
    mixed, _ = mix_drivers(own, short, RegionSources(head="video", mouth="source", eyes="audio", brows="source",
                                                     rest="source"))
    assert mixed.n_frames == 78
    eyes = _rows("eyes")
    assert torch.equal(mixed.exp[20:, eyes], short["audio"].motion.exp[19:20, eyes].expand(58, -1, -1))


def test_bad_combinations_give_one_clear_error(source, drivers) -> None:
    own = source.info.motion
    with pytest.raises(ControlError, match="mouth from audio needs the audio input: add --audio SPEECH"):
        resolve_regions(RegionSources(mouth="audio"), MixedDrivers(driving=D0, default="video"))
    with pytest.raises(ControlError, match="--motion is given but no region uses it"):
        resolve_regions(RegionSources(), MixedDrivers(driving=D0, motion="m.safetensors", default="video"))
    with pytest.raises(ControlError, match="every region is 'source'"):
        resolve_regions(RegionSources(*["source"] * 5), MixedDrivers(driving=D0))
    with pytest.raises(ControlError, match="choose the driver of every region"):
        resolve_regions(RegionSources(mouth="audio"), MixedDrivers(driving=D0, audio=SPEECH))
    with pytest.raises(ControlError, match="head driver must be one of source, video, audio, motion"):
        RegionSources(head="webcam")
    with pytest.raises(ControlError, match="no motion driver is given"):
        mix_drivers(own, {"video": drivers["video"]}, RegionSources(head="motion").resolved("video"))
    with pytest.raises(ControlError, match="different lengths"):
        mix_regions(own, {"video": drivers["video"].motion, "audio": drivers["audio"].motion},
                    RegionSources(mouth="audio").resolved("video"))


CLI_REFUSALS = [
    (["video", "--driving", str(D0), "--mouth", "audio"], "mouth from audio needs the audio input: add --audio SPEECH"),
    (["video", "--driving", str(D0), "--audio", str(SPEECH)], "--audio is given but no region uses it"),
    (["video", "--driving", str(D0), "--motion", "m.safetensors"], "--motion is given but no region uses it"),
    (["video", "--mouth", "audio", "--audio", str(SPEECH)], "give the driving motion: --driving CLIP or --motion FILE"),
    (["audio", "--audio", str(SPEECH), "--eyes", "video"], "eyes from video needs the video input: add --driving CLIP"),
    (["audio", "--audio", str(SPEECH), "--brows", "motion"], "brows from motion needs the motion input: add --motion"),
    (["audio", "--audio", str(SPEECH), "--driving", str(D0)], "--driving is given but no region uses it"),
    (["video", "--driving", str(D0), "--audio", str(SPEECH), "--mouth", "audio", "--region", "lip"],
     "do not apply to a job mixed by face region"),
    (["audio", "--audio", str(SPEECH), "--head", "source", "--eyes", "source", "--brows", "source", "--mouth",
      "source", "--rest", "source"], "every region is 'source'"),
]


@pytest.mark.parametrize(("argv", "message"), CLI_REFUSALS, ids=[m.split(":")[0][:40] for _, m in CLI_REFUSALS])
def test_the_cli_refuses_a_bad_combination_in_one_line_before_any_work(argv, message, tmp_path, capsys) -> None:
    """Refused in the checks, before the weights are read (the weights folder does not exist)."""
    rc = main([*argv[:1], "--source", str(ASTRONAUT), "--out", str(tmp_path / "o.mp4"),
               "--weights", str(tmp_path / "nowhere"), *argv[1:]])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and message in err, err
    assert not (tmp_path / "o.mp4").exists()


def test_cli_without_region_flags_runs_each_job_as_it_is(tmp_path) -> None:
    """No region chosen and no extra input: check_job leaves no mixed job (today's code path runs)."""
    from talkinghead.cli import build_parser, check_job

    for argv in (["video", "--driving", str(D0)], ["video", "--motion", "m.safetensors"],
                 ["audio", "--audio", str(SPEECH)], ["audio", "--audio", str(SPEECH), "--motion", "m.safetensors"]):
        args = build_parser().parse_args([*argv[:1], "--source", str(ASTRONAUT), "--out", str(tmp_path / "o.mp4"),
                                          *argv[1:]])
        check_job(args)
        assert args.mixed_drivers is None, argv


def test_cli_region_flags_choose_the_drivers_of_a_mixed_job(tmp_path) -> None:
    from talkinghead.cli import build_parser, check_job

    cases = [(["video", "--driving", str(D0), "--audio", str(SPEECH), "--mouth", "audio"],
              RegionSources("video", "video", "video", "audio", "video")),
             (["audio", "--audio", str(SPEECH), "--driving", str(D0), "--head", "video", "--eyes", "video"],
              RegionSources("video", "video", "audio", "audio", "audio")),
             (["audio", "--audio", str(SPEECH), "--motion", "m.safetensors", "--mouth", "audio", "--brows", "source"],
              RegionSources("motion", "motion", "source", "audio", "motion"))]
    for argv, expected in cases:
        args = build_parser().parse_args([*argv[:1], "--source", str(ASTRONAUT), "--out", str(tmp_path / "o.mp4"),
                                          *argv[1:]])
        check_job(args)
        assert args.region_sources == expected, argv
        assert args.mixed_drivers.given() == {"video", "audio", "motion"} & set(expected.drivers() | {"audio"})
    # the video job's --steps/--seed reach the speech's motion generation
    args = build_parser().parse_args(["video", "--source", str(ASTRONAUT), "--out", str(tmp_path / "o.mp4"),
                                      *cases[0][0][1:], "--steps", "3", "--seed", "7"])
    check_job(args)
    assert (args.mixed_drivers.audio_options.steps, args.mixed_drivers.audio_options.seed) == (3, 7)


def test_cli_audio_job_with_head_and_eyes_from_a_video(all_weights_dir, tmp_path) -> None:
    """``audio --audio S --driving D --head video --eyes video``: one rendered frame with the speech as its
    soundtrack; the saved motion is the mix (head and eyes from the video by the relative rule, the rest
    from the speech's motion, at the speech's length)."""
    out, saved = tmp_path / "mix.mp4", tmp_path / "mix.safetensors"
    rc = main(["audio", "--source", str(ASTRONAUT), "--source-landmarks", str(landmarks_json("astronaut.png")),
               "--audio", str(SPEECH), "--driving", str(D0), "--driving-landmarks", str(landmarks_json("lp_d0.mp4")),
               "--head", "video", "--eyes", "video", "--steps", "2", "--seed", "0", "--max-frames", "1",
               "--no-paste-back", "--weights", str(all_weights_dir), "--device", "cpu", "--quiet",
               "--out", str(out), "--save-motion", str(saved)])
    assert rc == 0
    info = probe_video(out)
    assert (info.n_frames, info.width, info.has_audio) == (1, 512, True)
    mixed = load_motion(saved)
    n = -(-load_audio(SPEECH).size // 640)  # the speech's length: ceil(duration · 25)
    assert (mixed.motion.n_frames, mixed.fps) == (n, 25.0)
    assert mixed.source is not None
    own = mixed.source.motion
    # frame 0 of a relative driver is the photo's own pose; the mouth is not the photo's (the speech moves it)
    for name in HEAD_FIELDS:
        torch.testing.assert_close(getattr(mixed.motion, name)[:1], getattr(own, name), atol=1e-4, rtol=0)
    assert not torch.equal(mixed.motion.exp[:, _rows("mouth")], own.exp[:, _rows("mouth")].expand(n, -1, -1))


def test_a_waveform_speech_is_the_mixed_jobs_soundtrack(audio_engine, source, speech) -> None:
    """Speech given as samples (not a file) still reaches the output's sound, cut to the job's length."""
    from talkinghead.media.video import AudioSamples
    from talkinghead.mixed_job import animate_mixed

    drivers = MixedDrivers(audio=speech, audio_options=FAST, default="audio")
    job = animate_mixed(audio_engine, source, drivers, RegionSources(head="source"),
                        RenderOptions(paste_back=False, max_frames=10))
    assert isinstance(job.audio, AudioSamples) and job.audio.sample_rate == 16000
    assert job.audio.samples.size == 10 * 640                               # 10 frames at 25 fps
    np.testing.assert_array_equal(job.audio.samples, speech[: 10 * 640])
