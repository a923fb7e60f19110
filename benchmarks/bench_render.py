"""Renderer speed: each stage per frame, and W + G per precision, memory layout, compilation and batch size.

    python benchmarks/bench_render.py [--device auto|cpu|cuda] [--frames N] [--batch-sizes 1,2] [--compile]

Weights do not change the speed, so the networks are built with their own
random initialisation (no checkpoint needed).  Every number is measured in
this run, nothing is quoted from elsewhere:

* the stage table: F, M, W, G and the whole per-frame step (M, motion
  transfer, W, G, uint8), fp32 and the device's half precision, batch 1,
  median of ``--repeats`` runs after one warm-up;
* the W + G table: :class:`talkinghead.render.Renderer` itself (what a job
  runs: autocast, channels-last G, ``torch.compile``) per setting and batch
  size: the settings take turns call by call (so the load of other jobs on
  a shared machine hits each alike), each keeping the fastest of
  ``--frames`` / batch timed calls after one warm-up call (timed
  separately: with ``torch.compile`` it compiles).  Columns:
  seconds per frame, frames/s, speed-up against fp32 at the same batch size
  and against fp32 batch 1, achieved TFLOP/s at :data:`WG_GFLOP_PER_FRAME`,
  and the fraction of the device's rate: on a CPU the matrix-multiply rate
  measured at the start of the run (fp32 and bf16, same threads); on a GPU
  the datasheet dense peak (:data:`GPU_PEAK_TFLOPS`) and the measured
  matmul rate; on CUDA also the peak memory per batch size
  (``torch.cuda.max_memory_allocated`` above the weights);
* the paste-back table: a batch of 512² faces pasted into a 1920×1080 frame
  (the shipped example photo scaled into it, the crop rotated 5°) by the
  host path (faces to the host, then ``cv2.warpAffine``: what a job on a CPU
  runs) and by the device path (:func:`paste_back_tensor` on the device,
  only the finished frames to the host: what a job on CUDA runs), seconds
  per frame and the ratio against the host path of the same run;
* the colour-conversion table: those 1920×1080 frames to the encoder's
  yuv420p by swscale on the host (frames to the host, then
  :func:`~talkinghead.media.video.swscale_yuv420`, one frame at a time in the
  encoder's thread: what the writer does with RGB frames) and by
  :func:`~talkinghead.media.yuv.rgb_to_yuv420` on the device (planes to the
  host: what a job on CUDA hands the writer), seconds per frame, bytes per
  frame crossing to the host, and the ratio against swscale.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from talkinghead.devices import cpu_has_bf16, to_host  # noqa: E402
from talkinghead.face.paste import paste_back, paste_back_tensor  # noqa: E402
from talkinghead.media.video import swscale_yuv420  # noqa: E402
from talkinghead.media.yuv import rgb_to_yuv420  # noqa: E402
from talkinghead.media.image import load_image  # noqa: E402
from talkinghead.models.appearance import AppearanceFeatureExtractor  # noqa: E402
from talkinghead.models.images import tensor_to_images  # noqa: E402
from talkinghead.models.motion_extractor import MotionExtractor  # noqa: E402
from talkinghead.models.spade import SPADEDecoder  # noqa: E402
from talkinghead.models.stitching import StitchingRetargeting  # noqa: E402
from talkinghead.models.warping import WarpingNetwork  # noqa: E402
from talkinghead.motion.animate import AnimationOptions, Animator  # noqa: E402
from talkinghead.motion.keypoints import keypoint_info_from_raw  # noqa: E402
from talkinghead.render import Renderer  # noqa: E402

WG_GFLOP_PER_FRAME = 1155.0
"""W + G work per 512² frame, GFLOP (2 FLOP per multiply-add; ``torch.utils.flop_counter`` on our networks, issue 16)."""

GPU_PEAK_TFLOPS = {
    "H200": (989.0, 494.0), "H100 PCIe": (756.0, 378.0), "H100": (989.0, 494.0), "A100": (312.0, 156.0),
    "L40S": (362.0, 183.0), "RTX 4090": (165.0, 82.6), "L4": (121.0, 60.0), "A10": (125.0, 62.5), "T4": (65.0, 8.1),
}
"""GPU name substring → datasheet dense tensor-core peak TFLOP/s (fp16/bf16 with fp32 accumulation, TF32),
no sparsity; SXM parts for H100/H200/A100.  fp32 convolutions run as TF32 (cuDNN's default), so the fp32 rows
are compared with the TF32 peak.  First match in this order wins ("H100 PCIe" before "H100")."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in seconds over ``repeats`` runs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    _sync(device)
    return statistics.median(_wall_times(fn, device, repeats))


def _wall_times(fn: Callable[[], object], device: torch.device, repeats: int) -> list[float]:
    """Wall time of each of ``repeats`` runs of ``fn``, seconds (the device synchronised after each)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def pick_device(name: str, threads: int) -> torch.device:
    """``--device`` (auto, cpu, cuda) as a torch device; CPU benchmarks use ``threads`` threads."""
    torch.set_num_threads(threads)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build(device: torch.device) -> dict[str, torch.nn.Module]:
    """F, M, W, G, S with their random initialisation (seed 0), eval mode, on ``device``."""
    torch.manual_seed(0)
    nets = {"F": AppearanceFeatureExtractor(), "M": MotionExtractor(), "W": WarpingNetwork(),
            "G": SPADEDecoder(), "S": StitchingRetargeting()}
    for net in nets.values():
        net.eval().requires_grad_(False).to(device)
    return nets


def best_time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Fastest wall time of ``fn`` in seconds over ``repeats`` runs (no warm-up): what the code can do on a
    machine shared with other jobs, where a median still carries their load."""
    return min(_wall_times(fn, device, repeats))


def gemm_tflops(device: torch.device, dtype: torch.dtype, n: int = 4096, repeats: int = 3) -> float:
    """Measured matrix-multiply rate, TFLOP/s: fastest of ``repeats`` (n × n) @ (n × n) products in ``dtype``."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    calls = 1 if device.type == "cpu" else 20
    a @ b
    seconds = best_time(lambda: [a @ b for _ in range(calls)], device, repeats) / calls
    return 2 * n**3 / seconds / 1e12


def bench_stages(nets: dict[str, torch.nn.Module], device: torch.device, precision: str, batch: int,
                 repeats: int) -> dict[str, float]:
    """Per-frame seconds of each stage at one precision and batch size (raw networks under autocast)."""
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
            "step": run(step),
        }


def make_renderer(nets: dict[str, torch.nn.Module], setting: str) -> Renderer:
    """The renderer of one W + G setting, on copies of W and G (half precision makes G channels-last in place).

    ``setting``: a precision ("fp32", "bf16", "fp16"), which under half precision means channels-last G (the
    renderer's default); "-nchw" keeps G contiguous NCHW instead; "+compile" adds ``torch.compile``.
    """
    precision = setting.split("+")[0].split("-")[0]
    return Renderer(nets["F"], copy.deepcopy(nets["W"]), copy.deepcopy(nets["G"]), precision=precision,
                    compile="+compile" in setting, channels_last=False if "-nchw" in setting else None)


def bench_renderers(nets: dict[str, torch.nn.Module], device: torch.device, settings: list[str], batch: int,
                    frames: int) -> dict[str, dict[str, float]]:
    """W + G at one batch size for every setting: seconds per frame, first-call seconds, peak memory (CUDA bytes).

    The settings take turns, one call each per round, and each keeps its fastest round: on a machine shared
    with other jobs their load then hits every setting alike (timing one setting after another does not).
    """
    torch.manual_seed(1)
    feature = torch.randn(1, 32, 16, 64, 64, device=device)
    x_s = 0.5 * torch.rand(1, 21, 3, device=device) - 0.25
    x_d = x_s.expand(batch, -1, -1) + 0.01 * torch.randn(batch, 21, 3, device=device)
    renderers, results = {s: make_renderer(nets, s) for s in settings}, {}
    for setting, renderer in renderers.items():  # warm-up, first call timed (it compiles when compiled)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
        first = best_time(lambda: renderer.render_tensor(feature, x_s, x_d), device, 1)
        peak = torch.cuda.max_memory_allocated(device) - base if device.type == "cuda" else float("nan")
        results[setting] = {"s": math.inf, "first": first, "memory": peak}
    for _ in range(max(1, math.ceil(frames / batch))):
        for setting, renderer in renderers.items():
            seconds = best_time(lambda: renderer.render_tensor(feature, x_s, x_d), device, 1) / batch
            results[setting]["s"] = min(results[setting]["s"], seconds)
    return results


def _peaks(device: torch.device, threads: int) -> tuple[str, dict[str, float]]:
    """(description, precision → TFLOP/s to compare with): measured GEMM on CPU, datasheet on GPU."""
    if device.type == "cpu":
        rates = {"fp32": gemm_tflops(device, torch.float32)}
        if cpu_has_bf16():
            rates["bf16"] = gemm_tflops(device, torch.bfloat16)
        text = ", ".join(f"{p} {r * 1e3:.0f} GFLOP/s" for p, r in rates.items())
        return f"measured 4096² matmul, {threads} threads: {text}", rates
    name = torch.cuda.get_device_name(device)
    measured = {p: gemm_tflops(device, d, 8192) for p, d in (("fp16", torch.float16), ("bf16", torch.bfloat16))}
    peak = next((v for k, v in GPU_PEAK_TFLOPS.items() if k in name), None)
    text = f"measured 8192² matmul fp16 {measured['fp16']:.0f}, bf16 {measured['bf16']:.0f} TFLOP/s"
    if peak is None:
        return text + f"; no datasheet peak known for {name}: fractions of the measured matmul", measured | {"fp32": float("nan")}
    return text + f"; datasheet dense peak {peak[0]:.0f} (half) / {peak[1]:.0f} (TF32) TFLOP/s", {
        "fp16": peak[0], "bf16": peak[0], "fp32": peak[1]}


def _settings(device: torch.device, compile_too: bool) -> list[str]:
    if device.type == "cuda":
        base = ["fp32", "fp16", "fp16-nchw", "bf16"]
    else:
        base = ["fp32"] + (["bf16", "bf16-nchw"] if cpu_has_bf16() else [])
    return base + ([f"{s}+compile" for s in base if "-nchw" not in s] if compile_too else [])


def print_stages(nets: dict[str, torch.nn.Module], device: torch.device, repeats: int) -> None:
    half = ["fp16", "bf16"] if device.type == "cuda" else (["bf16"] if cpu_has_bf16() else [])
    rows = [(p, bench_stages(nets, device, p, 1, repeats)) for p in ["fp32", *half]]
    stages = list(rows[0][1])
    header = f"{'precision':<9} " + " ".join(f"{s:>8}" for s in stages) + f" {'fps':>7} {'x fp32':>7}"
    print(f"\nstages, batch 1, seconds per frame (raw networks under autocast, median of {repeats})\n{header}")
    print("-" * len(header))
    for precision, times in rows:
        print(f"{precision:<9} " + " ".join(f"{times[s]:8.3f}" for s in stages)
              + f" {1 / times['step']:7.2f} {rows[0][1]['step'] / times['step']:6.2f}x")


def print_wg(nets: dict[str, torch.nn.Module], device: torch.device, settings: list[str], batches: list[int],
             frames: int, peaks: dict[str, float]) -> None:
    by_batch = {b: bench_renderers(nets, device, settings, b, frames) for b in batches}
    rows = [(s, b, by_batch[b][s]) for s in settings for b in batches]
    fp32 = {b: r["s"] for s, b, r in rows if s == "fp32"}
    header = (f"{'setting':<13} {'batch':>5} {'s/frame':>8} {'fps':>7} {'x fp32':>7} {'x fp32 b1':>9} "
              f"{'TFLOP/s':>8} {'of peak':>8} {'1st call s':>10} {'memory GB':>9}")
    print(f"\nW + G (talkinghead.render.Renderer), settings in turn, fastest of {frames} frames after one warm-up call"
          f"\n{header}")
    print("-" * len(header))
    for setting, batch, r in rows:
        tflops = WG_GFLOP_PER_FRAME / r["s"] / 1e3
        peak = peaks.get(setting.split("+")[0].split("-")[0], float("nan"))
        memory = r["memory"] / 1e9
        print(f"{setting:<13} {batch:>5} {r['s']:8.3f} {1 / r['s']:7.2f} {fp32[batch] / r['s']:6.2f}x "
              f"{fp32[batches[0]] / r['s']:8.2f}x {tflops:8.3f} {tflops / peak:7.1%} {r['first']:10.2f} "
              f"{'' if math.isnan(memory) else f'{memory:9.2f}'}")
    print("settings: fp16/bf16 = the renderer's default, channels-last G; -nchw = G contiguous NCHW; "
          "+compile = torch.compile; memory = peak above the weights")


def _paste_scene() -> tuple[np.ndarray, np.ndarray]:
    """(1080, 1920, 3) uint8 frame holding the example photo, and a 512² crop → frame transform (rotated 5°)."""
    import cv2

    photo = load_image(Path(__file__).resolve().parents[1] / "assets" / "examples" / "astronaut.png")
    frame = np.zeros((1080, 1920, 3), np.uint8)
    frame[:, 420:1500] = cv2.resize(photo, (1080, 1080), interpolation=cv2.INTER_LINEAR)
    angle, scale = math.radians(5), 1.6
    rotation = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    M_c2o = np.eye(3)
    M_c2o[:2, :2], M_c2o[:2, 2] = rotation, np.array([960.0, 520.0]) - rotation @ np.array([256.0, 256.0])
    return frame, M_c2o


def print_paste(device: torch.device, batch: int, repeats: int) -> None:
    frame, M_c2o = _paste_scene()
    faces = torch.from_numpy(np.ascontiguousarray(frame[270:782, 704:1216]))[None].repeat(batch, 1, 1, 1).to(device)
    original = torch.from_numpy(frame).to(device)

    def host() -> object:
        return [paste_back(frame, face, M_c2o) for face in to_host(faces)]

    def on_device() -> object:
        return list(to_host(paste_back_tensor(original, faces, M_c2o)))

    times = {name: best_time(fn, device, repeats) / batch for name, fn in (("host", host), ("device", on_device))}
    print(f"\npaste-back of {batch} faces into 1920x1080, seconds per frame (fastest of {repeats})")
    for name, t in times.items():
        print(f"{name:<7} {t:8.4f} s  {1 / t:8.1f} frames/s  {times['host'] / t:6.2f}x host")
    print("host = faces to the host, cv2 paste-back (a CPU job); device = paste_back_tensor, frames to the host (a CUDA job)")


def print_colour(device: torch.device, batch: int, repeats: int) -> None:
    frame = _paste_scene()[0]
    frames = torch.from_numpy(frame)[None].repeat(batch, 1, 1, 1).to(device)

    def host() -> object:
        return [swscale_yuv420(f) for f in to_host(frames)]

    def on_device() -> object:
        return [to_host(plane) for plane in rgb_to_yuv420(frames)]

    times = {name: best_time(fn, device, repeats) / batch for name, fn in (("swscale", host), ("device", on_device))}
    crossed = {"swscale": frame.nbytes, "device": frame.nbytes // 2}
    print(f"\nRGB -> yuv420p of {batch} 1920x1080 frames, seconds per frame (fastest of {repeats})")
    for name, t in times.items():
        print(f"{name:<7} {t:8.4f} s  {1 / t:8.1f} frames/s  {crossed[name] / 1e6:5.2f} MB to the host  "
              f"{times['swscale'] / t:6.2f}x swscale")
    print("swscale = frames to the host, the writer's conversion (one thread); device = rgb_to_yuv420, planes to the host")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=None, help="stage-table runs per row (default 1 on CPU, 20 on CUDA)")
    parser.add_argument("--frames", type=int, default=None, help="timed frames per W + G row (default 2 on CPU, 64 on CUDA)")
    parser.add_argument("--batch-sizes", default=None, help="comma-separated (default 1,2 on CPU, 1,2,4,8,16,32 on CUDA)")
    parser.add_argument("--settings", default=None, help="comma-separated W + G settings (default: all for the device)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd W + G (slow to compile)")
    parser.add_argument("--no-stages", action="store_true", help="skip the stage table")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2, this project's machines)")
    args = parser.parse_args()
    device = pick_device(args.device, args.threads)
    cuda = device.type == "cuda"
    batches = [int(b) for b in (args.batch_sizes or ("1,2,4,8,16,32" if cuda else "1,2")).split(",")]
    settings = args.settings.split(",") if args.settings else _settings(device, args.compile)
    if "fp32" not in settings:
        settings.insert(0, "fp32")  # the baseline, measured in the same run
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {args.threads} threads, bf16: {cpu_has_bf16()}"
    print(f"talkinghead renderer benchmark — {name}, torch {torch.__version__}; W + G = {WG_GFLOP_PER_FRAME:.0f} GFLOP/frame")
    text, peaks = _peaks(device, args.threads)
    print(f"device rate: {text}")
    nets = build(device)
    if not args.no_stages:
        print_stages(nets, device, args.repeats or (20 if cuda else 1))
    print_wg(nets, device, settings, batches, args.frames or (64 if cuda else 2), peaks)
    print_paste(device, 16 if cuda else 2, args.repeats or (20 if cuda else 3))
    print_colour(device, 16 if cuda else 2, args.repeats or (20 if cuda else 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
