"""talkinghead web app (Gradio): the UI over the in-process :class:`talkinghead.Engine`.

Run ``python app.py``; it prints the local URL.  Three tabs, one per job:
audio-driven (Source: a photo, or a video to dub with the speech:
:meth:`Engine.dub`), video-driven (optionally each face region — head, eyes,
brows, mouth, rest — from another driver: the photo, the clip, a speech or a
motion file: :meth:`Engine.animate_mixed`), and pose & expression (sliders,
action units, keyframed pose paths).  The app is a view: it holds no engine or media
logic and uses only talkinghead's public names (``from talkinghead import``;
the engine, its options, and :mod:`talkinghead.session` for the loader, the
photo cache and the live-preview segments).  Each job handler takes the
widget values by name (:class:`AudioForm`, :class:`VideoForm`).

Settings (environment variables):

* ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` — Gradio's own (default
  127.0.0.1:7860).
* ``TALKINGHEAD_WEIGHTS=DIR`` — a local folder laid out like the Hub repos
  (as the CLI's ``--weights``): nothing is downloaded, so the app runs offline.
* ``TALKINGHEAD_DEVICE`` — ``auto`` (default: CUDA when available), ``cuda`` or ``cpu``.
* ``TALKINGHEAD_PRECISION`` — W and G's precision, as the CLI's ``--precision``: ``auto``
  (default: fp16 on CUDA, fp32 on CPU), ``fp32``, ``bf16``, ``fp16``.
  ``TALKINGHEAD_COMPILE=1`` — ``torch.compile`` W and G (the CLI's ``--compile``; off by default).
* ``TALKINGHEAD_LANDMARKS_DIR=DIR`` — precomputed 68-point landmarks: for an
  uploaded file ``NAME`` the app uses ``DIR/NAME.json`` (format of
  ``tests/data/testdata/landmarks``) when it exists, instead of running the
  landmark detector.
* ``TALKINGHEAD_MAX_AUDIO_S`` — longest speech clip accepted, seconds
  (default 60 on CPU, 300 on GPU).
* ``TALKINGHEAD_C2PA_KEY`` / ``TALKINGHEAD_C2PA_CERT`` — PEM key and certificate
  chain to sign the C2PA manifest that marks every output as AI-generated
  (default: a credential generated on this machine; there is no opt-out in
  the app).
* ``TALKINGHEAD_STREAM_SEGMENT_FRAMES`` — frames per video segment of the
  audio tab's live preview (default 10: 0.4 s at 25 fps, one online window of
  motion).  The live preview needs FFmpeg's ``ffmpeg`` and ``ffprobe`` on
  ``PATH`` (Gradio re-muxes each segment for the browser).

Engine loading: the networks are loaded once, in a background thread started
at launch, so the page is served at once (loading takes ~10 s on a CPU, more
when the weights must first be downloaded); a request made earlier waits for
it.  On Hugging Face Spaces (``SPACE_ID`` set) the weights are downloaded
before the server starts, and GPU work runs under ``spaces.GPU`` (ZeroGPU).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import inspect
import logging
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, TypeVar

import gradio as gr

from talkinghead import (
    ACTION_UNITS,
    CONTROL_SPECS,
    AnimationOptions,
    AudioJobOptions,
    Controls,
    DubOptions,
    Engine,
    EngineLoader,
    EngineOptions,
    EnhanceOptions,
    IdleOptions,
    LiveOptions,
    LiveSession,
    MixedDrivers,
    PreparedSource,
    ProvenanceOptions,
    RegionSources,
    RenderOptions,
    SmoothingOptions,
    SourceCache,
    TalkingHeadError,
    au_controls,
    edited_intervals,
    load_credential,
    motion_curves,
    parse_keyframes,
    plot_curves,
    prefetch_weights,
    probe_audio,
    resolve_device,
    save_image,
    stream_segments,
    widget_spec,
)

log = logging.getLogger("talkinghead.app")

ASSETS = Path(__file__).resolve().parent / "assets" / "examples"
WEIGHTS_DIR = os.environ.get("TALKINGHEAD_WEIGHTS") or None
DEVICE = resolve_device(os.environ.get("TALKINGHEAD_DEVICE", EngineOptions().device))
PRECISION = os.environ.get("TALKINGHEAD_PRECISION") or EngineOptions().precision
COMPILE = os.environ.get("TALKINGHEAD_COMPILE", "") not in ("", "0")
LANDMARKS_DIR = os.environ.get("TALKINGHEAD_LANDMARKS_DIR") or None
MAX_AUDIO_S = float(os.environ.get("TALKINGHEAD_MAX_AUDIO_S") or (300 if DEVICE.type == "cuda" else 60))
ON_SPACES = bool(os.environ.get("SPACE_ID"))
OUTPUT_TTL_S = 600.0
"""Per-request output folders older than this (seconds) are deleted; Gradio keeps its own copy of results."""
STREAM_SEGMENT_FRAMES = int(os.environ.get("TALKINGHEAD_STREAM_SEGMENT_FRAMES") or 10)
"""Frames per segment of the live preview: 10 = 0.4 s at 25 fps, what one online window of motion adds."""
PROVENANCE = ProvenanceOptions()
"""Every output is C2PA-signed as AI-generated (credential from TALKINGHEAD_C2PA_KEY/_CERT, else the local one)."""
SOURCE_CACHE_SIZE = 4
"""Prepared photos kept in memory (keyed by file content), so slider previews run only W + G."""
FROM_CONFIG = "config"
"""Choice value of the audio tab's Blinks and Emotion inputs meaning: as Ditto's configuration says."""
HEAD_MOTIONS = ("from the model", "from a reference clip", "still", "from the model, in a reference clip's style")
"""Choices of the audio tab's Head motion input: the generated pose, the --pose-from clip's, a still head, or the
generated pose with the clip's style (--pose-style: its mean pose, spread and tempo)."""
AUDIO_SOURCES = ("photo", "video")
"""Choices of the audio tab's Source input: a photo (the audio job) or a video (dubbing: :meth:`Engine.dub`)."""
REGIONS = tuple(f.name for f in dataclasses.fields(RegionSources))
"""The video tab's region inputs (RegionSources' fields: head, eyes, brows, mouth, rest); FROM_CONFIG = the job's own."""

