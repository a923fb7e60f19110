"""M — LivePortrait's motion extractor: image → raw pose / expression heads.

A ConvNeXt-V2 tiny backbone with seven linear heads, as described in
``tests/data/specs/liveportrait-architecture.md`` §2 (checkpoint
``liveportrait/base_models/motion_extractor.pth``: a flat state dict, every
key under ``detector.``, in :class:`MotionExtractor`'s ``state_dict()``
order).  Converting the heads to degrees and keypoints (spec §3) is the
motion stage's job, not this module's.
"""

from __future__ import annotations

from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import nn

_LN_EPS = 1e-6
_GRN_EPS = 1e-6
_NUM_BINS = 66


class MotionHeads(TypedDict):
    """Raw outputs of :class:`MotionExtractor` (a plain ``dict`` at run time).

    pitch, yaw, roll: (B, 66) logits over 3° bins (degrees =
    3·Σ softmax·i − 97.5, spec §3); t: (B, 3) translation; exp: (B, 63)
    expression deltas (21 keypoints × xyz); scale: (B, 1); kp: (B, 63)
    canonical keypoints (21 × xyz).  On the input's device; float32, or the
    autocast dtype under ``torch.autocast``.
    """

    pitch: torch.Tensor
    yaw: torch.Tensor
    roll: torch.Tensor
    t: torch.Tensor
    exp: torch.Tensor
    scale: torch.Tensor
    kp: torch.Tensor


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (eps 1e-6, affine).

    Per pixel: ``(x − mean_c) / sqrt(biased var_c + eps) · weight + bias``
    (spec §2).  (B, C, H, W) → (B, C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, _LN_EPS)
        return y.permute(0, 3, 1, 2)  # a channels-last view; convolutions take it as is


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2 global response normalisation on an NHWC tensor (spec §2).

    ``G`` = per-sample, per-channel L2 norm over H, W; ``N = G / (mean_c G + 1e-6)``;
    ``out = gamma·(x·N) + beta + x``.  (B, H, W, C) → (B, H, W, C).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, channels))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.square().sum(dim=(1, 2), keepdim=True).sqrt()  # faster than linalg.vector_norm on CPU
        n = g / (g.mean(dim=-1, keepdim=True) + _GRN_EPS)
        # gamma·(x·N) + beta + x, folded into one pass over x: x·(gamma·N + 1) + beta.
        return torch.addcmul(self.beta, x, torch.addcmul(torch.ones_like(n), self.gamma, n))


class ConvNeXtV2Block(nn.Module):
    """ConvNeXt-V2 block on ``dim`` channels, NCHW → NCHW (spec §2).

    depthwise conv k7 (``dwconv``) → LN (``norm``) → Linear dim→4·dim
    (``pwconv1``) → GELU (erf) → GRN (``grn``) → Linear 4·dim→dim
    (``pwconv2``) → add the block input.  Drop-path is identity (inference).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=_LN_EPS)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GlobalResponseNorm(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        y = self.pwconv2(self.grn(F.gelu(self.pwconv1(y))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtV2Detector(nn.Module):
    """ConvNeXt-V2 backbone plus LivePortrait's seven linear heads (spec §2).

    Args:
        depths: blocks per stage.
        dims: channels per stage.
        num_kp: implicit keypoints (21).
        num_bins: pose bins per angle (66).
    """

    def __init__(
        self,
        depths: tuple[int, ...] = (3, 3, 9, 3),
        dims: tuple[int, ...] = (96, 192, 384, 768),
        num_kp: int = 21,
        num_bins: int = _NUM_BINS,
    ) -> None:
        super().__init__()
        stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), ChannelsFirstLayerNorm(dims[0]))
        self.downsample_layers = nn.ModuleList(
            [stem]
            + [
                nn.Sequential(ChannelsFirstLayerNorm(c_in), nn.Conv2d(c_in, c_out, 2, stride=2))
                for c_in, c_out in zip(dims[:-1], dims[1:])
            ]
        )
        self.stages = nn.ModuleList(
            nn.Sequential(*(ConvNeXtV2Block(dim) for _ in range(depth))) for dim, depth in zip(dims, depths)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=_LN_EPS)
        # Registration order = checkpoint order.
        self.fc_kp = nn.Linear(dims[-1], 3 * num_kp)
        self.fc_scale = nn.Linear(dims[-1], 1)
        self.fc_pitch = nn.Linear(dims[-1], num_bins)
        self.fc_yaw = nn.Linear(dims[-1], num_bins)
        self.fc_roll = nn.Linear(dims[-1], num_bins)
        self.fc_t = nn.Linear(dims[-1], 3)
        self.fc_exp = nn.Linear(dims[-1], 3 * num_kp)

    def forward(self, image: torch.Tensor) -> MotionHeads:
        """(B, 3, H, W) with H, W multiples of 32 → :class:`MotionHeads`."""
        x = image
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x = stage(downsample(x))
        feat = self.norm(x.mean(dim=(-2, -1)))
        return MotionHeads(
            pitch=self.fc_pitch(feat),
            yaw=self.fc_yaw(feat),
            roll=self.fc_roll(feat),
            t=self.fc_t(feat),
            exp=self.fc_exp(feat),
            scale=self.fc_scale(feat),
            kp=self.fc_kp(feat),
        )


class MotionExtractor(nn.Module):
    """M: LivePortrait's motion extractor (ConvNeXt-V2 tiny, spec §2).

    The backbone lives under the attribute ``detector`` so that the state-dict
    keys are exactly the checkpoint's (``detector.stages.0.0.dwconv.weight``,
    ...).  Defaults are LivePortrait's (depths [3, 3, 9, 3], dims
    [96, 192, 384, 768], 21 keypoints, 66 bins).

    Args:
        num_kp: implicit keypoints.
        num_bins: pose bins per angle.
        backbone: LivePortrait's ``models.yaml`` backbone name; only
            ``"convnextv2_tiny"`` exists.

    Raises:
        ValueError: for any other ``backbone``.
    """

    def __init__(self, num_kp: int = 21, num_bins: int = _NUM_BINS, backbone: str = "convnextv2_tiny") -> None:
        super().__init__()
        if backbone != "convnextv2_tiny":
            raise ValueError(f"unsupported motion-extractor backbone {backbone!r}; only 'convnextv2_tiny' exists")
        self.detector = ConvNeXtV2Detector(num_kp=num_kp, num_bins=num_bins)

    def forward(self, image: torch.Tensor) -> MotionHeads:
        """Run the backbone and heads.

        Args:
            image: (B, 3, 256, 256) RGB in [0, 1], float (any device/dtype;
                autocast is fine), preferably contiguous NCHW (spec §11).

        Returns:
            :class:`MotionHeads` — raw head outputs (bin logits, not degrees).
        """
        return self.detector(image)
