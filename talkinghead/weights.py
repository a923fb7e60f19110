"""Where checkpoints come from, and how they are read safely.

Resolution order for every checkpoint file (a path inside a Hub repository,
e.g. ``liveportrait/base_models/warping_module.pth``):

1. ``weights_dir`` given (CLI ``--weights DIR``, app ``TALKINGHEAD_WEIGHTS``):
   the file must be at ``DIR/<path in repo>``; nothing is downloaded.
2. otherwise ``./checkpoints/<path in repo>`` if that file exists (the
   default local place, handy for offline machines);
3. otherwise the Hugging Face Hub cache (``HF_HOME``, ``HF_HUB_CACHE``): the
   repository's current id first, then any former id it was renamed from
   (:attr:`HubFile.former_repo_ids`: ``KwaiVGI/LivePortrait`` is now
   ``KlingTeam/LivePortrait``), so a cache filled under the old name is
   still found, also with ``HF_HUB_OFFLINE=1``;
4. otherwise a download through :func:`huggingface_hub.hf_hub_download` under
   the current id (with ``HF_HUB_OFFLINE=1``: an error saying so).

Revisions: each table below is read at the revision of an environment
variable (``TALKINGHEAD_LIVEPORTRAIT_REVISION``, ``TALKINGHEAD_DITTO_REVISION``,
``TALKINGHEAD_ENHANCE_REVISION``; default ``main``).  An explicit revision
(``Engine.from_pretrained(revision=...)``, CLI ``--revision``,
``--ditto-revision``, ``--enhance-revision``; see :func:`resolve_revisions`)
overrides the variable; a file with an explicit revision is not taken from
``./checkpoints`` (which has no revisions), and ``--weights DIR`` together
with an explicit revision is refused.

Files that carry a sha256 digest (:data:`ENHANCE_FILES`) are hashed after
resolution, wherever they came from, and refused when the digest differs.

Nothing is resolved or downloaded at import time.  Files are read with
``safetensors`` or with ``torch.load(weights_only=True)`` — a pickle that
would construct anything but tensors and plain containers is refused.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import torch

from .errors import WeightsError

DEFAULT_LOCAL_DIR = Path("checkpoints")
"""Folder (relative to the working directory) searched before the Hub."""


@dataclass(frozen=True)
class HubFile:
    """One checkpoint file of a Hugging Face Hub repository.

    Attributes:
        repo_id: Hub repository (its current id), e.g. ``"KlingTeam/LivePortrait"``.
        filename: path of the file inside the repository (also its path
            below a local ``--weights`` folder).
        revision: git revision (branch, tag or commit sha) to download.
        approx_bytes: approximate size, for documentation and progress only.
        sha256: hex digest the file must have (:meth:`WeightStore.path`
            refuses any other), or None for files checked by their layout only.
        former_repo_ids: ids the repository had before a rename on the Hub
            (which redirects them); a Hub cache filled under one of them is
            used when the current id is not cached.
    """

    repo_id: str
    filename: str
    revision: str
    approx_bytes: int = 0
    sha256: str | None = None
    former_repo_ids: tuple[str, ...] = ()


def _env_revision(var: str, default: str) -> str:
    return os.environ.get(var) or default


LIVEPORTRAIT_REPO = "KlingTeam/LivePortrait"
"""Current Hub id of LivePortrait's weights (the Hub redirects the former id here)."""

LIVEPORTRAIT_FORMER_REPOS = ("KwaiVGI/LivePortrait",)
"""Former Hub ids of :data:`LIVEPORTRAIT_REPO`, still looked up in the Hub cache."""

LIVEPORTRAIT_REVISION = _env_revision("TALKINGHEAD_LIVEPORTRAIT_REVISION", "main")
"""Hub revision of ``KlingTeam/LivePortrait`` (default; an explicit revision overrides it).

The commit sha could not be read from this offline workplace; ``main`` is used
until it is pinned (set ``TALKINGHEAD_LIVEPORTRAIT_REVISION`` to a sha to pin
it on your machine).  The strict loader refuses any file whose tensor layout
differs from the one our networks expect, so a changed upstream file cannot be
loaded silently.
"""

