"""Batch jobs: the CLI jobs of a JSONL file, in this process or on Ray (``python -m talkinghead batch``).

    JOBS.jsonl ─ line → the job's argv (paths resolved) ─ parser + check_job (every line, before any work)
      ─ outputs all there? skipped ─ else queued ─ in-process: one after another, one engine per setting
                                                 ─ Ray: a pool of actors, each holding its engine(s)
      ─ retries of failed jobs ─ progress over all jobs ─ summary table + DIR/batch_summary.json

A line is one JSON object: ``"job"`` names any rendering command (video,
audio, dub, pose) and every other key is one of that command's long options
without the leading dashes (``save-motion`` or ``save_motion``).  Values:
a string or number is the option's value; ``true`` gives a flag, ``false``
its opposite flag where there is one (``"provenance": false`` is
``--no-provenance``, ``"relative": false`` is ``--absolute``) and nothing
where false is the default; ``null`` leaves the option out; a list repeats a
repeatable option (``"au": ["AU12=0.6", "AU45=1"]``, or the object
``{"AU12": 0.6}``).  Every job runs with ``--quiet`` (the batch has one
progress bar).  Paths: a relative output (``out``, ``still``,
``save-motion``) is written under ``--out DIR``; a relative input (``source``,
``driving``, ``audio``, ``motion``, ``keyframes``, landmark files, ``weights``,
``ditto-config``, ``pose-from``, ``pose-style``, ``c2pa-key``/``-cert``) is read from
the JSONL file's folder.  A line runs exactly as the same command line would
(:func:`talkinghead.cli.run_job`).

Where things run:

* **in-process** (``--workers 0``, or Ray not installed): the jobs run one
  after another in this process; one engine per weights/device setting
  (``--weights``, ``--device``, ``--revision``…) is built on first use and
  shared by every later job with that setting (weights loaded once).
* **Ray** (default when ``ray`` is installed; ``pip install
  "talkinghead[ray]"``): a local Ray instance (``num_cpus`` = this
  machine's usable cores) or, with ``--ray ADDRESS``, an existing cluster
  (``ray start --head`` …; every node needs talkinghead installed and the
  input and output paths on a shared file system).  A pool of
  :class:`_EngineWorker` actors runs the jobs: with GPUs in the cluster one
  actor per GPU (``num_gpus=1``, ``--workers`` caps the count), else
  ``--workers N`` CPU actors (default: one per 4 cores) that split the
  cores evenly (``num_cpus`` and torch threads = cores // N).  Each actor
  keeps its engines across its jobs (weights loaded once per actor) and runs
  a whole job: decode, landmarks, motion, rendering and encoding of one job
  are in one actor, and the jobs of different actors run in parallel, so one
  job's CPU stages overlap another's rendering.  The driver (this process)
  only parses and checks the lines, schedules, retries and reports.

Failures: a job that raises a user error (bad input, e.g. a missing file or
a photo without a face: :class:`~talkinghead.errors.TalkingHeadError`) fails
the same way every time and is reported at once; any other error (a
file-system error, an unexpected exception, a Ray worker that died) is retried
up to ``--retries`` times (default 1) on a fresh attempt (on Ray: on a new
actor when the actor died), then reported.  The other jobs go on.  Outputs are
written atomically (temporary file + rename), so a re-run skips every job
whose outputs all exist and redoes the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import cli
from .errors import TalkingHeadError
from .options import check_options, option

CPUS_PER_WORKER = 4
"""Cores per CPU actor when ``--workers`` is not given (a 2-core machine: one worker)."""
OUTPUT_OPTIONS = ("out", "still", "save_motion")
"""Destinations of the output paths a line may give (resolved under ``--out DIR``)."""
EXTRA_INPUTS = ("weights", "c2pa_key", "c2pa_cert")
"""Input paths besides the job's input files (``cli._INPUTS``), resolved from the JSONL file's folder."""
SUMMARY_NAME = "batch_summary.json"


@dataclass(frozen=True)
class BatchOptions:
    """How the batch runs.

    Attributes:
        ray: address of an existing Ray cluster (``ray://host:10001`` or ``host:6379``,
            "auto"); None = a local Ray instance started for the batch.
        workers: Ray actors (0 = in-process, no Ray); None = one per GPU, else one per 4 cores.
        retries: extra attempts of a job that failed for another reason than its input, 0–10.

    Raises:
        ControlError: a value out of range.
    """

    ray: str | None = option(None, what="Ray address", type=str, flag="--ray",
                             help="address of an existing Ray cluster; default: a local Ray instance "
                                  "(in-process when ray is not installed)")
    workers: int | None = option(None, what="workers", range=(0, None), type=int,
                                 help="Ray workers: 0 = run in this process; default one per GPU, else one per "
                                      f"{CPUS_PER_WORKER} cores")
    retries: int = option(1, what="retries", range=(0, 10),
                          help="extra attempts of a job that failed for a reason other than its input")

    def __post_init__(self) -> None:
        check_options(self)


@dataclass
class BatchJob:
    """One line of the JSONL file.

    Attributes:
        line: 1-based line number; job: the command ("pose" …; "?" when unreadable).
        argv: the command line (without the command), paths resolved; None for an invalid line.
        outputs: the output paths the job writes.
        status: "queued", "done", "skipped" (outputs there), "invalid", "failed" or "stopped" (interrupted).
        seconds: wall time of the successful (or last) attempt; frames: frames written
            (a still: 1); attempts: runs made; error: why it is invalid or failed.
    """

    line: int
    job: str
    argv: list[str] | None = None
    outputs: list[str] = field(default_factory=list)
    status: str = "queued"
    seconds: float = 0.0
    frames: int = 0
    attempts: int = 0
    error: str | None = None

    @property
    def fps(self) -> float:
        """Frames written per second of the job's wall time (0 when none)."""
        return self.frames / self.seconds if self.seconds > 0 and self.frames else 0.0


