"""2× super-resolution of output frames: Real-ESRGAN x2plus through spandrel, tiled.

Real-ESRGAN x2plus is an RRDBNet (23 residual-in-residual dense blocks, 64
features) that pixel-unshuffles its input by 2 and upsamples 4×; spandrel
reports it as architecture ``"ESRGAN"`` with scale 2 and calls it on [0, 1]
RGB (the range it was trained on).  Weights: BSD-3-Clause.

Tiling bounds GPU memory: the frame is cut into ``tile``-pixel squares, each
processed with :data:`TILE_OVERLAP` pixels of context on every side, and
only its core is written to the output.  The network's receptive field is
larger than the overlap, so tiles differ slightly from the whole-frame result
near their seams (measured in tests/test_enhance.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch

from ..errors import WeightsError
from ..weights import WeightSource, WeightStore, read_checkpoint, weights_source
from .files import ENHANCE_FILES
from .loading import load_descriptor

if TYPE_CHECKING:
    from spandrel import ImageModelDescriptor

SCALE = 2
"""Upscaling factor."""
TILE_OVERLAP = 32
"""Context in input pixels added on each side of a tile (discarded after the network)."""


class Upscaler:
    """Real-ESRGAN x2plus on whole frames, optionally tile by tile.

    Args:
        descriptor: spandrel ``ImageModelDescriptor`` of a scale-2 ESRGAN
            network (eval mode, on its device).
        tile: tile side in input pixels; 0 = the whole frame in one pass.
    """

    def __init__(self, descriptor: ImageModelDescriptor, tile: int = 256) -> None:
        self.descriptor = descriptor
        self.tile = tile

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Any], device: str | torch.device = "cpu",
                        tile: int = 256) -> Upscaler:
        """Build the upscaler from Real-ESRGAN x2plus tensors (bare or in ``{"params_ema": …}``).

        Raises:
            WeightsError: the tensors are not an ESRGAN network of scale 2,
                or one is missing, unexpected or mis-shaped.
        """
        descriptor = load_descriptor(state_dict, "ESRGAN", device, what="Real-ESRGAN x2plus checkpoint")
        if descriptor.scale != SCALE:
            raise WeightsError(f"Real-ESRGAN x2plus checkpoint: expected a {SCALE}x network, found {descriptor.scale}x; use RealESRGAN_x2plus.pth")
        return cls(descriptor, tile)

    @classmethod
    def from_pretrained(cls, source: WeightSource = None, *, revision: str | None = None,
                        device: str | torch.device = "cpu", tile: int = 256) -> Upscaler:
        """Real-ESRGAN x2plus from its official checkpoint (``ENHANCE_FILES["realesrgan_x2"]``, :mod:`.files`).

        File (path inside the repo): ``realesrgan/RealESRGAN_x2plus.pth`` of
        ``fudan-generative-ai/hallo2``, verified by its sha256 wherever it
        comes from and read with ``torch.load(weights_only=True)``.

        Args:
            source: None (that repo: ``./checkpoints``, then the Hub cache,
                else a download); a local folder holding the file at that
                path; a Hub repo id ``"owner/name"`` (a mirror holding the
                same file); or a :class:`~talkinghead.weights.WeightStore`;
                see :func:`talkinghead.weights.weights_source`.
            revision: Hub branch, tag or commit sha (default: the
                ``TALKINGHEAD_ENHANCE_REVISION`` variable or ``main``); not
                with a folder or a store.
            device: where the network runs (fp32).
            tile: tile side in input pixels; 0 = whole frames.

        Raises:
            WeightsError: the file is missing (the message names it), fails
                the sha256 check or is not a 2× ESRGAN network; ``revision``
                with a folder or a store.
        """
        store, files = weights_source(source, ENHANCE_FILES, revision)
        return cls.from_state_dict(read_checkpoint(store.path(files["realesrgan_x2"])), device, tile)

    @property
    def device(self) -> torch.device:
        """Where the network runs (frames are moved there and back)."""
        return self.descriptor.device

    def upscale(self, frame: np.ndarray) -> np.ndarray:
        """Upscale one frame 2× (on :attr:`device`; the result comes back to the host).

        Args:
            frame: (H, W, 3) uint8 RGB, any size ≥ 2 px.

        Returns:
            (2H, 2W, 3) uint8 RGB.

        Raises:
            ValueError: for a frame that is not (H, W, 3) uint8.
        """
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")
        return self.upscale_tensor(torch.from_numpy(frame)[None])[0].cpu().numpy()

    def upscale_tensor(self, frames: torch.Tensor) -> torch.Tensor:
        """Upscale a batch 2×, frame by frame, on :attr:`device` (the GPU path's finishing step keeps the
        frames there; each frame's result equals :meth:`upscale`'s).

        Args:
            frames: (B, H, W, 3) uint8 RGB tensor on any device, H and W ≥ 2 px.

        Returns:
            (B, 2H, 2W, 3) uint8 RGB on :attr:`device`.

        Raises:
            ValueError: for a tensor that is not (B, H, W, 3) uint8.
        """
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(f"expected (B, H, W, 3) uint8 frames, got {tuple(frames.shape)} {frames.dtype}")
        height, width = frames.shape[1:3]
        upscaled = []
        with torch.inference_mode():
            for frame in frames:
                image = frame.to(self.device).permute(2, 0, 1)[None].float() / 255
                if self.tile == 0 or (height <= self.tile and width <= self.tile):
                    out = self.descriptor(image)
                else:
                    out = self._tiled(image)
                upscaled.append((out[0] * 255).round().byte().permute(1, 2, 0))
        return torch.stack(upscaled)

    def _tiled(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) [0, 1] → (1, 3, 2H, 2W), tile by tile with overlapping context."""
        _, channels, height, width = image.shape
        out = image.new_empty(1, channels, SCALE * height, SCALE * width)
        for y0 in range(0, height, self.tile):
            for x0 in range(0, width, self.tile):
                y1, x1 = min(y0 + self.tile, height), min(x0 + self.tile, width)
                cy0, cx0 = max(y0 - TILE_OVERLAP, 0), max(x0 - TILE_OVERLAP, 0)
                cy1, cx1 = min(y1 + TILE_OVERLAP, height), min(x1 + TILE_OVERLAP, width)
                result = self.descriptor(image[:, :, cy0:cy1, cx0:cx1])
                core = result[:, :, SCALE * (y0 - cy0): SCALE * (y1 - cy0), SCALE * (x0 - cx0): SCALE * (x1 - cx0)]
                out[:, :, SCALE * y0: SCALE * y1, SCALE * x0: SCALE * x1] = core
        return out


def load_upscaler(store: WeightStore, device: str | torch.device = "cpu", tile: int = 256) -> Upscaler:
    """Real-ESRGAN x2plus from ``store``: :meth:`Upscaler.from_pretrained` with a store.

    Raises:
        WeightsError: the file cannot be had, fails verification or is not
            a 2× ESRGAN network.
    """
    return Upscaler.from_pretrained(store, device=device, tile=tile)
