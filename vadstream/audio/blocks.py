"""What every audio source delivers: 16 kHz mono blocks, status changes, the Source interface.

``open_source(SourceSpec(...))`` returns a :class:`Source`; the daemon calls ``start()``, then
``read(timeout_s)`` in its processing loop, ``poll_status()`` for status changes, ``stats()``
for the status reply, and ``close()``. Every source delivers :class:`AudioBlock` s of float32
16 kHz mono samples in [-1, 1).

Sample clock (``AudioBlock.start_sample``): 16 kHz samples counted from the stream start.
Blocks are contiguous (each starts where the previous one ended) with one exception: after a
live device was lost and came back (a ``restored`` status), the next block starts later by the
wall-clock length of the outage, so ``start_sample / 16000`` keeps tracking the time since the
stream started. The ``restored`` status carries ``details['resume_sample']`` (the new block
start) and ``details['gap_samples']``. Samples dropped by an overflow are not replaced and do
not advance the clock (they are counted in ``stats()`` and reported as ``overflow`` status).

Wall clock (``AudioBlock.wall_time_ns``): unix ns at which ``samples[0]`` was captured, best
estimate. Live capture: from the PortAudio callback time minus the buffered frames. Stdin:
arrival time minus the chunk's duration. Files: the time ``start()`` was called plus the
sample's offset in the file (the time it would be heard when played from ``start()``).

Inputs (``SourceSpec.input``): ``None`` the microphone (see :mod:`vadstream.audio.capture`), ``'-'``
raw s16le mono 16 kHz on stdin (``arecord -f S16_LE -r 16000 -c 1 | vadstream run --input -``;
a WAV header on stdin is accepted when it says exactly that format), else a WAV file of any rate
(4..384 kHz) and channel count (PCM and float WAV by vadstream's own RIFF parser; other formats
need ``soundfile``). A damaged WAV is read as far as it makes sense (a data chunk longer than the
file, a trailing partial sample: one warning) or refused with one line.
Bad input raises :class:`SourceError` with one line that says what is wrong.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from typing import Any

import numpy as np

from vadstream.stages.samples import SAMPLE_RATE_HZ, int16_bytes_to_float32

log = logging.getLogger("vadstream.audio")

MIN_RATE_HZ, MAX_RATE_HZ = 4000, 384000  # device and file rates the resampler takes
# The one table of input limits (inclusive): SourceSpec checks them, the config loader reports
# them per key, docs/config.md lists them.
INPUT_BOUNDS: dict[str, tuple[float, float]] = {
    "block_ms": (1.0, 1000.0),
    "ring_s": (0.1, 60.0),
    "samplerate_hz": (MIN_RATE_HZ, MAX_RATE_HZ),
    "channel": (0, 255),
    "device": (0, 4096),  # a PortAudio device index
}



class SourceError(Exception):
    """An input that cannot be used; ``str(exc)`` is one line saying why and what to do."""


@dataclasses.dataclass(frozen=True)
class AudioBlock:
    """Contiguous 16 kHz mono float32 audio.

    Attributes:
        samples: float32 samples in [-1, 1).
        start_sample: index of ``samples[0]`` in the stream (16 kHz samples since start).
        wall_time_ns: best estimate of the unix time (ns) at which ``samples[0]`` was captured.
    """

    samples: np.ndarray
    start_sample: int
    wall_time_ns: int

    @property
    def end_sample(self) -> int:
        """Index one past the last sample."""
        return self.start_sample + int(self.samples.shape[0])


@dataclasses.dataclass(frozen=True)
class SourceStatus:
    """A change of the source's state.

    ``kind``: ``opened`` (ready; details: device/file, rates, channels), ``lost`` (live device
    gone; capture retries), ``restored`` (device back; details: resume_sample, gap_samples),
    ``overflow`` (a burst of dropped audio began; details: counters), ``error`` (unrecoverable:
    the source finishes).
    """

    kind: str
    message: str
    details: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """What to open.

    Attributes:
        input: ``None`` = microphone, ``'-'`` = raw s16le mono 16 kHz on stdin, else a WAV path.
        device: microphone by PortAudio index or case-insensitive name substring (None = default).
        channel: 0-based input channel to use; ``None`` downmixes all channels.
        realtime: files only: pace blocks in real time (False: as fast as they are read).
        block_ms: block length delivered by ``read`` and PortAudio's callback size, in ms.
        ring_s: live capture ring buffer length in seconds (overflow beyond it).
        samplerate_hz: force this device rate (resampled to 16 kHz); None = 16 kHz if the
            device opens at it, else its default rate.
    """

    input: str | None = None
    device: str | int | None = None
    channel: int | None = None
    realtime: bool = True
    block_ms: float = 20.0
    ring_s: float = 2.0
    samplerate_hz: int | None = None

    def __post_init__(self) -> None:
        for key, (low, high) in INPUT_BOUNDS.items():
            value = getattr(self, key)
            if key == "device" and not isinstance(value, int):
                continue  # a name substring, or None: the default input
            if value is not None and not low <= value <= high:
                raise SourceError(f"{key} = {value!r} is out of range {low:g}..{high:g}")

    @property
    def block_samples(self) -> int:
        """Block length at 16 kHz."""
        return max(1, int(round(self.block_ms * SAMPLE_RATE_HZ / 1000.0)))


class Source:
    """Base class: status queue and the interface the daemon uses."""

    name: str = "source"

    def __init__(self) -> None:
        self._status: collections.deque[SourceStatus] = collections.deque()

    def _report(self, kind: str, message: str, **details: Any) -> None:
        level = logging.WARNING if kind in ("lost", "overflow", "error") else logging.INFO
        log.log(level, "%s: %s", self.name, message)
        self._status.append(SourceStatus(kind, message, details))

    def start(self) -> None:
        raise NotImplementedError

    def read(self, timeout_s: float) -> AudioBlock | None:
        """Next block, or None if nothing arrived within ``timeout_s``."""
        raise NotImplementedError

    @property
    def finished(self) -> bool:
        """True when the input has ended and every block has been read."""
        return False

    def poll_status(self) -> list[SourceStatus]:
        """Status changes since the last call (oldest first)."""
        out = []
        while self._status:
            out.append(self._status.popleft())
        return out

    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        pass

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- conversion helpers ------------------------------------------------------------------------
def pcm_to_float(data: bytes, sample_width: int, channels: int) -> np.ndarray:
    """Interleaved little-endian PCM bytes -> float32 ``(frames, channels)`` in [-1, 1)."""
    if sample_width == 1:  # WAV 8-bit is unsigned
        x = (np.frombuffer(data, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif sample_width == 2:
        x = int16_bytes_to_float32(data)
    elif sample_width == 3:
        b = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    elif sample_width == 4:
        x = (np.frombuffer(data, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    else:
        raise SourceError(f"unsupported PCM sample width {sample_width} bytes")
    return x.reshape(-1, channels)


def to_mono(frames: np.ndarray, channel: int | None) -> np.ndarray:
    """Pick ``channel`` of ``(frames, channels)`` audio, or average all channels (None)."""
    if frames.ndim == 1:
        return frames.astype(np.float32, copy=False)
    if channel is not None:
        return np.ascontiguousarray(frames[:, channel], dtype=np.float32)
    if frames.shape[1] == 1:
        return frames[:, 0].astype(np.float32, copy=False)
    # frames.mean(axis=1) without its Python wrapper (the same sum and division, so the same
    # numbers): it runs for every captured block, and the wrapper cost more than the maths.
    total = np.add.reduce(frames, axis=1, dtype=np.float32)
    return np.true_divide(total, np.float32(frames.shape[1]), out=total)


class BlockCutter:
    """Collects 16 kHz samples and cuts them into blocks of ``block_samples``."""

    def __init__(self, block_samples: int):
        self.block_samples = block_samples
        self._parts: list[np.ndarray] = []
        self._n = 0

    def add(self, x: np.ndarray) -> None:
        if x.size:
            self._parts.append(x)
            self._n += x.size

    def __len__(self) -> int:
        return self._n

    def take(self, n: int) -> np.ndarray:
        n = min(n, self._n)
        buf = np.concatenate(self._parts) if len(self._parts) != 1 else self._parts[0]
        out, rest = buf[:n], buf[n:]
        self._parts = [rest] if rest.size else []
        self._n = rest.size
        return np.ascontiguousarray(out, dtype=np.float32)
