"""What the enhance stage does to each rendered frame.

Licences of the restoration networks' weights: GFPGAN v1.4 is Apache-2.0;
CodeFormer's weights are under the NTU S-Lab License 1.0, which allows
NON-COMMERCIAL use only.  Real-ESRGAN x2plus (upscaling) is BSD-3-Clause.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ControlError

RESTORERS = ("none", "gfpgan", "codeformer")
"""Face restorer choices: none, GFPGAN v1.4 (Apache-2.0), CodeFormer (non-commercial)."""
MIN_TILE = 32
"""Smallest upscaling tile side in input pixels (smaller tiles are mostly overlap)."""


@dataclass(frozen=True)
class EnhanceOptions:
    """Face restoration and super-resolution settings (default: nothing done).

    Attributes:
        restorer: ``"none"``, ``"gfpgan"`` (GFPGAN v1.4, Apache-2.0) or
            ``"codeformer"`` (CodeFormer, NON-COMMERCIAL licence).
        weight: blend of restored and rendered face, 0 = rendered face
            unchanged … 1 = fully restored.
        upscale: 1 (off) or 2 (Real-ESRGAN x2plus on every output frame).
        tile: upscaling tile side in input pixels, bounding GPU memory;
            0 = the whole frame at once, otherwise at least 32.
        fidelity: CodeFormer's ``w``, 0 = strongest restoration … 1 = closest
            to the rendered face; ignored by GFPGAN.

    Raises:
        ControlError: for any value outside the ranges above.
    """

    restorer: str = "none"
    weight: float = 1.0
    upscale: int = 1
    tile: int = 256
    fidelity: float = 0.5

    def __post_init__(self) -> None:
        if self.restorer not in RESTORERS:
            raise ControlError(f"unknown face restorer {self.restorer!r}: choose one of {', '.join(RESTORERS)}")
        for name in ("weight", "fidelity"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ControlError(f"enhance {name} must be between 0 and 1, got {value}")
        if self.upscale not in (1, 2):
            raise ControlError(f"upscale must be 1 (off) or 2, got {self.upscale}")
        if self.tile != 0 and self.tile < MIN_TILE:
            raise ControlError(f"upscaling tile must be 0 (whole frame) or at least {MIN_TILE} pixels, got {self.tile}")

    @property
    def restores(self) -> bool:
        """Whether faces are restored (a restorer is chosen and ``weight`` > 0)."""
        return self.restorer != "none" and self.weight > 0

    @property
    def active(self) -> bool:
        """Whether the stage changes anything (restoration or upscaling)."""
        return self.restores or self.upscale == 2
