"""Pose paths and timeline edits: keyframed controls interpolated into per-frame controls (issues 4, 13).

Keyframe file (JSON), version 1 (the pose job's format since issue 4)::

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

Pose job (a still photo along the path, :func:`sample_controls`): frames
are sampled at k / fps for k = 0 … ⌊t_end·fps⌋ (t_end: the last keyframe
or span end); before the first keyframe the first key's values hold.

Version 2 (``"version": 2`` at the top; needed for any of the keys below,
so a version-1 reader rejects such a file instead of misreading it) adds
timeline edits, for laying a file over another job's frames (video, audio,
dub, motion file; :mod:`talkinghead.motion.timeline`)::

    {
      "version": 2,
      "fade": 0.25,
      "keyframes": [{"t": 1.0}, {"t": 1.5, "smile": 0.8}, {"t": 2.5, "smile": 0.8, "neutralize": 0.5}, {"t": 3.0}],
      "spans": [
        {"from": 4.0, "to": 5.5, "neutralize": 1.0},
        {"from": 6.0, "to": 7.0, "yaw": 15, "fade": 0.3, "ease": "linear"}
      ]
    }

* ``neutralize`` (in a keyframe or a span) — how far the expression deltas
  are moved toward the source's neutral expression, 0 (unchanged) … 1 (the
  neutral itself); interpolated like a control; clamped to [0, 1] with a
  warning.  The neutral is the source's own ``exp`` (see
  :func:`~talkinghead.motion.timeline.neutralize_expression` for why not
  exp = 0).  A photo's pose path already shows the source's expression, so
  the pose job ignores it.
* ``fade`` (top level, seconds, 0 … 10, default :data:`DEFAULT_FADE`) —
  on another job, a first keyframe that is not neutral is eased in from
  "no edit" over the ``fade`` seconds before it (fewer if it is that close
  to t = 0), and a last keyframe that is not neutral is eased out over the
  ``fade`` seconds after it (ease-in-out), so the edit never jumps; the
  keyframe values themselves are met at their times.  With neutral first
  and last keyframes (as above) nothing changes outside
  [t_first, t_last].  0: no fade (the edit starts and stops with a step).
* ``spans`` — a list of constant edits over a stretch of time: ``from`` <
  ``to`` (seconds, ≥ 0, at most 3600), control values and/or
  ``neutralize``; optional ``fade`` (seconds, ≤ half the span; default
  :data:`DEFAULT_FADE`, shortened to half a shorter span) and ``ease``
  (``"linear"`` or ``"ease-in-out"``) of the ramps.  A span eases in
  from "no edit" at ``from`` to full strength at ``from + fade`` and back
  out between ``to − fade`` and ``to``, so nothing changes outside
  [from, to] (with fade 0: full strength on from ≤ t < to).

Overlapping edits stack: pose, expression and opening controls add,
``scale`` multiplies, neutralize strengths combine as 1 − Π(1 − s_i)
(:func:`stack_values`); sums past a control's range are clamped.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.interpolate import PchipInterpolator

from ..errors import ControlError
from .controls import CONTROL_SPECS, ControlClampWarning, Controls, apply_controls
from .frame import MotionSequence

EASES = ("linear", "ease-in-out", "cubic")
"""Interpolation modes of a keyframe segment."""

FADE_EASES = ("linear", "ease-in-out")
"""Ramps of a span's fade in and out."""

DEFAULT_EASE = "ease-in-out"
"""Ease of a keyframe that names none."""

DEFAULT_FPS = 25.0
"""Frame rate (Hz) of a keyframe file that names none."""

MAX_FPS = 120.0
"""Highest frame rate (Hz) a keyframe file may ask for."""

MAX_DURATION_S = 3600.0
"""Latest keyframe time (seconds) a keyframe file may have: an hour, so a typo cannot ask for billions of frames."""

FORMAT_VERSIONS = (1, 2)
"""Keyframe-file versions this reader understands (module docstring)."""

DEFAULT_FADE = 0.2
"""Seconds over which a timeline edit eases in from and out to "no edit" (version-2 ``fade``), 5 frames at 25 fps."""

MAX_FADE = 10.0
"""Longest top-level ``fade``, seconds."""

CHANNELS: tuple[str, ...] = (*CONTROL_SPECS, "neutralize")
"""Columns of the value arrays: every control (:data:`CONTROL_SPECS` order), then the neutralize strength."""

NEUTRAL = np.array([spec.neutral for spec in CONTROL_SPECS.values()] + [0.0])
"""(C + 1,) float64 values that edit nothing (``scale`` 1, everything else 0)."""

