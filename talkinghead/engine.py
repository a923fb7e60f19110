"""The engine: the public, in-process entry point that runs whole jobs, as glue over the stages::

    photo ─ media.image ─ face (landmarks, crop) ─ render.source (M, F) ──┐
    clip ── media.video ─ drivers.video (crop, M) ─ motion (transfer) ────┴─ render.frames (W, G)
          ─ enhance.finish (face restoration, paste-back, 2× upscale) ─ media.video (H.264 + audio)

Each job only says how its motion becomes driven keypoints (:mod:`talkinghead.render.frames`; a speech
clip's motion: :mod:`talkinghead.audio_job`); a source video takes the photo's place frame by frame.
Frames are streamed end to end (memory does not grow with the clip length).  A video-driven job::

    engine = Engine.from_pretrained()                  # downloads ~520 MB once
    job = engine.animate_video(engine.prepare_source("photo.jpg"), "driving.mp4")
    engine.write_video(job, "out.mp4")
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from .audio_job import HeadReference, audio_chunks, edit_motion, generate_motion, head_reference, stream_edited_motion
from .devices import resolve_device
from .drivers.audio import AudioBackend, SourceSettings, audio_backend
from .drivers.batches import smoothed_batches
from .drivers.video import CropMode, DrivingBatch, DrivingCrop, VideoDriver
from .dub_job import DubOptions, dub_video
from .enhance import EnhanceOptions, FaceRestorer, Upscaler, load_restorer, load_upscaler
from .enhance.finish import Finisher
from .errors import ControlError
from .face.crop import DrivingBoxMode
from .face.landmarks import FaceAlignmentLandmarks, JsonLandmarks, LandmarkProvider
from .jobs import AudioJobOptions, EngineOptions, RenderOptions, VideoJob
from .live_job import LiveOptions, LiveSession
from .media.provenance import ProvenanceOptions
from .media.video import AudioSource, frames_at_rate, probe_video, write_frames
from .mixed_job import MixedDrivers, RegionSources, animate_mixed
from .models.liveportrait import LivePortraitNetworks
from .motion.animate import AnimationOptions
from .motion.controls import Controls
from .motion.frame import MotionSequence
from .motion.keyframes import KeyframeTrack, sample_controls
from .motion.smoothing import SmoothingOptions, smooth_motion
from .motion.timeline import lay_timeline
from .render import Renderer
from .render.frames import Driven, absolute_keypoints, driven_keypoints, render_frames, source_video_driven
from .render.source import PreparedSource, photo_landmarks, prepare_image
from .weights import WeightStore, resolve_revisions

LandmarkSpec = LandmarkProvider | str | os.PathLike | None
"""68-point landmarks: a provider, a landmark JSON file, or None for the engine's default detector."""


