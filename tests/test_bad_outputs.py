"""Bad outputs and bad options: one line on stderr, exit 2, the inputs untouched and nothing left behind.

The output side of the bad-input table (issue 11, item 4): an output that is
one of the inputs (same path, another spelling, a hard or symbolic link), an
output folder that is read-only or on a full disk (real tmpfs mounts where
the sandbox allows them, else skipped with the reason; plus monkeypatched
variants that always run), unsupported suffixes, option values out of range,
``--device cuda`` without a GPU, degenerate landmark files, a square driving
clip without a face; then write failures during encoding, SIGTERM mid-job
and two jobs writing the same output at once.

Nearly every row fails before the engine is loaded; the few that need it
use the filled LivePortrait weights and fail before any frame is rendered.
Inputs are copies in the test's folder, so that a regression can never
destroy the shared test media.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import LP_FIXTURES, REPO, TESTDATA, landmarks_json, load_golden
from talkinghead.cli import main
from talkinghead.errors import MediaError
from talkinghead.media import _files
from talkinghead.media.image import load_image, save_image
from talkinghead.media.video import VideoWriter, probe_video
from talkinghead.motion.frame import KeypointInfo, MotionSequence
from talkinghead.motion.io import MotionFile, save_motion

FIELDS = ("pitch", "yaw", "roll", "t", "scale", "exp", "kp")

ASTRONAUT = TESTDATA / "images" / "astronaut.png"
DRIVING = TESTDATA / "driving" / "lp_d0.mp4"
SPEECH = TESTDATA / "audio" / "espeak_en_us.wav"
NOFACE = TESTDATA / "images" / "coffee_noface.png"


# ------------------------------------------------------------------ helpers
def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(folder: Path) -> list[str]:
    """Every path under ``folder`` (relative, sorted), hidden files included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _mount_tmpfs(folder: Path, options: str) -> None:
    """Mount a tmpfs on ``folder`` or skip the test, saying why."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to mount a tmpfs (read-only or tiny file system)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"this sandbox cannot mount a tmpfs: {done.stderr.strip()}")


def _umount(folder: Path) -> None:
    subprocess.run(["umount", str(folder)], capture_output=True)


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """Writable copies of real test media in ``tmp_path/in`` (photo, landmarks, driving clip, speech, keyframes)."""
    folder = tmp_path / "in"
    folder.mkdir()
    paths = {}
    for key, src in {"src": ASTRONAUT, "srclm": landmarks_json("astronaut.png"), "drv": DRIVING,
                     "drvlm": landmarks_json("lp_d0.mp4"), "aud": SPEECH}.items():
        paths[key] = folder / src.name
        shutil.copyfile(src, paths[key])
    paths["motion"] = folder / "motion.safetensors"     # the golden run's two driving frames as a motion file
    golden = load_golden(LP_FIXTURES / "golden_pipeline.safetensors")
    frames = [KeypointInfo(**{f: golden[f"synth.driving{i}.{f}"] for f in FIELDS}).motion for i in (0, 1)]
    save_motion(paths["motion"], MotionFile(MotionSequence.cat(frames), 25.0))
    paths["kf"] = folder / "path.json"
    paths["kf"].write_text(json.dumps({"fps": 25, "keyframes": [{"t": 0.0}, {"t": 0.08, "yaw": 20}]}))
    return paths


class Case:
    """One row: a command line (``{name}`` placeholders), the key phrase of its one-line error, a setup."""

    def __init__(self, argv: str, phrase: str, setup=None, rc: int = 2) -> None:
        self.argv, self.phrase, self.setup, self.rc = argv, phrase, setup, rc


VIDEO = "video --source {src} --driving {drv} --source-landmarks {srclm} --driving-landmarks {drvlm} --max-frames 1"
AUDIO = "audio --source {src} --audio {aud} --source-landmarks {srclm} --max-frames 1"
POSE = "pose --source {src} --source-landmarks {srclm}"
OUT = " --out {out}/o.mp4"


def _hard_link(paths, tmp):
    os.link(paths["drv"], tmp / "out" / "link.mp4")


def _sym_link(paths, tmp):
    (tmp / "out" / "sym.mp4").symlink_to(paths["drv"])


def _sym_link_png(paths, tmp):
    (tmp / "out" / "sym.png").symlink_to(paths["src"])


def _folder_named_o_mp4(paths, tmp):
    (tmp / "out" / "o.mp4").mkdir()


def _file_as_folder(paths, tmp):
    (tmp / "out" / "afile").write_bytes(b"x")


def _read_only_mount(paths, tmp):
    _mount_tmpfs(tmp / "out" / "ro", "ro,size=64k")


def _full_mount(paths, tmp):
    folder = tmp / "out" / "full"
    _mount_tmpfs(folder, "size=256k")
    try:  # fill it up; ENOSPC ends the loop
        with open(folder / "filler.bin", "wb") as handle:
            while True:
                handle.write(b"\0" * 4096)
                handle.flush()
    except OSError:
        pass


def _no_face_square_clip(paths, tmp):
    """A square 3-frame clip of the no-face photo (cropped to 400x400) and a landmark file saying "no face"."""
    clip = tmp / "in" / "noface.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-loop", "1", "-i", str(NOFACE), "-vf", "crop=400:400",
                    "-frames:v", "3", "-r", "25", "-pix_fmt", "yuv420p", str(clip)], check=True)
    (tmp / "in" / "noface.json").write_text(json.dumps(
        {"width": 400, "height": 400, "n_frames": probe_video(clip).n_frames, "fps": 25,
         "frames": [None] * probe_video(clip).n_frames}))


def _landmarks(points_of):
    """Setup writing a photo landmark file whose 68 points are ``points_of(real_points)``."""
    def setup(paths, tmp):
        doc = json.loads(paths["srclm"].read_text())
        doc["frames"] = [points_of(np.array(doc["frames"][0], dtype=np.float64)).tolist()]
        (tmp / "in" / "bad_landmarks.json").write_text(json.dumps(doc))
    return setup


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")

CASES = {
    # an output that is one of the inputs
    "out-is-source": Case("video --source {src} --driving {drv} --out {src}", "same file as --source"),
    "out-is-driving": Case("video --source {src} --driving {drv} --out {drv}", "same file as --driving"),
    "out-is-driving-other-spelling": Case("video --source {src} --driving {drv} --out {in}/../in/./lp_d0.mp4",
                                          "same file as --driving"),
    "out-is-hard-link-to-driving": Case("video --source {src} --driving {drv} --out {out}/link.mp4",
                                        "same file as --driving", _hard_link),
    "out-is-symlink-to-driving": Case("video --source {src} --driving {drv} --out {out}/sym.mp4",
                                      "same file as --driving", _sym_link),
    "out-is-driving-landmarks": Case(VIDEO + " --out {drvlm}", "same file as --driving-landmarks"),
    "save-motion-is-driving": Case(VIDEO + OUT + " --save-motion {drv}", "same file as --driving"),
    "out-is-motion": Case("video --source {src} --source-landmarks {srclm} --motion {motion} --out {motion}",
                          "same file as --motion"),
    "audio-save-motion-is-motion": Case(AUDIO + OUT + " --motion {motion} --save-motion {motion}",
                                        "same file as --motion"),
    "audio-out-is-audio": Case("audio --source {src} --audio {aud} --out {aud}", "same file as --audio"),
    "still-is-source": Case(POSE + " --still {src}", "same file as --source"),
    "still-is-symlink-to-source": Case(POSE + " --still {out}/sym.png", "same file as --source", _sym_link_png),
    "still-is-source-landmarks": Case(POSE + " --still {srclm}", "same file as --source-landmarks"),
    "out-is-keyframes": Case(POSE + " --keyframes {kf} --out {kf}", "same file as --keyframes"),
    # output locations that cannot be written
    "out-is-a-folder": Case(VIDEO + " --out {out}/o.mp4", "is a folder", _folder_named_o_mp4),
    "out-under-a-file": Case(VIDEO + " --out {out}/afile/o.mp4", "is a file, not a folder", _file_as_folder),
    "out-in-read-only-folder": Case(VIDEO + " --out {out}/ro/o.mp4", "read-only", _read_only_mount),
    "out-in-new-folder-under-read-only": Case(VIDEO + " --out {out}/ro/new/sub/o.mp4", "read-only", _read_only_mount),
    "still-in-read-only-folder": Case(POSE + " --still {out}/ro/s.png", "read-only", _read_only_mount),
    "out-on-full-disk": Case(VIDEO + " --out {out}/full/o.mp4", "disk is full", _full_mount),
    "save-motion-on-full-disk": Case(VIDEO + OUT + " --save-motion {out}/full/m.safetensors", "disk is full",
                                     _full_mount),
    # suffixes
    "out-suffix-avi": Case(VIDEO + " --out {out}/o.avi", "cannot write a video as 'o.avi'"),
    "out-no-suffix": Case(VIDEO + " --out {out}/o", "cannot write a video"),
    "still-suffix-gif": Case(POSE + " --still {out}/s.gif", "cannot write an image as 's.gif'"),
    "keyframes-out-suffix-png": Case(POSE + " --keyframes {kf} --out {out}/o.png", "cannot write a video"),
    "save-motion-suffix-json": Case(VIDEO + OUT + " --save-motion {out}/m.json", "cannot write a motion file"),
    # option values
    "pose-blend-above-1": Case(AUDIO + OUT + " --pose-blend 1.5", "pose blend must be between 0 and 1"),
    "pose-blend-negative": Case(AUDIO + OUT + " --pose-blend -0.1", "pose blend must be between 0 and 1"),
    "expression-scale-5": Case(AUDIO + OUT + " --expression-scale 5", "expression scale must be between 0 and 3"),
    "expression-scale-nan": Case(AUDIO + OUT + " --expression-scale nan", "expression scale must be between 0 and 3"),
    "emotion-unknown": Case(AUDIO + OUT + " --emotion grumpy", "unknown emotion 'grumpy'"),
    "smooth-2": Case(VIDEO + OUT + " --smooth 2", "smoothing strength"),
    "smooth-expression-negative": Case(VIDEO + OUT + " --smooth-expression -1", "smoothing strength"),
    "enhance-weight-2": Case(VIDEO + OUT + " --enhance-weight 2", "enhance weight"),
    "fidelity-negative": Case(VIDEO + OUT + " --fidelity -0.5", "enhance fidelity"),
    "tile-too-small": Case(VIDEO + OUT + " --upscale 2 --tile 3", "tile"),
    "driving-multiplier-nan": Case(VIDEO + OUT + " --driving-multiplier nan", "--driving-multiplier"),
    "keyframes-without-out": Case(POSE + " --keyframes {kf}", "--keyframes renders a video"),
    "device-cuda-without-gpu": pytest.param(Case(VIDEO + OUT + " --device cuda", "no CUDA GPU"), marks=NO_CUDA),
    # landmark files (fail after loading the engine, before rendering)
    "landmarks-all-coincide": Case(
        "video --source {src} --driving {drv} --driving-landmarks {drvlm} --source-landmarks {in}/bad_landmarks.json"
        + OUT, "frame 0: its 68 points span only 0x0 px", _landmarks(lambda p: np.full_like(p, 100.0))),
    "landmarks-on-a-line": Case((POSE + " --still {out}/s.png").replace("{srclm}", "{in}/bad_landmarks.json"),
                                "they coincide or lie on a line", _landmarks(lambda p: np.c_[p[:, 0], np.full(68, 50.0)])),
    "landmarks-far-outside": Case(
        "pose --source {src} --source-landmarks {in}/bad_landmarks.json --still {out}/s.png",
        "far outside the 512x512 image", _landmarks(lambda p: p + 2000.0)),
    "landmarks-new-out-folder-removed": Case(
        "video --source {src} --driving {drv} --driving-landmarks {drvlm} --source-landmarks {in}/bad_landmarks.json"
        " --out {out}/new/sub/o.mp4", "coincide", _landmarks(lambda p: np.full_like(p, 7.0))),
    # a square driving clip without a face
    "square-driving-clip-without-face": Case(
        "video --source {src} --source-landmarks {srclm} --driving {in}/noface.mp4 --driving-landmarks {in}/noface.json"
        + OUT, "no face found in the first 3 frames of driving video", _no_face_square_clip),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_output_or_option(case: Case, inputs: dict[str, Path], tmp_path: Path, lp_weights_dir: Path,
                              capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    try:
        if case.setup is not None:
            case.setup(inputs, tmp_path)
        before = {p: _digest(p) for p in (tmp_path / "in").iterdir()}
        out_before = _tree(out)
        argv = case.argv.format(**inputs, out=out, **{"in": tmp_path / "in"}).split()
        argv += ["--weights", str(lp_weights_dir), "--quiet"] + ([] if "--device" in argv else ["--device", "cpu"])
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == case.rc, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert case.phrase in lines[0], err
        assert {p: _digest(p) for p in (tmp_path / "in").iterdir()} == before       # inputs untouched
        assert _tree(out) == out_before                                                # nothing written
        assert not [p for p in tmp_path.rglob("*.partial*")]
    finally:
        for mount in ("ro", "full"):
            if (out / mount).is_mount():
                _umount(out / mount)


def test_probe_failure_is_reported_without_mounts(tmp_path: Path, monkeypatch) -> None:
    """The writability check itself, where mounting is not allowed: a read-only probe and a full disk (patched)."""
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(_files, "open", read_only, raising=False)
    with pytest.raises(MediaError, match="read-only"):
        _files.check_output(tmp_path / "new" / "o.mp4", (".mp4",), "video")
    monkeypatch.undo()
    monkeypatch.setattr(_files.shutil, "disk_usage", lambda _: types.SimpleNamespace(total=10 ** 9, free=4096))
    with pytest.raises(MediaError, match="disk is full"):
        _files.check_output(tmp_path / "o.mp4", (".mp4",), "video")
    assert _tree(tmp_path) == []


# --------------------------------------------------- write failures mid-job
@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1.5 MiB tmpfs: it passes the 1 MiB free-space check but fills while a video is encoded."""
    folder = tmp_path / "small"
    _mount_tmpfs(folder, "size=1536k")
    yield folder
    _umount(folder)


