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

File tables live beside their loaders (:data:`talkinghead.models.liveportrait.LIVEPORTRAIT_FILES`,
:data:`talkinghead.drivers.audio.ditto.files.DITTO_FILES`,
:data:`talkinghead.enhance.files.ENHANCE_FILES`); each registers its family
(:func:`register_weights`: revision key, table, environment variable) so that
this module, the first stage, knows their repos without importing them.  Each
family's ``from_pretrained`` (``LivePortraitNetworks``, ``DittoBackend``,
``FaceRestorer``, ``Upscaler``) takes a store, a local folder or a Hub repo id
and a revision (:func:`weights_source`).

Revisions: each table is read at the revision of an environment
variable (``TALKINGHEAD_LIVEPORTRAIT_REVISION``, ``TALKINGHEAD_DITTO_REVISION``,
``TALKINGHEAD_ENHANCE_REVISION``; default ``main``).  An explicit revision
(``Engine.from_pretrained(revision=...)``, CLI ``--revision``,
``--ditto-revision``, ``--enhance-revision``; see :func:`resolve_revisions`)
overrides the variable; a file with an explicit revision is not taken from
``./checkpoints`` (which has no revisions), and ``--weights DIR`` together
with an explicit revision is refused.

Files that carry a sha256 digest (the enhancement table's) are hashed after
resolution, wherever they came from, and refused when the digest differs.

Nothing is resolved or downloaded at import time.  Files are read with
``safetensors`` or with ``torch.load(weights_only=True)`` — a pickle that
would construct anything but tensors and plain containers is refused.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Union

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


def env_revision(var: str, default: str = "main") -> str:
    """The Hub revision set in the environment variable ``var`` (read when called), else ``default``."""
    return os.environ.get(var) or default



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


# ----------------------------------------------------------------------------- model families

@dataclass(frozen=True)
class WeightFamily:
    """The checkpoint files of one model family, as registered by the module that loads them.

    Attributes:
        key: revision key (``"liveportrait"``, ``"ditto"``, ``"enhance"``),
            a key of the mapping :func:`resolve_revisions` takes.
        files: name → :class:`HubFile`, the family's file table (it lives
            beside the family's loader).
        env_var: environment variable whose value is the table's default
            revision (e.g. ``TALKINGHEAD_DITTO_REVISION``; unset: ``main``).
    """

    key: str
    files: Mapping[str, HubFile]
    env_var: str

    @property
    def repo_ids(self) -> tuple[str, ...]:
        """The current Hub repo ids of :attr:`files`, in table order, each once."""
        return tuple(dict.fromkeys(f.repo_id for f in self.files.values()))


_FAMILIES: dict[str, WeightFamily] = {}

WEIGHT_FAMILIES: Mapping[str, WeightFamily] = MappingProxyType(_FAMILIES)
"""Registered families by key (read-only view).

A family is registered when the module holding its table is imported:
:mod:`talkinghead.models.liveportrait` (``"liveportrait"``),
:mod:`talkinghead.drivers.audio.ditto.files` (``"ditto"``, imported by
:mod:`talkinghead.drivers.audio`) and :mod:`talkinghead.enhance.files`
(``"enhance"``); :mod:`talkinghead.engine` imports all three.
"""

DEFAULT_REVISION_KEY = "liveportrait"
"""The family a bare revision string belongs to in :func:`resolve_revisions` (the renderer, which every job loads)."""


def register_weights(key: str, files: Mapping[str, HubFile], env_var: str) -> WeightFamily:
    """Register (or replace) the family ``key`` so that :func:`resolve_revisions` knows its repos.

    Raises:
        ValueError: ``key`` is not one word, or ``files`` is empty.
    """
    if not key or any(c.isspace() for c in key) or "/" in key:
        raise ValueError(f"a weight family key is one word without '/', got {key!r}")
    if not files:
        raise ValueError(f"weight family {key!r} has no files")
    family = WeightFamily(key, files, env_var)
    _FAMILIES[key] = family
    return family


def unregister_weights(key: str) -> None:
    """Remove the family ``key`` (no error if it is not registered)."""
    _FAMILIES.pop(key, None)


def _current_repo_ids() -> dict[str, str]:
    """Every Hub repo id of the registered tables, current or former → current."""
    ids: dict[str, str] = {}
    for family in _FAMILIES.values():
        for f in family.files.values():
            ids[f.repo_id] = f.repo_id
            ids.update({former: f.repo_id for former in f.former_repo_ids})
    return ids


def _checked_revision(value: object, what: str) -> str:
    """``value`` stripped; WeightsError unless it is a non-empty string without spaces."""
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value.strip()):
        raise WeightsError(f"revision {value!r} for {what}: give a branch name, tag or commit sha of the Hub repo")
    return value.strip()


