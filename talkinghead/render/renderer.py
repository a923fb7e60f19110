"""The renderer: source features once, then one face image per motion frame.

``F`` turns the 256×256 source crop into a feature volume once per photo;
for every batch of driven keypoints, ``W`` warps that volume from the source
keypoints x_s to the driven keypoints x_d and ``G`` decodes it into 512×512
faces (LivePortrait spec §8, last line).  Motion math happens before this
stage (:mod:`talkinghead.motion`), paste-back after it (:mod:`talkinghead.face`).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch

from ..models.appearance import AppearanceFeatureExtractor
from ..models.images import image_to_tensor, tensor_to_images
from ..models.spade import SPADEDecoder
from ..models.warping import WarpingNetwork

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
"""Precision name → autocast dtype (``None``: plain float32)."""


class Renderer:
    """F, W and G of LivePortrait on one device.

    Args:
        appearance: F (eval mode).
        warping: W (eval mode).
        decoder: G (eval mode).
        precision: "fp32" (default, what the golden fixtures check), or
            "fp16"/"bf16" to run W and G under ``torch.autocast`` (CUDA only;
            LivePortrait's own default on GPU is fp16 autocast).

    Raises:
        ValueError: unknown precision, or half precision on a CPU device.
    """

    def __init__(self, appearance: AppearanceFeatureExtractor, warping: WarpingNetwork,
                 decoder: SPADEDecoder, precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.appearance = appearance
        self.warping = warping
        self.decoder = decoder
        self.device = next(decoder.parameters()).device
        if precision != "fp32" and self.device.type != "cuda":
            raise ValueError(f"precision {precision} needs a CUDA device; use fp32 on {self.device.type}")
        self.precision = precision

    def _autocast(self) -> contextlib.AbstractContextManager:
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    @torch.inference_mode()
    def source_features(self, crop_256: np.ndarray) -> torch.Tensor:
        """F on the source crop.

        Args:
            crop_256: (256, 256, 3) uint8 RGB source crop.

        Returns:
            (1, 32, 16, 64, 64) float32 feature volume on the renderer's device.
        """
        return self.appearance(image_to_tensor(crop_256, self.device)).float()

    @torch.inference_mode()
    def render_tensor(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        """W then G for a batch of driven keypoints.

        Args:
            feature_3d: (1, 32, 16, 64, 64) source feature volume.
            x_s: (1, 21, 3) source keypoints.
            x_d: (B, 21, 3) driven keypoints.

        Returns:
            (B, 3, 512, 512) float32 images in (0, 1).
        """
        batch = x_d.shape[0]
        with self._autocast():
            warped = self.warping(feature_3d.expand(batch, -1, -1, -1, -1),
                                  x_s.expand(batch, -1, -1), x_d)
            image = self.decoder(warped.out)
        return image.float()

    def render(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> np.ndarray:
        """Like :meth:`render_tensor`, returning (B, 512, 512, 3) uint8 RGB (truncated, spec §8)."""
        return tensor_to_images(self.render_tensor(feature_3d, x_s, x_d))

    def render_batches(self, feature_3d: torch.Tensor, x_s: torch.Tensor,
                       x_d_batches: Iterator[torch.Tensor]) -> Iterator[np.ndarray]:
        """Render a stream of keypoint batches, yielding one (512, 512, 3) uint8 face at a time."""
        for x_d in x_d_batches:
            yield from self.render(feature_3d, x_s, x_d)
