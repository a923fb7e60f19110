"""F — LivePortrait's appearance feature extractor (source image → 3-D feature volume).

Architecture: ``tests/data/specs/liveportrait-architecture.md`` §1.  Checkpoint
layout: ``liveportrait/base_models/appearance_feature_extractor.pth`` in the
Hugging Face repo ``KlingTeam/LivePortrait`` (formerly ``KwaiVGI/LivePortrait``), a flat state dict (107 tensors,
836,224 parameters) whose keys this module reproduces exactly, in order.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ConvNormAct, DownBlock, ResBlock3d


class AppearanceFeatureExtractor(nn.Module):
    """Encode a cropped source portrait into the feature volume f_s that W warps.

    The defaults are LivePortrait's ``models.yaml`` configuration, so
    ``AppearanceFeatureExtractor()`` loads the public checkpoint strictly.

    Pipeline (spec §1): ``first`` conv k3 → BN → ReLU; ``down_blocks.i``
    (conv k3 → BN → ReLU → 2×2 average pool); ``second`` conv k1 to
    ``max_features``; plain reshape to (reshape_channel, reshape_depth)
    with channel index = reshape_depth·c + d; ``resblocks_3d.3dr0`` …
    pre-activation 3-D residual blocks.

    Args:
        image_channel: channels of the input image (3, RGB).
        block_expansion: width of ``first``; doubled by each down block.
        num_down_blocks: number of 2× downsamplings (256 px → 64 px for 2).
        max_features: channels after ``second``; must equal
            reshape_channel·reshape_depth.
        reshape_channel: channels of the feature volume.
        reshape_depth: depth of the feature volume.
        num_resblocks: number of 3-D residual blocks.

    Raises:
        ValueError: if max_features != reshape_channel·reshape_depth.
    """

    def __init__(
        self,
        image_channel: int = 3,
        block_expansion: int = 64,
        num_down_blocks: int = 2,
        max_features: int = 512,
        reshape_channel: int = 32,
        reshape_depth: int = 16,
        num_resblocks: int = 6,
    ) -> None:
        super().__init__()
        if max_features != reshape_channel * reshape_depth:
            raise ValueError(
                f"max_features ({max_features}) must equal reshape_channel·reshape_depth "
                f"({reshape_channel}·{reshape_depth})"
            )
        widths = [min(max_features, block_expansion * 2**i) for i in range(num_down_blocks + 1)]
        self.first = ConvNormAct(image_channel, block_expansion, kernel_size=3, padding=1)
        self.down_blocks = nn.ModuleList(DownBlock(widths[i], widths[i + 1]) for i in range(num_down_blocks))
        self.second = nn.Conv2d(widths[-1], max_features, kernel_size=1)
        self.reshape_channel = reshape_channel
        self.reshape_depth = reshape_depth
        self.resblocks_3d = nn.Sequential()
        for i in range(num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(reshape_channel))

    def forward(self, source_image: torch.Tensor) -> torch.Tensor:
        """Extract the appearance feature volume.

        Args:
            source_image: (B, 3, 256, 256) float RGB in [0, 1], contiguous
                NCHW (the 512 px source crop resized with INTER_AREA).

        Returns:
            f_s: (B, 32, 16, 64, 64) feature volume (B, reshape_channel,
            reshape_depth, H/4, W/4) in the input's dtype and device.
        """
        x = self.first(source_image)
        for block in self.down_blocks:
            x = block(x)
        x = self.second(x)
        b, _, h, w = x.shape
        return self.resblocks_3d(x.view(b, self.reshape_channel, self.reshape_depth, h, w))
