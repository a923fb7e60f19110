"""README's Quick start commands (install, run the example, test) are what .ci/run runs, and they work.

The commands are read from README.md's "Quick start" section, so the README, .ci/run and the
shipped example cannot drift apart.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from talkinghead.cli import build_parser, main
from talkinghead.media.video import probe_video

from conftest import REPO, landmarks_json

README = REPO / "README.md"
CI_RUN = REPO / ".ci" / "run"


def quick_start_commands() -> list[str]:
    """The indented (4-space) command lines of README.md's ``## Quick start`` section, in order."""
    text = README.read_text()
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return [line[4:] for line in section.splitlines() if line.startswith("    ") and line.strip()]


def _one(prefix: str) -> str:
    found = [c for c in quick_start_commands() if c.startswith(prefix)]
    assert len(found) == 1, f"README Quick start should give exactly one command starting {prefix!r}: {found}"
    return found[0]


def readme_install() -> str:
    return _one("pip install ")


def readme_run() -> str:
    return _one("python -m talkinghead ")


def readme_test() -> str:
    return _one("python -m pytest")


def test_quick_start_has_one_install_one_run_one_test_command():
    install, run, test = readme_install(), readme_run(), readme_test()
    assert "requirements-dev.txt" in install, "the install command must bring the test tools"
    assert "--no-deps -r requirements-nodeps.txt" in install, "face-alignment is installed without its deps"
    assert run.split()[3] == "video"
    assert test == "python -m pytest"


def test_ci_runs_the_readme_install_and_test_lines_exactly():
    lines = [line.strip() for line in CI_RUN.read_text().splitlines()]
    assert readme_install() in lines, ".ci/run must run README's install command as written"
    assert readme_test() in lines, ".ci/run must run README's test command as written"
    assert lines.index(readme_install()) < lines.index(readme_test())


def test_install_command_files_exist():
    for name in re.findall(r"-r (\S+)", readme_install()):
        assert (REPO / name).is_file(), name


def test_run_command_parses_and_names_shipped_files():
    argv = shlex.split(readme_run())[3:]
    args = build_parser().parse_args(argv)
    for path in (args.source, args.driving):
        assert (REPO / path).is_file(), f"README's example command names {path}, which is not in the repository"
    assert Path(args.out).parts[0] == "outputs"


def test_pip_install_gives_the_talkinghead_command():
    pyproject = (REPO / "pyproject.toml").read_text()
    scripts = pyproject.split("\n[project.scripts]\n", 1)[1].split("\n[", 1)[0]
    assert re.fullmatch(r'\s*talkinghead = "talkinghead\.cli:main"\s*', scripts), scripts
    assert "`talkinghead` command" in README.read_text()


def _example_driving_landmarks(path: Path) -> Path:
    """Landmarks of assets/examples/driving_d0.mp4: that clip is lp_d0.mp4's first 50 frames resized
    512 → 256 (assets/SOURCES.md), so its dlib points are lp_d0's scaled by 1/2."""
    info = probe_video(REPO / "assets" / "examples" / "driving_d0.mp4")
    doc = json.loads(landmarks_json("lp_d0.mp4").read_text())
    scale = info.width / doc["width"]
    frames = [None if f is None else [[x * scale, y * scale] for x, y in f] for f in doc["frames"][: info.n_frames]]
    path.write_text(json.dumps({"width": info.width, "height": info.height, "n_frames": info.n_frames,
                                "fps": doc["fps"], "frames": frames}))
    return path


def test_run_command_renders_the_example(tmp_path: Path, monkeypatch, lp_weights_dir: Path) -> None:
    """README's example command, as written, plus offline weights and landmarks and one frame:
    it finds the shipped media and creates ``outputs/`` itself (run in an empty folder)."""
    (tmp_path / "assets").symlink_to(REPO / "assets")
    driving_landmarks = _example_driving_landmarks(tmp_path / "driving_d0.json")
    monkeypatch.chdir(tmp_path)
    argv = shlex.split(readme_run())[3:] + [
        "--weights", str(lp_weights_dir), "--device", "cpu", "--max-frames", "1", "--quiet",
        "--source-landmarks", str(landmarks_json("astronaut.png")), "--driving-landmarks", str(driving_landmarks)]
    assert main(argv) == 0
    out = tmp_path / build_parser().parse_args(argv).out
    info = probe_video(out)
    assert (info.width, info.height, info.n_frames) == (512, 512, 1)
