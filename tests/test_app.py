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
    # photo, audio, head motion, reference clip, pose blend, expression scale, blink, emotion, steps, seed,
    # smoothing, paste back, max frames
    return [handle_file(str(photo)), handle_file(str(audio)), "from the model", None, 1.0, 1.0, True, "happy",
            2, 0, 0.0, True, 1]


def test_audio_endpoint_returns_a_video_with_sound_and_a_curve_plot(client: Client) -> None:
    video, plot = client.predict(*_audio_args(IMAGES / "astronaut.png", AUDIO / "espeak_en_us.wav"), api_name="/audio")
    frames, size, has_audio = _video_frames(_video_path(video))
    assert (frames, size, has_audio) == (1, (512, 512), True)
    assert plot is not None and plot.get("type") == "matplotlib"


def test_video_endpoint_returns_a_driven_video(client: Client) -> None:
    result = client.predict(handle_file(str(IMAGES / "lp_s9_monalisa.jpg")),
                            handle_file(str(DRIVING / "lp_d0.mp4")),
                            True, True, False, 1.0, "all", 0.0, 1, api_name="/video")
    assert _video_frames(_video_path(result))[:2] == (1, (512, 512))


def test_preview_and_pose_path_endpoints(client: Client) -> None:
    photo = handle_file(str(IMAGES / "astronaut.png"))
    preview = client.predict(photo, True, *_sliders(yaw=20, smile=0.8, AU45=1.0), api_name="/preview")
    assert Path(preview).stat().st_size > 10_000
    keyframes = '{"fps": 25, "keyframes": [{"t": 0, "yaw": 0}, {"t": 1, "yaw": 20}]}'
    result = client.predict(photo, keyframes, False, 1, api_name="/pose_path")
    assert _video_frames(_video_path(result))[:2] == (1, (512, 512))


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
