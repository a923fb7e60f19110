"""Batch throughput: the same small job list in-process, on 1 Ray worker and on N Ray workers.

    python benchmarks/bench_batch.py [--jobs 4] [--workers 2] [--weights DIR] [--device cpu]

The job list is ``--jobs`` pose stills (``python -m talkinghead batch``, one
rendered 512² frame each, paste-back on) of tests/data/testdata/images/astronaut.png
with its landmark file and a different yaw per job.  Each run is the whole
``batch`` command in a fresh output folder, timed end to end (Ray start,
actor start, weight loading per worker, every job), and the figure printed is
jobs/s with the ratio against the in-process run measured in the same run:

* in-process: ``--workers 0``, one job after another, torch on every core;
* Ray × 1: one CPU actor holding every core (torch threads = cores);
* Ray × N: N CPU actors splitting the cores (threads = cores // N each).

The weights are LivePortrait's layout filled by tests/data/tools/fill_weights.py
(speed does not depend on the values) unless ``--weights`` names a folder.
The Ray start alone (``ray.init`` + ``ray.shutdown`` of a local instance, no
actor) is timed too, to show how much of a short batch it takes.

Measured once on this project's 2-core CPU shared with other jobs (load 0.8 at
the start, ~9 from the Ray × 1 run on, so the in-process run had the quietest
machine), torch 2.14.1, ray 2.60.0, ``--jobs 4 --workers 2``::

    run            wall s   jobs/s  vs in-process  sum of job s
    in-process      117.6   0.0340           1.00         116.4
    ray x 1         156.9   0.0255           0.75         142.0
    ray x 2         100.8   0.0397           1.17         169.0

    ray x 2 / ray x 1 throughput: 1.56      (a local Ray start + stop alone: 8.4 s)

and again 40 minutes later (load ~3 throughout)::

    run            wall s   jobs/s  vs in-process  sum of job s
    in-process       79.3   0.0504           1.00          78.4
    ray x 1          55.2   0.0725           1.44          47.0
    ray x 2          27.0   0.1483           2.94          42.5

    ray x 2 / ray x 1 throughput: 2.05      (a local Ray start + stop alone: 4.7 s)

The spread between the two runs is the shared machine's; the ratio within a
run is the figure to read.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO / "tests" / "data"
PHOTO = DATA / "testdata" / "images" / "astronaut.png"
LANDMARKS = DATA / "testdata" / "landmarks" / "astronaut.png.json"


def filled_weights(folder: Path) -> Path:
    """LivePortrait's five checkpoints under ``folder`` (Hub layout), filled by the fill rule."""
    import torch

    spec = importlib.util.spec_from_file_location("fill_weights", DATA / "tools" / "fill_weights.py")
    fill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fill)
    manifest = json.loads((DATA / "fixtures" / "liveportrait" / "manifest.json").read_text())
    for entry in manifest["files"]:
        path = folder / entry["hub_path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(fill.fill_manifest_file(entry), path)
    return folder


def write_jobs(path: Path, count: int, weights: Path, device: str) -> Path:
    """``count`` pose-still lines (yaw −15…15°) in ``path``."""
    lines = [{"job": "pose", "source": str(PHOTO), "source_landmarks": str(LANDMARKS), "still": f"still_{i}.png",
              "yaw": -15 + 30 * i / max(1, count - 1), "weights": str(weights), "device": device}
             for i in range(count)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def run(jobs: Path, out: Path, workers: int) -> dict:
    """One ``batch`` command; its summary facts plus the end-to-end wall time."""
    from talkinghead.cli import main

    start = time.perf_counter()
    status = main(["batch", str(jobs), "--out", str(out), "--workers", str(workers), "--quiet"])
    wall = time.perf_counter() - start
    summary = json.loads((out / "batch_summary.json").read_text())
    done = sum(job["status"] == "done" for job in summary["jobs"])
    if status != 0 or done != len(summary["jobs"]):
        raise SystemExit(f"batch with --workers {workers} failed: {summary}")
    return {"wall": wall, "jobs": done, "jobs_per_second": done / wall,
            "render_seconds": sum(job["seconds"] for job in summary["jobs"])}


def ray_start_seconds() -> float:
    """Wall time of starting and stopping a local Ray instance with no actor."""
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    ray.shutdown()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=4, help="pose stills in the job list")
    parser.add_argument("--workers", type=int, default=2, help="N of the Ray × N run")
    parser.add_argument("--weights", type=Path, help="weights folder (default: filled LivePortrait weights)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = args.weights or filled_weights(tmp / "weights")
        jobs = write_jobs(tmp / "jobs.jsonl", args.jobs, weights, args.device)
        print(f"{args.jobs} pose stills (512², paste-back), device {args.device}, {len(os.sched_getaffinity(0))} "
              f"cores, torch {torch.__version__} ({torch.get_num_threads()} threads in-process)")
        results = {"in-process": run(jobs, tmp / "seq", 0)}
        try:
            import ray
        except ImportError:
            print("ray is not installed: only the in-process run")
            ray = None
        if ray is not None:
            results["ray x 1"] = run(jobs, tmp / "ray1", 1)
            results[f"ray x {args.workers}"] = run(jobs, tmp / f"ray{args.workers}", args.workers)
            print(f"ray {ray.__version__}; a local Ray start + stop alone: {ray_start_seconds():.1f} s")
    base = results["in-process"]["jobs_per_second"]
    print(f"\n{'run':<12} {'wall s':>8} {'jobs/s':>8} {'vs in-process':>14} {'sum of job s':>13}")
    for name, r in results.items():
        print(f"{name:<12} {r['wall']:8.1f} {r['jobs_per_second']:8.4f} {r['jobs_per_second'] / base:14.2f} "
              f"{r['render_seconds']:13.1f}")
    if len(results) == 3:
        one, many = list(results.values())[1:]
        print(f"\nray x {args.workers} / ray x 1 throughput: {many['jobs_per_second'] / one['jobs_per_second']:.2f}")


if __name__ == "__main__":
    main()
