"""``from_pretrained`` of each model family (LivePortrait networks, Ditto, restorer, upscaler):
a local folder, a Hub repo id (a fork or mirror) and a revision; never the network.

The Hub is reached in two ways without a connection: a folder laid out like
huggingface_hub's cache (the real look-up code, ``HF_HUB_OFFLINE=1``), or
``huggingface_hub.hf_hub_download`` replaced by a recorder that serves local
files and notes which repo, file and revision were asked for.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
import torch

from talkinghead.drivers.audio.ditto.backend import DittoBackend
from talkinghead.drivers.audio.ditto.files import DITTO_FILES, DITTO_REPO
from talkinghead.engine import AudioJobOptions
from talkinghead.enhance import FaceRestorer, Upscaler
from talkinghead.enhance.files import ENHANCE_FILES
from talkinghead.errors import WeightsError
from talkinghead.models.liveportrait import LIVEPORTRAIT_FILES, LivePortraitNetworks
from talkinghead.weights import (
    WEIGHT_FAMILIES,
    HubFile,
    WeightStore,
    register_weights,
    resolve_revisions,
    unregister_weights,
    weights_source,
)

SHA_A = "a" * 40
SHA_B = "b" * 40
FORK = "someone/liveportrait-fork"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """HF_HUB_OFFLINE, an empty Hub cache of our own (returned) and a working directory without ./checkpoints."""
    import huggingface_hub.constants as hc

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    return cache


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """``hf_hub_download`` serving ``served[filename]`` and recording ``(repo_id, filename, revision)``; empty cache."""
    import huggingface_hub
    import huggingface_hub.constants as hc

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    asked: list[tuple[str, str, str]] = []
    served: dict[str, Path] = {}

    def download(repo_id, filename, *, revision=None, cache_dir=None, **kwargs):
        asked.append((repo_id, filename, revision))
        if filename not in served:
            raise AssertionError(f"unexpected download of {filename}")
        return str(served[filename])

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return asked, served


def _hub_cache(root: Path, repo_id: str, files: dict[str, Path], sha: str, refs: dict[str, str]) -> None:
    """Lay out ``root`` like huggingface_hub's cache: ``files`` (links) in snapshot ``sha``, ``refs`` name → sha."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for name, target in refs.items():
        (repo / "refs" / name).write_text(target)
    for filename, data in files.items():
        path = repo / "snapshots" / sha / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(data)


# ----------------------------------------------------------------------------- the shared resolution

def test_weights_source_kinds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = WeightStore(local_dir=None)
    assert weights_source(store, LIVEPORTRAIT_FILES)[0] is store
    folder_store, table = weights_source(tmp_path, LIVEPORTRAIT_FILES)
    assert folder_store.weights_dir == tmp_path and table == LIVEPORTRAIT_FILES
    default, table = weights_source(None, DITTO_FILES, revision=" v2 ")
    assert default.weights_dir is None and default.revisions == {DITTO_REPO: "v2"} and table == DITTO_FILES
    fork_store, fork = weights_source(FORK, LIVEPORTRAIT_FILES)
    assert fork_store.local_dir is None and fork_store.revisions == {}  # ./checkpoints holds the official files
    for name, file in fork.items():
        official = LIVEPORTRAIT_FILES[name]
        assert (file.repo_id, file.filename, file.revision, file.former_repo_ids) == (FORK, official.filename, "main", ())
    assert {f.revision for f in weights_source(FORK, LIVEPORTRAIT_FILES, SHA_A)[1].values()} == {SHA_A}
    mirror = weights_source("me/mirror", ENHANCE_FILES)[1]
    assert all(mirror[k].sha256 == ENHANCE_FILES[k].sha256 for k in ENHANCE_FILES)  # a mirror serves the same files
    # an existing folder that looks like a repo id is a folder
    (tmp_path / "owner" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert weights_source("owner/name", LIVEPORTRAIT_FILES)[0].weights_dir == Path("owner/name")


@pytest.mark.parametrize("source, revision, message", [
    ("store", "v1", r"weight store, which carries its own revisions"),
    ("folder", "v1", r"local weights folder .* has no revisions"),
    ("missing", None, r"does not exist"),
    ("./not/a/folder/either", None, r"does not exist"),
    (FORK, "two words", r"branch name, tag or commit sha"),
    (None, "", r"branch name, tag or commit sha"),
])
def test_weights_source_errors(tmp_path: Path, source, revision, message) -> None:
    source = {"store": WeightStore(local_dir=None), "folder": tmp_path, "missing": tmp_path / "nope"}.get(source, source)
    with pytest.raises(WeightsError, match=message):
        weights_source(source, LIVEPORTRAIT_FILES, revision)


def test_families_are_registered_beside_their_tables() -> None:
    assert {"liveportrait", "ditto", "enhance"} <= set(WEIGHT_FAMILIES)
    assert WEIGHT_FAMILIES["liveportrait"].files is LIVEPORTRAIT_FILES
    assert WEIGHT_FAMILIES["ditto"].env_var == "TALKINGHEAD_DITTO_REVISION"
    assert WEIGHT_FAMILIES["enhance"].repo_ids == ("gmk123/GFPGAN", "fudan-generative-ai/hallo2")


def test_a_registered_family_gets_a_revision_key() -> None:
    table = {"net": HubFile("lab/voice", "voice.pth", "main")}
    with pytest.raises(WeightsError, match="unknown weights repo 'voice'"):
        resolve_revisions({"voice": "v1"})
    register_weights("voice", table, "TALKINGHEAD_VOICE_REVISION")
    try:
        assert resolve_revisions({"voice": "v1"}) == {"lab/voice": "v1"}
        assert resolve_revisions({"lab/voice": "v2", "voice": "v1"}) == {"lab/voice": "v2"}
    finally:
        unregister_weights("voice")
    assert "voice" not in WEIGHT_FAMILIES
    for key, files in (("two words", table), ("a/b", table), ("empty", {})):
        with pytest.raises(ValueError):
            register_weights(key, files, "X")


# ----------------------------------------------------------------------------- LivePortrait

def test_liveportrait_from_a_local_folder(lp_weights_dir: Path) -> None:
    nets = LivePortraitNetworks.from_pretrained(lp_weights_dir)
    path = lp_weights_dir / LIVEPORTRAIT_FILES["warping_module"].filename
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    loaded = nets.warping.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in checkpoint.items())
    assert not any(m.training for m in nets.modules())
    assert all(not p.requires_grad for m in nets.modules() for p in m.parameters())


