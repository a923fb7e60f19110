"""Idle and listening motion: a portrait that stays alive between turns of speech (issue 14).

When nobody speaks, a live avatar must not freeze: people at rest blink every
few seconds, breathe, and move their head slightly; a listener also shows it
(brows up a little, the hint of a smile, the head tilted).  This module
generates that motion **procedurally**, as offsets on the source photo's own
motion frame:

* **head sway** — yaw, pitch and roll are each a sum of three slow sines
  (0.05–0.25 Hz, frequencies jittered and phases drawn from the seed) whose
  amplitudes add up to the stated bound (:data:`HEAD_SWAY_DEG`), so the
  pose never drifts: ``|Δyaw| ≤ 2°``, ``|Δpitch| ≤ 1.5°``, ``|Δroll| ≤ 1°``
  at ``head_motion = 1`` (plus the breathing nod and the listening tilt);
* **breathing** — one sine at about 15 breaths a minute (0.25 Hz, jittered
  ±10 %) lifting the head (``t_y``, 0.003 normalised units), widening it
  (scale ×(1 ± 0.002)) and nodding it (0.3° pitch);
* **blinks** — the ``blink`` expression control
  (:func:`~talkinghead.motion.controls.expression_direction`) along a 10-frame
  closure curve (closed within 120 ms, reopened over 240 ms), at intervals
  drawn from a gamma distribution (shape 4, mean ``blink_interval``, at least
  1 s; resting blink rates are 10–20 a minute);
* **listening** — ``listening`` × (brow +0.25, smile +0.2, roll +2°), held.

Why procedural rather than the audio model on silence or a reference clip:
the bound is guaranteed by construction whatever the weights (Ditto's
relative head motion on a long silence is anchored to its first window and
can wander; it was trained on talking, not listening), it costs nothing (no
network, so idle frames are cheap on a CPU), it needs no clip of the person,
and every frame is a pure function of its index and the seed — random access,
deterministic, identical for interleaved sessions.

The live session (:mod:`talkinghead.live_job`) crossfades between this and
the speech motion (:mod:`talkinghead.motion.speech_gate`).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..options import check_options, option
from .controls import expression_direction
from .frame import MotionSequence

HEAD_SWAY_DEG = {"yaw": 2.0, "pitch": 1.5, "roll": 1.0}
"""Largest head-sway offset per angle at ``head_motion = 1``, degrees."""

BREATH_HZ = 0.25
"""Breathing rate, Hz (15 breaths a minute, a resting adult's 12–20)."""

BREATH_AMPLITUDE = {"t_y": 0.003, "scale": 0.002, "pitch": 0.3}
"""Breathing offsets at ``breathing = 1``: t_y (normalised units), relative scale, pitch (degrees)."""

LISTENING = {"brow": 0.25, "smile": 0.2, "roll": 2.0}
"""The listening look at ``listening = 1``: brow and smile (slider units), head tilt (roll, degrees)."""

_SWAY_HZ = (0.05, 0.11, 0.23)
_SWAY_SHARE = (0.55, 0.3, 0.15)  # adds up to 1: the sum of sines stays within the bound
_CLOSURE = (0.0, 0.5, 0.9, 1.0, 0.9, 0.7, 0.5, 0.3, 0.15, 0.05)  # per 40 ms frame, 0 open … 1 closed
_MIN_BLINK_GAP_S = 1.0


@dataclass(frozen=True)
class IdleOptions:
    """Idle/listening motion of a live session and its crossfade with speech.

    Attributes:
        idle: generate idle motion between turns (off: the speech model's
            own motion throughout, exactly :meth:`Engine.stream_audio`'s).
        blink_interval: mean seconds between idle blinks.
        head_motion: gain on the head sway (1 = the :data:`HEAD_SWAY_DEG` bounds).
        breathing: gain on the breathing motion (:data:`BREATH_AMPLITUDE`).
        listening: strength of the listening look (0 = neutral rest).
        crossfade: seconds over which speech motion fades in (before the
            first voiced frame) and out (after the hold).
        hold: pauses shorter than this stay speech (no flicker between words), seconds.
        threshold: RMS of a 40 ms frame of audio (full scale 1) above which it is speech.
        idle_seed: seed of the sway phases and blink times.

    Raises:
        ControlError: a value outside its range.
    """

    idle: bool = option(True, what="idle motion", off_flag="--no-idle",
                        off_help="no idle motion: the speech model's own motion throughout",
                        help="idle and listening motion between turns")
    blink_interval: float = option(3.5, what="blink interval", range=(1.0, 20.0),
                                   help="mean seconds between idle blinks")
    head_motion: float = option(1.0, what="idle head motion", range=(0.0, 3.0),
                                help="gain on the idle head sway (1 = within 2 deg yaw, 1.5 pitch, 1 roll)")
    breathing: float = option(1.0, what="breathing", range=(0.0, 3.0), help="gain on the idle breathing motion")
    listening: float = option(0.0, what="listening look", range=(0.0, 1.0),
                              help="strength of the listening look between turns (brows, smile, head tilt)")
    crossfade: float = option(0.4, what="crossfade", range=(0.04, 2.0),
                              help="seconds over which speech and idle motion crossfade")
    hold: float = option(0.4, what="speech hold", range=(0.0, 5.0),
                         help="pauses shorter than this many seconds stay speech")
    threshold: float = option(0.01, what="speech threshold", range=(0.0, 1.0),
                              help="RMS of a 40 ms audio frame above which it counts as speech")
    idle_seed: int = option(0, what="idle seed", type=int, help="seed of the idle sway and blinks")

    def __post_init__(self) -> None:
        check_options(self)

    def pose_bound(self) -> dict[str, float]:
        """Largest idle offset from the source's pose by angle, degrees (sway + breathing nod + listening tilt)."""
        gain = self.head_motion
        return {"yaw": HEAD_SWAY_DEG["yaw"] * gain,
                "pitch": HEAD_SWAY_DEG["pitch"] * gain + BREATH_AMPLITUDE["pitch"] * self.breathing,
                "roll": HEAD_SWAY_DEG["roll"] * gain + LISTENING["roll"] * self.listening}


class IdleMotion:
    """Idle motion frames around one source frame; frame k is a pure function of k and the seed.

    Args:
        base: (1) the source's motion frame (degrees; its device and dtype are used).
        options: amplitudes, blink interval, listening strength, seed.
        fps: frame rate, Hz.
    """

    def __init__(self, base: MotionSequence, options: IdleOptions = IdleOptions(), fps: float = 25.0) -> None:
        self.base, self.options, self.fps = base[:1], options, fps
        rng = np.random.default_rng(options.idle_seed)
        self._sway = {name: (rng.uniform(0.85, 1.15, 3) * _SWAY_HZ, rng.uniform(0, 2 * math.pi, 3))
                      for name in HEAD_SWAY_DEG}
        self._breath = (BREATH_HZ * rng.uniform(0.9, 1.1), rng.uniform(0, 2 * math.pi))
        self._rng = np.random.default_rng([options.idle_seed, 1])
        self._blinks: list[int] = []  # start frames, extended on demand
        self._next_blink = self._gap()

    def _gap(self) -> int:
        seconds = max(_MIN_BLINK_GAP_S, self._rng.gamma(4.0, self.options.blink_interval / 4.0))
        return int(round(seconds * self.fps))

    def closure(self, first: int, n: int) -> np.ndarray:
        """(n,) eye closure 0 (open) … 1 (closed) of frames ``first``…, from the blink schedule."""
        while self._next_blink < first + n:
            self._blinks.append(self._next_blink)
            self._next_blink += len(_CLOSURE) + self._gap()
        frames = np.arange(first, first + n)
        out = np.zeros(n)
        for start in self._blinks[bisect.bisect_left(self._blinks, first - len(_CLOSURE) + 1):]:
            inside = (frames >= start) & (frames < start + len(_CLOSURE))
            out[inside] = np.asarray(_CLOSURE)[frames[inside] - start]
        return out

    def frames(self, first: int, n: int) -> MotionSequence:
        """(n) idle motion frames ``first``…``first + n − 1`` (absolute, degrees).

        Raises:
            ValueError: a negative ``first`` or ``n``.
        """
        if first < 0 or n < 0:
            raise ValueError(f"need first >= 0 and n >= 0, got {first}, {n}")
        opts, base = self.options, self.base
        t = np.arange(first, first + n) / self.fps
        breath = np.sin(2 * math.pi * self._breath[0] * t + self._breath[1]) * opts.breathing
        angles = {}
        for name, bound in HEAD_SWAY_DEG.items():
            freqs, phases = self._sway[name]
            sway = sum(share * np.sin(2 * math.pi * f * t + p) for share, f, p in zip(_SWAY_SHARE, freqs, phases))
            angles[name] = bound * opts.head_motion * sway
        angles["pitch"] = angles["pitch"] + BREATH_AMPLITUDE["pitch"] * breath
        angles["roll"] = angles["roll"] + LISTENING["roll"] * opts.listening

        def column(values: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(values, dtype=base.exp.dtype, device=base.exp.device)[:, None]

        like = base.exp
        listening = opts.listening * (LISTENING["brow"] * expression_direction("brow", like=like)
                                      + LISTENING["smile"] * expression_direction("smile", like=like))
        blink = column(self.closure(first, n))[:, :, None] * expression_direction("blink", like=like)
        t_offset = torch.zeros(n, 3, dtype=like.dtype, device=like.device)
        t_offset[:, 1] = column(-BREATH_AMPLITUDE["t_y"] * breath)[:, 0]  # breathing in lifts the head (−y)
        return MotionSequence(pitch=base.pitch + column(angles["pitch"]), yaw=base.yaw + column(angles["yaw"]),
                              roll=base.roll + column(angles["roll"]), t=base.t + t_offset,
                              scale=base.scale * (1 + column(BREATH_AMPLITUDE["scale"] * breath)),
                              exp=base.exp + listening + blink)


def blend_motion(idle: MotionSequence, speech: MotionSequence, weight: torch.Tensor) -> MotionSequence:
    """Per-frame crossfade ``idle + w·(speech − idle)`` on every field (w = 1: the speech motion bit for bit).

    Args:
        idle, speech: (T) motion frames on one device.
        weight: (T,) speech weights in [0, 1].
    """
    w = weight.to(speech.exp)

    def mix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        shape = (-1,) + (1,) * (b.dim() - 1)
        return torch.where(w.reshape(shape) >= 1, b, a + w.reshape(shape) * (b - a))

    return MotionSequence(**{name: mix(getattr(idle, name), getattr(speech, name))
                             for name in ("pitch", "yaw", "roll", "t", "scale", "exp")})
