"""API tests of the Gradio app (app.py) through gradio_client, against the app launched on 127.0.0.1.

The app runs in a subprocess (``python app.py``) on CPU with the filled
weights (``all_weights_dir``) and the testdata landmarks
(``TALKINGHEAD_LANDMARKS_DIR``); every job renders one frame (max frames 1).
The session-scoped ``app_url`` fixture lives in conftest.py (shared with test_app_browser.py).
"""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from conftest import APP_MAX_AUDIO_S, REPO, TESTDATA
from talkinghead.media.provenance import read_provenance

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

IMAGES, AUDIO, DRIVING = TESTDATA / "images", TESTDATA / "audio", TESTDATA / "driving"


@pytest.fixture(scope="module")
def client(app_url: str) -> Client:
    return Client(app_url, verbose=False)


def _video_frames(path: str) -> tuple[int, tuple[int, int], bool]:
    """(decoded frame count, (height, width), has audio) of a video file."""
    with av.open(path) as container:
        has_audio = bool(container.streams.audio)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return len(frames), frames[0].shape[:2], has_audio


def _video_path(result) -> str:
    """The file of a gr.Video output (a dict with "video" in Gradio's API)."""
    return result["video"] if isinstance(result, dict) else result


def _sliders(**values: float) -> list[float]:
    from talkinghead.motion.action_units import ACTION_UNITS
    from talkinghead.motion.controls import CONTROL_SPECS

    neutral = {name: spec.neutral for name, spec in CONTROL_SPECS.items()} | {au: 0.0 for au in ACTION_UNITS}
    return list((neutral | values).values())


def _audio_args(photo: Path, audio: Path) -> list:
    # photo, audio, head motion, reference clip, pose blend, expression scale, blinks, emotion, steps, seed,
    # smoothing, paste back, max frames (app.AudioForm's first fields; the enhance ones keep their defaults)
    return [handle_file(str(photo)), handle_file(str(audio)), "from the model", None, 1.0, 1.0, "template", "happy",
            2, 0, 0.0, True, 1]


def test_audio_endpoint_returns_a_video_with_sound_and_a_curve_plot(client: Client) -> None:
    video, plot = client.predict(*_audio_args(IMAGES / "astronaut.png", AUDIO / "espeak_en_us.wav"), api_name="/audio")
    frames, size, has_audio = _video_frames(_video_path(video))
    assert (frames, size, has_audio) == (1, (512, 512), True)
    assert plot is not None and plot.get("type") == "matplotlib"


def test_video_endpoint_returns_a_driven_video_and_its_curves(client: Client) -> None:
    result, plot = client.predict(handle_file(str(IMAGES / "lp_s9_monalisa.jpg")),
                                  handle_file(str(DRIVING / "lp_d0.mp4")),
                                  True, True, False, 1.0, "all", 0.0, 1, api_name="/video")
    assert _video_frames(_video_path(result))[:2] == (1, (512, 512))
    assert plot is not None and plot.get("type") == "matplotlib"


def test_video_endpoint_mixes_drivers_by_face_region(client: Client) -> None:
    """Region choices make it a mixed job: head and eyes from the clip, the mouth kept (1 frame), signed "mixed"."""
    result, plot = client.predict(photo=handle_file(str(IMAGES / "astronaut.png")),
                                  driving=handle_file(str(DRIVING / "lp_d0.mp4")), head="video", eyes="video",
                                  mouth="source", paste_back=False, max_frames=1, api_name="/video")
    assert _video_frames(_video_path(result))[:2] == (1, (512, 512))
    assert plot is not None and plot.get("type") == "matplotlib"
    report = read_provenance(_video_path(result))
    assert report is not None and report.ai_generated and report.job["kind"] == "mixed"


def test_video_endpoint_reanimates_a_source_video_instead_of_the_photo(client: Client) -> None:
    result, _ = client.predict(None, handle_file(str(DRIVING / "lp_d0.mp4")), True, True, True, 1.0, "all", 0.0, 1,
                               handle_file(str(TESTDATA / "talking" / "vr_face4.mp4")), api_name="/video")
    assert _video_frames(_video_path(result))[:2] == (1, (700, 700))   # pasted back into the 700x700 source frame


