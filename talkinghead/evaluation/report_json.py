"""Strict JSON for evaluation results: non-finite numbers written as the strings ``"Infinity"``, ``"-Infinity"``
and ``"NaN"``.

PSNR of identical frames is infinite.  RFC 8259 JSON has no token for it (Python's ``json`` writes a bare
``Infinity``, which ``jq``, JavaScript's ``JSON.parse`` and most other parsers refuse), so the report spells
non-finite values as strings, the convention of the protocol-buffers JSON mapping for float fields
(protobuf.dev, "ProtoJSON format": "Infinity", "-Infinity", "NaN").  :func:`loads_results` turns them back
into floats.
"""

from __future__ import annotations

import json
import math
from typing import Any

NON_FINITE = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}
"""The strings written for non-finite numbers, and the floats they stand for."""


def _encodable(value: Any) -> Any:
    """``value`` with every non-finite float inside it (dicts, lists, tuples) replaced by its string."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _encodable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encodable(item) for item in value]
    return value


def _decoded(value: Any) -> Any:
    """``value`` with the strings of :data:`NON_FINITE` (as values, not keys) back as floats."""
    if isinstance(value, str):
        return NON_FINITE.get(value, value)
    if isinstance(value, dict):
        return {key: _decoded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decoded(item) for item in value]
    return value


def dumps_results(results: Any, indent: int | None = None) -> str:
    """``results`` (dicts, lists, str, int, float, bool, None) as strict RFC 8259 JSON text.

    Raises:
        TypeError: a value JSON cannot hold (as ``json.dumps``).
    """
    return json.dumps(_encodable(results), indent=indent, allow_nan=False)


def loads_results(text: str) -> Any:
    """JSON text written by :func:`dumps_results` (or by Python's ``json`` with bare ``Infinity``) back as
    Python values, the non-finite strings as floats.

    Raises:
        json.JSONDecodeError: not JSON.
    """
    return _decoded(json.loads(text))
