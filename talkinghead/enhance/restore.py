"""Face restoration of the rendered 512×512 crop: GFPGAN v1.4 or CodeFormer, through spandrel.

Each face is aligned to the FFHQ template (:mod:`.align`), restored, warped
back into the crop through a feathered mask and blended with the rendered
face by ``weight``.

Both networks were trained on faces normalised to [-1, 1] and produce
[-1, 1]; spandrel's own call API feeds [0, 1] straight in, so the networks
are called here directly: ``net((x − 0.5) / 0.5)`` and ``(y + 1) / 2``,
clamped to [0, 1].  Deterministic outputs:

* GFPGAN (``GFPGANv1Clean.forward``) with ``randomize_noise=False`` uses the
  StyleGAN2 decoder's stored noise buffers (``stylegan_decoder.noises.noise*``,
  saved in the checkpoint) instead of fresh Gaussian noise;
  ``return_rgb=False`` skips the intermediate RGB outputs.
* CodeFormer (``CodeFormer.forward(x, weight=w)``) is deterministic in eval
  mode (dropout 0, arg-max code lookup); ``w`` is its fidelity weight.

Licences: GFPGAN v1.4 weights Apache-2.0; CodeFormer weights NTU S-Lab
License 1.0 — NON-COMMERCIAL use only.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import torch

from ..errors import WeightsError
from ..weights import WeightSource, WeightStore, read_checkpoint, weights_source
from .align import alignment, from_template, to_template
from .files import ENHANCE_FILES
from .loading import load_descriptor

ARCHITECTURES = {"gfpgan": "GFPGAN", "codeformer": "CodeFormer"}
"""spandrel architecture id of each restorer."""

FACE_SIZE = 512
"""Side in pixels of the rendered face crops this stage restores."""

_Forward = Callable[[torch.nn.Module, torch.Tensor, float], torch.Tensor]
_FORWARDS: dict[str, _Forward] = {
    "gfpgan": lambda net, x, fidelity: net(x, return_rgb=False, randomize_noise=False)[0],
    "codeformer": lambda net, x, fidelity: net(x, weight=fidelity)[0],
}
"""Each network's call on (N, 3, 512, 512) in [-1, 1] → the same in [-1, 1] (module docstring)."""


