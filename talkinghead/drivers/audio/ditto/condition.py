"""Ditto's per-frame condition vector for the LMDM (spec ``ditto-audio2motion.md`` §3).

Per frame, float32, 1103 wide::

    [audio 1024 | emotion 8 | eye_open 2 | eye_ball 6 | sc 63]

* audio: the 25 Hz HuBERT feature of the frame;
* emotion: 8 probabilities in :data:`EMOTIONS` order (one label L →
  softmax of 8 at L, 0 elsewhere = 0.997657 / 0.000335), or a per-frame
  table used cyclically;
* eye_open / eye_ball: the source's eye openness and iris offset measured on
  the 512 crop (:class:`EyeConditions`, from MediaPipe's 478-point mesh or,
  approximately, from our 68-point landmarks);
* sc: the source's canonical keypoints (LivePortrait ``kp``, 63).

For an image source everything but the audio is the same on every frame.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Protocol, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ....errors import ControlError, NoFaceError, TalkingHeadError, WeightsError
from ....face.ratios import eye_open_ratios

EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise", "contempt")
"""Emotion classes in the order of the condition's 8 emotion values (HSEmotion's, re-ordered; §3)."""

NEUTRAL = EMOTIONS.index("neutral")
"""Default emotion label (4)."""

EMOTION_LOGIT = 8.0
"""Logit given to each chosen label before the softmax (§3)."""

AUDIO_DIM = 1024
"""Width of a HuBERT feature."""

CONDITION_DIM = AUDIO_DIM + len(EMOTIONS) + 2 + 6 + 63
"""Width of a condition row (1103)."""

Label = Union[int, str]
Emotion = Union[Label, Sequence[Label], Sequence[Sequence[Label]], Tensor, np.ndarray]
"""An emotion label (index or name, case-insensitive), several labels (mixed
equally), a per-frame list of label lists, or a per-frame (M, 8) probability table."""


# ------------------------------------------------------------------ emotion


def _label_index(label: Label) -> int:
    if isinstance(label, str) and label.lower() in EMOTIONS:
        return EMOTIONS.index(label.lower())
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool) and 0 <= label < len(EMOTIONS):
        return int(label)
    raise ControlError(f"unknown emotion {label!r}: use an index 0–7 or one of {', '.join(EMOTIONS)}")


def emotion_probabilities(labels: Label | Sequence[Label]) -> Tensor:
    """Emotion vector of one or several labels: softmax of 8 at each label, 0 elsewhere (§3).

    Args:
        labels: an index 0–7 or a name from :data:`EMOTIONS` (case-insensitive),
            or a non-empty sequence of them.

    Returns:
        (8,) float32 probabilities (one label: 0.997657 at it, 0.000335 elsewhere).

    Raises:
        ControlError: unknown label or empty sequence.
    """
    chosen = [labels] if isinstance(labels, (int, str, np.integer)) else list(labels)
    if not chosen:
        raise ControlError("no emotion given: use an index 0–7 or one of " + ", ".join(EMOTIONS))
    logits = torch.zeros(len(EMOTIONS), dtype=torch.float32)
    logits[[_label_index(label) for label in chosen]] = EMOTION_LOGIT
    return torch.softmax(logits, dim=0)


def emotion_sequence(emotion: Emotion) -> Tensor:
    """Emotion table (M, 8) from any :data:`Emotion` form.

    Args:
        emotion: label(s) (→ M = 1), a list of label lists (one mixed row
            per entry, Ditto's ``[[4], [3, 4], …]``) or an (M, 8) table of
            probabilities.

    Returns:
        (M, 8) float32; row ``max(frame, 0) mod M`` is used for a frame.

    Raises:
        ControlError: unknown label, or a table that is not (M, 8) with M ≥ 1.
    """
    if isinstance(emotion, (Tensor, np.ndarray)):
        table = torch.as_tensor(emotion, dtype=torch.float32)
        if table.ndim != 2 or table.shape[1] != len(EMOTIONS) or not len(table):
            raise ControlError(f"an emotion table must be (frames, {len(EMOTIONS)}), got {tuple(table.shape)}")
        return table
    if isinstance(emotion, (list, tuple)) and emotion and isinstance(emotion[0], (list, tuple)):
        return torch.stack([emotion_probabilities(labels) for labels in emotion])
    return emotion_probabilities(emotion)[None]


# ------------------------------------------------------------------ eyes


@dataclass(frozen=True)
class EyeConditions:
    """Eye state of the source in Ditto's definitions (§3).

    Attributes:
        eye_open: (2,) float32 [image-left, image-right] openness = sum of
            three lid-to-lid distances over the corner distance (about 0.6–1
            open, < 0.3 closed; unitless).
        eye_ball: (6,) float32 iris offsets (lx, rx, ly, ry, lz, rz) in
            normalised crop units (x/W, y/H, z/W); zeros = looking straight.
    """

    eye_open: Tensor
    eye_ball: Tensor

    def __post_init__(self) -> None:
        if tuple(self.eye_open.shape) != (2,) or tuple(self.eye_ball.shape) != (6,):
            raise ValueError(f"eye conditions must be (2,) and (6,), got {tuple(self.eye_open.shape)} "
                             f"and {tuple(self.eye_ball.shape)}")


# MediaPipe 478-point mesh indices per image side: (outer corner, inner corner, lid pairs, iris centre).
_MESH_EYES = (
    (33, 133, ((145, 159), (144, 160), (153, 158)), 468),
    (263, 362, ((374, 386), (373, 387), (380, 385)), 473),
)
_MESH_EPS = 1e-8


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v) + _MESH_EPS)


def eye_conditions_from_mesh(mesh: np.ndarray) -> EyeConditions:
    """Ditto's eye_open and eye_ball from a MediaPipe 478-point face mesh (§3).

    Per eye (image-left: corners 33/133, iris 468; image-right: 263/362, 473):
    openness = Σ|lid pair| / (|outer − inner| + 1e−8);
    ball = (unit(iris − centre) − unit(outer − inner))·|iris − centre|, with
    centre the midpoint of the corners and unit(v) = v / (|v| + 1e−8).

    Args:
        mesh: (478, 3) landmarks normalised by the crop size (x/W, y/H, z/W),
            as MediaPipe's face landmarker returns them.

    Returns:
        :class:`EyeConditions` (float32).

    Raises:
        ValueError: if ``mesh`` is not (478, 3).
    """
    points = np.asarray(mesh, dtype=np.float32)
    if points.shape != (478, 3):
        raise ValueError(f"expected a (478, 3) MediaPipe face mesh, got shape {points.shape}")
    opens, balls = [], []
    for outer, inner, lids, iris in _MESH_EYES:
        width = np.linalg.norm(points[outer] - points[inner])
        opens.append(sum(np.linalg.norm(points[a] - points[b]) for a, b in lids) / (width + _MESH_EPS))
        offset = points[iris] - (points[outer] + points[inner]) * 0.5
        balls.append((_unit(offset) - _unit(points[outer] - points[inner])) * np.linalg.norm(offset))
    eye_ball = np.stack(balls, axis=-1).reshape(-1)  # (3, 2) [left | right] row-major
    return EyeConditions(torch.tensor(np.array(opens, dtype=np.float32)), torch.from_numpy(eye_ball.astype(np.float32)))


LIDS_68_TO_MESH = 1.5
"""68-point fallback: iBUG has two lid pairs per eye where Ditto sums three."""


def eye_conditions_from_68(landmarks: np.ndarray) -> EyeConditions:
    """Approximate :class:`EyeConditions` from iBUG 68-point landmarks.

    An approximation of §3's definitions for when no MediaPipe mesh is
    available: eye_open = 1.5·(d(37, 41) + d(38, 40)) / d(36, 39) for the
    image-left eye (43/47, 44/46 over 42/45 right), i.e. the two iBUG lid
    pairs standing in for Ditto's three (3 × the mean pair distance over the
    width). 2-D only, so it ignores depth, and iBUG's lid points sit at about
    1/3 and 2/3 of the eye where MediaPipe's middle pair is at the centre, so
    values run a little lower than the mesh's. The 68 points have no iris:
    eye_ball = zeros, i.e. looking straight ahead (a frontal gaze, the usual
    case for a portrait).

    Args:
        landmarks: (68, 2) iBUG landmarks in pixels of any frame (the
            ratio does not depend on scale, position or in-plane rotation).

    Returns:
        :class:`EyeConditions` (float32).

    Raises:
        ValueError: if ``landmarks`` is not (68, 2).
    """
    points = np.asarray(landmarks)
    if points.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got shape {points.shape}")
    # eye_open_ratios gives the mean of the two lid pairs over the width.
    eye_open = eye_open_ratios(points) * 2 * LIDS_68_TO_MESH
    return EyeConditions(torch.tensor(eye_open, dtype=torch.float32), torch.zeros(6))


class EyeConditionProvider(Protocol):
    """Measures the source's eye state on its 512 crop."""

    def __call__(self, crop: np.ndarray, landmarks: np.ndarray) -> EyeConditions:
        """Eye state of the source.

        Args:
            crop: (512, 512, 3) uint8 RGB source crop.
            landmarks: (68, 2) iBUG landmarks of the source, in crop pixels.

        Returns:
            :class:`EyeConditions`.

        Raises:
            TalkingHeadError: (a subclass) when the eyes cannot be measured.
        """


