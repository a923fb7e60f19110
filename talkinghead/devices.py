"""Which torch device a job runs on (re-exported by :mod:`talkinghead.engine` and ``talkinghead``)."""

from __future__ import annotations

import torch

from .errors import TalkingHeadError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" → CUDA when available, else CPU; "cuda"/"cpu" as given.

    Raises:
        TalkingHeadError: "cuda" asked for on a machine without a usable GPU.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TalkingHeadError("--device cuda was asked for but no CUDA GPU is available to PyTorch: use --device cpu (slow) or install a CUDA build of torch")
    return device