def test_audio_endpoint_dubs_a_source_video(client: Client) -> None:
    """Source "video": the talking clip dubbed with another speech (1 frame), pasted back, the speech as sound."""
    video, _ = client.predict(photo=None, audio=handle_file(str(AUDIO / "espeak_en_us.wav")), source="video",
                              source_video=handle_file(str(TESTDATA / "talking" / "vr_face4.mp4")), max_frames=1,
                              api_name="/audio")
    assert _video_frames(_video_path(video)) == (1, (700, 700), True)
    report = read_provenance(_video_path(video))
    assert report is not None and report.ai_generated and report.job["kind"] == "dub"


def test_preview_and_pose_path_endpoints(client: Client) -> None:
    photo = handle_file(str(IMAGES / "astronaut.png"))
    preview = client.predict(photo, True, "none", 1.0, "1x", *_sliders(yaw=20, smile=0.8, AU45=1.0), api_name="/preview")
    assert Path(preview).stat().st_size > 10_000
    keyframes = '{"fps": 25, "keyframes": [{"t": 0, "yaw": 0}, {"t": 1, "yaw": 20}]}'
    result, plot = client.predict(photo, keyframes, False, 1, api_name="/pose_path")
    assert plot is not None and plot.get("type") == "matplotlib"
    assert _video_frames(_video_path(result))[:2] == (1, (512, 512))
    # what the browser gets is still marked as AI-generated (C2PA), preview image included
    for served, kind in ((preview, "still"), (_video_path(result), "pose")):
        report = read_provenance(served)
        assert report is not None and report.ai_generated and report.job["kind"] == kind


def test_pose_preview_refreshes_on_sliders_paste_back_photo_and_reset() -> None:
    """The pose tab's event wiring, read from the app built in-process (no server, nothing rendered)."""
    pytest.importorskip("gradio")
    import app

    demo = app.build_app()

    def events(fn) -> set[tuple[str, str, str]]:
        """(component type, label or button text, event) of what triggers ``fn``; a .then() step: its first step's."""
        if fn.targets == [(None, "then")]:
            return events(demo.fns[fn.trigger_after])
        blocks = [(demo.blocks[block_id], event) for block_id, event in fn.targets]
        return {(type(b).__name__, b.label or b.value, event) for b, event in blocks}

    triggers = set().union(*(events(fn) for fn in demo.fns.values() if fn.name == "preview_pose"))
    assert {("Checkbox", "Paste back", "input"), ("Image", "Photo", "change"), ("Slider", "yaw (degrees)", "release"),
            ("Button", "Reset", "click")} <= triggers


@pytest.mark.parametrize("api_name, args, message", [
    ("/audio", lambda: _audio_args(IMAGES / "coffee_noface.png", AUDIO / "espeak_en_us.wav"), "no face found"),
    ("/audio", lambda: _audio_args(IMAGES / "astronaut.png", AUDIO / "dt_german1.wav"), f"at most {APP_MAX_AUDIO_S:g} s"),
    ("/audio", lambda: _audio_args(IMAGES / "astronaut.png", REPO / "README.md"), "README.md"),
    ("/video", lambda: [None, handle_file(str(DRIVING / "lp_d0.mp4")), True, True, True, 1.0, "all", 0.0, 1],
     "no photo given"),
    ("/pose_path", lambda: [handle_file(str(IMAGES / "astronaut.png")), '{"keyframes": []}', True, 1], "keyframes"),
])
def test_bad_inputs_give_the_intended_error(client: Client, api_name: str, args, message: str) -> None:
    with pytest.raises(Exception) as error:
        client.predict(*args(), api_name=api_name)
    assert message in str(error.value)


