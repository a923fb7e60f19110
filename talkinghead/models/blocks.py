"""Convolutional building blocks shared by the LivePortrait-compatible networks.

Every block names its submodules so that a network built from them produces
exactly the state-dict keys of the public LivePortrait checkpoints
(``<block>.conv.*``, ``<block>.norm.*``, ``<block>.conv1.*`` ...; see
``tests/data/fixtures/liveportrait/manifest.json``).  Architecture facts come from
``tests/data/specs/liveportrait-architecture.md`` §1 (F) and §4 (W).

All blocks work on float tensors of any dtype and device, in NCHW (2-D) or
NCDHW (3-D) layout.  BatchNorm layers use eps 1e-5 with affine parameters and
running statistics; the networks are meant to run in eval mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_BATCH_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _check_dims(dims: int) -> None:
    if dims not in _CONV:
        raise ValueError(f"dims must be 2 or 3, got {dims}")


class ConvNormAct(nn.Module):
    """Convolution → BatchNorm → ReLU (or LeakyReLU), 2-D or 3-D.

    LivePortrait calls this a "same block" when used on its own (spatial size
    unchanged for ``kernel_size = 2·padding + 1``).  State-dict keys:
    ``conv.weight``, ``conv.bias``, ``norm.{weight,bias,running_mean,
    running_var,num_batches_tracked}``.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        kernel_size: convolution kernel (same on every spatial axis).
        padding: zero padding (same on every spatial axis).
        dims: 2 for (B, C, H, W) input, 3 for (B, C, D, H, W).
        negative_slope: 0 gives ReLU; a positive value gives LeakyReLU with
            that slope (e.g. 0.01, PyTorch's default).

    Raises:
        ValueError: if ``dims`` is not 2 or 3.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        padding: int = 1,
        dims: int = 2,
        negative_slope: float = 0.0,
    ) -> None:
        super().__init__()
        _check_dims(dims)
        self.conv = _CONV[dims](in_channels, out_channels, kernel_size, padding=padding)
        self.norm = _BATCH_NORM[dims](out_channels)
        self.act = nn.LeakyReLU(negative_slope, inplace=True) if negative_slope else nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, *S) → (B, out_channels, *S'), S' = S for a "same" kernel/padding."""
        return self.act(self.norm(self.conv(x)))


class DownBlock(ConvNormAct):
    """:class:`ConvNormAct` (k3 p1, ReLU) followed by 2× average pooling of H and W.

    The depth axis of a 3-D input is never pooled (pool kernel (1, 2, 2)),
    as in LivePortrait's hourglass encoder; 2-D inputs use a 2×2 pool
    (F's down blocks).  Same state-dict keys as :class:`ConvNormAct`.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        dims: 2 or 3 (see :class:`ConvNormAct`).
    """

    def __init__(self, in_channels: int, out_channels: int, dims: int = 2) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding=1, dims=dims)
        self.pool = nn.AvgPool2d(2) if dims == 2 else nn.AvgPool3d((1, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, [D,] H, W) → (B, C_out, [D,] H//2, W//2)."""
        return self.pool(super().forward(x))


class UpBlock3d(ConvNormAct):
    """Nearest-neighbour 2× upsampling of H and W, then :class:`ConvNormAct` (3-D, k3 p1, ReLU).

    The upsampling is PyTorch's legacy ``nearest`` mode (source index =
    floor(dst / 2)); depth is not upsampled.  Same state-dict keys as
    :class:`ConvNormAct`.

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding=1, dims=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, D, H, W) → (B, C_out, D, 2·H, 2·W)."""
        return super().forward(F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest"))


class ResBlock3d(nn.Module):
    """Pre-activation 3-D residual block (LivePortrait spec §1, step 6).

    out = x + conv2(ReLU(norm2(conv1(ReLU(norm1(x)))))), both convolutions
    k3 p1 with ``channels`` in and out.  State-dict keys in order:
    ``conv1.*``, ``conv2.*``, ``norm1.*``, ``norm2.*``.

    Args:
        channels: channels of input and output.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm1 = nn.BatchNorm3d(channels)
        self.norm2 = nn.BatchNorm3d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, D, H, W) → (B, C, D, H, W)."""
        out = self.conv1(F.relu(self.norm1(x), inplace=True))
        out = self.conv2(F.relu(self.norm2(out), inplace=True))
        out += x
        return out


def _hourglass_width(block_expansion: int, max_features: int, level: int) -> int:
    """Channels of the hourglass at ``level`` (level 0 = full resolution)."""
    return min(max_features, block_expansion * 2**level)


class HourglassEncoder(nn.Module):
    """Stack of 3-D :class:`DownBlock` s (``down_blocks.0`` … ``down_blocks.{n-1}``).

    Block i maps ``in_features`` (i = 0) or min(max_features,
    block_expansion·2^i) channels to min(max_features, block_expansion·2^(i+1))
    and halves H and W.

    Args:
        block_expansion: base width.
        in_features: channels of the input.
        num_blocks: number of down blocks.
        max_features: cap on the width.
    """

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        widths = [in_features] + [_hourglass_width(block_expansion, max_features, i + 1) for i in range(num_blocks)]
        self.down_blocks = nn.ModuleList(DownBlock(widths[i], widths[i + 1], dims=3) for i in range(num_blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, in_features, D, H, W) → [x, out_0, …, out_{n-1}], out_i at H/2^(i+1), W/2^(i+1)."""
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class HourglassDecoder(nn.Module):
    """Stack of :class:`UpBlock3d` s with skip connections, then a k3 conv → BN → ReLU.

    ``up_blocks.j`` works at level i = num_blocks−1−j: it maps
    (1 if j = 0 else 2)·min(max_features, block_expansion·2^(i+1)) channels to
    min(max_features, block_expansion·2^i) and is followed by concatenation
    [up output, matching encoder output] on the channel axis.  The last
    concatenation (with the hourglass input) has ``out_filters`` =
    block_expansion + in_features channels; ``conv`` (k3 p1) and ``norm`` keep
    that width.

    Args:
        block_expansion: base width.
        in_features: channels of the hourglass input.
        num_blocks: number of up blocks (= encoder blocks).
        max_features: cap on the width.
    """

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            in_filters = (1 if i == num_blocks - 1 else 2) * _hourglass_width(block_expansion, max_features, i + 1)
            blocks.append(UpBlock3d(in_filters, _hourglass_width(block_expansion, max_features, i)))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features
        self.conv = nn.Conv3d(self.out_filters, self.out_filters, 3, padding=1)
        self.norm = nn.BatchNorm3d(self.out_filters)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Encoder outputs (see :class:`HourglassEncoder`) → (B, out_filters, D, H, W)."""
        out = features[-1]
        for block, skip in zip(self.up_blocks, reversed(features[:-1])):
            out = torch.cat([block(out), skip], dim=1)
        return F.relu(self.norm(self.conv(out)), inplace=True)


class Hourglass(nn.Module):
    """3-D U-Net ("hourglass") used by W's dense-motion network (spec §4, step 6).

    State-dict keys: ``encoder.down_blocks.*``, ``decoder.up_blocks.*``,
    ``decoder.conv.*``, ``decoder.norm.*``.

    Args:
        block_expansion: base width (LivePortrait: 32).
        in_features: channels of the input (LivePortrait: 22·5 = 110).
        num_blocks: levels (LivePortrait: 5, so H and W must be divisible by 32).
        max_features: cap on the width (LivePortrait: 1024).
    """

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        self.encoder = HourglassEncoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = HourglassDecoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_features, D, H, W) → (B, out_filters, D, H, W)."""
        return self.decoder(self.encoder(x))