def _job_parser(job: str) -> argparse.ArgumentParser:
    """The rendering command's subparser, whose errors raise TalkingHeadError instead of exiting."""
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[job]

    def error(message: str):
        raise TalkingHeadError(message)

    parser.error = error  # argparse's own message (unknown option, missing --source, bad number …)
    return parser


def _resolve(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _lookup(parser: argparse.ArgumentParser, key: str) -> tuple[argparse.Action, bool]:
    """(the option a line's key names, whether by its flag): ``--key`` (underscores as dashes), else the
    option whose destination ``key`` is (e.g. "provenance" for ``--no-provenance``)."""
    flag = "--" + key.replace("_", "-")
    actions = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    named = [a for a in actions if flag in a.option_strings]
    found = named or [a for a in actions if a.dest == key.replace("-", "_")]
    if not found:
        raise TalkingHeadError(f"unknown option {key!r} for the {parser.prog.split()[-1]} job")
    return found[0], bool(named)


def _switch(parser: argparse.ArgumentParser, action: argparse.Action, named: bool, key: str, value: bool) -> list[str]:
    """The flag for ``key: value`` of a switch, [] when that is the default.

    A key naming a flag: true gives that flag, false its opposite (``"stitching": false`` → ``--no-stitching``,
    ``"no-provenance": false`` → nothing); a key naming the destination (``"provenance": false``) sets it.
    """
    wanted = (action.const if value else not action.const) if named else value
    for other in parser._actions:
        if other.dest == action.dest and other.nargs == 0 and other.const == wanted:
            return [other.option_strings[0]]
    if parser.get_default(action.dest) == wanted:
        return []
    raise TalkingHeadError(f"option {key!r} cannot be {str(value).lower()}")


def _values(action: argparse.Action, key: str, value: Any) -> list[str]:
    """The command-line words of one non-switch option value (a list for a repeatable option)."""
    flag = action.option_strings[0]
    if isinstance(value, dict):
        value = [f"{k}={v}" for k, v in value.items()]
    if isinstance(value, list):
        if isinstance(action, argparse._AppendAction):
            return [word for item in value for word in (flag, str(item))]
        if action.nargs in ("+", "*") or (isinstance(action.nargs, int) and action.nargs > 1):
            return [flag, *map(str, value)]
        raise TalkingHeadError(f"option {key!r} takes one value, not a list")
    return [flag, str(value)]


def job_argv(entry: Any, base: Path, out_dir: Path) -> tuple[str, list[str]]:
    """(command, argv without the command) of one decoded JSONL line; relative paths resolved.

    Args:
        entry: the decoded line (must be an object with a "job" key).
        base: folder of relative input paths (the JSONL file's); out_dir: folder of relative outputs.

    Raises:
        TalkingHeadError: not an object, no or an unknown job, an unknown option, a value of the wrong kind.
    """
    if not isinstance(entry, dict):
        raise TalkingHeadError(f"expected a JSON object, got {type(entry).__name__}")
    job = entry.get("job")
    if job not in cli.RUNS:
        raise TalkingHeadError(f"\"job\" must be one of {', '.join(cli.RUNS)}, got {job!r}")
    parser, argv = _job_parser(job), []
    inputs = set(cli._INPUTS[job]) | set(EXTRA_INPUTS)
    for key, value in entry.items():
        if key == "job" or value is None:
            continue
        action, named = _lookup(parser, key)
        if isinstance(value, bool):
            if action.nargs != 0:
                raise TalkingHeadError(f"option {key!r} takes a value, not {str(value).lower()}")
            argv += _switch(parser, action, named, key, value)
            continue
        if action.nargs == 0:
            raise TalkingHeadError(f"option {key!r} is a flag: give true or false")
        if isinstance(value, str) and (action.dest in OUTPUT_OPTIONS or action.dest in inputs):
            value = _resolve(value, out_dir if action.dest in OUTPUT_OPTIONS else base)
        argv += _values(action, key, value)
    return job, [*argv, "--quiet"]


def _parse(job: str, argv: list[str]) -> argparse.Namespace:
    """The job's parsed and checked namespace (``command`` set). Raises TalkingHeadError."""
    args = _job_parser(job).parse_args(argv)
    args.command = job
    return args


def read_jobs(path: Path, out_dir: Path) -> list[BatchJob]:
    """Every non-blank line of the JSONL file as a :class:`BatchJob`, checked (parser, check_job,
    check_inputs) now.

    A line that cannot be decoded, names an unknown job or option, fails a
    check or writes an output another line writes too is "invalid" (its
    error says why); a line whose outputs all exist is "skipped"; the rest
    are "queued".

    Raises:
        TalkingHeadError: the file cannot be read or is not UTF-8 text.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TalkingHeadError(f"cannot read the jobs file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    jobs, writers = [], {}
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        job = BatchJob(line=number, job="?")
        jobs.append(job)
        try:
            entry = json.loads(text)
            job.job = str(entry.get("job", "?")) if isinstance(entry, dict) else "?"
            job.job, job.argv = job_argv(entry, path.parent, out_dir)
            args = _parse(job.job, job.argv)
            cli.check_job(args)
            cli.check_inputs(args)
            job.outputs = [str(Path(p).expanduser().resolve()) for _, p, _, _ in cli._outputs(args)]
            for output in job.outputs:
                if output in writers:
                    raise TalkingHeadError(f"writes {output}, which line {writers[output]} writes too")
            writers.update(dict.fromkeys(job.outputs, number))
        except (TalkingHeadError, json.JSONDecodeError, OSError) as exc:
            job.argv, job.status, job.error = None, "invalid", str(exc)
            continue
        if job.outputs and all(Path(p).exists() for p in job.outputs):
            job.status = "skipped"
    return jobs


def run_one(job: str, argv: list[str], engines: dict) -> dict:
    """Run one job as the CLI would, sharing ``engines``; never raises but KeyboardInterrupt.

    Returns:
        {"ok": bool, "seconds": wall time, "frames": frames written, "error": message or None,
        "retry": whether another attempt may help (False for a user error)}.
    """
    from .media.video import probe_video

    start = time.perf_counter()
    try:
        args = _parse(job, argv)
        args.engines = engines
        cli.run_job(args)
        frames = 1 if job == "pose" and args.still else probe_video(args.out).n_frames
        return {"ok": True, "seconds": time.perf_counter() - start, "frames": frames, "error": None, "retry": False}
    except TalkingHeadError as exc:
        return {"ok": False, "seconds": time.perf_counter() - start, "frames": 0, "error": str(exc), "retry": False}
    except Exception as exc:  # noqa: BLE001 - anything else is reported (and retried), the batch goes on
        return {"ok": False, "seconds": time.perf_counter() - start, "frames": 0, "retry": True,
                "error": f"{type(exc).__name__}: {exc}"}


def _record(job: BatchJob, result: dict, retries: int) -> bool:
    """Store an attempt's result on ``job``; True when it should run again."""
    job.attempts += 1
    job.seconds, job.frames, job.error = result["seconds"], result["frames"], result["error"]
    job.status = "done" if result["ok"] else "failed"
    return not result["ok"] and result["retry"] and job.attempts <= retries


def run_in_process(jobs: list[BatchJob], retries: int, done: Callable[[BatchJob], None]) -> None:
    """Run the queued jobs one after another here; one engine per setting shared by all of them."""
    engines: dict = {}
    for job in jobs:
        while _record(job, run_one(job.job, job.argv, engines), retries):
            pass
        done(job)


class _EngineWorker:
    """A Ray actor's state: its engines (by weights/device setting), kept across the jobs it runs."""

    def __init__(self, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.engines: dict = {}

    def run(self, job: str, argv: list[str]) -> dict:
        """:func:`run_one` in this actor (see there)."""
        return run_one(job, argv, self.engines)


def _start_ray(ray, options: BatchOptions) -> bool:
    """Connect to the cluster at ``options.ray`` or start a local instance; True when this call started Ray."""
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "include_dashboard": False, "configure_logging": False}
    try:
        if options.ray:
            ray.init(address=options.ray, **quiet)
        else:  # the workers import this very package (a source checkout need not be installed)
            root = str(Path(__file__).resolve().parents[1])
            path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
            ray.init(num_cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                     runtime_env={"env_vars": {"PYTHONPATH": path}}, **quiet)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError … from Ray
        raise TalkingHeadError(f"cannot start Ray{' at ' + options.ray if options.ray else ''}: {exc}") from None
    return True


def _pool_shape(ray, workers: int | None) -> tuple[int, dict]:
    """(actor count, each actor's resources): one actor per GPU when the cluster has GPUs, else CPU actors;
    the cores are split evenly between the actors."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
    count = min(gpus, workers or gpus) if gpus else workers or max(1, cpus // CPUS_PER_WORKER)
    return count, {"num_cpus": max(1, cpus // count), **({"num_gpus": 1} if gpus else {})}


def _pool(ray, jobs: list[BatchJob], options: BatchOptions, done: Callable[[BatchJob], None]) -> int:
    """Run ``jobs`` on the actor pool until every one is done or given up; returns the actor count."""
    count, resources = _pool_shape(ray, options.workers)
    worker = ray.remote(**resources, max_restarts=0)(_EngineWorker)

    def new():
        return worker.remote(resources["num_cpus"])

    idle, queue, running = [new() for _ in range(min(count, len(jobs)))], list(jobs), {}
    while queue or running:
        while queue and idle:
            actor, job = idle.pop(), queue.pop(0)
            running[actor.run.remote(job.job, job.argv)] = (actor, job)
        [ref], _ = ray.wait(list(running), num_returns=1)
        actor, job = running.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayError as exc:  # the actor died (out of memory, a crash): a fresh one
            result = {"ok": False, "seconds": 0.0, "frames": 0, "retry": True, "error": f"Ray: {exc}"}
            ray.kill(actor)
            actor = new()
        idle.append(actor)
        if _record(job, result, options.retries):
            queue.insert(0, job)
        else:
            done(job)
    return count


def run_on_ray(jobs: list[BatchJob], options: BatchOptions, done: Callable[[BatchJob], None]) -> int:
    """Run the queued jobs on a pool of Ray actors (see the module docstring). Returns the actor count.

    Raises:
        TalkingHeadError: Ray cannot be started or reached.
    """
    import ray

    started = _start_ray(ray, options)
    try:
        return _pool(ray, jobs, options, done)
    finally:
        if started:
            ray.shutdown()


def _ray_available() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return bool(ray)


def summary_table(jobs: list[BatchJob]) -> str:
    """The printed summary: one row per line (line, job, status, seconds, frames/s, error)."""
    rows = [f"{'line':>5}  {'job':<6} {'status':<8} {'seconds':>8} {'frames/s':>9}  error"]
    for job in jobs:
        seconds = f"{job.seconds:8.2f}" if job.status in ("done", "failed") else f"{'':8}"
        fps = f"{job.fps:9.3f}" if job.status == "done" else f"{'':9}"
        rows.append(f"{job.line:>5}  {job.job:<6} {job.status:<8} {seconds} {fps}  {job.error or ''}".rstrip())
    return "\n".join(rows)


def _write_summary(path: Path, jobs: list[BatchJob], info: dict) -> None:
    """DIR/batch_summary.json (written atomically): ``info`` plus one record per line."""
    records = [{**{k: v for k, v in asdict(job).items() if k != "argv"}, "fps": job.fps} for job in jobs]
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(json.dumps({**info, "jobs": records}, indent=2))
    os.replace(temp, path)


def _runner(options: BatchOptions) -> str:
    if options.workers == 0:
        return "in-process"
    if _ray_available():
        return "ray"
    if options.ray or options.workers:
        raise TalkingHeadError("--ray/--workers need Ray: pip install \"talkinghead[ray]\" (or --workers 0)")
    print("note: ray is not installed: running the jobs in this process, one after another", file=sys.stderr)
    return "in-process"


def _execute(jobs: list[BatchJob], options: BatchOptions, runner: str, quiet: bool) -> dict:
    """Run the queued jobs with a progress bar over all lines; returns the run's facts for the summary."""
    from tqdm import tqdm

    queued = [job for job in jobs if job.status == "queued"]
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(queued), unit="job", disable=quiet, desc="batch")

    def done(job: BatchJob) -> None:
        bar.update(1)
        bar.set_postfix_str(f"line {job.line} {job.status}")
        if job.status == "failed":
            tqdm.write(f"line {job.line}: {job.job} job failed after {job.attempts} attempt(s): {job.error}",
                       file=sys.stderr)

    start, workers = time.perf_counter(), 0
    try:
        if runner == "ray" and queued:
            workers = run_on_ray(queued, options, done)
        else:
            run_in_process(queued, options.retries, done)
    finally:
        bar.close()
    wall = time.perf_counter() - start
    finished = sum(job.status == "done" for job in queued)
    return {"runner": runner, "workers": workers, "wall_seconds": wall, "jobs_run": finished,
            "jobs_per_second": finished / wall if finished and wall > 0 else 0.0}


