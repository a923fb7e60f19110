"""Video driver: a driving clip → a stream of per-frame motion in LivePortrait's space.

Each driving frame is brought to 256×256 — resized as is when the clip is a
pre-cropped square face video, otherwise cut out around the face with an
axis-aligned box — and run through the motion extractor M (LivePortrait
spec §2–§3, §9 "Driving video").  The box is by default ONE box for the whole
clip, the average of the per-frame face boxes
(:func:`talkinghead.face.crop.average_box`, LivePortrait's
``Cropper.crop_driving_video``), so the driver's head translation and zoom
reach the motion; ``box="track"`` instead follows the face with a smoothed
per-frame box (:func:`talkinghead.face.crop.smooth_boxes`), which cancels
them.  Either needs a first pass over the landmarks of every frame before
the M pass.  Frames are decoded lazily; only the landmarks (68×2 per frame)
of a clip are held in memory, never its frames.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Iterator, Literal

import cv2
import numpy as np
import torch

from ..errors import ControlError, MediaError, NoFaceError, WeightsError
from ..face.crop import DRIVING_BOX_MODES, NETWORK_SIZE, DrivingBoxMode, average_box, crop_box, driving_box, smooth_boxes
from ..face.landmarks import LandmarkProvider
from ..face.ratios import liveportrait_ratios
from ..media.video import AudioSource, VideoReader, probe_video
from ..models.images import image_to_tensor
from ..models.motion_extractor import MotionExtractor
from ..motion.animate import EyeLipRatios
from ..motion.frame import MotionSequence
from ..motion.keypoints import keypoint_info_from_raw
from ..options import check_options, option

CropMode = Literal["auto", "on", "off"]
CROP_MODES: tuple[str, ...] = ("auto", "on", "off")

FACE_CHECK_FRAMES = 25
"""An uncropped ("auto", square) driving clip is refused when none of its first this many frames shows a face."""


@dataclass(frozen=True)
class DrivingCrop:
    """How the frames of a driving clip are brought to the motion extractor's 256×256 input.

    The field names are the keyword arguments of
    :meth:`talkinghead.engine.Engine.animate_video` and
    :meth:`~talkinghead.engine.Engine.animate_source_video` (``crop`` and
    ``box`` of :class:`VideoDriver`); help, CLI flag and default: their
    :func:`~talkinghead.options.option` specs.

    Attributes:
        crop_driving: "auto" (crop unless the clip is square), "on" or "off".
        driving_box: "average" (one box for the whole clip, the mean of the
            per-frame face boxes; LivePortrait) or "track" (a per-frame box
            smoothed over 0.5 s).

    Raises:
        ControlError: a value not one of its choices.
    """

    crop_driving: CropMode = option("auto", what="driving crop", choices=CROP_MODES,
                                    help="crop the face out of each driving frame (auto: only when the video is "
                                         "not square)")
    driving_box: DrivingBoxMode = option(
        "average", what="driving box", choices=DRIVING_BOX_MODES,
        help="how cropped driving frames are cut: average = one box for the whole clip, the mean of the per-frame "
             "face boxes, so head moves and zoom in the frame are transferred (LivePortrait); track = a box that "
             "follows the face (smoothed over 0.5 s), which cancels them")

    def __post_init__(self) -> None:
        check_options(self)


@dataclass(frozen=True)
class DrivingBatch:
    """Motion of B consecutive driving frames.

    Attributes:
        motion: (B) motion of the frames (angles in degrees): keypoint info
            from M for a video, or plain motion frames from a motion file.
        ratios: (B) eye/lip open ratios from the frames' 68-point landmarks
            (on the 203-point scale: :func:`ratios_from_landmarks`), or None
            when they were not asked for.
    """

    motion: MotionSequence
    ratios: EyeLipRatios | None


@dataclass(frozen=True)
class DrivingInput:
    """One driving frame as M sees it.

    Attributes:
        image: (256, 256, 3) uint8 RGB network input.
        landmarks: (68, 2) float32 pixels of the frame, or None (no face, or
            landmarks not needed).
        M_o2c: (3, 3) float32 frame → 512 crop transform, or None when the
            frame is resized uncropped.
    """

    image: np.ndarray
    landmarks: np.ndarray | None
    M_o2c: np.ndarray | None


def ratios_from_landmarks(landmarks: np.ndarray, device: torch.device | str = "cpu") -> EyeLipRatios:
    """(B, 68, 2) landmarks → (B) eye/lip ratios as float32 tensors, on LivePortrait's 203-point
    scale (the retargeting MLPs' inputs): :func:`talkinghead.face.ratios.liveportrait_ratios`, i.e.
    the 68-point eye ratio × ``EYE_RATIO_68_TO_203``."""
    eye_ratios, lip_ratio = liveportrait_ratios(landmarks)
    eye = torch.as_tensor(eye_ratios, dtype=torch.float32, device=device)
    lip = torch.as_tensor(lip_ratio, dtype=torch.float32, device=device)[..., None]
    return EyeLipRatios(eye=eye.reshape(-1, 2), lip=lip.reshape(-1, 1))


class VideoDriver:
    """Streams the motion of a driving video, batch by batch.

    Args:
        path: driving video file.
        motion_extractor: M, in eval mode; its device is used.
        landmarks: 68-point landmark provider for the driving frames; needed
            when the frames are cropped or ``need_ratios`` is set.
        crop: "auto" (crop unless the clip is square), "on" or "off".
        box: when cropping, "average" (one box for all frames, the mean of
            the per-frame boxes over the frames used; LivePortrait) or
            "track" (a per-frame box smoothed over 0.5 s).
        max_frames: use at most this many frames (the average box is taken
            over these frames only).
        need_ratios: also compute eye/lip open ratios (for eye/lip retargeting).
        batch_size: frames per batch given to M.

    Attributes:
        fps: frame rate of the motion stream (the clip's average rate), Hz.
        n_frames: number of frames the stream will have (from the container;
            may be off by a frame or two for damaged or VFR files).
        has_audio: whether the clip has an audio track.
        cropped: whether frames are cropped around the face.

    Raises:
        MediaError: the file is missing or not a video.
        NoFaceError: ``crop="auto"`` on a square clip (used uncropped) and
            none of its first :data:`FACE_CHECK_FRAMES` frames shows a face
            (checked with ``landmarks`` when given; skipped with a warning
            when that provider cannot load its model).
        ValueError: a landmark provider is needed but none was given.
        ControlError: an unknown ``box`` mode.
    """

    def __init__(self, path: str | os.PathLike, motion_extractor: MotionExtractor, *,
                 landmarks: LandmarkProvider | None = None, crop: CropMode = DrivingCrop.crop_driving,
                 box: DrivingBoxMode = DrivingCrop.driving_box,
                 max_frames: int | None = None, need_ratios: bool = False, batch_size: int = 1) -> None:
        if box not in DRIVING_BOX_MODES:
            raise ControlError(f"unknown driving box mode {box!r}; use one of {', '.join(DRIVING_BOX_MODES)}")
        self.path = path
        self.box = box
        self.info = probe_video(path)
        self.motion_extractor = motion_extractor
        self.device = next(motion_extractor.parameters()).device
        self.cropped = crop == "on" or (crop == "auto" and self.info.width != self.info.height)
        self.need_ratios = need_ratios
        if (self.cropped or need_ratios) and landmarks is None:
            raise ValueError("a landmark provider is needed to crop driving frames or measure eye/lip ratios")
        self.landmarks = landmarks
        self.max_frames = max_frames
        self.batch_size = batch_size
        self.fps = self.info.fps
        self.n_frames = min(self.info.n_frames, max_frames) if max_frames else self.info.n_frames
        self.has_audio = self.info.has_audio
        if crop == "auto" and not self.cropped and not need_ratios and landmarks is not None:
            self._check_face()

    def audio(self) -> AudioSource | None:
        """The clip's audio track cut to the stream's ``n_frames / fps`` seconds, or None when it has none."""
        return AudioSource(self.path, duration_s=self.n_frames / self.fps) if self.has_audio else None

    def _reader(self) -> VideoReader:
        return VideoReader(self.path, max_frames=self.max_frames, fps=self.fps)

    def _all_landmarks(self) -> list[np.ndarray | None]:
        """First pass: 68-point landmarks of every frame (None where no face), asked by decoded frame index.

        Raises:
            MediaError: a landmark file (a provider with ``n_frames``) holds
                another number of frames than the clip decodes to.
        """
        expected = getattr(self.landmarks, "n_frames", None)
        points = []
        with self._reader() as reader:
            for index, frame in reader.indexed():
                if expected is not None and index >= expected:
                    raise self._count_mismatch(expected)
                points.append(self.landmarks.landmarks(frame, index))
            decoded = reader.decoded_frames
        read_all = self.max_frames is None or len(points) < self.max_frames
        if expected is not None and read_all and decoded != expected:
            raise self._count_mismatch(expected)
        return points

    def _count_mismatch(self, expected: int) -> MediaError:
        name = getattr(self.landmarks, "path", "the landmark file")
        return MediaError(f"landmark file {name} has {expected} frames but driving video {self.path} has "
                          f"{self.info.n_frames}: use the landmark file made for this video")

    def _check_face(self) -> None:
        """An uncropped clip must show a face in one of its first :data:`FACE_CHECK_FRAMES` frames.

        When the landmark provider cannot work (:class:`WeightsError`: the
        default detector's weights cannot be downloaded offline) the check is
        skipped with a warning, and the clip is used as it is.

        Raises:
            NoFaceError: none of them does.
        """
        with VideoReader(self.path, max_frames=FACE_CHECK_FRAMES) as reader:
            for index, frame in reader.indexed():
                try:
                    found = self.landmarks.landmarks(frame, index)
                except WeightsError as error:
                    warnings.warn(f"driving video {self.path} was not checked for a face ({error}); it is used as it "
                                  "is (give --driving-landmarks to check it)", stacklevel=2)
                    return
                if found is not None:
                    return
        raise NoFaceError(f"no face found in the first {min(FACE_CHECK_FRAMES, self.info.n_frames)} frames of "
                          f"driving video {self.path}: use a clip that shows a face (or --crop-driving off to "
                          "use its frames as they are)")

    def inputs(self) -> Iterator[DrivingInput]:
        """The network input of every frame, in order (decoded lazily; landmarks first when needed).

        Cropped frames are cut with :func:`~talkinghead.face.crop.crop_box`
        (one averaged box, or the smoothed per-frame boxes, see ``box``);
        uncropped ones are resized bilinearly, as in LivePortrait.

        Raises:
            NoFaceError: cropping (or ratios) asked for and no frame shows a face.
            MediaError: a landmark file that does not have the clip's frame count.
        """
        points = self._all_landmarks() if (self.cropped or self.need_ratios) else None
        if points is not None and all(p is None for p in points):
            raise NoFaceError(f"no face found in any frame of driving video {self.path}: use a clip that shows a face")
        boxes = None
        if self.cropped:
            per_frame = [None if p is None else driving_box(p) for p in points]
            boxes = average_box(per_frame)[None] if self.box == "average" else smooth_boxes(per_frame, self.fps)
        with self._reader() as reader:
            for i, frame in enumerate(reader):
                matrix = None
                if boxes is not None:
                    crop = crop_box(frame, boxes[min(i, len(boxes) - 1)])
                    image, matrix = crop.crop_256, crop.M_o2c
                else:
                    image = cv2.resize(frame, (NETWORK_SIZE, NETWORK_SIZE), interpolation=cv2.INTER_LINEAR)
                yield DrivingInput(image, points[i] if points is not None and i < len(points) else None, matrix)

    def _batch(self, images: list[np.ndarray], points: list[np.ndarray | None]) -> DrivingBatch:
        with torch.inference_mode():
            raw = self.motion_extractor(image_to_tensor(np.stack(images), self.device))
            motion = keypoint_info_from_raw({k: v.float() for k, v in raw.items()})
        ratios = None
        if self.need_ratios:
            ratios = ratios_from_landmarks(np.stack(fill_missing(points)), self.device)
        return DrivingBatch(motion=motion, ratios=ratios)

    def __iter__(self) -> Iterator[DrivingBatch]:
        """Yield :class:`DrivingBatch` es of up to ``batch_size`` frames, in order.

        Raises:
            MediaError: the clip has no decodable frame, or is damaged.
            NoFaceError: cropping is on and no frame shows a face.
        """
        images: list[np.ndarray] = []
        points: list[np.ndarray | None] = []
        count = 0
        for item in self.inputs():
            images.append(item.image)
            points.append(item.landmarks)
            count += 1
            if len(images) == self.batch_size:
                yield self._batch(images, points)
                images, points = [], []
        if images:
            yield self._batch(images, points)
        if count == 0:
            raise MediaError(f"driving video {self.path} has no decodable frames: use another video file")


def fill_missing(points: list[np.ndarray | None]) -> list[np.ndarray]:
    """Per-frame landmarks with gaps filled: a frame without a face takes the previous frame's (leading ones: the first found).

    Args:
        points: per-frame (68, 2) landmarks, None where no face was found.

    Returns:
        The same number of (68, 2) arrays.

    Raises:
        MediaError: no frame has landmarks.
    """
    known = [p for p in points if p is not None]
    if not known:
        raise MediaError("no face was found in the driving frames needed for eye/lip retargeting: use a video that shows a face")
    filled, last = [], known[0]
    for p in points:
        last = p if p is not None else last
        filled.append(last)
    return filled
