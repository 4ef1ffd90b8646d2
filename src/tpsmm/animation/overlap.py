"""Decoding and encoding overlapped with the model's work, each on a thread of its own.

FFmpeg and Pillow decode and encode without holding the GIL, so while the model works on
one batch the next is being decoded (:func:`read_ahead`) and the previous one encoded
(:class:`WriteBehind`). On the CPU, where the model takes nearly all the time, this gains
little; on a GPU, where the model is fast, decoding and encoding are what is left.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np

from tpsmm.data.video import VideoReader
from tpsmm.errors import InputError


def read_ahead(reader: VideoReader, batch_size: int, depth: int = 2) -> Iterator[np.ndarray]:
    """Yield ``reader``'s batches, decoded up to ``depth`` batches ahead on a background thread.

    FFmpeg and Pillow decode without holding the GIL, so the next batch is being decoded
    while the model works on this one (which matters on GPUs, where the model is fast).

    Whatever ends the decoding thread reaches the consumer, after the batches before it: the
    end of the video, or an error of any kind (also one that is not an ``Exception``, or one
    raised when the decoder is closed), re-raised here as an :class:`InputError` naming the
    file. If the thread vanishes without a word the consumer does not wait for it. Stopping
    early (an error downstream) stops the thread at its next batch.
    """
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stopped = threading.Event()
    end = object()

    def put(item) -> bool:
        while not stopped.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def decode() -> None:
        outcome: object = end
        batches = reader.iter_batches(batch_size)
        try:
            for batch in batches:
                if not put(batch):
                    return
        except BaseException as error:  # handed to the consumer, whatever it is
            outcome = error
        finally:
            try:
                batches.close()
            except BaseException as error:  # closing failed: that is the outcome then
                outcome = error if outcome is end else outcome
            put(outcome)

    thread = threading.Thread(target=decode, name="tpsmm-decode", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = ready.get(timeout=0.2)
            except queue.Empty:
                if thread.is_alive() or not ready.empty():
                    continue
                raise InputError(f"{reader.path}: the decoder stopped without a result") from None
            if item is end:
                return
            if isinstance(item, InputError):
                raise item
            if isinstance(item, BaseException):
                reason = " ".join(str(item).split()) or "no message"
                raise InputError(f"{reader.path}: decoding failed ({type(item).__name__}: "
                                 f"{reason})") from item
            yield item
    finally:
        stopped.set()
        # A decoder stuck inside FFmpeg must not hold the program: the thread is a daemon.
        thread.join(timeout=5)



class WriteBehind:
    """Hands items to ``write`` on a background thread, in order, at most ``depth`` waiting.

    An error in ``write`` (a full disk, a failed encoder) reaches the producer at its next
    :meth:`put`, or when the block ends; leaving the block, normally or by an error, waits
    for the thread, so nothing is written after the ``with`` (and a writer aborted by an
    error downstream sees no further frames).

    >>> with WriteBehind(writer.write) as behind:
    ...     for frames in batches:
    ...         behind.put(frames)
    """

    def __init__(self, write: Callable[[object], None], depth: int = 2) -> None:
        self._write = write
        self._waiting: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tpsmm-encode", daemon=True)
        self._end = object()

    def _run(self) -> None:
        while True:
            item = self._waiting.get()
            if item is self._end:
                return
            if self._error is None and not self._stopped.is_set():
                try:
                    self._write(item)
                except BaseException as error:  # handed to the producer, whatever it is
                    self._error = error

    def put(self, item: object) -> None:
        """Queue ``item`` (waits while ``depth`` items wait); raises a write's error."""
        self._raise()
        self._waiting.put(item)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def __enter__(self) -> WriteBehind:
        self._thread.start()
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is not None:
            self._stopped.set()  # the producer failed: drop what is still waiting
        self._waiting.put(self._end)
        self._thread.join()
        if kind is None:
            self._raise()