EDITS_HELP = ("Controls over a stretch of time, on top of the job (outside it nothing changes), e.g. "
              '`{"version": 2, "spans": [{"from": 2.0, "to": 3.5, "smile": 0.6, "neutralize": 0.5}]}` '
              "(README: Edits along the timeline). The motion curves shade the edited spans.")
"""Help text of the audio and video tabs' edits box."""

EXAMPLE_KEYFRAMES = """{"fps": 25, "keyframes": [
  {"t": 0.0, "yaw": 0},
  {"t": 1.0, "yaw": 20, "smile": 0.8},
  {"t": 2.0, "yaw": -10, "aaa": 0.6, "ease": "cubic"}
]}"""

F = TypeVar("F", bound=Callable[..., Any])


# ------------------------------------------------------------------ GPU on Spaces
def _gpu(fn: F) -> F:
    """``spaces.GPU`` (ZeroGPU: a GPU is attached for the call) when the ``spaces`` package exists; else ``fn``."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=120)(fn)


@contextlib.contextmanager
def _as_gr_error() -> Iterator[None]:
    """Re-raise the engine's one-line user errors (TalkingHeadError) as ``gr.Error``."""
    try:
        yield
    except TalkingHeadError as e:
        raise gr.Error(str(e)) from e


def _user_errors(fn: F) -> F:
    """Turn the engine's one-line user errors into ``gr.Error`` messages shown in the UI/API.

    A generator handler (a streaming output) stays a generator function, as
    Gradio requires, and its errors while iterating are turned too.
    """
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
            with _as_gr_error():
                yield from fn(*args, **kwargs)
        return generator  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _as_gr_error():
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


# ----------------------------------------------------------------------- engine
ENGINE = EngineLoader(WEIGHTS_DIR, str(DEVICE), PRECISION, COMPILE)
"""The engine, loaded once (in the background from launch) and shared by every request."""
SOURCES = SourceCache(SOURCE_CACHE_SIZE)


# ------------------------------------------------------------------- file helpers
def landmarks_for(media: str | None) -> str | None:
    """``TALKINGHEAD_LANDMARKS_DIR/<base name of media>.json`` if that file exists, else None (run the detector)."""
    if media is None or LANDMARKS_DIR is None:
        return None
    path = Path(LANDMARKS_DIR) / f"{Path(media).name}.json"
    return str(path) if path.is_file() else None


_OUTPUT_ROOT = Path(tempfile.mkdtemp(prefix="talkinghead-app-"))
atexit.register(shutil.rmtree, _OUTPUT_ROOT, ignore_errors=True)


def output_path(name: str) -> Path:
    """A fresh per-request path for a result file; folders of earlier requests older than OUTPUT_TTL_S are removed."""
    now = time.time()
    for old in _OUTPUT_ROOT.iterdir():
        if now - old.stat().st_mtime > OUTPUT_TTL_S:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=_OUTPUT_ROOT)) / name


def _required(value: Any, what: str) -> Any:
    if value is None:
        raise gr.Error(f"no {what} given: upload one first")
    return value


def _max_frames(value: float | None) -> int | None:
    """The UI's "max frames" (0 = all) as RenderOptions.max_frames."""
    return int(value) if value else None


def _check_audio_length(audio: str) -> None:
    duration = probe_audio(audio).duration_s
    if duration > MAX_AUDIO_S:
        raise gr.Error(f"the audio is {duration:.0f} s long; this app accepts at most {MAX_AUDIO_S:g} s "
                       f"(TALKINGHEAD_MAX_AUDIO_S): trim it or use the command line")


def _upscale_label(factor: int) -> str:
    """An EnhanceOptions.upscale factor as the app's choice ("1x", "2x")."""
    return f"{factor}x"


def _choice_value(options: type, name: str) -> Any:
    """The initial value of a choice input of an option field: its default, FROM_CONFIG standing for None."""
    value = widget_spec(options, name).value
    return FROM_CONFIG if value is None else value


def _enhance(restorer: str, weight: float, upscale: str) -> EnhanceOptions:
    """The "Enhance" inputs (restorer name, blend weight, "1x"/"2x") as EnhanceOptions."""
    return EnhanceOptions(restorer=restorer, weight=weight, upscale=int(upscale.removesuffix("x")))


def _prepared(engine: Engine, photo: str, settings: Any = None) -> PreparedSource:
    """The photo prepared by the engine (cached by content; TALKINGHEAD_LANDMARKS_DIR's landmarks when given)."""
    return SOURCES.get(engine, photo, landmarks_for(photo), settings)


