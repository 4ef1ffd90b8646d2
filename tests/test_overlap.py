"""Encoding behind the model's work (tpsmm.animation.overlap.WriteBehind)."""

from __future__ import annotations

import threading
import time

import pytest

from tpsmm.animation.overlap import WriteBehind


def test_items_are_written_in_order_on_another_thread():
    written, threads = [], set()

    def write(item):
        time.sleep(0.001 * (item % 3))  # uneven work must not reorder anything
        written.append(item)
        threads.add(threading.current_thread().name)

    with WriteBehind(write) as behind:
        for item in range(50):
            behind.put(item)
    assert written == list(range(50)) and threads == {"tpsmm-encode"}


def test_a_write_error_reaches_the_producer_and_nothing_more_is_written():
    written = []

    def write(item):
        if item == 3:
            raise OSError(28, "No space left on device")
        written.append(item)

    with pytest.raises(OSError, match="No space left"):
        with WriteBehind(write, depth=1) as behind:
            for item in range(100):
                behind.put(item)
    assert written == [0, 1, 2]


def test_the_last_write_error_is_raised_when_the_block_ends():
    def write(item):
        raise ValueError("encoder failed")

    with pytest.raises(ValueError, match="encoder failed"):
        with WriteBehind(write) as behind:
            behind.put(0)


def test_a_producer_error_drops_what_waits_and_waits_for_the_thread():
    started, written = threading.Event(), []

    def write(item):
        started.set()
        time.sleep(0.05)
        written.append(item)

    with pytest.raises(RuntimeError, match="model failed"):
        with WriteBehind(write, depth=3) as behind:
            for item in range(4):
                behind.put(item)
            started.wait()
            raise RuntimeError("model failed")
    # The item being written when the producer failed finishes; the waiting ones do not.
    count = len(written)
    time.sleep(0.2)
    assert len(written) == count and count < 4
