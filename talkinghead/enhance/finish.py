"""The finishing step of every job: rendered faces → output frames (restore → paste back → upscale).

rendered (B, 512, 512, 3) faces ─ restore (GFPGAN / CodeFormer, the whole batch at once)
─ paste back into the source photo (:mod:`talkinghead.face.paste`) ─ 2× upscale of each frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..face.crop import transform_points
from ..face.paste import paste_back
from ..render.source import PreparedSource
from .align import five_points
from .options import EnhanceOptions
from .restore import FaceRestorer
from .upscale import Upscaler


@dataclass(frozen=True)
class Finisher:
    """Turns batches of rendered faces of a source into output frames.

    Attributes:
        paste_back: paste each face into the source photo (output = photo
            size); False keeps the 512×512 face crop.
        enhance: restoration blend weight and fidelity (``enhance.weight``,
            ``enhance.fidelity``) for ``restorer``.
        restorer: face restorer run on the rendered crops, or None.
        upscaler: 2× super-resolution of each output frame, or None.
    """

    paste_back: bool = True
    enhance: EnhanceOptions = EnhanceOptions()
    restorer: FaceRestorer | None = None
    upscaler: Upscaler | None = None

    def __call__(self, source: PreparedSource, faces: np.ndarray) -> list[np.ndarray]:
        """(B, 512, 512, 3) uint8 RGB rendered faces of ``source`` → B (H, W, 3) uint8 RGB output frames.

        H, W: the photo's size with paste-back, else 512; twice each with the upscaler.
        """
        if self.restorer is not None:
            points = five_points(transform_points(source.landmarks, source.crop.M_o2c))
            faces = self.restorer.restore(faces, points, self.enhance.weight, self.enhance.fidelity)
        frames = [paste_back(source.image, face, source.crop.M_c2o) if self.paste_back else face for face in faces]
        return frames if self.upscaler is None else [self.upscaler.upscale(frame) for frame in frames]
