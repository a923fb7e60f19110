"""The engine: the public, in-process entry point that runs whole jobs.

Data flow of the video-driven job (each arrow a stage of the package)::

    photo ─ media.image ─ face (landmarks, crop) ─ M, F ─┐
    clip ── media.video ─ drivers.video (crop, M) ───────┴─ motion.animate ─ render (W, G)
          ─ enhance (face restoration) ─ face.paste (paste-back) ─ enhance (2× upscale)
          ─ media.video (H.264 + audio)

A source *video* (:meth:`Engine.animate_source_video`) takes the photo's
place frame by frame.

Every job is glue over the same three steps: :mod:`talkinghead.render.source`
prepares the source (photo or each source-video frame), the job turns its
motion into driven keypoints and :func:`talkinghead.render.frames.render_frames`
renders them, and :class:`talkinghead.enhance.finish.Finisher` restores,
pastes back and upscales each batch.

Frames are streamed end to end: memory does not grow with the clip length
in frames (a source-video job holds the clips' motion, a few KB per frame,
for its whole-clip Kalman smoothing).

Example::

    from talkinghead import Engine
    engine = Engine.from_pretrained()                  # downloads ~520 MB once
    source = engine.prepare_source("photo.jpg")
    job = engine.animate_video(source, "driving.mp4")
    engine.write_video(job, "out.mp4")
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from .drivers.audio import AudioBackend, SourceSettings, audio_backend
from .drivers.audio.backend import iter_audio_chunks
from .drivers.batches import frame_offsets, single_frames, smoothed_batches, smoothed_chunks
from .drivers.video import CropMode, DrivingBatch, VideoDriver
from .enhance import EnhanceOptions, FaceRestorer, Upscaler, load_restorer, load_upscaler
from .enhance.finish import Finisher
from .errors import ControlError, MediaError, TalkingHeadError
from .face.crop import DrivingBoxMode
from .face.landmarks import FaceAlignmentLandmarks, JsonLandmarks, LandmarkProvider
from .media.audio import load_audio
from .media.provenance import ProvenanceOptions
from .media.video import AudioSource, VideoWriter, frames_at_rate, probe_video
from .models.liveportrait import LivePortraitNetworks
from .motion.animate import AnimationOptions
from .motion.controls import Controls
from .motion.edits import reference_pose, scale_expression, still_head
from .motion.keyframes import KeyframeTrack, sample_controls
from .motion.smoothing import SmoothingOptions, smooth_motion
from .motion.frame import MotionFrame
from .jobs import AudioJobOptions, RenderOptions, VideoJob
from .render import Renderer
from .render.frames import Driven, absolute_keypoints, driven_keypoints, render_frames, source_video_keypoints
from .render.source import PreparedSource, photo_landmarks, prepare_image, source_video_motion, video_sources
from .weights import WeightStore, resolve_revisions

LandmarkSpec = LandmarkProvider | str | os.PathLike | None
"""A landmark provider, a landmark JSON file, or None for the engine's default detector."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" → CUDA when available, else CPU; "cuda"/"cpu" as given.

    Raises:
        TalkingHeadError: "cuda" asked for on a machine without a usable GPU.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TalkingHeadError("--device cuda was asked for but no CUDA GPU is available to PyTorch: use --device cpu (slow) or install a CUDA build of torch")
    return device


