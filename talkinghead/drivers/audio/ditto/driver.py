"""Audio driver: speech → a motion sequence in LivePortrait's space (Ditto's LMDM).

Offline pipeline (spec ``ditto-audio2motion.md`` §1): 16 kHz mono audio →
audio encoder features at 25 Hz (:mod:`.features`) → per-frame conditions
(:mod:`.condition`) → DDIM sampling over 80-frame windows (:mod:`.windows`,
:mod:`.diffusion`) → 265-d motion rows → relative mixing onto the source,
expression masks and gaze fix (:mod:`.postprocess`) → a
:class:`~talkinghead.motion.frame.MotionSequence` per video frame (degrees).

Keypoints, stitching and rendering are left to the caller, so that the same
edits (expression scale, head pose choices, smoothing, controls) apply to
every driver's motion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import torch

from ....errors import MediaError
from ....models.lmdm import LMDM
from ....motion.frame import MotionSequence
from ....options import option
from .condition import NEUTRAL, ConditionBuilder, ConditionParts, Emotion, EyeConditions, ReferenceCharacter
from .diffusion import DDIMSampler
from .features import frame_count, offline_features
from .hubert import AudioEncoder
from .postprocess import MotionPostprocessor, PostprocessOptions, motion_row_from_raw
from .windows import WindowConfig, WindowRecord, generate_offline

DEFAULT_STEPS = 50
"""DDIM steps when nothing sets them: Ditto's code default (``sampling_timesteps``,
stream_pipeline_offline.py ``StreamSDK.setup``); its shipped configuration
normally sets them (:mod:`.config`).  3, 4, 5 and 7 steps give NaN or unsafe
coefficients in float32 and are refused (see :mod:`.diffusion`)."""


@dataclass(frozen=True)
class AudioDriverOptions:
    """Settings of audio → motion generation.

    Defaults are Ditto's code defaults; :func:`.config.DittoConfig.driver_options`
    builds them from Ditto's shipped configuration instead.

    Attributes:
        steps: DDIM sampling steps per window (more: slower, slightly finer).
        seed: random seed; the same seed, audio and photo give the same motion.
            ``None`` draws fresh noise.
        emotion: an emotion label ("neutral", "happy", …, or index 0–7), a
            list of labels, a per-frame list of label lists, or a per-frame
            (M, 8) probability array.
        windows: window overlap, smoothing, conditioning and clipping.
        post: relative mixing, eye driving, blink template, gaze fix, controls.
        reference: a reference character conditioning the model instead of
            the photo (Ditto's ``ch_info``), or ``None``.
        parts: which parts the condition rows hold (all four for the released model).

    ``steps`` and ``seed`` carry their help and default as
    :func:`~talkinghead.options.option` specs (the audio job's options
    repeat them from here).
    """

    steps: int = option(DEFAULT_STEPS, what="diffusion steps", range=(1, None), type=int, step=1,
                        help="diffusion sampling steps per window")
    seed: int | None = option(0, what="seed", type=int, help="random seed: the same seed gives the same video")
    emotion: Emotion = NEUTRAL
    windows: WindowConfig = field(default_factory=WindowConfig)
    post: PostprocessOptions = field(default_factory=PostprocessOptions)
    reference: ReferenceCharacter | None = None
    parts: ConditionParts = field(default_factory=ConditionParts)

    def condition(self, source_row: torch.Tensor, source_kp: torch.Tensor,
                  eyes: EyeConditions) -> tuple[ConditionBuilder, torch.Tensor]:
        """The condition builder and first motion condition (``s_kp_cond``, (265,)).

        From the reference character when one is set, else from the source
        (Ditto condition_handler.py ``setup``; audio2motion.py ``setup``).

        Raises:
            ControlError: invalid emotion.
        """
        ref = self.reference
        if ref is None:
            return ConditionBuilder(source_kp, eyes, self.emotion, self.parts), source_row
        builder = ConditionBuilder(ref.canonical_kp.to(source_kp), ref.eyes, self.emotion, self.parts)
        return builder, ref.motion_row.to(source_row)


class AudioDriver:
    """Generates the motion sequence of a speech clip for one source photo.

    Args:
        lmdm: the audio→motion denoiser (eval mode).
        encoder: the audio feature encoder (Ditto's HuBERT ONNX).

    Attributes:
        fps: 25 Hz, the rate of the generated motion.
    """

    fps = 25.0

    def __init__(self, lmdm: LMDM, encoder: AudioEncoder) -> None:
        self.lmdm = lmdm
        self.encoder = encoder
        self.device = next(lmdm.parameters()).device

    def generate(self, samples: np.ndarray, source_raw: Mapping[str, torch.Tensor], eyes: EyeConditions,
                 options: AudioDriverOptions = AudioDriverOptions(),
                 on_window: Callable[[WindowRecord], None] | None = None) -> MotionSequence:
        """Motion of every video frame of the clip.

        Args:
            samples: (S,) float32 mono waveform at 16 kHz.
            source_raw: M's raw heads for the source (pitch/yaw/roll logits
                (1, 66), t (1, 3), exp (1, 63), scale (1, 1), kp (1, 63)).
            eyes: the source's eye conditions.
            options: see :class:`AudioDriverOptions`.
            on_window: called after each 80-frame window (for progress).

        Returns:
            (N) motion frames, N = ceil(duration·25), degrees, source scale.

        Raises:
            MediaError: the audio is empty or silent everywhere.
            DiffusionError: the step count is unsafe or sampling gave NaN.
        """
        n_frames = frame_count(samples.size)
        if n_frames == 0:
            raise MediaError("the audio is empty: upload a speech recording of at least 0.04 s")
        if not np.any(np.abs(samples) > 1e-4):
            raise MediaError("the audio is silent: upload a recording in which someone speaks")
        with torch.inference_mode():
            features = torch.from_numpy(offline_features(self.encoder, samples, n_frames)).to(self.device)
            source_kp = source_raw["kp"].to(self.device)
            source_row = motion_row_from_raw(source_raw).to(self.device)[0]
            builder, first_condition = options.condition(source_row, source_kp, eyes)
            sampler = DDIMSampler(self.lmdm, steps=options.steps, seed=options.seed)
            rows = generate_offline(sampler, builder(features), first_condition, options.windows, on_window=on_window)
            post = MotionPostprocessor(source_row, source_kp, options.post, stitching=None, num_frames=n_frames)
            return post(rows, rows[0]).motion


def window_count(n_frames: int, config: WindowConfig = WindowConfig(), seq_len: int = 80) -> int:
    """Number of 80-frame windows the offline loop runs for ``n_frames`` frames (for progress bars)."""
    valid = seq_len - config.overlap
    return max(1, -(-n_frames // valid))
