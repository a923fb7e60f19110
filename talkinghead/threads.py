"""Overlapping the stages of a job: an iterator run ahead in a background thread, with a bounded queue.

Rendering (W + G) is the GPU's; decoding, landmarks, paste-back and H.264
encoding are the CPU's.  :func:`prefetch` lets one side run while the other
works: the upstream iterator is pulled in a worker thread, at most ``depth``
items ahead, so memory stays bounded whatever the video's length.  PyTorch
kernels, PyAV's encoder and OpenCV release the GIL, so the threads overlap.

Errors raised upstream are re-raised in the consumer, at the item where they
happened; a consumer that stops early (an error, Ctrl-C, ``close()``) stops
the worker at its next item, and nothing is left running.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterable[T], depth: int = 2, name: str = "talkinghead-prefetch") -> Iterator[T]:
    """``items``, in order, pulled by a daemon thread up to ``depth`` items ahead of the consumer.

    Args:
        items: any iterable; it is iterated in the worker thread only.
        depth: how many items may wait in the queue (≥ 1).
        name: the worker thread's name (for debuggers and profilers).

    Yields:
        the items of ``items``, unchanged.

    Raises:
        ValueError: ``depth`` < 1 (at the first ``next``).
        whatever ``items`` raises, re-raised in the consumer's thread.
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put(item):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            put(_Failure(error))
            return
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:  # a generator's own clean-up (open files) runs in the thread that ran it
                close()
        put(_DONE)

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()


class BackgroundSink(Generic[T]):
    """A consumer run in a daemon thread: :meth:`put` hands it items, at most ``depth`` waiting.

    Used as a context manager: a clean exit waits until every item is consumed and re-raises the
    consumer's error, if any; an exit by an exception stops the consumer after its current item
    (the items still queued are dropped) and lets the exception through.

    Args:
        consume: called once per item, in order, in the worker thread.
        depth: queue length (≥ 1).

    Raises:
        ValueError: ``depth`` < 1.
        whatever ``consume`` raises, re-raised by the next :meth:`put` or at the exit.
    """

    def __init__(self, consume: Callable[[T], None], depth: int = 4, name: str = "talkinghead-sink") -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._consume = consume
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._worker = threading.Thread(target=self._work, name=name, daemon=True)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _DONE:
                return
            try:
                self._consume(item)
            except BaseException as error:  # raised in the producer's thread
                self._error = error
                return

    def __enter__(self) -> "BackgroundSink[T]":
        self._worker.start()
        return self

    def put(self, item: T) -> None:
        """Queue ``item`` (blocks while ``depth`` items wait); raises the consumer's error if it failed."""
        while True:
            self._raise_error()
            if not self._worker.is_alive():
                raise RuntimeError("the background consumer has stopped")
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            while self._worker.is_alive():
                try:
                    self._queue.put(_DONE, timeout=0.1)
                    break
                except queue.Full:
                    continue
            self._worker.join()
            self._raise_error()
        else:
            self._stop.set()
            self._worker.join()
