"""Strict state-dict loading with messages that name the offending key.

Kept separate from :mod:`talkinghead.weights` (which resolves files on the Hub
or on disk) so that networks can be loaded from any mapping of tensors.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from .errors import WeightsError


def check_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Compare ``state_dict`` with ``module.state_dict()`` key by key.

    Args:
        module: the network the tensors are meant for.
        state_dict: name → tensor, exactly as stored (prefixes already removed).
        source: where the tensors came from (a file path, or ``path:subkey``),
            used in the error message.

    Raises:
        WeightsError: naming ``source`` and the first missing, unexpected or
            mis-shaped key (and how many there are of each kind).
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    extra = [k for k in state_dict if k not in expected]
    wrong = [
        (k, tuple(state_dict[k].shape), tuple(expected[k].shape))
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    not_tensor = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    problems = []
    if missing:
        problems.append(f"missing key {missing[0]!r}" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
    if extra:
        problems.append(f"unexpected key {extra[0]!r}" + (f" (+{len(extra) - 1} more)" if len(extra) > 1 else ""))
    if wrong:
        k, got, want = wrong[0]
        problems.append(f"key {k!r} has shape {list(got)}, expected {list(want)}" + (f" (+{len(wrong) - 1} more)" if len(wrong) > 1 else ""))
    if not_tensor:
        problems.append(f"key {not_tensor[0]!r} is not a tensor")
    if problems:
        raise WeightsError(
            f"{source}: checkpoint does not match {type(module).__name__}: " + "; ".join(problems)
            + ". The file is corrupt or from another model/version; delete it so it is downloaded again, or point --weights at the right folder."
        )


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """Check ``state_dict`` (see :func:`check_state_dict`) and load it strictly.

    Floating tensors are cast to the module's own dtype on copy (PyTorch's
    ``load_state_dict`` semantics); nothing is silently skipped.

    Returns:
        ``module`` (for chaining).

    Raises:
        WeightsError: on any missing, unexpected or mis-shaped key.
    """
    check_state_dict(module, state_dict, source)
    module.load_state_dict(dict(state_dict), strict=True)
    return module