# ------------------------------------------------------------------------- jobs
@dataclasses.dataclass(frozen=True)
class AudioForm:
    """The audio tab's widget values, by name (Gradio passes them to the handlers as keyword arguments).

    The field order is the API's parameter order (``/audio``, ``/audio_stream``).
    """

    photo: str | None = None
    audio: str | None = None
    head_motion: str = HEAD_MOTIONS[0]
    """One of HEAD_MOTIONS (the first: AudioJobOptions' defaults, no still head and no reference clip)."""
    reference_clip: str | None = None
    pose_blend: float = widget_spec(AudioJobOptions, "pose_blend").value
    expression_scale: float = widget_spec(AudioJobOptions, "expression_scale").value
    blinks: str = _choice_value(AudioJobOptions, "blinks")
    emotion: str = _choice_value(AudioJobOptions, "emotion")
    steps: float = widget_spec(AudioJobOptions, "steps").minimum
    """0 = Ditto's configuration."""
    seed: float = widget_spec(AudioJobOptions, "seed").value
    smoothing: float = widget_spec(SmoothingOptions, "pose").value
    paste_back: bool = widget_spec(RenderOptions, "paste_back").value
    max_frames: float = widget_spec(RenderOptions, "max_frames").minimum
    """0 = all."""
    restorer: str = widget_spec(EnhanceOptions, "restorer").value
    enhance_weight: float = widget_spec(EnhanceOptions, "weight").value
    upscale: str = _upscale_label(widget_spec(EnhanceOptions, "upscale").value)
    source: str = AUDIO_SOURCES[0]
    """One of AUDIO_SOURCES: "video" means dubbing ``source_video`` with the speech (the photo is not used)."""
    source_video: str | None = None
    mouth_gain: float = widget_spec(DubOptions, "mouth_gain").value
    mouth_base: str = widget_spec(DubOptions, "mouth_base").value
    edits: str = ""
    """Edits along the timeline: keyframe JSON (talkinghead.motion.keyframes; "" = none)."""

    @property
    def dubbing(self) -> bool:
        """Whether these values ask for dubbing (Source: video)."""
        return self.source == AUDIO_SOURCES[1]

    def dub_options(self) -> DubOptions:
        """The dubbing options these values ask for (ControlError when out of range)."""
        return DubOptions(mouth_gain=self.mouth_gain, mouth_base=self.mouth_base)

    def options(self) -> AudioJobOptions:
        """The audio-job options these values ask for."""
        from_clip, styled = self.head_motion == HEAD_MOTIONS[1], self.head_motion == HEAD_MOTIONS[3]
        return AudioJobOptions(
            steps=int(self.steps) or None, seed=int(self.seed),
            emotion=None if self.emotion == FROM_CONFIG else self.emotion,
            blinks=None if self.blinks == FROM_CONFIG else self.blinks, expression_scale=self.expression_scale,
            still_head=self.head_motion == HEAD_MOTIONS[2], pose_from=self.reference_clip if from_clip else None,
            pose_from_landmarks=landmarks_for(self.reference_clip), pose_blend=self.pose_blend,
            pose_style=self.reference_clip if styled else None, pose_style_landmarks=landmarks_for(self.reference_clip),
        )

    def render(self) -> RenderOptions:
        """The render options these values ask for (ControlError: a bad edits file)."""
        return _render(self.smoothing, self.paste_back, self.max_frames, self.restorer, self.enhance_weight,
                       self.upscale, self.edits)


@dataclasses.dataclass(frozen=True)
class VideoForm:
    """The video tab's widget values, by name; the field order is the ``/video`` API's parameter order."""

    photo: str | None = None
    driving: str | None = None
    relative: bool = widget_spec(AnimationOptions, "relative").value
    stitching: bool = widget_spec(AnimationOptions, "stitching").value
    paste_back: bool = widget_spec(RenderOptions, "paste_back").value
    multiplier: float = widget_spec(AnimationOptions, "driving_multiplier").value
    region: str = widget_spec(AnimationOptions, "region").value
    smoothing: float = widget_spec(SmoothingOptions, "pose").value
    max_frames: float = widget_spec(RenderOptions, "max_frames").minimum
    source_video: str | None = None
    restorer: str = widget_spec(EnhanceOptions, "restorer").value
    enhance_weight: float = widget_spec(EnhanceOptions, "weight").value
    upscale: str = _upscale_label(widget_spec(EnhanceOptions, "upscale").value)
    head: str = _choice_value(RegionSources, "head")
    """Driver of each face region (RegionSources; FROM_CONFIG: the job's own driver, today's behaviour)."""
    eyes: str = _choice_value(RegionSources, "eyes")
    brows: str = _choice_value(RegionSources, "brows")
    mouth: str = _choice_value(RegionSources, "mouth")
    rest: str = _choice_value(RegionSources, "rest")
    speech: str | None = None
    """Speech for the regions driven by "audio" (also the output's sound)."""
    motion_file: str | None = None
    """A motion file (saved by the CLI's --save-motion) for the regions driven by "motion"."""
    edits: str = ""
    """Edits along the timeline: keyframe JSON (talkinghead.motion.keyframes; "" = none)."""

    def options(self) -> AnimationOptions:
        """The animation options these values ask for."""
        return AnimationOptions(relative=self.relative, stitching=self.stitching, region=self.region,
                                driving_multiplier=self.multiplier)

    def regions(self) -> RegionSources:
        """The region choices as RegionSources (FROM_CONFIG as None: the job's own driver)."""
        return RegionSources(**{name: None if getattr(self, name) == FROM_CONFIG else getattr(self, name)
                                for name in REGIONS})

    @property
    def mixed(self) -> bool:
        """Whether these values ask for a job mixed by face region (a region chosen, or speech or a motion file)."""
        return not self.regions().is_default or self.speech is not None or self.motion_file is not None

    def drivers(self) -> MixedDrivers:
        """The inputs of the mixed job (:meth:`Engine.animate_mixed`); the regions left unset follow the clip."""
        return MixedDrivers(driving=self.driving, driving_landmarks=landmarks_for(self.driving),
                            video_relative=self.relative, audio=self.speech, motion=self.motion_file,
                            default="video" if self.driving is not None else "motion",
                            stitching=None if self.stitching else False)

    def render(self) -> RenderOptions:
        """The render options these values ask for (ControlError: a bad edits file)."""
        return _render(self.smoothing, self.paste_back, self.max_frames, self.restorer, self.enhance_weight,
                       self.upscale, self.edits)


def _render(smoothing: float, paste_back: bool, max_frames: float, restorer: str, enhance_weight: float,
            upscale: str, edits: str = "") -> RenderOptions:
    timeline = parse_keyframes(edits, "the edits box") if edits and edits.strip() else None
    return RenderOptions(smoothing=SmoothingOptions(pose=smoothing, expression=smoothing), paste_back=paste_back,
                         max_frames=_max_frames(max_frames), enhance=_enhance(restorer, enhance_weight, upscale),
                         timeline=timeline)


