"""Enhance stage: face restoration and 2× super-resolution of rendered frames.

Data flow, per frame::

    rendered 512×512 face crop
      → restore (align to the FFHQ 5-point template, GFPGAN v1.4 / CodeFormer,
        warp back through a feathered mask, blend by weight)   FaceRestorer
      → paste-back into the photo                              (face.paste)
      → optional 2× upscale of the output frame, tiled         Upscaler

Networks are built by spandrel from the official checkpoints
(:data:`.files.ENHANCE_FILES`, sha256-verified; ``FaceRestorer.from_pretrained``,
``Upscaler.from_pretrained``); spandrel is imported only when
one is loaded.  GFPGAN and Real-ESRGAN weights are Apache-2.0 / BSD-3-Clause;
CodeFormer's are NON-COMMERCIAL (NTU S-Lab License 1.0).
"""

from .align import FFHQ_TEMPLATE_512, alignment, five_points, from_template, to_template
from .files import ENHANCE_FILES
from .options import EnhanceOptions
from .restore import FaceRestorer, load_restorer
from .upscale import Upscaler, load_upscaler

__all__ = [
    "ENHANCE_FILES",
    "EnhanceOptions",
    "FFHQ_TEMPLATE_512",
    "FaceRestorer",
    "Upscaler",
    "alignment",
    "five_points",
    "from_template",
    "load_restorer",
    "load_upscaler",
    "to_template",
]
