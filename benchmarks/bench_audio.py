"""Audio job speed and memory: audio features, motion generation, rendering; peak memory vs clip length.

    python benchmarks/bench_audio.py [--device auto|cpu|cuda] [--seconds 10,60] [--steps config,10]
                                     [--config CFG.pkl] [--render-frames 2]

Networks are built with random weights (speed and memory do not depend on
the values).  The real HuBERT ONNX encoder (1.4 GB) is not available offline,
so the audio-feature stage runs a stand-in encoder with the same input/output
shapes whose cost is negligible; run with ``--encoder PATH.onnx`` on a
machine that has the real file to time it.

Printed per clip length: seconds of audio-feature extraction, motion
generation (LMDM windows + post-processing) and rendering per second of audio
(the real-time factor, RTF = compute seconds / audio seconds; render RTF is
extrapolated from ``--render-frames`` frames), and the peak resident memory
of a fresh process generating the whole clip's motion.  The baseline of the
``ratio`` column is the shortest clip in the same run: memory should not grow
with length beyond the motion itself (a few hundred bytes per frame).

Step counts: ``--steps`` lists the DDIM step counts to time; ``config`` means
the configuration's own (``--config`` a Ditto cfg pickle, whose window
settings are used too; without one, Ditto's code default of 50 steps).  A
second table gives, per step count, the motion RTF of the first clip and its
ratio to the last step count listed (default 10), measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from talkinghead.drivers.audio.ditto.condition import EyeConditions  # noqa: E402
from talkinghead.drivers.audio.ditto.config import DittoConfig  # noqa: E402
from talkinghead.drivers.audio.ditto.driver import DEFAULT_STEPS, AudioDriver, AudioDriverOptions  # noqa: E402
from talkinghead.drivers.audio.ditto.hubert import FEATURE_DIM, OnnxAudioEncoder, encoder_frame_count  # noqa: E402
from talkinghead.models.lmdm import LMDM, LMDMConfig  # noqa: E402

SAMPLE_RATE = 16000


class StandInEncoder:
    """Same shapes as Ditto's HuBERT graph: (N,) samples → (T, 1024) rows at 50 Hz."""

    def __call__(self, window: np.ndarray) -> np.ndarray:
        return np.zeros((encoder_frame_count(window.size), FEATURE_DIM), np.float32)


def _driver(device: torch.device, encoder_path: str | None) -> AudioDriver:
    torch.manual_seed(0)
    lmdm = LMDM(LMDMConfig()).eval().requires_grad_(False).to(device)
    encoder = OnnxAudioEncoder(encoder_path, device) if encoder_path else StandInEncoder()
    return AudioDriver(lmdm, encoder)