def run_batch(args: argparse.Namespace) -> int:
    """The ``batch`` command: read, check and run every line of ``args.jobs``; print and write the summary.

    Returns:
        0 every job done or skipped, 1 some line invalid or some job failed, 130/143 when interrupted.

    Raises:
        TalkingHeadError: the jobs file cannot be read or holds no job (both found before ``--out`` is
            created), ``--out`` cannot be created, Ray cannot start.
    """
    options = BatchOptions(ray=args.ray, workers=args.workers, retries=args.retries)
    runner, status = _runner(options), 0
    out_dir, jobs_file = Path(args.out).expanduser().resolve(), Path(args.jobs).expanduser().resolve()
    jobs = read_jobs(jobs_file, out_dir)
    if not jobs:
        raise TalkingHeadError(f"the jobs file {jobs_file} has no jobs: write one JSON object per line, "
                               'e.g. {"job": "pose", "source": "a.png", "still": "a_still.png", "yaw": 12}')
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TalkingHeadError(f"cannot create the output folder {out_dir} ({exc.strerror})") from None
    for job in jobs:
        if job.status == "invalid":
            print(f"line {job.line}: invalid, not run: {job.error}", file=sys.stderr)
    try:
        info = _execute(jobs, options, runner, args.quiet)
    except KeyboardInterrupt as exc:
        status = 128 + 15 if isinstance(exc, cli._Terminated) else 130
        info = {"runner": runner, "interrupted": True}
        for job in jobs:
            if job.status == "queued":
                job.status, job.error = "stopped", "interrupted before it finished"
    _write_summary(out_dir / SUMMARY_NAME, jobs, info)
    if not args.quiet:
        print(summary_table(jobs))
    counts = {s: sum(job.status == s for job in jobs) for s in ("done", "skipped", "invalid", "failed", "stopped")}
    print(", ".join(f"{n} {s}" for s, n in counts.items() if n) + f"; summary: {out_dir / SUMMARY_NAME}",
          file=sys.stderr)
    return status or (1 if counts["invalid"] or counts["failed"] else 0)