# ---------------------------------------------------------------- live preview (streaming video output)
# (the segments themselves: tests/test_session.py)
def test_live_preview_button_streams_into_its_own_video_output() -> None:
    """The audio tab's wiring, read from the app built in-process: same inputs as Generate, a streaming output."""
    pytest.importorskip("gradio")
    import app

    demo = app.build_app()
    fns = {fn.name: fn for fn in demo.fns.values() if fn.name in ("generate_audio", "stream_audio")}
    live = fns["stream_audio"]
    (button_id, event), = live.targets
    assert (demo.blocks[button_id].value, event) == ("Live preview (streams as it renders)", "click")
    (output,) = live.outputs
    assert (type(output).__name__, output.label) == ("Video", "Live preview")
    assert output.streaming and output.autoplay
    assert live.api_name == "audio_stream"
    assert [b._id for b in live.inputs] == [b._id for b in fns["generate_audio"].inputs]


def _stream_client(app_url: str) -> Client:
    """A client that returns the streamed output's FileData (its playlist URL) instead of downloading it."""
    import shutil

    if not (shutil.which("ffmpeg") and shutil.which("ffprobe")):
        pytest.skip("the live preview needs FFmpeg (ffmpeg and ffprobe on PATH)")
    return Client(app_url, verbose=False, download_files=False)


def test_audio_stream_endpoint_streams_one_segment_per_frame_group(app_url: str, tmp_path: Path) -> None:
    """2 frames, 1 per segment (TALKINGHEAD_STREAM_SEGMENT_FRAMES=1 in app_url): 2 chunks, then a playable whole."""
    import httpx

    args = _audio_args(IMAGES / "astronaut.png", AUDIO / "espeak_en_us.wav")[:-1] + [2]   # max frames 2
    job = _stream_client(app_url).submit(*args, api_name="/audio_stream")
    playlist_url = job.result()["url"]
    assert len(job.outputs()) == 2                      # one streamed update per segment
    playlist = httpx.get(playlist_url).text
    assert playlist.startswith("#EXTM3U") and "#EXT-X-ENDLIST" in playlist
    assert sum(line.endswith(".ts") for line in playlist.splitlines()) >= 2
    whole = httpx.get(playlist_url.replace("playlist.m3u8", "playlist-file"))   # Gradio joins the segments (mp4)
    whole.raise_for_status()
    (tmp_path / "whole.mp4").write_bytes(whole.content)
    assert _video_frames(str(tmp_path / "whole.mp4")) == (2, (512, 512), True)


def test_audio_stream_endpoint_reports_user_errors(app_url: str) -> None:
    """An engine error raised inside the streaming generator reaches the client as the one-line message."""
    args = _audio_args(IMAGES / "coffee_noface.png", AUDIO / "espeak_en_us.wav")
    with pytest.raises(Exception) as error:
        _stream_client(app_url).predict(*args, api_name="/audio_stream")
    assert "no face found" in str(error.value)


# ---------------------------------------------------------------- the app as a view over the public API
def test_app_imports_only_the_public_api() -> None:
    """app.py reads talkinghead through its top-level names only (no stage module such as media or drivers)."""
    import ast

    import talkinghead

    tree = ast.parse((REPO / "app.py").read_text())
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert {m for m in modules if m.split(".")[0] == "talkinghead"} == {"talkinghead"}
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "talkinghead"
             for alias in node.names}
    assert names <= set(talkinghead.__all__), names - set(talkinghead.__all__)


