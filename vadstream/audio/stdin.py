"""Raw s16le mono 16 kHz on stdin as a :class:`~vadstream.audio.blocks.Source` (a WAV header saying
exactly that format is accepted)."""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from typing import Any

import numpy as np

from vadstream.audio.blocks import SAMPLE_RATE_HZ, AudioBlock, Source, SourceError, SourceSpec
from vadstream.stages.samples import int16_bytes_to_float32

log = logging.getLogger("vadstream.audio")


def _parse_wav_header(head: bytes) -> tuple[int, str | None]:
    """For data starting with RIFF/WAVE: (offset of the PCM data, error or None)."""
    if len(head) < 12 or head[8:12] != b"WAVE":
        return 0, "stdin starts with RIFF but is not a WAV file"
    pos, fmt_ok = 12, None
    while pos + 8 <= len(head):
        cid, size = head[pos: pos + 4], int.from_bytes(head[pos + 4: pos + 8], "little")
        body = head[pos + 8: pos + 8 + size]
        if cid == b"fmt ":
            tag, ch, rate = (int.from_bytes(body[0:2], "little"), int.from_bytes(body[2:4], "little"),
                             int.from_bytes(body[4:8], "little"))
            bits = int.from_bytes(body[14:16], "little")
            fmt_ok = tag in (1, 0xFFFE) and ch == 1 and rate == SAMPLE_RATE_HZ and bits == 16
            if not fmt_ok:
                return 0, (f"stdin is a WAV with {ch} ch, {rate} Hz, {bits}-bit (format {tag}); "
                           f"--input - needs s16le mono 16 kHz (use --input FILE.wav for other formats)")
        elif cid == b"data":
            if fmt_ok is None:
                return 0, "stdin WAV has no fmt chunk before its data"
            return pos + 8, None
        pos += 8 + size + (size & 1)
    return 0, "stdin WAV header not understood (no data chunk in the first 64 KiB)"


class StdinSource(Source):
    """Raw s16le mono 16 kHz from stdin (or any binary stream), read by a background thread."""

    def __init__(self, spec: SourceSpec, stream: Any = None):
        super().__init__()
        self.spec = spec
        self.name = "stdin"
        self._stream = stream if stream is not None else sys.stdin.buffer
        try:
            self._fd = self._stream.fileno()
        except (AttributeError, OSError):
            self._fd = None
        if self._fd is not None and os.isatty(self._fd):
            raise SourceError("--input - reads raw s16le mono 16 kHz from stdin, but stdin is a "
                              "terminal; pipe audio in: arecord -f S16_LE -r 16000 -c 1 | "
                              "vadstream run --input -")
        self._queue: queue.Queue = queue.Queue()
        self._eof = False  # set by the consumer when it takes the EOF marker
        self._thread: threading.Thread | None = None
        self._next_sample = 0
        self._bytes = 0
        self._pending: tuple[np.ndarray, int] | None = None

    def _read_raw(self, n: int) -> bytes:
        if self._fd is not None:
            return os.read(self._fd, n)
        return self._stream.read1(n) if hasattr(self._stream, "read1") else self._stream.read(n)

    def _reader(self) -> None:
        chunk = max(2, 2 * self.spec.block_samples)
        carry = b""
        first = True
        try:
            while True:
                more = self._read_raw(chunk)
                now = time.time_ns()
                eof = not more
                self._bytes += len(more)
                data, carry = carry + more, b""
                if first and not eof and len(data) < 64 and data[:4] == b"RIFF"[: len(data)]:
                    carry = data  # need more to decide whether this is a WAV header
                    continue
                if first and data:
                    first = False
                    if data[:4] == b"RIFF":
                        while len(data) < 65536:
                            more = self._read_raw(65536)
                            if not more:
                                break
                            data += more
                            off, err = _parse_wav_header(data)
                            if off or err:
                                break
                        off, err = _parse_wav_header(data)
                        if err:
                            self._queue.put(("error", err))
                            return
                        data = data[off:]
                usable = len(data) - (len(data) & 1)
                carry = data[usable:]
                if usable:
                    x = int16_bytes_to_float32(data[:usable])
                    self._queue.put(("audio", (x, now)))
                if eof:
                    if carry:
                        log.warning("stdin ended with an odd byte; ignored")
                    break
        except Exception as exc:  # noqa: BLE001 - report any read failure as one line
            self._queue.put(("error", f"reading stdin failed: {exc}"))
            return
        finally:
            self._queue.put(("eof", None))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._reader, name="vadstream-stdin", daemon=True)
            self._thread.start()
            self._report("opened", "reading raw s16le mono 16 kHz from stdin", rate_hz=SAMPLE_RATE_HZ,
                         channels=1)

    def read(self, timeout_s: float) -> AudioBlock | None:
        if self._thread is None:
            self.start()
        parts: list[np.ndarray] = []
        first_wall = 0
        deadline = time.monotonic() + max(0.0, timeout_s)
        while not self._eof:
            try:
                if parts:
                    kind, item = self._queue.get_nowait()
                else:
                    kind, item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if kind == "audio":
                x, arrival_ns = item
                if not parts:
                    first_wall = arrival_ns - x.size * 1_000_000_000 // SAMPLE_RATE_HZ
                parts.append(x)
                if sum(p.size for p in parts) >= 4 * self.spec.block_samples:
                    break
            elif kind == "error":
                self._report("error", item)
            else:
                self._eof = True
        if not parts:
            return None
        samples = np.concatenate(parts) if len(parts) > 1 else parts[0]
        s = self._next_sample
        self._next_sample += samples.size
        return AudioBlock(samples, s, first_wall)

    @property
    def finished(self) -> bool:
        return self._eof

    def stats(self) -> dict:
        return {"kind": "stdin", "rate_hz": SAMPLE_RATE_HZ, "channels": 1, "bytes_read": self._bytes,
                "samples_delivered": self._next_sample, "overflow_samples": 0}
