"""Enhance stage speed: face restoration (GFPGAN, CodeFormer) and 2× upscaling, per frame, against the renderer.

    python benchmarks/bench_enhance.py [--device auto|cpu|cuda] [--repeats N] [--tile PX] [--720p]

Weights do not change the speed, so the networks are spandrel's own classes
with random weights, in the real checkpoints' configurations (GFPGAN v1.4,
CodeFormer v0.1.0, Real-ESRGAN x2plus with 23 blocks), run through our
:class:`FaceRestorer` / :class:`Upscaler` (alignment and paste-back included).
Inputs are a real photo's 512² source crop and that photo resized to
1280×720.  Each row is the median of ``--repeats`` timed runs after
``--warmup`` untimed ones; the baseline, measured in the same run, is the
renderer's W+G step for one frame (warping network + SPADE generator, as
benchmarks/bench_render.py builds them); the last column is row / W+G.

On CPU the 720p upscale takes minutes, so it runs only with ``--720p`` (or
on CUDA); otherwise its time is extrapolated from the 512² crop's per-pixel
rate and marked "est.".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_render import median_time, pick_device  # noqa: E402
from talkinghead.enhance import FaceRestorer, Upscaler, five_points  # noqa: E402
from talkinghead.face.crop import crop_face, transform_points  # noqa: E402
from talkinghead.models.spade import SPADEDecoder  # noqa: E402
from talkinghead.models.warping import WarpingNetwork  # noqa: E402

TESTDATA = ROOT / "tests" / "data" / "testdata"
PHOTO = "lp_d9.jpg"
FRAME_720P = (1280, 720)


def real_crop(testdata: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(photo RGB, its 512² source crop, the crop's five points)."""
    image = cv2.cvtColor(cv2.imread(str(testdata / "images" / PHOTO)), cv2.COLOR_BGR2RGB)
    landmarks = np.array(json.loads((testdata / "landmarks" / f"{PHOTO}.json").read_text())["frames"][0], np.float32)
    crop = crop_face(image, landmarks)
    return image, crop.crop, five_points(transform_points(landmarks, crop.M_o2c))


def render_step(device: torch.device) -> Callable[[], object]:
    """The renderer's W+G for one frame, random weights and inputs."""
    warp, generator = WarpingNetwork().eval().to(device), SPADEDecoder().eval().to(device)
    feature = torch.randn(1, 32, 16, 64, 64, device=device)
    x_s = 0.3 * torch.randn(1, 21, 3, device=device)
    x_d = x_s + 0.01 * torch.randn_like(x_s)

    def step() -> object:
        with torch.inference_mode():
            return generator(warp(feature, x_s, x_d).out)

    return step


def restorers(device: torch.device) -> dict[str, FaceRestorer]:
    from spandrel.architectures.GFPGAN import GFPGAN
    from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

    gfpgan = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None, fix_decoder=False,
                    num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)
    return {"gfpgan": FaceRestorer.from_state_dict(gfpgan.state_dict(), "gfpgan", device),
            "codeformer": FaceRestorer.from_state_dict(CodeFormer().state_dict(), "codeformer", device)}


def upscaler(device: torch.device, tile: int) -> Upscaler:
    from spandrel.architectures.ESRGAN import ESRGAN

    x2plus = ESRGAN(in_nc=12, out_nc=3, num_filters=64, num_blocks=23, scale=4, shuffle_factor=2)
    return Upscaler.from_state_dict(x2plus.state_dict(), device, tile)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per row (default 1 on CPU, 10 on CUDA)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 0 on CPU, 2 on CUDA)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--tile", type=int, default=256, help="upscaling tile side in pixels (default 256)")
    parser.add_argument("--720p", dest="frame_720p", action="store_true", help="time the 720p upscale on CPU too")
    parser.add_argument("--testdata", type=Path, default=TESTDATA)
    args = parser.parse_args()
    device = pick_device(args.device, args.threads)
    cuda = device.type == "cuda"
    repeats, warmup = args.repeats or (10 if cuda else 1), args.warmup if args.warmup is not None else (2 if cuda else 0)
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {args.threads} threads"
    print(f"talkinghead enhance benchmark — {name}, torch {torch.__version__}, "
          f"median of {repeats} after {warmup} warm-up, seconds per frame")

    torch.manual_seed(0)
    photo, crop, points = real_crop(args.testdata)
    frame = cv2.resize(photo, FRAME_720P, interpolation=cv2.INTER_AREA)

    def time_it(fn: Callable[[], object]) -> float:
        return median_time(fn, device, repeats, warmup)

    baseline = time_it(render_step(device))
    rows: list[tuple[str, float, str]] = []
    for kind, restorer in restorers(device).items():
        rows.append((f"restore {kind}, 512² crop", time_it(lambda: restorer.restore(crop, points, 1.0)), ""))
    x2 = upscaler(device, args.tile)
    crop_time = time_it(lambda: x2.upscale(crop))
    rows.append((f"upscale ×2, 512² crop (tile {args.tile})", crop_time, ""))
    if cuda or args.frame_720p:
        rows.append((f"upscale ×2, 720p frame (tile {args.tile})", time_it(lambda: x2.upscale(frame)), ""))
    else:
        estimate = crop_time * frame.shape[0] * frame.shape[1] / crop.shape[0] / crop.shape[1]
        rows.append((f"upscale ×2, 720p frame (tile {args.tile})", estimate, "est."))

    print(f"{'post-process':<38} {'s/frame':>9} {'/ render W+G':>13}")
    print(f"{'render W+G (baseline)':<38} {baseline:9.3f} {1.0:12.2f}x")
    for label, seconds, note in rows:
        print(f"{label:<38} {seconds:9.3f} {seconds / baseline:12.2f}x {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