LIVEPORTRAIT_FILES: dict[str, HubFile] = {
    name: HubFile(LIVEPORTRAIT_REPO, path, LIVEPORTRAIT_REVISION, size, former_repo_ids=LIVEPORTRAIT_FORMER_REPOS)
    for name, path, size in (
        ("appearance_feature_extractor", "liveportrait/base_models/appearance_feature_extractor.pth", 3_400_000),
        ("motion_extractor", "liveportrait/base_models/motion_extractor.pth", 112_600_000),
        ("warping_module", "liveportrait/base_models/warping_module.pth", 182_200_000),
        ("spade_generator", "liveportrait/base_models/spade_generator.pth", 221_800_000),
        ("stitching_retargeting_module", "liveportrait/retargeting_models/stitching_retargeting_module.pth", 2_300_000),
    )
}
"""The five LivePortrait renderer checkpoints (about 520 MB together)."""


class WeightStore:
    """Resolves :class:`HubFile` entries to local files (read them with :func:`read_checkpoint`).

    Args:
        weights_dir: a local folder laid out like the Hub repositories
            (``DIR/liveportrait/base_models/*.pth`` …).  When given, the Hub
            is never contacted.
        local_dir: the default local folder searched before the Hub
            (``./checkpoints``); ignored when ``weights_dir`` is given, and for
            files whose repository has an explicit revision in ``revisions``.
        cache_dir: Hub cache folder (default: huggingface_hub's own).
        revisions: Hub repo id → revision (branch, tag or commit sha) that
            overrides :attr:`HubFile.revision` for every file of that repo
            (a former repo id counts as the current one); build it with
            :func:`resolve_revisions`.

    Raises:
        WeightsError: ``weights_dir`` is not a folder, or it is given together
            with ``revisions`` (a local folder has no revisions).
    """

    def __init__(self, weights_dir: str | os.PathLike | None = None,
                 local_dir: str | os.PathLike | None = DEFAULT_LOCAL_DIR,
                 cache_dir: str | os.PathLike | None = None,
                 revisions: Mapping[str, str] | None = None) -> None:
        self.weights_dir = Path(weights_dir).expanduser() if weights_dir is not None else None
        if self.weights_dir is not None and not self.weights_dir.is_dir():
            raise WeightsError(f"weights folder {self.weights_dir} does not exist; pass a folder laid out like the Hub repos (e.g. DIR/liveportrait/base_models/*.pth)")
        self.revisions = dict(revisions or {})
        if self.weights_dir is not None and self.revisions:
            asked = ", ".join(f"{repo}@{rev}" for repo, rev in self.revisions.items())
            raise WeightsError(f"a Hub revision ({asked}) was asked for together with the local weights folder "
                               f"{self.weights_dir}, which has no revisions: drop --weights or the revision option")
        self.local_dir = Path(local_dir) if local_dir is not None else None
        self.cache_dir = cache_dir

    def pinned(self, file: HubFile) -> HubFile:
        """``file`` at the revision :attr:`revisions` gives its repository (current or former id), else as it is."""
        for repo in (file.repo_id, *file.former_repo_ids):
            if repo in self.revisions:
                return replace(file, revision=self.revisions[repo])
        return file

    def path(self, file: HubFile) -> Path:
        """Local path of ``file``, downloading it from the Hub if needed.

        The revision is :meth:`pinned`'s.  When ``file.sha256`` is set the
        file is hashed (once per path, size and modification time in this
        process) and refused if it differs.

        Raises:
            WeightsError: the file is not in ``weights_dir``; or it is not
                cached (under the current or a former repo id) and the Hub
                cannot be reached / ``HF_HUB_OFFLINE`` is set; or the
                repository/revision/file does not exist; or its sha256
                differs from ``file.sha256``.
        """
        pinned = self.pinned(file)
        path = self._locate(pinned, explicit_revision=pinned is not file)
        if file.sha256 is not None:
            _verify_sha256(path, file)
        return path

    def _locate(self, file: HubFile, explicit_revision: bool) -> Path:
        if self.weights_dir is not None:
            p = self.weights_dir / file.filename
            if not p.is_file():
                raise WeightsError(f"{p} not found: the weights folder must hold {file.filename} (from the Hub repo {file.repo_id})")
            return p
        if not explicit_revision and self.local_dir is not None and (self.local_dir / file.filename).is_file():
            return self.local_dir / file.filename
        return self._from_hub(file)

    def _from_hub(self, file: HubFile) -> Path:
        """The cached file under the current id (update-checked by huggingface_hub when online),
        else under a former id (as it is: no network), else a download under the current id."""
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(file.repo_id, file.filename, self.cache_dir, file.revision), str):
            for former in file.former_repo_ids:
                cached = try_to_load_from_cache(former, file.filename, self.cache_dir, file.revision)
                if isinstance(cached, str):
                    return Path(cached)
        return self._download(file)

    def _download(self, file: HubFile) -> Path:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

        former = f" (nor under its former id {', '.join(file.former_repo_ids)})" if file.former_repo_ids else ""
        try:
            return Path(hf_hub_download(file.repo_id, file.filename, revision=file.revision, cache_dir=self.cache_dir))
        except LocalEntryNotFoundError as e:
            raise WeightsError(
                f"{file.filename} of {file.repo_id}@{file.revision} is not in the Hub cache{former} and cannot be downloaded "
                f"(offline or HF_HUB_OFFLINE=1): connect once to download it, or pass --weights DIR"
            ) from e
        except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as e:
            raise WeightsError(f"{file.repo_id}@{file.revision}: {file.filename} does not exist on the Hub ({type(e).__name__})") from e
        except OSError as e:  # network errors, disk full, permissions
            raise WeightsError(f"could not download {file.repo_id}/{file.filename}: {e}") from e


