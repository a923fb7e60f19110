"""File plumbing shared by the media readers and writers.

Input checks that turn a bad path into a one-line :class:`MediaError`, PyAV
containers opened with FFmpeg errors translated the same way, and atomic
output: a writer works on a temporary file next to its target that is renamed
over the target only when writing succeeded, so no half-written file is ever
left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import av
import av.container
import av.stream

from talkinghead.errors import MediaError

if TYPE_CHECKING:
    from talkinghead.media.provenance import ProvenanceOptions

PathLike = str | os.PathLike[str]


def require_file(path: PathLike, kind: str) -> Path:
    """Return ``path`` as a :class:`Path` if it names an existing regular file.

    Args:
        path: the file to check.
        kind: what the file should be, for the message (``"video"``, ...).

    Raises:
        MediaError: the path does not exist, is not a regular file, or is
            an empty file (0 bytes: an interrupted copy or download).
    """
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{kind} file not found: {p}; check the path and try again")
    if not p.is_file():
        raise MediaError(f"{kind} path {p} is not a regular file; give the path of the {kind} file")
    if p.stat().st_size == 0:
        raise MediaError(f"{kind} file {p} is empty (0 bytes); give the path of a complete {kind} file")
    return p


def open_input(path: PathLike, kind: str, hint: str) -> av.container.InputContainer:
    """Open ``path`` for reading with PyAV.

    Args:
        path: the media file.
        kind: what it should be, for the message (``"video"``, ``"audio"``).
        hint: what to do instead, appended to the message (e.g. the formats
            that are accepted).

    Returns:
        An open input container; the caller closes it.

    Raises:
        MediaError: missing file, or FFmpeg cannot read the file at all
        (wrong format, empty or damaged file).
    """
    p = require_file(path, kind)
    try:
        return av.open(str(p), "r", metadata_errors="replace")
    except av.error.FFmpegError as exc:
        raise MediaError(f"{p} is not a readable {kind} file ({exc.strerror}); {hint}") from exc


@contextlib.contextmanager
def decoding(path: PathLike, kind: str) -> Iterator[None]:
    """Translate FFmpeg errors raised while demuxing or decoding into MediaError.

    Raises:
        MediaError: the file turned out to be damaged or truncated.
    """
    try:
        yield
    except av.error.FFmpegError as exc:
        raise MediaError(
            f"{kind} file {path} is damaged or truncated ({exc.strerror}); re-export or re-encode it"
        ) from exc


def article(word: str) -> str:
    """``"a"`` or ``"an"`` for ``word`` (by its first letter: "an image", "a video")."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def temp_name(target: Path) -> Path:
    """A fresh temporary path next to ``target`` (hidden, random, ``.partial`` + the target's suffix).

    A random name rather than mkstemp: the writer creates the file itself,
    so it gets the usual permissions (mkstemp's would be 0600); two jobs
    writing the same target never share a temporary file.
    """
    return target.with_name(f".{target.stem}.{secrets.token_hex(6)}.partial{target.suffix}")


def _check_target(target: Path, allowed_suffixes: tuple[str, ...], kind: str) -> None:
    """Suffix and not-a-folder checks shared by :func:`check_output` and :func:`atomic_output`."""
    suffix = target.suffix.lower()
    if suffix not in allowed_suffixes:
        raise MediaError(
            f"cannot write {article(kind)} {kind} as {target.name!r}; use one of {', '.join(allowed_suffixes)}"
        )
    if target.is_dir():
        raise MediaError(f"output path {target} is a folder; give a file name ending in {suffix}")


MIN_FREE_BYTES = 1 << 20
"""Free space an output folder needs before a job starts (1 MiB; the real output may need more)."""

_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO}
"""OS errors that mean "this location cannot be written" rather than a bug."""


