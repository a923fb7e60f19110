"""The audio encoder of Ditto's audio driver: Ditto's HuBERT-Large ONNX graph run with onnxruntime.

Spec ``ditto-audio2motion.md`` §2.2.  The shipped graph
(``ditto_pytorch/aux_models/hubert_streaming_fix_kv.onnx`` of the Hub repo
``digital-avatar/ditto-talkinghead``) takes one input ``input_values``,
float32 [1, N], the raw 16 kHz waveform (no normalisation), and returns as
its first output float32 [T, 1024] encoder rows at 50 Hz, without a batch
axis.  Its convolutional front end (kernels 10,3,3,3,3,2,2; strides
5,2,2,2,2,2,2) gives encoder row k the samples [320k, 320k + 400) of the
input, so T = ⌊(N − 400) / 320⌋ + 1 (20 rows for a 6480-sample window).

Cutting audio into windows and turning rows into 25 Hz features is
:mod:`talkinghead.drivers.audio.features`; it accepts any
:class:`AudioEncoder`, so an encoder built another way (spec §10) can be
swapped in.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from ....errors import WeightsError

SAMPLE_RATE = 16000
"""Input sample rate of the encoder, Hz."""

FEATURE_DIM = 1024
"""Width of an encoder row (HuBERT Large)."""

ENCODER_STRIDE = 320
"""Samples between consecutive encoder rows (20 ms, i.e. 50 Hz)."""

ENCODER_RECEPTIVE_FIELD = 400
"""Samples seen by one encoder row (25 ms)."""

INPUT_NAME = "input_values"
"""Name of the ONNX graph's waveform input."""

_LOAD_ERRORS = (
    ort_errors.Fail, ort_errors.InvalidArgument, ort_errors.InvalidGraph, ort_errors.InvalidProtobuf,
    ort_errors.NoSuchFile, ort_errors.NotImplemented, ort_errors.RuntimeException,
)
"""What onnxruntime raises for a file that is not a loadable ONNX model."""


def encoder_frame_count(n_samples: int) -> int:
    """Number of encoder rows for ``n_samples`` input samples (0 if shorter than one receptive field).

    Valid (unpadded) convolutions compose to one of kernel 400 and stride 320
    (spec §2.2): T = ⌊(N − 400) / 320⌋ + 1.
    """
    if n_samples < ENCODER_RECEPTIVE_FIELD:
        return 0
    return (n_samples - ENCODER_RECEPTIVE_FIELD) // ENCODER_STRIDE + 1


class AudioEncoder(Protocol):
    """Anything that turns one waveform window into 50 Hz encoder rows."""

    def __call__(self, window: np.ndarray) -> np.ndarray:
        """Encode one window.

        Args:
            window: (N,) float32 waveform at 16 kHz, nominally in [-1, 1].

        Returns:
            (T, 1024) float32 encoder rows at 50 Hz; row k covers samples
            [320k, 320k + 400) of the window (possibly preceded by extra rows:
            callers index rows from the end, as Ditto does).

        Raises:
            WeightsError: the encoder's output does not have that layout.
        """
        ...


