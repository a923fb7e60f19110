"""The finishing step of every job: rendered faces → output frames (restore → paste back → upscale).

rendered (B, 512, 512, 3) faces ─ restore (GFPGAN / CodeFormer, the whole batch at once)
─ paste back into the source photo (:mod:`talkinghead.face.paste`) ─ 2× upscale of each frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..devices import HostCopy, to_host
from ..face.crop import transform_points
from ..face.paste import mask_template, paste_back, paste_back_tensor
from ..media.yuv import Yuv420Frame, rgb_to_yuv420, yuv420_frames
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
    _on_device: dict = field(default_factory=dict, compare=False, repr=False)   # the last photo, a mask per device

    def __call__(self, source: PreparedSource, faces: np.ndarray) -> list[np.ndarray]:
        """(B, 512, 512, 3) uint8 RGB rendered faces of ``source`` → B (H, W, 3) uint8 RGB output frames.

        H, W: the photo's size with paste-back, else 512; twice each with the upscaler.
        """
        if self.restorer is not None:
            points = five_points(transform_points(source.landmarks, source.crop.M_o2c))
            faces = self.restorer.restore(faces, points, self.enhance.weight, self.enhance.fidelity)
        frames = [paste_back(source.image, face, source.crop.M_c2o) if self.paste_back else face for face in faces]
        return frames if self.upscaler is None else [self.upscaler.upscale(frame) for frame in frames]

    def finish_tensor(self, source: PreparedSource, faces: torch.Tensor,
                      yuv420: bool = False) -> Callable[[], list[np.ndarray] | list[Yuv420Frame]]:
        """Like ``__call__`` for (B, 512, 512, 3) uint8 faces already on the renderer's device (the GPU path);
        returns a function that waits for the frames, so the caller can queue the next batch first.

        Paste-back runs there (:func:`~talkinghead.face.paste.paste_back_tensor`: within 1 grey level of
        :func:`~talkinghead.face.paste.paste_back`), and so does the upscaler when it is on that device
        (:meth:`~talkinghead.enhance.upscale.Upscaler.upscale_tensor`); only the finished frames cross to the
        host, through pinned memory (:class:`~talkinghead.devices.HostCopy`, started here); the photo and the
        mask are uploaded once per source.  ``yuv420`` (for the video writer): the frames are converted there
        too (:func:`~talkinghead.media.yuv.rgb_to_yuv420`, within 1 level of swscale) and come back as B
        :class:`~talkinghead.media.yuv.Yuv420Frame`, half the bytes.  With a restorer the faces come to the
        host first (the restorers take uint8 arrays) and ``__call__`` finishes them now.
        """
        if self.restorer is not None:
            finished = self(source, to_host(faces))
            return lambda: finished
        upscale_here = self.upscaler is not None and _same_device(self.upscaler.device, faces.device)
        with torch.inference_mode():
            if self.paste_back:
                original, mask = self._device_copies(source, faces.device)
                faces = paste_back_tensor(original, faces, source.crop.M_c2o, mask)
            if upscale_here:
                faces = self.upscaler.upscale_tensor(faces)
            if yuv420 and (self.upscaler is None or upscale_here):
                size = (faces.shape[2], faces.shape[1])
                planes = [HostCopy(plane) for plane in rgb_to_yuv420(faces)]
                return lambda: yuv420_frames(*(plane.wait() for plane in planes), size)
            copy = HostCopy(faces)

        def frames() -> list[np.ndarray]:
            finished = list(copy.wait())
            return finished if self.upscaler is None or upscale_here else [self.upscaler.upscale(f) for f in finished]
        return frames

    def _device_copies(self, source: PreparedSource, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(photo, mask) on ``device``: the photo kept for the last source (one per job; a source video's
        frames each upload their own), the mask once per device."""
        if ("mask", device) not in self._on_device:
            self._on_device[("mask", device)] = torch.from_numpy(mask_template().copy()).to(device)
        kept = self._on_device.get("photo")
        if kept is None or kept[0] is not source or kept[1].device != device:
            self._on_device["photo"] = (source, torch.from_numpy(np.ascontiguousarray(source.image)).to(device))
        return self._on_device["photo"][1], self._on_device[("mask", device)]


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Whether two devices are one (``cuda`` and ``cuda:0`` are, on a one-GPU machine's default device)."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)
