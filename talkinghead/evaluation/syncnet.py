"""SyncNet (Chung & Zisserman, "Out of time: automated lip sync in the wild", ACCV 2016 workshops): the
audio-visual synchronisation network whose embedding distance gives Sync-C / Sync-D (:mod:`.sync`).

Layer sizes, the order of the layers inside each ``nn.Sequential`` (the indices of the state-dict keys) and
the tower names ``netcnnaud``/``netfcaud``/``netcnnlip``/``netfclip`` follow joonson/syncnet_python
``SyncNetModel.py`` (class ``S``), so that repository's published ``syncnet_v2.model`` (a plain dict of
tensors named as ``S.state_dict()``, which ``SyncNetInstance.loadParameters`` copies key by key) loads
strictly.  Our own code; nothing of that repository is imported.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import WeightsError
from ..weights import read_checkpoint
from ..weights_strict import check_state_dict

EMBEDDING = 1024
"""Width of both towers' outputs (syncnet_python's ``num_layers_in_fc_layers``)."""

# (out channels, kernel, stride, padding, pooling after it: (kernel, stride, padding) or None), in order.
# The ReLU after each conv and a pooling layer each take one index of the Sequential, as in the reference.
_AUDIO_CONVS = [(64, (3, 3), 1, 1, ((1, 1), (1, 1), 0)), (192, (3, 3), 1, 1, ((3, 3), (1, 2), 0)),
                (384, (3, 3), 1, 1, None), (256, (3, 3), 1, 1, None), (256, (3, 3), 1, 1, ((3, 3), (2, 2), 0)),
                (512, (5, 4), 1, 0, None)]
_LIP_CONVS = [(96, (5, 7, 7), (1, 2, 2), 0, ((1, 3, 3), (1, 2, 2), 0)),
              (256, (1, 5, 5), (1, 2, 2), (0, 1, 1), ((1, 3, 3), (1, 2, 2), (0, 1, 1))),
              (256, (1, 3, 3), 1, (0, 1, 1), None), (256, (1, 3, 3), 1, (0, 1, 1), None),
              (256, (1, 3, 3), 1, (0, 1, 1), ((1, 3, 3), (1, 2, 2), 0)), (512, (1, 6, 6), 1, 0, None)]


def _conv_tower(spec: list, in_channels: int, dims: int) -> nn.Sequential:
    """Conv → BatchNorm → ReLU (→ MaxPool) for each row of ``spec``, 2-D or 3-D (``dims``)."""
    conv, norm, pool = ((nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if dims == 2 else
                        (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d))
    layers: list[nn.Module] = []
    for out, kernel, stride, padding, pooling in spec:
        layers += [conv(in_channels, out, kernel_size=kernel, stride=stride, padding=padding), norm(out), nn.ReLU()]
        if pooling is not None:
            layers.append(pool(kernel_size=pooling[0], stride=pooling[1], padding=pooling[2]))
        in_channels = out
    return nn.Sequential(*layers)


def _fc_head() -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, EMBEDDING))


class SyncNet(nn.Module):
    """The two SyncNet towers (layout: joonson/syncnet_python ``SyncNetModel.py``, class ``S``).

    ``forward_audio``: (N, 1, 13, 20) float32 MFCC windows (13 cepstra × 20 frames of 10 ms = 0.2 s, as
    :func:`talkinghead.evaluation.sync.speech_mfcc` computes them) → (N, 1024) float32 embeddings.
    ``forward_lips``: (N, 3, 5, 224, 224) float32 clips of 5 face crops (BGR channel order, values 0…255,
    not normalised, as the reference feeds ``cv2`` frames) → (N, 1024) float32 embeddings.
    Corresponding audio and video windows have a small Euclidean distance between their embeddings.
    """

    def __init__(self) -> None:
        super().__init__()
        self.netcnnaud = _conv_tower(_AUDIO_CONVS, 1, dims=2)
        self.netfcaud = _fc_head()
        self.netfclip = _fc_head()  # registered before netcnnlip, as in the reference (the key order)
        self.netcnnlip = _conv_tower(_LIP_CONVS, 3, dims=3)

    def forward_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(N, 1, 13, 20) MFCC windows → (N, 1024) audio embeddings."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lips(self, clips: torch.Tensor) -> torch.Tensor:
        """(N, 3, 5, 224, 224) BGR 0…255 face clips → (N, 1024) video embeddings."""
        return self.netfclip(self.netcnnlip(clips).flatten(1))


def load_syncnet(path: str | os.PathLike, device: str | torch.device = "cpu") -> SyncNet:
    """The SyncNet of ``path`` (``syncnet_v2.model`` of joonson/syncnet_python), in eval mode on ``device``.

    The file is read with ``torch.load(map_location="cpu", weights_only=True)`` (``.safetensors``: with
    safetensors) and must hold exactly the keys of :class:`SyncNet` (``netcnnaud.0.weight`` …
    ``netfclip.3.bias``, BatchNorm ``running_mean``/``running_var`` included).  BatchNorm's
    ``num_batches_tracked`` counters (added in PyTorch 0.4.1, after the file was published; unused in eval
    mode) may be present or absent; absent ones are set to 0.

    Raises:
        WeightsError: unreadable or unsafe file, or a missing, unexpected or mis-shaped key (named).
    """
    state = dict(read_checkpoint(path))
    model = SyncNet()
    own = model.state_dict()
    for key, value in own.items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    check_state_dict(model, state, str(path))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # e.g. a tensor of another dtype that cannot be copied
        raise WeightsError(f"{path}: checkpoint does not load into SyncNet: {str(e).splitlines()[0]}") from e
    return model.eval().to(device)