def _samples(audio: str | os.PathLike | np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """A speech file decoded to mono float32 at ``sample_rate`` Hz, or a waveform passed through."""
    return audio.astype(np.float32, copy=False) if isinstance(audio, np.ndarray) else load_audio(audio, sample_rate)


def _driving_audio(driver: VideoDriver) -> AudioSource | None:
    """The driving clip's audio track cut to the driver's frames, or None when the clip has none."""
    return AudioSource(driver.path, duration_s=driver.n_frames / driver.fps) if driver.has_audio else None


class Engine:
    """Loads the networks once and runs jobs with them.

    Args:
        networks: LivePortrait's F, M, W, G, S on one device (eval mode).
        landmarks: default 68-point landmark provider for photos and driving
            frames; None means face-alignment, created on first use (it
            downloads its own detector weights then).
        precision: renderer precision, "fp32" (default) or on CUDA "fp16"/"bf16".
    """

    def __init__(self, networks: LivePortraitNetworks, landmarks: LandmarkProvider | None = None,
                 precision: str = "fp32", store: WeightStore | None = None) -> None:
        self.networks = networks
        self.device = next(networks.decoder.parameters()).device
        self.renderer = Renderer(networks.appearance, networks.warping, networks.decoder, precision)
        self._landmarks = landmarks
        self.store = store or WeightStore()
        self._audio_backends: dict[str, AudioBackend] = {}
        self._restorers: dict[str, FaceRestorer] = {}
        self._upscaler: Upscaler | None = None

    @classmethod
    def from_pretrained(cls, weights: str | os.PathLike | None = None, device: str | torch.device = "auto",
                        landmarks: LandmarkProvider | None = None, precision: str = "fp32",
                        progress: bool = True, revision: str | Mapping[str, str] | None = None) -> "Engine":
        """Build the engine from LivePortrait's checkpoints.

        Args:
            weights: local folder laid out like the Hub repos
                (``DIR/liveportrait/base_models/*.pth``…); None: ``./checkpoints``
                if it holds the files, else the Hugging Face Hub (cached).
            device: "auto", "cuda" or "cpu".
            landmarks: default landmark provider (see :class:`Engine`).
            precision: "fp32", "fp16" or "bf16" (the last two CUDA only).
            progress: show download progress bars (huggingface_hub's own).
            revision: Hub revision (branch, tag or commit sha) of LivePortrait's
                repo ``KlingTeam/LivePortrait``; or a mapping of revisions keyed
                by ``"liveportrait"``, ``"ditto"``, ``"enhance"`` or a Hub repo
                id (see :func:`talkinghead.weights.resolve_revisions`).  Overrides
                the ``TALKINGHEAD_*_REVISION`` environment variables; the Ditto
                and enhancement files loaded later use it too.  Not with ``weights``.

        Raises:
            WeightsError: a checkpoint is missing, unsafe or of the wrong layout;
                an unknown revision key; ``revision`` together with ``weights``.
            TalkingHeadError: CUDA asked for but unavailable.
        """
        if not progress:
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        device = resolve_device(device)
        store = WeightStore(weights, revisions=resolve_revisions(revision))
        networks = LivePortraitNetworks.from_pretrained(store, device=device)
        return cls(networks, landmarks=landmarks, precision=precision, store=store)

    # ------------------------------------------------------------ landmarks
    def _provider(self, spec: LandmarkSpec) -> LandmarkProvider:
        if spec is None:
            if self._landmarks is None:
                self._landmarks = FaceAlignmentLandmarks(device=str(self.device))
            return self._landmarks
        if isinstance(spec, (str, os.PathLike)):
            return JsonLandmarks(spec)
        return spec

    # ---------------------------------------------------------------- source
    @torch.inference_mode()
    def prepare_source(self, image: str | os.PathLike | np.ndarray, landmarks: LandmarkSpec = None,
                       settings: SourceSettings | None = None) -> PreparedSource:
        """Load a photo, find and crop its face, and run M and F on the crop.

        Args:
            image: photo file or (H, W, 3) uint8 RGB array.
            landmarks: landmark provider, a landmark JSON file for this
                photo, or None for the engine's default detector.
            settings: an audio backend's size and crop rules (Ditto's
                configuration; see :meth:`audio_source_settings`); None = LivePortrait's (long
                side ≤ 1280 px, crop scale 2.3, shift −0.125).

        Returns:
            The :class:`PreparedSource` (reusable for any number of jobs).

        Raises:
            MediaError: the photo cannot be read.
            NoFaceError: no face was found in the photo.
        """
        original, points = photo_landmarks(image, self._provider(landmarks))
        return prepare_image(original, points, self.networks.motion, self.renderer, settings)

    # ------------------------------------------------------------ video job
    def animate_video(self, source: PreparedSource, driving: str | os.PathLike,
                      options: AnimationOptions = AnimationOptions(), render: RenderOptions = RenderOptions(), *,
                      driving_landmarks: LandmarkSpec = None, crop_driving: CropMode = "auto",
                      driving_box: DrivingBoxMode = "average") -> VideoJob:
        """Animate ``source`` with the motion of a driving video.

        The returned job is lazy: frames are computed while they are consumed
        (e.g. by :meth:`write_video`).  The driving file is probed here, so a
        missing or unreadable file fails before anything is written.

        Args:
            source: from :meth:`prepare_source`.
            driving: driving video file; its audio track (if any) is carried
                into the output.
            options: motion transfer options (relative/absolute, region,
                stitching, retargeting, multiplier…).
            render: smoothing, controls, paste-back, batch size, frame limit.
            driving_landmarks: provider or JSON file with 68-point landmarks of
                the driving frames (used when cropping driving frames or for
                eye/lip retargeting); None: the engine's default detector.
            crop_driving: "auto" (crop unless the clip is square), "on", "off".
            driving_box: how cropped driving frames are cut: "average" (one
                box for the whole clip, the mean of the per-frame face boxes,
                as LivePortrait; the driver's head translation and zoom reach
                the motion) or "track" (a per-frame box smoothed over 0.5 s,
                which keeps the face centred and cancels them).

        Returns:
            A :class:`VideoJob` at the driving clip's frame rate.

        Raises:
            MediaError: the driving file is missing or not a video.
            ControlError: an unknown ``driving_box``.
        """
        driver = self._video_driver(driving, options, render, driving_landmarks, crop_driving, render.max_frames,
                                    driving_box)
        return VideoJob(frames=self._driven_frames(source, driver, options, render),
                        fps=driver.fps, n_frames=driver.n_frames, audio=_driving_audio(driver))

    def _video_driver(self, driving: str | os.PathLike, options: AnimationOptions, render: RenderOptions,
                      landmarks: LandmarkSpec, crop: CropMode, max_frames: int | None,
                      box: DrivingBoxMode = "average") -> VideoDriver:
        """The driving clip's motion stream: frames cropped and eye/lip ratios measured as ``options`` need."""
        needs_landmarks = crop != "off" or options.retargeting
        return VideoDriver(
            driving, self.networks.motion, landmarks=self._provider(landmarks) if needs_landmarks else None,
            crop=crop, box=box, max_frames=max_frames, need_ratios=options.retargeting, batch_size=self._batch_size(render),
        )

    def animate_source_video(self, source_video: str | os.PathLike, driving: str | os.PathLike,
                             options: AnimationOptions = AnimationOptions(), render: RenderOptions = RenderOptions(),
                             *, source_landmarks: LandmarkSpec = None, driving_landmarks: LandmarkSpec = None,
                             crop_driving: CropMode = "auto", driving_box: DrivingBoxMode = "average") -> VideoJob:
        """Re-animate a video of a face with a driving video (LivePortrait's video-to-video).

        Source frame i is driven by driving frame i and pasted back into
        source frame i.  The source video is read at the driving clip's frame
        rate (frames repeated or dropped by timestamp, :class:`VideoReader`)
        and every frame gets its own landmarks, crop, M and F (a per-frame
        :class:`PreparedSource`).  The motion follows LivePortrait's
        source-video rules, with ``render``'s smoothing and controls as in
        :meth:`animate_video` (see
        :func:`talkinghead.render.frames.source_video_keypoints`).

        The job is lazy and streams both clips' frames: the smoothing needs
        the whole motion sequence first, so the motion is held (source
        frames' landmarks and M outputs, driving frames' motion: a few KB per
        frame), never frames.  The source video is decoded three times
        (landmarks; crop + M; crop + F + render).

        Args:
            source_video: video of a face to re-animate (any container/codec FFmpeg reads).
            driving: driving video file; its audio track (if any) becomes the
                output's, as in :meth:`animate_video`.
            options: as for :meth:`animate_video` (``expression_friendly`` is
                not used for a source video).
            render: as for :meth:`animate_video`; ``batch_size`` is M's batch on
                the driving frames (each source frame has its own F, so frames
                are rendered one by one).
            source_landmarks: provider or JSON file with 68-point landmarks of
                every decoded frame of ``source_video``; None: the engine's
                default detector.  A frame without a face reuses the landmarks
                of the last frame with one (leading frames: of the first one).
            driving_landmarks, crop_driving, driving_box: as for :meth:`animate_video`.

        Returns:
            A :class:`VideoJob` at the driving clip's frame rate with
            min(source frames at that rate, driving frames, ``render.max_frames``)
            frames, each of the source video's frame size after the size rule
            (long side ≤ 1280 px, even sides), or 512×512 without paste-back.

        Raises:
            MediaError: either file is missing or not a video (here); a
                landmark file that does not fit the source video (while frames
                are consumed).
            NoFaceError: no frame of the source video shows a face (while
                frames are consumed).
            ControlError: an unknown ``driving_box``.
        """
        fps = probe_video(driving).fps
        limit = frames_at_rate(probe_video(source_video), fps)
        if render.max_frames is not None:
            limit = min(limit, render.max_frames)
        driver = self._video_driver(driving, options, render, driving_landmarks, crop_driving, limit, driving_box)
        frames = self._source_video_frames(source_video, source_landmarks, driver, options, render)
        return VideoJob(frames=frames, fps=driver.fps, n_frames=driver.n_frames, audio=_driving_audio(driver))

    def _source_video_frames(self, video: str | os.PathLike, landmarks: LandmarkSpec, driving: VideoDriver,
                             options: AnimationOptions, render: RenderOptions) -> Iterator[np.ndarray]:
        """Source frame i driven by driving frame i by LivePortrait's source-video rules, rendered on source i."""
        points, raws = source_video_motion(video, driving.fps, driving.n_frames, self._provider(landmarks),
                                           self.networks.motion, self.device)
        drive = list(single_frames(smoothed_batches(driving, render.smoothing)))
        n = min(len(drive), len(raws))
        if n == 0:
            return
        sources = video_sources(video, driving.fps, points[:n], raws[:n], self.networks.motion, self.renderer)
        driven = source_video_keypoints(sources, raws[:n], drive[:n], self.networks.stitching, options, render.controls)
        yield from self._frames(driven, render)

    def animate_driving_motion(self, source: PreparedSource, driving: MotionFrame, fps: float,
                               options: AnimationOptions = AnimationOptions(),
                               render: RenderOptions = RenderOptions()) -> VideoJob:
        """Like :meth:`animate_video`, with the driving clip's motion given as a sequence
        (e.g. a motion file saved from a driving video or by the audio job).

        Args:
            driving: (T) driving motion frames; frame 0 is the relative-motion anchor.
            fps: frame rate of ``driving``, Hz.

        Raises:
            ControlError: eye/lip retargeting asked for (it needs the driving
                frames' landmarks, which a motion sequence does not carry).
        """
        if options.retargeting:
            raise ControlError("eye/lip retargeting needs a driving video (landmarks of its frames), not a motion file")
        driving = driving.to(self.device)[: render.max_frames or driving.batch_size]
        size = self._batch_size(render)
        batches = (DrivingBatch(driving[i:i + size], None) for i in range(0, driving.batch_size, size))
        return VideoJob(frames=self._driven_frames(source, batches, options, render), fps=fps,
                        n_frames=driving.batch_size)

    def _driven_frames(self, source: PreparedSource, batches: Iterable[DrivingBatch], options: AnimationOptions,
                       render: RenderOptions) -> Iterator[np.ndarray]:
        """Relative/absolute transfer of driving batches (smoothed, controls stacked), rendered."""
        driven = driven_keypoints(source, smoothed_batches(batches, render.smoothing), self.networks.stitching, options,
                                  render.controls)
        return self._frames(driven, render)

    def _frames(self, driven: Iterable[Driven], render: RenderOptions) -> Iterator[np.ndarray]:
        """Driven batches rendered and finished as ``render`` asks (restore, paste back, upscale)."""
        return render_frames(self.renderer, driven, self.finisher(render))

    def finisher(self, render: RenderOptions = RenderOptions()) -> Finisher:
        """The finishing step ``render`` asks for (its restorer and upscaler loaded on first use).

        Raises:
            WeightsError: a restorer's or the upscaler's checkpoint cannot be had or fails verification.
        """
        enhance = render.enhance
        return Finisher(paste_back=render.paste_back, enhance=enhance,
                        restorer=self.restorer(enhance.restorer) if enhance.restores else None,
                        upscaler=self.upscaler(enhance.tile) if enhance.upscale == 2 else None)

    # ------------------------------------------------------------- enhance
    def restorer(self, kind: str) -> FaceRestorer:
        """The face restorer ``kind`` ("gfpgan" or "codeformer"), loaded (sha256-verified) on first use and kept.

        Raises:
            WeightsError: its checkpoint cannot be had or fails verification.
        """
        if kind not in self._restorers:
            self._restorers[kind] = load_restorer(self.store, kind, self.device)
        return self._restorers[kind]

    def upscaler(self, tile: int) -> Upscaler:
        """Real-ESRGAN x2plus, loaded (sha256-verified) on first use and kept; ``tile`` px tiles (0 = none)."""
        if self._upscaler is None:
            self._upscaler = load_upscaler(self.store, self.device, tile)
        self._upscaler.tile = tile
        return self._upscaler

    def _batch_size(self, render: RenderOptions) -> int:
        return render.batch_size or (8 if self.device.type == "cuda" else 1)

    # ------------------------------------------------- motion-sequence jobs
    def animate_motion(self, source: PreparedSource, motion: MotionFrame, fps: float,
                       render: RenderOptions = RenderOptions(), *, audio: AudioSource | None = None,
                       controls: Sequence[Controls] | None = None, stitching: bool = True) -> VideoJob:
        """Render an absolute motion sequence (audio driver, pose paths, motion files) on the source.

        Args:
            source: from :meth:`prepare_source`.
            motion: (T) motion frames, degrees, on any device.
            fps: frame rate of the sequence, Hz.
            render: smoothing (applied to the whole sequence first), controls
                stacked on every frame, paste-back, batch size, frame limit.
            audio: audio track for the output, or None.
            controls: per-frame controls (T of them, e.g. a sampled pose
                path); when given they replace ``render.controls``.
            stitching: apply the stitching network.

        Raises:
            ControlError: ``controls`` does not have one entry per frame.
        """
        if controls is not None and len(controls) != motion.batch_size:
            raise ControlError(f"{len(controls)} controls for {motion.batch_size} motion frames: give one per frame")
        whole = smooth_motion(motion.to(self.device), render.smoothing)
        motion = whole[: render.max_frames or whole.batch_size]
        if controls is None:
            controls = [render.controls or Controls()] * motion.batch_size
        driven = absolute_keypoints(source, motion, controls, self.networks.stitching, self._batch_size(render), stitching)
        return VideoJob(frames=self._frames(driven, render), fps=fps, n_frames=motion.batch_size, audio=audio,
                        motion=whole)

    def animate_keyframes(self, source: PreparedSource, track: KeyframeTrack,
                          render: RenderOptions = RenderOptions()) -> VideoJob:
        """A still photo animated along a pose path (keyframed controls), at the track's fps."""
        controls = sample_controls(track, render.max_frames)  # only the frames rendered
        motion = MotionFrame.cat([source.info.motion] * len(controls))
        return self.animate_motion(source, motion, track.fps, render, controls=controls)

    def still_image(self, source: PreparedSource, controls: Controls = Controls(), paste_back: bool = True,
                    enhance: EnhanceOptions = EnhanceOptions()) -> np.ndarray:
        """The photo with pose/expression controls applied: one frame, W+G only (F and M are cached in ``source``).

        Returns:
            (H, W, 3) uint8 RGB (the photo's size) or (512, 512, 3) without
            paste-back; twice each side with ``enhance.upscale == 2``.
        """
        render = RenderOptions(paste_back=paste_back, controls=controls, enhance=enhance)
        job = self.animate_motion(source, source.info.motion, 25.0, render)
        return next(iter(job.frames))

    # ------------------------------------------------------------ audio job
    def audio_backend(self, name: str = "ditto") -> AudioBackend:
        """The audio backend registered as ``name``, built once on the engine's weight store and device.

        Raises:
            ControlError: no backend of that name (the message lists the registered ones).
            WeightsError: the backend's files cannot be used.
        """
        if name not in self._audio_backends:
            self._audio_backends[name] = audio_backend(name).from_pretrained(self.store, device=self.device)
        return self._audio_backends[name]

    def audio_source_settings(self, options: AudioJobOptions | None = None) -> SourceSettings | None:
        """How the audio job sizes and crops the photo (the backend's rules; Ditto: its offline configuration's).

        Raises:
            WeightsError: the configuration is missing, unsafe or malformed.
        """
        options = options or AudioJobOptions()
        return self.audio_backend(options.backend).source_settings(options)

    def audio_motion(self, source: PreparedSource, audio: str | os.PathLike | np.ndarray,
                     options: AudioJobOptions = AudioJobOptions(), progress: bool = False) -> MotionFrame:
        """Motion sequence for a speech clip at the backend's rate (Ditto: 25 fps, ceil(duration·25) frames).

        Args:
            source: from :meth:`prepare_source`.
            audio: speech file (any format FFmpeg reads) or a (S,) float32
                mono waveform at the backend's sample rate (Ditto: 16 kHz).
            options: see :class:`AudioJobOptions`.
            progress: show a progress bar (Ditto: over the 80-frame windows).

        Raises:
            MediaError: unreadable, empty or silent audio; unreadable pose clip.
            ControlError: an option out of range.
            DiffusionError: an unsafe step count.
        """
        backend = self.audio_backend(options.backend)
        samples = _samples(audio, backend.sample_rate)
        try:
            motion = backend.generate(samples, source, options, progress=progress)
        except MediaError as error:  # empty or silent: say which file
            if isinstance(audio, np.ndarray):
                raise
            raise MediaError(f"{audio}: {error}") from error
        return self._edit_motion(source, motion, options, self._reference_pose(options))

    def stream_audio(self, source: PreparedSource, audio: str | os.PathLike | np.ndarray | Iterable[np.ndarray],
                     options: AudioJobOptions = AudioJobOptions(),
                     render: RenderOptions = RenderOptions()) -> Iterator[np.ndarray]:
        """Rendered frames of a talking video, yielded as soon as each chunk of motion is ready.

        Uses the backend's streaming generation (Ditto: its online windows,
        :func:`talkinghead.drivers.audio.ditto.stream.stream_motion`: the
        first frames come after about 0.9 s of audio has been read and
        encoded, then 10 frames per 0.4 s of audio) — for a live view, or to
        show video before a long clip is done.  Frame count and rate are those
        of :meth:`animate_audio` (Ditto: 25 fps); Ditto's motion differs
        slightly from the offline job's (online features and windows).

        Args:
            audio: a speech file, a (S,) float32 waveform at the backend's
                sample rate (Ditto: 16 kHz), or an iterable of such waveform
                chunks (e.g. from a microphone).
            options, render: as for :meth:`animate_audio`; smoothing runs in
                streaming form (a few frames of extra delay).

        Yields:
            (H, W, 3) uint8 RGB frames.
        """
        backend = self.audio_backend(options.backend)
        if isinstance(audio, (str, os.PathLike, np.ndarray)):
            audio = iter_audio_chunks(_samples(audio, backend.sample_rate))
        reference = self._reference_pose(options)
        per_chunk = dataclasses.replace(render, smoothing=SmoothingOptions(), max_frames=None)
        stitching = backend.stitching(options, online=True)
        edited = (self._edit_motion(source, motion, options, reference, first)
                  for first, motion in frame_offsets(backend.stream(audio, source, options)))
        for ready in smoothed_chunks(edited, render.smoothing, render.max_frames):
            yield from self.animate_motion(source, ready, backend.fps, per_chunk, stitching=stitching).frames

    def _reference_pose(self, options: AudioJobOptions) -> MotionFrame | None:
        if options.still or options.pose_from is None:
            return None
        return self.extract_motion(options.pose_from, landmarks=options.pose_from_landmarks)

    def _edit_motion(self, source: PreparedSource, motion: MotionFrame, options: AudioJobOptions,
                     reference: MotionFrame | None, first_frame: int = 0) -> MotionFrame:
        base = source.info.motion
        motion = scale_expression(motion, base, options.expression_scale)
        if options.still:
            return still_head(motion, base)
        if reference is not None:
            motion = reference_pose(motion, base, reference, options.pose_blend, first_frame)
        return motion

    def extract_motion(self, video: str | os.PathLike, landmarks: LandmarkSpec = None,
                       max_frames: int | None = None, crop: CropMode = "auto",
                       box: DrivingBoxMode = "average") -> MotionFrame:
        """Motion of every frame of a video as M sees it (e.g. a reference clip's head-pose track).

        ``box``: "average" or "track", as ``driving_box`` of :meth:`animate_video`.

        Raises:
            MediaError: unreadable video; NoFaceError: no face to crop;
            ControlError: an unknown ``box``.
        """
        driver = VideoDriver(video, self.networks.motion, landmarks=self._provider(landmarks) if crop != "off" else None,
                             crop=crop, box=box, max_frames=max_frames, batch_size=8 if self.device.type == "cuda" else 4)
        return MotionFrame.cat([batch.motion.motion for batch in driver])

    def animate_audio(self, source: PreparedSource, audio: str | os.PathLike,
                      options: AudioJobOptions = AudioJobOptions(), render: RenderOptions = RenderOptions(), *,
                      motion: MotionFrame | None = None, fps: float | None = None,
                      progress: bool = False) -> VideoJob:
        """Photo + speech → talking video at the backend's rate (Ditto: 25 fps) with the speech as its audio track.

        The motion is generated first (fast compared with rendering), then
        frames are rendered lazily as the job is consumed; ``job.motion``
        holds the motion (e.g. to save it with :func:`talkinghead.motion.io.save_motion`).

        Args:
            motion: render this motion sequence (e.g. a loaded motion file,
                at ``fps``; None = the backend's rate) instead of generating it from the audio.

        Raises:
            MediaError, ControlError, DiffusionError: see :meth:`audio_motion`.
        """
        stitching = True
        if motion is None:
            backend = self.audio_backend(options.backend)
            motion, fps = self.audio_motion(source, audio, options, progress=progress), backend.fps
            stitching = backend.stitching(options)
        elif fps is None:
            fps = audio_backend(options.backend).fps
        n = motion.batch_size if render.max_frames is None else min(render.max_frames, motion.batch_size)
        return self.animate_motion(source, motion, fps, render, audio=AudioSource(audio, duration_s=n / fps),
                                   stitching=stitching)

    # --------------------------------------------------------------- output
    def write_video(self, job: VideoJob, out: str | os.PathLike, progress: bool = True,
                    provenance: ProvenanceOptions | None = None) -> Path:
        """Encode a job's frames to an H.264 mp4 (with its audio), atomically, with a C2PA manifest.

        Args:
            job: from :meth:`animate_video`.
            out: output path (.mp4, .mov or .mkv).
            progress: show a tqdm progress bar.
            provenance: how the file is marked as AI-generated (job kind,
                credential; see :mod:`talkinghead.media.provenance`);
                ``None``: signed with the default credential as job kind
                ``"video"``; ``ProvenanceOptions(enabled=False)``: unmarked.

        Returns:
            ``out`` as a Path.

        Raises:
            TalkingHeadError: anything going wrong while generating or
                writing; no partial file is left at ``out``.
        """
        from tqdm import tqdm

        provenance = ProvenanceOptions() if provenance is None else provenance
        with VideoWriter(out, fps=job.fps, audio=job.audio, provenance=provenance) as writer:
            for frame in tqdm(job.frames, total=job.n_frames, unit="frame", disable=not progress, desc="rendering"):
                writer.write(frame)
        return Path(out)