def _write_with_curves(engine: Engine, job: Any, name: str, kind: str, render: RenderOptions, base: Any = None,
                       spans: Any = None) -> tuple[str, Any]:
    """Render and write ``job`` (signed, job kind ``kind``) and plot the motion curves of the frames rendered.

    The curves are those of the motion as moved onto the face (:meth:`VideoJob.record_motion`:
    after smoothing, controls and timeline edits), relative to ``base`` (the photo's motion; None:
    the first frame); ``spans`` (seconds; default: the timeline's edited spans) are shaded.
    Returns (the output path, the matplotlib figure or None when nothing was recorded).
    """
    record = job.record_motion()
    path = str(engine.write_video(job, output_path(name), progress=True, provenance=PROVENANCE.for_job(kind)))
    motion = record.motion() if record is not None else None
    if motion is None:
        return path, None
    if spans is None:
        spans = edited_intervals(render.timeline) if render.timeline is not None else ()
    reference = None if base is None else base.to("cpu")
    return path, plot_curves(motion_curves(motion, reference), fps=job.fps, spans=spans)


class AudioRequest(NamedTuple):
    """What the audio tab's inputs ask for: the engine, the prepared photo, the speech file and the job options."""

    engine: Engine
    source: PreparedSource
    audio: str
    options: AudioJobOptions
    render: RenderOptions


def _audio_request(form: AudioForm) -> AudioRequest:
    """The audio tab's inputs, checked, as an :class:`AudioRequest` (shared by Generate and Live preview).

    Raises:
        gr.Error: no photo or speech (or no reference clip when asked to
            follow one); speech longer than MAX_AUDIO_S.
        MediaError, NoFaceError: unreadable photo, or no face in it.
    """
    photo, audio = _required(form.photo, "photo"), _required(form.audio, "audio")
    _check_audio_length(audio)
    if form.head_motion in (HEAD_MOTIONS[1], HEAD_MOTIONS[3]):
        _required(form.reference_clip, "reference clip")
    engine = ENGINE.get()
    options = form.options()
    source = _prepared(engine, photo, engine.audio_source_settings(options))
    return AudioRequest(engine, source, audio, options, form.render())


@_gpu
@_user_errors
def generate_audio(progress: gr.Progress = gr.Progress(track_tqdm=True), *, reference_clip: str | None = None,
                   source_video: str | None = None, **widgets: Any) -> tuple[str, Any]:
    """Photo + speech → talking video (25 fps, the speech as its sound) and the motion-curve plot.

    With Source "video", the source video is dubbed with the speech instead (:func:`dub`).
    ``widgets``: the audio tab's values by name (the fields of :class:`AudioForm`); the optional
    uploads are named in the signature so that the API marks them optional (default ``None``).
    """
    form = AudioForm(reference_clip=reference_clip, source_video=source_video, **widgets)
    if form.dubbing:
        return dub(form)
    engine, source, audio, options, render = _audio_request(form)
    job = engine.animate_audio(source, audio, options, render, progress=True)
    return _write_with_curves(engine, job, "talking.mp4", "audio", render, source.info.motion)


@_gpu
@_user_errors
def stream_audio(*, reference_clip: str | None = None, source_video: str | None = None,
                 **widgets: Any) -> Iterator[str]:
    """Photo + speech → the talking video as it renders: MP4 segments of STREAM_SEGMENT_FRAMES frames (25 fps).

    Frames come from :meth:`Engine.stream_audio` (Ditto's online windows,
    the first after about 0.9 s of speech); each segment carries its own
    slice of the speech as sound, so Gradio's streaming video plays in sync
    (:func:`talkinghead.stream_segments`: the speech is decoded once).
    Same inputs, checks and errors as :func:`generate_audio`.

    Raises:
        gr.Error: as :func:`_audio_request`; FFmpeg's ``ffmpeg``/``ffprobe`` are not on PATH; Source "video".
    """
    if widgets.get("source") == AUDIO_SOURCES[1]:
        raise gr.Error("The live preview cannot dub a video: use Generate, or choose Source: photo.")
    _require_ffmpeg()
    if widgets.get("head_motion") == HEAD_MOTIONS[3]:
        raise gr.Error("The live preview cannot give the head a reference clip's style (the style filter needs the "
                       "whole clip): use Generate, or choose another head motion.")
    engine, source, audio, options, render = _audio_request(AudioForm(reference_clip=reference_clip, **widgets))
    yield from stream_segments(engine, source, audio, output_path("live.mp4"), STREAM_SEGMENT_FRAMES, options, render,
                               PROVENANCE.for_job("live"))


def dub(form: AudioForm) -> tuple[str, Any]:
    """Source video + speech → the video dubbed (:meth:`Engine.dub`: the mouth from the speech, the rest the
    video's own, the speech's length and sound) and the motion-curve plot (relative to the first frame).

    Raises:
        gr.Error: no source video or speech; speech longer than MAX_AUDIO_S; a head motion other than the
            model's (dubbing keeps the video's own head).
        MediaError, NoFaceError, ControlError: as :meth:`Engine.dub`.
    """
    video, audio = _required(form.source_video, "source video"), _required(form.audio, "audio")
    if form.head_motion != HEAD_MOTIONS[0]:
        raise gr.Error("dubbing keeps the source video's own head motion: choose Head motion "
                       f"\"{HEAD_MOTIONS[0]}\", or Source: photo")
    _check_audio_length(audio)
    engine = ENGINE.get()
    render = form.render()
    job = engine.dub(video, audio, form.options(), render, form.dub_options(),
                     source_landmarks=landmarks_for(video), progress=True)
    return _write_with_curves(engine, job, "dubbed.mp4", "dub", render)


