"""Ditto as an audio backend (:class:`~talkinghead.drivers.audio.backend.AudioBackend`): its files, configuration and eyes.

Loads Ditto's LMDM and HuBERT ONNX encoder (:data:`.files.DITTO_FILES`)
on first use, reads its shipped configurations (offline and online,
:mod:`.config`), measures the photo's eye conditions (MediaPipe's face mesh
as Ditto does, else the 68-point approximation, :mod:`.condition`) and runs
the offline (:mod:`.driver`) or streaming (:mod:`.stream`) generation.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch

from ....errors import WeightsError
from ....face.crop import transform_points
from ....models.lmdm import LMDM
from ....motion.frame import MotionSequence
from ....weights import HubFile, WeightSource, WeightStore, read_checkpoint, weights_source
from ..backend import SourceFace, SourceSettings
from .condition import EyeConditionProvider, EyeConditions, LandmarkEyeConditions, MediaPipeEyeConditions
from .config import DittoConfig
from .driver import AudioDriver, AudioDriverOptions, window_count
from .features import frame_count
from .files import DITTO_FILES
from .hubert import SAMPLE_RATE, OnnxAudioEncoder
from .stream import MotionStream, stream_motion
from .windows import SHIPPED_ONLINE


class DittoBackend:
    """Ditto's audio→motion (``digital-avatar/ditto-talkinghead``), 25 fps from 16 kHz speech.

    Build it with :meth:`from_pretrained`; its files are read on first use
    (the configuration for :meth:`source_settings`, LMDM and encoder for
    generation), so a job that needs only the crop rules loads no network.

    Job options read (:class:`talkinghead.engine.AudioJobOptions`):
    ``driver`` (complete :class:`AudioDriverOptions` replacing the
    configuration), ``config`` (another offline cfg pickle), ``steps``,
    ``seed``, ``emotion``, ``blinks`` (see :meth:`DittoConfig.driver_options`).

    Args:
        store: where Ditto's files are found (local folder, ``./checkpoints`` or the Hub).
        device: where LMDM runs (and the encoder, via onnxruntime's provider).
        files: Ditto's file table (:data:`.files.DITTO_FILES`, or the same
            paths in another repo: :func:`talkinghead.weights.weights_source`).
    """

    name = "ditto"
    fps = AudioDriver.fps
    sample_rate = SAMPLE_RATE

    def __init__(self, store: WeightStore, device: str | torch.device = "cpu",
                 files: Mapping[str, HubFile] = DITTO_FILES) -> None:
        self.store = store
        self.device = torch.device(device)
        self.files = dict(files)
        self._driver: AudioDriver | None = None
        self._lmdm_source = ""
        self._configs: dict[tuple[bool, str | None], DittoConfig] = {}
        self._fitted: set[int] = set()  # id()s of configurations checked against the loaded LMDM
        self._eye_provider: EyeConditionProvider | None = None

    @classmethod
    def from_pretrained(cls, source: WeightSource = None, revision: str | None = None,
                        device: str | torch.device = "cpu") -> "DittoBackend":
        """Ditto from a weight store, a local folder, a Hub repo id or its own repo (:data:`.files.DITTO_FILES`).

        Files (paths inside the repo): ``ditto_pytorch/models/lmdm_v0.4_hubert.pth``,
        ``ditto_pytorch/aux_models/hubert_streaming_fix_kv.onnx``, ``ditto_cfg/v0.4_hubert_cfg_pytorch.pkl``
        (``..._trt_online.pkl`` for streaming) and, optional, ``ditto_pytorch/aux_models/face_landmarker.task``.
        None of them is read here: each on first use.

        Args:
            source: a :class:`WeightStore` (the engine's, with its revisions);
                a folder laid out like the repo (nothing is downloaded); a Hub
                repo id ``"owner/name"`` (a fork or mirror); or None
                (``digital-avatar/ditto-talkinghead``: ``./checkpoints``, else
                the Hub cache, else a download); see
                :func:`talkinghead.weights.weights_source`.
            revision: Hub branch, tag or commit sha (default: the
                ``TALKINGHEAD_DITTO_REVISION`` variable or ``main``; a fork's
                ``main``); not with a store or a folder.
            device: "cpu", "cuda" or a torch device.

        Raises:
            WeightsError: ``revision`` with a store or a folder; a missing
                folder (a missing file: when it is first read, naming it).
        """
        store, files = weights_source(source, DITTO_FILES, revision)
        return cls(store, device, files)

    # ---------------------------------------------------------------- files
    @property
    def driver(self) -> AudioDriver:
        """Ditto's LMDM and audio encoder, loaded on first use (about 1.6 GB on first download).

        Raises:
            WeightsError: a Ditto file is missing, unsafe or of the wrong layout.
        """
        if self._driver is None:
            lmdm_path = self.store.path(self.files["lmdm"])
            checkpoint = read_checkpoint(lmdm_path)
            if not isinstance(checkpoint.get("model_state_dict"), Mapping):
                raise WeightsError(f"{lmdm_path}: no 'model_state_dict' entry; the file is not Ditto's {lmdm_path.name}")
            lmdm = LMDM.from_state_dict(checkpoint["model_state_dict"], str(lmdm_path)).to(self.device)
            self._lmdm_source = str(lmdm_path)
            encoder = OnnxAudioEncoder(self.store.path(self.files["audio_encoder"]), self.device)
            self._driver = AudioDriver(lmdm, encoder)
        return self._driver

    def use_driver(self, driver: AudioDriver) -> None:
        """Generate with ``driver`` (an LMDM and an audio encoder already built, e.g. randomly initialised
        networks for a benchmark) instead of loading Ditto's files; the configuration is still read."""
        self._driver, self._lmdm_source = driver, "given driver"

    def config(self, online: bool = False, path: str | os.PathLike | None = None) -> DittoConfig:
        """Ditto's configuration, read once (see :mod:`.config`).

        Args:
            online: the streaming configuration instead of the offline one.
            path: a cfg pickle to read instead of Ditto's (Hub / ``--weights DIR``).

        Raises:
            WeightsError: the file is missing, unsafe or malformed.
        """
        key = (online, None if path is None else os.fspath(path))
        if key not in self._configs:
            file = path if path is not None else self.store.path(self.files["config_online" if online else "config"])
            self._configs[key] = DittoConfig.load(file)
        return self._configs[key]

    def driver_options(self, options: Any, online: bool = False) -> AudioDriverOptions:
        """The generation settings of a job: ``options.driver``, else the configuration with the job's choices.

        Raises:
            WeightsError: the configuration is missing, unsafe, malformed or
                does not fit the LMDM checkpoint.
            ControlError: an invalid emotion or blink mode.
        """
        if options.driver is not None:
            return options.driver
        config = self.config(online=online, path=None if online else options.config)
        lmdm = self.driver.lmdm
        if id(config) not in self._fitted:  # configurations are cached, so each is checked once
            config.check_model(lmdm.config.motion_dim, lmdm.config.cond_dim, lmdm.config.seq_len, self._lmdm_source)
            self._fitted.add(id(config))
        return config.driver_options(steps=options.steps, seed=options.seed, emotion=options.emotion,
                                     blinks=options.blinks)

    # ----------------------------------------------------------------- eyes
    def eye_condition_provider(self) -> EyeConditionProvider:
        """MediaPipe's face mesh, as Ditto measures the eyes, falling back to the 68-point
        approximation with one warning naming the cause (Ditto's ``face_landmarker.task`` not
        available here; or, inside :class:`MediaPipeEyeConditions`, mediapipe not importable,
        the landmarker not creatable or failing, no face found)."""
        fallback = LandmarkEyeConditions()
        try:
            task_path = self.store.path(self.files["face_landmarker"])
        except WeightsError as e:
            warnings.warn(f"eye conditions estimated from the 68-point landmarks instead of MediaPipe's face "
                          f"mesh: {e}", stacklevel=3)
            return fallback
        return MediaPipeEyeConditions(task_path, fallback=fallback)

    def eye_conditions(self, source: SourceFace) -> EyeConditions:
        """Ditto's eye conditions (openness, gaze) of the source photo's 512 crop (provider made once)."""
        if self._eye_provider is None:
            self._eye_provider = self.eye_condition_provider()
        crop_points = transform_points(source.landmarks, source.crop.M_o2c).astype(np.float32)
        return self._eye_provider(source.crop.crop, crop_points)

    # ------------------------------------------------------------ protocol
    def source_settings(self, options: Any) -> SourceSettings:
        """The offline configuration's size and crop rules (``options.config`` or Ditto's).

        Raises:
            WeightsError: the configuration is missing, unsafe or malformed.
        """
        return self.config(path=options.config).source_settings

    def stitching(self, options: Any, online: bool = False) -> bool:
        """Whether the configuration (or ``options.driver``) asks for LivePortrait's stitching."""
        return self.driver_options(options, online=online).post.stitching

    def generate(self, samples: np.ndarray, source: SourceFace, options: Any, progress: bool = False) -> MotionSequence:
        """Motion of a speech clip, 25 fps, ceil(duration·25) frames (see :meth:`AudioDriver.generate`).

        Args:
            progress: show a tqdm bar over the 80-frame windows.

        Raises:
            MediaError: empty or silent audio.  ControlError: an invalid
            emotion or blink mode.  DiffusionError: an unsafe step count.
            WeightsError: see :attr:`driver` and :meth:`driver_options`.
        """
        from tqdm import tqdm

        driver = self.driver
        settings = self.driver_options(options)
        windows = window_count(frame_count(samples.size), settings.windows)
        with tqdm(total=windows, unit="window", desc="audio to motion", disable=not progress) as bar:
            return driver.generate(samples, source.raw, self.eye_conditions(source), settings,
                                   on_window=lambda _: bar.update())

    def stream(self, chunks: Iterable[np.ndarray], source: SourceFace, options: Any) -> Iterator[MotionSequence]:
        """Motion chunks of a speech stream with Ditto's online windows (see :func:`.stream.stream_motion`).

        The online configuration's settings; with ``options.driver`` set, its
        settings and Ditto's shipped online windows (:data:`.windows.SHIPPED_ONLINE`).
        """
        driver = self.driver
        settings = self.driver_options(options, online=True)
        windows = settings.windows if options.driver is None else SHIPPED_ONLINE
        return stream_motion(driver, chunks, source.raw, self.eye_conditions(source), settings, windows)

    def open_stream(self, source: SourceFace, options: Any, overlap: int | None = None) -> MotionStream:
        """:meth:`stream` in push form (a live session): ``push(samples)`` / ``end()`` → motion chunks.

        Same settings and the same motion as :meth:`stream` (:class:`.stream.MotionStream`); ``overlap``
        (frames, ≥ L/2) replaces the windows' overlap, e.g. 75 for a lower look-ahead
        (:func:`.stream.online_lookahead_ms`).
        """
        settings = self.driver_options(options, online=True)
        windows = settings.windows if options.driver is None else SHIPPED_ONLINE
        if overlap is not None:
            windows = dataclasses.replace(windows, overlap=overlap)
        return MotionStream(self.driver, source.raw, self.eye_conditions(source), settings, windows)
