"""Sync-C / Sync-D: lip-sync confidence and distance of a talking video with :class:`.syncnet.SyncNet`.

The scoring follows joonson/syncnet_python ``SyncNetInstance.evaluate`` (facts read there; our own code):
the video at 25 fps and its speech at 16 kHz (``run_pipeline.py`` converts to those rates); 13 MFCCs every
10 ms as ``python_speech_features.mfcc`` computes them with its defaults on 16-bit sample values; for each
video frame i a clip of frames i…i+4 (face crops, 224×224) and the MFCC window 4i…4i+19 (0.2 s) through
the two towers; for every shift of the audio embeddings by −15…+15 frames (zero embeddings outside the clip)
the Euclidean distance of each video embedding to its audio embedding (``calc_pdist``), averaged over the
frames; the offset is the shift of the smallest mean distance, **Sync-D** that smallest mean distance
(lower is better) and **Sync-C** the median over the 31 shifts minus it (higher is better).

The face crop is the reference's geometry (``run_pipeline.py`` ``crop_video``: a box of half-size
s = max(w, h)/2 around the face box centre, cropped from 1 s above to 1.8 s below the centre and 1.4 s
to each side, outside the frame filled with grey 110, median-smoothed over 13 frames, resized to 224×224),
with the face box taken from 68-point landmarks instead of the reference's S3FD face detector.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings

import numpy as np
import torch

from ..errors import MediaError
from ..face.landmarks import LandmarkProvider
from ..media.audio import load_audio
from ..media.video import VideoReader
from .syncnet import SyncNet

SYNC_SAMPLE_RATE = 16000
"""Hz of the speech the MFCCs are computed on (the reference's ``ffmpeg -ar 16000``)."""
SYNC_FPS = 25
"""Video frames per second SyncNet was trained on (the reference converts videos to 25 fps)."""
CLIP_FRAMES = 5
"""Video frames per lip clip (0.2 s)."""
MFCC_PER_FRAME = 4
"""MFCC frames per video frame: 100 per second ÷ 25 fps."""
MFCC_WINDOW = 20
"""MFCC frames per audio window (0.2 s)."""
VSHIFT = 15
"""Largest audio shift tried, in video frames (the reference's ``--vshift`` default)."""
SYNC_CROP_SIZE = 224
CROP_SCALE = 0.40
"""The reference's ``--crop_scale``: the crop reaches (1 + 2·0.4)·s below the face centre, (1 + 0.4)·s aside."""
CROP_FILL = 110
"""Grey level outside the frame (the reference's ``np.pad`` constant)."""
SMOOTH_FRAMES = 13
"""Median-filter length of the face boxes' centre and size over frames (the reference's ``medfilt``)."""
CONFIDENCE_SMOOTH = 9
"""Median-filter length of the per-frame confidence (the reference's printed ``fconfm``)."""
BROW_TO_TOP = 0.25
"""Our approximation, not the reference's: landmark boxes end at the brows, a face detector's box (S3FD in
the reference) includes the forehead, so the landmark box is raised by this fraction of its height."""


@dataclasses.dataclass(frozen=True)
class SyncResult:
    """One video's SyncNet scores.

    Attributes:
        offset: audio-video offset in video frames at 25 fps (the shift of the smallest mean distance;
            positive: the video frame i matches the audio of frame i − offset, i.e. the audio leads).
        sync_c: Sync-C, median minus minimum of ``distances`` (≥ 0; higher = surer sync).
        sync_d: Sync-D, the minimum of ``distances`` (≥ 0; lower = closer audio and lips).
        distances: (31,) float32 mean embedding distance for offset 15, 14, …, −15 (index j ↔ offset 15 − j).
        frame_confidence: (T,) float32 per-window confidence at the chosen offset (median distance minus
            that window's distance, median-filtered over 9 windows); window i covers frames i…i+4.
    """

    offset: int
    sync_c: float
    sync_d: float
    distances: np.ndarray
    frame_confidence: np.ndarray


def _mel_filterbank(n_filters: int, n_fft: int, sample_rate: int) -> np.ndarray:
    """(n_filters, n_fft/2 + 1) triangular mel filters on FFT bins floor((n_fft + 1)·f/rate), 0 Hz to
    Nyquist, mel = 2595·log10(1 + f/700) (python_speech_features ``get_filterbanks``'s definition)."""
    top = 2595 * np.log10(1 + (sample_rate / 2) / 700.0)
    hz = 700 * (10 ** (np.linspace(0, top, n_filters + 2) / 2595.0) - 1)
    bins = np.floor((n_fft + 1) * hz / sample_rate)
    bank = np.zeros((n_filters, n_fft // 2 + 1))
    for j in range(n_filters):
        low, mid, high = bins[j], bins[j + 1], bins[j + 2]
        rise, fall = np.arange(int(low), int(mid)), np.arange(int(mid), int(high))
        bank[j, rise] = (rise - low) / (mid - low)
        bank[j, fall] = (high - fall) / (high - mid)
    return bank


def speech_mfcc(samples: np.ndarray, sample_rate: int = SYNC_SAMPLE_RATE) -> np.ndarray:
    """MFCCs as ``python_speech_features.mfcc(samples, sample_rate)`` (v0.6 defaults) computes them.

    Pre-emphasis 0.97; 25 ms frames every 10 ms (the last zero-padded), no window; 512-point power spectrum
    |FFT|²/512; 26 mel filters; log (0 → machine epsilon); orthonormal DCT-II, 13 coefficients, sine
    lifter 22; coefficient 0 replaced by the log frame energy.  Our own code from those facts.

    Args:
        samples: (N,) mono samples on the 16-bit scale (−32768…32767, as ``scipy.io.wavfile`` reads the
            reference's 16-bit WAV; the log energy depends on that scale), N ≥ 1.
        sample_rate: Hz (16000 for SyncNet).

    Returns:
        (13, F) float64, F = 1 + ceil((N − 400)/160) frames at 16 kHz (≈ 100 per second).
    """
    x = np.asarray(samples, np.float64)
    x = np.append(x[0], x[1:] - 0.97 * x[:-1])
    length, step = int(math.floor(0.025 * sample_rate + 0.5)), int(math.floor(0.01 * sample_rate + 0.5))
    count = 1 if len(x) <= length else 1 + math.ceil((len(x) - length) / step)
    x = np.concatenate([x, np.zeros((count - 1) * step + length - len(x))])
    frames = np.lib.stride_tricks.sliding_window_view(x, length)[::step][:count]
    power = np.abs(np.fft.rfft(frames, 512)) ** 2 / 512
    eps = np.finfo(float).eps
    energy = power.sum(axis=1)
    bands = power @ _mel_filterbank(26, 512, sample_rate).T
    from scipy.fft import dct

    cepstra = dct(np.log(np.where(bands == 0, eps, bands)), type=2, axis=1, norm="ortho")[:, :13]
    cepstra *= 1 + 11.0 * np.sin(np.pi * np.arange(13) / 22)
    cepstra[:, 0] = np.log(np.where(energy == 0, eps, energy))
    return cepstra.T


def face_boxes(points: list[np.ndarray | None]) -> np.ndarray:
    """Per-frame crop boxes from 68-point landmarks: (T, 3) float64 ``[centre x, centre y, half-size s]``.

    The landmarks' bounding box, raised by :data:`BROW_TO_TOP` of its height; s = max(w, h)/2; frames
    without landmarks take the nearest frame's box; centre and s median-filtered over
    :data:`SMOOTH_FRAMES` frames (zero-padded ends, as ``scipy.signal.medfilt`` in the reference; fewer
    frames: the largest odd length that fits).

    Raises:
        MediaError: no frame has landmarks.
    """
    from scipy.signal import medfilt

    known = np.array([i for i, p in enumerate(points) if p is not None])
    if not len(known):
        raise MediaError("no face landmarks in any frame: Sync-C/Sync-D need the face")
    own = np.zeros((len(known), 3))
    for row, i in enumerate(known):
        p = np.asarray(points[i], np.float64)
        (x0, y0), (x1, y1) = p.min(axis=0), p.max(axis=0)
        y0 -= BROW_TO_TOP * (y1 - y0)
        own[row] = ((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) / 2)
    nearest = np.abs(np.arange(len(points))[:, None] - known[None, :]).argmin(axis=1)  # the earlier on ties
    boxes = own[nearest]
    kernel = min(SMOOTH_FRAMES, len(points) - (len(points) + 1) % 2)
    return np.stack([medfilt(boxes[:, k], kernel) for k in range(3)], axis=1)


def face_crop(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The lip tower's input of one frame: (224, 224, 3) uint8 **BGR** crop of (H, W, 3) uint8 RGB ``frame``.

    ``box`` = ``[cx, cy, s]`` (:func:`face_boxes`): rows floor(cy − s)…floor(cy + 1.8 s), columns
    floor(cx − 1.4 s)…floor(cx + 1.4 s), grey 110 outside the frame, bilinear resize (``cv2.resize``).
    """
    import cv2

    cx, cy, s = box
    y0, y1 = math.floor(cy - s), math.floor(cy + s * (1 + 2 * CROP_SCALE))
    x0, x1 = math.floor(cx - s * (1 + CROP_SCALE)), math.floor(cx + s * (1 + CROP_SCALE))
    out = np.full((max(y1 - y0, 1), max(x1 - x0, 1), 3), CROP_FILL, np.uint8)
    h, w = frame.shape[:2]
    ty0, ty1, tx0, tx1 = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
    if ty1 > ty0 and tx1 > tx0:
        out[ty0 - y0:ty1 - y0, tx0 - x0:tx1 - x0] = frame[ty0:ty1, tx0:tx1]
    bgr = np.ascontiguousarray(out[..., ::-1])
    return cv2.resize(bgr, (SYNC_CROP_SIZE, SYNC_CROP_SIZE), interpolation=cv2.INTER_LINEAR)


def sync_offsets(video: torch.Tensor, audio: torch.Tensor, vshift: int = VSHIFT) -> SyncResult:
    """Offset, Sync-C and Sync-D from per-window embeddings (reference: ``calc_pdist`` + ``evaluate``).

    Args:
        video: (T, D) float lip embeddings, window i = frames i…i+4.
        audio: (T, D) float audio embeddings of the same windows.
        vshift: largest shift tried, frames.

    Returns:
        :class:`SyncResult`; distances are ``torch.nn.functional.pairwise_distance`` (‖v − a + 1e-6‖₂) of
        window i's video embedding to the audio embedding of window i + j − vshift (a zero vector outside
        0…T−1), averaged over i.
    """
    width = 2 * vshift + 1
    padded = torch.nn.functional.pad(audio, (0, 0, vshift, vshift))
    index = torch.arange(len(video))[:, None] + torch.arange(width)[None, :]
    dists = torch.nn.functional.pairwise_distance(video[:, None, :].expand(-1, width, -1), padded[index])
    mean = dists.t().contiguous().mean(dim=1)  # the reference's (shifts, frames) layout: the same float32 sums
    low, best = torch.min(mean, dim=0)
    median = torch.median(mean)
    from scipy.signal import medfilt

    with warnings.catch_warnings():  # fewer than 9 windows: zero-padded like longer ends (scipy warns)
        warnings.simplefilter("ignore", UserWarning)
        confidence = medfilt((median - dists[:, best]).double().numpy(), CONFIDENCE_SMOOTH)
    return SyncResult(offset=vshift - int(best), sync_c=float(median - low), sync_d=float(low),
                      distances=mean.float().numpy(), frame_confidence=confidence.astype(np.float32))


@torch.no_grad()
def embed_windows(model: SyncNet, crops: list[np.ndarray], mfcc: np.ndarray, count: int,
                  batch: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """(count, 1024) video and audio embeddings of windows 0…count−1 (CPU float32).

    ``crops``: ≥ count + 4 (224, 224, 3) uint8 BGR face crops (:func:`face_crop`); ``mfcc``: (13, F)
    (:func:`speech_mfcc`), F ≥ 4·(count − 1) + 20.  Batches of ``batch`` windows on the model's device.
    """
    device = next(model.parameters()).device
    video, audio = [], []
    for start in range(0, count, batch):
        ids = range(start, min(count, start + batch))
        clips = np.stack([np.stack(crops[i:i + CLIP_FRAMES]) for i in ids])  # (B, 5, 224, 224, 3)
        clips_t = torch.from_numpy(clips).to(device).permute(0, 4, 1, 2, 3).float()
        windows = np.stack([mfcc[None, :, MFCC_PER_FRAME * i:MFCC_PER_FRAME * i + MFCC_WINDOW] for i in ids])
        video.append(model.forward_lips(clips_t).float().cpu())
        audio.append(model.forward_audio(torch.from_numpy(windows).float().to(device)).float().cpu())
    return torch.cat(video), torch.cat(audio)


def score_video(model: SyncNet, path: str | os.PathLike, landmarks: LandmarkProvider,
                max_frames: int | None = None) -> SyncResult:
    """Sync-C / Sync-D of a talking video with its own audio track.

    The video is read at 25 fps (``VideoReader(fps=25)``: frames repeated/dropped, never blended), at most
    ``max_frames`` of them; ``landmarks.landmarks(frame, decoded index)`` gives each frame's 68 points
    (None: no face); the audio track is decoded to 16 kHz mono (:func:`talkinghead.media.audio.load_audio`)
    and rounded to 16-bit values.  As in the reference, n = min(frames, samples // 640) and windows
    0…n−6 are scored (n − 5 windows).

    Raises:
        MediaError: unreadable video, no audio track, no face in any frame, or fewer than 6 frames.
    """
    points = []
    with VideoReader(path, fps=SYNC_FPS, max_frames=max_frames) as reader:
        for index, frame in reader.indexed():
            points.append(landmarks.landmarks(frame, index))
    samples = np.clip(np.round(load_audio(path, SYNC_SAMPLE_RATE).astype(np.float64) * 32768), -32768, 32767)
    usable = min(len(points), len(samples) // (SYNC_SAMPLE_RATE // SYNC_FPS))
    if usable - CLIP_FRAMES < 1:
        raise MediaError(f"{path}: Sync-C/Sync-D need at least {CLIP_FRAMES + 1} frames at {SYNC_FPS} fps with audio, "
                         f"found {usable}")
    boxes = face_boxes(points)
    with VideoReader(path, fps=SYNC_FPS, max_frames=usable) as reader:  # a second pass: only the crops are kept
        crops = [face_crop(frame, box) for frame, box in zip(reader, boxes)]
    video, audio = embed_windows(model, crops, speech_mfcc(samples, SYNC_SAMPLE_RATE), usable - CLIP_FRAMES)
    return sync_offsets(video, audio)