class LandmarkEyeConditions:
    """Provider using the 68-point approximation (:func:`eye_conditions_from_68`); needs no model."""

    def __call__(self, crop: np.ndarray, landmarks: np.ndarray) -> EyeConditions:
        """See :class:`EyeConditionProvider`; ``crop`` is not used."""
        return eye_conditions_from_68(landmarks)


class MediaPipeEyeConditions:
    """Provider running MediaPipe's face landmarker on the crop, as Ditto does (§3).

    What Ditto does (core/atomic_components/source2info.py ``_get_eye_info``
    on the 512 crop of ``_crop``; core/aux_models/modules/landmark478.py
    ``Landmark478``; core/utils/eye_info.py ``EyeAttrUtilsByMP``): the
    (512, 512, 3) uint8 RGB crop goes to a ``FaceLandmarker`` (IMAGE mode,
    ``num_faces=1``) as an ``mp.Image`` of format SRGB; the first face's 478
    landmarks ``[x, y, z]`` (x/W, y/H, z as MediaPipe scales it) go through
    :func:`eye_conditions_from_mesh`.  Ditto also asks for blendshapes and
    transformation matrices, which do not change the landmarks; we do not.

    Args:
        task_path: MediaPipe ``face_landmarker.task`` (Ditto's Hub repo has it
            at ``ditto_pytorch/aux_models/face_landmarker.task``).
        fallback: provider used whenever MediaPipe cannot measure the eyes
            (``None`` = raise): ``mediapipe`` not importable, no task file,
            the landmarker cannot be created from it or fails on a crop
            (any exception), or it finds no face on the crop.  Each cause is
            warned about once per provider (a ``UserWarning`` naming it), and
            after a failed creation the fallback is used for good, without
            trying again.

    The ``mediapipe`` package is imported when the first crop is measured.
    """

    def __init__(self, task_path: str | os.PathLike, fallback: EyeConditionProvider | None = None) -> None:
        self.task_path = os.fspath(task_path)
        self.fallback = fallback
        self._landmarker = None
        self._creation_error: WeightsError | None = None
        self._warned: set[str] = set()

    def _create(self):
        """(mediapipe module, FaceLandmarker); WeightsError naming the cause when it cannot be made."""
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except Exception as error:  # ImportError, or a broken install failing on import
            raise WeightsError(f"measuring the eyes needs the 'mediapipe' package ({type(error).__name__}: "
                               f"{error}): pip install -r requirements.txt") from error
        if not os.path.isfile(self.task_path):
            raise WeightsError(f"{self.task_path}: face landmarker model not found; download "
                               "face_landmarker.task again")
        try:
            options = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=self.task_path),
                                                   num_faces=1)
            return mp, vision.FaceLandmarker.create_from_options(options)
        except Exception as error:
            raise WeightsError(f"{self.task_path}: MediaPipe cannot create the face landmarker from it "
                               f"({type(error).__name__}: {_one_line(error)}); download face_landmarker.task "
                               "again") from error

    def _mesh(self, crop: np.ndarray) -> np.ndarray | None:
        """(478, 3) float32 mesh of the first face on ``crop``, or None when MediaPipe finds none."""
        if self._landmarker is None and self._creation_error is None:
            try:
                self._landmarker = self._create()
            except WeightsError as error:
                self._creation_error = error
        if self._creation_error is not None:
            raise self._creation_error
        mp, landmarker = self._landmarker
        try:
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(crop, dtype=np.uint8))
            faces = landmarker.detect(image).face_landmarks
        except Exception as error:
            raise WeightsError(f"MediaPipe's face landmarker failed on the source crop ({type(error).__name__}: "
                               f"{_one_line(error)})") from error
        if not faces:
            return None
        mesh = np.array([[p.x, p.y, p.z] for p in faces[0]], dtype=np.float32)
        if mesh.shape != (478, 3):
            raise WeightsError(f"{self.task_path}: the face landmarker gave {len(mesh)} landmarks, not 478 with "
                               "irises: use Ditto's face_landmarker.task")
        return mesh

    def __call__(self, crop: np.ndarray, landmarks: np.ndarray) -> EyeConditions:
        """See :class:`EyeConditionProvider`.

        Raises (only without a fallback):
            WeightsError: mediapipe missing, no task file, the landmarker
                cannot be created from it, or it fails on the crop.
            NoFaceError: no face found on the crop.
        """
        try:
            mesh = self._mesh(crop)
        except WeightsError as error:
            return self._fall_back(error, crop, landmarks)
        if mesh is None:
            return self._fall_back(NoFaceError("MediaPipe found no face on the source crop; the eye state cannot "
                                               "be measured"), crop, landmarks)
        return eye_conditions_from_mesh(mesh)

    def _fall_back(self, error: TalkingHeadError, crop: np.ndarray, landmarks: np.ndarray) -> EyeConditions:
        if self.fallback is None:
            raise error
        if str(error) not in self._warned:
            self._warned.add(str(error))
            warnings.warn(f"eye conditions estimated from the 68-point landmarks instead of MediaPipe's face mesh: "
                          f"{error}", stacklevel=3)
        return self.fallback(crop, landmarks)


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no message"


