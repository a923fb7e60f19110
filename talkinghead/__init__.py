"""talkinghead: one portrait photo in, a talking-head video out.

Public API (imported lazily, so ``import talkinghead`` is cheap)::

    from talkinghead import Engine, AnimationOptions, MotionFrame
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Engine": "talkinghead.engine",
    "PreparedSource": "talkinghead.engine",
    "VideoJob": "talkinghead.engine",
    "AnimationOptions": "talkinghead.motion.animate",
    "MotionFrame": "talkinghead.motion.frame",
    "KeypointInfo": "talkinghead.motion.frame",
    "TalkingHeadError": "talkinghead.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'talkinghead' has no attribute {name!r}")
