"""Paste-back: blend a generated face crop into the original image (spec §9).

LivePortrait's formula, on the whole original image::

    mask_ori = warpAffine(mask, M_c2o, (W, H), bilinear, border 0) / 255   (float32)
    warped   = warpAffine(face, M_c2o, (W, H), bilinear, border 0)
    result   = uint8(clip(mask_ori·warped + (1 − mask_ori)·original, 0, 255))   (truncation)

Outside the warped crop square ``mask_ori`` is 0 and the formula returns the
original pixel unchanged, so :func:`paste_back` only computes the square's
bounding box.  To stay bit-identical with the whole-image formula, the warp
keeps the image origin: OpenCV (≥ 4.11) computes each pixel's source
position in float32 from its absolute ``(x, y)``, and moving the origin to
the box corner would shift those positions by float rounding (±1 on a few
pixel values).  The warp is therefore run on ``[0, x_end) × [0, y_end)`` —
cut only on the right and bottom — and the blend on the box alone.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import torch

MASK_SIZE = 512
"""Side in pixels of LivePortrait's paste-back mask (the renderer's output size)."""
MASK_RAMP = 16
"""Width in pixels of the mask's linear fade to 0 at the crop border."""

# Columns kept right of the box when cutting the warp: OpenCV's SIMD warp hands the last
# (at most 2 × lanes ≤ 64) columns of each row to a scalar loop that rounds differently,
# so they must lie outside the face for the cut warp to equal the full one.
_WARP_TAIL = 64


@functools.lru_cache(maxsize=4)
def mask_template(size: int = MASK_SIZE) -> np.ndarray:
    """LivePortrait's paste-back mask: opaque centre, 16-px linear fade, rounded corners.

    ``value = floor(255 · clamp(16 − d, 0, 16) / 16)`` where ``d`` is the
    Euclidean distance from pixel ``(col, row)`` to the square
    ``[16, size − 16]²`` (spec §9; equals the PNG LivePortrait ships).

    Args:
        size: side in pixels (512 for LivePortrait's renderer).

    Returns:
        (size, size) uint8, read-only (cached): 255 inside, 0 on the outer
        rows/columns.
    """
    coords = np.arange(size, dtype=np.float64)
    outside = np.maximum(np.maximum(MASK_RAMP - coords, coords - (size - MASK_RAMP)), 0.0)
    distance = np.hypot(outside[:, None], outside[None, :])
    mask = np.floor(255 * np.clip(MASK_RAMP - distance, 0, MASK_RAMP) / MASK_RAMP).astype(np.uint8)
    mask.flags.writeable = False
    return mask


