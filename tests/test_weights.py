"""Checkpoint resolution (local folder, default folder, Hub cache) and safe, strict reading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from talkinghead.errors import WeightsError
from talkinghead.weights import HubFile, WeightStore, read_checkpoint, strip_prefix
from talkinghead.weights_strict import load_state_dict_strict

SHA = "0123456789abcdef0123456789abcdef01234567"
FILE = HubFile("KwaiVGI/LivePortrait", "liveportrait/base_models/tiny.pth", "main")


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.norm = nn.BatchNorm1d(2)


def _tiny_sd() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return Tiny().state_dict()


def _make_hub_cache(root: Path, data: dict) -> Path:
    """Lay out ``root`` like huggingface_hub's cache holding FILE at revision ``main`` = SHA."""
    repo = root / "models--KwaiVGI--LivePortrait"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(SHA)
    target = repo / "snapshots" / SHA / FILE.filename
    target.parent.mkdir(parents=True)
    torch.save(data, target)
    return target


def test_local_weights_dir(tmp_path: Path) -> None:
    target = tmp_path / FILE.filename
    target.parent.mkdir(parents=True)
    torch.save(_tiny_sd(), target)
    store = WeightStore(weights_dir=tmp_path)
    assert store.path(FILE) == target
    model = load_state_dict_strict(Tiny(), read_checkpoint(store.path(FILE)), str(target))
    assert torch.equal(model.fc.weight, _tiny_sd()["fc.weight"])


def test_missing_file_in_weights_dir_names_it(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="tiny.pth"):
        WeightStore(weights_dir=tmp_path).path(FILE)
    with pytest.raises(WeightsError, match="does not exist"):
        WeightStore(weights_dir=tmp_path / "nope")


def test_default_local_dir_is_used_before_the_hub(tmp_path: Path) -> None:
    target = tmp_path / FILE.filename
    target.parent.mkdir(parents=True)
    torch.save(_tiny_sd(), target)
    assert WeightStore(local_dir=tmp_path, cache_dir=tmp_path / "cache").path(FILE) == target


