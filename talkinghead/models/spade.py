"""G — LivePortrait's SPADE generator: warped features → RGB image.

Architecture, configuration and checkpoint layout follow
``tests/data/specs/liveportrait-architecture.md`` §5 (checkpoint
``liveportrait/base_models/spade_generator.pth``: a flat state dict whose
names and order are those of :class:`SPADEDecoder`'s ``state_dict()``).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

_LRELU_SLOPE = 0.2
_SPADE_HIDDEN = 128


class SpectralNormConv2d(nn.Module):
    """Stride-1 "same" convolution whose weight is stored in spectral-norm form.

    Layout of PyTorch's legacy ``torch.nn.utils.spectral_norm`` (spec §5):
    parameters ``bias`` (if any) and ``weight_orig`` (out, in, k, k), buffers
    ``weight_u`` (out,) and ``weight_v`` (in·k·k,).  The convolution uses
    ``weight_orig / σ`` with ``σ = u · (W v)``, ``W = weight_orig`` viewed as
    (out, in·k·k).  Inference-only: no power iteration is ever run.

    In eval mode, when no gradient can flow to ``weight_orig`` (under
    ``torch.no_grad``/``torch.inference_mode``, or with frozen parameters),
    the normalised weight is computed once and cached.  ``load_state_dict``,
    moving or casting the module (``.to``, ``.half``, ...) and
    ``.train()``/``.eval()`` drop the cache; after editing the stored tensors
    in place any other way, call ``.eval()`` again.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_orig = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight_orig, a=5**0.5)
        self.register_buffer("weight_u", F.normalize(torch.randn(out_channels), dim=0))
        self.register_buffer("weight_v", F.normalize(torch.randn(in_channels * kernel_size**2), dim=0))
        self._cached_weight: torch.Tensor | None = None

    def _normalised_weight(self) -> torch.Tensor:
        w = self.weight_orig
        with torch.autocast(w.device.type, enabled=False):  # σ in the weight's own precision
            sigma = torch.dot(self.weight_u, torch.mv(w.flatten(1), self.weight_v))
        return w / sigma

    def weight(self) -> torch.Tensor:
        """Effective weight ``weight_orig / σ``, shape (out, in, k, k), dtype of ``weight_orig``."""
        if self.training or (torch.is_grad_enabled() and self.weight_orig.requires_grad):
            return self._normalised_weight()
        if self._cached_weight is None:
            # A normal (non-inference) tensor, so the cache also serves calls made outside inference mode.
            with torch.inference_mode(False), torch.no_grad():
                self._cached_weight = self._normalised_weight()
        return self._cached_weight

    def train(self, mode: bool = True) -> "SpectralNormConv2d":
        self._cached_weight = None
        return super().train(mode)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> "SpectralNormConv2d":
        self._cached_weight = None  # moved or cast: stale, and it would pin memory on the old device
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._cached_weight = None
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) → (B, out, H, W)."""
        return F.conv2d(x, self.weight(), self.bias, padding=self.padding)


class SPADE(nn.Module):
    """Spatially-adaptive normalisation (spec §5).

    ``out = IN(x) · (1 + γ(seg)) + β(seg)`` with a parameter-free instance norm
    (eps 1e-5) and γ, β predicted from the condition ``seg`` by
    ``mlp_shared`` (conv k3 + ReLU) then ``mlp_gamma`` / ``mlp_beta`` (conv k3).
    """

    def __init__(self, norm_channels: int, label_channels: int) -> None:
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, _SPADE_HIDDEN, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(_SPADE_HIDDEN, norm_channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(_SPADE_HIDDEN, norm_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """Modulate ``x`` by ``seg``.

        Args:
            x: (B, norm_channels, H, W).
            seg: (B, label_channels, h, w); resized to (H, W) with legacy
                nearest-neighbour interpolation.  When H = f·h and W = f·w for
                an integer f, the resize is folded into ``mlp_shared``'s
                convolution (:func:`conv3x3_nearest_upsampled`, 2.25× fewer
                multiply-adds) instead of being materialised.

        Returns:
            (B, norm_channels, H, W), same dtype as ``x``.
        """
        factor = x.shape[-1] // seg.shape[-1]
        if tuple(x.shape[-2:]) != (factor * seg.shape[-2], factor * seg.shape[-1]):
            seg, factor = F.interpolate(seg, size=x.shape[-2:], mode="nearest"), 1
        shared = self.mlp_shared[0]  # mlp_shared = (conv, ReLU) exists for the checkpoint layout; run it functionally
        actv = torch.relu(conv3x3_nearest_upsampled(seg, shared.weight, shared.bias, factor))
        return torch.addcmul(self.mlp_beta(actv), F.instance_norm(x, eps=1e-5), self.mlp_gamma(actv) + 1)


def conv3x3_nearest_upsampled(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, factor: int) -> torch.Tensor:
    """``conv2d(nearest_upsample(x, factor), weight, bias, padding=1)`` without the upsampled copy.

    Each output phase (p, q) — output pixels (f·h + p, f·w + q) — of a 3×3
    convolution over an f×-nearest-upsampled image reads at most 2×2 distinct
    input pixels, so it equals a 2×2 convolution of ``x`` with a kernel made
    by summing the 3×3 taps that land on the same input pixel.  All f² phase
    kernels run as one convolution of ``x`` (kernel 2, padding 1, f²·out
    channels); the phases are then interleaved.  Same result up to float
    rounding, (9·f²)/(4·f²) = 2.25× fewer multiply-adds for f ≥ 2.

    Args:
        x: (B, C, h, w) float.
        weight: (O, C, 3, 3).
        bias: (O,) or None.
        factor: integer upsampling factor f ≥ 1.

    Returns:
        (B, O, f·h, f·w).
    """
    if factor == 1:
        return F.conv2d(x, weight, bias, padding=1)
    taps = _phase_taps(factor, weight)
    phase_weight = torch.einsum("ocyx,pky,qlx->pqockl", weight, taps, taps).flatten(0, 2)
    phase_bias = None if bias is None else bias.repeat(factor * factor)
    y = F.conv2d(x, phase_weight, phase_bias, padding=1)  # (B, f·f·O, h+1, w+1)
    b, _, h, w = x.shape
    y = y.unflatten(1, (factor, factor, weight.shape[0]))
    out = y.new_empty(b, weight.shape[0], h, factor, w, factor)
    for p in range(factor):
        for q in range(factor):
            # Phase 0 reads input offsets {-1, 0} (window start 0 of the padded output), others {0, +1} (start 1).
            r, c = int(p > 0), int(q > 0)
            out[:, :, :, p, :, q] = y[:, p, q, :, r : r + h, c : c + w]
    return out.view(b, weight.shape[0], h * factor, w * factor)


def _phase_taps(factor: int, like: torch.Tensor) -> torch.Tensor:
    """(f, 2, 3) 0/1 map along one axis: ``taps[p, k, d] = 1`` when tap ``d``
    (offset d − 1) of a 3-tap kernel at output phase ``p`` reads the input
    pixel that tap ``k`` of the phase's 2-tap kernel reads."""
    taps = torch.zeros(factor, 2, 3, dtype=like.dtype, device=like.device)
    for p in range(factor):
        first = -1 if p == 0 else 0  # input offset read by the 2-tap kernel's first tap
        for d in range(3):
            taps[p, (p + d - 1) // factor - first, d] = 1
    return taps


class SPADEResBlock(nn.Module):
    """SPADE residual block ``fin → fout`` (spec §5).

    ``dx = conv_1(lrelu(norm_1(conv_0(lrelu(norm_0(x))))))``; the shortcut is
    ``conv_s(norm_s(x))`` (1×1, no bias, no activation) when ``fin ≠ fout``,
    else ``x``.  LeakyReLU slope 0.2; convolutions are spectral-normalised.
    """

    def __init__(self, fin: int, fout: int, label_channels: int) -> None:
        super().__init__()
        fmid = min(fin, fout)
        learned_shortcut = fin != fout
        # Registration order = checkpoint order: conv_0, conv_1, conv_s, norm_0, norm_1, norm_s.
        self.conv_0 = SpectralNormConv2d(fin, fmid, 3)
        self.conv_1 = SpectralNormConv2d(fmid, fout, 3)
        self.conv_s = SpectralNormConv2d(fin, fout, 1, bias=False) if learned_shortcut else None
        self.norm_0 = SPADE(fin, label_channels)
        self.norm_1 = SPADE(fmid, label_channels)
        self.norm_s = SPADE(fin, label_channels) if learned_shortcut else None

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        """x (B, fin, H, W), seg (B, label_channels, h, w) of any size (see :class:`SPADE`) → (B, fout, H, W)."""
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), _LRELU_SLOPE))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), _LRELU_SLOPE))
        if self.conv_s is None:
            return x + dx
        return self.conv_s(self.norm_s(x, seg)) + dx