def test_disk_full_while_encoding_is_one_line_and_leaves_nothing(small_disk: Path) -> None:
    photo = load_image(ASTRONAUT)
    rng = np.random.default_rng(0)
    _files.check_output(small_disk / "o.mp4", (".mp4",), "video")              # passes before the job
    with pytest.raises(MediaError, match="disk is full") as caught:
        with VideoWriter(small_disk / "o.mp4", fps=25, crf=0) as writer:
            for _ in range(200):                                              # lossless noise: ~0.8 MB a frame
                writer.write(np.clip(photo.astype(np.int16) + rng.integers(-40, 40, photo.shape), 0, 255)
                             .astype(np.uint8))
    assert "\n" not in str(caught.value)
    assert _tree(small_disk) == []


def test_disk_full_while_saving_an_image(small_disk: Path) -> None:
    (small_disk / "filler.bin").write_bytes(b"\0" * (1536 * 1024 - 200 * 1024))
    noise = np.random.default_rng(1).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)   # ~3 MB as PNG
    with pytest.raises(MediaError, match="disk is full"):
        save_image(small_disk / "big.png", noise)
    assert _tree(small_disk) == ["filler.bin"]


def test_cleanup_never_raises_over_the_real_error(tmp_path: Path, monkeypatch) -> None:
    """The temporary file's removal failing (e.g. EROFS) must not hide the write error."""
    real_unlink = Path.unlink

    def failing_unlink(self, missing_ok=False):
        if ".partial" in self.name:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", failing_unlink)
    with pytest.raises(MediaError, match="disk is full"):
        with _files.atomic_output(tmp_path / "o.png", (".png",), "image") as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")


