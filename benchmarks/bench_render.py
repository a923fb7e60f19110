"""Renderer speed: F, M, W, G, W+G and the whole per-frame step, per precision and batch size.

    python benchmarks/bench_render.py [--device auto|cpu|cuda] [--repeats N] [--batch-sizes 1,4]

Weights do not change the speed, so the networks are built with their own
random initialisation (no checkpoint needed).  Every row is the median of
``--repeats`` timed runs after one warm-up, divided by the batch size (time
per frame).  The baseline is measured in the same run: fp32, batch 1; the
``speed-up`` column is baseline time / row time.  On CPU the reference
LivePortrait code's times on this project's 2-core machines (from
tests/data/fixtures/liveportrait/README.md, same torch build and thread count) are
printed beside ours for orientation — they were not measured in this run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from talkinghead.models.appearance import AppearanceFeatureExtractor  # noqa: E402
from talkinghead.models.images import tensor_to_images  # noqa: E402
from talkinghead.models.motion_extractor import MotionExtractor  # noqa: E402
from talkinghead.models.spade import SPADEDecoder  # noqa: E402
from talkinghead.models.stitching import StitchingRetargeting  # noqa: E402
from talkinghead.models.warping import WarpingNetwork  # noqa: E402
from talkinghead.motion.animate import AnimationOptions, Animator  # noqa: E402
from talkinghead.motion.keypoints import keypoint_info_from_raw  # noqa: E402

REFERENCE_CPU_S = {"F": 1.03, "M": 0.58, "W": 5.39, "G": 14.52, "W+G": 20.27, "step": 22.27}
"""LivePortrait's own code, fp32, batch 1, 2 threads, on this project's CPU (fixture README)."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in seconds over ``repeats`` runs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pick_device(name: str, threads: int) -> torch.device:
    """``--device`` (auto, cpu, cuda) as a torch device; CPU benchmarks use ``threads`` threads."""
    torch.set_num_threads(threads)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build(device: torch.device) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    nets = {"F": AppearanceFeatureExtractor(), "M": MotionExtractor(), "W": WarpingNetwork(),
            "G": SPADEDecoder(), "S": StitchingRetargeting()}
    for net in nets.values():
        net.eval().requires_grad_(False).to(device)
    return nets


def bench(nets: dict[str, torch.nn.Module], device: torch.device, precision: str, batch: int,
          repeats: int) -> dict[str, float]:
    """Per-frame seconds of each stage at one precision and batch size."""
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else torch.autograd.grad_mode.no_grad
    image = torch.rand(batch, 3, 256, 256, device=device)
    with torch.inference_mode():
        source = keypoint_info_from_raw(nets["M"](image[:1]))
        feature = nets["F"](image[:1])
        animator = Animator(source, nets["S"], AnimationOptions(), anchor=source.motion)
        x_s = animator.x_s.expand(batch, -1, -1)
        x_d = x_s + 0.01 * torch.randn_like(x_s)
        feature_b = feature.expand(batch, -1, -1, -1, -1)
        warped = nets["W"](feature_b, x_s, x_d).out

        def run(fn: Callable[[], object]) -> float:
            def timed() -> object:
                with autocast():
                    return fn()
            return median_time(timed, device, repeats) / batch

        def step() -> object:
            motion = keypoint_info_from_raw({k: v.float() for k, v in nets["M"](image).items()}).motion
            xd = animator(motion)
            return tensor_to_images(nets["G"](nets["W"](feature_b, x_s, xd).out).float())

        return {
            "F": run(lambda: nets["F"](image[:1])) * batch,  # once per photo: not divided by the batch
            "M": run(lambda: nets["M"](image)),
            "W": run(lambda: nets["W"](feature_b, x_s, x_d)),
            "G": run(lambda: nets["G"](warped)),
            "W+G": run(lambda: nets["G"](nets["W"](feature_b, x_s, x_d).out)),
            "step": run(step),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per row (default 3 on CPU, 20 on CUDA)")
    parser.add_argument("--batch-sizes", default=None, help="comma-separated (default 1 on CPU, 1,8 on CUDA)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2, as the reference figures)")
    args = parser.parse_args()
    device = pick_device(args.device, args.threads)
    cuda = device.type == "cuda"
    repeats = args.repeats or (20 if cuda else 3)
    batches = [int(b) for b in (args.batch_sizes or ("1,8" if cuda else "1")).split(",")]
    precisions = ["fp32", "fp16", "bf16"] if cuda else ["fp32"]
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {args.threads} threads"
    print(f"talkinghead renderer benchmark — {name}, torch {torch.__version__}, median of {repeats}, seconds per frame")

    nets = build(device)
    rows = [(p, b, bench(nets, device, p, b, repeats)) for p in precisions for b in batches]
    baseline = rows[0][2]
    stages = list(baseline)
    header = f"{'precision':<9} {'batch':>5} " + " ".join(f"{s:>9}" for s in stages) + f" {'fps':>8} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    for precision, batch, times in rows:
        cells = " ".join(f"{times[s]:9.4f}" for s in stages)
        print(f"{precision:<9} {batch:>5} {cells} {1 / times['step']:8.2f} {baseline['step'] / times['step']:8.2f}x")
    if not cuda:
        ref = " ".join(f"{REFERENCE_CPU_S[s]:9.4f}" for s in stages)
        print(f"{'reference':<9} {1:>5} {ref} {1 / REFERENCE_CPU_S['step']:8.2f} "
              f"{baseline['step'] / REFERENCE_CPU_S['step']:8.2f}x  (LivePortrait code, fixture README; not this run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