_SCALE, _NEUTRALIZE = CHANNELS.index("scale"), CHANNELS.index("neutralize")
_LOW = np.array([spec.low for spec in CONTROL_SPECS.values()] + [0.0])
_HIGH = np.array([spec.high for spec in CONTROL_SPECS.values()] + [1.0])


@dataclass(frozen=True)
class Span:
    """A constant edit over [start, end) with eased ramps (version-2 ``spans`` entry).

    Attributes:
        start: ``from``, seconds (≥ 0).
        end: ``to``, seconds (> start).
        controls: the edit's :class:`Controls` at full strength.
        neutralize: expression neutralize strength at full strength, [0, 1].
        fade: ramp length at each end, seconds, 0 ≤ fade ≤ (end − start) / 2.
        ease: ramp shape, one of :data:`FADE_EASES`.
    """

    start: float
    end: float
    controls: Controls = Controls()
    neutralize: float = 0.0
    fade: float = DEFAULT_FADE
    ease: str = DEFAULT_EASE

    def weights(self, at: np.ndarray) -> np.ndarray:
        """(N,) float64 strength in [0, 1] of the span at times ``at`` (seconds): exact 0 outside [start, end]."""
        at = np.asarray(at, dtype=np.float64)
        if self.fade == 0:
            return ((at >= self.start) & (at < self.end)).astype(np.float64)
        rise = np.clip((at - self.start) / self.fade, 0.0, 1.0)
        fall = np.clip((self.end - at) / self.fade, 0.0, 1.0)
        return _ease(self.ease, rise) * _ease(self.ease, fall)

    def values(self) -> np.ndarray:
        """(C + 1,) float64 full-strength values in :data:`CHANNELS` order."""
        return np.array([*self.controls.as_dict().values(), self.neutralize])


@dataclass(frozen=True)
class KeyframeTrack:
    """Parsed keyframes (and, in version 2, spans).

    Attributes:
        fps: frame rate of the sampled sequence (pose job), Hz.
        times: (K,) strictly increasing keyframe times, seconds; K may be 0
            in a version-2 file that has spans.
        controls: K :class:`Controls`, one per keyframe.
        eases: K interpolation modes (:data:`EASES`) of the segment ending at each key.
        neutralize: K neutralize strengths in [0, 1] (empty: all 0).
        spans: the version-2 :class:`Span` edits.
        fade: seconds over which non-neutral end keyframes ease in/out on another job.
        version: the file's format version (:data:`FORMAT_VERSIONS`).
    """

    fps: float
    times: tuple[float, ...]
    controls: tuple[Controls, ...]
    eases: tuple[str, ...]
    neutralize: tuple[float, ...] = ()
    spans: tuple[Span, ...] = ()
    fade: float = DEFAULT_FADE
    version: int = 1

    @property
    def end(self) -> float:
        """Latest time the file names (last keyframe or span end), seconds."""
        return max([*self.times[-1:], *(span.end for span in self.spans)], default=0.0)

    @property
    def n_frames(self) -> int:
        """Number of frames of the pose job, ⌊t_end·fps⌋ + 1."""
        return math.floor(self.end * self.fps + 1e-9) + 1

    def key_values(self) -> np.ndarray:
        """(K, C + 1) float64 keyframe values in :data:`CHANNELS` order."""
        strengths = self.neutralize or (0.0,) * len(self.times)
        return np.array([[*c.as_dict().values(), s] for c, s in zip(self.controls, strengths)]).reshape(-1, len(CHANNELS))


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ControlError(f"{what} must be a finite number, got {value!r}.")
    return float(value)


def _strength(values: dict, label: str) -> float:
    """Pop ``neutralize`` from ``values``: a number in [0, 1] (clamped, with a warning), 0 when absent."""
    strength = _number(values.pop("neutralize", 0.0), f"{label}: \"neutralize\"")
    if not 0.0 <= strength <= 1.0:
        warnings.warn(f"{label}: neutralize strength {strength:g} clamped to [0, 1]", ControlClampWarning, stacklevel=4)
    return min(max(strength, 0.0), 1.0)


def _keyframe(entry: object, index: int, where: str, version: int) -> tuple[float, Controls, str, float]:
    """(time, controls, ease, neutralize) of keyframe ``index`` of the file ``where``."""
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
    if "neutralize" in values and version < 2:
        raise ControlError(f"{label}: \"neutralize\" needs \"version\": 2 at the top of the file.")
    strength = _strength(values, label)
    return time, Controls.from_mapping(values, where=label), ease, strength