def test_unrelated_os_error_is_not_reported_as_a_write_failure(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        with _files.atomic_output(tmp_path / "o.png", (".png",), "image"):
            open(tmp_path / "some-input.wav", "rb")
    assert _tree(tmp_path) == []


# --------------------------------------------------------------- SIGTERM
_SLOW_JOB = """
import sys, time
from talkinghead import cli
from talkinghead.engine import Engine, VideoJob

def frames(source):  # the photo, slowly: rendering is not what is tested here
    while True:
        time.sleep(0.05)
        yield source.image

Engine.animate_keyframes = lambda self, source, track, render: VideoJob(frames(source), 25.0, 10 ** 6)
sys.exit(cli.main(sys.argv[1:]))
"""


def test_sigterm_mid_job_removes_the_partial_file(tmp_path: Path, lp_weights_dir: Path) -> None:
    """``python -m talkinghead``'s main under SIGTERM while the output is being written (frames: the photo)."""
    keys = tmp_path / "long.json"
    keys.write_text(json.dumps({"fps": 25, "keyframes": [{"t": 0.0}, {"t": 4.0, "yaw": 20}]}))
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-c", _SLOW_JOB, "pose", "--source", str(ASTRONAUT), "--keyframes", str(keys),
           "--out", str(out / "o.mp4"), "--source-landmarks", str(landmarks_json("astronaut.png")),
           "--weights", str(lp_weights_dir), "--device", "cpu", "--quiet"]
    job = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob(".o.*.partial.mp4")):                    # the writer opens at the first frame
            assert job.poll() is None, job.communicate()
            assert time.monotonic() < deadline, "the job wrote no partial file within 2 minutes"
            time.sleep(0.1)
        time.sleep(0.5)                                                   # a few frames into the file
        job.send_signal(signal.SIGTERM)
        _, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 143, err
    assert err.strip().splitlines() == ["stopped by SIGTERM; no output was written"]
    assert _tree(out) == []


