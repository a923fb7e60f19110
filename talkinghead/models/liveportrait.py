"""The five LivePortrait networks, built and loaded together from their checkpoints (:data:`LIVEPORTRAIT_FILES`).

Checkpoint layout (``KlingTeam/LivePortrait``, formerly ``KwaiVGI/LivePortrait``; spec §"Checkpoints" and
``tests/data/fixtures/liveportrait/manifest.json``): four flat state dicts with no
prefix (F, M, W, G) and one dict of three state dicts for S whose keys carry a
DistributedDataParallel ``module.`` prefix, removed before strict loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch
from torch import nn

from ..errors import WeightsError
from ..weights import HubFile, WeightStore, env_revision, read_checkpoint, register_weights, strip_prefix, weights_source
from ..weights_strict import load_state_dict_strict
from .appearance import AppearanceFeatureExtractor
from .motion_extractor import MotionExtractor
from .spade import SPADEDecoder
from .stitching import StitchingRetargeting
from .warping import WarpingNetwork

if TYPE_CHECKING:
    from ..weights import WeightSource

LIVEPORTRAIT_REPO = "KlingTeam/LivePortrait"
"""Current Hub id of LivePortrait's weights (the Hub redirects the former id here)."""

LIVEPORTRAIT_FORMER_REPOS = ("KwaiVGI/LivePortrait",)
"""Former Hub ids of :data:`LIVEPORTRAIT_REPO`, still looked up in the Hub cache."""

LIVEPORTRAIT_REVISION_ENV = "TALKINGHEAD_LIVEPORTRAIT_REVISION"
"""Environment variable holding the default revision of :data:`LIVEPORTRAIT_REPO`."""

LIVEPORTRAIT_REVISION = env_revision(LIVEPORTRAIT_REVISION_ENV)
"""Hub revision of ``KlingTeam/LivePortrait`` (default; an explicit revision overrides it).

The commit sha could not be read from this offline workplace; ``main`` is used
until it is pinned (set ``TALKINGHEAD_LIVEPORTRAIT_REVISION`` to a sha to pin
it on your machine).  The strict loader refuses any file whose tensor layout
differs from the one our networks expect, so a changed upstream file cannot be
loaded silently.
"""

LIVEPORTRAIT_FILES: dict[str, HubFile] = {
    name: HubFile(LIVEPORTRAIT_REPO, path, LIVEPORTRAIT_REVISION, size, former_repo_ids=LIVEPORTRAIT_FORMER_REPOS)
    for name, path, size in (
        ("appearance_feature_extractor", "liveportrait/base_models/appearance_feature_extractor.pth", 3_400_000),
        ("motion_extractor", "liveportrait/base_models/motion_extractor.pth", 112_600_000),
        ("warping_module", "liveportrait/base_models/warping_module.pth", 182_200_000),
        ("spade_generator", "liveportrait/base_models/spade_generator.pth", 221_800_000),
        ("stitching_retargeting_module", "liveportrait/retargeting_models/stitching_retargeting_module.pth", 2_300_000),
    )
}
"""The five LivePortrait renderer checkpoints (about 520 MB together), by network; revision key ``"liveportrait"``."""

register_weights("liveportrait", LIVEPORTRAIT_FILES, LIVEPORTRAIT_REVISION_ENV)


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

    @classmethod
    def from_pretrained(cls, source: WeightSource = None, *, revision: str | None = None,
                        device: torch.device | str = "cpu") -> "LivePortraitNetworks":
        """F, M, W, G and S from LivePortrait's five checkpoints (:data:`LIVEPORTRAIT_FILES`).

        Files (paths inside the repo): ``liveportrait/base_models/`` ``appearance_feature_extractor.pth``,
        ``motion_extractor.pth``, ``warping_module.pth``, ``spade_generator.pth`` and
        ``liveportrait/retargeting_models/stitching_retargeting_module.pth`` (about 520 MB).

        Args:
            source: None (``KlingTeam/LivePortrait``: ``./checkpoints`` first,
                then the Hub cache, a cache under ``KwaiVGI/LivePortrait`` too,
                else a download); a local folder holding the five files at those
                paths (nothing is downloaded); a Hub repo id ``"owner/name"``
                laid out the same (a fork or mirror); or a
                :class:`~talkinghead.weights.WeightStore` (its own revisions);
                see :func:`talkinghead.weights.weights_source`.
            revision: Hub branch, tag or commit sha of the repo (default: the
                ``TALKINGHEAD_LIVEPORTRAIT_REVISION`` variable or ``main``; a
                fork's ``main``); not with a folder or a store.
            device: device to place the networks on.

        Returns:
            The networks, float32, eval mode, gradients disabled.

        Raises:
            WeightsError: a file is missing (the message names it and the
                folder or repo), unreadable or unsafe; a key is missing,
                unexpected or mis-shaped; ``revision`` with a folder or a
                store; ``source`` is neither a folder nor a repo id.
        """
        store, files = weights_source(source, LIVEPORTRAIT_FILES, revision)
        return load_liveportrait(store, device, files)


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

    :meth:`LivePortraitNetworks.from_pretrained` is the usual way in; this is its store-level step.

    Args:
        store: where the checkpoint files come from (local folder or Hub).
        device: device to place the networks on.
        files: the five :class:`HubFile` entries, keyed like
            :data:`LIVEPORTRAIT_FILES`.

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
