"""Source preparation: a photo, or each frame of a source video, → a :class:`PreparedSource`.

photo ─ media.image (size rule) ─ face (landmarks, crop) ─ M (keypoint info), F (feature volume)
─ eye/lip ratios from the 68 landmarks.  Everything a job needs of its source is computed here
once; the jobs only read it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from ..drivers.audio import SourceSettings
from ..drivers.video import fill_missing, ratios_from_landmarks
from ..errors import NoFaceError
from ..face.crop import FaceCrop, crop_face
from ..face.landmarks import LandmarkProvider
from ..media.image import ditto_size, limit_size, load_image
from ..media.video import VideoReader
from ..models.images import image_to_tensor
from ..motion.animate import EyeLipRatios
from ..motion.frame import KeypointInfo
from ..motion.keypoints import keypoint_info_from_raw
from .renderer import Renderer

SMALL_FACE_PX = 64
"""Below this landmark extent (pixels, the larger side of the 68 points' box) a source photo's face gets a warning."""

NO_FACE_HINT = "use a photo where one face is clearly visible (frontal or slightly turned, not tiny)"


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
        ratios: (1) eye/lip open ratios from the 68-point landmarks, on the
            203-point scale (``ratios_from_landmarks``).
        raw: M's raw heads for the crop (pose as 66-bin logits), which the
            audio driver needs.
    """

    image: np.ndarray
    landmarks: np.ndarray
    crop: FaceCrop
    info: KeypointInfo
    feature_3d: torch.Tensor
    ratios: EyeLipRatios
    raw: dict[str, torch.Tensor]


def scale_points(points: np.ndarray, before: tuple[int, int], after: tuple[int, int]) -> np.ndarray:
    """Map (N, 2) pixel coordinates through a resize from ``before`` (H, W) to ``after`` (H, W) (pixel-centre convention)."""
    sy, sx = after[0] / before[0], after[1] / before[1]
    return ((points + 0.5) * np.array([sx, sy], dtype=np.float32) - 0.5).astype(np.float32)


def source_crop(image: np.ndarray, points: np.ndarray,
                settings: SourceSettings | None = None) -> tuple[np.ndarray, np.ndarray, FaceCrop]:
    """Size rule, then the source crop: (limited image, its (68, 2) landmarks, the crop).

    LivePortrait's rules (long side ≤ 1280 px, crop scale 2.3, shift −0.125), or an audio
    backend's (``settings``: size limit, crop scale, shift, rotation).
    """
    limited = limit_size(image) if settings is None else ditto_size(image, settings.max_size)
    if limited.shape[:2] != image.shape[:2]:
        points = scale_points(points, image.shape[:2], limited.shape[:2])
    if settings is None:
        return limited, points, crop_face(limited, points)
    return limited, points, crop_face(limited, points, scale=settings.crop_scale, vx=settings.crop_vx,
                                      vy=settings.crop_vy, rotate=settings.rotate)


@torch.inference_mode()
def motion_heads(motion: torch.nn.Module, crop: FaceCrop, device: torch.device) -> dict[str, torch.Tensor]:
    """M's raw heads (float32; pose as 66-bin logits) for a crop's (256, 256) input."""
    return {k: v.float() for k, v in motion(image_to_tensor(crop.crop_256, device)).items()}


@torch.inference_mode()
def prepare_image(image: np.ndarray, points: np.ndarray, motion: torch.nn.Module, renderer: Renderer,
                  settings: SourceSettings | None = None, raw: dict[str, torch.Tensor] | None = None) -> PreparedSource:
    """(H, W, 3) uint8 RGB image + its (68, 2) landmarks (pixels) → size rule, crop, M, F, eye/lip ratios.

    ``motion`` is M, ``renderer`` runs F; ``raw``: M's float32 heads for this image's crop
    when already computed (M is then not run again).
    """
    limited, points, crop = source_crop(image, points, settings)
    if raw is None:
        raw = motion_heads(motion, crop, renderer.device)
    return PreparedSource(
        image=np.ascontiguousarray(limited), landmarks=points, crop=crop, info=keypoint_info_from_raw(raw),
        feature_3d=renderer.source_features(crop.crop_256),
        ratios=ratios_from_landmarks(points[None], renderer.device), raw=raw,
    )


def photo_landmarks(image: str | os.PathLike | np.ndarray, provider: LandmarkProvider) -> tuple[np.ndarray, np.ndarray]:
    """A photo loaded as (H, W, 3) uint8 RGB and its (68, 2) landmarks; warns when the face is small.

    Raises:
        MediaError: the photo cannot be read.
        NoFaceError: no face was found in the photo.
    """
    original = load_image(image)
    points = provider.landmarks(original, 0)
    name = image if not isinstance(image, np.ndarray) else "the photo"
    if points is None:
        raise NoFaceError(f"no face found in {name}: {NO_FACE_HINT}")
    face_px = float(np.ptp(points, axis=0).max())
    if face_px < SMALL_FACE_PX:
        warnings.warn(f"the face in {name} is only {face_px:.0f} px across: its 512x512 crop is upscaled from it "
                      f"and will look blurry; use a photo where the face is at least {SMALL_FACE_PX} px", stacklevel=3)
    return original, points


def source_video_motion(video: str | os.PathLike, fps: float, n_frames: int, provider: LandmarkProvider,
                        motion: torch.nn.Module, device: torch.device,
                        ) -> tuple[list[np.ndarray], list[dict[str, torch.Tensor]]]:
    """Landmarks (gaps filled) and M's raw heads of every frame of ``video`` read at ``fps`` Hz (≤ ``n_frames``).

    Two passes over the video: landmarks of every frame, then crop + M
    frame by frame (no frame is kept).

    Raises:
        NoFaceError: no frame shows a face.
    """
    with VideoReader(video, fps=fps, max_frames=n_frames) as reader:
        points = [provider.landmarks(frame, index) for index, frame in reader.indexed()]
    if all(p is None for p in points):
        raise NoFaceError(f"no face found in any frame of source video {video}: "
                          "use a video where one face is clearly visible (frontal or slightly turned, not tiny)")
    points = fill_missing(points)
    with VideoReader(video, fps=fps, max_frames=n_frames) as reader:
        raws = [motion_heads(motion, source_crop(frame, frame_points)[2], device)
                for frame, frame_points in zip(reader, points)]
    return points, raws


def video_sources(video: str | os.PathLike, fps: float, points: Sequence[np.ndarray],
                  raws: Sequence[dict[str, torch.Tensor]], motion: torch.nn.Module,
                  renderer: Renderer) -> Iterator[PreparedSource]:
    """A :class:`PreparedSource` per frame of ``video`` read at ``fps`` Hz, reusing M's heads of :func:`source_video_motion`."""
    with VideoReader(video, fps=fps, max_frames=len(points)) as reader:
        for frame, frame_points, raw in zip(reader, points, raws):
            yield prepare_image(frame, frame_points, motion, renderer, raw=raw)