# ------------------------------------------------------------------ reference character


@dataclass(frozen=True, eq=False)
class ReferenceCharacter:
    """A reference character (Ditto's ``ch_info``): conditions the LMDM in place of the source.

    With one set, the motion condition of the first window (``s_kp_cond``),
    the canonical keypoints ``sc`` and the eye conditions come from the
    reference instead of the user's photo (condition_handler.py
    ``ConditionHandler.setup``, audio2motion.py ``Audio2Motion.setup``); the
    generated motion is then applied to the photo with the exp/pitch/yaw/roll
    deltas scaled by ``scale`` / the photo's scale (motion_stitch.py
    ``MotionStitch.setup``; :attr:`.postprocess.PostprocessOptions.reference_scale`).

    Attributes:
        motion_row: (265,) float32 motion row of the reference's first frame
            ``[scale − 1 | pitch | yaw | roll | t | exp]`` (pose as bin logits).
        canonical_kp: (63,) float32 canonical keypoints ``sc``.
        eyes: eye conditions per reference frame (≥ 1), looped per frame.
        scale: the first frame's keypoint scale, as stored (float32 value).
    """

    motion_row: Tensor
    canonical_kp: Tensor
    eyes: tuple[EyeConditions, ...]
    scale: float

    def __post_init__(self) -> None:
        if tuple(self.motion_row.shape) != (265,) or tuple(self.canonical_kp.shape) != (63,) or not self.eyes:
            raise ControlError(f"a reference character needs a (265,) motion row, (63,) keypoints and ≥ 1 eye "
                               f"measurement, got {tuple(self.motion_row.shape)}, {tuple(self.canonical_kp.shape)} "
                               f"and {len(self.eyes)}")


