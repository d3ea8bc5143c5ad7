"""The recent past of one audio stream, as int16, addressed by stream sample index (for pre-roll).

The capture ring buffer (``ringbuffer.py``) hands audio from the PortAudio thread to the
processing thread and forgets it once read. :class:`SampleHistory` keeps what the model was fed
(16 kHz mono, after resampling and gap filling) for a while longer, so that speech audio can be
sent from before the moment the detector knew speech had started. It lives in the processing
thread only and is filled only while someone subscribes to speech audio.
"""

from __future__ import annotations

import numpy as np


class SampleHistory:
    """The last ``capacity_samples`` samples of a stream (int16), by their stream sample index.

    :meth:`append` takes contiguous audio; audio that does not continue where the held audio ends
    (the stream restarted after an outage) replaces it. :meth:`get` returns the held part of a
    requested interval, so a caller sees exactly how much of it was still there.
    """

    def __init__(self, capacity_samples: int):
        if capacity_samples <= 0:
            raise ValueError(f"capacity_samples must be > 0, got {capacity_samples}")
        self._buf = np.zeros(int(capacity_samples), dtype="<i2")
        self.start = 0  # stream index of the oldest sample held
        self.end = 0  # stream index one past the newest sample held

    @property
    def capacity_samples(self) -> int:
        return self._buf.size

    def __len__(self) -> int:
        return self.end - self.start

    def append(self, start_sample: int, samples: np.ndarray) -> None:
        """Add int16 ``samples`` whose first sample has stream index ``start_sample``."""
        n = samples.size
        if start_sample != self.end:  # not contiguous: a new stream timeline
            self.start = self.end = start_sample
        cap = self._buf.size
        if n > cap:
            samples = samples[n - cap:]
        k = samples.size
        pos = (self.end + n - k) % cap
        first = min(k, cap - pos)
        self._buf[pos: pos + first] = samples[:first]
        if first < k:
            self._buf[: k - first] = samples[first:]
        self.end += n
        self.start = max(self.start, self.end - cap)

    def get(self, start_sample: int, end_sample: int) -> tuple[int, np.ndarray]:
        """``(first, samples)``: the held part of ``start_sample .. end_sample`` (a copy; may be empty)."""
        a = max(start_sample, self.start)
        b = min(end_sample, self.end)
        if b <= a:
            return min(a, self.end), np.zeros(0, dtype="<i2")
        cap = self._buf.size
        pos = a % cap
        n = b - a
        first = min(n, cap - pos)
        out = np.empty(n, dtype="<i2")
        out[:first] = self._buf[pos: pos + first]
        if first < n:
            out[first:] = self._buf[: n - first]
        return a, out

    def resize(self, capacity_samples: int) -> None:
        """Change the capacity, keeping the newest samples that fit."""
        if capacity_samples <= 0:
            raise ValueError(f"capacity_samples must be > 0, got {capacity_samples}")
        if capacity_samples == self._buf.size:
            return
        first, held = self.get(self.start, self.end)
        self._buf = np.zeros(int(capacity_samples), dtype="<i2")
        end = self.end
        self.start = self.end = first
        self.append(first, held)
        assert self.end == end

    def clear(self) -> None:
        self.start = self.end
