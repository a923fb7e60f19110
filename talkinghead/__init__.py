"""talkinghead: one portrait photo in, a talking-head video out.

Public API (imported lazily, so ``import talkinghead`` is cheap)::

    from talkinghead import Engine, AnimationOptions, MotionSequence

Every name in ``__all__`` is public: the engine and its option dataclasses
(whose fields carry help, range and default: :func:`widget_spec`),
the audio-backend registry, the controls and action units, keyframes and motion curves, provenance
marking, and what a long-running front end needs around the engine
(:mod:`talkinghead.session`).  The web app (``app.py``) uses these names only.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Engine": "talkinghead.engine",
    "PreparedSource": "talkinghead.engine",
    "VideoJob": "talkinghead.jobs",
    "AudioJobOptions": "talkinghead.jobs",
    "DubOptions": "talkinghead.dub_job",
    "RenderOptions": "talkinghead.jobs",
    "EngineOptions": "talkinghead.jobs",
    "DrivingCrop": "talkinghead.drivers.video",
    "resolve_device": "talkinghead.devices",
    "AnimationOptions": "talkinghead.motion.animate",
    "MotionSequence": "talkinghead.motion.frame",
    "KeypointInfo": "talkinghead.motion.frame",
    "SmoothingOptions": "talkinghead.motion.smoothing",
    "RegionSources": "talkinghead.motion.regions",
    "MixedDrivers": "talkinghead.mixed_job",
    "LiveOptions": "talkinghead.live_job",
    "LiveSession": "talkinghead.live_job",
    "LiveFrame": "talkinghead.live_job",
    "IdleOptions": "talkinghead.motion.idle",
    "CONTROL_SPECS": "talkinghead.motion.controls",
    "Controls": "talkinghead.motion.controls",
    "ACTION_UNITS": "talkinghead.motion.action_units",
    "au_controls": "talkinghead.motion.action_units",
    "parse_keyframes": "talkinghead.motion.keyframes",
    "motion_curves": "talkinghead.motion.curves",
    "plot_curves": "talkinghead.motion.curves",
    "edited_intervals": "talkinghead.motion.timeline",
    "EMOTIONS": "talkinghead.drivers.audio.ditto.condition",
    "AudioBackend": "talkinghead.drivers.audio",
    "AUDIO_BACKENDS": "talkinghead.drivers.audio",
    "audio_backend": "talkinghead.drivers.audio",
    "register_audio_backend": "talkinghead.drivers.audio",
    "EnhanceOptions": "talkinghead.enhance",
    "probe_audio": "talkinghead.media.audio",
    "save_image": "talkinghead.media.image",
    "ProvenanceOptions": "talkinghead.media.provenance",
    "load_credential": "talkinghead.media.provenance",
    "EngineLoader": "talkinghead.session",
    "SourceCache": "talkinghead.session",
    "prefetch_weights": "talkinghead.session",
    "stream_segments": "talkinghead.session",
    "write_segments": "talkinghead.session",
    "TalkingHeadError": "talkinghead.errors",
    "WidgetSpec": "talkinghead.options",
    "widget_spec": "talkinghead.options",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'talkinghead' has no attribute {name!r}")
