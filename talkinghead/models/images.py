"""Conversions between images (numpy, uint8 HWC RGB) and network tensors (float NCHW in [0, 1])."""

from __future__ import annotations

import numpy as np
import torch


def image_to_tensor(images: np.ndarray, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(H, W, 3) or (B, H, W, 3) uint8 RGB → (B, 3, H, W) float in [0, 1].

    The result is contiguous NCHW: LivePortrait's fixtures were made with
    contiguous inputs, and a channels-last view would pick another CPU
    convolution kernel (spec §11).
    """
    batch = images[None] if images.ndim == 3 else images
    tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(device=device)
    return (tensor.permute(0, 3, 1, 2).to(dtype) / 255.0).clamp_(0, 1).contiguous()


def images_uint8(tensor: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1] → (B, H, W, 3) uint8 RGB on the tensor's device (contiguous).

    Values are clipped to [0, 1], scaled by 255 and truncated (not rounded),
    as LivePortrait's output conversion does (spec §8, "Output conversion").
    """
    scaled = tensor.detach().float().clamp(0, 1).mul(255).clamp(0, 255)
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def tensor_to_images(tensor: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [0, 1] → (B, H, W, 3) uint8 RGB numpy array (:func:`images_uint8`, then to the host)."""
    return images_uint8(tensor).cpu().numpy()
