"""Motion smoothing: jitter before/after and per-frame cost against an unsmoothed baseline.

    python benchmarks/bench_smoothing.py [--pose 0.5] [--expression 0.25] [--device cpu|cuda] [--repeats N]

Jitter is the mean |second difference| per frame (:func:`talkinghead.motion.smoothing.jitter`).

* Noisy sine: yaw = 15°·sin(2π·0.5 Hz·t) + N(0, 1°) at 25 fps, 10 s.
* Real driving clips: the engine's motion of a clip needs the real LivePortrait
  weights, which are not available offline, so the pose/expression signals are
  *proxies* taken from the dlib 68-point tracks in tests/data/testdata/landmarks:
  roll = angle of the line between the eye centres (degrees, smoothed as
  roll), eye-centre position (pixels, smoothed as ``t``) and mouth opening /
  inter-ocular distance (unitless, smoothed as ``exp``).

Cost: median wall time per frame of :func:`smooth_motion` (offline) and of
:class:`MotionSmoother` fed one frame at a time, against the baseline measured
in the same run — the same calls with both strengths 0 (the unsmoothed path).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from talkinghead.motion.frame import MotionSequence  # noqa: E402
from talkinghead.motion.smoothing import MotionSmoother, SmoothingOptions, jitter, smooth_motion  # noqa: E402

LANDMARKS = REPO / "tests" / "data" / "testdata" / "landmarks"
FPS = 25.0


def proxy_motion(track: Path) -> MotionSequence:
    """Proxy motion of a dlib track: roll (deg), eye centre as t (px), mouth opening in every exp entry."""
    frames = json.loads(track.read_text())["frames"]
    pts = torch.tensor([f for f in frames if f is not None], dtype=torch.float32)
    left, right = pts[:, 36:42].mean(1), pts[:, 42:48].mean(1)
    eye_line = right - left
    n = len(pts)
    roll = torch.rad2deg(torch.atan2(eye_line[:, 1], eye_line[:, 0]))[:, None]
    mouth = (pts[:, 66] - pts[:, 62]).norm(dim=1) / eye_line.norm(dim=1)
    zeros = torch.zeros(n, 1)
    return MotionSequence(zeros, zeros, roll, torch.cat([(left + right) / 2, zeros], 1), zeros + 1,
                       mouth.view(n, 1, 1).expand(n, 21, 3).contiguous())


def sine_motion(n: int, noise_deg: float, seed: int = 0) -> MotionSequence:
    """yaw = 15°·sin(2π·0.5 Hz·t) (+ N(0, noise_deg)), everything else still."""
    gen = torch.Generator().manual_seed(seed)
    yaw = 15.0 * torch.sin(2 * math.pi * 0.5 * torch.arange(n) / FPS) + noise_deg * torch.randn(n, generator=gen)
    zeros = torch.zeros(n, 1)
    return MotionSequence(zeros, yaw[:, None], zeros, torch.zeros(n, 3), zeros + 1.5, torch.zeros(n, 21, 3))


def peak_lag(signal: torch.Tensor, reference: torch.Tensor, max_lag: int = 5) -> int:
    """Lag in frames (positive = ``signal`` late) maximising the cross-correlation."""
    n = len(signal)
    scores = {k: float((signal[max(0, k):n + min(0, k)] * reference[max(0, -k):n - max(0, k)]).sum())
              for k in range(-max_lag, max_lag + 1)}
    return max(scores, key=scores.__getitem__)


def median_time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of ``fn`` in seconds over ``repeats`` runs after one warm-up."""
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def streamed(motion: MotionSequence, options: SmoothingOptions) -> None:
    """Run a whole sequence through :class:`MotionSmoother` one frame at a time."""
    smoother = MotionSmoother(options)
    for frame in motion.iter_frames():
        smoother.push(frame)
    smoother.flush()


def report_sine(options: SmoothingOptions) -> None:
    noisy, clean = sine_motion(250, 1.0), sine_motion(250, 0.0)
    out, out_clean = smooth_motion(noisy, options).yaw[:, 0], smooth_motion(clean, options).yaw[:, 0]
    before, after = float(jitter(noisy.yaw)), float(jitter(out))
    loss = 1 - float(out_clean[25:-25].abs().max()) / 15.0
    print(f"noisy sine (yaw, deg): jitter {before:.3f} -> {after:.3f} ({before / after:.1f}x), "
          f"peak lag {peak_lag(out, clean.yaw[:, 0])} frames, amplitude loss on clean sine {100 * loss:.2f} %")


def report_tracks(options: SmoothingOptions) -> None:
    print("\nproxy signals from dlib tracks (not engine motion; see module docstring)")
    print(f"{'clip':42s} {'frames':>6s}  {'roll deg':>20s}  {'eye centre px':>20s}  {'mouth/iod':>22s}")
    for track in sorted(LANDMARKS.glob("*.mp4.json")):
        motion = proxy_motion(track)
        out = smooth_motion(motion, options)
        cells = []
        for before, after in ((motion.roll, out.roll), (motion.t[:, :2], out.t[:, :2]), (motion.exp, out.exp)):
            b, a = float(jitter(before)), float(jitter(after))
            cells.append(f"{b:.4f}->{a:.4f} {b / a:4.1f}x")
        print(f"{track.name.removesuffix('.json'):42s} {len(motion):6d}  " + "  ".join(cells))


def report_cost(options: SmoothingOptions, device: torch.device, repeats: int) -> None:
    motion = sine_motion(1000, 1.0).to(device)
    off = SmoothingOptions()
    rows = [
        ("offline, smoothed", lambda: smooth_motion(motion, options)),
        ("offline, baseline (strength 0)", lambda: smooth_motion(motion, off)),
        ("streamed 1 frame/push, smoothed", lambda: streamed(motion, options)),
        ("streamed 1 frame/push, baseline", lambda: streamed(motion, off)),
    ]
    print(f"\nper-frame cost on {device} ({len(motion)} frames, median of {repeats})")
    for name, fn in rows:
        print(f"{name:34s} {1e6 * median_time(fn, device, repeats) / len(motion):9.2f} µs/frame")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pose", type=float, default=0.5, help="pose strength in [0, 1]")
    parser.add_argument("--expression", type=float, default=0.25, help="expression strength in [0, 1]")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    options = SmoothingOptions(pose=args.pose, expression=args.expression)
    print(f"pose strength {options.pose}, expression strength {options.expression}, delay {options.delay} frames")
    report_sine(options)
    report_tracks(options)
    report_cost(options, torch.device(args.device), args.repeats)


if __name__ == "__main__":
    main()
