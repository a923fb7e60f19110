"""W — LivePortrait's warping module (feature volume + keypoints → warped 2-D features).

Architecture: ``tests/data/specs/liveportrait-architecture.md`` §4.  Checkpoint
layout: ``liveportrait/base_models/warping_module.pth`` in the Hugging Face
repo ``KlingTeam/LivePortrait`` (formerly ``KwaiVGI/LivePortrait``), a flat state dict (97 tensors, 45,529,829
parameters) whose keys this module reproduces exactly, in order
(``dense_motion_network.*`` then ``third.*``, ``fourth.*``).

Coordinates: keypoints and sampling grids live in normalised volume space,
components (x, y, z) = (width, height, depth) axes, nominal range [−1, 1]
(spec §3).  The identity grid includes the endpoints ±1, but every
``grid_sample`` uses ``align_corners=False`` (trilinear, zero padding); this
half-voxel mismatch is LivePortrait's and is kept on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvNormAct, Hourglass

KP_VARIANCE = 0.01
"""Variance of the gaussian keypoint heatmaps, in squared normalised units (spec §4, step 4)."""


@dataclass(frozen=True)
class DenseMotion:
    """Output of :class:`DenseMotionNetwork`.

    Attributes:
        deformation: (B, D, H, W, 3) sampling grid (x, y, z in normalised
            volume coordinates) that maps each driving voxel to its source
            location; dtype of the keypoints.
        occlusion_map: (B, 1, H, W) in (0, 1), or None when the network was
            built with ``estimate_occlusion_map=False``.
    """

    deformation: torch.Tensor
    occlusion_map: torch.Tensor | None


@dataclass(frozen=True)
class WarpOutput:
    """Output of :class:`WarpingNetwork`.

    Attributes:
        out: (B, 256, 64, 64) warped 2-D features for the SPADE generator G,
            already multiplied by the occlusion map.
        occlusion_map: (B, 1, 64, 64) in (0, 1), or None (see
            :class:`DenseMotion`).
        deformation: (B, 16, 64, 64, 3) dense sampling grid (x, y, z).
    """

    out: torch.Tensor
    occlusion_map: torch.Tensor | None
    deformation: torch.Tensor


def identity_grid(depth: int, height: int, width: int, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """LivePortrait's "identity" grid: normalised coordinates of every voxel of a volume.

    Component i of an axis of length n is 2·(i / (n − 1)) − 1, so the first
    and last voxels sit at −1 and +1 (spec §4).  Sampled with
    ``align_corners=False`` (see :func:`sample_volume`) this is slightly
    off the exact identity, as in LivePortrait.

    Returns:
        (depth, height, width, 3) tensor whose last axis is (x, y, z) =
        (width, height, depth) coordinate, in ``dtype`` on ``device``.
    """

    def axis(n: int) -> torch.Tensor:
        return 2 * (torch.arange(n, dtype=dtype, device=device) / (n - 1)) - 1

    z, y, x = torch.meshgrid(axis(depth), axis(height), axis(width), indexing="ij")
    return torch.stack([x, y, z], dim=-1)


def keypoint_heatmaps(grid: torch.Tensor, kp: torch.Tensor, variance: float = KP_VARIANCE) -> torch.Tensor:
    """Unnormalised gaussian around each keypoint, evaluated on ``grid``.

    value = exp(−0.5·‖grid − kp‖² / variance) (spec §4, step 4).

    Args:
        grid: (D, H, W, 3) coordinates, see :func:`identity_grid`.
        kp: (B, K, 3) keypoints in the same normalised coordinates.
        variance: gaussian variance in squared normalised units.

    Returns:
        (B, K, D, H, W) values in (0, 1].
    """
    offsets = grid - kp[:, :, None, None, None, :]
    return torch.exp(-0.5 * offsets.square().sum(-1) / variance)


def sample_volume(volume: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Trilinear ``grid_sample`` with zero padding and ``align_corners=False``.

    Computed in the wider of the two dtypes (so a float32 deformation grid
    keeps its precision when the features are half precision) and returned
    in ``volume``'s dtype.

    Args:
        volume: (B, C, D, H, W) features.
        grid: (B, D', H', W', 3) sampling locations (x, y, z), normalised.

    Returns:
        (B, C, D', H', W') in ``volume.dtype``.
    """
    dtype = torch.promote_types(volume.dtype, grid.dtype)
    sampled = F.grid_sample(
        volume.to(dtype), grid.to(dtype), mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return sampled.to(volume.dtype)


class DenseMotionNetwork(nn.Module):
    """Predicts W's dense deformation and occlusion map from keypoint motion (spec §4, steps 1–8).

    For K keypoints there are K + 1 candidate motions per voxel: slot 0 keeps
    the voxel in place (background), slot k + 1 translates it by
    kp_source[k] − kp_driving[k].  An hourglass sees, per slot, the
    difference of the driving and source keypoint heatmaps and the compressed
    source features warped by that motion; it predicts softmax weights over
    the slots (``mask``), whose weighted sum of motions is the deformation,
    and an occlusion map (``occlusion``).

    State-dict keys in order: ``hourglass.*``, ``mask.*``, ``compress.*``,
    ``norm.*``, ``occlusion.*`` (the last only with an occlusion map).

    Args:
        block_expansion: hourglass base width.
        num_blocks: hourglass levels (H and W must be divisible by 2^num_blocks).
        max_features: hourglass width cap.
        num_kp: number of keypoints K.
        feature_channel: channels of the source feature volume.
        reshape_depth: depth D of the feature volume.
        compress: channels the source features are compressed to.
        estimate_occlusion_map: whether to build and run ``occlusion``.
    """

    def __init__(
        self,
        block_expansion: int = 32,
        num_blocks: int = 5,
        max_features: int = 1024,
        num_kp: int = 21,
        feature_channel: int = 32,
        reshape_depth: int = 16,
        compress: int = 4,
        estimate_occlusion_map: bool = True,
    ) -> None:
        super().__init__()
        num_slots = num_kp + 1
        self.hourglass = Hourglass(block_expansion, num_slots * (compress + 1), num_blocks, max_features)
        self.mask = nn.Conv3d(self.hourglass.out_filters, num_slots, kernel_size=7, padding=3)
        self.compress = nn.Conv3d(feature_channel, compress, kernel_size=1)
        self.norm = nn.BatchNorm3d(compress)
        self.reshape_depth = reshape_depth
        self.occlusion = (
            nn.Conv2d(self.hourglass.out_filters * reshape_depth, 1, kernel_size=7, padding=3)
            if estimate_occlusion_map
            else None
        )

    def forward(self, feature: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> DenseMotion:
        """Estimate the dense motion from source to driving keypoints.

        Args:
            feature: (B, C, D, H, W) source feature volume f_s (C =
                feature_channel).
            kp_source: (B, K, 3) source implicit keypoints x_s.
            kp_driving: (B, K, 3) driving implicit keypoints x_d.

        Returns:
            :class:`DenseMotion` (deformation in the keypoints' dtype).
        """
        compressed = F.relu(self.norm(self.compress(feature)), inplace=True)
        b, _, d, h, w = compressed.shape
        grid = identity_grid(d, h, w, dtype=kp_source.dtype, device=kp_source.device)
        motions = _sparse_motions(grid, kp_source, kp_driving)
        warped = _warp_per_slot(compressed, motions)
        heatmaps = _heatmap_differences(grid, kp_source, kp_driving).to(warped.dtype)
        # channel = (c + 1)·slot + j: j = 0 the heatmap, j ≥ 1 the warped features (spec §4, step 5)
        prediction = self.hourglass(torch.cat([heatmaps.unsqueeze(2), warped], dim=2).flatten(1, 2))
        weights = F.softmax(self.mask(prediction), dim=1)
        deformation = (weights.unsqueeze(-1) * motions).sum(dim=1)
        occlusion_map = None
        if self.occlusion is not None:  # float32 under autocast too (0.9 GFLOP; see WarpingNetwork.forward)
            with torch.autocast(prediction.device.type, enabled=False):
                occlusion_map = torch.sigmoid(self.occlusion(prediction.flatten(1, 2).float()))
        return DenseMotion(deformation=deformation, occlusion_map=occlusion_map)


def _sparse_motions(grid: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
    """Candidate sampling grids per slot (spec §4, step 2).

    Args:
        grid: (D, H, W, 3) identity grid.
        kp_source, kp_driving: (B, K, 3) keypoints.

    Returns:
        (B, K + 1, D, H, W, 3): slot 0 the identity grid (background), slot
        k + 1 the grid translated by kp_source[k] − kp_driving[k].
    """
    keypoint_motions = grid - kp_driving[:, :, None, None, None, :] + kp_source[:, :, None, None, None, :]
    background = grid.expand(kp_source.shape[0], 1, *grid.shape)
    return torch.cat([background, keypoint_motions], dim=1)


def _warp_per_slot(volume: torch.Tensor, motions: torch.Tensor) -> torch.Tensor:
    """Sample ``volume`` (B, C, D, H, W) with each slot's grid of ``motions`` (B, S, D, H, W, 3).

    The S grids are stacked along depth so that one ``grid_sample`` call
    serves all slots without replicating the volume S times.

    Returns:
        (B, S, C, D, H, W), a transposed view of the sampled tensor.
    """
    b, c, d, h, w = volume.shape
    num_slots = motions.shape[1]
    warped = sample_volume(volume, motions.view(b, num_slots * d, h, w, 3))
    return warped.view(b, c, num_slots, d, h, w).transpose(1, 2)


def _heatmap_differences(grid: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
    """Driving minus source keypoint heatmaps per slot (spec §4, step 4) → (B, K + 1, D, H, W), slot 0 all zero."""
    heat = keypoint_heatmaps(grid, kp_driving) - keypoint_heatmaps(grid, kp_source)
    return F.pad(heat, (0, 0, 0, 0, 0, 0, 1, 0))


class WarpingNetwork(nn.Module):
    """W: warps the source feature volume by the keypoint motion (spec §4).

    The defaults are LivePortrait's ``models.yaml`` configuration, so
    ``WarpingNetwork()`` (or ``WarpingNetwork(**config)`` with the manifest's
    ``config`` block) loads the public checkpoint strictly.

    Args:
        num_kp: number of implicit keypoints.
        block_expansion: with ``num_down_blocks``, sets the output width
            block_expansion·2^num_down_blocks (256).
        max_features: channels of the flattened warped volume
            (= reshape_channel·reshape_depth, 512).
        num_down_blocks: see ``block_expansion``.
        reshape_channel: channels of the feature volume.
        estimate_occlusion_map: predict an occlusion map and multiply the
            output by it.
        dense_motion_params: keyword arguments of :class:`DenseMotionNetwork`
            (``block_expansion``, ``max_features``, ``num_blocks``,
            ``reshape_depth``, ``compress``); None = its defaults.

    Raises:
        ValueError: if max_features != reshape_channel·reshape_depth.
    """

    def __init__(
        self,
        num_kp: int = 21,
        block_expansion: int = 64,
        max_features: int = 512,
        num_down_blocks: int = 2,
        reshape_channel: int = 32,
        estimate_occlusion_map: bool = True,
        dense_motion_params: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.dense_motion_network = DenseMotionNetwork(
            num_kp=num_kp,
            feature_channel=reshape_channel,
            estimate_occlusion_map=estimate_occlusion_map,
            **(dense_motion_params or {}),
        )
        reshape_depth = self.dense_motion_network.reshape_depth
        if max_features != reshape_channel * reshape_depth:
            raise ValueError(
                f"max_features ({max_features}) must equal reshape_channel·reshape_depth "
                f"({reshape_channel}·{reshape_depth})"
            )
        out_features = block_expansion * 2**num_down_blocks
        self.third = ConvNormAct(max_features, out_features, kernel_size=3, padding=1, negative_slope=0.01)
        self.fourth = nn.Conv2d(out_features, out_features, kernel_size=1)

    def forward(self, feature_3d: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> WarpOutput:
        """Warp f_s from the source pose/expression to the driving one.

        Args:
            feature_3d: (B, 32, 16, 64, 64) source feature volume f_s from
                :class:`~talkinghead.models.appearance.AppearanceFeatureExtractor`.
            kp_source: (B, 21, 3) source implicit keypoints x_s (normalised
                volume coordinates, spec §3).
            kp_driving: (B, 21, 3) driving implicit keypoints x_d.

        Returns:
            :class:`WarpOutput`; ``out`` in the features' dtype, ``occlusion_map``
            float32, ``deformation`` in the keypoints' dtype.
        """
        motion = self.dense_motion_network(feature_3d, kp_source, kp_driving)
        warped = sample_volume(feature_3d, motion.deformation)
        b, _, _, h, w = warped.shape
        # Under half-precision autocast these last 2-D layers (~10 of W's ~400 GFLOP) stay float32: it removes
        # a quarter of bf16's image error (tests/test_precision.py); in float32 this is the plain computation.
        with torch.autocast(warped.device.type, enabled=False):
            out = self.fourth(self.third(warped.float().view(b, -1, h, w)))
        if motion.occlusion_map is not None:
            out = out * motion.occlusion_map.float()
        return WarpOutput(out=out.to(warped.dtype), occlusion_map=motion.occlusion_map, deformation=motion.deformation)
