"""Which torch device and precision a job runs on, and how many frames fit on it at once.

Re-exported by :mod:`talkinghead.engine` and ``talkinghead``.  The renderer
(:class:`talkinghead.render.Renderer`) asks :func:`resolve_precision` for its
autocast dtype and :func:`frames_per_batch` for its default batch size.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import DeviceError

if TYPE_CHECKING:
    import numpy as np

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""Renderer precisions: "auto" (CUDA: fp16 autocast, LivePortrait's default; CPU: fp32), or one of the others."""

AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
"""Resolved precision name → autocast dtype (``None``: plain float32, no autocast)."""

CUDA_AUTO_PRECISION = "fp16"
"""What "auto" means on CUDA.  LivePortrait runs W and G under fp16 autocast by default
(``flag_use_half_precision: bool = True`` in KwaiVGI/LivePortrait ``src/config/inference_config.py``,
the ``torch.autocast(..., dtype=torch.float16)`` in ``src/live_portrait_wrapper.py``), so its fp16
results are the ones users know; bf16 is the choice for GPUs whose fp16 overflows ("black boxes")."""

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""/proc/cpuinfo flags of native bf16 arithmetic on x86 (AVX512-BF16 dot products, AMX tiles)."""

WG_BYTES_PER_FRAME = {"fp32": 0.7e9, "fp16": 0.6e9, "bf16": 0.6e9}
"""Peak memory of W + G per 512² frame of a batch, bytes (activations and autocast's weight copies).

Measured on CPU (torch 2.14, peak resident-memory growth of one W + G call): fp32 0.68 GB at batch 1,
+0.40 GB per further frame; bf16 autocast 0.59 GB, +0.38 GB (W's sampling grids and grid_sample stay
float32).  The batch-1 figures, rounded up, are used per frame, which leaves a margin.  On CUDA
``benchmarks/bench_render.py`` measures it per batch size (``torch.cuda.max_memory_allocated``);
correct these numbers from that table."""

MAX_AUTO_BATCH = 32
"""Largest batch :func:`frames_per_batch` picks (beyond it a GPU gains no throughput; latency grows)."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" → CUDA when available, else CPU; "cuda"/"cpu" as given.

    Raises:
        DeviceError: "cuda" asked for on a machine without a usable GPU.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for but no CUDA GPU is available to PyTorch: use --device cpu (slow) or install a CUDA build of torch")
    return device


@functools.lru_cache(maxsize=1)
def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX; on Linux: the ``flags`` of ``cpuinfo``).

    Without those instructions oneDNN emulates bf16 and it is slower than fp32.  Elsewhere than
    Linux (no /proc/cpuinfo) PyTorch's own check of oneDNN bf16 support decides
    (``torch.ops.mkldnn._is_mkldnn_bf16_supported``), which also holds on Apple silicon.
    """
    if cpuinfo.exists():
        flags = {word for line in cpuinfo.read_text().splitlines() if line.startswith("flags") for word in line.split()}
        return any(flag in flags for flag in CPU_BF16_FLAGS)
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision W and G run at on ``device``: "fp32", "fp16" or "bf16".

    "auto": :data:`CUDA_AUTO_PRECISION` on CUDA, "fp32" on CPU (CPU results then match the fp32
    goldens bit for bit).  "bf16" on CPU needs native bf16 (:func:`cpu_has_bf16`); fp16 autocast runs
    on CUDA only.

    Raises:
        DeviceError: an unknown precision, fp16 on a CPU, or bf16 on a CPU without bf16 instructions.
    """
    if precision not in PRECISIONS:
        raise DeviceError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return CUDA_AUTO_PRECISION if device.type == "cuda" else "fp32"
    if device.type == "cuda" or precision == "fp32":
        return precision
    if precision == "fp16":
        raise DeviceError("--precision fp16 runs on CUDA only: on a CPU use --precision bf16 (CPUs with AVX512-BF16 "
                          "or AMX) or fp32")
    if not cpu_has_bf16():
        raise DeviceError("--precision bf16 needs a CPU with native bf16 (AVX512-BF16 or AMX); this one has neither "
                          "and would run slower than fp32: use --precision fp32")
    return precision


def frames_per_batch(device: torch.device, precision: str, reserve: float = 0.8) -> int:
    """Default W + G batch size: 1 on CPU; on CUDA as many frames as fit in ``reserve`` of the free memory.

    Frames per batch = ``reserve`` · free bytes (``torch.cuda.mem_get_info``) / :data:`WG_BYTES_PER_FRAME`
    of the resolved ``precision``, clamped to 1 … :data:`MAX_AUTO_BATCH`.  CPUs gain nothing from larger
    batches (``bench_render.py``: batch 2 is no faster per frame than batch 1 on 2 cores).
    """
    if device.type != "cuda":
        return 1
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(MAX_AUTO_BATCH, int(reserve * free / WG_BYTES_PER_FRAME[precision])))


class HostCopy:
    """A device → host copy in flight: started at construction, :meth:`wait` gives the numpy array.

    From CUDA the copy goes into pinned host memory without blocking (ordered after the work already queued
    on the tensor's stream, with a CUDA event recorded behind it), so the host can queue more GPU work
    before it waits; PyTorch's caching host allocator reuses the pinned buffer once the array is dropped.
    A CPU tensor is handed over as it is (``tensor.numpy()``, no copy).
    """

    def __init__(self, tensor: torch.Tensor) -> None:
        self._event = None
        if tensor.device.type != "cuda":
            self._host = tensor
            return
        self._host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        self._host.copy_(tensor, non_blocking=True)
        self._event = torch.cuda.Event()
        self._event.record(torch.cuda.current_stream(tensor.device))

    def wait(self) -> "np.ndarray":
        """Block until the copy is done; the host array (the tensor's shape and dtype)."""
        if self._event is not None:
            self._event.synchronize()
        return self._host.numpy()


def to_host(tensor: torch.Tensor) -> "np.ndarray":
    """A tensor as a host numpy array, waiting for it (:class:`HostCopy`: pinned memory from CUDA)."""
    return HostCopy(tensor).wait()
