"""Pose paths: keyframed controls interpolated into per-frame controls (issue 4).

Keyframe file (JSON)::

    {
      "fps": 25,
      "keyframes": [
        {"t": 0.0, "yaw": 0, "smile": 0},
        {"t": 1.5, "yaw": 20, "smile": 0.8, "ease": "ease-in-out"},
        {"t": 3.0, "yaw": -10, "aaa": 0.6, "ease": "cubic"}
      ]
    }

* ``fps`` — frame rate of the generated sequence, Hz, 0 < fps ≤ 120 (default 25).
* ``keyframes`` — a non-empty list; each has ``t`` (seconds, ≥ 0, strictly
  increasing, at most 3600) and control values by :class:`~.controls.Controls` name or
  alias (``aaa``, ``eee``, ``woo``).  A control missing from a keyframe has
  its neutral value there.  Out-of-range values are clamped (with a
  :class:`~.controls.ControlClampWarning`), like everywhere else.
* ``ease`` (optional, default ``"ease-in-out"``) — how the segment that
  *ends* at this keyframe is interpolated (ignored on the first keyframe):

  - ``"linear"`` — straight line;
  - ``"ease-in-out"`` — cubic smoothstep 3u² − 2u³ of the segment fraction
    u: starts and stops at rest;
  - ``"cubic"`` — monotone piecewise-cubic Hermite through all keyframes
    (Fritsch & Carlson 1980, SciPy's PCHIP): smooth velocity across keys.

  None of them overshoots: between two keyframes every control stays
  between its two key values.

Frames are sampled at k / fps for k = 0 … ⌊t_last·fps⌋; before the first
keyframe the first key's values hold.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.interpolate import PchipInterpolator

from ..errors import ControlError
from .controls import CONTROL_SPECS, Controls, apply_controls
from .frame import MotionFrame

EASES = ("linear", "ease-in-out", "cubic")
"""Interpolation modes of a keyframe segment."""

DEFAULT_EASE = "ease-in-out"
"""Ease of a keyframe that names none."""

DEFAULT_FPS = 25.0
"""Frame rate (Hz) of a keyframe file that names none."""

MAX_FPS = 120.0
"""Highest frame rate (Hz) a keyframe file may ask for."""

MAX_DURATION_S = 3600.0
"""Latest keyframe time (seconds) a keyframe file may have: an hour, so a typo cannot ask for billions of frames."""


@dataclass(frozen=True)
class KeyframeTrack:
    """Parsed keyframes.

    Attributes:
        fps: frame rate of the sampled sequence, Hz.
        times: (K,) strictly increasing keyframe times, seconds.
        controls: K :class:`Controls`, one per keyframe.
        eases: K interpolation modes (:data:`EASES`) of the segment ending at each key.
    """

    fps: float
    times: tuple[float, ...]
    controls: tuple[Controls, ...]
    eases: tuple[str, ...]

    @property
    def n_frames(self) -> int:
        """Number of sampled frames, ⌊t_last·fps⌋ + 1."""
        return math.floor(self.times[-1] * self.fps + 1e-9) + 1


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ControlError(f"{what} must be a finite number, got {value!r}.")
    return float(value)


def _keyframe(entry: object, index: int, where: str) -> tuple[float, Controls, str]:
    """(time, controls, ease) of keyframe ``index`` of the file ``where``."""
    label = f"{where}: keyframe {index}"
    if not isinstance(entry, dict):
        raise ControlError(f"{label} must be an object like {{\"t\": 1.0, \"yaw\": 10}}, got {entry!r}.")
    values = dict(entry)
    if "t" not in values:
        raise ControlError(f"{label} has no time \"t\" (seconds).")
    time = _number(values.pop("t"), f"{label} time \"t\"")
    if time < 0:
        raise ControlError(f"{label} time {time} s is negative; times start at 0.")
    ease = values.pop("ease", DEFAULT_EASE)
    if ease not in EASES:
        raise ControlError(f"{label}: unknown ease {ease!r}; use one of {', '.join(EASES)}.")
    return time, Controls.from_mapping(values, where=label), ease


def parse_keyframes(text: str, where: str = "keyframes") -> KeyframeTrack:
    """Parse a keyframe JSON document (schema in the module docstring).

    Args:
        text: the JSON text.
        where: name of the document for error messages (e.g. the file name).

    Returns:
        The :class:`KeyframeTrack`.

    Raises:
        ControlError: invalid JSON, a missing or empty ``keyframes`` list, a
            bad ``fps`` (not in (0, :data:`MAX_FPS`]), unknown keys or control
            names, non-numeric values, negative or non-increasing times, a
            last time past :data:`MAX_DURATION_S`, or an unknown ease.
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ControlError(f"{where} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}.") from None
    if not isinstance(document, dict):
        raise ControlError(f"{where} must be a JSON object with \"fps\" and \"keyframes\".")
    unknown = set(document) - {"fps", "keyframes"}
    if unknown:
        raise ControlError(f"{where}: unknown top-level key(s) {', '.join(sorted(unknown))}; expected \"fps\" and \"keyframes\".")
    fps = _number(document.get("fps", DEFAULT_FPS), f"{where}: fps")
    if not 0 < fps <= MAX_FPS:
        raise ControlError(f"{where}: fps must be positive and at most {MAX_FPS:g}, got {fps:g}.")
    entries = document.get("keyframes")
    if not isinstance(entries, list) or not entries:
        raise ControlError(f"{where} needs a non-empty \"keyframes\" list.")
    times, controls, eases = zip(*(_keyframe(entry, i, where) for i, entry in enumerate(entries)))
    for i in range(1, len(times)):
        if times[i] <= times[i - 1]:
            raise ControlError(f"{where}: keyframe times must increase, but keyframe {i} (t = {times[i]} s) "
                               f"does not come after keyframe {i - 1} (t = {times[i - 1]} s).")
    if times[-1] > MAX_DURATION_S:
        raise ControlError(f"{where}: the pose path is too long: its last keyframe is at t = {times[-1]:g} s; "
                           f"keep keyframe times within {MAX_DURATION_S:g} s (seconds, not frames or milliseconds).")
    return KeyframeTrack(fps=fps, times=times, controls=controls, eases=eases)


