"""The five LivePortrait networks, built and loaded together from their checkpoints.

Checkpoint layout (``KlingTeam/LivePortrait``, formerly ``KwaiVGI/LivePortrait``; spec §"Checkpoints" and
``tests/data/fixtures/liveportrait/manifest.json``): four flat state dicts with no
prefix (F, M, W, G) and one dict of three state dicts for S whose keys carry a
DistributedDataParallel ``module.`` prefix, removed before strict loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..weights import LIVEPORTRAIT_FILES, HubFile, WeightStore, read_checkpoint, strip_prefix
from ..weights_strict import load_state_dict_strict
from ..errors import WeightsError
from .appearance import AppearanceFeatureExtractor
from .motion_extractor import MotionExtractor
from .spade import SPADEDecoder
from .stitching import StitchingRetargeting
from .warping import WarpingNetwork


@dataclass
class LivePortraitNetworks:
    """F, M, W, G and S in eval mode on one device.

    Attributes:
        appearance: F, (B,3,256,256) image → (B,32,16,64,64) feature volume.
        motion: M, (B,3,256,256) image → raw pose/expression heads.
        warping: W, feature volume + source/driving keypoints → (B,256,64,64).
        decoder: G, (B,256,64,64) → (B,3,512,512) image in (0,1).
        stitching: S, the stitching, lip and eye retargeting MLPs.
    """

    appearance: AppearanceFeatureExtractor
    motion: MotionExtractor
    warping: WarpingNetwork
    decoder: SPADEDecoder
    stitching: StitchingRetargeting

    def modules(self) -> list[nn.Module]:
        """The five networks, in the order above."""
        return [self.appearance, self.motion, self.warping, self.decoder, self.stitching]

    def to(self, device: torch.device | str) -> "LivePortraitNetworks":
        """Move every network to ``device`` (in place) and return self."""
        for module in self.modules():
            module.to(device)
        return self


def _flat(module: nn.Module) -> Callable[[Mapping[str, Any], str], nn.Module]:
    def load(checkpoint: Mapping[str, Any], source: str) -> nn.Module:
        return load_state_dict_strict(module, checkpoint, source)

    return load


def _stitching(module: StitchingRetargeting) -> Callable[[Mapping[str, Any], str], nn.Module]:
    def load(checkpoint: Mapping[str, Any], source: str) -> nn.Module:
        subs = {}
        for key in module.CHECKPOINT_KEYS.values():
            sub = checkpoint.get(key)
            if not isinstance(sub, Mapping):
                raise WeightsError(f"{source}: entry {key!r} is missing or not a state dict; the file is not LivePortrait's stitching_retargeting_module.pth")
            subs[key] = strip_prefix(sub, "module.")
        return module.load_checkpoint_dict(subs, source)

    return load


def load_liveportrait(store: WeightStore, device: torch.device | str = "cpu",
                      files: Mapping[str, HubFile] = LIVEPORTRAIT_FILES) -> LivePortraitNetworks:
    """Build F, M, W, G, S, load their checkpoints strictly and put them in eval mode.

    Args:
        store: where the checkpoint files come from (local folder or Hub).
        device: device to place the networks on.
        files: the five :class:`HubFile` entries, keyed like
            :data:`talkinghead.weights.LIVEPORTRAIT_FILES`.

    Returns:
        The networks, float32, eval mode, gradients disabled.

    Raises:
        WeightsError: a file is missing/unreadable/unsafe, or any key is
            missing, unexpected or mis-shaped (the message names file and key).
    """
    nets = LivePortraitNetworks(
        appearance=AppearanceFeatureExtractor(),
        motion=MotionExtractor(),
        warping=WarpingNetwork(),
        decoder=SPADEDecoder(),
        stitching=StitchingRetargeting(),
    )
    loaders = {
        "appearance_feature_extractor": _flat(nets.appearance),
        "motion_extractor": _flat(nets.motion),
        "warping_module": _flat(nets.warping),
        "spade_generator": _flat(nets.decoder),
        "stitching_retargeting_module": _stitching(nets.stitching),
    }
    for name, load in loaders.items():
        path = store.path(files[name])
        load(read_checkpoint(path), str(path))
    for module in nets.modules():
        module.eval().requires_grad_(False)
    return nets.to(device)