class Engine:
    """Loads the networks once and runs jobs with them.

    Args:
        networks: LivePortrait's F, M, W, G, S on one device (eval mode).
        landmarks: the default landmark provider; None: face-alignment, created on first use.
        precision, compile: W and G's precision ("auto", "fp32", "bf16", "fp16") and torch.compile (:class:`Renderer`).
        store: where the weights loaded later come from (audio backend, restorers, upscaler).
    """

    def __init__(self, networks: LivePortraitNetworks, landmarks: LandmarkProvider | None = None, precision: str =
                 EngineOptions.precision, store: WeightStore | None = None, compile: bool = EngineOptions.compile) -> None:
        self.networks = networks
        self.device = next(networks.decoder.parameters()).device
        self.renderer = Renderer(networks.appearance, networks.warping, networks.decoder, precision, compile)
        self._landmarks = landmarks
        self.store = store or WeightStore()
        self._audio_backends: dict[str, AudioBackend] = {}
        self._restorers: dict[str, FaceRestorer] = {}
        self._upscaler: Upscaler | None = None

    @classmethod
    def from_pretrained(cls, weights: str | os.PathLike | None = None, device: str | torch.device = EngineOptions.device,
                        landmarks: LandmarkProvider | None = None, precision: str = EngineOptions.precision,
                        progress: bool = True, revision: str | Mapping[str, str] | None = None,
                        compile: bool = EngineOptions.compile) -> "Engine":
        """Build the engine from LivePortrait's checkpoints on ``device`` ("auto", "cuda" or "cpu").

        ``weights``: a folder laid out like the Hub repos (``DIR/liveportrait/base_models/*.pth``…); None:
        ``./checkpoints`` if it holds the files, else the Hub (cached; ``progress``: its download bars).
        ``revision`` (not with ``weights``): LivePortrait's Hub revision (branch, tag or sha), or revisions
        by family or repo id (:func:`talkinghead.weights.resolve_revisions`), also for files loaded later.
        Raises WeightsError (a checkpoint missing, unsafe or of the wrong layout; a bad ``revision``) or DeviceError.
        """
        if not progress:
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        device = resolve_device(device)
        store = WeightStore(weights, revisions=resolve_revisions(revision))
        networks = LivePortraitNetworks.from_pretrained(store, device=device)
        return cls(networks, landmarks=landmarks, precision=precision, store=store, compile=compile)

    def _provider(self, spec: LandmarkSpec) -> LandmarkProvider:
        if spec is None and self._landmarks is None:
            self._landmarks = FaceAlignmentLandmarks(device=str(self.device))
        if spec is None:
            return self._landmarks
        return JsonLandmarks(spec) if isinstance(spec, (str, os.PathLike)) else spec

    def _batch_size(self, render: RenderOptions) -> int:
        return render.batch_size or self.renderer.batch_size

    @torch.inference_mode()
    def prepare_source(self, image: str | os.PathLike | np.ndarray, landmarks: LandmarkSpec = None,
                       settings: SourceSettings | None = None) -> PreparedSource:
        """Load a photo (a file or (H, W, 3) uint8 RGB), crop its face and run M and F: reusable for any job.

        ``settings``: an audio backend's size and crop rules (:meth:`audio_source_settings`); None:
        LivePortrait's (long side ≤ 1280 px, crop scale 2.3, shift −0.125).  Raises MediaError (unreadable
        photo) or NoFaceError.
        """
        original, points = photo_landmarks(image, self._provider(landmarks))
        return prepare_image(original, points, self.networks.motion, self.renderer, settings)

    # ----------------------------------------------------------- video jobs
    def animate_video(self, source: PreparedSource, driving: str | os.PathLike,
                      options: AnimationOptions = AnimationOptions(), render: RenderOptions = RenderOptions(), *,
                      driving_landmarks: LandmarkSpec = None, crop_driving: CropMode = DrivingCrop.crop_driving,
                      driving_box: DrivingBoxMode = DrivingCrop.driving_box) -> VideoJob:
        """Animate ``source`` with a driving video's motion: a lazy job at its frame rate, with its audio.

        ``crop_driving``: "auto" (crop unless the clip is square), "on", "off".  ``driving_box``: "average"
        (the clip's mean face box, as LivePortrait: the driver's head translation and zoom reach the
        motion) or "track" (per-frame boxes smoothed over 0.5 s).  Raises MediaError (the driving file is
        missing or not a video) or ControlError (an unknown ``driving_box``).
        """
        driver = self._video_driver(driving, options, render, driving_landmarks, crop_driving, driving_box, render.max_frames)
        return VideoJob(frames=self._driven_frames(source, driver, options, render, driver.fps),
                        fps=driver.fps, n_frames=driver.n_frames, audio=driver.audio())

    def _video_driver(self, driving: str | os.PathLike, options: AnimationOptions, render: RenderOptions,
                      landmarks: LandmarkSpec, crop: CropMode, box: DrivingBoxMode, max_frames: int | None) -> VideoDriver:
        """The driving clip's motion stream: frames cropped and eye/lip ratios measured as ``options`` need."""
        provider = self._provider(landmarks) if crop != "off" or options.retargeting else None
        return VideoDriver(driving, self.networks.motion, landmarks=provider, crop=crop, box=box, max_frames=max_frames,
                           need_ratios=options.retargeting, batch_size=self._batch_size(render))

    def animate_source_video(self, source_video: str | os.PathLike, driving: str | os.PathLike,
                             options: AnimationOptions = AnimationOptions(), render: RenderOptions = RenderOptions(),
                             *, source_landmarks: LandmarkSpec = None, driving_landmarks: LandmarkSpec = None,
                             crop_driving: CropMode = DrivingCrop.crop_driving,
                             driving_box: DrivingBoxMode = DrivingCrop.driving_box) -> VideoJob:
        """Re-animate a video of a face with a driving video (LivePortrait's video-to-video; as :meth:`animate_video`).

        Source frame i is driven by driving frame i, pasted back into itself (:func:`~.render.frames.source_video_driven`):
        min(source frames at the driving rate, driving frames, ``render.max_frames``) frames of the source's size
        (long side ≤ 1280 px, even sides), 512×512 without paste-back; ``render.batch_size``: M's batch.  Raises
        MediaError (a missing or non-video file; later, a landmark file that does not fit), NoFaceError (later: no
        source frame shows a face) or ControlError (an unknown ``driving_box``).
        """
        fps = probe_video(driving).fps
        limit = min(frames_at_rate(probe_video(source_video), fps), render.max_frames or math.inf)
        driver = self._video_driver(driving, options, render, driving_landmarks, crop_driving, driving_box, limit)
        frames = self._source_video_frames(source_video, source_landmarks, driver, options, render)
        return VideoJob(frames=frames, fps=driver.fps, n_frames=driver.n_frames, audio=driver.audio())

    def _source_video_frames(self, video: str | os.PathLike, landmarks: LandmarkSpec, driving: VideoDriver,
                             options: AnimationOptions, render: RenderOptions) -> Iterator[np.ndarray]:
        driven = source_video_driven(video, self._provider(landmarks), smoothed_batches(driving, render.smoothing),
                                     driving.fps, driving.n_frames, self.networks.motion, self.renderer,
                                     self.networks.stitching, options, render.controls, render.timeline)
        yield from self._frames(driven, render)

    def animate_relative_motion(self, source: PreparedSource, driving: MotionSequence, fps: float,
                               options: AnimationOptions = AnimationOptions(),
                               render: RenderOptions = RenderOptions()) -> VideoJob:
        """:meth:`animate_video` with the driving motion given as (T) frames at ``fps`` Hz (frame 0: the anchor).

        Raises ControlError for eye/lip retargeting (it needs the driving frames' landmarks).
        """
        if options.retargeting:
            raise ControlError("eye/lip retargeting needs a driving video (landmarks of its frames), not a motion file")
        driving = driving.to(self.device)[: render.max_frames or driving.n_frames]
        size = self._batch_size(render)
        batches = (DrivingBatch(driving[i:i + size], None) for i in range(0, driving.n_frames, size))
        return VideoJob(frames=self._driven_frames(source, batches, options, render, fps), fps=fps, n_frames=driving.n_frames)

    def _driven_frames(self, source: PreparedSource, batches: Iterable[DrivingBatch], options: AnimationOptions,
                       render: RenderOptions, fps: float) -> Iterator[np.ndarray]:
        """Relative/absolute transfer of driving batches (smoothed, controls and timeline stacked), rendered."""
        driven = driven_keypoints(source, smoothed_batches(batches, render.smoothing), self.networks.stitching, options,
                                  render.controls, render.timeline, fps)
        return self._frames(driven, render)

    def extract_motion(self, video: str | os.PathLike, landmarks: LandmarkSpec = None, max_frames: int | None = None,
                       crop: CropMode = DrivingCrop.crop_driving,
                       box: DrivingBoxMode = DrivingCrop.driving_box) -> MotionSequence:
        """Motion of every frame of a video as M sees it (e.g. a head-pose track); ``box``: see :meth:`animate_video`.

        Raises MediaError (unreadable video), NoFaceError (no face to crop) or ControlError (an unknown ``box``).
        """
        driver = VideoDriver(video, self.networks.motion, landmarks=self._provider(landmarks) if crop != "off" else None,
                             crop=crop, box=box, max_frames=max_frames, batch_size=8 if self.device.type == "cuda" else 4)
        return MotionSequence.cat([batch.motion.motion for batch in driver])

    # ------------------------------------------------- motion-sequence jobs
    def animate_absolute_motion(self, source: PreparedSource, motion: MotionSequence, fps: float,
                       render: RenderOptions = RenderOptions(), *, audio: AudioSource | None = None,
                       controls: Sequence[Controls] | None = None, stitching: bool = True) -> VideoJob:
        """Render an absolute (T) motion sequence (degrees, any device) at ``fps`` Hz, smoothed whole first.

        Raises ControlError when ``controls`` (per frame, replacing ``render.controls``) are not T.
        """
        if controls is not None and len(controls) != motion.n_frames:
            raise ControlError(f"{len(controls)} controls for {motion.n_frames} motion frames: give one per frame")
        whole = smooth_motion(motion.to(self.device), render.smoothing)
        motion = whole[: render.max_frames or whole.n_frames]
        motion, controls = lay_timeline(render.timeline, motion, source.info, fps, controls or render.controls)
        driven = absolute_keypoints(source, motion, controls, self.networks.stitching, self._batch_size(render), stitching)
        return VideoJob(frames=self._frames(driven, render), fps=fps, n_frames=motion.n_frames, audio=audio,
                        motion=whole)

    def animate_keyframes(self, source: PreparedSource, track: KeyframeTrack,
                          render: RenderOptions = RenderOptions()) -> VideoJob:
        """A still photo animated along a pose path (keyframed controls), at the track's fps."""
        controls = sample_controls(track, render.max_frames)  # only the frames rendered
        motion = MotionSequence.cat([source.info.motion] * len(controls))
        return self.animate_absolute_motion(source, motion, track.fps, render, controls=controls)

    def still_image(self, source: PreparedSource, controls: Controls = Controls(), paste_back: bool = True,
                    enhance: EnhanceOptions = EnhanceOptions()) -> np.ndarray:
        """The photo with controls applied, W + G only: one (H, W, 3) uint8 RGB frame.

        The photo's size, 512×512 without paste-back; twice each side with ``enhance.upscale == 2``.
        """
        render = RenderOptions(paste_back=paste_back, controls=controls, enhance=enhance)
        return next(iter(self.animate_absolute_motion(source, source.info.motion, 25.0, render).frames))

    # ------------------------------------------------------------ audio job
    def audio_backend(self, name: str = "ditto") -> AudioBackend:
        """The audio backend registered as ``name``, built once (on the engine's store and device) and kept.

        Raises ControlError (no backend of that name) or WeightsError (its files cannot be used).
        """
        if name not in self._audio_backends:
            self._audio_backends[name] = audio_backend(name).from_pretrained(self.store, device=self.device)
        return self._audio_backends[name]

    def audio_source_settings(self, options: AudioJobOptions | None = None) -> SourceSettings | None:
        """How the audio job sizes and crops the photo (Ditto: its configuration's rules); raises WeightsError."""
        options = options or AudioJobOptions()
        return self.audio_backend(options.backend).source_settings(options)

    def audio_motion(self, source: PreparedSource, audio: str | os.PathLike | np.ndarray,
                     options: AudioJobOptions = AudioJobOptions(), progress: bool = False) -> MotionSequence:
        """Motion for a speech clip (a file or a (S,) float32 mono waveform at the backend's rate, Ditto: 16 kHz)
        at the backend's rate (Ditto: 25 fps, ceil(duration·25) frames).  Raises MediaError (unreadable, empty or
        silent audio; unreadable pose clip), ControlError (an option out of range) or DiffusionError (unsafe steps).
        """
        backend = self.audio_backend(options.backend)
        motion = generate_motion(backend, source, audio, options, progress)
        return edit_motion(source, motion, options, self._reference_pose(options), fps=backend.fps)

    def stream_audio(self, source: PreparedSource, audio: str | os.PathLike | np.ndarray | Iterable[np.ndarray],
                     options: AudioJobOptions = AudioJobOptions(),
                     render: RenderOptions = RenderOptions()) -> Iterator[np.ndarray]:
        """:meth:`animate_audio`'s (H, W, 3) uint8 RGB frames, yielded as each chunk of motion is ready (a live view).

        ``audio`` may also be an iterable of waveform chunks (e.g. a microphone).  Ditto streams (its
        :func:`~talkinghead.drivers.audio.ditto.stream.stream_motion`: first frames after ~0.9 s of audio,
        then 10 per 0.4 s; motion slightly unlike the offline job's); smoothing and the timeline run per chunk.
        """
        backend = self.audio_backend(options.backend)
        chunks = audio_chunks(audio, backend.sample_rate)
        motion = stream_edited_motion(backend, source, chunks, options, self._reference_pose(options, True), render)
        per_chunk = dataclasses.replace(render, smoothing=SmoothingOptions(), max_frames=None, timeline=None)
        stitching = backend.stitching(options, online=True)
        for ready, controls in motion:
            yield from self.animate_absolute_motion(source, ready, backend.fps, per_chunk, controls=controls,
                                                    stitching=stitching).frames

    def live(self, source: PreparedSource, options: LiveOptions = LiveOptions(), audio: AudioJobOptions = AudioJobOptions(),
             render: RenderOptions | bool = True) -> LiveSession:
        """A live session: push 16 kHz speech, get frames (``render=False``: motion) as they are ready (:mod:`.live_job`)."""
        return LiveSession(self, source, options, audio, render, self._reference_pose(audio, True))

    def _reference_pose(self, options: AudioJobOptions, streamed: bool = False) -> HeadReference:
        return head_reference(options, lambda clip, marks: self.extract_motion(clip, landmarks=marks), streamed)

    def animate_audio(self, source: PreparedSource, audio: str | os.PathLike,
                      options: AudioJobOptions = AudioJobOptions(), render: RenderOptions = RenderOptions(), *,
                      motion: MotionSequence | None = None, fps: float | None = None, progress: bool = False) -> VideoJob:
        """Photo + speech → talking video at the backend's rate (Ditto: 25 fps) with the speech as its audio track.

        The motion (``job.motion``) is generated first, then frames are rendered lazily.  ``motion``:
        render this sequence instead (e.g. a motion file, at ``fps``; None = the backend's rate).  Errors:
        as :meth:`audio_motion`.
        """
        stitching = True
        if motion is None:
            backend = self.audio_backend(options.backend)
            motion, fps = self.audio_motion(source, audio, options, progress=progress), backend.fps
            stitching = backend.stitching(options)
        elif fps is None:
            fps = audio_backend(options.backend).fps
        n = motion.n_frames if render.max_frames is None else min(render.max_frames, motion.n_frames)
        return self.animate_absolute_motion(source, motion, fps, render, audio=AudioSource(audio, duration_s=n / fps),
                                   stitching=stitching)

    def animate_mixed(self, source: PreparedSource, drivers: MixedDrivers, regions: RegionSources = RegionSources(),
                      render: RenderOptions = RenderOptions(), progress: bool = False) -> VideoJob:
        """Each face region driven by the driver ``regions`` names (:mod:`talkinghead.mixed_job`; errors there)."""
        return animate_mixed(self, source, drivers, regions, render, progress)

    def dub(self, source_video: str | os.PathLike, audio: str | os.PathLike | np.ndarray,
            options: AudioJobOptions = AudioJobOptions(), render: RenderOptions = RenderOptions(),
            dubbing: DubOptions = DubOptions(), *, source_landmarks: LandmarkSpec = None, progress: bool = False) -> VideoJob:
        """Dubbing: new speech on a face video, the mouth from the audio driver (rules, errors: :mod:`.dub_job`)."""
        return dub_video(self, source_video, audio, options, render, dubbing, self._provider(source_landmarks), progress)

    # ------------------------------------------------- finishing and output
    def _frames(self, driven: Iterable[Driven], render: RenderOptions) -> Iterator[np.ndarray]:
        """Driven batches rendered and finished as ``render`` asks (restore, paste back, upscale)."""
        return render_frames(self.renderer, driven, self.finisher(render))

    def finisher(self, render: RenderOptions = RenderOptions()) -> Finisher:
        """The finishing step ``render`` asks for (its restorer and upscaler loaded on first use; WeightsError)."""
        enhance = render.enhance
        return Finisher(paste_back=render.paste_back, enhance=enhance,
                        restorer=self.restorer(enhance.restorer) if enhance.restores else None,
                        upscaler=self.upscaler(enhance.tile) if enhance.upscale == 2 else None)

    def restorer(self, kind: str) -> FaceRestorer:
        """The face restorer ``kind`` ("gfpgan"/"codeformer"), loaded (sha256-verified; else WeightsError) once, kept."""
        if kind not in self._restorers:
            self._restorers[kind] = load_restorer(self.store, kind, self.device)
        return self._restorers[kind]

    def upscaler(self, tile: int) -> Upscaler:
        """Real-ESRGAN x2plus, loaded (sha256-verified) on first use and kept; ``tile`` px tiles (0 = none)."""
        if self._upscaler is None:
            self._upscaler = load_upscaler(self.store, self.device, tile)
        self._upscaler.tile = tile
        return self._upscaler

    def write_video(self, job: VideoJob, out: str | os.PathLike, progress: bool = True,
                    provenance: ProvenanceOptions | None = None) -> Path:
        """Render and encode a job to ``out`` (.mp4/.mov/.mkv, H.264 + its audio) atomically; returns ``out``.

        ``provenance`` (:mod:`talkinghead.media.provenance`): None signs the file as AI-generated, job kind
        "video"; ``ProvenanceOptions(enabled=False)``: unmarked.  Raises TalkingHeadError (no partial file).
        """
        return write_frames(job.encoder_frames(), out, job.fps, job.n_frames, job.audio, progress, provenance or ProvenanceOptions())