def test_job_handlers_take_the_widget_values_by_name_in_the_forms_field_order() -> None:
    """The audio and video endpoints' parameters are the form fields (names and order), so the API keeps its order."""
    import dataclasses

    pytest.importorskip("gradio")
    import app

    demo = app.build_app()
    api = demo.get_api_info()["named_endpoints"]
    for endpoint, form in (("/audio", app.AudioForm), ("/audio_stream", app.AudioForm), ("/video", app.VideoForm)):
        parameters = api[endpoint]["parameters"]
        assert [p["parameter_name"] for p in parameters] == [f.name for f in dataclasses.fields(form)]
        optional = {p["parameter_name"] for p in parameters if p["parameter_has_default"]}
        assert {"reference_clip", "source_video"} & {f.name for f in dataclasses.fields(form)} <= optional
    options = app.AudioForm(head_motion="from a reference clip", reference_clip="clip.mp4", emotion="happy",
                            steps=3, blinks=app.FROM_CONFIG).options()
    assert (options.pose_from, options.emotion, options.steps, options.blinks, options.still_head) == \
        ("clip.mp4", "happy", 3, None, False)
    styled = app.AudioForm(head_motion=app.HEAD_MOTIONS[3], reference_clip="clip.mp4").options()
    assert (styled.pose_style, styled.pose_from, styled.still_head) == ("clip.mp4", None, False)
    with pytest.raises(app.gr.Error, match="live preview cannot"):
        next(app.stream_audio(head_motion=app.HEAD_MOTIONS[3], reference_clip="clip.mp4"))
    render = app.VideoForm(max_frames=0, upscale="2x", smoothing=0.5).render()
    assert (render.max_frames, render.enhance.upscale, render.smoothing.pose) == (None, 2, 0.5)


