"""File plumbing shared by the media readers and writers.

Input checks that turn a bad path into a one-line :class:`MediaError`, PyAV
containers opened with FFmpeg errors translated the same way, and atomic
output: a writer works on a temporary file next to its target that is renamed
over the target only when writing succeeded, so no half-written file is ever
left behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator

import av
import av.container
import av.stream

from talkinghead.errors import MediaError

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


@contextlib.contextmanager
def atomic_output(path: PathLike, allowed_suffixes: tuple[str, ...], kind: str) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` that replaces ``path`` on success.

    The temporary file keeps the target's suffix so that format guessing from
    the file name still works.  When the ``with`` body returns, the temporary
    file is renamed over ``path`` (an atomic replace on the same file system);
    when it raises, the temporary file is deleted and the exception propagates.

    Args:
        path: the final output file.
        allowed_suffixes: lower-case suffixes (with dot) the writer supports.
        kind: what is written, for the messages (``"image"``, ``"video"``).

    Raises:
        MediaError: unsupported suffix, missing output folder, or a path that
        is an existing folder.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in allowed_suffixes:
        raise MediaError(
            f"cannot write a {kind} as {target.name!r}; use one of {', '.join(allowed_suffixes)}"
        )
    if not target.parent.is_dir():
        raise MediaError(f"output folder {target.parent} does not exist; create it first")
    if target.is_dir():
        raise MediaError(f"output path {target} is a folder; give a file name ending in {suffix}")
    # A random name rather than mkstemp: the writer creates the file itself,
    # so it gets the usual permissions (mkstemp's would be 0600).
    tmp = target.with_name(f".{target.stem}.{secrets.token_hex(6)}.partial{suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


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