def _source(device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    raw = {"pitch": torch.randn(1, 66, generator=g), "yaw": torch.randn(1, 66, generator=g),
           "roll": torch.randn(1, 66, generator=g), "t": 0.01 * torch.randn(1, 3, generator=g),
           "exp": 0.01 * torch.randn(1, 63, generator=g), "scale": torch.full((1, 1), 1.6),
           "kp": 0.2 * torch.randn(1, 63, generator=g)}
    return {k: v.to(device) for k, v in raw.items()}


def _speechlike(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.2 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def _options(steps: int, config: str | None) -> AudioDriverOptions:
    """Driver settings: the configuration's (or Ditto's code defaults) at ``steps`` DDIM steps."""
    return (DittoConfig.load(config).driver_options(steps=steps) if config else AudioDriverOptions(steps=steps))


def measure(seconds: float, steps: int, device: torch.device, encoder_path: str | None,
            config: str | None = None) -> dict[str, float]:
    """Timings (s) of one clip's motion generation, split into features and the rest."""
    from talkinghead.drivers.audio.ditto import driver as driver_module

    driver = _driver(device, encoder_path)
    samples = _speechlike(seconds)
    eyes = EyeConditions(eye_open=torch.tensor([0.3, 0.3], device=device), eye_ball=torch.zeros(6, device=device))
    feature_time = 0.0
    original = driver_module.offline_features

    def timed_features(*args, **kwargs):
        nonlocal feature_time
        start = time.perf_counter()
        out = original(*args, **kwargs)
        feature_time += time.perf_counter() - start
        return out

    driver_module.offline_features = timed_features
    try:
        start = time.perf_counter()
        motion = driver.generate(samples, _source(device), eyes, _options(steps, config))
        if device.type == "cuda":
            torch.cuda.synchronize()
        total = time.perf_counter() - start
    finally:
        driver_module.offline_features = original
    return {"frames": motion.n_frames, "features_s": feature_time, "motion_s": total - feature_time}


def render_seconds_per_frame(device: torch.device, frames: int) -> float:
    """Seconds per rendered 512² frame (W + G, fp32), median over ``frames`` runs."""
    from talkinghead.models.spade import SPADEDecoder
    from talkinghead.models.warping import WarpingNetwork

    torch.manual_seed(0)
    warp, dec = WarpingNetwork().eval().to(device), SPADEDecoder().eval().to(device)
    feature = torch.randn(1, 32, 16, 64, 64, device=device)
    kp = 0.2 * torch.randn(1, 21, 3, device=device)
    times = []
    with torch.inference_mode():
        for _ in range(frames + 1):
            start = time.perf_counter()
            dec(warp(feature, kp, kp + 0.01).out)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


def _child(args: argparse.Namespace) -> None:
    """Run one clip in this (fresh) process and print its peak RSS and timings as JSON."""
    device = torch.device(args.device)
    result = measure(float(args.child), int(args.steps), device, args.encoder, args.config)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seconds", default="10,60", help="comma-separated clip lengths (add 600 for the long check)")
    parser.add_argument("--steps", default="config,10",
                        help="comma-separated DDIM step counts; 'config' = the configuration's (50 without --config)")
    parser.add_argument("--config", default=None, help="a Ditto cfg pickle (ditto_cfg/v0.4_hubert_cfg_pytorch.pkl)")
    parser.add_argument("--render-frames", type=int, default=2)
    parser.add_argument("--encoder", default=None, help="path of the real hubert_streaming_fix_kv.onnx, if available")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(args.threads)
    if args.child:
        _child(args)
        return 0
    device = torch.device(args.device)
    config_steps = DittoConfig.load(args.config).driver.steps if args.config else DEFAULT_STEPS
    step_counts = [config_steps if s == "config" else int(s) for s in args.steps.split(",")]
    lengths = [float(s) for s in args.seconds.split(",")]
    render = render_seconds_per_frame(device, args.render_frames)
    print(f"talkinghead audio benchmark — {device}, torch {torch.__version__}, "
          f"config: {args.config or 'none (Ditto code defaults)'} ({config_steps} steps), "
          f"encoder: {'ONNX ' + args.encoder if args.encoder else 'stand-in (shapes only)'}")
    by_steps = {}
    for steps in step_counts:
        print(f"\n{steps} DDIM steps")
        print(f"{'audio s':>8} {'frames':>7} {'features RTF':>13} {'motion RTF':>11} {'render RTF':>11} "
              f"{'peak RSS MB':>12} {'ratio':>6}")
        baseline = None
        for seconds in lengths:
            cmd = [sys.executable, __file__, "--child", str(seconds), "--device", args.device, "--steps", str(steps),
                   "--threads", str(args.threads)] + (["--encoder", args.encoder] if args.encoder else []) \
                + (["--config", args.config] if args.config else [])
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            baseline = baseline or result["peak_rss_mb"]
            by_steps.setdefault(steps, result["motion_s"] / seconds)
            render_rtf = render * result["frames"] / seconds
            print(f"{seconds:8.0f} {result['frames']:7d} {result['features_s'] / seconds:13.4f} "
                  f"{result['motion_s'] / seconds:11.3f} {render_rtf:11.1f} {result['peak_rss_mb']:12.0f} "
                  f"{result['peak_rss_mb'] / baseline:6.2f}")
    reference = step_counts[-1]
    print(f"\nmotion RTF of the {lengths[0]:g} s clip by step count (ratio to {reference} steps, same run)")
    for steps, rtf in by_steps.items():
        print(f"{steps:6d} steps  RTF {rtf:7.3f}  ratio {rtf / by_steps[reference]:5.2f}")
    print(f"render: {render:.2f} s per frame (W+G fp32); time to first frame of the offline job = "
          "features + motion of the whole clip + one frame (see the streaming API for early frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
