"""S: LivePortrait's stitching and eye/lip retargeting MLPs.

Three small fully connected networks of the same kind (LivePortrait spec §6,
checkpoint ``liveportrait/retargeting_models/stitching_retargeting_module.pth``):

=========== ================== =========================== ============
role        checkpoint key     sizes                       parameters
=========== ================== =========================== ============
stitching   retarget_shoulder  126 → 128 → 128 → 64 → 65   45,249
lip         retarget_mouth     65 → 128 → 128 → 64 → 63    37,311
eye         retarget_eye       66 → 256 → 256 → 128 → 128  144,703
                               → 64 → 63
=========== ================== =========================== ============

How their inputs are built and their outputs used is motion math and lives in
:mod:`talkinghead.motion.retarget`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ..errors import WeightsError
from ..weights_strict import load_state_dict_strict


class RetargetingMLP(nn.Module):
    """Linear/ReLU alternation ending in a Linear without activation.

    State-dict keys are ``mlp.0.weight``, ``mlp.0.bias``, ``mlp.2.*``, …
    (odd indices are the parameter-free ReLUs), i.e. the checkpoint's keys
    once the ``module.`` prefix is removed (LivePortrait spec §6).

    Args:
        input_size: width of the input vector.
        hidden_sizes: widths of the hidden layers, in order.
        output_size: width of the output vector.
    """

    def __init__(self, input_size: int, hidden_sizes: Sequence[int], output_size: int) -> None:
        super().__init__()
        widths = [input_size, *hidden_sizes, output_size]
        layers: list[nn.Module] = []
        for n_in, n_out in zip(widths[:-1], widths[1:]):
            if layers:
                layers.append(nn.ReLU())
            layers.append(nn.Linear(n_in, n_out))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, input_size) float → (B, output_size), same dtype and device."""
        return self.mlp(x)


def stitching_mlp() -> RetargetingMLP:
    """The stitching MLP: [x_s, x_d] flattened (B, 126) → δ (B, 65).

    δ[:, :63] are per-keypoint offsets (21×3), δ[:, 63:65] one (x, y) shift
    for every keypoint (spec §6).
    """
    return RetargetingMLP(126, (128, 128, 64), 65)


def lip_mlp() -> RetargetingMLP:
    """The lip-retargeting MLP: [x_s flattened, c_s_lip, c_d_lip] (B, 65) → Δ_lip (B, 63)."""
    return RetargetingMLP(65, (128, 128, 64), 63)


def eye_mlp() -> RetargetingMLP:
    """The eye-retargeting MLP: [x_s flattened, c_s_left, c_s_right, c_d_eye] (B, 66) → Δ_eye (B, 63)."""
    return RetargetingMLP(66, (256, 256, 128, 128, 64), 63)


class StitchingRetargeting(nn.Module):
    """S: the stitching, lip and eye MLPs together (one checkpoint file).

    Attributes:
        stitching: see :func:`stitching_mlp`.
        lip: see :func:`lip_mlp`.
        eye: see :func:`eye_mlp`.
    """

    CHECKPOINT_KEYS: Mapping[str, str] = {
        "stitching": "retarget_shoulder",
        "lip": "retarget_mouth",
        "eye": "retarget_eye",
    }
    """Attribute name → top-level key of the checkpoint dict (spec §6)."""

    def __init__(self) -> None:
        super().__init__()
        self.stitching = stitching_mlp()
        self.lip = lip_mlp()
        self.eye = eye_mlp()

    def load_checkpoint_dict(
        self, checkpoint: Mapping[str, Mapping[str, torch.Tensor]], source: str
    ) -> "StitchingRetargeting":
        """Load the three sub-state-dicts strictly.

        Args:
            checkpoint: ``{"retarget_shoulder": sd, "retarget_mouth": sd,
                "retarget_eye": sd}`` with every ``module.`` already removed
                from the keys (LivePortrait removes each occurrence); other
                top-level keys are ignored.
            source: where the tensors came from, for error messages.

        Returns:
            ``self`` (for chaining).

        Raises:
            WeightsError: if a sub-dict is missing, or one of its keys is
                missing, unexpected or mis-shaped.
        """
        missing = [key for key in self.CHECKPOINT_KEYS.values() if key not in checkpoint]
        if missing:
            raise WeightsError(
                f"{source}: no {', '.join(map(repr, missing))} entry; the file is not LivePortrait's "
                "stitching_retargeting_module.pth, delete it so it is downloaded again."
            )
        for attribute, key in self.CHECKPOINT_KEYS.items():
            load_state_dict_strict(getattr(self, attribute), checkpoint[key], f"{source}:{key}")
        return self
