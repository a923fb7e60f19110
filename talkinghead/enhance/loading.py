"""Building an enhancement network from a state dict with spandrel, strictly.

spandrel detects the architecture from the state dict's keys, unwraps the
``"params_ema"`` / ``"params"`` containers of the official releases, infers
the hyper-parameters and loads the tensors with
``nn.Module.load_state_dict(strict=True)``, so a missing, unexpected or
mis-shaped tensor is an error.  This module turns every such failure into a
one-line :class:`WeightsError`.  spandrel is imported here, lazily, so that
``import talkinghead`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import torch

from ..errors import WeightsError

if TYPE_CHECKING:
    from spandrel import ImageModelDescriptor

_MAX_MESSAGE = 400


def load_descriptor(state_dict: Mapping[str, Any], architecture: str, device: str | torch.device,
                    what: str) -> ImageModelDescriptor:
    """Build the spandrel model of ``state_dict`` and check that it is ``architecture``.

    Args:
        state_dict: tensors by name, bare or inside ``{"params_ema": …}``.
        architecture: spandrel's architecture id that must be detected
            (``"GFPGAN"``, ``"CodeFormer"``, ``"ESRGAN"``); CodeFormer comes
            from ``spandrel_extra_arches``' registry.
        device: where the model is put (fp32, eval mode, no gradients).
        what: the checkpoint's name for messages (e.g. its file name).

    Returns:
        spandrel's ``ImageModelDescriptor`` (``.model`` is the ``nn.Module``).

    Raises:
        WeightsError: no known architecture matches, a different one does,
            or a tensor is missing, unexpected or of the wrong shape.
    """
    from spandrel import ModelLoader, UnsupportedModelError

    try:
        descriptor = ModelLoader(device, registry=_registry(architecture)).load_from_state_dict(dict(state_dict))
    except UnsupportedModelError as e:
        raise WeightsError(f"{what}: not a {architecture} checkpoint (its tensor names match no known network); use the official file") from e
    except (RuntimeError, KeyError, ValueError) as e:  # load_state_dict(strict=True), or a key spandrel reads is absent
        raise WeightsError(f"{what}: does not match the {architecture} layout: {_one_line(e)}") from e
    found = descriptor.architecture.id
    if found != architecture:
        raise WeightsError(f"{what}: expected a {architecture} checkpoint, found a {found} one; use the official file")
    descriptor.model.requires_grad_(False)
    return descriptor.eval()


def _registry(architecture: str):
    """spandrel's own registry, or spandrel_extra_arches' for the architectures only it has."""
    if architecture == "CodeFormer":
        from spandrel_extra_arches import EXTRA_REGISTRY

        return EXTRA_REGISTRY
    from spandrel import MAIN_REGISTRY

    return MAIN_REGISTRY


def _one_line(error: Exception) -> str:
    """The error's message on one line (torch lists keys over several), shortened."""
    text = " ".join(str(error).split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"
