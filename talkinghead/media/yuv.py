"""RGB → YUV 4:2:0 (BT.709, limited range) on any torch device: the writer's colour conversion, on the GPU.

:class:`~talkinghead.media.video.VideoWriter` encodes yuv420p.  Given RGB arrays it converts them with
swscale on the CPU (about 9 ms per 1920×1080 frame on one core of this project's CPU, in the encoder's
thread); :func:`rgb_to_yuv420` does the same conversion as tensor operations where the frames already are
(the GPU path), so only 1.5 bytes per pixel cross to the host instead of 3, and the encoder's thread only
encodes.  The planes go to the writer as :class:`Yuv420Frame`.

The arithmetic is swscale's for this conversion (measured against PyAV's ``reformat`` with
``BILINEAR | ACCURATE_RND``, as the writer calls it, on the photos of ``shared/testdata/images``):

* luma ``Y = 16 + 219/255 · (0.2126 R + 0.7152 G + 0.0722 B)`` (ITU-R BT.709-6, item 3.2 and 3.3);
* chroma ``Cb = 128 + 224/255 · (B − Y') / 1.8556``, ``Cr = 128 + 224/255 · (R − Y') / 1.5748`` at full
  resolution (Y' before the range scaling), then halved horizontally by averaging column pairs and
  vertically by the bilinear 2:1 filter taps (1, 3, 3, 1)/8 over rows 2i−1 … 2i+2 (edge rows repeated);
* rounded to the nearest integer and clipped to 0…255.

Every luma and chroma value is within 1 level of swscale's (``tests/test_media_yuv.py``; even and odd
sizes); swscale's fixed-point rounding makes 0.2–1.2% of the values of a plane differ by that level.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

KR, KB = 0.2126, 0.0722
"""BT.709 luma weights of R and B (G's is 1 − KR − KB)."""


class Yuv420Frame(NamedTuple):
    """One frame as yuv420p planes, BT.709 limited range, what :class:`~talkinghead.media.video.VideoWriter`
    encodes without converting.

    ``y``: (H2, W2) uint8, H2 and W2 the frame's height and width rounded up to even (the last row/column
    repeated); ``u``, ``v``: (H2/2, W2/2) uint8 Cb and Cr; ``size``: the frame's own (width, height) in
    pixels, before that padding.
    """

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    size: tuple[int, int]


def _pad_to_even(frames: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) with the last row/column repeated where H/W is odd (as the writer pads RGB frames)."""
    height, width = frames.shape[1:3]
    if height % 2:
        frames = torch.cat([frames, frames[:, -1:]], dim=1)
    if width % 2:
        frames = torch.cat([frames, frames[:, :, -1:]], dim=2)
    return frames


def _halve_chroma(plane: torch.Tensor) -> torch.Tensor:
    """(B, H, W) float full-resolution chroma, H and W even → (B, H/2, W/2): column pairs averaged, then
    rows filtered with the taps (1, 3, 3, 1)/8 at rows 2i−1 … 2i+2, edge rows repeated."""
    columns = (plane[:, :, 0::2] + plane[:, :, 1::2]) * 0.5
    rows = torch.cat([columns[:, :1], columns, columns[:, -1:]], dim=1)
    n = columns.shape[1]
    return (rows[:, 0:n:2] + 3.0 * rows[:, 1:n + 1:2] + 3.0 * rows[:, 2:n + 2:2] + rows[:, 3:n + 3:2]) * 0.125


def _to_uint8(plane: torch.Tensor) -> torch.Tensor:
    return torch.floor(plane + 0.5).clamp_(0, 255).to(torch.uint8)


def rgb_to_yuv420(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, H, W, 3) uint8 RGB frames → their yuv420p planes, BT.709 limited range, on the frames' device.

    Returns:
        (Y, Cb, Cr): (B, H2, W2), (B, H2/2, W2/2), (B, H2/2, W2/2) uint8, H2 and W2 the height and width
        rounded up to even (odd sizes padded by repeating the last row/column, as the writer does).
        The arithmetic and its agreement with swscale: the module's docstring.

    Raises:
        ValueError: not a (B, H, W, 3) uint8 tensor.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"frames must be (B, H, W, 3) uint8 RGB, got {tuple(frames.shape)} {frames.dtype}")
    rgb = _pad_to_even(frames).float()
    red, green, blue = rgb.unbind(-1)
    luma = KR * red + (1.0 - KR - KB) * green + KB * blue
    y = 16.0 + (219.0 / 255.0) * luma
    cb = 128.0 + (224.0 / 255.0) * (blue - luma) / (2.0 * (1.0 - KB))
    cr = 128.0 + (224.0 / 255.0) * (red - luma) / (2.0 * (1.0 - KR))
    return _to_uint8(y), _to_uint8(_halve_chroma(cb)), _to_uint8(_halve_chroma(cr))


def yuv420_frames(y: np.ndarray, u: np.ndarray, v: np.ndarray, size: tuple[int, int]) -> list[Yuv420Frame]:
    """Host planes of a batch, (B, H2, W2) and 2 × (B, H2/2, W2/2) uint8, as B :class:`Yuv420Frame` of
    the frames' own (width, height) ``size``."""
    return [Yuv420Frame(y[i], u[i], v[i], size) for i in range(y.shape[0])]