# ------------------------------------------------------------------ assembly


@dataclass(frozen=True)
class ConditionParts:
    """Which parts follow the audio in a condition row (Ditto's ``audio2motion_cfg``
    ``use_emo``/``use_eye_open``/``use_eye_ball``/``use_sc``, condition_handler.py).

    The released model uses all four (1103 wide); the row keeps the order
    ``[audio | emotion 8 | eye_open 2 | eye_ball 6 | sc 63]`` with the unused
    parts left out.
    """

    emotion: bool = True
    eye_open: bool = True
    eye_ball: bool = True
    sc: bool = True

    @property
    def width(self) -> int:
        """Width of a condition row: 1024 + the widths of the parts used."""
        return AUDIO_DIM + 8 * self.emotion + 2 * self.eye_open + 6 * self.eye_ball + 63 * self.sc


def mirror_index(index: Tensor, size: int) -> Tensor:
    """Ditto's back-and-forth looping over ``size`` entries (condition_handler.py ``_mirror_index``).

    0, 1, …, size−1, size−1, …, 0, 0, 1, …: even turns run forwards, odd
    turns backwards.

    Args:
        index: integer tensor of non-negative frame indices.
        size: number of entries, ≥ 1.

    Returns:
        Integer tensor of entry indices in [0, size).
    """
    turn, rest = index // size, index % size
    return torch.where(turn % 2 == 0, rest, size - rest - 1)


