"""Batch jobs (``python -m talkinghead batch``): JSONL lines → CLI jobs, in-process and on a local Ray instance.

The rendering tests run pose stills (one 512² frame each) of real photos with filled weights.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TESTDATA, landmarks_json
from talkinghead import batch_job
from talkinghead.batch_job import job_argv, read_jobs
from talkinghead.cli import main
from talkinghead.errors import TalkingHeadError
from talkinghead.media.image import load_image

PHOTOS = ("astronaut.png", "st_happy.png", "dt_male_face.png")


def _write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def _pose_lines(weights: Path) -> list[dict]:
    """Three pose stills of three real photos (relative inputs: the JSONL sits in tests/data/testdata/images' copy)."""
    return [{"job": "pose", "source": name, "source-landmarks": str(landmarks_json(name)), "still": f"stills/{i}.png",
             "yaw": 10 * i, "smile": 0.5, "weights": str(weights), "device": "cpu", "no_paste_back": True}
            for i, name in enumerate(PHOTOS)]


def _jobs_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in PHOTOS:
        (folder / name).symlink_to(TESTDATA / "images" / name)
    return folder


def _summary(out: Path) -> dict[int, dict]:
    return {job["line"]: job for job in json.loads((out / "batch_summary.json").read_text())["jobs"]}


def test_a_line_becomes_the_jobs_command_line(tmp_path: Path) -> None:
    argv = job_argv({"job": "pose", "source": "a.png", "still": "b/c.png", "yaw": 12, "paste-back": False,
                     "provenance": False, "au": {"AU12": 0.6}, "smooth_expression": None, "quiet": True},
                    tmp_path / "in", tmp_path / "out")
    assert job_argv({"job": "pose", "no-paste-back": True, "no_provenance": False, "relative": None}, tmp_path,
                    tmp_path) == ("pose", ["--no-paste-back", "--quiet"])
    assert argv == ("pose", ["--source", str(tmp_path / "in" / "a.png"), "--still", str(tmp_path / "out" / "b" / "c.png"),
                             "--yaw", "12", "--no-paste-back", "--no-provenance", "--au", "AU12=0.6", "--quiet",
                             "--quiet"])
    _, video = job_argv({"job": "video", "source": "/abs/p.png", "driving": "d.mp4", "out": "v.mp4", "relative": False,
                         "stitching": True, "au": ["AU1=1", "AU2=0.5"]}, tmp_path, tmp_path / "o")
    assert video == ["--source", "/abs/p.png", "--driving", str(tmp_path / "d.mp4"), "--out", str(tmp_path / "o" / "v.mp4"),
                     "--absolute", "--au", "AU1=1", "--au", "AU2=0.5", "--quiet"]


@pytest.mark.parametrize("entry, message", [
    ([1, 2], "JSON object"),
    ({"source": "a.png"}, '"job" must be one of'),
    ({"job": "batch"}, '"job" must be one of'),
    ({"job": "verify"}, '"job" must be one of'),
    ({"job": "pose", "smirk": 1}, "unknown option 'smirk'"),
    ({"job": "pose", "yaw": True}, "takes a value"),
    ({"job": "pose", "quiet": "yes"}, "is a flag"),
    ({"job": "pose", "yaw": [1, 2]}, "one value"),
])
def test_bad_lines_are_refused_with_a_reason(tmp_path: Path, entry, message: str) -> None:
    with pytest.raises(TalkingHeadError, match=message):
        job_argv(entry, tmp_path, tmp_path)


def test_every_line_is_checked_before_any_work_with_its_line_number(tmp_path: Path, capsys) -> None:
    folder = _jobs_folder(tmp_path)
    good = {"job": "pose", "source": "astronaut.png", "still": "a.png"}
    jobs = read_jobs(_write_jsonl(folder / "jobs.jsonl", [
        good, "", "{not json", {"job": "pose", "source": "astronaut.png"},  # no --still/--keyframes: argparse's own error
        {"job": "pose", "source": "astronaut.png", "still": "a.mp4"}, {**good, "yaw": 5},  # bad suffix; same output
        {"job": "pose", "source": "astronaut.png", "still": "b.png", "smooth": -1}]), tmp_path / "out")
    assert [(job.line, job.status) for job in jobs] == [(1, "queued"), (3, "invalid"), (4, "invalid"), (5, "invalid"),
                                                        (6, "invalid"), (7, "invalid")]
    assert "JSON" in jobs[1].error or "property name" in jobs[1].error
    assert "--keyframes" in jobs[2].error and "--still" in jobs[2].error
    assert ".mp4" in jobs[3].error and "which line 1 writes too" in jobs[4].error
    assert "smoothing" in jobs[5].error.lower()
    assert not (tmp_path / "out").exists()  # checking writes nothing


def test_a_job_that_fails_for_another_reason_is_retried_then_reported(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def flaky(args):
        calls.append(args.still)
        if len(calls) < 3:
            raise RuntimeError("worker hiccup")
        Path(args.still).write_bytes(b"x")
        raise TalkingHeadError("a user error is not retried")

    monkeypatch.setitem(batch_job.cli.RUNS, "pose", flaky)
    jobs = _write_jsonl(tmp_path / "jobs.jsonl", [{"job": "pose", "source": str(TESTDATA / "images" / "astronaut.png"),
                                                   "still": "a.png"}])
    assert main(["batch", str(jobs), "--out", str(tmp_path / "out"), "--workers", "0", "--retries", "1", "--quiet"]) == 1
    assert len(calls) == 2 and _summary(tmp_path / "out")[1]["status"] == "failed"
    assert _summary(tmp_path / "out")[1]["attempts"] == 2 and "worker hiccup" in _summary(tmp_path / "out")[1]["error"]
    calls.clear()
    assert main(["batch", str(jobs), "--out", str(tmp_path / "out2"), "--workers", "0", "--retries", "3", "--quiet"]) == 1
    assert len(calls) == 3 and "not retried" in _summary(tmp_path / "out2")[1]["error"]


def test_in_process_without_ray_shares_one_engine_reports_a_bad_job_and_skips_on_rerun(
        tmp_path: Path, lp_weights_dir: Path, monkeypatch, capsys) -> None:
    from talkinghead.engine import Engine

    loads = []
    original = Engine.from_pretrained.__func__
    monkeypatch.setattr(Engine, "from_pretrained",
                        classmethod(lambda cls, *a, **k: loads.append(k["weights"]) or original(cls, *a, **k)))
    monkeypatch.setattr(batch_job, "_ray_available", lambda: False)  # as without ray installed: in-process
    folder = _jobs_folder(tmp_path)
    lines = _pose_lines(lp_weights_dir)
    missing = {**lines[0], "source": "nobody.png", "still": "stills/missing.png"}  # found when the file is read
    no_face = {**lines[0], "source": str(TESTDATA / "images" / "coffee_noface.png"),  # found when the job runs
               "source-landmarks": str(landmarks_json("coffee_noface.png")), "still": "stills/no_face.png"}
    jobs = _write_jsonl(folder / "jobs.jsonl", [lines[0], missing, "{\"job\": \"pose\",", *lines[1:], no_face])
    out = tmp_path / "out"
    assert main(["batch", str(jobs), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "ray is not installed" in captured.err and "line 2: invalid" in captured.err and "line 3: invalid" in captured.err
    summary = _summary(out)
    assert {n: s["status"] for n, s in summary.items()} == {1: "done", 2: "invalid", 3: "invalid", 4: "done", 5: "done",
                                                            6: "failed"}
    assert "nobody.png" in summary[2]["error"] and "not found" in summary[2]["error"]
    assert "no face" in summary[6]["error"] and summary[6]["attempts"] == 1  # bad input: not retried
    assert len(loads) == 1  # weights loaded once for every job of that setting
    for i in range(3):
        assert load_image(out / "stills" / f"{i}.png").shape == (512, 512, 3)
        assert summary[(1, 4, 5)[i]]["frames"] == 1 and summary[(1, 4, 5)[i]]["fps"] > 0
    assert "frames/s" in captured.out and "nobody.png" in captured.out and "no face" in captured.out  # the table
    assert not (out / "stills" / "missing.png").exists() and not (out / "stills" / "no_face.png").exists()
    loads.clear()
    assert main(["batch", str(jobs), "--out", str(out), "--workers", "0", "--quiet"]) == 1
    summary = _summary(out)
    assert [summary[n]["status"] for n in (1, 4, 5)] == ["skipped"] * 3
    assert summary[2]["status"] == "invalid" and summary[6]["status"] == "failed"


def test_on_a_local_ray_instance_with_two_workers(tmp_path: Path, lp_weights_dir: Path) -> None:
    pytest.importorskip("ray")
    folder = _jobs_folder(tmp_path)
    lines = _pose_lines(lp_weights_dir)
    jobs = _write_jsonl(folder / "jobs.jsonl", [*lines, {**lines[0], "source": "nobody.png", "still": "bad.png"}])
    out = tmp_path / "out"
    assert main(["batch", str(jobs), "--out", str(out), "--workers", "2", "--quiet"]) == 1
    document = json.loads((out / "batch_summary.json").read_text())
    assert (document["runner"], document["workers"]) == ("ray", 2)
    summary = _summary(out)
    assert [summary[n]["status"] for n in (1, 2, 3, 4)] == ["done", "done", "done", "invalid"]  # a missing photo
    assert "nobody.png" in summary[4]["error"]
    for i in range(3):
        assert load_image(out / "stills" / f"{i}.png").shape == (512, 512, 3)


def test_the_module_and_the_command_work_without_ray(tmp_path: Path) -> None:
    (tmp_path / "none.jsonl").write_text("")
    code = ("import sys; sys.modules['ray'] = None\n"  # import ray → ImportError
            "from talkinghead import batch_job; from talkinghead.cli import main\n"
            "assert not batch_job._ray_available()\n"
            f"sys.exit(main(['batch', {str(tmp_path / 'none.jsonl')!r}, '--out', {str(tmp_path / 'o')!r}, '--workers', '2']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "need Ray" in done.stderr, done.stderr


def test_a_jobs_file_with_no_job_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    assert main(["batch", str(tmp_path / "blank.jsonl"), "--out", str(tmp_path / "out"), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "has no jobs" in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
