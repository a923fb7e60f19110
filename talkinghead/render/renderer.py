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

from ..devices import AUTOCAST_DTYPES, frames_per_batch, resolve_precision, to_host
from ..models.appearance import AppearanceFeatureExtractor
from ..models.images import image_to_tensor, images_uint8
from ..models.spade import SPADEDecoder
from ..models.warping import WarpingNetwork


class Renderer:
    """F, W and G of LivePortrait on one device, W and G at the job's precision.

    Args:
        appearance: F (eval mode); always float32 (it runs once per photo).
        warping: W (eval mode).
        decoder: G (eval mode).  Under half precision its weights are
            converted in place to channels-last (``channels_last``), so the
            renderer owns it: do not share it with an fp32 renderer.
        precision: "auto" (CUDA: fp16 autocast, LivePortrait's default; CPU:
            fp32), "fp32" (what the golden fixtures check, bit for bit),
            "bf16" (CUDA, or a CPU with AVX512-BF16/AMX) or "fp16" (CUDA):
            W and G run under ``torch.autocast`` of that dtype
            (:func:`talkinghead.devices.resolve_precision`).
        compile: run W and G through ``torch.compile`` (default mode, static
            shapes; a short last batch is padded to the batch size seen first,
            so the end of a clip does not compile again).  Off by default:
            compiling takes tens of seconds per batch shape, more than a short
            job renders, and on a CPU it needs a C++ compiler.
        channels_last: store G's 4-D weights and feed its input channels-last;
            None = only under half precision (on this project's 2-core
            AMX CPU bf16 W + G took 2.13 s per frame with it, 2.53 s without;
            for W's 3-D convolutions channels-last-3d did not pay).

    Attributes:
        precision: the resolved precision, "fp32", "fp16" or "bf16".
        batch_size: the default number of frames per W + G call
            (:func:`talkinghead.devices.frames_per_batch`: 1 on CPU, from free
            memory on CUDA).

    Raises:
        DeviceError: an unknown precision, or half precision this device cannot run.
    """

    def __init__(self, appearance: AppearanceFeatureExtractor, warping: WarpingNetwork, decoder: SPADEDecoder,
                 precision: str = "auto", compile: bool = False, channels_last: bool | None = None) -> None:
        self.appearance = appearance
        self.warping = warping
        self.decoder = decoder
        self.device = next(decoder.parameters()).device
        self.precision = resolve_precision(precision, self.device)
        self.channels_last = AUTOCAST_DTYPES[self.precision] is not None if channels_last is None else channels_last
        if self.channels_last:
            decoder.to(memory_format=torch.channels_last)  # in place (drops the spectral-norm weight cache)
        self.compiled = compile
        self._warp = torch.compile(warping, dynamic=False) if compile else warping
        self._decode = torch.compile(decoder, dynamic=False) if compile else decoder
        self._compiled_batch = 0
        self.batch_size = frames_per_batch(self.device, self.precision)

    def _autocast(self) -> contextlib.AbstractContextManager:
        dtype = AUTOCAST_DTYPES[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    @torch.inference_mode()
    def source_features(self, crop_256: np.ndarray) -> torch.Tensor:
        """F on the source crop.

        Args:
            crop_256: (256, 256, 3) uint8 RGB source crop.

        Returns:
            (1, 32, 16, 64, 64) float32 feature volume on the renderer's
            device, where it stays for every frame of the job.
        """
        return self.appearance(image_to_tensor(crop_256, self.device)).float()

    def _padded(self, x_d: torch.Tensor) -> torch.Tensor:
        """``x_d`` padded (last row repeated) to the compiled batch size, so a compiled W + G sees one shape."""
        if not self.compiled:
            return x_d
        self._compiled_batch = max(self._compiled_batch, x_d.shape[0])
        missing = self._compiled_batch - x_d.shape[0]
        return torch.cat([x_d, x_d[-1:].expand(missing, -1, -1)]) if missing else x_d

    @torch.inference_mode()
    def render_tensor(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        """W then G for a batch of driven keypoints, at the renderer's precision.

        Args:
            feature_3d: (1, 32, 16, 64, 64) source feature volume.
            x_s: (1, 21, 3) source keypoints.
            x_d: (B, 21, 3) driven keypoints.

        Returns:
            (B, 3, 512, 512) float32 images in (0, 1), on the renderer's device.
        """
        batch = x_d.shape[0]
        x_d = self._padded(x_d)
        n = x_d.shape[0]
        with self._autocast():
            warped = self._warp(feature_3d.expand(n, -1, -1, -1, -1), x_s.expand(n, -1, -1), x_d).out
            if self.channels_last:
                warped = warped.contiguous(memory_format=torch.channels_last)
            image = self._decode(warped)
        return image[:batch].float().contiguous()

    def render_uint8(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        """Like :meth:`render_tensor`, as (B, 512, 512, 3) uint8 RGB on the renderer's device (truncated,
        spec §8): what the GPU finishing path (:meth:`~talkinghead.enhance.finish.Finisher.finish_tensor`)
        pastes back without a trip through host memory."""
        return images_uint8(self.render_tensor(feature_3d, x_s, x_d))

    def render(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> np.ndarray:
        """Like :meth:`render_tensor`, returning (B, 512, 512, 3) uint8 RGB (truncated, spec §8).

        The uint8 conversion runs on the renderer's device; from CUDA the frames
        come back through pinned host memory (:func:`~talkinghead.devices.to_host`).
        """
        return to_host(self.render_uint8(feature_3d, x_s, x_d))

    def render_batches(self, feature_3d: torch.Tensor, x_s: torch.Tensor,
                       x_d_batches: Iterator[torch.Tensor]) -> Iterator[np.ndarray]:
        """Render a stream of keypoint batches, yielding one (512, 512, 3) uint8 face at a time."""
        for x_d in x_d_batches:
            yield from self.render(feature_3d, x_s, x_d)