# ---------------------------------------------------- two jobs, one output
def test_two_writers_of_the_same_output_give_one_complete_file(tmp_path: Path) -> None:
    photo = load_image(ASTRONAUT)
    frames = {"a": [photo] * 6, "b": [photo[:, ::-1].copy()] * 9}
    start = threading.Barrier(2)
    errors = []

    def job(name: str) -> None:
        try:
            start.wait()
            with VideoWriter(tmp_path / "same.mp4", fps=25) as writer:
                for frame in frames[name]:
                    writer.write(frame)
                    time.sleep(0.01)
        except Exception as exc:  # collected: a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=job, args=(name,)) for name in frames]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _tree(tmp_path) == ["same.mp4"]                                # no temporary file of either job
    assert probe_video(tmp_path / "same.mp4").n_frames in (6, 9)          # one job's whole video, not a mix


# ------------------------------------------------ smaller cases of item 4
def test_save_motion_is_the_whole_clip_not_cut_to_max_frames(inputs, tmp_path: Path, lp_weights_dir: Path,
                                                             monkeypatch, capsys) -> None:
    from talkinghead.engine import Engine
    from talkinghead.errors import TalkingHeadError

    seen = {}

    def record(self, video, **kwargs):
        seen.update(kwargs)
        raise TalkingHeadError("stop here")

    monkeypatch.setattr(Engine, "extract_motion", record)
    rc = main((VIDEO + OUT + " --save-motion {out}/m.safetensors").format(**inputs, out=tmp_path).split()
              + ["--weights", str(lp_weights_dir), "--device", "cpu", "--quiet"])
    assert rc == 2 and "stop here" in capsys.readouterr().err
    assert seen.get("max_frames") is None