def _require_ffmpeg() -> None:
    """Raises gr.Error unless ``ffmpeg`` and ``ffprobe`` are on PATH (Gradio's streaming video re-muxes with them)."""
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        raise gr.Error(f"the live preview needs FFmpeg ({' and '.join(missing)} not found on PATH): "
                       "install FFmpeg, or use Generate")


@_gpu
@_user_errors
def generate_video(progress: gr.Progress = gr.Progress(track_tqdm=True), *, source_video: str | None = None,
                   speech: str | None = None, motion_file: str | None = None, **widgets: Any) -> tuple[str, Any]:
    """Photo (or a source video) + driving video → animated with the driving motion (the clip's fps and sound),
    and the plot of the driving motion's curves as transferred (edited spans shaded).

    ``widgets``: the video tab's values by name (the fields of :class:`VideoForm`); the optional
    uploads are named in the signature so that the API marks them optional (default ``None``).
    A source video, when given, is used instead of the photo: each of its
    frames is re-animated by the matching driving frame (video-to-video).
    Region choices (or a speech or motion file) make it a mixed job (:func:`_mixed_video`).
    """
    form = VideoForm(source_video=source_video, speech=speech, motion_file=motion_file, **widgets)
    if form.photo is None and form.source_video is None:
        raise gr.Error("no photo given: upload a photo, or a source video to re-animate")
    if form.mixed:
        return _mixed_video(form)
    driving = _required(form.driving, "driving video")
    engine = ENGINE.get()
    options, render = form.options(), form.render()
    if form.source_video is not None:
        job = engine.animate_source_video(form.source_video, driving, options, render,
                                          source_landmarks=landmarks_for(form.source_video),
                                          driving_landmarks=landmarks_for(driving))
    else:
        job = engine.animate_video(_prepared(engine, form.photo), driving, options, render,
                                   driving_landmarks=landmarks_for(driving))
    kind = "video" if form.source_video is None else "source-video"
    return _write_with_curves(engine, job, "driven.mp4", kind, render)


def _mixed_video(form: VideoForm) -> tuple[str, Any]:
    """Photo + drivers → each face region moved by the driver the form names (:meth:`Engine.animate_mixed`),
    and the curves of the mixed motion relative to the photo's.

    Raises:
        gr.Error: a source video (mixing needs a photo); the expression region, a driving multiplier; no
            driving video nor motion file; speech no region uses, or longer than MAX_AUDIO_S.
        ControlError, MediaError, NoFaceError: as :meth:`Engine.animate_mixed` (e.g. a region naming a
            driver whose input is missing).
    """
    if form.source_video is not None:
        raise gr.Error("mixing drivers by face region needs a photo: remove the source video, or the region choices")
    if form.region != VideoForm.region or form.multiplier != VideoForm.multiplier:
        raise gr.Error("the animated region and the driving multiplier do not apply to a job mixed by face region: "
                       "leave them at their defaults, or the region choices")
    if form.driving is None and form.motion_file is None:
        raise gr.Error("no driving video given: upload one (or a motion file)")
    drivers, regions = form.drivers(), form.regions()
    if form.speech is not None:
        if "audio" not in regions.resolved(drivers.default).drivers():
            raise gr.Error("a speech file is given but no region uses it: choose audio for a region, e.g. the mouth")
        _check_audio_length(form.speech)
    engine = ENGINE.get()
    settings = engine.audio_source_settings(drivers.audio_options) if "audio" in regions.drivers() else None
    source, render = _prepared(engine, form.photo, settings), form.render()
    job = engine.animate_mixed(source, drivers, regions, render, progress=True)
    return _write_with_curves(engine, job, "mixed.mp4", "mixed", render, source.info.motion)


def _controls(values: tuple[float, ...]) -> Controls:
    """Slider values (CONTROL_SPECS order, then ACTION_UNITS order) as one Controls."""
    controls = Controls.from_mapping(dict(zip(CONTROL_SPECS, values)), "sliders")
    intensities = {au: v for au, v in zip(ACTION_UNITS, values[len(CONTROL_SPECS):]) if v}
    return au_controls(intensities, base=controls) if intensities else controls


@_gpu
@_user_errors
def preview_pose(photo: str | None, paste_back: bool, restorer: str, enhance_weight: float, upscale: str,
                 *values: float) -> str | None:
    """The photo with the sliders' controls applied (one W + G pass; the photo's F and M are cached).

    Returns the path of a C2PA-signed PNG (job kind "still"), so that the
    image a user downloads is marked as AI-generated.
    """
    if photo is None:
        return None
    engine = ENGINE.get()
    image = engine.still_image(_prepared(engine, photo), _controls(values), paste_back=paste_back,
                               enhance=_enhance(restorer, enhance_weight, upscale))
    out = output_path("pose.png")
    save_image(out, image, provenance=PROVENANCE.for_job("still"))
    return str(out)