def resolve_revisions(revision: str | Mapping[str, str] | None) -> dict[str, str]:
    """Explicit Hub revisions, as the repo id → revision mapping :class:`WeightStore` takes.

    Args:
        revision: None (the tables' revisions, i.e. the ``TALKINGHEAD_*_REVISION``
            environment variables or ``main``); a string, the revision of
            LivePortrait's repo (family :data:`DEFAULT_REVISION_KEY`,
            ``KlingTeam/LivePortrait``); or a mapping whose keys are family
            keys of :data:`WEIGHT_FAMILIES` (``"liveportrait"``, ``"ditto"``,
            ``"enhance"``: both enhancement repos) or Hub repo ids of their
            tables (a former id counts as the current one; a repo id wins
            over its family), and whose values are branch names, tags or
            commit shas (None values are skipped).

    Returns:
        Current Hub repo id → revision.

    Raises:
        WeightsError: an unknown key (or a family whose module was not
            imported), or an empty revision or one with spaces.
    """
    if revision is None:
        return {}
    if isinstance(revision, str):
        revision = {DEFAULT_REVISION_KEY: revision}
    ids = _current_repo_ids()
    groups: dict[str, str] = {}
    repos: dict[str, str] = {}
    for key, value in revision.items():
        if value is None:
            continue
        value = _checked_revision(value, key)
        if key in _FAMILIES:
            groups.update({repo: value for repo in _FAMILIES[key].repo_ids})
        elif key in ids:
            repos[ids[key]] = value
        else:
            raise WeightsError(f"unknown weights repo {key!r} for a revision: use one of {', '.join(sorted(_FAMILIES))} "
                               f"or a Hub repo id ({', '.join(sorted(set(ids.values())))})")
    return {**groups, **repos}


WeightSource = Union[WeightStore, str, os.PathLike, None]
"""Where a family's ``from_pretrained`` reads its files: see :func:`weights_source`."""

_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def weights_source(source: WeightSource, files: Mapping[str, HubFile],
                   revision: str | None = None) -> tuple[WeightStore, dict[str, HubFile]]:
    """The store and file table a family's ``from_pretrained`` loads from.

    Args:
        source: one of

            * a :class:`WeightStore` (e.g. the engine's): used as it is, with
              its own revisions;
            * a local folder (``str`` or path) laid out like the Hub repo(s):
              each file at ``DIR/<path in repo>``; nothing is downloaded;
            * a Hub repo id ``"owner/name"`` (a string that is not an existing
              folder), e.g. a fork or mirror: every file of ``files`` is read
              from that repo at the same path, at ``revision`` (default
              ``main``), through the Hub cache; ``./checkpoints`` is not
              searched (it holds the official repos' files);
            * None: the family's own repo(s) (``./checkpoints`` first, then
              the Hub cache, see :class:`WeightStore`), at ``revision`` if
              given, else the table's (its environment variable or ``main``).
        files: the family's table, name → :class:`HubFile`.
        revision: Hub branch, tag or commit sha; not with a store or a folder.

    Returns:
        ``(store, table)``: the table is a copy of ``files``, pointed at the
        repo id when ``source`` is one (sha256 digests are kept: a mirror
        must serve the same files).

    Raises:
        WeightsError: ``revision`` with a store or a folder; an empty
            revision or one with spaces; ``source`` is neither an existing
            folder nor a repo id.
    """
    table = dict(files)
    if revision is not None:
        revision = _checked_revision(revision, str(source) if source is not None else "the default repo")
    if isinstance(source, WeightStore):
        if revision is not None:
            raise WeightsError(f"a revision ({revision}) was given together with a weight store, which carries its "
                               "own revisions: build the store with revisions=resolve_revisions(...)")
        return source, table
    if source is None:
        return WeightStore(revisions={f.repo_id: revision for f in table.values()} if revision else None), table
    if isinstance(source, str) and not Path(source).expanduser().is_dir() and _REPO_ID.fullmatch(source):
        rev = revision or "main"
        return WeightStore(local_dir=None), {name: replace(f, repo_id=source, revision=rev, former_repo_ids=())
                                             for name, f in table.items()}
    return WeightStore(source, revisions={f.repo_id: revision for f in table.values()} if revision else None), table