_HASH_CHUNK = 1 << 20
_verified: set[tuple[str, int, int, str]] = set()
"""(resolved path, size, mtime_ns, digest) of files already verified in this process."""


def _verify_sha256(path: Path, file: HubFile) -> None:
    """Raise :class:`WeightsError` unless ``path`` hashes to ``file.sha256`` (1 MiB chunks, cached)."""
    stat = path.stat()
    expected = file.sha256.lower()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, expected)
    if key in _verified:
        return
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    actual = digest.hexdigest()
    if actual != expected:
        raise WeightsError(
            f"{path}: sha256 {actual} differs from the expected {expected} of {file.repo_id}/{file.filename} "
            f"(corrupt download or a different file): delete it so it is downloaded again, "
            f"or put the right file in --weights DIR"
        )
    _verified.add(key)



def read_checkpoint(path: str | os.PathLike) -> Mapping[str, Any]:
    """Read a checkpoint file into a (possibly nested) mapping of tensors.

    ``*.safetensors`` files are read with safetensors; anything else with
    ``torch.load(map_location="cpu", weights_only=True)``, which only
    rebuilds tensors and plain containers.

    Raises:
        WeightsError: the file is missing, truncated, not a checkpoint (a
            Git LFS pointer, an HTML page...), or a pickle that would execute code / build other objects (the
            message names the file and the globals it refers to that
            ``weights_only`` does not allow, read statically by
            :func:`torch.serialization.get_unsafe_globals_in_checkpoint`;
            nothing of the file is executed).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        _check_torch_file(path)
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightsError(_refusal(path, e)) from e
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise WeightsError(f"{path}: not a readable checkpoint (truncated or corrupt download?): {str(e).splitlines()[0] if str(e) else type(e).__name__}; delete it so it is downloaded again") from e
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return obj


_LFS_POINTER = b"version https://git-lfs"
_TORCH_MAGICS = (b"PK\x03\x04", b"\x80")  # torch.save's zip format; the legacy format (a pickle, protocol >= 2)


def _check_torch_file(path: Path) -> None:
    """Refuse, by its first bytes, a file that cannot be a ``torch.save`` checkpoint at all.

    Raises:
        WeightsError: a Git LFS pointer (the repository was cloned without
            the large files), or any other file that is neither torch.save's
            zip format nor its legacy pickle format (e.g. an HTML error page).
    """
    with path.open("rb") as f:
        head = f.read(64)
    if head.startswith(_LFS_POINTER):
        raise WeightsError(f"{path}: not a readable checkpoint: it is a Git LFS pointer, not the file itself; "
                           "fetch the real file (git lfs pull) or download it again")
    if not head.startswith(_TORCH_MAGICS):
        raise WeightsError(f"{path}: not a readable checkpoint (it is not a torch.save file; truncated, corrupt or "
                           "another kind of file?); delete it so it is downloaded again")


def unsafe_globals(path: str | os.PathLike) -> list[str]:
    """The ``module.name`` globals a ``torch.save`` file refers to that ``torch.load(weights_only=True)`` refuses.

    Read by disassembling the pickle (:func:`torch.serialization.get_unsafe_globals_in_checkpoint`,
    torch ≥ 2.5); nothing is executed.  Empty when the file cannot be
    disassembled that way (e.g. the pre-1.6 non-zip format) or torch is older.
    """
    try:
        from torch.serialization import get_unsafe_globals_in_checkpoint
    except ImportError:
        return []
    try:
        return sorted(get_unsafe_globals_in_checkpoint(os.fspath(path)))
    except Exception:  # noqa: BLE001 - diagnostics only: the caller raises its own error anyway
        return []


def _refusal(path: Path, error: pickle.UnpicklingError) -> str:
    """The message for a checkpoint ``torch.load(weights_only=True)`` refused: which globals, and what to do."""
    names = unsafe_globals(path)
    if names:
        what = f"it refers to {', '.join(names)}, which a plain tensor checkpoint never needs"
    else:
        lines = [line.strip() for line in str(error).splitlines() if "GLOBAL" in line]
        what = lines[0] if lines else (str(error).splitlines() or [type(error).__name__])[0]
    return (f"{path}: refused to load: the file is not a plain tensor checkpoint ({what}; loading it would run code "
            f"or build objects, so nothing of it was executed). Only use checkpoints from the official repos: "
            f"delete this file so the official one is downloaded, or put the official file in --weights DIR")


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove every occurrence of ``prefix`` from each key (LivePortrait removes
    ``"module."`` — a DistributedDataParallel leftover — this way)."""
    return {k.replace(prefix, ""): v for k, v in state_dict.items()}


