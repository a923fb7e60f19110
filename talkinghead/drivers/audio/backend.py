"""Audio backends: speech → a motion sequence in LivePortrait's space, behind one protocol.

A backend turns 16 kHz (or its own ``sample_rate``) mono speech into
:class:`~talkinghead.motion.frame.MotionSequence` rows at its own frame rate
(``fps``), for one prepared source photo, either offline (the whole clip at
once, :meth:`AudioBackend.generate`) or while the audio arrives
(:meth:`AudioBackend.stream`).  The engine edits (expression scale, still
head, reference pose), smooths and renders that motion the same way for
every backend.

Backends are looked up by name in a registry (:func:`audio_backend`);
Ditto (:mod:`talkinghead.drivers.audio.ditto`) is registered as ``"ditto"``.
Adding a backend is one package that defines a class following
:class:`AudioBackend` plus one :func:`register_audio_backend` line (in
:mod:`talkinghead.drivers.audio`, or in the caller's own code).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Protocol, Union, runtime_checkable

from ...errors import ControlError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ...face.crop import FaceCrop
    from ...motion.frame import KeypointInfo, MotionSequence
    from ...weights import WeightStore

DEFAULT_CHUNK_SAMPLES = 3200
"""Samples per chunk when a whole waveform is streamed (0.2 s at 16 kHz)."""


@dataclass(frozen=True)
class SourceSettings:
    """How a backend wants the source photo sized and cropped (Ditto: ``StreamSDK.setup`` options).

    Attributes:
        max_size: longest side in pixels; a larger photo is resized (Ditto
            loader.py ``check_resize``: long side = max_size, short side
            rounded, both then cut down to even numbers, cv2 bilinear resize).
        crop_scale: ``crop_scale``, crop side over face size (LivePortrait's 2.3).
        crop_vx: ``crop_vx_ratio``, horizontal shift of the crop centre (× size).
        crop_vy: ``crop_vy_ratio``, vertical shift (× size; −0.125 = up).
        rotate: ``crop_flag_do_rot``, undo the head roll in the crop.
    """

    max_size: int = 1920
    crop_scale: float = 2.3
    crop_vx: float = 0.0
    crop_vy: float = -0.125
    rotate: bool = True


class SourceFace(Protocol):
    """What a backend may read of the prepared source photo (``talkinghead.engine.PreparedSource`` has it).

    Attributes:
        image: (H, W, 3) uint8 RGB photo after the size rule.
        landmarks: (68, 2) float32 landmarks in ``image`` pixels.
        crop: the 512 crop and its transforms (``crop.crop``, ``crop.M_o2c``).
        info: (1) keypoint info of the crop from M (pose in degrees,
            expression, translation, scale, canonical keypoints).
        raw: M's raw heads for the crop (pose as 66-bin logits (1, 66),
            t (1, 3), exp (1, 63), scale (1, 1), kp (1, 63)).
    """

    image: np.ndarray
    landmarks: np.ndarray
    crop: FaceCrop
    info: KeypointInfo
    raw: Mapping[str, torch.Tensor]


@runtime_checkable
class AudioBackend(Protocol):
    """Speech → motion for one source photo.

    ``options`` in every method is the job's
    :class:`talkinghead.engine.AudioJobOptions`; a backend reads the fields
    it knows (Ditto: ``driver``, ``config``, ``steps``, ``seed``,
    ``emotion``, ``blinks``) and ignores the rest.  The engine applies the
    generic ones (``expression_scale``, ``still``, ``pose_from``,
    ``pose_blend``) to the motion the backend returns.

    Optional, outside the protocol: ``open_stream(source, options)``, the
    stream in push form (an object with ``push(samples)`` and ``end()``
    returning motion chunks, ``samples``, ``config`` and ``seq_len``), which
    live sessions (:mod:`talkinghead.live_job`) need; Ditto has it.

    Attributes:
        name: the registry name (e.g. ``"ditto"``).
        fps: frame rate of the generated motion, Hz.
        sample_rate: rate of the speech input, Hz (mono float32 in [-1, 1]).
    """

    name: str
    fps: float
    sample_rate: int

    @classmethod
    def from_pretrained(cls, source: WeightStore | str | os.PathLike | None = None, revision: str | None = None,
                        device: str | torch.device = "cpu") -> AudioBackend:
        """The backend with its weights from a store, a local folder, a Hub repo id (laid out like its repo) or its own repo.

        Args:
            source: a :class:`~talkinghead.weights.WeightStore` (shared with
                the engine, which passes it positionally), a local folder, a
                Hub repo id ``"owner/name"`` (a fork or mirror), or None
                (``./checkpoints``, else the Hub cache); a backend with a
                weight table reads these with :func:`talkinghead.weights.weights_source`.
            revision: Hub revision of the backend's repo; not with a store
                (a store carries its own revisions) nor with a folder.
            device: where the backend's networks run.

        Raises:
            WeightsError: a file is missing, unsafe or of the wrong layout
                (a backend may defer reading its files to first use).
        """
        ...

    def source_settings(self, options: Any) -> SourceSettings | None:
        """How the photo is sized and cropped for this backend; None = LivePortrait's rules."""
        ...

    def stitching(self, options: Any, online: bool = False) -> bool:
        """Whether LivePortrait's stitching runs on this backend's motion."""
        ...

    def generate(self, samples: np.ndarray, source: SourceFace, options: Any, progress: bool = False) -> MotionSequence:
        """Motion of a whole speech clip (offline).

        Args:
            samples: (S,) float32 mono waveform at :attr:`sample_rate`.
            source: the prepared photo.
            options: the job's options (see the class).
            progress: show a progress bar.

        Returns:
            (N) motion frames at :attr:`fps` (degrees, source scale), N = ⌈duration·fps⌉.

        Raises:
            MediaError: empty or silent audio.  ControlError: an invalid option.
        """
        ...

    def stream(self, chunks: Iterable[np.ndarray], source: SourceFace, options: Any) -> Iterator[MotionSequence]:
        """Motion of a speech stream, chunk by chunk while the audio arrives.

        Args:
            chunks: (k,) float32 mono pieces at :attr:`sample_rate`, of any lengths, in order.
            source, options: as for :meth:`generate`.

        Yields:
            consecutive motion chunks at :attr:`fps`; ⌈duration·fps⌉ frames in all.

        Raises:
            MediaError: the stream held no audio (when it ends).
        """
        ...


