"""Slider-update speed: a pose/expression edit of a cached photo vs a full render from scratch.

    python benchmarks/bench_controls.py [--device auto|cpu|cuda] [--repeats N] [--photo NAME]

(a) slider update — :meth:`Engine.still_image` on a :class:`PreparedSource`
    made once: motion math (controls, keypoints, stitching) + W + G +
    paste-back; F and M are not run (checked by counting forward calls).
(b) full render — load the photo, landmarks, crop, M, F, then the same
    still image: :meth:`Engine.prepare_source` + :meth:`Engine.still_image`.

Both use the same controls and a real photo with its testdata landmarks JSON
(no detector).  Weights do not change the speed, so the networks are built
with their own random initialisation, as in bench_render.py.  Every row is
the median of ``--repeats`` timed runs after one warm-up; the ratio (b)/(a)
is measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Mapping

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_render import build, median_time, pick_device  # noqa: E402
from talkinghead.engine import Engine  # noqa: E402
from talkinghead.face.landmarks import JsonLandmarks  # noqa: E402
from talkinghead.models.liveportrait import LivePortraitNetworks  # noqa: E402
from talkinghead.motion.controls import Controls  # noqa: E402

TESTDATA = Path(os.environ.get("TALKINGHEAD_SHARED") or REPO / "tests" / "data") / "testdata"
CONTROLS = Controls(yaw=15.0, pitch=-5.0, smile=0.5, eyes_open=0.2)
"""One slider state: pose, an expression offset and an eye retargeting offset (every kind of edit)."""
STAGES = ("F", "M", "W", "G")


@contextmanager
def counting(networks: Mapping[str, torch.nn.Module]) -> Iterator[dict[str, int]]:
    """Forward calls of each network while the block runs."""
    calls = dict.fromkeys(networks, 0)
    hooks = [net.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
             for name, net in networks.items()]
    try:
        yield calls
    finally:
        for hook in hooks:
            hook.remove()


def timed_path(fn: Callable[[], object], networks: Mapping[str, torch.nn.Module], device: torch.device,
               repeats: int, expected_calls: dict[str, int]) -> float:
    """Median seconds of ``fn``; asserts the networks it runs per call (F, M, W, G)."""
    with counting(networks) as calls:
        seconds = median_time(fn, device, repeats)
    runs = repeats + 1  # median_time's warm-up included
    per_run = {name: count / runs for name, count in calls.items()}
    assert per_run == expected_calls, f"network calls per run {per_run}, expected {expected_calls}"
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per row (default 3 on CPU, 20 on CUDA)")
    parser.add_argument("--photo", default="lp_s9_monalisa.jpg",
                        help="testdata image name; its landmarks are testdata/landmarks/NAME.json")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    args = parser.parse_args()
    device = pick_device(args.device, args.threads)
    cuda = device.type == "cuda"
    repeats = args.repeats or (20 if cuda else 3)
    photo = TESTDATA / "images" / args.photo
    landmarks = JsonLandmarks(TESTDATA / "landmarks" / f"{args.photo}.json")

    nets = build(device)
    engine = Engine(LivePortraitNetworks(appearance=nets["F"], motion=nets["M"], warping=nets["W"],
                                         decoder=nets["G"], stitching=nets["S"]), landmarks=landmarks)
    source = engine.prepare_source(photo)
    networks = {name: nets[name] for name in STAGES}
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {args.threads} threads"
    print(f"talkinghead slider-update benchmark — {name}, torch {torch.__version__}, median of {repeats}, "
          f"{args.photo} {source.image.shape[1]}x{source.image.shape[0]}, paste-back on, seconds")

    update = timed_path(lambda: engine.still_image(source, CONTROLS), networks, device, repeats,
                        {"F": 0, "M": 0, "W": 1, "G": 1})
    full = timed_path(lambda: engine.still_image(engine.prepare_source(photo), CONTROLS), networks, device, repeats,
                      {"F": 1, "M": 1, "W": 1, "G": 1})

    header = f"{'path':<42} {'F M W G runs':>12} {'median s':>9} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    print(f"{'(a) slider update (cached F, M)':<42} {'0 0 1 1':>12} {update:9.4f} {1.0:6.2f}x")
    print(f"{'(b) full render (photo→crop→M→F→W→G)':<42} {'1 1 1 1':>12} {full:9.4f} {full / update:6.2f}x")
    print(f"(b)/(a) = {full / update:.2f}: a slider update takes {100 * update / full:.0f}% of a render from scratch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
