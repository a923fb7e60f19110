"""Live sessions: speech pushed in as it is spoken, frames out as soon as they are ready (issue 14).

:meth:`talkinghead.engine.Engine.live` opens a :class:`LiveSession` for one
prepared photo.  Per push of audio (16 kHz mono float32, any size)::

    samples ─ backend.open_stream (Ditto's online windows, push form) ─ edits (expression scale, still
            head, pose_from) ─ streaming smoothing ─┐
    samples ─ SpeechGate (voiced frames → speech weight w) ──────────┴─ w·speech + (1 − w)·IdleMotion
            ─ timeline/controls ─ render (W, G, finish) → LiveFrame(s), each with its timestamps

The speech motion is exactly :meth:`Engine.stream_audio`'s whatever the
chunk sizes (the same windows run on the same samples); with
``IdleOptions(idle=False)`` so is the output.  Between turns the idle motion
of :mod:`talkinghead.motion.idle` takes over, crossfaded
(:mod:`talkinghead.motion.speech_gate`).  All state is the session's own
(the sampler's seeded generator included), so sessions can be interleaved
in one process and give what each gives alone.

Latency accounting (per :class:`LiveFrame`): ``time_s`` (its place on the
audio timeline), ``audio_s`` (how much audio had arrived when it became
ready, i.e. the audio it depends on), ``ready_s`` (wall clock since the
session opened), ``shown_s`` (set by a player, :func:`play_out`).  The
algorithmic look-ahead of the online windows is :attr:`LiveSession.lookahead_ms`
(485–845 ms with Ditto's shipped online settings: :func:`~talkinghead.drivers.audio.ditto.stream.online_lookahead_ms`).
Silence costs the same model time as speech (the stream keeps running, so
its windows stay in step); frames come out whenever audio (speech or
silence, :meth:`LiveSession.push_silence`) is pushed.  When no audio arrives
at all (a microphone switched off, a voice agent between replies),
:meth:`LiveSession.keep_alive`, called on a timer, pushes the silence that
keeps the audio timeline up with the wall clock, so the idle motion goes on
in real time.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

import numpy as np
import torch

from .audio_job import HeadReference, edit_motion
from .drivers.audio.ditto.stream import online_lookahead_ms
from .errors import ControlError, MediaError
from .jobs import AudioJobOptions, RenderOptions
from .motion.frame import MotionSequence
from .motion.idle import IdleMotion, IdleOptions, blend_motion
from .motion.smoothing import MotionSmoother, SmoothingOptions
from .motion.speech_gate import SpeechGate
from .motion.timeline import lay_timeline
from .options import check_options, option
from .render.source import PreparedSource

if TYPE_CHECKING:
    from .engine import Engine


@dataclass(frozen=True)
class LiveOptions:
    """Options of a live session besides the audio job's and the rendering's.

    Attributes:
        idle: idle/listening motion and its crossfade with speech (:class:`~talkinghead.motion.idle.IdleOptions`).
        window_overlap: frames each online window of L = 80 shares with the last (None: the online
            configuration's, 70 in Ditto's shipped ``v0.4_hubert_cfg_pytorch_trt_online.pkl``: 10 new
            frames a window, 485–845 ms look-ahead).  75 (5 new frames, one encoder chunk): 285–445 ms,
            with the audio model run twice as often; up to 79 (1 frame a window).  40..79 (the first
            frame emitted must be frame 0).  Not Ditto's shipped setting, so the motion differs slightly
            from the offline and streaming jobs' (:attr:`LiveSession.lookahead_ms` gives the numbers).

    Raises:
        ControlError: ``window_overlap`` outside 40..79.
    """

    idle: IdleOptions = field(default_factory=IdleOptions)
    window_overlap: int | None = option(None, what="window overlap", range=(40, 79), type=int,
                                        help="frames each online window of 80 shares with the last: lower "
                                             "look-ahead the higher it is (default: the online configuration's, "
                                             "70 = 485-845 ms; 75 = 285-445 ms, the audio model run twice as often)")

    def __post_init__(self) -> None:
        check_options(self)


@dataclass
class LiveFrame:
    """One output frame of a live session.

    Attributes:
        index: frame number from 0 (25 fps with Ditto).
        time_s: its time on the audio timeline, index / fps, seconds.
        motion: (1) absolute motion of the frame (degrees), after edits, crossfade and timeline.
        image: (H, W, 3) uint8 RGB, or None in a motion-only session.
        speech: the crossfade weight, 1 = speech motion, 0 = idle.
        audio_s: seconds of audio pushed when it became ready (the audio it waited for).
        ready_s: wall-clock seconds from the session's start until it was ready.
        shown_s: when it was shown (seconds from the session's start), set by a player; None before.
    """

    index: int
    time_s: float
    motion: MotionSequence
    image: np.ndarray | None
    speech: float
    audio_s: float
    ready_s: float
    shown_s: float | None = None


class LiveSession:
    """A live avatar for one photo: :meth:`push` speech as it arrives, :meth:`end` to flush.

    Built by :meth:`Engine.live`.  ``push`` returns the frames that became
    ready (often none: Ditto's online windows emit 10 frames per 0.4 s of
    audio, the first after 0.885 s); frames are consecutive from 0, one per
    640 samples, ⌈duration·25⌉ in all.  Between turns with no audio at all,
    call :meth:`keep_alive` on a timer.  Pushes, ``keep_alive`` and ``end``
    may come from different threads (one at a time: a lock).

    Args:
        engine: the engine (its audio backend and renderer are used).
        source: the prepared photo (with the audio job's settings: :meth:`Engine.audio_source_settings`).
        options: idle motion and crossfade.
        audio: the audio job's options (backend, steps, seed, emotion, edits);
            a pose style is refused (it needs the whole clip).
        render: True: render with ``RenderOptions()``; a :class:`RenderOptions`;
            False: motion only (frames carry no image).  ``max_frames``: at most
            that many frames come out; smoothing runs in streaming form.
        reference: the ``pose_from`` clip's motion (:func:`talkinghead.audio_job.head_reference`), or None.
        clock: seconds, monotonic (default ``time.perf_counter``).

    Raises:
        ControlError: a backend without a push stream, a pose style, bad settings.
        WeightsError: the backend's files cannot be used.
    """

    def __init__(self, engine: "Engine", source: PreparedSource, options: LiveOptions = LiveOptions(),
                 audio: AudioJobOptions = AudioJobOptions(), render: RenderOptions | bool = True,
                 reference: HeadReference = None, clock=time.perf_counter) -> None:
        backend = engine.audio_backend(audio.backend)
        if not hasattr(backend, "open_stream"):
            raise ControlError(f"the {audio.backend!r} audio backend has no push stream: a live session needs one "
                               "(Ditto has)")
        if audio.pose_style is not None:
            raise ControlError("a pose style (--pose-style) needs the whole clip: a live session cannot use it")
        self.engine, self.source, self.options, self.audio = engine, source, options, audio
        self.render = render if isinstance(render, RenderOptions) else RenderOptions() if render else None
        self.fps, self.sample_rate = backend.fps, backend.sample_rate
        self._stream = backend.open_stream(source, audio, overlap=options.window_overlap)
        self._stitching = backend.stitching(audio, online=True)
        self._reference = reference
        self._smoother = MotionSmoother((self.render or RenderOptions()).smoothing)
        self._idle = IdleMotion(source.info.motion, options.idle, self.fps) if options.idle.idle else None
        self._gate = SpeechGate(options.idle, self.fps, self.sample_rate)
        self._pending: MotionSequence | None = None
        self._generated = self._emitted = 0
        self._max = self.render.max_frames if self.render is not None else None
        self._clock, self.busy_s, self.ended = clock, 0.0, False
        self._resampler: _Resampler | None = None
        self._lock = threading.Lock()
        self.start = clock()
        self._pushed_at = self.start
        self.skipped_s = 0.0
        """Wall-clock seconds :meth:`keep_alive` skipped instead of filling with silence (the audio timeline
        runs that much behind the clock since the session opened)."""

    @property
    def samples(self) -> int:
        """Audio samples pushed so far."""
        return self._stream.samples

    @property
    def lookahead_ms(self) -> tuple[float, float]:
        """(least, most) algorithmic look-ahead of a frame, ms: the online windows' and the crossfade's, the larger."""
        extra = self._gate.fade if self._idle is not None else 0
        return online_lookahead_ms(self._stream.config, self._stream.seq_len, extra_frames=extra)

    def push(self, samples: np.ndarray) -> list[LiveFrame]:
        """Add (k,) float32 mono samples at the backend's rate (16 kHz), k ≥ 0; returns the frames now ready.

        Raises:
            MediaError: a chunk that is not 1-D or not finite; a push after :meth:`end`.
        """
        with self._lock:
            self._pushed_at = self._clock()
            return self._push(self._checked(samples))

    def _push(self, samples: np.ndarray) -> list[LiveFrame]:
        """Push checked samples (the lock held)."""
        began = self._clock()
        if self._idle is not None:
            self._gate.push(samples)
        self._add(self._stream.push(samples), final=False)
        return self._emit(began)

    @property
    def quiet_s(self) -> float:
        """Seconds since audio was last pushed (:meth:`push`, :meth:`push_audio`, :meth:`push_silence`; not
        :meth:`keep_alive`'s silence), or since the session opened."""
        return self._clock() - self._pushed_at

    def keep_alive(self, after_s: float = 0.6, most_s: float = 1.0) -> list[LiveFrame]:
        """Between turns with no audio coming in: keep the idle motion going in real time.

        Once nothing was pushed for ``after_s`` seconds, pushes the silence
        that brings the audio timeline (samples pushed / rate) up to the wall
        clock since the session opened, at most ``most_s`` seconds of it per
        call (a longer gap, e.g. a stalled caller, is skipped, not made up:
        the timeline then runs that much behind the clock).  Call it on a
        timer, e.g. every 0.2 s; frames then come out at 25 per second, the
        ones held back by the look-ahead first.  Audio pushed later goes on
        from where the timeline stands.

        Returns:
            The frames now ready; [] while audio still arrives, while another
            thread is pushing (it does not wait), and after :meth:`end`.
        """
        if self.ended or not self._lock.acquire(blocking=False):
            return []
        try:
            now = self._clock()
            if self.ended or now - self._pushed_at < after_s:
                return []
            behind = now - self.start - self.skipped_s - self.samples / self.sample_rate
            if behind > most_s:
                self.skipped_s += behind - most_s
                behind = most_s
            n = int(behind * self.sample_rate)
            return self._push(np.zeros(n, np.float32)) if n > 0 else []
        finally:
            self._lock.release()

    def push_audio(self, samples: np.ndarray, rate: int) -> list[LiveFrame]:
        """:meth:`push` for a microphone's chunk: (k,) or (k, channels), int16 or float, at ``rate`` Hz.

        Channels are averaged, int16 scaled to [-1, 1), and the rate converted
        to the session's by linear interpolation on one continuous sample clock
        (chunk edges leave no seam).  Raises MediaError as :meth:`push`, or for a rate ≤ 0.
        """
        data = np.asarray(samples)
        if rate <= 0:
            raise MediaError(f"the microphone's sample rate must be positive, got {rate}")
        scale = 1 / 32768 if np.issubdtype(data.dtype, np.integer) else 1.0
        data = (data.mean(axis=1) if data.ndim == 2 else data).astype(np.float64) * scale
        if self._resampler is None:
            self._resampler = _Resampler(rate, self.sample_rate)
        return self.push(self._resampler(data).astype(np.float32))

    def push_silence(self, seconds: float) -> list[LiveFrame]:
        """Push ``seconds`` of silence (no one speaks; the idle motion goes on)."""
        return self.push(np.zeros(int(round(seconds * self.sample_rate)), np.float32))

    def end(self) -> list[LiveFrame]:
        """Flush: the last frames (the stream then holds ⌈duration·25⌉ frames in all).

        Raises:
            MediaError: nothing was pushed, or the session has ended already.
        """
        with self._lock:
            if self.ended:
                raise MediaError("this live session has ended: open a new one")
            began = self._clock()
            if self._idle is not None:
                self._gate.end()
            self._add(self._stream.end(), final=True)
            self.ended = True
            return self._emit(began)

    def _checked(self, samples: np.ndarray) -> np.ndarray:
        if self.ended:
            raise MediaError("this live session has ended: open a new one")
        samples = np.asarray(samples)
        if samples.ndim != 1 or not np.issubdtype(samples.dtype, np.number):
            raise MediaError(f"push 1-D mono float32 samples at {self.sample_rate} Hz, got shape {samples.shape}")
        samples = samples.astype(np.float32, copy=False)
        if not np.isfinite(samples).all():
            raise MediaError("the pushed audio holds NaN or infinite samples")
        return samples

    def _add(self, chunks: Iterable[MotionSequence], final: bool) -> None:
        """Edit and smooth the backend's new chunks; keep them until their speech weights are final."""
        ready = []
        for chunk in chunks:
            ready.append(edit_motion(self.source, chunk, self.audio, self._reference, self._generated, self.fps))
            self._generated += chunk.n_frames
        smoothed = [m for m in (self._smoother.push(m) for m in ready) if m is not None]
        if final:
            smoothed += [m for m in [self._smoother.flush()] if m is not None]
        if smoothed:
            self._pending = MotionSequence.cat(([self._pending] if self._pending is not None else []) + smoothed)

    def _emit(self, began: float) -> list[LiveFrame]:
        """The pending frames whose crossfade weight is final, mixed with idle, laid on the timeline and rendered."""
        n = 0 if self._pending is None else self._pending.n_frames
        if self._idle is not None:  # the crossfade needs the voicing of the next F frames
            n = min(n, self._gate.ready - self._emitted)
        if self._max is not None:
            n = min(n, max(0, self._max - self._emitted))
        if n <= 0:
            self.busy_s += self._clock() - began
            return []
        motion, self._pending = self._pending[:n], self._pending[n:] if self._pending.n_frames > n else None
        first, weights = self._emitted, torch.ones(n)
        if self._idle is not None:
            weights = self._gate.take(n)
            motion = blend_motion(self._idle.frames(first, n), motion, weights)
        render = self.render or RenderOptions()
        motion, controls = lay_timeline(render.timeline, motion, self.source.info, self.fps, render.controls, first)
        images = self._images(motion, controls) if self.render is not None else [None] * n
        self._emitted += n
        now = self._clock()
        self.busy_s += now - began
        audio_s = self.samples / self.sample_rate
        return [LiveFrame(first + i, (first + i) / self.fps, motion[i], images[i], float(weights[i]), audio_s,
                          now - self.start) for i in range(n)]

    def _images(self, motion: MotionSequence, controls) -> list[np.ndarray]:
        per_chunk = dataclasses.replace(self.render, smoothing=SmoothingOptions(), max_frames=None, timeline=None)
        job = self.engine.animate_absolute_motion(self.source, motion, self.fps, per_chunk, controls=controls,
                                                  stitching=self._stitching)
        return list(job.frames)


class _Resampler:
    """Stateful linear-interpolation rate conversion: output sample j sits at input time j·rate_in/rate_out."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        self.step = rate_in / rate_out
        self._history = np.zeros(0)
        self._start = 0  # input index of _history[0]
        self._next = 0   # output samples produced

    def __call__(self, data: np.ndarray) -> np.ndarray:
        if self.step == 1:
            return data
        self._history = np.concatenate([self._history, data])
        end = self._start + self._history.size - 1  # last input index held
        count = max(0, int(np.floor(end / self.step)) - self._next + 1)
        times = (self._next + np.arange(count)) * self.step
        out = np.interp(times - self._start, np.arange(self._history.size), self._history)
        self._next += count
        keep = max(0, int(np.floor(self._next * self.step)) - self._start - 1)
        self._history, self._start = self._history[keep:], self._start + keep
        return out


def play_out(frames: Iterable[LiveFrame], fps: float = 25.0, start_s: float = 0.0) -> list[LiveFrame]:
    """Set ``shown_s`` as a player at ``fps`` would: each frame at its ready time, never before the previous + 1/fps.

    A player that starts when the first frame is ready and then waits for
    no frame it does not have: ``shown = max(ready, previous shown + 1/fps, start_s)``.
    """
    frames, shown = list(frames), None
    for frame in frames:
        shown = max(frame.ready_s, start_s if shown is None else shown + 1.0 / fps)
        frame.shown_s = shown
    return frames


def latency_summary(frames: list[LiveFrame], session: LiveSession) -> dict[str, float]:
    """Numbers of a finished session: look-ahead, first frame, per-frame latency, real-time factor.

    Latencies are ``ready_s`` (and ``shown_s``) minus the frame's end on the
    audio timeline, meaningful when the audio was pushed in real time from
    the session's start; ``rtf`` is the session's busy time over the audio's
    duration (< 1: faster than real time).  Keys: frames, audio_s,
    lookahead_min_ms, lookahead_max_ms, first_ready_s, latency_mean_s,
    latency_max_s, shown_latency_max_s (NaN without shown times), rtf.
    """
    if not frames:
        raise MediaError("no frames came out of the live session")
    ends = np.array([f.time_s + 1.0 / session.fps for f in frames])
    ready = np.array([f.ready_s for f in frames])
    shown = np.array([np.nan if f.shown_s is None else f.shown_s for f in frames])
    audio_s = session.samples / session.sample_rate
    low, high = session.lookahead_ms
    return {"frames": float(len(frames)), "audio_s": audio_s, "lookahead_min_ms": low, "lookahead_max_ms": high,
            "first_ready_s": float(ready[0]), "latency_mean_s": float(np.mean(ready - ends)),
            "latency_max_s": float(np.max(ready - ends)), "shown_latency_max_s": float(np.max(shown - ends)),
            "rtf": session.busy_s / audio_s if audio_s else float("nan")}


def replay(session: LiveSession, samples: np.ndarray, chunk_samples: int = 3200, realtime: bool = False,
           limit: int | None = None, on_chunk=None) -> Iterable[LiveFrame]:
    """Feed a waveform to ``session`` as a live source would, yielding its frames as they come (the CLI harness).

    Args:
        samples: (S,) float32 mono at the session's rate.
        chunk_samples: samples per push, ≥ 1 (the last push holds the rest).
        realtime: push chunk i only once its audio would have been spoken
            (``session.start`` + its end time), as a microphone delivers it;
            False: as fast as possible.
        limit: stop after this many frames (the rest of the audio is not pushed).
        on_chunk: called after each push (e.g. a progress bar's ``update``).

    Raises:
        MediaError: bad samples (see :meth:`LiveSession.push`), ``chunk_samples`` < 1.
    """
    if chunk_samples < 1:
        raise MediaError(f"chunks must hold at least one sample, got {chunk_samples}")
    count = 0
    for start in range(0, samples.size, chunk_samples):
        if realtime:
            due = session.start + (start + chunk_samples) / session.sample_rate
            time.sleep(max(0.0, due - session._clock()))
        for frame in session.push(samples[start:start + chunk_samples]):
            count += 1
            yield frame
            if limit is not None and count >= limit:
                return
        if on_chunk is not None:
            on_chunk()
    for frame in session.end():
        if limit is not None and count >= limit:
            return
        count += 1
        yield frame