def test_hub_cache_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real huggingface_hub code path resolves a cached file with HF_HUB_OFFLINE."""
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    cache = tmp_path / "cache"
    target = _make_hub_cache(cache, _tiny_sd())
    store = WeightStore(local_dir=None, cache_dir=cache)
    got = store.path(FILE)
    assert got.resolve() == target.resolve()
    load_state_dict_strict(Tiny(), read_checkpoint(store.path(FILE)), str(got))
    pinned = HubFile(FILE.repo_id, FILE.filename, SHA)
    assert store.path(pinned).resolve() == target.resolve()
    # a file the cache does not hold gives a clear, actionable error
    with pytest.raises(WeightsError, match="not in the Hub cache"):
        store.path(HubFile(FILE.repo_id, "liveportrait/base_models/other.pth", "main"))


def test_renamed_key_is_refused_with_its_name(tmp_path: Path) -> None:
    sd = _tiny_sd()
    sd["fc.weight_renamed"] = sd.pop("fc.weight")
    with pytest.raises(WeightsError) as e:
        load_state_dict_strict(Tiny(), sd, "tiny.pth")
    assert "'fc.weight'" in str(e.value) and "fc.weight_renamed" in str(e.value) and "tiny.pth" in str(e.value)


def test_wrong_shape_is_refused_with_its_name() -> None:
    sd = _tiny_sd()
    sd["fc.weight"] = torch.zeros(2, 4)
    with pytest.raises(WeightsError, match=r"'fc.weight' has shape \[2, 4\], expected \[2, 3\]"):
        load_state_dict_strict(Tiny(), sd, "tiny.pth")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_code_executing_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"fc.weight": _Exploit()}, path)
    with pytest.raises(WeightsError, match="refused"):
        read_checkpoint(path)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.pth"
    torch.save(_tiny_sd(), path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(WeightsError, match="not a readable checkpoint"):
        read_checkpoint(path)


def test_safetensors_is_read(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "tiny.safetensors"
    save_file(_tiny_sd(), str(path))
    assert set(read_checkpoint(path)) == set(_tiny_sd())


def test_strip_prefix_removes_every_occurrence() -> None:
    sd = {"module.mlp.0.weight": torch.zeros(1), "module.mlp.module.x": torch.zeros(1)}
    assert set(strip_prefix(sd, "module.")) == {"mlp.0.weight", "mlp.x"}


def test_liveportrait_loader_names_file_and_key(tmp_path: Path, lp_weights_dir: Path, lp_manifest, fill_weights) -> None:
    """The real loader (all five files, S's nested ``module.`` layout) refuses a renamed key in S."""
    from talkinghead.models.liveportrait import load_liveportrait

    for entry in lp_manifest["files"]:
        target = tmp_path / entry["hub_path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry["id"] != "S":
            target.symlink_to(lp_weights_dir / entry["hub_path"])
            continue
        ckpt = fill_weights.fill_manifest_file(entry)
        eye = ckpt["retarget_eye"]
        eye["module.mlp.0.weight_renamed"] = eye.pop("module.mlp.0.weight")
        torch.save(ckpt, target)
    with pytest.raises(WeightsError) as e:
        load_liveportrait(WeightStore(weights_dir=tmp_path))
    message = str(e.value)
    assert "stitching_retargeting_module.pth:retarget_eye" in message and "'mlp.0.weight'" in message


# ----------------------------------------------------------------------------- Hub ids, revisions, unsafe pickles

SHA_A = "a" * 40
SHA_B = "b" * 40
WARPING = "warping_module"


def _fake_hub_cache(root: Path, repo_id: str, snapshots: dict[str, dict[str, object]], refs: dict[str, str]) -> dict[str, Path]:
    """Lay out ``root`` as huggingface_hub's cache of ``repo_id``: ``refs/<name>`` → sha, ``snapshots/<sha>/<file>``.

    ``snapshots`` maps sha → {filename: tensors to ``torch.save``, or a Path to symlink}; returns sha → snapshot folder.
    """
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for name, sha in refs.items():
        (repo / "refs" / name).write_text(sha)
    folders = {}
    for sha, files in snapshots.items():
        folders[sha] = repo / "snapshots" / sha
        folders[sha].mkdir(parents=True, exist_ok=True)
        for filename, data in files.items():
            target = folders[sha] / filename
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, Path):
                target.symlink_to(data)
            else:
                torch.save(data, target)
    return folders


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1 (environment and huggingface_hub's constant): nothing may be downloaded."""
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)


def replace_revision(file: HubFile, revision: str) -> HubFile:
    import dataclasses

    return dataclasses.replace(file, revision=revision)


def _marked(value: float) -> dict[str, torch.Tensor]:
    return {"marker": torch.tensor([float(value)])}


def test_liveportrait_repo_is_the_current_id_with_the_former_one_kept() -> None:
    from talkinghead.models.liveportrait import LIVEPORTRAIT_FILES, LIVEPORTRAIT_REPO

    assert LIVEPORTRAIT_REPO == "KlingTeam/LivePortrait"
    assert all(f.repo_id == LIVEPORTRAIT_REPO and f.former_repo_ids == ("KwaiVGI/LivePortrait",)
               for f in LIVEPORTRAIT_FILES.values())


def test_cache_under_the_former_repo_id_is_found_offline(tmp_path: Path, offline: None) -> None:
    """A Hub cache filled before the rename (models--KwaiVGI--LivePortrait) still serves the files offline."""
    from talkinghead.models.liveportrait import LIVEPORTRAIT_FILES

    file = LIVEPORTRAIT_FILES[WARPING]
    cache = tmp_path / "cache"
    old = _fake_hub_cache(cache, "KwaiVGI/LivePortrait", {SHA_A: {file.filename: _marked(1)}}, {"main": SHA_A})
    store = WeightStore(local_dir=None, cache_dir=cache)
    got = store.path(replace_revision(file, "main"))
    assert got == old[SHA_A] / file.filename and read_checkpoint(got)["marker"].item() == 1
    # pinned to the sha, and pinned through the former id as a revision key
    assert store.path(replace_revision(file, SHA_A)) == got
    assert WeightStore(local_dir=None, cache_dir=cache, revisions={"KwaiVGI/LivePortrait": SHA_A}).path(file) == got
    # once the current id is cached, it wins
    new = _fake_hub_cache(cache, "KlingTeam/LivePortrait", {SHA_B: {file.filename: _marked(2)}}, {"main": SHA_B})
    assert store.path(replace_revision(file, "main")) == new[SHA_B] / file.filename
    # a revision neither cache holds: one clear error naming both ids
    with pytest.raises(WeightsError, match=r"KlingTeam/LivePortrait@v9 is not in the Hub cache \(nor under its former id KwaiVGI/LivePortrait\)"):
        store.path(replace_revision(file, "v9"))


def test_explicit_revision_picks_its_snapshot(tmp_path: Path, offline: None) -> None:
    import talkinghead.drivers.audio  # noqa: F401 - registers the "ditto" family (its revision key)
    from talkinghead.models.liveportrait import LIVEPORTRAIT_FILES
    from talkinghead.weights import resolve_revisions

    file = replace_revision(LIVEPORTRAIT_FILES[WARPING], "main")
    cache = tmp_path / "cache"
    snaps = _fake_hub_cache(cache, "KlingTeam/LivePortrait",
                            {SHA_A: {file.filename: _marked(1)}, SHA_B: {file.filename: _marked(2)}},
                            {"main": SHA_A, "v2": SHA_B})

    def marker(revision) -> float:
        store = WeightStore(local_dir=None, cache_dir=cache, revisions=resolve_revisions(revision))
        return read_checkpoint(store.path(file))["marker"].item()

    assert marker(None) == 1                       # the table's revision: main → A
    assert marker(SHA_B) == 2                      # a string is LivePortrait's revision
    assert marker("v2") == 2                       # a tag/branch through refs/
    assert marker({"liveportrait": SHA_A}) == 1
    assert marker({"KlingTeam/LivePortrait": SHA_B, "liveportrait": SHA_A}) == 2  # repo id wins over its group
    assert marker({"ditto": SHA_B}) == 1           # another repo's revision leaves this one alone
    assert snaps[SHA_B].is_dir()


def test_explicit_revision_skips_the_default_local_folder(tmp_path: Path, offline: None) -> None:
    file = HubFile("KlingTeam/LivePortrait", "liveportrait/base_models/tiny.pth", "main")
    local = tmp_path / "checkpoints"
    (local / file.filename).parent.mkdir(parents=True)
    torch.save(_marked(0), local / file.filename)
    cache = tmp_path / "cache"
    _fake_hub_cache(cache, file.repo_id, {SHA_B: {file.filename: _marked(2)}}, {})
    assert WeightStore(local_dir=local, cache_dir=cache).path(file) == local / file.filename
    pinned = WeightStore(local_dir=local, cache_dir=cache, revisions={file.repo_id: SHA_B}).path(file)
    assert read_checkpoint(pinned)["marker"].item() == 2


def test_resolve_revisions_groups_ids_and_errors() -> None:
    from talkinghead.drivers.audio.ditto.files import DITTO_FILES, DITTO_REPO
    from talkinghead.enhance.files import ENHANCE_FILES
    from talkinghead.models.liveportrait import LIVEPORTRAIT_FILES, LIVEPORTRAIT_REPO
    from talkinghead.weights import resolve_revisions

    enhance_repos = {f.repo_id for f in ENHANCE_FILES.values()}
    assert resolve_revisions(None) == {}
    assert resolve_revisions(" abc ") == {LIVEPORTRAIT_REPO: "abc"}
    got = resolve_revisions({"liveportrait": "a", "ditto": "b", "enhance": "c", "gmk123/GFPGAN": "d", "x": None})
    assert got == {LIVEPORTRAIT_REPO: "a", DITTO_REPO: "b", **{r: "c" for r in enhance_repos}, "gmk123/GFPGAN": "d"}
    store = WeightStore(revisions=resolve_revisions({"ditto": "v2", "enhance": "v3"}))
    assert store.pinned(DITTO_FILES["lmdm"]).revision == "v2"
    assert {store.pinned(f).revision for f in ENHANCE_FILES.values()} == {"v3"}
    assert store.pinned(LIVEPORTRAIT_FILES[WARPING]) is LIVEPORTRAIT_FILES[WARPING]
    with pytest.raises(WeightsError, match="unknown weights repo 'nobody/model'.*ditto, enhance, liveportrait"):
        resolve_revisions({"nobody/model": "main"})
    with pytest.raises(WeightsError, match="branch name, tag or commit sha"):
        resolve_revisions({"ditto": "  "})
    with pytest.raises(WeightsError, match="branch name, tag or commit sha"):
        resolve_revisions("two words")


def test_revision_with_a_local_weights_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="no revisions: drop --weights or the revision option"):
        WeightStore(weights_dir=tmp_path, revisions={"KlingTeam/LivePortrait": SHA_A})