def test_audio_job_motion_is_whole_when_max_frames_cuts_the_render(engine) -> None:
    from talkinghead.engine import RenderOptions
    from talkinghead.motion.frame import MotionSequence

    source = engine.prepare_source(ASTRONAUT, landmarks=landmarks_json("astronaut.png"))
    job = engine.animate_absolute_motion(source, MotionSequence.cat([source.info.motion] * 7), 25.0, RenderOptions(max_frames=2))
    assert (job.n_frames, job.motion.n_frames) == (2, 7)


def test_long_keyframe_path_is_sampled_only_to_max_frames(engine) -> None:
    from talkinghead.engine import RenderOptions
    from talkinghead.motion.keyframes import parse_keyframes, sample_controls

    track = parse_keyframes(json.dumps({"fps": 25, "keyframes": [{"t": 0.0}, {"t": 3600.0, "yaw": 20}]}), "one hour")
    assert len(sample_controls(track, 3)) == 3
    source = engine.prepare_source(ASTRONAUT, landmarks=landmarks_json("astronaut.png"))
    started = time.perf_counter()
    job = engine.animate_keyframes(source, track, RenderOptions(max_frames=2))
    assert job.n_frames == 2 and time.perf_counter() - started < 5.0


def test_one_frame_video_as_source_is_used_as_a_photo(tmp_path: Path, lp_weights_dir: Path, capsys,
                                                      monkeypatch) -> None:
    from talkinghead.engine import Engine

    # the source is prepared for real (landmarks, crop, M, F); the render is replaced by the prepared photo
    monkeypatch.setattr(Engine, "still_image", lambda self, source, *args, **kwargs: source.crop.crop)
    clip = tmp_path / "one.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(ASTRONAUT), "-frames:v", "1",
                    "-pix_fmt", "yuv444p", str(clip)], check=True)
    assert probe_video(clip).n_frames == 1
    rc = main(["pose", "--source", str(clip), "--source-landmarks", str(landmarks_json("astronaut.png")),
               "--still", str(tmp_path / "s.png"), "--no-paste-back", "--weights", str(lp_weights_dir),
               "--device", "cpu", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert load_image(tmp_path / "s.png").shape == (512, 512, 3)


def test_square_clip_without_face_found_by_the_detector(inputs, tmp_path: Path, lp_weights_dir: Path,
                                                        monkeypatch, capsys) -> None:
    """No landmark file: the default detector (patched: the real one needs a download) finds no face."""
    from talkinghead.face.landmarks import FaceAlignmentLandmarks

    _no_face_square_clip(inputs, tmp_path)
    monkeypatch.setattr(FaceAlignmentLandmarks, "landmarks", lambda self, image, frame_index=0: None)
    rc = main(["video", "--source", str(inputs["src"]), "--source-landmarks", str(inputs["srclm"]),
               "--driving", str(tmp_path / "in" / "noface.mp4"), "--out", str(tmp_path / "o.mp4"),
               "--weights", str(lp_weights_dir), "--device", "cpu", "--quiet"])
    assert rc == 2 and "no face found" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


def test_offline_detector_message_points_to_landmark_files(monkeypatch) -> None:
    face_alignment = pytest.importorskip("face_alignment")
    from talkinghead.errors import WeightsError
    from talkinghead.face.landmarks import FaceAlignmentLandmarks

    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(face_alignment, "FaceAlignment", offline)
    with pytest.raises(WeightsError, match="--source-landmarks"):
        FaceAlignmentLandmarks().landmarks(load_image(ASTRONAUT))
