"""Live sessions (issue 14): latency and real-time factor of ``Engine.live``, against the offline audio job.

    python benchmarks/bench_live.py [--device auto|cpu|cuda] [--steps 10] [--chunk-ms 200] [--sessions N]
                                    [--seconds S] [--render] [--no-realtime]

Networks are random (speed does not depend on the values); the audio encoder
is a stand-in of the real one's shapes (:mod:`bench_audio`), so its cost is
left out.  Printed, measured in the same run:

* the baseline: the offline audio job's motion (``Engine.audio_motion``) RTF;
* live, as fast as possible: the session's busy time / audio (RTF) and its
  ratio to the baseline;
* live, pushed in real time (``--chunk-ms`` pieces at the pace of speech,
  ``--sessions`` sessions interleaved in one thread): first frame after the
  speech starts, per-frame latency (ready − the frame's end on the audio
  timeline; mean, p95, max), the algorithmic look-ahead (from the window
  constants) and, with ``--render`` (default on CUDA), frames per second per
  session.  Motion only on a CPU (rendering is ~10 s a frame there).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_dub import build_engine  # noqa: E402
from talkinghead.audio_job import load_samples  # noqa: E402
from talkinghead.drivers.audio.ditto.driver import AudioDriverOptions  # noqa: E402
from talkinghead.drivers.audio.ditto.stream import samples_needed  # noqa: E402
from talkinghead.face.landmarks import JsonLandmarks  # noqa: E402
from talkinghead.jobs import AudioJobOptions, RenderOptions  # noqa: E402
from talkinghead.live_job import LiveFrame, LiveSession, replay  # noqa: E402

TESTDATA = ROOT / "tests" / "data" / "testdata"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def offline_rtf(engine, source, samples: np.ndarray, options: AudioJobOptions, device: torch.device) -> float:
    began = time.perf_counter()
    engine.audio_motion(source, samples, options)
    _sync(device)
    return (time.perf_counter() - began) / (samples.size / 16000)


def fast_rtf(engine, source, samples: np.ndarray, options: AudioJobOptions, chunk: int) -> tuple[float, int]:
    session = engine.live(source, audio=options, render=False)
    frames = list(replay(session, samples, chunk))
    return session.busy_s / (samples.size / 16000), len(frames)


def realtime(sessions: list[LiveSession], samples: np.ndarray, chunk: int) -> list[list[LiveFrame]]:
    """Push ``chunk`` samples to every session when they would have been spoken; all sessions share one clock."""
    start = time.perf_counter()
    for session in sessions:
        session.start = start
    out: list[list[LiveFrame]] = [[] for _ in sessions]
    for at in range(0, samples.size, chunk):
        time.sleep(max(0.0, start + (at + chunk) / 16000 - time.perf_counter()))
        for i, session in enumerate(sessions):
            out[i] += session.push(samples[at:at + chunk])
    for i, session in enumerate(sessions):
        out[i] += session.end()
    return out


def report(frames: list[list[LiveFrame]], sessions: list[LiveSession], rendered: bool) -> None:
    low, high = sessions[0].lookahead_ms
    print(f"  algorithmic look-ahead (online windows + crossfade): {low:g}-{high:g} ms; first frame needs "
          f"{samples_needed(0) / 16:g} ms of audio")
    for i, (got, session) in enumerate(zip(frames, sessions)):
        spoken = [f for f in got if f.audio_s < session.samples / session.sample_rate]  # not the end's flush
        latency = np.array([f.ready_s - (f.time_s + 1 / session.fps) for f in spoken])
        first = got[0].ready_s if got else float("nan")
        line = (f"  session {i}: {len(got)} frames, first frame {first * 1000:.0f} ms after speech start, latency "
                f"mean {latency.mean() * 1000:.0f} / p95 {np.percentile(latency, 95) * 1000:.0f} / max "
                f"{latency.max() * 1000:.0f} ms, busy {session.busy_s / (session.samples / 16000):.3f} x real time")
        if rendered and len(got) > 1:
            line += f", {(len(got) - 1) / (got[-1].ready_s - got[0].ready_s):.1f} FPS"
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--audio", type=Path, default=TESTDATA / "audio" / "espeak_en_us_with_silence.wav")
    parser.add_argument("--seconds", type=float, default=None, help="cut the speech to this length")
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps (Ditto's online config: 10)")
    parser.add_argument("--chunk-ms", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=None, help="sessions side by side (default 1 CPU, 4 CUDA)")
    parser.add_argument("--render", action="store_true", default=None, help="render frames (default on CUDA)")
    parser.add_argument("--no-realtime", action="store_true", help="skip the real-time run")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    sessions_n = args.sessions or (4 if cuda else 1)
    render = cuda if args.render is None else args.render
    samples = load_samples(args.audio, 16000)
    samples = np.ascontiguousarray(samples[: int(args.seconds * 16000)] if args.seconds else samples, np.float32)
    chunk = args.chunk_ms * 16
    options = AudioJobOptions(driver=AudioDriverOptions(steps=args.steps, seed=0))
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {args.threads} threads"
    print(f"talkinghead live benchmark — {name}, torch {torch.__version__}, {args.audio.name} "
          f"({samples.size / 16000:.2f} s), {args.steps} steps, {args.chunk_ms} ms chunks, random weights, "
          f"stand-in audio encoder")
    warnings.simplefilter("ignore")  # the eye-condition fallback warning (no face_landmarker.task offline)
    with tempfile.TemporaryDirectory() as tmp:
        engine = build_engine(device, "fp32", Path(tmp) / "weights")
        photo = TESTDATA / "images" / "astronaut.png"
        source = engine.prepare_source(photo, landmarks=JsonLandmarks(TESTDATA / "landmarks" / "astronaut.png.json"),
                                       settings=engine.audio_source_settings(options))
        fast_rtf(engine, source, samples[:32000], options, chunk)  # warm-up
        base = offline_rtf(engine, source, samples, options, device)
        live, n = fast_rtf(engine, source, samples, options, chunk)
        print(f"baseline, offline audio_motion: RTF {base:.3f}")
        print(f"live, motion only, as fast as possible: RTF {live:.3f} ({live / base:.2f}x the baseline), {n} frames")
        if not args.no_realtime:
            render_options = RenderOptions(paste_back=False) if render else False
            sessions = [engine.live(source, audio=options, render=render_options) for _ in range(sessions_n)]
            print(f"live, pushed in real time, {sessions_n} session(s), {'rendered' if render else 'motion only'}:")
            report(realtime(sessions, samples, chunk), sessions, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
