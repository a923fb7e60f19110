"""Exceptions raised by talkinghead.

Every error that a user can cause (bad file, no face, missing weights) derives
from :class:`TalkingHeadError`; its message is one line that says what was
wrong and what to do.  The CLI prints it and exits with status 2; the app shows
it as a ``gr.Error``.  Anything else escaping the engine is a bug.
"""

from __future__ import annotations


class TalkingHeadError(Exception):
    """Base class of all user-facing errors (message: one line, actionable)."""


class MediaError(TalkingHeadError):
    """A photo, video or audio file is missing, unreadable or unusable."""


class NoFaceError(TalkingHeadError):
    """No face was found where one is required (source photo, driving frame)."""


class WeightsError(TalkingHeadError):
    """A checkpoint is missing, unsafe, or does not match the expected layout."""


class ControlError(TalkingHeadError):
    """A control value, keyframe file or motion file is invalid."""


class ProvenanceError(TalkingHeadError):
    """The C2PA signing key or certificate is missing, unreadable or unusable, or signing failed."""


class DeviceError(TalkingHeadError):
    """The device or precision asked for is not available here (no CUDA GPU; half precision on a CPU without it)."""