def write_problem(exc: OSError) -> str:
    """A short human reason for a failed write (``"the disk is full"``, ``"the folder is read-only"``, …)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "the disk is full (no space left)"
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied (the folder is read-only for this user)"
    return exc.strerror or type(exc).__name__


def check_output(path: PathLike, allowed_suffixes: tuple[str, ...], kind: str) -> Path:
    """Check, before any work, that an output file can be written at ``path``.

    The suffix must be supported and ``path`` must not be a folder.  Its
    folder, or when that does not exist yet the nearest existing folder
    above it (the CLI creates missing folders), must be a writable folder
    with at least :data:`MIN_FREE_BYTES` free: a probe file with the atomic
    writer's temporary naming (:func:`temp_name`) is created, written and
    removed there, so read-only folders and file systems are found even
    when running as root (for whom permission bits do not count).

    Args:
        path: the output file.
        allowed_suffixes: lower-case suffixes (with dot) the writer supports.
        kind: what is written, for the messages (``"image"``, ``"video"``).

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        MediaError: unsupported suffix, a folder, a parent that is a file, or
        a location that cannot be written (read-only, permission, disk full).
    """
    target = Path(path).expanduser()
    _check_target(target, allowed_suffixes, kind)
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise MediaError(f"cannot write {target}: {folder} is a file, not a folder; choose another output path")
    probe = temp_name(folder / target.name)
    try:
        with open(probe, "xb") as handle:
            handle.write(b"\0")
            handle.flush()
            os.fsync(handle.fileno())
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise MediaError(f"cannot write {kind} {target}: {write_problem(exc)} in {folder}; "
                         "choose another output folder") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
    if free < MIN_FREE_BYTES:
        raise MediaError(f"cannot write {kind} {target}: the disk is full ({free} bytes free in {folder}); "
                         "free some space or choose another output folder")
    return target


_LIVE: set[Path] = set()
"""Temporary files of writers still in progress, removed at exit if a job was killed mid-write."""


@atexit.register
def _remove_live() -> None:
    for tmp in list(_LIVE):
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(path: PathLike, allowed_suffixes: tuple[str, ...], kind: str,
                  provenance: ProvenanceOptions | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` that replaces ``path`` on success.

    The temporary file keeps the target's suffix so that format guessing from
    the file name still works.  When the ``with`` body returns, the temporary
    file is signed with a C2PA manifest (when ``provenance`` is enabled, see
    :mod:`talkinghead.media.provenance`: once per file) and renamed over
    ``path`` (an atomic replace on the same file system), so ``path`` only
    ever appears complete and signed; when anything raises, the temporary
    files are deleted and the exception propagates.
    A failed write of the temporary file or the rename (disk full, read-only,
    no permission: an :class:`OSError` that does not name another file)
    becomes a one-line :class:`MediaError`; removing the temporary files never
    raises over the real error.

    Args:
        path: the final output file.
        allowed_suffixes: lower-case suffixes (with dot) the writer supports.
        kind: what is written, for the messages (``"image"``, ``"video"``).
        provenance: how to mark the file as AI-generated; ``None`` or
            ``enabled=False``: a plain file.

    Raises:
        MediaError: unsupported suffix, missing output folder, a path that
        is an existing folder, or the file could not be written.
        ProvenanceError: signing failed (nothing is left at ``path``).
    """
    target = Path(path)
    _check_target(target, allowed_suffixes, kind)
    if not target.parent.is_dir():
        raise MediaError(f"output folder {target.parent} does not exist; create it first")
    tmp = temp_name(target)
    made: list[Path] = []  # signing's temporary files (signed copy, sidecar manifest)
    _LIVE.add(tmp)
    try:
        yield tmp
        _publish(tmp, target, provenance, made)
    except OSError as exc:
        name = os.fspath(exc.filename) if isinstance(exc.filename, (str, os.PathLike)) else exc.filename
        ours = {None, str(tmp), str(target), *map(str, made)}
        if name not in ours or exc.errno not in _WRITE_ERRNOS | {None}:
            raise  # about another file (an input read while writing): not a write failure
        raise MediaError(f"cannot write {kind} {target}: {write_problem(exc)}; "
                         "no file was written, choose another output folder") from exc
    finally:
        for leftover in (tmp, *made):
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
            _LIVE.discard(leftover)


def _publish(tmp: Path, target: Path, provenance: ProvenanceOptions | None, made: list[Path]) -> None:
    """Sign the finished ``tmp`` when ``provenance`` is enabled, then rename it (and a sidecar) onto ``target``.

    Temporary files made by signing are appended to ``made`` (the caller
    removes them); a sidecar already renamed is removed again when the
    asset's rename fails.
    """
    signed, sidecar = tmp, None
    if provenance is not None and provenance.enabled:
        from talkinghead.media.provenance import sign_output

        signed, sidecar = sign_output(tmp, target, provenance)
        made.extend(p for p in (signed, sidecar) if p is not None and p != tmp)
        _LIVE.update(made)
    if sidecar is None:
        os.replace(signed, target)
        return
    from talkinghead.media.provenance import sidecar_path

    os.replace(sidecar, sidecar_path(target))
    try:
        os.replace(signed, target)
    except BaseException:
        with contextlib.suppress(OSError):
            sidecar_path(target).unlink(missing_ok=True)
        raise


def stream_duration_s(container: av.container.InputContainer, stream: av.stream.Stream) -> float | None:
    """Duration of ``stream`` in seconds as the container states it.

    The stream's own duration is preferred; the container's (the longest
    stream) is the fallback.  Returns ``None`` when neither is stored.
    """
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None