DITTO_REPO = "digital-avatar/ditto-talkinghead"
DITTO_REVISION = _env_revision("TALKINGHEAD_DITTO_REVISION", "main")
"""Hub revision of ``digital-avatar/ditto-talkinghead`` (Apache-2.0); see
:data:`LIVEPORTRAIT_REVISION` for why it is ``main`` until pinned."""

DITTO_FILES: dict[str, HubFile] = {
    name: HubFile(DITTO_REPO, path, DITTO_REVISION, size)
    for name, path, size in (
        ("lmdm", "ditto_pytorch/models/lmdm_v0.4_hubert.pth", 191_200_000),
        ("audio_encoder", "ditto_pytorch/aux_models/hubert_streaming_fix_kv.onnx", 1_400_000_000),
        ("face_landmarker", "ditto_pytorch/aux_models/face_landmarker.task", 3_800_000),
        ("config", "ditto_cfg/v0.4_hubert_cfg_pytorch.pkl", 60_000),
        ("config_online", "ditto_cfg/v0.4_hubert_cfg_trt_online.pkl", 60_000),
    )
}
"""Ditto's audio→motion files (about 1.6 GB together; the renderer is LivePortrait's)."""


ENHANCE_REVISION = _env_revision("TALKINGHEAD_ENHANCE_REVISION", "main")
"""Hub revision of the enhancement checkpoints' repositories; the sha256 of
each file in :data:`ENHANCE_FILES`, not the revision, guarantees the exact
file (see :data:`LIVEPORTRAIT_REVISION` for why it is ``main``)."""