class ConditionBuilder:
    """Per-frame LMDM conditions (§3; Ditto condition_handler.py ``ConditionHandler``).

    Args:
        canonical_kp: (1, 63), (63,) or (1, 21, 3) canonical keypoints ``sc``
            (the source's, or a reference character's).
        eyes: the source's :class:`EyeConditions`, or a sequence of them (a
            reference character measured on several frames), used per frame
            with :func:`mirror_index` looping (frame index below 0 → 0).
        emotion: any :data:`Emotion` form (default neutral).
        parts: which parts the rows hold (default all: 1103 wide).

    Raises:
        ControlError: invalid emotion, or an empty eye sequence.
    """

    def __init__(self, canonical_kp: Tensor, eyes: EyeConditions | Sequence[EyeConditions],
                 emotion: Emotion = NEUTRAL, parts: ConditionParts = ConditionParts()) -> None:
        track = [eyes] if isinstance(eyes, EyeConditions) else list(eyes)
        if not track:
            raise ControlError("no eye conditions given: measure the eyes on at least one frame")
        self.parts = parts
        self.emotion = emotion_sequence(emotion)
        self.eye_open = torch.stack([e.eye_open for e in track]).to(torch.float32)
        self.eye_ball = torch.stack([e.eye_ball for e in track]).to(torch.float32)
        self.sc = canonical_kp.reshape(-1).to(torch.float32)

    def __call__(self, audio: Tensor, first_frame: int = 0) -> Tensor:
        """Condition rows for consecutive frames (usable as the windows' ``ConditionFn``).

        Args:
            audio: (L, 1024) float32 HuBERT features at 25 Hz.
            first_frame: clip frame index of ``audio[0]`` (negative inside an
                online warm-up; such frames use emotion and eye entry 0).

        Returns:
            (L, C) float32 ``[audio | emotion | eye_open | eye_ball | sc]``
            on ``audio``'s device, C = ``parts.width`` (1103 with all parts).

        Raises:
            ValueError: if ``audio`` is not (L, 1024).
        """
        if audio.ndim != 2 or audio.shape[1] != AUDIO_DIM:
            raise ValueError(f"audio features must be (frames, {AUDIO_DIM}), got {tuple(audio.shape)}")
        frames = torch.arange(first_frame, first_frame + audio.shape[0]).clamp(min=0)
        eyes = mirror_index(frames, len(self.eye_open))
        n = audio.shape[0]
        parts = [audio]
        if self.parts.emotion:
            parts.append(self.emotion.to(audio)[frames % len(self.emotion)])
        if self.parts.eye_open:
            parts.append(self.eye_open.to(audio)[eyes])
        if self.parts.eye_ball:
            parts.append(self.eye_ball.to(audio)[eyes])
        if self.parts.sc:
            parts.append(self.sc.to(audio).expand(n, -1))
        return torch.cat(parts, dim=1)