def _span(entry: object, index: int, where: str) -> Span:
    """Span ``index`` of the file ``where`` (schema in the module docstring)."""
    label = f"{where}: span {index}"
    if not isinstance(entry, dict) or "from" not in entry or "to" not in entry:
        raise ControlError(f"{label} must be an object like {{\"from\": 2.0, \"to\": 3.5, \"smile\": 0.8}}, "
                           f"got {entry!r}.")
    values = dict(entry)
    start, end = (_number(values.pop(key), f"{label} \"{key}\"") for key in ("from", "to"))
    if not 0 <= start < end <= MAX_DURATION_S:
        raise ControlError(f"{label}: need 0 ≤ \"from\" < \"to\" ≤ {MAX_DURATION_S:g} (seconds), "
                           f"got from {start:g} to {end:g}.")
    half = (end - start) / 2
    fade = _number(values.pop("fade"), f"{label} \"fade\"") if "fade" in values else min(DEFAULT_FADE, half)
    if not 0 <= fade <= half:
        raise ControlError(f"{label}: \"fade\" must be between 0 and half the span ({half:g} s), got {fade:g}.")
    ease = values.pop("ease", DEFAULT_EASE)
    if ease not in FADE_EASES:
        raise ControlError(f"{label}: unknown fade ease {ease!r}; use one of {', '.join(FADE_EASES)}.")
    strength = _strength(values, label)
    controls = Controls.from_mapping(values, where=label)
    if controls.is_neutral() and strength == 0:
        raise ControlError(f"{label} changes nothing: give control values (e.g. \"smile\": 0.8) or \"neutralize\".")
    return Span(start=start, end=end, controls=controls, neutralize=strength, fade=fade, ease=ease)


def _version(document: dict, where: str) -> int:
    """The file's format version, checked against the keys it uses."""
    version = document.get("version", 1)
    if version not in FORMAT_VERSIONS or isinstance(version, bool):
        raise ControlError(f"{where}: unknown keyframe-file version {version!r}; this talkinghead reads "
                           f"versions {', '.join(map(str, FORMAT_VERSIONS))}.")
    allowed = {"version", "fps", "keyframes"} | ({"fade", "spans"} if version >= 2 else set())
    unknown = set(document) - allowed
    if unknown & {"fade", "spans"}:
        raise ControlError(f"{where}: {', '.join(sorted(unknown & {'fade', 'spans'}))} need(s) \"version\": 2 "
                           f"at the top of the file.")
    if unknown:
        raise ControlError(f"{where}: unknown top-level key(s) {', '.join(sorted(unknown))}; expected "
                           + ", ".join(f'"{key}"' for key in sorted(allowed)) + ".")
    return int(version)


def _check_times(times: tuple[float, ...], where: str) -> None:
    for i in range(1, len(times)):
        if times[i] <= times[i - 1]:
            raise ControlError(f"{where}: keyframe times must increase, but keyframe {i} (t = {times[i]} s) "
                               f"does not come after keyframe {i - 1} (t = {times[i - 1]} s).")
    if times and times[-1] > MAX_DURATION_S:
        raise ControlError(f"{where}: the pose path is too long: its last keyframe is at t = {times[-1]:g} s; "
                           f"keep keyframe times within {MAX_DURATION_S:g} s (seconds, not frames or milliseconds).")


def _entries(document: dict, key: str, where: str) -> list:
    entries = document.get(key, [])
    if not isinstance(entries, list):
        raise ControlError(f"{where}: \"{key}\" must be a list.")
    return entries