@_gpu
@_user_errors
def render_pose_path(photo: str | None, keyframes: str, paste_back: bool, max_frames: float,
                     restorer: str = AudioForm.restorer, enhance_weight: float = AudioForm.enhance_weight,
                     upscale: str = AudioForm.upscale,
                     progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple[str, Any]:
    """Photo + keyframes (JSON text, format of talkinghead.motion.keyframes) → video along the pose path, and
    the curves of the keyframed motion relative to the photo's (the keyframed span shaded)."""
    photo = _required(photo, "photo")
    track = parse_keyframes(keyframes, "the keyframes box")
    engine = ENGINE.get()
    render = _render(0.0, paste_back, max_frames, restorer, enhance_weight, upscale)
    source = _prepared(engine, photo)
    job = engine.animate_keyframes(source, track, render)
    return _write_with_curves(engine, job, "pose_path.mp4", "pose", render, source.info.motion,
                              spans=edited_intervals(track))


def neutral_values() -> list[float]:
    """Every slider at its neutral value (controls, then AU intensities 0)."""
    return [spec.neutral for spec in CONTROL_SPECS.values()] + [0.0] * len(ACTION_UNITS)


# --------------------------------------------------------------------------- UI
def _photo_input() -> gr.Image:
    return gr.Image(label="Photo", sources=["upload", "webcam"], type="filepath", image_mode=None, height=320)


# Widgets of option fields: label, range, step, default and help come from the field (talkinghead.widget_spec).
def option_slider(options: type, name: str) -> gr.Slider:
    """A slider for a numeric option field; an unset default (None) shows as the slider's minimum."""
    spec = widget_spec(options, name)
    value = spec.minimum if spec.value is None else spec.value
    return gr.Slider(spec.minimum, spec.maximum, value=value, step=spec.step, label=spec.label, info=spec.info)


def option_checkbox(options: type, name: str) -> gr.Checkbox:
    """A checkbox for a boolean option field."""
    spec = widget_spec(options, name)
    return gr.Checkbox(value=spec.value, label=spec.label)


def option_choices(options: type, name: str, shown: dict[Any, str] | None = None, unset: str | None = None,
                   widget: Callable[..., gr.components.Component] = gr.Radio) -> gr.components.Component:
    """A radio (or ``widget``) over an option field's choices; ``shown`` renames some, ``unset`` labels None."""
    spec = widget_spec(options, name)
    choices = [(unset, FROM_CONFIG)] if unset is not None else []
    choices += [((shown or {}).get(c, str(c)), c) for c in spec.choices]
    value = _choice_value(options, name) if unset is not None else spec.value
    return widget(choices, value=value, label=spec.label)


def _max_frames_input() -> gr.Number:
    spec = widget_spec(RenderOptions, "max_frames")
    return gr.Number(label=spec.label, value=spec.minimum, minimum=spec.minimum, precision=0)


def _smoothing_input() -> gr.Slider:
    return option_slider(SmoothingOptions, "pose")


def _enhance_inputs() -> list[gr.components.Component]:
    """Face restoration (restorer, blend weight) and 2x super-resolution, in a closed accordion."""
    with gr.Accordion("Enhance: face restoration, 2x upscale", open=False):
        restorer = option_choices(EnhanceOptions, "restorer", {"none": "off", "gfpgan": "GFPGAN v1.4",
                                                                "codeformer": "CodeFormer (non-commercial)"})
        weight = option_slider(EnhanceOptions, "weight")
        spec = widget_spec(EnhanceOptions, "upscale")
        upscale = gr.Radio([_upscale_label(c) for c in spec.choices], value=_upscale_label(spec.value),
                           label=spec.label)
    return [restorer, weight, upscale]


def _example(*names: str) -> list[list[str]]:
    """One example row of assets/examples files, or none when the project does not ship them."""
    paths = [ASSETS / name for name in names]
    return [[str(p) for p in paths]] if all(p.is_file() for p in paths) else []


def _audio_tab() -> None:
    with gr.Row():
        with gr.Column():
            source = gr.Radio(list(AUDIO_SOURCES), value=AudioForm.source, label="Source: photo or video",
                              info="video: dubbing, the new speech on the video (the mouth from the speech, "
                                   "the rest the video's own)")
            with gr.Row():
                photo = _photo_input()
                source_video = gr.Video(label="Source video (dubbing)", height=320)
            audio = gr.Audio(label="Speech", sources=["upload", "microphone"], type="filepath")
            head_motion = gr.Radio(list(HEAD_MOTIONS), value=AudioForm.head_motion, label="Head motion",
                                   info=f"still: {widget_spec(AudioJobOptions, 'still_head').info}")
            reference_clip = gr.Video(label="Reference clip (same person; for the head motions that name it)")
            pose_blend = option_slider(AudioJobOptions, "pose_blend")
            with gr.Accordion("More options", open=False):
                expression_scale = option_slider(AudioJobOptions, "expression_scale")
                blinks = option_choices(AudioJobOptions, "blinks", {"model": "from the model",
                                                                    "template": "blink template"},
                                        unset="as Ditto's configuration says")
                emotion = option_choices(AudioJobOptions, "emotion", unset="as Ditto's configuration says",
                                         widget=gr.Dropdown)
                steps = option_slider(AudioJobOptions, "steps")
                seed_spec = widget_spec(AudioJobOptions, "seed")
                seed = gr.Number(value=seed_spec.value, precision=0, label=seed_spec.label, info=seed_spec.info)
                smoothing = _smoothing_input()
                paste_back = option_checkbox(RenderOptions, "paste_back")
            with gr.Accordion("Dubbing (Source: video)", open=False):
                mouth_gain = option_slider(DubOptions, "mouth_gain")
                mouth_base = option_choices(DubOptions, "mouth_base")
            enhance = _enhance_inputs()
            edits = _edits_input()
            max_frames = _max_frames_input()
            with gr.Row():
                button = gr.Button("Generate", variant="primary")
                live_button = gr.Button("Live preview (streams as it renders)")
        with gr.Column():
            video = gr.Video(label="Talking video")
            plot = gr.Plot(label="Motion curves")
            live = gr.Video(label="Live preview", streaming=True, autoplay=True)
    gr.Markdown(f"Speech up to {MAX_AUDIO_S:g} s (`TALKINGHEAD_MAX_AUDIO_S`).")
    gr.Examples(_example("astronaut.png", "speech_en.wav"), inputs=[photo, audio])
    restorer, enhance_weight, upscale = enhance
    widgets = dict(photo=photo, audio=audio, head_motion=head_motion, reference_clip=reference_clip,
                   pose_blend=pose_blend, expression_scale=expression_scale, blinks=blinks, emotion=emotion,
                   steps=steps, seed=seed, smoothing=smoothing, paste_back=paste_back, max_frames=max_frames,
                   restorer=restorer, enhance_weight=enhance_weight, upscale=upscale, source=source,
                   source_video=source_video, mouth_gain=mouth_gain, mouth_base=mouth_base, edits=edits)
    button.click(generate_audio, inputs_kwargs=widgets, outputs=[video, plot], api_name="audio")
    live_button.click(stream_audio, inputs_kwargs=widgets, outputs=live, api_name="audio_stream")


def _edits_input() -> gr.Code:
    """Edits along the timeline (the CLI's --keyframes): keyframe JSON, empty = none, in a closed accordion."""
    with gr.Accordion("Edits along the timeline (optional)", open=False):
        gr.Markdown(EDITS_HELP)
        return gr.Code("", language="json", label="Edits (keyframe JSON)")


def _region_inputs() -> tuple[dict[str, gr.components.Component], gr.Audio, gr.File]:
    """The driver of each face region (RegionSources' choices; unset: the driving video, as without them), the
    speech for the "audio" choice and the motion file for "motion", in a closed accordion."""
    with gr.Accordion("Drivers by face region: head, eyes, brows, mouth, rest", open=False):
        with gr.Row():
            regions = {name: option_choices(RegionSources, name, unset="the driving video", widget=gr.Dropdown)
                       for name in REGIONS}
        speech = gr.Audio(label="Speech (for the regions driven by audio; also the sound)", sources=["upload"],
                          type="filepath")
        motion_file = gr.File(label="Motion file (for the regions driven by motion; the CLI's --save-motion)",
                              type="filepath")
    return regions, speech, motion_file


def _video_tab() -> None:
    with gr.Row():
        with gr.Column():
            with gr.Row():
                photo = _photo_input()
                source_video = gr.Video(label="Source video (optional: re-animated instead of the photo)", height=320)
            driving = gr.Video(label="Driving video")
            with gr.Row():
                relative = option_checkbox(AnimationOptions, "relative")
                stitching = option_checkbox(AnimationOptions, "stitching")
                paste_back = option_checkbox(RenderOptions, "paste_back")
            multiplier = option_slider(AnimationOptions, "driving_multiplier")
            region = option_choices(AnimationOptions, "region", {"exp": "expression", "lip": "lips"})
            smoothing = _smoothing_input()
            regions, speech, motion_file = _region_inputs()
            enhance = _enhance_inputs()
            edits = _edits_input()
            max_frames = _max_frames_input()
            button = gr.Button("Generate", variant="primary")
        with gr.Column():
            video = gr.Video(label="Result")
            plot = gr.Plot(label="Motion curves (driving motion as transferred; edited spans shaded)")
    gr.Examples(_example("astronaut.png", "driving_d0.mp4"), inputs=[photo, driving])
    restorer, enhance_weight, upscale = enhance
    widgets = dict(photo=photo, driving=driving, relative=relative, stitching=stitching, paste_back=paste_back,
                   multiplier=multiplier, region=region, smoothing=smoothing, max_frames=max_frames,
                   source_video=source_video, restorer=restorer, enhance_weight=enhance_weight, upscale=upscale,
                   **regions, speech=speech, motion_file=motion_file, edits=edits)
    button.click(generate_video, inputs_kwargs=widgets, outputs=[video, plot], api_name="video")


def _slider(name: str) -> gr.Slider:
    spec = CONTROL_SPECS[name]
    step = 0.5 if spec.unit == "degrees" else 0.01
    return gr.Slider(spec.low, spec.high, value=spec.neutral, step=step, label=f"{name} ({spec.unit})")


def _pose_tab() -> None:
    with gr.Row():
        with gr.Column():
            photo = _photo_input()
            paste_back = option_checkbox(RenderOptions, "paste_back")
            enhance = _enhance_inputs()
            sliders = [_slider(name) for name in CONTROL_SPECS]
            with gr.Accordion("Action units (FACS)", open=False):
                sliders += [gr.Slider(0, 1, value=0, step=0.05, label=f"{au} {name}")
                            for au, (name, _) in ACTION_UNITS.items()]
            reset = gr.Button("Reset")
        with gr.Column():
            preview = gr.Image(label="Preview", type="numpy", format="png", interactive=False, elem_id="pose-preview")
            keyframes = gr.Code(EXAMPLE_KEYFRAMES, language="json", label="Pose path keyframes")
            max_frames = _max_frames_input()
            button = gr.Button("Render a pose path", variant="primary")
            video = gr.Video(label="Pose path", elem_id="pose-path-video")
            plot = gr.Plot(label="Pose path curves (keyframed span shaded)")
    gr.Examples(_example("astronaut.png"), inputs=[photo])
    preview_inputs = [photo, paste_back, *enhance, *sliders]
    for slider in sliders:
        slider.release(preview_pose, preview_inputs, preview, api_name=False)
    for option in (paste_back, *enhance):
        option.input(preview_pose, preview_inputs, preview, api_name=False)
    photo.change(preview_pose, preview_inputs, preview, api_name="preview")
    reset.click(neutral_values, None, sliders, api_name=False).then(preview_pose, preview_inputs, preview,
                                                                     api_name=False)
    button.click(render_pose_path, [photo, keyframes, paste_back, max_frames, *enhance], [video, plot],
                 api_name="pose_path")


# ------------------------------------------------------------------------- live
LIVE_NEEDS_GPU = ("The live avatar needs a CUDA GPU: on this CPU-only host one frame takes about 10 s to render, so "
                  "it cannot keep up with speech. Run the app on a GPU, or try the live path here without rendering: "
                  "python -m talkinghead live --source PHOTO --audio SPEECH --motion-only")
LIVE_CHUNK_S = 0.2
"""Seconds of microphone audio per streamed chunk (Gradio's ``stream_every``), and the idle timer's period."""
LIVE_SLEEP_S = 120.0
"""Seconds without microphone audio after which the Live tab drops its session (no more idle frames rendered)."""


def live_step(chunk: tuple[int, Any] | None, photo: str | None, listening: float,
              session: LiveSession | None) -> tuple[Any, LiveSession | None, str]:
    """One microphone chunk → the newest ready frame, the session (per browser tab), the measured latency.

    The session (:meth:`Engine.live`, idle motion with the ``listening``
    strength) opens on the first chunk; Ditto's first frame comes after about
    0.9 s of audio, then 10 frames per 0.4 s.  Latency shown: the newest
    frame's ready time minus its end on the audio timeline (the microphone
    streams from the session's start).

    Raises:
        gr.Error: a CPU-only host (:data:`LIVE_NEEDS_GPU`), no photo.
    """
    if DEVICE.type != "cuda":
        raise gr.Error(LIVE_NEEDS_GPU)
    if chunk is None:
        return gr.skip(), session, "waiting for the microphone"
    if session is None:
        engine = ENGINE.get()
        source = _prepared(engine, _required(photo, "a photo"), engine.audio_source_settings(AudioJobOptions()))
        options = LiveOptions(idle=IdleOptions(listening=float(listening)))
        session = engine.live(source, options, render=RenderOptions(paste_back=False))
    rate, samples = chunk
    frames = session.push_audio(samples, rate)
    if not frames:
        return gr.skip(), session, f"listening… {session.samples / session.sample_rate:.1f} s of audio in"
    last = frames[-1]
    latency = last.ready_s - (last.time_s + 1 / session.fps + session.skipped_s)
    low, high = session.lookahead_ms
    return last.image, session, (f"frame {last.index}: latency {latency * 1000:.0f} ms (look-ahead of the online "
                                 f"windows {low:g}–{high:g} ms), speech weight {last.speech:.2f}")


def live_stop(session: LiveSession | None) -> tuple[Any, LiveSession | None, str]:
    """The microphone stopped: the session stays open and the avatar idles on between turns (:func:`live_tick`;
    the frames of the last 0.5–0.9 s of speech, which Ditto's look-ahead held back, come out first).

    Returns (no change to the frame; the session; the status line).
    """
    if session is None or session.ended:
        return gr.skip(), None, ""
    return gr.skip(), session, "microphone off: the avatar idles between turns; record again to talk"


def live_tick(session: LiveSession | None) -> tuple[Any, LiveSession | None, Any]:
    """The idle timer (every :data:`LIVE_CHUNK_S`): with the microphone off, keep the avatar alive
    (:meth:`LiveSession.keep_alive`: the silence that keeps the audio timeline up with the wall clock, once
    no chunk came for 0.6 s); after :data:`LIVE_SLEEP_S` without the microphone the session is dropped.

    Returns (the newest frame, or no change; the session, or None once dropped; the status line, or no change).
    """
    if session is None or session.ended:
        return gr.skip(), session, gr.skip()
    if session.quiet_s > LIVE_SLEEP_S:
        return gr.skip(), None, (f"asleep after {LIVE_SLEEP_S:g} s without the microphone: record to wake the "
                                 "avatar")
    frames = session.keep_alive()
    if not frames or frames[-1].image is None:
        return gr.skip(), session, gr.skip()
    last = frames[-1]
    return last.image, session, f"between turns: frame {last.index}, speech weight {last.speech:.2f}"


def live_reset() -> tuple[None, str]:
    """A new photo or listening strength: drop the session (the next microphone chunk opens one with them)."""
    return None, ""


def _live_tab() -> None:
    if DEVICE.type != "cuda":
        gr.Markdown(f"**{LIVE_NEEDS_GPU}**")
    with gr.Row():
        with gr.Column():
            photo = _photo_input()
            listening = option_slider(IdleOptions, "listening")
            mic = gr.Audio(label="Microphone", sources=["microphone"], streaming=True, type="numpy")
        with gr.Column():
            video = gr.Image(label="Avatar (live)", streaming=True, height=512)
            status = gr.Textbox(label="Latency", interactive=False)
    session = gr.State(None)
    mic.stream(_user_errors(live_step), [mic, photo, listening, session], [video, session, status],
               stream_every=LIVE_CHUNK_S, concurrency_limit=4, api_name="live")
    mic.stop_recording(live_stop, [session], [video, session, status])
    timer = gr.Timer(LIVE_CHUNK_S, active=DEVICE.type == "cuda")
    timer.tick(live_tick, [session], [video, session, status], concurrency_limit=4, show_progress="hidden",
               api_name=False)
    for changed in (photo.change, listening.release):
        changed(live_reset, None, [session, status], api_name=False)


def build_app() -> gr.Blocks:
    """The app's tabs (audio-driven, video-driven, pose & expression, live), queued for one GPU."""
    with gr.Blocks(title="talkinghead", delete_cache=(int(OUTPUT_TTL_S), int(OUTPUT_TTL_S))) as demo:
        gr.Markdown(f"# talkinghead\nOne portrait photo in, a talking-head video out. Device: **{DEVICE}**")
        with gr.Tab("Audio-driven"):
            _audio_tab()
        with gr.Tab("Video-driven"):
            _video_tab()
        with gr.Tab("Pose & expression"):
            _pose_tab()
        with gr.Tab("Live"):
            _live_tab()
    return demo.queue(default_concurrency_limit=1, max_size=32)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (a container or Space shutting down) stops the app like Ctrl-C: Gradio closes its server,
    and the exit handlers remove the temporary files of unfinished outputs."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    try:
        load_credential(PROVENANCE)  # a bad TALKINGHEAD_C2PA_KEY/_CERT stops the app before it serves anything
    except TalkingHeadError as e:
        import sys

        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    if ON_SPACES:
        prefetch_weights(WEIGHTS_DIR)  # the Hub downloads happen before the server starts
    ENGINE.warm_up()
    build_app().launch(allowed_paths=[str(ASSETS)])
