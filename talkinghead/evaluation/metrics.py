"""Frame metrics between two (H, W, 3) uint8 RGB frames: PSNR, SSIM, L1 (torchmetrics) and LPIPS (the
``lpips`` package, AlexNet), as the reenactment papers report them (LivePortrait, face-vid2vid).

PSNR and SSIM come from :mod:`torchmetrics.functional` (SSIM: Wang et al. 2004, an 11×11 Gaussian window,
σ = 1.5, K1 = 0.01, K2 = 0.03, on [0, 1] images); L1 is the mean absolute difference on [0, 1].  LPIPS
(Zhang et al. 2018) needs torchvision's ImageNet AlexNet (``alexnet-owt-7be5be79.pth``, downloaded once to
``$TORCH_HOME/hub/checkpoints``) besides the linear layers the ``lpips`` package ships; where it cannot be
loaded (offline, no cache) LPIPS is reported as skipped with the reason.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure


def _as_tensor(frame: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 → (1, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float() / 255.0


def psnr(pred: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB of two (H, W, 3) uint8 frames (peak 255); ``inf`` for identical frames."""
    a, b = _as_tensor(pred), _as_tensor(ref)
    if torch.equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(a, b, data_range=1.0))


def ssim(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean SSIM (unitless, ≤ 1; 1 = identical) of two (H, W, 3) uint8 frames, channels averaged."""
    return float(structural_similarity_index_measure(_as_tensor(pred), _as_tensor(ref), data_range=1.0))


def l1(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean absolute difference of two (H, W, 3) uint8 frames on the [0, 1] scale."""
    return float((_as_tensor(pred) - _as_tensor(ref)).abs().mean())


class Lpips:
    """LPIPS (AlexNet, ``lpips`` v0.1 linear layers) of two (H, W, 3) uint8 frames; lower = more alike.

    ``available`` is False (and ``reason`` says why) when the package or torchvision's AlexNet weights
    cannot be loaded; :meth:`__call__` then returns None.
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device, self.reason, self._net = torch.device(device), None, None
        try:
            import warnings

            import lpips

            with warnings.catch_warnings():  # torchvision's "pretrained is deprecated", raised inside lpips
                warnings.simplefilter("ignore", UserWarning)
                self._net = lpips.LPIPS(net="alex", verbose=False).to(self.device).eval()
        except ImportError:
            self.reason = "the lpips package is not installed (pip install 'lpips>=0.1.4,<0.2')"
        except Exception as e:  # torchvision's download of AlexNet (URLError, HTTPError, ...) when offline
            self.reason = (f"torchvision's AlexNet weights (alexnet-owt-7be5be79.pth) could not be loaded: "
                           f"{type(e).__name__}: {str(e)[:120]}")

    @property
    def available(self) -> bool:
        """Whether the network loaded."""
        return self._net is not None

    @torch.inference_mode()
    def __call__(self, pred: np.ndarray, ref: np.ndarray) -> float | None:
        """LPIPS distance (unitless, ≥ 0) or None when unavailable; inputs scaled to [-1, 1] as lpips expects."""
        if self._net is None:
            return None
        a, b = (_as_tensor(x).to(self.device) * 2 - 1 for x in (pred, ref))
        return float(self._net(a, b).mean())
