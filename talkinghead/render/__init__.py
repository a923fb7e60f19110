"""Render stage: the prepared source, the renderer, and the one loop from driven keypoints to frames.

* :mod:`.source`: a photo (or each frame of a source video) → its
  :class:`PreparedSource` (size rule, crop, M's keypoint info, F's feature
  volume, eye/lip ratios);
* :mod:`.renderer`: W and G turn driven keypoints into 512×512 faces;
* :mod:`.frames`: the loop every job shares, driven keypoints → rendered
  faces → finished frames (the finishing step itself is the enhance stage's,
  :mod:`talkinghead.enhance.finish`).
"""

from ..devices import PRECISIONS
from .renderer import Renderer

__all__ = ["PRECISIONS", "Renderer"]
