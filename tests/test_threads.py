"""Overlapped stages (talkinghead/threads.py): order, bounded look-ahead, errors, early stop; and the encoder thread of
media.video.write_frames on a real clip (every frame encoded, in order; an encoder failure leaves no file)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import TESTDATA
from talkinghead.errors import MediaError
from talkinghead.media.video import VideoReader, VideoWriter, probe_video, write_frames
from talkinghead.threads import BackgroundSink, prefetch


def test_prefetch_yields_every_item_in_order_from_another_thread() -> None:
    threads = set()

    def items():
        for i in range(50):
            threads.add(threading.current_thread().name)
            yield i

    assert list(prefetch(items(), depth=3)) == list(range(50))
    assert threads == {"talkinghead-prefetch"}


def test_prefetch_runs_at_most_depth_items_ahead() -> None:
    pulled = []

    def items():
        for i in range(100):
            pulled.append(i)
            yield i

    stream = prefetch(items(), depth=2)
    assert next(stream) == 0
    time.sleep(0.3)
    assert len(pulled) <= 1 + 2 + 1          # the one taken, the queue, the one waiting to be queued
    stream.close()


def test_prefetch_reraises_the_upstream_error_after_the_items_before_it() -> None:
    def items():
        yield 1
        yield 2
        raise MediaError("frame 3 is unreadable")

    got = []
    with pytest.raises(MediaError, match="frame 3"):
        for item in prefetch(items()):
            got.append(item)
    assert got == [1, 2]


def test_stopping_early_closes_the_upstream_generator() -> None:
    closed = threading.Event()

    def items():
        try:
            for i in range(1000):
                yield i
        finally:
            closed.set()

    stream = prefetch(items(), depth=2)
    assert next(stream) == 0
    stream.close()
    assert closed.wait(2.0)
    assert not any(t.name == "talkinghead-prefetch" for t in threading.enumerate())


def test_background_sink_consumes_in_order_and_reraises_its_error() -> None:
    seen = []
    with BackgroundSink(seen.append, depth=2) as sink:
        for i in range(30):
            sink.put(i)
    assert seen == list(range(30))

    def fail(item: int) -> None:
        if item == 3:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        with BackgroundSink(fail, depth=1) as sink:
            for i in range(100):
                sink.put(i)
    with pytest.raises(ValueError):
        BackgroundSink(seen.append, depth=0)


def test_write_frames_encodes_a_real_clip_in_a_background_thread(tmp_path: Path) -> None:
    clip = TESTDATA / "driving" / "lp_d0.mp4"
    frames = [frame for frame in VideoReader(clip, max_frames=12)]
    out = write_frames(iter(frames), tmp_path / "copy.mp4", fps=25.0, n_frames=len(frames))
    info = probe_video(out)
    assert (info.n_frames, info.width, info.height) == (12, frames[0].shape[1], frames[0].shape[0])
    # the same frames written in this thread, straight through the writer: the same decoded video
    with VideoWriter(tmp_path / "plain.mp4", fps=25.0) as writer:
        for frame in frames:
            writer.write(frame)
    threaded, plain = list(VideoReader(out)), list(VideoReader(tmp_path / "plain.mp4"))
    assert len(threaded) == len(plain) == 12
    assert all(np.array_equal(a, b) for a, b in zip(threaded, plain))


def test_an_error_while_rendering_leaves_no_file(tmp_path: Path) -> None:
    clip = TESTDATA / "driving" / "lp_d0.mp4"

    def frames():
        yield from VideoReader(clip, max_frames=3)
        raise MediaError("the renderer failed")

    out = tmp_path / "broken.mp4"
    with pytest.raises(MediaError, match="renderer failed"):
        write_frames(frames(), out, fps=25.0)
    assert not out.exists() and list(tmp_path.iterdir()) == []