def test_environment_revision_is_the_default_and_explicit_revision_wins(tmp_path: Path) -> None:
    """TALKINGHEAD_LIVEPORTRAIT_REVISION (read at import, hence a fresh interpreter) vs an explicit revision."""
    import subprocess
    import sys

    cache = tmp_path / "cache"
    filename = "liveportrait/base_models/warping_module.pth"
    _fake_hub_cache(cache, "KlingTeam/LivePortrait", {SHA_A: {filename: _marked(1)}, SHA_B: {filename: _marked(2)}},
                    {"main": SHA_A})
    code = (
        "from talkinghead.models.liveportrait import LIVEPORTRAIT_FILES as F\n"
        "from talkinghead.weights import WeightStore, read_checkpoint, resolve_revisions\n"
        "f = F['warping_module']\n"
        "env = read_checkpoint(WeightStore(local_dir=None).path(f))['marker'].item()\n"
        "arg = read_checkpoint(WeightStore(local_dir=None, revisions=resolve_revisions('main')).path(f))['marker'].item()\n"
        "print(f.revision, env, arg)\n"
    )
    from conftest import REPO

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "TALKINGHEAD_LIVEPORTRAIT_REVISION": SHA_B,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [SHA_B, "2.0", "1.0"]


def test_from_pretrained_revision_loads_that_snapshot(tmp_path: Path, lp_weights_dir: Path, lp_manifest,
                                                      offline: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Engine.from_pretrained(revision=...) through the real Hub cache code path (symlinks to the filled weights)."""
    import huggingface_hub.constants as hc

    from talkinghead.engine import Engine

    cache = tmp_path / "cache"
    files = {e["hub_path"]: lp_weights_dir / e["hub_path"] for e in lp_manifest["files"]}
    _fake_hub_cache(cache, "KlingTeam/LivePortrait", {SHA_A: {}, SHA_B: files}, {"main": SHA_A})
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)  # no ./checkpoints
    with pytest.raises(WeightsError, match=r"KlingTeam/LivePortrait@main is not in the Hub cache"):
        Engine.from_pretrained(device="cpu", progress=False)
    engine = Engine.from_pretrained(device="cpu", progress=False, revision=SHA_B)
    assert engine.store.revisions == {"KlingTeam/LivePortrait": SHA_B}
    with pytest.raises(WeightsError, match="unknown weights repo"):
        Engine.from_pretrained(device="cpu", progress=False, revision={"renderer": SHA_B})


@pytest.mark.parametrize("command", [
    ["pose", "--still", "{out}.png"],
    ["video", "--driving", "{data}/driving/lp_d0.mp4", "--out", "{out}.mp4"],
    ["audio", "--audio", "{data}/audio/dt_german1.wav", "--out", "{out}.mp4"],
])
def test_cli_revision_options(tmp_path: Path, command: list[str], monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """--revision / --ditto-revision / --enhance-revision reach Engine.from_pretrained in every job."""
    from conftest import TESTDATA

    from talkinghead.cli import main
    from talkinghead.engine import Engine

    asked = {}

    def fake(**kwargs):
        asked.update(kwargs)
        raise WeightsError("stop here")

    monkeypatch.setattr(Engine, "from_pretrained", staticmethod(fake))
    photo = str(TESTDATA / "images" / "astronaut.png")
    args = [a.format(out=tmp_path / "out", data=TESTDATA) for a in command] + ["--source", photo]
    assert main(args + ["--revision", SHA_A, "--ditto-revision", "v2", "--enhance-revision", "main"]) == 2
    assert asked["revision"] == {"liveportrait": SHA_A, "ditto": "v2", "enhance": "main"}
    assert main(args) == 2 and asked["revision"] is None
    assert "stop here" in capsys.readouterr().err


def test_cli_revision_with_weights_is_a_user_error(tmp_path: Path, capsys) -> None:
    from conftest import TESTDATA

    from talkinghead.cli import main

    photo = str(TESTDATA / "images" / "astronaut.png")
    assert main(["pose", "--source", photo, "--still", str(tmp_path / "x.png"), "--weights", str(tmp_path),
                 "--revision", SHA_A]) == 2
    assert "drop --weights or the revision option" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


EXECUTED: list[str] = []


def _record(what: str) -> None:
    EXECUTED.append(what)


class _Recorder:
    """Unpickling this would call _record: proof of execution if it ever ran."""

    def __reduce__(self):
        return (_record, ("ran",))


@pytest.mark.parametrize("payload, name", [
    (lambda: _Recorder(), f"{__name__}._record"),
    (lambda: __import__("argparse").Namespace(lr=0.1), "argparse.Namespace"),
    (lambda: _Exploit(), f"{os.system.__module__}.system"),
])
def test_refused_checkpoint_names_its_unsafe_globals(tmp_path: Path, payload, name: str) -> None:
    path = tmp_path / "model.pth"
    torch.save({"state_dict": _tiny_sd(), "extra": payload()}, path)
    EXECUTED.clear()
    with pytest.raises(WeightsError) as e:
        read_checkpoint(path)
    message = str(e.value)
    assert str(path) in message and name in message and "refused" in message
    assert "weights_only=False" not in message  # never advise the unsafe way
    assert EXECUTED == []


def test_readme_front_matter_names_the_current_liveportrait_repo() -> None:
    """The Space's ``models:``/``preload_from_hub:`` follow the table (current id, every file)."""
    from conftest import REPO

    from talkinghead.models.liveportrait import LIVEPORTRAIT_FILES, LIVEPORTRAIT_REPO

    front = REPO.joinpath("README.md").read_text().split("---")[1]
    models = front.split("models:")[1].split("preload_from_hub:")[0]
    assert f"- {LIVEPORTRAIT_REPO}\n" in models and "KwaiVGI" not in front
    preload = next(line for line in front.splitlines() if line.strip().startswith(f"- {LIVEPORTRAIT_REPO} "))
    assert set(preload.split()[-1].split(",")) == {f.filename for f in LIVEPORTRAIT_FILES.values()}