AudioBackendFactory = Union[type, str]
"""A backend class (following :class:`AudioBackend`), or ``"module:Class"`` imported on first look-up."""

_REGISTRY: dict[str, AudioBackendFactory] = {}

AUDIO_BACKENDS: Mapping[str, AudioBackendFactory] = MappingProxyType(_REGISTRY)
"""Registered backends by name, in registration order (read-only view; ``list(AUDIO_BACKENDS)`` = the names)."""


def register_audio_backend(name: str, factory: AudioBackendFactory) -> None:
    """Register (or replace) the backend called ``name``.

    Args:
        name: registry name, e.g. ``"ditto"`` (CLI ``--audio-backend``).
        factory: the backend class, or ``"module:Class"`` to import it lazily.

    Raises:
        ValueError: an empty name or a malformed factory string.
    """
    if not name or not name.strip() or any(c.isspace() for c in name):
        raise ValueError(f"an audio backend name must be one word, got {name!r}")
    if isinstance(factory, str) and factory.count(":") != 1:
        raise ValueError(f"a lazy audio backend is 'module:Class', got {factory!r}")
    _REGISTRY[name] = factory


def unregister_audio_backend(name: str) -> None:
    """Remove the backend called ``name`` (no error if it is not registered)."""
    _REGISTRY.pop(name, None)


def audio_backend(name: str) -> type:
    """The backend class registered as ``name`` (imported now if it was registered lazily).

    Raises:
        ControlError: no backend is registered under ``name`` (the message lists those that are).
    """
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ControlError(f"unknown audio backend {name!r}: choose one of {', '.join(_REGISTRY) or '(none registered)'}")
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
        _REGISTRY[name] = factory
    return factory


def iter_audio_chunks(samples: np.ndarray, chunk_samples: int = DEFAULT_CHUNK_SAMPLES) -> Iterator[np.ndarray]:
    """Cut a waveform into consecutive chunks, as a live source would deliver it.

    Args:
        samples: (S,) float32 mono waveform.
        chunk_samples: samples per chunk, ≥ 1; the last chunk holds the rest.

    Yields:
        (k,) float32 views of ``samples``, k = ``chunk_samples`` except for the last.

    Raises:
        ValueError: ``samples`` is not 1-D or ``chunk_samples`` < 1 (at the call).
    """
    import numpy as np

    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"expected a 1-D mono waveform, got shape {samples.shape}")
    if chunk_samples < 1:
        raise ValueError(f"chunk_samples must be >= 1, got {chunk_samples}")
    return (samples[start:start + chunk_samples] for start in range(0, samples.size, chunk_samples))
