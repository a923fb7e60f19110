"""Still images in and out.

Every photo entering talkinghead goes through :func:`load_image`, which
returns RGB uint8 whatever the file held (grayscale, palette, RGBA, 16-bit,
CMYK) and with the EXIF orientation of phone photos applied.  Files are read
with Pillow.  :func:`limit_size` is LivePortrait's source-image size rule and
:func:`save_image` writes a PNG/JPEG/WebP/BMP atomically.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from talkinghead.errors import MediaError
from talkinghead.media._files import PathLike, atomic_output, require_file
from talkinghead.media.provenance import ProvenanceOptions

SAVE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
"""File suffixes :func:`save_image` can write."""

_LOSSY_QUALITY = 95
_UINT16_TO_UINT8 = 257.0  # 65535 / 255
_PIL_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})


def load_image(source: PathLike | np.ndarray) -> np.ndarray:
    """Load a photo as an RGB uint8 array.

    Files are decoded with Pillow (PNG, JPEG, WebP, BMP, TIFF, GIF — first
    frame — and anything else Pillow reads); the EXIF orientation tag is
    applied, so a portrait phone photo comes out upright.  A video of one
    frame (a still exported as a clip) gives that frame, read with PyAV.  Arrays are taken as
    RGB(A) or grayscale in that channel order (not OpenCV's BGR).

    Conversions: grayscale is replicated to three channels; 16-bit data
    (uint16, 0..65535) is scaled to 0..255; float data is read as 0..1;
    palette images are expanded; an alpha channel (RGBA, LA, palette or
    colour-key transparency) is composited over white.

    Args:
        source: path of an image file, or an array of shape (H, W),
            (H, W, 1), (H, W, 3) or (H, W, 4) with dtype uint8, uint16, bool
            or float.

    Returns:
        (H, W, 3) uint8 C-contiguous array, RGB, values 0..255, never sharing
        memory with ``source``.

    Raises:
        MediaError: missing or empty file, a file that is not an image (a
            video of more than one frame included), a damaged or truncated
            image, or an image too large to decode safely.
        ValueError: an array with an unsupported shape or dtype.
    """
    if isinstance(source, np.ndarray):
        return _to_rgb8(source)
    return _to_rgb8(_read_image_file(source))


def limit_size(img: np.ndarray, max_dim: int = 1280, division: int = 2) -> np.ndarray:
    """Apply LivePortrait's source-image size rule.

    If ``max(H, W) > max_dim`` the image is resized with bilinear
    interpolation (``cv2.INTER_LINEAR``) so that its long side is ``max_dim``
    and its short side ``int(short * max_dim / long)``; then the bottom rows
    and right columns are dropped so that H and W are multiples of
    ``division``.  Source: tests/data/specs/liveportrait-architecture.md §9, first
    bullet.

    Args:
        img: (H, W, C) or (H, W) image, any dtype cv2 can resize.
        max_dim: longest allowed side in pixels, > 0.
        division: H and W of the result are multiples of this, >= 1.

    Returns:
        The resized/cropped image (a view of ``img`` when only cropping).

    Raises:
        ValueError: ``max_dim`` or ``division`` is not positive.
        MediaError: the image is smaller than ``division`` pixels on a side.
    """
    if max_dim < 1 or division < 1:
        raise ValueError(f"max_dim ({max_dim}) and division ({division}) must be positive")
    h, w = img.shape[:2]
    if max(h, w) > max_dim:
        if h > w:
            h, w = max_dim, int(w * (max_dim / h))
        else:
            h, w = int(h * (max_dim / w)), max_dim
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    h, w = h - h % division, w - w % division
    if h == 0 or w == 0:
        raise MediaError(
            f"image of {img.shape[1]}x{img.shape[0]} pixels is too small; use a photo of at least 256x256"
        )
    return img[:h, :w]


def ditto_size(img: np.ndarray, max_dim: int = 1920, division: int = 2) -> np.ndarray:
    """Apply Ditto's source-image size rule (Ditto ``core/atomic_components/loader.py`` ``check_resize``).

    Differs from :func:`limit_size` (LivePortrait's) in three ways: the
    default limit is 1920 px; the short side is *rounded* (not truncated)
    when the long side is brought to ``max_dim``; and sides that are not
    multiples of ``division`` are fixed by *resizing* to the next lower
    multiple (``cv2.resize``, bilinear) instead of dropping rows/columns.
    ``max_dim`` ≤ 0 means no limit.

    Args:
        img: (H, W, C) or (H, W) image, any dtype cv2 can resize.
        max_dim: longest allowed side in pixels (≤ 0: unlimited).
        division: H and W of the result are multiples of this, ≥ 1.

    Returns:
        The resized image, or ``img`` itself when nothing changes.

    Raises:
        ValueError: ``division`` is not positive.
        MediaError: the image is smaller than ``division`` pixels on a side.
    """
    if division < 1:
        raise ValueError(f"division ({division}) must be positive")
    h, w = img.shape[:2]
    new_h, new_w = h, w
    if max_dim > 0 and max(h, w) > max_dim:
        if h > w:
            new_h, new_w = max_dim, int(round(w * max_dim / h))
        else:
            new_h, new_w = int(round(h * max_dim / w)), max_dim
    new_h, new_w = new_h - new_h % division, new_w - new_w % division
    if new_h == 0 or new_w == 0:
        raise MediaError(f"image of {w}x{h} pixels is too small; use a photo of at least 256x256")
    if (new_h, new_w) == (h, w):
        return img
    return cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


def save_image(path: PathLike, img: np.ndarray, provenance: ProvenanceOptions | None = None) -> None:
    """Write an RGB uint8 image atomically.

    The format follows the suffix (.png, .jpg/.jpeg at quality 95, .webp at
    quality 95, .bmp).  The image is written to a temporary file in the same
    folder and renamed over ``path`` only once complete.

    Args:
        path: output file; its folder must exist.
        img: (H, W, 3) uint8 RGB array.
        provenance: C2PA marking of the file (see
            :mod:`talkinghead.media.provenance`); ``None``: a plain file.

    Raises:
        ValueError: ``img`` is not (H, W, 3) uint8.
        MediaError: unsupported suffix, missing output folder, or ``path`` is
            a folder.
    """
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"save_image expects an (H, W, 3) uint8 RGB array, got {img.shape} {img.dtype}")
    with atomic_output(path, SAVE_SUFFIXES, "image", provenance) as tmp:
        image_format = Image.registered_extensions()[tmp.suffix.lower()]
        options = {"quality": _LOSSY_QUALITY} if image_format in ("JPEG", "WEBP") else {}
        Image.fromarray(img).save(tmp, format=image_format, **options)


def _read_image_file(path: PathLike) -> np.ndarray:
    """Decode an image file with its EXIF orientation applied (raw array, see :func:`_pil_to_array`)."""
    p = require_file(path, "image")
    try:
        with Image.open(p) as im:
            return _pil_to_array(ImageOps.exif_transpose(im))
    except Image.DecompressionBombError as exc:
        raise MediaError(f"image {p} is too large to decode safely; downscale it to under 80 megapixels") from exc
    except Image.UnidentifiedImageError as exc:
        frame = _single_video_frame(p)
        if frame is None:
            raise MediaError(f"{p} is not an image file; use a PNG, JPEG or WebP photo") from exc
        return frame
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"image {p} is damaged or truncated ({exc}); re-export it and try again") from exc


def _single_video_frame(path: Path) -> np.ndarray | None:
    """The frame of a one-frame video (a still exported as a clip), rotation applied; None if not a video.

    Raises:
        MediaError: ``path`` is a video of more than one frame (a photo was expected).
    """
    from talkinghead.media.video import VideoReader, probe_video

    try:
        info = probe_video(path)
    except MediaError:
        return None
    if info.n_frames > 1:
        raise MediaError(f"{path} is a video ({info.n_frames} frames), not an image; give a photo, or use the video "
                         "job, which re-animates a video given as --source")
    with VideoReader(path, max_frames=1) as reader:
        return next(iter(reader), None)


def _pil_to_array(im: Image.Image) -> np.ndarray:
    """Pixel data of a Pillow image: 16/32-bit and float modes raw, others as RGB or RGBA uint8."""
    if im.mode in _PIL_HIGH_DEPTH_MODES:
        arr = np.asarray(im)
        # Pillow's 32-bit integer mode "I" holds 16-bit samples for 16-bit PNG/TIFF.
        return np.clip(arr, 0, 65535).astype(np.uint16) if arr.dtype.kind == "i" else arr
    return np.asarray(im.convert("RGBA" if im.has_transparency_data else "RGB"))


def _to_rgb8(arr: np.ndarray) -> np.ndarray:
    """(H, W[, C]) array of any supported dtype -> (H, W, 3) uint8 RGB copy (alpha over white)."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or 0 in arr.shape:
        raise ValueError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) image, got shape {arr.shape}")
    rgb8 = _scale_to_uint8(arr)
    if rgb8.shape[2] == 4:
        rgb8 = _composite_over_white(rgb8)
    if rgb8.shape[2] == 1:
        rgb8 = np.repeat(rgb8, 3, axis=2)
    return np.array(rgb8, dtype=np.uint8, order="C", copy=True)


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Map uint8 (as is), uint16 (0..65535), bool and float (0..1) samples to uint8 0..255."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return np.round(arr / _UINT16_TO_UINT8).astype(np.uint8)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype.kind == "f":
        return np.round(np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ValueError(f"unsupported image dtype {arr.dtype}; use uint8, uint16, bool or float in [0, 1]")


def _composite_over_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 RGBA -> (H, W, 3) uint8, colour * alpha + 255 * (1 - alpha), rounded."""
    alpha = rgba[:, :, 3:].astype(np.float32) / 255.0
    rgb = rgba[:, :, :3].astype(np.float32)
    return np.round(rgb * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
