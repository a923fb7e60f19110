"""The engine: the public, in-process entry point that runs whole jobs.

Data flow of the video-driven job (each arrow a stage of the package)::

    photo ─ media.image ─ face (landmarks, crop) ─ M, F ─┐
    clip ── media.video ─ drivers.video (crop, M) ───────┴─ motion.animate ─ render (W, G)
          ─ face.paste (paste-back) ─ media.video (H.264 + audio)

Frames are streamed end to end: memory does not grow with the clip length.

Example::

    from talkinghead import Engine
    engine = Engine.from_pretrained()                  # downloads ~520 MB once
    source = engine.prepare_source("photo.jpg")
    job = engine.animate_video(source, "driving.mp4")
    engine.write_video(job, "out.mp4")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .drivers.video import CropMode, VideoDriver, ratios_from_landmarks
from .errors import NoFaceError, TalkingHeadError
from .face.crop import FaceCrop, crop_face
from .face.landmarks import FaceAlignmentLandmarks, JsonLandmarks, LandmarkProvider
from .face.paste import paste_back
from .media.image import limit_size, load_image
from .media.video import AudioSource, VideoWriter
from .models.images import image_to_tensor
from .models.liveportrait import LivePortraitNetworks, load_liveportrait
from .motion.animate import AnimationOptions, Animator, EyeLipRatios
from .motion.frame import KeypointInfo
from .motion.keypoints import keypoint_info_from_raw
from .render import Renderer
from .weights import WeightStore

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


@dataclass(frozen=True)
class PreparedSource:
    """Everything the engine derives once from a source photo.

    Attributes:
        image: (H, W, 3) uint8 RGB photo after LivePortrait's size rule
            (long side ≤ 1280 px, even sides); paste-back target.
        landmarks: (68, 2) float32 landmarks in ``image`` pixels.
        crop: the 512 crop (``crop.crop_256`` is the networks' input) and
            its transforms.
        info: (1) keypoint info from M: canonical keypoints, pose (degrees),
            expression, translation, scale.
        feature_3d: (1, 32, 16, 64, 64) float32 appearance feature volume from F.
        ratios: (1) eye/lip open ratios from the 68-point landmarks.
    """

    image: np.ndarray
    landmarks: np.ndarray
    crop: FaceCrop
    info: KeypointInfo
    feature_3d: torch.Tensor
    ratios: EyeLipRatios


@dataclass
class VideoJob:
    """A video being generated: a lazy stream of frames plus what the writer needs.

    Attributes:
        frames: iterator of (H, W, 3) uint8 RGB output frames (consumed once).
        fps: frame rate, Hz.
        n_frames: expected number of frames (for progress bars).
        audio: audio track to mux, or None.
    """

    frames: Iterator[np.ndarray]
    fps: float
    n_frames: int
    audio: AudioSource | None = None


def _scale_points(points: np.ndarray, before: tuple[int, int], after: tuple[int, int]) -> np.ndarray:
    """Map pixel coordinates through a resize from ``before`` (H, W) to ``after`` (H, W) (pixel-centre convention)."""
    sy, sx = after[0] / before[0], after[1] / before[1]
    return ((points + 0.5) * np.array([sx, sy], dtype=np.float32) - 0.5).astype(np.float32)


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
                 precision: str = "fp32") -> None:
        self.networks = networks
        self.device = next(networks.decoder.parameters()).device
        self.renderer = Renderer(networks.appearance, networks.warping, networks.decoder, precision)
        self._landmarks = landmarks

    @classmethod
    def from_pretrained(cls, weights: str | os.PathLike | None = None, device: str | torch.device = "auto",
                        landmarks: LandmarkProvider | None = None, precision: str = "fp32",
                        progress: bool = True) -> "Engine":
        """Build the engine from LivePortrait's checkpoints.

        Args:
            weights: local folder laid out like the Hub repos
                (``DIR/liveportrait/base_models/*.pth``…); None: ``./checkpoints``
                if it holds the files, else the Hugging Face Hub (cached).
            device: "auto", "cuda" or "cpu".
            landmarks: default landmark provider (see :class:`Engine`).
            precision: "fp32", "fp16" or "bf16" (the last two CUDA only).
            progress: show download progress bars (huggingface_hub's own).

        Raises:
            WeightsError: a checkpoint is missing, unsafe or of the wrong layout.
            TalkingHeadError: CUDA asked for but unavailable.
        """
        if not progress:
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        device = resolve_device(device)
        networks = load_liveportrait(WeightStore(weights), device)
        return cls(networks, landmarks=landmarks, precision=precision)

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
    def prepare_source(self, image: str | os.PathLike | np.ndarray, landmarks: LandmarkSpec = None) -> PreparedSource:
        """Load a photo, find and crop its face, and run M and F on the crop.

        Args:
            image: photo file or (H, W, 3) uint8 RGB array.
            landmarks: landmark provider, a landmark JSON file for this
                photo, or None for the engine's default detector.

        Returns:
            The :class:`PreparedSource` (reusable for any number of jobs).

        Raises:
            MediaError: the photo cannot be read.
            NoFaceError: no face was found in the photo.
        """
        original = load_image(image)
        points = self._provider(landmarks).landmarks(original, 0)
        if points is None:
            name = image if not isinstance(image, np.ndarray) else "the photo"
            raise NoFaceError(f"no face found in {name}: use a photo where one face is clearly visible (frontal or slightly turned, not tiny)")
        limited = limit_size(original)
        if limited.shape[:2] != original.shape[:2]:
            points = _scale_points(points, original.shape[:2], limited.shape[:2])
        crop = crop_face(limited, points)
        raw = self.networks.motion(image_to_tensor(crop.crop_256, self.device))
        info = keypoint_info_from_raw({k: v.float() for k, v in raw.items()})
        return PreparedSource(
            image=np.ascontiguousarray(limited), landmarks=points, crop=crop, info=info,
            feature_3d=self.renderer.source_features(crop.crop_256),
            ratios=ratios_from_landmarks(points[None], self.device),
        )

    # ------------------------------------------------------------ video job
    def animate_video(self, source: PreparedSource, driving: str | os.PathLike,
                      options: AnimationOptions = AnimationOptions(), *,
                      driving_landmarks: LandmarkSpec = None, max_frames: int | None = None,
                      paste_back: bool = True, crop_driving: CropMode = "auto",
                      batch_size: int | None = None) -> VideoJob:
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
            driving_landmarks: provider or JSON file with 68-point landmarks of
                the driving frames (used when cropping driving frames or for
                eye/lip retargeting); None: the engine's default detector.
            max_frames: render at most this many frames.
            paste_back: paste the face back into the photo (output = photo
                size); False outputs the 512×512 face crop.
            crop_driving: "auto" (crop unless the clip is square), "on", "off".
            batch_size: frames rendered together (default 8 on CUDA, 1 on CPU).

        Returns:
            A :class:`VideoJob` at the driving clip's frame rate.

        Raises:
            MediaError: the driving file is missing or not a video.
        """
        batch_size = batch_size or (8 if self.device.type == "cuda" else 1)
        needs_landmarks = crop_driving != "off" or options.retargeting
        driver = VideoDriver(
            driving, self.networks.motion,
            landmarks=self._provider(driving_landmarks) if needs_landmarks else None,
            crop=crop_driving, max_frames=max_frames, need_ratios=options.retargeting, batch_size=batch_size,
        )
        audio = AudioSource(driving, duration_s=driver.n_frames / driver.fps) if driver.has_audio else None
        return VideoJob(frames=self._video_frames(source, driver, options, paste_back),
                        fps=driver.fps, n_frames=driver.n_frames, audio=audio)

    def _video_frames(self, source: PreparedSource, driver: VideoDriver, options: AnimationOptions,
                      paste: bool) -> Iterator[np.ndarray]:
        animator: Animator | None = None
        for batch in driver:
            if animator is None:
                anchor = batch.motion[0].motion if options.relative else None
                animator = Animator(source.info, self.networks.stitching, options, anchor=anchor,
                                    source_ratios=source.ratios)
            with torch.inference_mode():
                x_d = animator(batch.motion.motion, batch.ratios)
            for face in self.renderer.render(source.feature_3d, animator.x_s, x_d):
                yield paste_back(source.image, face, source.crop.M_c2o) if paste else face

    # --------------------------------------------------------------- output
    def write_video(self, job: VideoJob, out: str | os.PathLike, progress: bool = True) -> Path:
        """Encode a job's frames to an H.264 mp4 (with its audio), atomically.

        Args:
            job: from :meth:`animate_video`.
            out: output path (.mp4, .mov or .mkv).
            progress: show a tqdm progress bar.

        Returns:
            ``out`` as a Path.

        Raises:
            TalkingHeadError: anything going wrong while generating or
                writing; no partial file is left at ``out``.
        """
        from tqdm import tqdm

        with VideoWriter(out, fps=job.fps, audio=job.audio) as writer:
            for frame in tqdm(job.frames, total=job.n_frames, unit="frame", disable=not progress, desc="rendering"):
                writer.write(frame)
        return Path(out)
