"""Audio drivers: speech → LivePortrait motion, one package per backend behind :mod:`.backend`'s protocol.

Registered backends (CLI ``--audio-backend``, ``AudioJobOptions.backend``): ``"ditto"`` (:mod:`.ditto`).
"""

from .backend import AUDIO_BACKENDS, AudioBackend, SourceSettings, audio_backend, register_audio_backend
from .ditto import files as _ditto_files  # noqa: F401 - registers Ditto's weight table (revision key "ditto"); light

register_audio_backend("ditto", "talkinghead.drivers.audio.ditto.backend:DittoBackend")  # spec ditto-audio2motion.md

__all__ = ["AUDIO_BACKENDS", "AudioBackend", "SourceSettings", "audio_backend", "register_audio_backend"]