def paste_back(
    original: np.ndarray, face: np.ndarray, M_c2o: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """Blend a generated face crop into the original image (spec §9).

    Equal, value for value, to LivePortrait's whole-image formula (module
    docstring), but the work is limited to the bounding box of the warped
    crop square: pixels outside it are copied from ``original``.

    Args:
        original: (H, W, 3) uint8 RGB image the crop was cut from.
        face: (S, S, 3) uint8 RGB generated crop (S = 512 for the renderer).
        M_c2o: (3, 3) or (2, 3) crop → original transform (``FaceCrop.M_c2o``).
        mask: (S, S) or (S, S, 3) uint8 blend weights, 255 = take the face;
            default :func:`mask_template` of size S.

    Returns:
        (H, W, 3) uint8 RGB, a new array.

    Raises:
        ValueError: when ``mask`` and ``face`` differ in size.
    """
    if mask is None:
        mask = mask_template(face.shape[0])
    if mask.shape[:2] != face.shape[:2]:
        raise ValueError(f"mask {mask.shape[:2]} and face {face.shape[:2]} must have the same size")
    result = original.copy()
    box = _warped_box(M_c2o, face.shape[1], face.shape[0], original.shape[1], original.shape[0])
    if box is None:
        return result
    x0, y0, x1, y1 = box
    warp_size = (min(original.shape[1], x1 + _WARP_TAIL), y1)
    alpha = _warp(mask, M_c2o, warp_size)[y0:y1, x0:x1].astype(np.float32) / 255
    if alpha.ndim == 2:
        alpha = alpha[..., None]
    warped = _warp(face, M_c2o, warp_size)[y0:y1, x0:x1]
    region = original[y0:y1, x0:x1]
    result[y0:y1, x0:x1] = np.clip(alpha * warped + (1 - alpha) * region, 0, 255).astype(np.uint8)
    return result


def _warp(image: np.ndarray, M_c2o: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.warpAffine`` bilinear, constant-0 border, output ``size = (width, height)``."""
    return cv2.warpAffine(
        image, np.asarray(M_c2o)[:2], size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def _warped_box(
    M_c2o: np.ndarray, crop_width: int, crop_height: int, width: int, height: int
) -> tuple[int, int, int, int] | None:
    """Pixel box ``(x0, y0, x1, y1)`` (end-exclusive) of the warped crop, or None if off-image.

    A bilinear sample at crop position ``(u, v)`` touches a crop pixel only
    for ``-1 < u < crop_width`` and ``-1 < v < crop_height``; the image of that
    rectangle under ``M_c2o``, widened by one pixel against rounding, bounds
    every output pixel the warp can change.
    """
    corners = np.array(
        [[-1, -1], [crop_width, -1], [-1, crop_height], [crop_width, crop_height]], dtype=np.float64
    )
    M = np.asarray(M_c2o, dtype=np.float64)
    mapped = corners @ M[:2, :2].T + M[:2, 2]
    x0 = max(math.floor(mapped[:, 0].min()) - 1, 0)
    y0 = max(math.floor(mapped[:, 1].min()) - 1, 0)
    x1 = min(math.ceil(mapped[:, 0].max()) + 2, width)
    y1 = min(math.ceil(mapped[:, 1].max()) + 2, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def paste_back_tensor(original: torch.Tensor, faces: torch.Tensor, M_c2o: np.ndarray,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`paste_back` for a batch of faces, in PyTorch on the tensors' device (the GPU fast path).

    The same formula (module docstring) with ``cv2.warpAffine`` replaced by ``torch.nn.functional.grid_sample``
    (bilinear, zero padding, pixel centres at integer coordinates: ``align_corners=False`` with the
    ``(2u + 1) / S − 1`` normalisation); each warp is rounded to uint8 values as OpenCV's is, then the
    blend is truncated.  OpenCV quantises the sample positions to 1/32 pixel and this does not, so a few
    pixels differ by 1–2 grey levels from :func:`paste_back` (``tests/test_paste_tensor.py`` states the bound);
    outside the warped crop square the result equals ``original`` exactly.

    Args:
        original: (H, W, 3) uint8 RGB image the crop was cut from, on the device.
        faces: (B, S, S, 3) uint8 RGB generated crops on the same device (S = 512 for the renderer).
        M_c2o: (3, 3) or (2, 3) crop → original transform (``FaceCrop.M_c2o``, pixels).
        mask: (S, S) uint8 blend weights on the device, 255 = take the face; default :func:`mask_template`.

    Returns:
        (B, H, W, 3) uint8 RGB on the device, a new tensor.

    Raises:
        ValueError: ``original`` / ``faces`` of the wrong rank, dtype or device, or a mask of another size.
    """
    if original.dtype != torch.uint8 or faces.dtype != torch.uint8 or original.ndim != 3 or faces.ndim != 4:
        raise ValueError(f"expected an (H, W, 3) and a (B, S, S, 3) uint8 tensor, got {original.dtype} "
                         f"{tuple(original.shape)} and {faces.dtype} {tuple(faces.shape)}")
    if original.device != faces.device:
        raise ValueError(f"original is on {original.device} but faces on {faces.device}")
    size = faces.shape[1]
    if mask is None:
        mask = torch.from_numpy(mask_template(size).copy()).to(faces.device)
    if tuple(mask.shape) != (size, size):
        raise ValueError(f"mask {tuple(mask.shape)} and faces {size}x{size} must have the same size")
    H, W = original.shape[:2]
    result = original.expand(faces.shape[0], -1, -1, -1).clone()
    box = _warped_box(M_c2o, faces.shape[2], size, W, H)
    if box is None:
        return result
    x0, y0, x1, y1 = box
    grid = _sample_grid(M_c2o, box, faces.shape[2], size, faces.device)
    stacked = torch.cat([faces.permute(0, 3, 1, 2), mask.expand(faces.shape[0], 1, -1, -1)], dim=1).float()
    warped = torch.nn.functional.grid_sample(stacked, grid.expand(faces.shape[0], -1, -1, -1), mode="bilinear",
                                             padding_mode="zeros", align_corners=False)
    warped = warped.round_().clamp_(0, 255).permute(0, 2, 3, 1)          # (B, h, w, 4), uint8 values
    alpha = warped[..., 3:] / 255
    region = original[y0:y1, x0:x1].float()
    blended = alpha * warped[..., :3] + (1 - alpha) * region
    result[:, y0:y1, x0:x1] = blended.clamp_(0, 255).to(torch.uint8)
    return result


def _sample_grid(M_c2o: np.ndarray, box: tuple[int, int, int, int], crop_width: int, crop_height: int,
                 device: torch.device) -> torch.Tensor:
    """(1, h, w, 2) grid_sample coordinates in the crop of the output pixels of ``box`` (float32)."""
    x0, y0, x1, y1 = box
    M = np.asarray(M_c2o, dtype=np.float64)
    M = np.vstack([M[:2], [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(M)[:2]                                        # output pixel → crop pixel
    ys, xs = torch.meshgrid(torch.arange(y0, y1, dtype=torch.float64), torch.arange(x0, x1, dtype=torch.float64),
                            indexing="ij")
    A = torch.from_numpy(inverse)
    u = A[0, 0] * xs + A[0, 1] * ys + A[0, 2]
    v = A[1, 0] * xs + A[1, 1] * ys + A[1, 2]
    grid = torch.stack([(2 * u + 1) / crop_width - 1, (2 * v + 1) / crop_height - 1], dim=-1)
    return grid[None].to(device=device, dtype=torch.float32)
