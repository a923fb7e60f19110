"""Personal head-pose style: give generated head motion a reference clip's mean, spread and tempo.

Research lineage: Yi et al., 2020, "Audio-driven talking face video generation
with learning-based personalized head pose" (arXiv:2002.10137) fine-tune a
pose network on about 300 frames of a person to learn that person's head
motion.  We learn nothing: we *match statistics*.  The model's
speech-synchronised pose track stays the carrier (its timing, its phase,
where its nods and turns happen), and only its style is changed to the
reference clip's, axis by axis for pitch, yaw, roll (degrees) and
``t`` x, y, z (normalised keypoint units).  ``scale``, ``exp`` and ``kp``
are never touched.  This differs from :func:`talkinghead.motion.edits.reference_pose`,
which replays the clip's own track and so loses the speech synchrony.

Method, per axis, for a motion x of T frames at ``fps`` and a reference r
of R frames at ``reference_fps``:

1. **Spectra.**  One-sided power spectral density of each mean-removed track,
   a periodogram with a periodic Hann window (Harris 1978, Proc. IEEE 66(1);
   Welch 1967 for the density scaling): P(f_k) = c·|Σ_n w_n x_n e^{−2πikn/N}|²
   / (fs·Σ w_n²), f_k = k·fs/N, c = 2 except at 0 Hz and Nyquist.  The
   frequency axis is physical (Hz), so tracks of different lengths and rates
   compare directly (no resampling of the tracks themselves).
2. **Envelopes on a common axis.**  Both spectra are smoothed with a Gaussian
   in frequency, σ_f = max(``smoothing_hz``, fps/T, reference_fps/R) (never
   finer than either track's resolution, 1/duration), and evaluated on the
   motion's filter bins (k·fps/(2T), k = 0..T).
3. **Tempo filter (zero phase).**  Log-gain L(f) = ½·ln(P̃_r(f) / P̃_x(f)),
   centred by subtracting its mean weighted by the model's own power (so the
   bands where the model actually moves set the level, not empty bands with
   huge ratios), clipped to ±ln(``max_gain``) so bands where the model has
   almost no energy are not blown up into noise, then G = exp(L)^``tempo``
   (0 = no filter).  The mean-removed motion is extended by its mirror image
   (length 2T, no edge jump, as a DCT-II does) and multiplied by G in the
   Fourier domain.  G is real and non-negative, so every frequency keeps its
   phase: the output peaks where the model peaks and stays correlated with it
   (and with the speech), while its amplitude spectrum envelope, hence its
   tempo (spectral centroid, dominant frequency band), moves to the
   reference's.  Above the reference's Nyquist frequency (a reference at a
   lower rate) the reference has no motion, so the gain there is the lowest
   allowed.
4. **Mean and spread.**  y = (x_f − mean(x_f))·std(r)/std(x_f) + mean(r), with
   population standard deviations.  So mean and std of the output equal the
   reference's to rounding (float32 output: about 1e−5 relative).  With
   ``keep_mean=True`` the output keeps the model's own mean instead (the
   photo's pose stays the centre; the reference then only gives spread and
   tempo).

Edge cases: an axis on which the model is (almost) still — std below
:data:`MIN_SPREAD` — is not scaled (a static head cannot be given a spread
without inventing motion): its mean is moved only.  A reference axis with
(almost) no spread gives a constant track at the reference mean; no ratio is
ever divided by a near-zero spread.  The tempo filter needs at least
:data:`MIN_TEMPO_FRAMES` frames on both sides; shorter tracks (e.g. motions
of ≤ 3 frames) get mean and spread only (one frame: the reference mean).  All
arithmetic is float64 NumPy on the CPU, deterministic; the result is cast
back to the motion's dtype and device.

Measured (tests/test_pose_style.py, defaults tempo 1, smoothing 0.25 Hz,
max gain 4): on the real head-motion tracks of three talking clips (the
"model" motion) styled by four driving clips of other people — references
shorter and longer than the motion, at 25 and 30 fps — the output mean and
std equal the reference's within 1e−3 (units) and 0.1 %, the Pearson
correlation with the model's own track is ≥ 0.77 on every axis (≥ 0.91
averaged over the six), and the distance of the spectral centroid to the
reference's shrinks to ≤ 0.71 of what it was on every axis where they
differed by more than 0.1 Hz (to 0.35 on average); e.g. yaw of a news
reader, centroid 3.36 Hz, styled by a 1.99 Hz reference: 1.99 Hz.
Replaying the reference's own track instead correlates < 0.5 with the
model's motion.

The statistics of a reference clip (:class:`PoseStyle`) can be computed once,
saved (``.safetensors``, never pickle) and reused for any number of motions.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from ..errors import ControlError
from .frame import MotionSequence

AXES = ("pitch", "yaw", "roll", "t_x", "t_y", "t_z")
"""The six pose axes, in the order of every (…, 6) array here."""

MIN_SPREAD = np.array([1e-2, 1e-2, 1e-2, 1e-4, 1e-4, 1e-4])
"""Std below which an axis counts as still: 0.01° for angles, 1e-4 units for ``t``
(0.005 % of the keypoint volume's width)."""

MIN_TEMPO_FRAMES = 8
"""Fewest frames, in the motion and in the reference, for which the tempo filter runs."""

FORMAT = "talkinghead.pose_style"
"""Value of the ``format`` metadata key of a saved :class:`PoseStyle`."""

FORMAT_VERSION = 1
"""Newest :class:`PoseStyle` file version this code reads and writes."""


@dataclass(frozen=True)
class PoseStyle:
    """Head-pose statistics of one clip: per-axis mean, spread and power spectrum.

    Attributes:
        fps: frame rate of the clip in Hz (finite, > 0).
        n_frames: number of frames N ≥ 1 the statistics come from.
        mean: (6,) float64 mean per axis (:data:`AXES`; degrees, then units).
        std: (6,) float64 population standard deviation per axis.
        psd: (6, N // 2 + 1) float64 one-sided Hann-window periodogram of
            each mean-removed axis, deg²/Hz or units²/Hz, at
            :attr:`freqs` (step 1 for the method in the module docstring).

    Raises:
        ControlError: bad fps, shapes that do not fit ``n_frames``, or
            non-finite values.
    """

    fps: float
    n_frames: int
    mean: np.ndarray
    std: np.ndarray
    psd: np.ndarray

    def __post_init__(self) -> None:
        _check_fps(self.fps, "pose style")
        if self.n_frames < 1:
            raise ControlError(f"a pose style needs at least one frame, got {self.n_frames}.")
        shapes = {"mean": (6,), "std": (6,), "psd": (6, self.n_frames // 2 + 1)}
        for name, shape in shapes.items():
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.shape != shape:
                raise ControlError(f"pose style {name} must be an array of shape {shape}, "
                                   f"got {getattr(value, 'shape', type(value).__name__)}.")
            if not np.all(np.isfinite(value)):
                raise ControlError(f"pose style {name} has non-finite values.")

    @property
    def freqs(self) -> np.ndarray:
        """(N // 2 + 1,) float64 frequencies of :attr:`psd` in Hz, 0 to fps/2."""
        return np.arange(self.n_frames // 2 + 1) * (self.fps / self.n_frames)

    @property
    def duration_s(self) -> float:
        """Length of the clip in seconds (N / fps)."""
        return self.n_frames / self.fps

    @classmethod
    def from_motion(cls, motion: MotionSequence, fps: float) -> "PoseStyle":
        """Statistics of ``motion``'s pose track (pitch, yaw, roll, t; N ≥ 1 frames at ``fps`` Hz).

        Raises:
            ControlError: an empty motion, a bad fps or non-finite pose values.
        """
        _check_fps(fps, "reference")
        return _style(_pose_array(motion, "reference"), float(fps))

    def centroid_hz(self) -> np.ndarray:
        """(6,) float64 spectral centroid Σ f·P(f) / Σ P(f) per axis, Hz (0 for a still axis).

        A tempo measure: a head that moves faster has a higher centroid.
        """
        total = self.psd.sum(1)
        return np.where(total > 0, self.psd @ self.freqs / np.where(total > 0, total, 1.0), 0.0)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write to ``path`` (safetensors, float64; metadata format, version, fps, n_frames).

        Raises:
            ControlError: the file cannot be written.
        """
        metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "fps": repr(float(self.fps)),
                    "n_frames": str(int(self.n_frames))}
        try:
            arrays = {name: np.ascontiguousarray(getattr(self, name), np.float64) for name in ("mean", "std", "psd")}
            save_file(arrays, str(path), metadata=metadata)
        except (OSError, SafetensorError) as exc:
            raise ControlError(f"cannot write pose style {path} ({exc}); choose another location.") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "PoseStyle":
        """Read a file written by :meth:`save`.

        Raises:
            ControlError: missing or unreadable file, not a pose-style file,
                a newer version, or missing/mis-shaped/non-finite tensors.
        """
        if not Path(path).is_file():
            raise ControlError(f"pose style file {path} does not exist; check the path.")
        try:
            with safe_open(str(path), framework="numpy") as handle:
                metadata = handle.metadata() or {}
                if metadata.get("format") != FORMAT:
                    raise ControlError(f"{path} is not a talkinghead pose style file.")
                if metadata.get("format_version") != str(FORMAT_VERSION):
                    raise ControlError(f"{path} has pose style format version {metadata.get('format_version')!r};"
                                       f" this talkinghead reads version {FORMAT_VERSION} (upgrade talkinghead).")
                arrays = {key: handle.get_tensor(key).astype(np.float64) for key in ("mean", "std", "psd")}
            fps, n_frames = float(metadata["fps"]), int(metadata["n_frames"])
        except (OSError, SafetensorError, KeyError, ValueError) as exc:
            raise ControlError(f"{path} is not a readable pose style file ({exc}).") from None
        try:
            return cls(fps=fps, n_frames=n_frames, **arrays)
        except ControlError as exc:
            raise ControlError(f"{path}: {exc}") from None


def transfer_pose_style(motion: MotionSequence, reference: MotionSequence | PoseStyle, fps: float,
                        reference_fps: float | None = None, *, tempo: float = 1.0, smoothing_hz: float = 0.25,
                        max_gain: float = 4.0, keep_mean: bool = False) -> MotionSequence:
    """The model's head motion with the reference clip's pose style (method: module docstring).

    Args:
        motion: (T) motion sequence at ``fps`` Hz (e.g. the audio driver's);
            T = 0 is returned as is.  A :class:`~.frame.KeypointInfo` stays one.
        reference: (R ≥ 1) motion of the reference clip (only its pose is
            used), or its precomputed :class:`PoseStyle`.
        fps: frame rate of ``motion`` in Hz.
        reference_fps: frame rate of ``reference`` in Hz; required for a
            MotionSequence, ignored for a PoseStyle (it carries its own).
        tempo: strength of the spectral (tempo) match in [0, 1]; 0 matches
            mean and spread only, 1 the full envelope.
        smoothing_hz: Gaussian width of the spectral envelopes in Hz (> 0).
        max_gain: largest boost/cut of the tempo filter, ≥ 1 (4 = ±12 dB).
        keep_mean: keep the model's own mean pose instead of the reference's.

    Returns:
        Same type, length, dtype and device as ``motion``: pitch, yaw, roll
        and t replaced; scale, exp (and kp) identical objects.

    Raises:
        ControlError: a bad fps, option out of range, an empty reference, or
            non-finite pose values in either track.
    """
    style = _reference_style(reference, reference_fps)
    _check_fps(fps, "motion")
    _check_options(tempo, smoothing_hz, max_gain)
    if motion.n_frames == 0:
        return motion
    pose = _pose_array(motion, "motion")
    own = _style(pose, float(fps))
    sigma = max(smoothing_hz, fps / own.n_frames, style.fps / style.n_frames)
    out = np.empty_like(pose)
    for axis in range(6):
        track = pose[:, axis]
        runs = (tempo > 0 and min(own.n_frames, style.n_frames) >= MIN_TEMPO_FRAMES
                and min(own.std[axis], style.std[axis]) >= MIN_SPREAD[axis])
        if runs:
            gain = _tempo_gain(own, style, axis, sigma, max_gain) ** tempo
            track = _zero_phase_filter(track - own.mean[axis], gain) + own.mean[axis]
        target_mean = own.mean[axis] if keep_mean else style.mean[axis]
        out[:, axis] = _match_spread(track, target_mean, style.std[axis], MIN_SPREAD[axis])
    return _with_pose(motion, out)


# ----------------------------------------------------------------- helpers
def _check_fps(fps: float, what: str) -> None:
    try:
        good = math.isfinite(float(fps)) and float(fps) > 0
    except (TypeError, ValueError):
        good = False
    if not good:
        raise ControlError(f"{what} frame rate must be a positive number of frames per second, got {fps!r}.")


def _check_options(tempo: float, smoothing_hz: float, max_gain: float) -> None:
    if not (math.isfinite(tempo) and 0.0 <= tempo <= 1.0):
        raise ControlError(f"pose style tempo must be between 0 and 1, got {tempo!r}.")
    if not (math.isfinite(smoothing_hz) and smoothing_hz > 0):
        raise ControlError(f"pose style spectral smoothing must be a positive number of Hz, got {smoothing_hz!r}.")
    if not (math.isfinite(max_gain) and max_gain >= 1.0):
        raise ControlError(f"pose style max gain must be a number ≥ 1, got {max_gain!r}.")


def _reference_style(reference: MotionSequence | PoseStyle, reference_fps: float | None) -> PoseStyle:
    if isinstance(reference, PoseStyle):
        return reference
    if reference_fps is None:
        raise ControlError("the reference clip's frame rate is needed to match its tempo (reference_fps).")
    return PoseStyle.from_motion(reference, reference_fps)


def _pose_array(motion: MotionSequence, what: str) -> np.ndarray:
    """(N, 6) float64 pitch, yaw, roll, t_x, t_y, t_z on the CPU."""
    if what == "reference" and motion.n_frames == 0:
        raise ControlError("the pose style reference has no frames.")
    parts = [getattr(motion, name) for name in ("pitch", "yaw", "roll", "t")]
    pose = torch.cat([p.detach().to("cpu", torch.float64) for p in parts], 1).numpy()
    if not np.all(np.isfinite(pose)):
        raise ControlError(f"the {what}'s head pose has non-finite values (NaN or infinity).")
    return pose


def _periodogram(pose: np.ndarray, fps: float) -> np.ndarray:
    """(6, N // 2 + 1) one-sided density periodogram of (N, 6) mean-removed tracks, periodic Hann window."""
    n = pose.shape[0]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)
    energy = float(window @ window)
    if energy == 0.0:  # one frame: no spectrum
        return np.zeros((6, n // 2 + 1))
    spectrum = np.abs(np.fft.rfft((pose - pose.mean(0)) * window[:, None], axis=0)) ** 2 / (fps * energy)
    spectrum[1:(n + 1) // 2] *= 2.0  # one-sided: fold the negative frequencies (not 0 Hz, not Nyquist)
    return np.ascontiguousarray(spectrum.T)


def _style(pose: np.ndarray, fps: float) -> PoseStyle:
    return PoseStyle(fps=fps, n_frames=pose.shape[0], mean=pose.mean(0), std=pose.std(0),
                     psd=_periodogram(pose, fps))


def _envelope(style: PoseStyle, axis: int, at_hz: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smoothed psd of one axis at ``at_hz`` (0 beyond the clip's Nyquist frequency)."""
    freqs = style.freqs
    grid = np.arange(0.0, freqs[-1] + sigma / 4, sigma / 4)  # coarse grid: memory O(len(grid)·N), not O(N²)
    weights = np.exp(-0.5 * ((grid[:, None] - freqs[None, :]) / sigma) ** 2)
    smooth = weights @ style.psd[axis] / weights.sum(1)
    return np.where(at_hz <= freqs[-1] + 1e-9, np.interp(at_hz, grid, smooth), 0.0)


def _tempo_gain(own: PoseStyle, style: PoseStyle, axis: int, sigma: float, max_gain: float) -> np.ndarray:
    """(T + 1,) zero-phase gain at the bins k·fps/(2T) of the mirrored motion."""
    bins = np.arange(own.n_frames + 1) * (own.fps / (2 * own.n_frames))
    model = _envelope(own, axis, bins, sigma)
    wanted = _envelope(style, axis, bins, sigma)
    model = model + 1e-9 * model.max() + 1e-300
    wanted = wanted + 1e-9 * wanted.max() + 1e-300
    log_gain = 0.5 * np.log(wanted / model)
    power = np.interp(bins, own.freqs, own.psd[axis])  # the model's own power at the bins: centring weights
    log_gain -= float(power @ log_gain) / max(float(power.sum()), 1e-300)
    return np.exp(np.clip(log_gain, -math.log(max_gain), math.log(max_gain)))


def _zero_phase_filter(track: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Multiply the spectrum of the mirrored (2T) track by a real gain of T + 1 bins; first T samples back."""
    n = track.shape[0]
    mirrored = np.concatenate([track, track[::-1]])
    return np.fft.irfft(np.fft.rfft(mirrored) * gain, n=2 * n)[:n]


def _match_spread(track: np.ndarray, mean: float, std: float, floor: float) -> np.ndarray:
    own_mean, own_std = track.mean(), track.std()
    if std < floor:  # a still reference axis: its mean, held
        return np.full_like(track, mean)
    if own_std < floor:  # a still model axis: move it, do not invent motion
        return track - own_mean + mean
    return (track - own_mean) * (std / own_std) + mean


def _with_pose(motion: MotionSequence, pose: np.ndarray) -> MotionSequence:
    like = motion.pitch
    values = torch.from_numpy(pose).to(device=like.device, dtype=like.dtype)
    return motion.replace(pitch=values[:, 0:1].clone(), yaw=values[:, 1:2].clone(), roll=values[:, 2:3].clone(),
                          t=values[:, 3:6].clone())