ENHANCE_FILES: dict[str, HubFile] = {
    "gfpgan": HubFile(
        "gmk123/GFPGAN", "GFPGANv1.4.pth", ENHANCE_REVISION, 348_632_874,
        "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
    ),
    "codeformer": HubFile(
        "fudan-generative-ai/hallo2", "CodeFormer/codeformer.pth", ENHANCE_REVISION, 376_637_898,
        "1009e537e0c2a07d4cabce6355f53cb66767cd4b4297ec7a4a64ca4b8a5684b7",
    ),
    "realesrgan_x2": HubFile(
        "fudan-generative-ai/hallo2", "realesrgan/RealESRGAN_x2plus.pth", ENHANCE_REVISION, 67_061_725,
        "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",
    ),
}
"""Face restoration and super-resolution checkpoints, verified by sha256.

These are the official release files, re-hosted on the Hub:

* ``gfpgan``: GFPGANv1.4.pth of the GFPGAN v1.3.4 release (Apache-2.0);
* ``codeformer``: codeformer.pth of the CodeFormer v0.1.0 release (NTU S-Lab
  License 1.0: NON-COMMERCIAL use only);
* ``realesrgan_x2``: RealESRGAN_x2plus.pth of the Real-ESRGAN v0.2.1 release
  (BSD-3-Clause).

With ``--weights DIR`` each is read from ``DIR/<filename>`` (e.g.
``DIR/CodeFormer/codeformer.pth``).
"""


REVISION_GROUPS: dict[str, tuple[str, ...]] = {
    "liveportrait": (LIVEPORTRAIT_REPO,),
    "ditto": (DITTO_REPO,),
    "enhance": tuple(dict.fromkeys(f.repo_id for f in ENHANCE_FILES.values())),
}
"""Revision group (CLI ``--revision``, ``--ditto-revision``, ``--enhance-revision``) → its Hub repo ids."""


def _current_repo_ids() -> dict[str, str]:
    """Every Hub repo id of the tables above, current or former → current."""
    ids: dict[str, str] = {}
    for table in (LIVEPORTRAIT_FILES, DITTO_FILES, ENHANCE_FILES):
        for f in table.values():
            ids[f.repo_id] = f.repo_id
            ids.update({former: f.repo_id for former in f.former_repo_ids})
    return ids


def resolve_revisions(revision: str | Mapping[str, str] | None) -> dict[str, str]:
    """Explicit Hub revisions, as the repo id → revision mapping :class:`WeightStore` takes.

    Args:
        revision: None (the tables' revisions, i.e. the ``TALKINGHEAD_*_REVISION``
            environment variables or ``main``); a string, the revision of
            LivePortrait's repo (``KlingTeam/LivePortrait``); or a mapping whose
            keys are group names of :data:`REVISION_GROUPS` (``"liveportrait"``,
            ``"ditto"``, ``"enhance"``: both enhancement repos) or Hub repo ids
            of the tables (a former id counts as the current one; a repo id
            wins over its group), and whose values are branch names, tags or
            commit shas (None values are skipped).

    Returns:
        Current Hub repo id → revision.

    Raises:
        WeightsError: an unknown key, or an empty revision or one with spaces.
    """
    if revision is None:
        return {}
    if isinstance(revision, str):
        revision = {"liveportrait": revision}
    ids = _current_repo_ids()
    groups: dict[str, str] = {}
    repos: dict[str, str] = {}
    for key, value in revision.items():
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value.strip()):
            raise WeightsError(f"revision {value!r} for {key}: give a branch name, tag or commit sha of the Hub repo")
        if key in REVISION_GROUPS:
            groups.update({repo: value.strip() for repo in REVISION_GROUPS[key]})
        elif key in ids:
            repos[ids[key]] = value.strip()
        else:
            raise WeightsError(f"unknown weights repo {key!r} for a revision: use one of {', '.join(REVISION_GROUPS)} "
                               f"or a Hub repo id ({', '.join(dict.fromkeys(ids.values()))})")
    return {**groups, **repos}