def test_liveportrait_from_a_wrong_folder_names_the_missing_file(tmp_path: Path, lp_weights_dir: Path) -> None:
    with pytest.raises(WeightsError, match=r"appearance_feature_extractor\.pth not found.*KlingTeam/LivePortrait"):
        LivePortraitNetworks.from_pretrained(tmp_path)
    # four of the five files: the message names the fifth
    for name, file in LIVEPORTRAIT_FILES.items():
        if name != "stitching_retargeting_module":
            (tmp_path / file.filename).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / file.filename).symlink_to(lp_weights_dir / file.filename)
    with pytest.raises(WeightsError, match=r"weights folder must hold liveportrait/retargeting_models/stitching_retargeting_module\.pth"):
        LivePortraitNetworks.from_pretrained(tmp_path)
    with pytest.raises(WeightsError, match="no revisions"):
        LivePortraitNetworks.from_pretrained(lp_weights_dir, revision=SHA_A)


def test_liveportrait_from_a_fork_in_the_hub_cache(offline: Path, lp_weights_dir: Path) -> None:
    """A repo id through the real Hub cache look-up: the fork's main has no files, its revision SHA_B has them."""
    files = {f.filename: lp_weights_dir / f.filename for f in LIVEPORTRAIT_FILES.values()}
    _hub_cache(offline, FORK, files, SHA_B, {"main": SHA_A, "v2": SHA_B})
    _hub_cache(offline, "KlingTeam/LivePortrait", files, SHA_A, {"main": SHA_A})  # the official repo is no fallback
    with pytest.raises(WeightsError, match=rf"{FORK}@main is not in the Hub cache and cannot be downloaded"):
        LivePortraitNetworks.from_pretrained(FORK)
    nets = LivePortraitNetworks.from_pretrained(FORK, revision="v2")
    expected = torch.load(files[LIVEPORTRAIT_FILES["spade_generator"].filename], map_location="cpu", weights_only=True)
    assert all(torch.equal(nets.decoder.state_dict()[k], v) for k, v in expected.items())


def test_liveportrait_default_repo_at_a_revision(hub, lp_weights_dir: Path) -> None:
    asked, served = hub
    served.update({f.filename: lp_weights_dir / f.filename for f in LIVEPORTRAIT_FILES.values()})
    LivePortraitNetworks.from_pretrained(revision=SHA_B)
    assert asked == [("KlingTeam/LivePortrait", f.filename, SHA_B) for f in LIVEPORTRAIT_FILES.values()]


# ----------------------------------------------------------------------------- Ditto

def test_ditto_from_a_local_folder(all_weights_dir: Path) -> None:
    backend = DittoBackend.from_pretrained(all_weights_dir)
    assert backend.store.weights_dir == all_weights_dir and backend.files == DITTO_FILES
    assert backend.source_settings(AudioJobOptions()).max_size > 0  # the configuration was read from the folder
    assert backend.driver.lmdm is not None


