"""RingBuffer: wraparound, overflow counting, nothing lost or reordered, producer thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vadstream.audio.ringbuffer import RingBuffer


def test_wraparound_keeps_order():
    ring = RingBuffer(10, channels=2)
    data = np.arange(200, dtype=np.float32).reshape(100, 2)
    out = []
    pos = 0
    for n in [3, 4, 7, 1, 9, 6, 10, 2, 8, 5] * 2:
        if pos >= 100:
            break
        chunk = data[pos: pos + n]
        assert ring.write(chunk) == chunk.shape[0]
        pos += chunk.shape[0]
        out.append(ring.read())
    got = np.concatenate(out)
    assert np.array_equal(got, data[:pos])
    assert ring.overflow_frames == 0 and ring.available == 0


def test_mono_1d_writes():
    ring = RingBuffer(8, channels=1)
    ring.write(np.arange(6, dtype=np.float32))
    assert np.array_equal(ring.read(4)[:, 0], [0, 1, 2, 3])
    ring.write(np.arange(6, 12, dtype=np.float32))  # wraps
    assert np.array_equal(ring.read()[:, 0], np.arange(4, 12))


def test_overflow_drops_new_frames_and_counts_them():
    ring = RingBuffer(100, channels=1)
    for i in range(13):  # 13 blocks of 10 into 100 frames: 30 frames do not fit
        stored = ring.write(np.full((10, 1), i, dtype=np.float32))
        assert stored == (10 if i < 10 else 0)
    assert ring.overflow_frames == 30
    assert ring.overflow_events == 3
    got = ring.read()[:, 0]
    assert np.array_equal(got, np.repeat(np.arange(10), 10))  # the oldest are kept, in order
    # partial fit: 95 free of 100 after 5 are buffered
    ring.write(np.zeros((5, 1), np.float32))
    assert ring.write(np.zeros((97, 1), np.float32)) == 95
    assert ring.overflow_frames == 32 and ring.available == 100


def test_read_limit_and_clear():
    ring = RingBuffer(16)
    ring.write(np.arange(10, dtype=np.float32))
    assert ring.read(3).shape == (3, 1)
    assert ring.available == 7
    ring.clear()
    assert ring.available == 0 and ring.read().shape == (0, 1)


def test_bad_sizes():
    with pytest.raises(ValueError):
        RingBuffer(0)
    with pytest.raises(ValueError):
        RingBuffer(10, channels=0)


def test_threaded_producer_consumer_loses_nothing():
    """A real producer thread and a consumer: every frame arrives once, in order. Each side sleeps
    on an Event when it cannot go on (ring full / empty) instead of spinning against the other for
    the GIL; the ring itself stays lock-free, the Events only schedule the two threads."""
    ring = RingBuffer(257, channels=1)
    total = 200_000
    data = np.arange(total, dtype=np.float32)
    data_ready, space = threading.Event(), threading.Event()
    stalls = {"full": 0, "empty": 0}

    def produce():
        pos = 0
        rng = np.random.default_rng(1)
        while pos < total:
            n = int(rng.integers(1, 64))
            space.clear()  # before the write: room made after it sets the event again
            stored = ring.write(data[pos: pos + n])
            pos += stored  # retry the rest (a real callback would drop it instead)
            data_ready.set()
            if stored < n:
                stalls["full"] += 1
                assert space.wait(10.0), "the consumer stopped reading"

    t = threading.Thread(target=produce)
    t.start()
    got = []
    n_got = 0
    while n_got < total:
        data_ready.clear()  # before the read: frames written after it set the event again
        x = ring.read()
        if x.size:
            got.append(x[:, 0].copy())
            n_got += x.shape[0]
            space.set()
        else:
            stalls["empty"] += 1
            assert data_ready.wait(10.0), "the producer stopped writing"
    t.join(10.0)
    assert not t.is_alive()
    assert np.array_equal(np.concatenate(got), data)
    assert ring.overflow_frames > 0 and sum(stalls.values()) > 0  # both edges were exercised
