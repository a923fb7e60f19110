"""Reading plain-data pickles (configuration files) without running code from them.

Some published files that travel beside checkpoints are pickles of plain
data: Ditto's configuration (``ditto_cfg/*.pkl``, dicts, lists and NumPy
arrays) is one.  :func:`load_plain_pickle` reads such a file with an
unpickler whose ``find_class`` hands out only the few NumPy helpers needed
to rebuild arrays, dtypes and scalars; every other global (a class, a
function such as ``os.system``) is refused with a message naming it,
*before* anything it would construct or call is run.  Builtin containers
(dict, list, tuple, set, str, bytes, numbers, bool, None) need no globals
and load as usual.

The allowed names are the NumPy 1 spellings (``numpy.core.multiarray``) and
the NumPy 2 spellings (``numpy._core.multiarray``) of the same helpers, so a
file written under either NumPy loads under both.
"""

from __future__ import annotations

import io
import os
import pickle
from typing import Any

import numpy as np

from .errors import WeightsError

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [(module, name)
     for core in ("numpy.core", "numpy._core")
     for module, name in ((f"{core}.multiarray", "_reconstruct"), (f"{core}.multiarray", "scalar"),
                          (f"{core}.numeric", "_frombuffer"))]
    + [("numpy", "ndarray"), ("numpy", "dtype")]
)
"""(module, name) pairs a plain-data pickle may reference: NumPy's array,
dtype and scalar reconstructors in both NumPy 1 and NumPy 2 spellings."""


def _resolve(module: str, name: str) -> Any:
    """The object an allowed global stands for, taken from the running NumPy."""
    if (module, name) == ("numpy", "ndarray"):
        return np.ndarray
    if (module, name) == ("numpy", "dtype"):
        return np.dtype
    core = np._core if hasattr(np, "_core") else np.core  # NumPy 2 / NumPy 1
    if name == "_frombuffer":
        return core.numeric._frombuffer
    return getattr(core.multiarray, name)


class _PlainDataUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`."""

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle hook
        if (module, name) in ALLOWED_GLOBALS:
            return _resolve(module, name)
        raise WeightsError(
            f"{self.source}: refused to load, the pickle references the global {module}.{name}, which is not plain "
            "data (only dicts, lists, numbers, strings and NumPy arrays are allowed); the file is not a genuine "
            "configuration file — delete it and download it again, or pass the right file")

    def persistent_load(self, pid: Any) -> Any:
        raise WeightsError(f"{self.source}: refused to load, the pickle uses persistent ids; it is not a plain-data file")


def loads_plain_pickle(data: bytes, source: str = "pickle") -> Any:
    """Unpickle plain data (containers, numbers, strings, NumPy arrays) from bytes.

    Args:
        data: the pickled bytes (any protocol).
        source: name used in error messages (e.g. the file path).

    Returns:
        The unpickled object.

    Raises:
        WeightsError: the pickle references any global outside
            :data:`ALLOWED_GLOBALS` (the message names it; nothing it refers
            to is imported or called), uses persistent ids, or is truncated
            or corrupt.
    """
    try:
        return _PlainDataUnpickler(io.BytesIO(data), source).load()
    except WeightsError:
        raise
    except Exception as error:  # truncated or corrupt data: pickle raises many kinds
        raise WeightsError(f"{source}: not a readable pickle ({type(error).__name__}: {error}); the file is "
                           "corrupt or of another kind — delete it and download it again") from error


def load_plain_pickle(path: str | os.PathLike) -> Any:
    """Read a plain-data pickle file (see :func:`loads_plain_pickle`).

    Raises:
        WeightsError: the file cannot be read, or it is refused or corrupt.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        raise WeightsError(f"{path}: cannot read the file ({error.strerror or error})") from error
    return loads_plain_pickle(data, os.fspath(path))