def read_keyframes(path: str | os.PathLike) -> KeyframeTrack:
    """Read and parse a keyframe JSON file (see :func:`parse_keyframes`).

    Raises:
        ControlError: the file cannot be read or is invalid.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ControlError(f"cannot read keyframe file {path}: {error}.") from None
    return parse_keyframes(text, where=str(path))


def _smoothstep(u: np.ndarray) -> np.ndarray:
    return u * u * (3.0 - 2.0 * u)


def interpolate_values(times: np.ndarray, values: np.ndarray, eases: tuple[str, ...],
                       at: np.ndarray) -> np.ndarray:
    """Piecewise interpolation of keyed values (no overshoot; see module docstring).

    Args:
        times: (K,) strictly increasing key times, seconds.
        values: (K, C) key values.
        eases: K modes; ``eases[i]`` shapes the segment from key i−1 to key i.
        at: (N,) sample times, seconds (clamped to [times[0], times[-1]]).

    Returns:
        (N, C) float64 values; exactly the key values at the key times for
        "linear" and "ease-in-out" segments.
    """
    values = np.asarray(values, dtype=np.float64)
    if len(times) == 1:
        return np.repeat(values, len(at), axis=0)
    at = np.clip(at, times[0], times[-1])
    segment = np.clip(np.searchsorted(times, at, side="right") - 1, 0, len(times) - 2)
    u = ((at - times[segment]) / (times[segment + 1] - times[segment]))[:, None]
    start, change = values[segment], values[segment + 1] - values[segment]
    ease = np.asarray(eases)[segment + 1][:, None]
    return np.select(
        [ease == "linear", ease == "ease-in-out"],
        [start + change * u, start + change * _smoothstep(u)],
        PchipInterpolator(times, values, axis=0)(at),
    )


def sample_controls(track: KeyframeTrack, max_frames: int | None = None) -> list[Controls]:
    """Per-frame controls of a keyframe track, frames at k / fps.

    Args:
        track: parsed keyframes.
        max_frames: sample only the first ``max_frames`` frames (None: all).

    Returns:
        ``min(track.n_frames, max_frames)`` :class:`Controls`.
    """
    names = list(CONTROL_SPECS)
    keyed = np.array([[getattr(c, n) for n in names] for c in track.controls])
    n = track.n_frames if max_frames is None else min(track.n_frames, max_frames)
    frames = interpolate_values(np.array(track.times), keyed, track.eases, np.arange(n) / track.fps)
    low, high = zip(*((spec.low, spec.high) for spec in CONTROL_SPECS.values()))
    frames = np.clip(frames, low, high)  # rounding only: interpolation stays between key values
    return [Controls(**dict(zip(names, map(float, row)))) for row in frames]


def keyframe_motion(source: MotionFrame, track: KeyframeTrack) -> MotionFrame:
    """Motion sequence of a photo animated along a pose path.

    Args:
        source: (1) motion of the source photo (``PreparedSource.info``).
        track: parsed keyframes.

    Returns:
        (N = ``track.n_frames``) motion frames at ``track.fps``; the
        ``eyes_open``/``lips_open`` part is realised separately with
        :func:`~.controls.retargeting_offsets` on ``sample_controls(track)``.
    """
    return apply_controls(source, sample_controls(track))
