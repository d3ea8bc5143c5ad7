"""Single-producer/single-consumer ring buffer of audio frames for the PortAudio callback.

The producer (the PortAudio callback thread) calls :meth:`RingBuffer.write`; the consumer (the
processing thread) calls :meth:`RingBuffer.read`. No locks: each side owns one monotonically
increasing counter (``_written`` for the producer, ``_read`` for the consumer) and only reads the
other's. A counter is published after the data it covers has been copied, and rebinding a Python
attribute is atomic under the GIL, so the consumer never sees frames that are not there yet.

``write`` never blocks and allocates no buffers (it copies into the preallocated array; numpy
creates only small view objects). When the buffer is full the frames that do not fit are
dropped and counted in ``overflow_frames``; frames already in the buffer are never overwritten,
so everything the consumer reads is contiguous with what it read before except for the
documented drops.
"""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """Fixed-capacity SPSC ring of ``(frames, channels)`` float32 audio.

    Args:
        capacity_frames: frames the buffer holds (> 0).
        channels: channels per frame (> 0).
    """

    def __init__(self, capacity_frames: int, channels: int = 1, dtype: type = np.float32):
        if capacity_frames <= 0 or channels <= 0:
            raise ValueError(f"capacity_frames and channels must be > 0, got {capacity_frames}, {channels}")
        self.capacity_frames = int(capacity_frames)
        self.channels = int(channels)
        self._buf = np.zeros((self.capacity_frames, self.channels), dtype=dtype)
        self._written = 0  # producer: frames ever stored
        self._read = 0  # consumer: frames ever taken
        self.overflow_frames = 0  # producer: frames dropped because the buffer was full
        self.overflow_events = 0  # producer: write() calls that dropped something

    # -- producer side -------------------------------------------------------------------------
    def write(self, frames: np.ndarray) -> int:
        """Copy ``frames`` (shape ``(n, channels)`` or ``(n,)`` for mono) in; return frames stored.

        Never blocks. Frames that do not fit are dropped and counted in ``overflow_frames``.
        """
        n = frames.shape[0]
        written = self._written
        free = self.capacity_frames - (written - self._read)
        take = n if n <= free else free
        if take < n:
            self.overflow_frames += n - take
            self.overflow_events += 1
        if take > 0:
            start = written % self.capacity_frames
            first = min(take, self.capacity_frames - start)
            if frames.ndim == 1:
                self._buf[start: start + first, 0] = frames[:first]
                if first < take:
                    self._buf[: take - first, 0] = frames[first:take]
            else:
                self._buf[start: start + first] = frames[:first]
                if first < take:
                    self._buf[: take - first] = frames[first:take]
            self._written = written + take  # publish after the copy
        return take

    # -- consumer side -------------------------------------------------------------------------
    @property
    def available(self) -> int:
        """Frames ready to read."""
        return self._written - self._read

    @property
    def frames_written(self) -> int:
        """Frames stored since creation (the producer's counter)."""
        return self._written

    @property
    def frames_read(self) -> int:
        """Frames taken since creation (the consumer's counter)."""
        return self._read

    def read(self, max_frames: int | None = None) -> np.ndarray:
        """Take up to ``max_frames`` (default: all available) frames as a new ``(n, channels)`` array."""
        read = self._read
        n = self._written - read
        if max_frames is not None:
            n = min(n, max_frames)
        out = np.empty((n, self.channels), dtype=self._buf.dtype)
        if n > 0:
            start = read % self.capacity_frames
            first = min(n, self.capacity_frames - start)
            out[:first] = self._buf[start: start + first]
            if first < n:
                out[first:] = self._buf[: n - first]
            self._read = read + n  # free the space only after the copy
        return out

    def clear(self) -> None:
        """Consumer side: drop everything buffered."""
        self._read = self._written