class FaceRestorer:
    """A face restoration network and its alignment/blending around it.

    Args:
        net: GFPGANv1Clean or CodeFormer module (eval mode, on its device).
        kind: ``"gfpgan"`` or ``"codeformer"``.
    """

    def __init__(self, net: torch.nn.Module, kind: str) -> None:
        self.net = net
        self.kind = kind
        self._forward = _FORWARDS[kind]

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Any], kind: str,
                        device: str | torch.device = "cpu") -> FaceRestorer:
        """Build a restorer from its checkpoint's tensors.

        Args:
            state_dict: GFPGAN v1.4 / CodeFormer tensors, bare or in
                ``{"params_ema": …}`` as released.
            kind: ``"gfpgan"`` or ``"codeformer"``.
            device: where the network runs (fp32).

        Raises:
            WeightsError: unknown ``kind``; or the tensors are another
                architecture's, or one is missing, unexpected or mis-shaped.
        """
        _check_kind(kind)
        descriptor = load_descriptor(state_dict, ARCHITECTURES[kind], device, what=f"{kind} checkpoint")
        return cls(descriptor.model, kind)

    @classmethod
    def from_pretrained(cls, kind: str, source: WeightSource = None, *, revision: str | None = None,
                        device: str | torch.device = "cpu") -> FaceRestorer:
        """The restorer ``kind`` from its official checkpoint (:data:`.files.ENHANCE_FILES`).

        Files (path inside the repo): ``gfpgan``: ``GFPGANv1.4.pth`` of
        ``gmk123/GFPGAN``; ``codeformer``: ``CodeFormer/codeformer.pth`` of
        ``fudan-generative-ai/hallo2`` (NON-COMMERCIAL licence).  Wherever it
        comes from, the file is verified by its sha256 and read with
        ``torch.load(weights_only=True)``.

        Args:
            kind: ``"gfpgan"`` or ``"codeformer"``.
            source: None (the repo above: ``./checkpoints``, then the Hub
                cache, else a download); a local folder holding the file at
                that path; a Hub repo id ``"owner/name"`` (a mirror holding
                the same file at the same path); or a
                :class:`~talkinghead.weights.WeightStore` (its own revisions);
                see :func:`talkinghead.weights.weights_source`.
            revision: Hub branch, tag or commit sha (default: the
                ``TALKINGHEAD_ENHANCE_REVISION`` variable or ``main``); not
                with a folder or a store.
            device: where the network runs (fp32).

        Raises:
            WeightsError: unknown ``kind``; the file is missing (the message
                names it), fails the sha256 check or does not match the
                architecture; ``revision`` with a folder or a store.
        """
        _check_kind(kind)
        store, files = weights_source(source, ENHANCE_FILES, revision)
        return cls.from_state_dict(read_checkpoint(store.path(files[kind])), kind, device)

    @property
    def device(self) -> torch.device:
        """Where the network runs (faces are moved there and back)."""
        return next(self.net.parameters()).device

    def restore(self, faces: np.ndarray, points5: np.ndarray, weight: float, fidelity: float = 0.5) -> np.ndarray:
        """Restore rendered face crops.

        Args:
            faces: (N, 512, 512, 3) or (512, 512, 3) uint8 RGB rendered crops.
            points5: (5, 2) or (N, 5, 2) ``(x, y)`` crop pixels of the eye
                centres, nose tip and mouth corners (:func:`.align.five_points`
                of the crop's landmarks); one set serves every face.
            weight: 0 … 1 blend, ``weight·restored + (1 − weight)·face``;
                0 returns a copy of ``faces`` without running the network.
            fidelity: CodeFormer's ``w`` (0 = strongest restoration … 1 =
                closest to the input); ignored by GFPGAN.

        Returns:
            uint8 RGB array of ``faces``' shape.

        Raises:
            ValueError: for other shapes, or ``weight``/``fidelity`` outside [0, 1].
        """
        batch = _as_batch(faces)
        if not (0.0 <= weight <= 1.0 and 0.0 <= fidelity <= 1.0):
            raise ValueError(f"weight and fidelity must lie in [0, 1], got {weight} and {fidelity}")
        if weight == 0:
            return faces.copy()
        points = np.broadcast_to(np.asarray(points5, dtype=np.float64), (len(batch), 5, 2))
        transforms = [alignment(p) for p in points]
        aligned = np.stack([to_template(face, M) for face, M in zip(batch, transforms)])
        restored = self._run(aligned, fidelity)
        pasted = np.stack([from_template(r, face, M) for r, face, M in zip(restored, batch, transforms)])
        blended = weight * pasted.astype(np.float32) + (1 - weight) * batch.astype(np.float32)
        return np.clip(np.rint(blended), 0, 255).astype(np.uint8).reshape(faces.shape)

    def _run(self, aligned: np.ndarray, fidelity: float) -> np.ndarray:
        """(N, 512, 512, 3) uint8 aligned faces → restored, same shape and dtype."""
        with torch.inference_mode():
            x = torch.from_numpy(aligned).to(self.device).permute(0, 3, 1, 2).contiguous().float() / 255
            y = self._forward(self.net, (x - 0.5) / 0.5, fidelity)
            y = ((y + 1) / 2).clamp(0, 1)
            return (y * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def load_restorer(store: WeightStore, kind: str, device: str | torch.device = "cpu") -> FaceRestorer:
    """The restorer ``kind`` from ``store``: :meth:`FaceRestorer.from_pretrained` with a store.

    Raises:
        WeightsError: unknown ``kind``; the file cannot be had, fails
            verification or does not match the architecture.
    """
    return FaceRestorer.from_pretrained(kind, store, device=device)


def _check_kind(kind: str) -> None:
    if kind not in ARCHITECTURES:
        raise WeightsError(f"unknown face restorer {kind!r}: choose one of {', '.join(ARCHITECTURES)}")


def _as_batch(faces: np.ndarray) -> np.ndarray:
    """(N, 512, 512, 3) view of one face or a batch; ValueError for anything else."""
    if faces.dtype != np.uint8 or faces.shape[-3:] != (FACE_SIZE, FACE_SIZE, 3) or faces.ndim not in (3, 4):
        raise ValueError(f"expected (N, 512, 512, 3) or (512, 512, 3) uint8 faces, got {faces.shape} {faces.dtype}")
    return faces.reshape(-1, FACE_SIZE, FACE_SIZE, 3)