class SPADEDecoder(nn.Module):
    """G: LivePortrait's SPADE generator (spec §5), warped feature → image.

    Defaults are LivePortrait's ``models.yaml`` values.  With them the network
    maps W's output feature (B, 256, 64, 64) — used both as the SPADE
    condition ``seg`` and as the input of ``fc`` — to an RGB image
    (B, 3, 512, 512) in (0, 1):
    ``fc`` (conv k3, 256→512) → ``G_middle_0..5`` (512→512) → ×2 nearest →
    ``up_0`` (512→256) → ×2 nearest → ``up_1`` (256→64) → LeakyReLU(0.2) →
    ``conv_img.0`` (conv k3, 64→3·upscale²) → PixelShuffle(upscale) → sigmoid.

    Args:
        upscale: final pixel-shuffle factor.
        max_features: cap on feature channels.
        block_expansion: base channel count of the feature pyramid.
        out_channels: channels entering ``conv_img``.
        num_down_blocks: number of down blocks of the matching encoder; the
            input has ``min(max_features, block_expansion·2^num_down_blocks)``
            channels.
    """

    NUM_MIDDLE_BLOCKS = 6

    def __init__(
        self,
        upscale: int = 2,
        max_features: int = 512,
        block_expansion: int = 64,
        out_channels: int = 64,
        num_down_blocks: int = 2,
    ) -> None:
        super().__init__()
        in_channels = min(max_features, block_expansion * 2**num_down_blocks)
        self.fc = nn.Conv2d(in_channels, 2 * in_channels, 3, padding=1)
        self._middle_names = tuple(f"G_middle_{i}" for i in range(self.NUM_MIDDLE_BLOCKS))
        for name in self._middle_names:
            self.add_module(name, SPADEResBlock(2 * in_channels, 2 * in_channels, in_channels))
        self.up_0 = SPADEResBlock(2 * in_channels, in_channels, in_channels)
        self.up_1 = SPADEResBlock(in_channels, out_channels, in_channels)
        self.conv_img = nn.Sequential(nn.Conv2d(out_channels, 3 * upscale**2, 3, padding=1), nn.PixelShuffle(upscale))

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        """Decode a warped feature map into an image.

        Args:
            feature: (B, C, H, W) float, C = the input channels above —
                W's ``out`` (B, 256, 64, 64) by default; any device, float32 or
                under fp16/bf16 autocast.

        Returns:
            (B, 3, 4·upscale·H, 4·upscale·W) — (B, 3, 512, 512) by default —
            RGB in (0, 1), float32 (or the autocast dtype).
        """
        seg = feature
        x = self.fc(feature)
        for name in self._middle_names:
            x = getattr(self, name)(x, seg)
        x = self.up_0(_upsample2x(x), seg)
        x = self.up_1(_upsample2x(x), seg)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, _LRELU_SLOPE)))


def _upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Legacy nearest-neighbour ×2 upsampling of (B, C, H, W)."""
    return F.interpolate(x, scale_factor=2, mode="nearest")