def test_ditto_from_a_wrong_folder_names_the_missing_file(tmp_path: Path) -> None:
    backend = DittoBackend.from_pretrained(tmp_path)  # nothing is read before first use
    with pytest.raises(WeightsError, match=r"ditto_cfg/v0\.4_hubert_cfg_pytorch\.pkl.*digital-avatar/ditto-talkinghead"):
        backend.source_settings(AudioJobOptions())
    with pytest.raises(WeightsError, match=r"ditto_pytorch/models/lmdm_v0\.4_hubert\.pth"):
        backend.driver


@pytest.mark.parametrize("source, revision, repo, expected_revision", [
    ("me/ditto-mirror", "v2", "me/ditto-mirror", "v2"),
    ("me/ditto-mirror", None, "me/ditto-mirror", "main"),
    (None, SHA_A, DITTO_REPO, SHA_A),
    (None, None, DITTO_REPO, DITTO_FILES["config"].revision),
])
def test_ditto_repo_and_revision_reach_the_hub(hub, all_weights_dir: Path, source, revision, repo,
                                               expected_revision) -> None:
    asked, served = hub
    config = DITTO_FILES["config"].filename
    served[config] = all_weights_dir / config
    backend = DittoBackend.from_pretrained(source, revision=revision)
    assert asked == []  # nothing is fetched before first use
    backend.source_settings(AudioJobOptions())
    assert asked == [(repo, config, expected_revision)]


def test_ditto_keeps_the_engine_store(all_weights_dir: Path) -> None:
    store = WeightStore(all_weights_dir)
    assert DittoBackend.from_pretrained(store).store is store
    with pytest.raises(WeightsError, match="carries its own revisions"):
        DittoBackend.from_pretrained(store, revision="v1")


# ----------------------------------------------------------------------------- restorers and upscaler

def _verified(monkeypatch: pytest.MonkeyPatch, name: str, path: Path) -> None:
    """Let the table accept the test file ``path`` as ``name``'s (its digest instead of the official one)."""
    monkeypatch.setitem(ENHANCE_FILES, name, dataclasses.replace(ENHANCE_FILES[name], sha256=_sha256(path)))


def test_restorer_from_a_local_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gfpgan_state_dict) -> None:
    path = tmp_path / ENHANCE_FILES["gfpgan"].filename
    torch.save({"params_ema": gfpgan_state_dict}, path)
    with pytest.raises(WeightsError, match=r"GFPGANv1\.4\.pth.*differs from the expected"):
        FaceRestorer.from_pretrained("gfpgan", tmp_path)  # the official digest refuses the test file
    _verified(monkeypatch, "gfpgan", path)
    restorer = FaceRestorer.from_pretrained("gfpgan", tmp_path)
    assert restorer.kind == "gfpgan" and restorer.device == torch.device("cpu")
    loaded = restorer.net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in gfpgan_state_dict.items())


def test_restorer_errors_name_the_file_and_the_kind(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"CodeFormer/codeformer\.pth not found.*fudan-generative-ai/hallo2"):
        FaceRestorer.from_pretrained("codeformer", tmp_path)
    with pytest.raises(WeightsError, match="unknown face restorer 'gfpgan2'"):
        FaceRestorer.from_pretrained("gfpgan2", tmp_path)
    with pytest.raises(WeightsError, match="no revisions"):
        FaceRestorer.from_pretrained("gfpgan", tmp_path, revision="v1")


def test_restorer_mirror_repo_and_revision_keep_the_digest(hub, tmp_path: Path) -> None:
    asked, served = hub
    fake = tmp_path / "fake.pth"
    fake.write_bytes(b"not GFPGAN")
    served[ENHANCE_FILES["gfpgan"].filename] = fake
    with pytest.raises(WeightsError, match="differs from the expected"):
        FaceRestorer.from_pretrained("gfpgan", "me/gfpgan-mirror", revision=SHA_B)
    assert asked == [("me/gfpgan-mirror", "GFPGANv1.4.pth", SHA_B)]


def test_upscaler_from_a_folder_and_from_a_mirror(hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  x2plus_state_dict) -> None:
    asked, served = hub
    filename = ENHANCE_FILES["realesrgan_x2"].filename
    folder = tmp_path / "weights"
    with pytest.raises(WeightsError, match=r"realesrgan/RealESRGAN_x2plus\.pth not found"):
        Upscaler.from_pretrained(tmp_path)
    (folder / filename).parent.mkdir(parents=True)
    torch.save(x2plus_state_dict, folder / filename)
    _verified(monkeypatch, "realesrgan_x2", folder / filename)
    upscaler = Upscaler.from_pretrained(folder, tile=64)
    assert upscaler.tile == 64 and upscaler.descriptor.scale == 2
    served[filename] = folder / filename
    Upscaler.from_pretrained("me/esrgan-mirror", revision="v3")
    Upscaler.from_pretrained(revision="v4")
    assert asked == [("me/esrgan-mirror", filename, "v3"), ("fudan-generative-ai/hallo2", filename, "v4")]