def parse_keyframes(text: str, where: str = "keyframes") -> KeyframeTrack:
    """Parse a keyframe JSON document (schema, versions 1 and 2, in the module docstring).

    Args:
        text: the JSON text.
        where: name of the document for error messages (e.g. the file name).

    Returns:
        The :class:`KeyframeTrack`.

    Raises:
        ControlError: invalid JSON, a missing or empty ``keyframes`` list
            (version 2: no keyframes and no spans), a bad ``fps`` (not in
            (0, :data:`MAX_FPS`]), an unknown version, unknown keys or
            control names, version-2 keys in a version-1 file, non-numeric
            values, negative or non-increasing times, a last time past
            :data:`MAX_DURATION_S`, an unknown ease, or a bad span
            (``from``/``to``/``fade``, or one that changes nothing).
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ControlError(f"{where} is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}.") from None
    if not isinstance(document, dict):
        raise ControlError(f"{where} must be a JSON object with \"fps\" and \"keyframes\".")
    version = _version(document, where)
    fps = _number(document.get("fps", DEFAULT_FPS), f"{where}: fps")
    if not 0 < fps <= MAX_FPS:
        raise ControlError(f"{where}: fps must be positive and at most {MAX_FPS:g}, got {fps:g}.")
    fade = _number(document.get("fade", DEFAULT_FADE), f"{where}: fade")
    if not 0 <= fade <= MAX_FADE:
        raise ControlError(f"{where}: fade must be between 0 and {MAX_FADE:g} s, got {fade:g}.")
    entries, spans = _entries(document, "keyframes", where), _entries(document, "spans", where)
    if not entries and not spans:
        wanted = "\"keyframes\" list" if version < 2 else "\"keyframes\" or \"spans\" list"
        raise ControlError(f"{where} needs a non-empty {wanted}.")
    keys = [_keyframe(entry, i, where, version) for i, entry in enumerate(entries)]
    times, controls, eases, strengths = (tuple(column) for column in zip(*keys)) if keys else ((),) * 4
    spans = tuple(_span(entry, i, where) for i, entry in enumerate(spans))
    _check_times(times, where)
    return KeyframeTrack(fps=fps, times=times, controls=controls, eases=eases,
                         neutralize=strengths if any(strengths) else (), spans=spans, fade=fade, version=version)


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


def smoothstep(u: np.ndarray) -> np.ndarray:
    """Cubic smoothstep 3u² − 2u³ of fractions ``u`` in [0, 1] (zero slope at both ends; 0 → 0, 1 → 1 exactly)."""
    return u * u * (3.0 - 2.0 * u)


def _ease(ease: str, u: np.ndarray) -> np.ndarray:
    """Fade ramp of :data:`FADE_EASES` at fractions ``u`` in [0, 1]: 0 → 0, 1 → 1 exactly."""
    return smoothstep(u) if ease == "ease-in-out" else u


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
        [start + change * u, start + change * smoothstep(u)],
        PchipInterpolator(times, values, axis=0)(at),
    )


def stack_values(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two edits in :data:`CHANNELS` layout stacked: controls add, ``scale`` multiplies, neutralize 1 − (1−a)(1−b).

    Args:
        a, b: (..., C + 1) float64 value arrays (broadcast).

    Returns:
        (..., C + 1) float64, not clamped; ``stack_values(a, NEUTRAL)`` is ``a``
        value for value.
    """
    out = a + (b - NEUTRAL)
    out[..., _SCALE] = a[..., _SCALE] * b[..., _SCALE]
    out[..., _NEUTRALIZE] = 1.0 - (1.0 - a[..., _NEUTRALIZE]) * (1.0 - b[..., _NEUTRALIZE])
    return out


def span_values(spans: tuple[Span, ...], at: np.ndarray) -> np.ndarray:
    """(N, C + 1) float64 stacked values of ``spans`` at times ``at`` (seconds); :data:`NEUTRAL` outside them.

    Each span contributes NEUTRAL + (values − NEUTRAL)·w(t), w its :meth:`Span.weights`.
    """
    total = np.repeat(NEUTRAL[None], len(at), axis=0)
    for span in spans:
        total = stack_values(total, NEUTRAL + (span.values() - NEUTRAL) * span.weights(at)[:, None])
    return total


def controls_from_values(values: np.ndarray) -> list[Controls]:
    """One :class:`Controls` per row of (N, C + 1) values (the neutralize column is dropped), clipped to range.

    Sums of stacked edits past a control's range are clipped here quietly
    (the ranges are in :data:`CONTROL_SPECS`); rows equal to :data:`NEUTRAL`
    in every control give ``Controls()``.
    """
    clipped = np.clip(values, _LOW, _HIGH)[:, :len(CONTROL_SPECS)]
    return [Controls(**dict(zip(CONTROL_SPECS, map(float, row)))) for row in clipped]


def sample_controls(track: KeyframeTrack, max_frames: int | None = None) -> list[Controls]:
    """Per-frame controls of a pose path (pose job), frames at k / fps.

    The keyframes are interpolated (before the first keyframe its values
    hold), then the version-2 spans are stacked on them; ``neutralize`` is
    not a control and is dropped (a photo's path already has the source's
    expression).

    Args:
        track: parsed keyframes.
        max_frames: sample only the first ``max_frames`` frames (None: all).

    Returns:
        ``min(track.n_frames, max_frames)`` :class:`Controls`.
    """
    n = track.n_frames if max_frames is None else min(track.n_frames, max_frames)
    at = np.arange(n) / track.fps
    if track.times:
        frames = interpolate_values(np.array(track.times), track.key_values(), track.eases, at)
    else:
        frames = np.repeat(NEUTRAL[None], n, axis=0)
    if track.spans:
        frames = stack_values(frames, span_values(track.spans, at))
    return controls_from_values(frames)  # clipping is rounding only without spans: interpolation stays between keys


def keyframe_motion(source: MotionSequence, track: KeyframeTrack) -> MotionSequence:
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