class OnnxAudioEncoder:
    """Ditto's HuBERT ONNX graph (spec §2.2) behind the :class:`AudioEncoder` interface.

    The onnxruntime session is created in the constructor, so a wrong file
    fails at once.  Providers are chosen by :func:`execution_providers`: the
    CUDA execution provider first when ``device`` is a CUDA device and the
    installed onnxruntime offers it (the ``onnxruntime-gpu`` build, extra
    ``talkinghead[gpu]``), otherwise the CPU provider, with one warning per
    process if CUDA was asked for (also when onnxruntime-gpu could not load
    its CUDA libraries).

    Args:
        path: the ``.onnx`` file.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a :class:`torch.device`.

    Raises:
        WeightsError: the file is missing or not a loadable ONNX model, its
            input is not ``input_values`` [1, N], or its first output is not
            [T, 1024] / [1, T, 1024] (checked on the static shapes here and on
            every call's actual output).
    """

    def __init__(self, path: str | Path, device: str | torch.device = "cpu") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise WeightsError(f"audio encoder {self.path} not found; download Ditto's hubert_streaming_fix_kv.onnx")
        try:
            requested = execution_providers(device)
            self._session = ort.InferenceSession(str(self.path), providers=requested)
        except _LOAD_ERRORS as exc:
            raise WeightsError(f"audio encoder {self.path} is not a loadable ONNX model ({exc}); "
                               "download Ditto's hubert_streaming_fix_kv.onnx again") from exc
        _check_cuda_started(self._session, requested)
        self._output_name = self._check_interface()

    @property
    def providers(self) -> list[str]:
        """onnxruntime execution providers in use, preferred first."""
        return self._session.get_providers()

    def __call__(self, window: np.ndarray) -> np.ndarray:
        """Encode one (N,) float32 16 kHz window → (T, 1024) float32 rows at 50 Hz (see :class:`AudioEncoder`)."""
        batch = np.ascontiguousarray(window, dtype=np.float32)[None]
        rows = self._session.run([self._output_name], {INPUT_NAME: batch})[0]
        if rows.ndim == 3 and rows.shape[0] == 1:
            rows = rows[0]
        if rows.ndim != 2 or rows.shape[1] != FEATURE_DIM:
            raise self._mismatch(f"its output for {window.shape[0]} samples has shape {list(rows.shape)}")
        return rows.astype(np.float32, copy=False)

    def _check_interface(self) -> str:
        """Verify the declared input/output layout; return the first output's name."""
        inputs = self._session.get_inputs()
        if [node.name for node in inputs] != [INPUT_NAME] or len(inputs[0].shape) != 2:
            found = ", ".join(f"{node.name} {node.shape}" for node in inputs)
            raise self._mismatch(f"it takes {found} instead of {INPUT_NAME} [1, N]")
        output = self._session.get_outputs()[0]
        width = output.shape[-1] if output.shape else None
        if len(output.shape) not in (2, 3) or (isinstance(width, int) and width != FEATURE_DIM):
            raise self._mismatch(f"its first output {output.name} is {output.shape} instead of [T, {FEATURE_DIM}]")
        return output.name

    def _mismatch(self, what: str) -> WeightsError:
        return WeightsError(f"audio encoder {self.path} is not Ditto's HuBERT graph: {what}; "
                            "use hubert_streaming_fix_kv.onnx from digital-avatar/ditto-talkinghead")


CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"

GPU_INSTALL = "pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'onnxruntime-gpu[cuda,cudnn]>=1.27'"
"""How to switch to the GPU build of onnxruntime (the two packages share the ``onnxruntime`` module: never both)."""

_warned: set[str] = set()
"""Warnings already given in this process (each is given once)."""


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, UserWarning, stacklevel=4)


def _both_builds_installed() -> bool:
    """Whether the CPU and the GPU distributions of onnxruntime are both installed (they overwrite each other)."""
    from importlib import metadata

    try:
        metadata.version("onnxruntime")
        metadata.version("onnxruntime-gpu")
    except metadata.PackageNotFoundError:
        return False
    return True


def execution_providers(device: str | torch.device) -> list[str | tuple[str, dict[str, int]]]:
    """onnxruntime execution providers for the engine's torch device, preferred first.

    CUDA device (``"cuda"``, ``"cuda:1"``) and ``CUDAExecutionProvider`` in
    :func:`onnxruntime.get_available_providers` (the ``onnxruntime-gpu``
    build): ``[("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]``.
    Anything else: ``["CPUExecutionProvider"]`` — on a CUDA device with a
    warning (once per process) saying how to install the GPU build.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return [CPU_PROVIDER]
    if CUDA_PROVIDER not in ort.get_available_providers():
        why = ("onnxruntime and onnxruntime-gpu are both installed and the CPU build's files are in use"
               if _both_builds_installed() else "it is the CPU build")
        _warn_once("no-cuda-provider", f"the audio encoder (HuBERT ONNX) runs on CPU, not on {device}: the installed "
                                       f"onnxruntime has no CUDA execution provider ({why}); for the GPU: {GPU_INSTALL}")
        return [CPU_PROVIDER]
    return [(CUDA_PROVIDER, {"device_id": device.index or 0}), CPU_PROVIDER]


def _check_cuda_started(session: ort.InferenceSession, requested: list) -> None:
    """Warn (once) when CUDA was requested and offered but the session fell back to CPU (CUDA/cuDNN libraries not found)."""
    if requested and requested[0] != CPU_PROVIDER and CUDA_PROVIDER not in session.get_providers():
        _warn_once("cuda-not-started", "onnxruntime-gpu could not start CUDA (CUDA 13 / cuDNN 9 libraries not found?); "
                                       f"the audio encoder runs on CPU. Reinstall it with: {GPU_INSTALL}")