# ---------------------------------------------------------------- dubbing and drivers by face region (in-process)
class _RecordingEngine:
    """Stands in for the engine in the in-process handler tests: records the job it is asked for, renders nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []

    def get(self) -> "_RecordingEngine":            # app.ENGINE (the loader) → the engine
        return self

    def audio_source_settings(self, options):
        return ("audio settings", options)

    def _job(self, name: str, *args, **kwargs):
        from types import SimpleNamespace

        self.calls.append((name, args, kwargs))
        return SimpleNamespace(motion=None, fps=25.0, record_motion=lambda: None)   # nothing rendered: no curves

    def dub(self, *args, **kwargs):
        return self._job("dub", *args, **kwargs)

    def animate_mixed(self, *args, **kwargs):
        return self._job("animate_mixed", *args, **kwargs)

    def animate_video(self, *args, **kwargs):
        return self._job("animate_video", *args, **kwargs)

    def write_video(self, job, path, **kwargs):
        return path


class _PreparedStub(tuple):
    """Stands in for a prepared photo: ("prepared", photo, settings), with the ``info.motion`` the curves read."""

    def __new__(cls, photo, settings):
        return super().__new__(cls, ("prepared", photo, settings))

    @property
    def info(self):
        from types import SimpleNamespace

        return SimpleNamespace(motion=None)


@pytest.fixture
def recording_app(monkeypatch):
    pytest.importorskip("gradio")
    import app

    engine = _RecordingEngine()
    monkeypatch.setattr(app, "ENGINE", engine)
    monkeypatch.setattr(app, "_prepared", lambda engine, photo, settings=None: _PreparedStub(photo, settings))
    return app, engine


def test_audio_tab_video_source_means_dubbing_with_the_dub_options(recording_app) -> None:
    app, engine = recording_app
    clip, speech = str(TESTDATA / "talking" / "vr_face4.mp4"), str(AUDIO / "espeak_en_us.wav")
    assert not app.AudioForm().dubbing                               # default: the photo job, as before
    path, figure = app.generate_audio(photo=None, audio=speech, source="video", source_video=clip,
                                      mouth_gain=0.5, mouth_base="frame", max_frames=1, seed=3)
    ((name, (video, audio, options, render, dubbing), kwargs),) = engine.calls
    assert (name, video, audio, path.endswith("dubbed.mp4"), figure) == ("dub", clip, speech, True, None)
    assert (dubbing.mouth_gain, dubbing.mouth_base) == (0.5, "frame")
    assert (options.seed, options.still_head, render.max_frames) == (3, False, 1)
    assert app.AudioForm().dub_options() == app.DubOptions()         # the widgets' defaults are DubOptions'


@pytest.mark.parametrize("widgets, message", [
    (dict(source="video", audio=str(AUDIO / "espeak_en_us.wav")), "no source video"),
    (dict(source="video", source_video="clip.mp4"), "no audio"),
    (dict(source="video", source_video="clip.mp4", audio=str(AUDIO / "espeak_en_us.wav"), head_motion="still"),
     "own head motion"),
    (dict(source="video", source_video="clip.mp4", audio=str(AUDIO / "espeak_en_us.wav"), mouth_gain=9.0),
     "mouth gain"),
])
def test_dubbing_bad_inputs_give_one_message(recording_app, widgets, message: str) -> None:
    app, engine = recording_app
    with pytest.raises(app.gr.Error, match=message):
        app.generate_audio(**widgets)
    with pytest.raises(app.gr.Error, match="cannot dub"):
        next(app.stream_audio(source="video", source_video="clip.mp4"))
    assert engine.calls == []


def test_video_tab_region_choices_build_region_sources_and_the_mixed_drivers(recording_app) -> None:
    app, engine = recording_app
    assert app.VideoForm().regions() == app.RegionSources() and not app.VideoForm().mixed   # today's job
    speech, driving = str(AUDIO / "espeak_en_us.wav"), str(DRIVING / "lp_d0.mp4")
    app.generate_video(photo="photo.png", driving=driving, mouth="audio", eyes="source", speech=speech,
                       relative=False, stitching=True, max_frames=1)
    ((name, (source, drivers, regions, render), kwargs),) = engine.calls
    assert name == "animate_mixed"
    assert regions == app.RegionSources(mouth="audio", eyes="source")   # the unset ones: the job's own (video)
    assert (drivers.driving, drivers.audio, drivers.motion, drivers.default, drivers.video_relative) == \
        (driving, speech, None, "video", False)
    assert source[2][0] == "audio settings"                              # the audio job's crop when speech drives
    assert render.max_frames == 1
    engine.calls.clear()
    app.generate_video(photo="photo.png", driving=driving, max_frames=1)   # no region chosen: the video job
    assert [call[0] for call in engine.calls] == ["animate_video"]


@pytest.mark.parametrize("widgets, message", [
    (dict(source_video="clip.mp4", mouth="source"), "needs a photo"),
    (dict(mouth="source", region="lip"), "do not apply"),
    (dict(mouth="source", driving=None), "no driving video"),
    (dict(speech=str(AUDIO / "espeak_en_us.wav")), "no region uses it"),
    (dict(mouth="audio", speech=str(AUDIO / "dt_german1.wav")), "at most"),
])
def test_region_choice_bad_inputs_give_one_message(recording_app, monkeypatch, widgets, message: str) -> None:
    app, engine = recording_app
    monkeypatch.setattr(app, "MAX_AUDIO_S", 8.5)
    with pytest.raises(app.gr.Error, match=message):
        app.generate_video(**({"photo": "photo.png", "driving": str(DRIVING / "lp_d0.mp4")} | widgets))
    assert engine.calls == []


def test_edits_box_gives_the_job_a_timeline_and_shades_the_curves() -> None:
    """The audio and video tabs' edits box (the CLI's --keyframes): its JSON becomes RenderOptions.timeline,
    empty means none, a bad text is one clear error, and the curve plot shades the edited span."""
    pytest.importorskip("gradio")
    import json

    import app
    import numpy as np
    from talkinghead.errors import ControlError

    edits = json.dumps({"version": 2, "spans": [{"from": 0.4, "to": 0.8, "smile": 0.5}]})
    for form in (app.AudioForm, app.VideoForm):
        assert form().render().timeline is None
        timeline = form(edits=edits).render().timeline
        assert [(span.start, span.end) for span in timeline.spans] == [(0.4, 0.8)]
        with pytest.raises(ControlError, match="the edits box"):
            form(edits='{"version": 2, "spans": [{"from": 2, "to": 1}]}').render()
    figure = app.plot_curves({"yaw": np.zeros(25)}, fps=25.0, spans=app.edited_intervals(timeline))
    shaded = [patch for ax in figure.axes for patch in ax.patches]
    assert len(shaded) == 3 and all(abs(p.get_x() - 0.4) < 1e-9 and abs(p.get_width() - 0.4) < 1e-9 for p in shaded)
    with pytest.raises(ValueError, match="fps"):
        app.plot_curves({"yaw": np.zeros(25)}, spans=[(0.4, 0.8)])
