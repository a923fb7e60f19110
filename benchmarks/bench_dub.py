"""Dubbing speed: real-time factor split into decode, landmarks, crop + M, motion, render and encode.

    python benchmarks/bench_dub.py [--device auto|cpu|cuda] [--seconds 8] [--render-frames 2]
                                   [--source CLIP.mp4 --landmarks CLIP.json] [--audio SPEECH.wav]

The dubbing job (talkinghead/dub_job.py: :func:`dub_motion`, :func:`dub_keypoints`,
:func:`render_frames`) runs on a real talking clip (default
tests/data/testdata/talking/hdtf_RD_Radio10_0_clip_0.mp4, read at 25 fps)
with another clip's speech (default tests/data/testdata/audio/st_RD_Radio31_000.wav,
cut to ``--seconds``).  Networks (F, M, W, G, S, LMDM) are built with random
weights: speed does not depend on the values.  The real HuBERT ONNX encoder
(1.4 GB) is not available offline, so the audio features come from
bench_audio.py's stand-in encoder (same shapes, negligible cost); the
features row therefore times only the feature plumbing.

Stages (each exclusive: a stage's time excludes the stages nested in it, so
the rows add up to the total):

* decode: every source frame the job reads at 25 fps (VideoReader), both the
  motion pass and the output-order pass of rendering (ping-pong re-reads
  included), timed on the whole clip (not extrapolated);
* landmarks: the landmark provider on every source frame.  The job runs on the
  clip's landmark JSON (tests/data/testdata/landmarks, near free); extra lines
  time dlib's 68-point predictor (HOG detector + ``face_recognition_models``'
  shape predictor, if importable) and face-alignment (only if its weights are
  already in the torch hub cache: nothing is downloaded) on the same frames;
* crop + M: the source frames' own motion (crop, motion extractor M per frame);
* motion: audio features + LMDM windows + post-processing + the reference
  frame's crop/M/F + the voice-activity mouth mixing;
* render: per output frame, its source frame's crop + F, x_d, W + G and
  paste-back; timed on ``--render-frames`` frames (after ``--warmup``
  untimed ones) and extrapolated to the clip;
* encode: H.264 + AAC with the project's VideoWriter, all output frames (the
  source frames in output order stand in for the rendered ones: same size,
  similar content), timed on the whole clip.

RTF = stage seconds / speech seconds.  The baseline is measured in the same
run: the plain audio job (a photo, here the clip's first frame, with the same
speech): prepare (landmarks, crop, M, F), motion, render (extrapolated the same
way) and encode (the same frame count, size and audio track as the dub, so the
dub's measured encode time is used).  The ratio printed is dub total /
audio-job total.  On CUDA the achieved TFLOP/s of W + G alone (1,155 GFLOP per
512² frame) is printed against the device's peak (a small table of known
devices, or ``--peak-tflops``).

Measured once on this project's 2-core CPU while other jobs shared it (load
average 6-7, so every number is about 3x a quiet machine's: bench_render.py
gives ~11 s per frame there), torch 2.14.1, 2 threads, ``--device cpu
--seconds 2 --render-frames 1 --steps 10``::

    50 output frames at 25 fps from 50 source frames

    stage        seconds      RTF   share
    decode          3.57    1.784    0.2%
    landmarks       0.00    0.001    0.0%
    crop + M      135.11   67.555    6.7%
    motion         69.16   34.581    3.4%
    render       1796.65  898.325   89.6%
    encode          1.07    0.533    0.1%
    total        2005.56 1002.779  100.0%
      motion includes audio features 0.002 s (stand-in encoder: plumbing only)

    baseline, same run: the audio job on one photo (the clip's first frame), same speech
      prepare 5.05 s, motion 52.65 s, render 1846.97 s, encode 1.07 s (encode: the dub's), total 1905.73 s, RTF 952.866
      dub / audio job: total 1.05x, motion (+ decode, landmarks, crop + M) 3.60x, render 0.97x

    landmarks from a detector instead of the JSON (same source frames, not in the total):
      dlib 68-point (HOG + shape predictor): 0.2200 s per frame, 11.00 s for the 50 source frames
      face-alignment: skipped: its weights (2DFAN4, s3fd) are not in /root/.cache/torch/hub/checkpoints ...

Rendering dominates (~90 %) on CPU; dubbing's own extra cost over the audio
job is M on every source frame (crop + M, here ~2.7 s a frame).  No GPU was
available for this run: the CUDA path (and its TFLOP/s line) is untested.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import pickle
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_audio import StandInEncoder  # noqa: E402
from talkinghead import dub_job  # noqa: E402
from talkinghead.audio_job import load_samples  # noqa: E402
from talkinghead.drivers.audio.ditto import driver as driver_module  # noqa: E402
from talkinghead.drivers.audio.ditto.driver import AudioDriver  # noqa: E402
from talkinghead.engine import Engine  # noqa: E402
from talkinghead.face.landmarks import JsonLandmarks  # noqa: E402
from talkinghead.jobs import AudioJobOptions, RenderOptions  # noqa: E402
from talkinghead.media.video import AudioSamples, VideoReader, VideoWriter  # noqa: E402
from talkinghead.models.appearance import AppearanceFeatureExtractor  # noqa: E402
from talkinghead.models.liveportrait import LivePortraitNetworks  # noqa: E402
from talkinghead.models.lmdm import LMDM, LMDMConfig  # noqa: E402
from talkinghead.models.motion_extractor import MotionExtractor  # noqa: E402
from talkinghead.models.spade import SPADEDecoder  # noqa: E402
from talkinghead.models.stitching import StitchingRetargeting  # noqa: E402
from talkinghead.models.warping import WarpingNetwork  # noqa: E402
from talkinghead.render.frames import render_frames  # noqa: E402
from talkinghead.weights import WeightStore  # noqa: E402

TESTDATA = ROOT / "tests" / "data" / "testdata"
DEFAULT_SOURCE = TESTDATA / "talking" / "hdtf_RD_Radio10_0_clip_0.mp4"
DEFAULT_AUDIO = TESTDATA / "audio" / "st_RD_Radio31_000.wav"
WG_GFLOP = 1155.0
"""W + G cost per 512² frame, GFLOP (the figure given with issue 13's benchmark; multiply-add = 2 FLOP)."""

PEAK_TFLOPS = {"H200": (67.0, 495.0), "H100 SXM": (67.0, 495.0), "H100 PCIe": (51.0, 378.0),
               "H100": (67.0, 495.0), "A100": (19.5, 156.0), "L40S": (91.6, 183.0), "L4": (30.3, 60.0),
               "A10": (31.2, 62.5), "RTX 4090": (82.6, 82.6), "T4": (8.1, 8.1), "V100": (15.7, 15.7)}
"""Dense peak TFLOP/s (fp32 CUDA cores, TF32/fp16 tensor cores dense) from NVIDIA's data sheets; first match wins."""

STAGES = ("decode", "landmarks", "crop + M", "features", "motion", "render", "encode")


class Stages:
    """Exclusive seconds per stage: time inside nested stages counts only for the innermost one."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    def run(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, its time minus the nested stages' added to ``name``."""
        before = sum(self.seconds.values())
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
            self.seconds[name] += elapsed - (sum(self.seconds.values()) - before)


ACTIVE: list[Stages] = []
"""The stage table the instrumented functions write to (the last one)."""


def _stage(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn`` timed as ``name`` in the active stage table (untimed outside one)."""
    return ACTIVE[-1].run(name, fn, *args, **kwargs) if ACTIVE else fn(*args, **kwargs)


def _without_decode(stages: Stages, name: str, fn: Callable[[], Any]) -> None:
    """``fn()`` timed as ``name`` in ``stages``, the decoding inside it timed apart and left out."""
    scratch = Stages(stages.device)
    ACTIVE.append(scratch)
    try:
        scratch.run(name, fn)
    finally:
        ACTIVE.pop()
    stages.seconds[name] += scratch.seconds[name]


@contextlib.contextmanager
def instrumented() -> Iterator[None]:
    """Time VideoReader decoding, audio features and the source frames' crop + M wherever the job calls them."""
    indexed, features, source_motion = VideoReader.indexed, driver_module.offline_features, dub_job.source_video_motion

    def timed_indexed(self: VideoReader) -> Iterator[tuple[int, np.ndarray]]:
        frames = indexed(self)
        try:
            while True:
                item = _stage("decode", next, frames, None)
                if item is None:
                    return
                yield item
        finally:
            frames.close()

    VideoReader.indexed = timed_indexed
    driver_module.offline_features = lambda *a, **k: _stage("features", features, *a, **k)
    dub_job.source_video_motion = lambda *a, **k: _stage("crop + M", source_motion, *a, **k)
    try:
        yield
    finally:
        VideoReader.indexed, driver_module.offline_features = indexed, features
        dub_job.source_video_motion = source_motion


class TimedLandmarks:
    """A landmark provider whose calls are timed as the "landmarks" stage."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def landmarks(self, image: np.ndarray, frame_index: int = 0) -> np.ndarray | None:
        return _stage("landmarks", self.inner.landmarks, image, frame_index)


def build_engine(device: torch.device, precision: str, folder: Path) -> Engine:
    """An engine with random-weight F, M, W, G, S and a Ditto backend on a random LMDM + stand-in encoder.

    The Ditto configuration pickle (Ditto's layout, code-default windows) is written to ``folder``.
    """
    torch.manual_seed(0)
    nets = LivePortraitNetworks(AppearanceFeatureExtractor(), MotionExtractor(), WarpingNetwork(), SPADEDecoder(),
                                StitchingRetargeting())
    for net in nets.modules():
        net.eval().requires_grad_(False)
    nets.to(device)
    cfg = {"base_cfg": {}, "audio2motion_cfg": {"motion_feat_dim": 265, "audio_feat_dim": 1103, "seq_frames": 80,
                                                "use_emo": True, "use_sc": True, "use_eye_open": True,
                                                "use_eye_ball": True, "w2f_type": "hubert"},
           "default_kwargs": {}}
    (folder / "ditto_cfg").mkdir(parents=True, exist_ok=True)
    (folder / "ditto_cfg" / "v0.4_hubert_cfg_pytorch.pkl").write_bytes(pickle.dumps(cfg, protocol=4))
    engine = Engine(nets, precision=precision, store=WeightStore(folder))
    backend = engine.audio_backend("ditto")
    backend.use_driver(AudioDriver(LMDM(LMDMConfig()).eval().requires_grad_(False).to(device), StandInEncoder()))
    return engine


def timed_frames(stages: Stages, frames: Iterator[np.ndarray], warmup: int, count: int) -> float:
    """Seconds per frame of ``frames`` (exclusive "render" time over ``count`` frames after ``warmup``)."""
    scratch = Stages(stages.device)
    ACTIVE.append(scratch)
    try:
        for _ in range(warmup):
            next(frames)
        ACTIVE[-1] = timed = Stages(stages.device)
        for _ in range(count):
            timed.run("render", next, frames)
    finally:
        ACTIVE.pop()
        getattr(frames, "close", lambda: None)()
    return timed.seconds["render"] / count


def dub(engine: Engine, args: argparse.Namespace, samples: np.ndarray, options: AudioJobOptions,
        stages: Stages, out: Path) -> tuple[int, int]:
    """The dubbing job's stages into ``stages``; returns its output and source frame counts (N, S)."""
    provider = TimedLandmarks(JsonLandmarks(args.landmarks))
    render = RenderOptions()
    ACTIVE.append(stages)
    try:
        dubbed = stages.run("motion", dub_job.dub_motion, engine, args.source, samples, options, render,
                            dub_job.DubOptions(), provider)
        n, fps, order = dubbed.motion.n_frames, dubbed.fps, dubbed.index.tolist()
        frames = render_frames(engine.renderer, dub_job.dub_keypoints(engine, args.source, dubbed, render),
                               engine.finisher(render))
        stages.seconds["render"] += n * timed_frames(stages, frames, args.warmup, args.render_frames)
        for _ in dub_job.frames_in_order(args.source, fps, order):  # the render pass's decoding, whole clip
            pass
        track = AudioSamples(samples, 16000).cut(0.0, n / fps)

        def encode() -> None:
            with VideoWriter(out, fps=fps, audio=track) as writer:
                for frame in dub_job.frames_in_order(args.source, fps, order):
                    writer.write(frame)

        _without_decode(stages, "encode", encode)
    finally:
        ACTIVE.pop()
    return n, len(dubbed.raws)


def audio_job(engine: Engine, args: argparse.Namespace, samples: np.ndarray, options: AudioJobOptions,
              stages: Stages) -> None:
    """The plain audio job on the clip's first frame (a photo) into ``stages`` (encode: not run here)."""
    with VideoReader(args.source, fps=25, max_frames=1) as reader:
        photo = next(iter(reader))
    backend = engine.audio_backend(options.backend)
    ACTIVE.append(stages)
    try:
        source = stages.run("crop + M", engine.prepare_source, photo, TimedLandmarks(JsonLandmarks(args.landmarks)),
                            engine.audio_source_settings(options))
        motion = stages.run("motion", engine.audio_motion, source, samples, options)
        job = engine.animate_absolute_motion(source, motion, backend.fps, RenderOptions(batch_size=1),  # as the dub
                                             stitching=backend.stitching(options))
        stages.seconds["render"] += motion.n_frames * timed_frames(stages, iter(job.frames), args.warmup,
                                                                   args.render_frames)
    finally:
        ACTIVE.pop()


def landmark_alternatives(source: Path, n_frames: int, frames: int) -> list[str]:
    """Lines timing dlib's and face-alignment's 68 points on ``frames`` source frames, extrapolated to ``n_frames``."""
    with VideoReader(source, fps=25, max_frames=min(frames, n_frames)) as reader:
        images = list(reader)
    lines = []
    models = importlib.util.find_spec("face_recognition_models")  # not imported: it needs pkg_resources
    predictor_file = (Path(list(models.submodule_search_locations)[0]) / "models" /
                      "shape_predictor_68_face_landmarks.dat") if models else None
    try:
        import dlib

        if predictor_file is None or not predictor_file.is_file():
            raise ImportError("face_recognition_models' shape_predictor_68_face_landmarks.dat not found")
        detector = dlib.get_frontal_face_detector()
        predictor = dlib.shape_predictor(str(predictor_file))

        def dlib_points(image: np.ndarray) -> None:
            for box in detector(image, 1)[:1]:
                predictor(image, box)

        lines.append(("dlib 68-point (HOG + shape predictor)", _per_frame(dlib_points, images)))
    except ImportError as e:
        lines.append(("dlib 68-point", f"skipped: {e}"))
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    if any(hub.glob("2DFAN4*")) and any(hub.glob("s3fd*")):
        from talkinghead.face.landmarks import FaceAlignmentLandmarks

        model = FaceAlignmentLandmarks(device="cuda" if torch.cuda.is_available() else "cpu")
        lines.append(("face-alignment (S3FD + FAN)", _per_frame(model.landmarks, images)))
    else:
        lines.append(("face-alignment", f"skipped: its weights (2DFAN4, s3fd) are not in {hub} and nothing is "
                                        "downloaded offline"))
    return [f"{name}: {value}" if isinstance(value, str) else
            f"{name}: {value:.4f} s per frame, {value * n_frames:.2f} s for the {n_frames} source frames"
            for name, value in lines]


def _per_frame(fn: Callable[[np.ndarray], Any], images: list[np.ndarray]) -> float:
    fn(images[0])  # warm-up
    start = time.perf_counter()
    for image in images:
        fn(image)
    return (time.perf_counter() - start) / len(images)


def wg_tflops(engine: Engine, device: torch.device, repeats: int, peak: float | None) -> str:
    """Achieved TFLOP/s of W + G alone (median of ``repeats`` after one warm-up) against the device's peak."""
    feature = torch.randn(1, 32, 16, 64, 64, device=device)
    kp = 0.2 * torch.randn(1, 21, 3, device=device)
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            engine.renderer.render(feature, kp, kp + 0.01)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times[1:])
    achieved = WG_GFLOP / 1000 / seconds
    name = torch.cuda.get_device_name(device)
    peaks = [v for k, v in PEAK_TFLOPS.items() if k in name][:1]
    line = f"W+G alone: {seconds * 1000:.1f} ms per frame = {achieved:.1f} TFLOP/s ({WG_GFLOP:.0f} GFLOP per frame)"
    if peak:
        return line + f", {100 * achieved / peak:.1f} % of the given peak {peak:g} TFLOP/s"
    if peaks:
        fp32, tensor = peaks[0]
        return line + (f", {100 * achieved / fp32:.1f} % of {name}'s fp32 peak ({fp32:g}), "
                       f"{100 * achieved / tensor:.1f} % of its dense TF32/fp16 tensor peak ({tensor:g})")
    return line + f" (peak of {name} unknown: pass --peak-tflops)"


def print_table(dub_s: dict[str, float], base_s: dict[str, float], speech_s: float) -> None:
    rows = [("decode", dub_s["decode"]), ("landmarks", dub_s["landmarks"]), ("crop + M", dub_s["crop + M"]),
            ("motion", dub_s["features"] + dub_s["motion"]), ("render", dub_s["render"]),
            ("encode", dub_s["encode"])]
    total = sum(s for _, s in rows)
    print(f"\n{'stage':<10} {'seconds':>9} {'RTF':>8} {'share':>7}")
    for name, seconds in rows:
        print(f"{name:<10} {seconds:9.2f} {seconds / speech_s:8.3f} {100 * seconds / total:6.1f}%")
    print(f"{'total':<10} {total:9.2f} {total / speech_s:8.3f} {100.0:6.1f}%")
    print(f"  motion includes audio features {dub_s['features']:.3f} s (stand-in encoder: plumbing only)")
    base = {"prepare": base_s["landmarks"] + base_s["crop + M"], "motion": base_s["features"] + base_s["motion"],
            "render": base_s["render"], "encode": dub_s["encode"]}
    base_total = sum(base.values())
    print("\nbaseline, same run: the audio job on one photo (the clip's first frame), same speech")
    print("  " + ", ".join(f"{k} {v:.2f} s" for k, v in base.items()) + f" (encode: the dub's), total {base_total:.2f} s, "
          f"RTF {base_total / speech_s:.3f}")
    print(f"  dub / audio job: total {total / base_total:.2f}x, motion (+ decode, landmarks, crop + M) "
          f"{(total - dub_s['render'] - dub_s['encode']) / (base['prepare'] + base['motion']):.2f}x, "
          f"render {dub_s['render'] / base['render']:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="talking-face video to dub")
    parser.add_argument("--landmarks", type=Path, default=None,
                        help="its landmark JSON (default: tests/data/testdata/landmarks/NAME.json)")
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO, help="the new speech")
    parser.add_argument("--seconds", type=float, default=None, help="cut the speech to this length (default: all)")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (default: Ditto's, 50)")
    parser.add_argument("--render-frames", type=int, default=2, help="frames timed for the render extrapolation")
    parser.add_argument("--warmup", type=int, default=None, help="untimed frames first (default 0 on CPU, 2 on CUDA)")
    parser.add_argument("--landmark-frames", type=int, default=10, help="frames timed for dlib / face-alignment")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, for the W+G line")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    torch.set_num_threads(args.threads)
    args.landmarks = args.landmarks or TESTDATA / "landmarks" / f"{args.source.name}.json"
    args.warmup = (2 if device.type == "cuda" else 0) if args.warmup is None else args.warmup
    samples = load_samples(args.audio, 16000)
    samples = np.ascontiguousarray(samples[: int(args.seconds * 16000)] if args.seconds else samples, np.float32)
    speech_s = samples.size / 16000
    options = AudioJobOptions(steps=args.steps)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"talkinghead dubbing benchmark — {name}, torch {torch.__version__}, {args.precision}, "
          f"{args.source.name} + {args.audio.name} ({speech_s:.2f} s), {args.steps or 'default'} steps, "
          f"render extrapolated from {args.render_frames} frames, random weights, stand-in audio encoder")
    warnings.simplefilter("ignore")  # the eye-condition fallback warning (no face_landmarker.task offline)
    with tempfile.TemporaryDirectory() as tmp, instrumented():
        engine = build_engine(device, args.precision, Path(tmp) / "weights")
        dub_s, base_s = Stages(device), Stages(device)
        n, n_src = dub(engine, args, samples, options, dub_s, Path(tmp) / "dub.mp4")
        audio_job(engine, args, samples, options, base_s)
        print(f"{n} output frames at 25 fps from {n_src} source frames")
        print_table(dub_s.seconds, base_s.seconds, speech_s)
        print("\nlandmarks from a detector instead of the JSON (same source frames, not in the total):")
        for line in landmark_alternatives(args.source, n_src, args.landmark_frames):
            print("  " + line)
        if device.type == "cuda":
            print(wg_tflops(engine, device, max(args.render_frames, 5), args.peak_tflops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
