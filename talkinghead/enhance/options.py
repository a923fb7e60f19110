"""What the enhance stage does to each rendered frame.

Licences of the restoration networks' weights: GFPGAN v1.4 is Apache-2.0;
CodeFormer's weights are under the NTU S-Lab License 1.0, which allows
NON-COMMERCIAL use only.  Real-ESRGAN x2plus (upscaling) is BSD-3-Clause.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ControlError
from ..options import check_options, option

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

    restorer: str = option("none", what="face restorer", choices=RESTORERS, flag="--enhance",
                           label="Face restoration (weights fetched on first use)",
                           help="restore the rendered face before paste-back: gfpgan = GFPGAN v1.4 (Apache-2.0), "
                                "codeformer = CodeFormer (NTU S-Lab licence: non-commercial use only)")
    weight: float = option(1.0, what="enhance weight", range=(0.0, 1.0), flag="--enhance-weight",
                           label="Restoration strength (0 = rendered face, 1 = restored)",
                           help="blend of restored and rendered face, 0 = off .. 1 = fully restored")
    upscale: int = option(1, what="upscale", choices=(1, 2), label="Upscale (Real-ESRGAN x2plus)",
                          help="2 = upscale every output frame 2x with Real-ESRGAN x2plus (1 = off)")
    tile: int = option(256, what="upscaling tile",
                       help="tile side in pixels for --upscale 2, bounding GPU memory (0 = whole frame)")
    fidelity: float = option(0.5, what="enhance fidelity", range=(0.0, 1.0),
                             help="CodeFormer only: 0 = stronger restoration .. 1 = closer to the rendered face")

    def __post_init__(self) -> None:
        if self.restorer not in RESTORERS:
            raise ControlError(f"unknown face restorer {self.restorer!r}: choose one of {', '.join(RESTORERS)}")
        if self.upscale not in (1, 2):
            raise ControlError(f"upscale must be 1 (off) or 2, got {self.upscale}")
        check_options(self)  # weight, fidelity
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
