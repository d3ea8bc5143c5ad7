"""Audio sources for the daemon: microphone, WAV file or raw stdin, all as 16 kHz mono blocks.

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

Inputs (``SourceSpec.input``): ``None`` the microphone (see :mod:`vadstream.capture`), ``'-'``
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
import os
import queue
import sys
import threading
import time
from typing import Any

import numpy as np

from vadstream.resample import Resampler

SAMPLE_RATE_HZ = 16000

log = logging.getLogger("vadstream.sources")


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
        if not 1.0 <= self.block_ms <= 1000.0:
            raise SourceError(f"block_ms = {self.block_ms!r} is out of range 1..1000")
        if not 0.1 <= self.ring_s <= 600.0:
            raise SourceError(f"ring_s = {self.ring_s!r} is out of range 0.1..600")
        if self.channel is not None and self.channel < 0:
            raise SourceError(f"channel = {self.channel!r} must be >= 0 (or unset to downmix)")
        if self.samplerate_hz is not None and not 4000 <= self.samplerate_hz <= 384000:
            raise SourceError(f"samplerate_hz = {self.samplerate_hz!r} is out of range 4000..384000")

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
        x = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
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


class _Blocker:
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


# -- WAV / audio file --------------------------------------------------------------------------
MIN_RATE_HZ, MAX_RATE_HZ = 4000, 384000
MAX_CHANNELS = 1024
_STREAMING_DATA_SIZE = 0xFFFFFFFF  # what streaming writers put in the data size before they know it


class WavError(Exception):
    """A RIFF/WAVE file vadstream cannot read; ``other_reader`` is True when another reader
    (libsndfile) may still understand it (not RIFF/WAVE at all, or an encoding we do not decode)."""

    def __init__(self, message: str, other_reader: bool = False):
        super().__init__(message)
        self.other_reader = other_reader


class _WavReader:
    """RIFF/WAVE through vadstream's own parser (standard library only): PCM 8/16/24/32-bit,
    IEEE float 32/64-bit, and WAVE_FORMAT_EXTENSIBLE of either (Audacity, sox, arecord).

    Damaged files give audio or one clear :class:`WavError`, never a traceback: a chunk whose
    declared size runs past the end of the file is refused (unless it is the data chunk), a data
    chunk longer than the file (a truncated file, or a stream's placeholder size) is read as far
    as it goes, and a trailing partial sample is dropped. What was repaired is in ``warnings``."""

    _PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE

    def __init__(self, path: str):
        self.warnings: list[str] = []
        self._f = open(path, "rb")
        try:
            self._parse(os.fstat(self._f.fileno()).st_size)
        except Exception:
            self._f.close()
            raise

    def _parse(self, file_size: int) -> None:
        f = self._f
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise WavError("not a WAV file (no RIFF/WAVE header)", other_reader=True)
        fmt = None
        pos = 12
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                raise WavError("no data chunk" if fmt is not None else "no fmt and data chunks")
            cid, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            pos += 8
            left = file_size - pos
            if cid == b"data":
                break
            name = cid.decode("latin-1").strip() or repr(cid)
            if size > left:
                raise WavError(f"damaged WAV header: the {name!r} chunk at byte {pos - 8} declares {size} bytes, "
                               f"only {left} follow")
            if cid == b"fmt ":
                fmt = f.read(min(size, 64))
            f.seek(pos + size + (size & 1))
            pos += size + (size & 1)
        if fmt is None:
            raise WavError("no fmt chunk before the data chunk")
        if len(fmt) < 16:
            raise WavError(f"fmt chunk too short ({len(fmt)} bytes, need 16)")
        tag = int.from_bytes(fmt[0:2], "little")
        self.channels = int.from_bytes(fmt[2:4], "little")
        self.rate_hz = int.from_bytes(fmt[4:8], "little")
        bits = int.from_bytes(fmt[14:16], "little")
        if tag == self._EXTENSIBLE and len(fmt) >= 26:
            tag = int.from_bytes(fmt[24:26], "little")  # first two bytes of the subformat GUID
        self._width = (bits + 7) // 8
        self._float = tag == self._FLOAT
        if not ((tag == self._PCM and 1 <= self._width <= 4) or (self._float and self._width in (4, 8))):
            raise WavError(f"unsupported WAV encoding (format {tag}, {bits}-bit)", other_reader=True)
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise WavError(f"unsupported channel count {self.channels} (1..{MAX_CHANNELS})")
        if not MIN_RATE_HZ <= self.rate_hz <= MAX_RATE_HZ:
            raise WavError(f"unsupported sample rate {self.rate_hz} Hz ({MIN_RATE_HZ}..{MAX_RATE_HZ})")
        available = file_size - pos
        if size > available:
            what = "a streaming placeholder" if size == _STREAMING_DATA_SIZE else f"{size} bytes"
            self.warnings.append(f"the data chunk declares {what} but the file holds {available}: "
                                 "reading what is there (truncated file?)")
            size = available
        frame_bytes = self._width * self.channels
        if size % frame_bytes:
            self.warnings.append(f"the data ends with a partial sample ({size % frame_bytes} byte(s)): ignored")
        self.frames = size // frame_bytes
        self._left = self.frames
        self.format = f"{'float' if self._float else 'PCM'} {bits}-bit WAV"

    def read(self, n: int) -> np.ndarray:
        n = min(n, self._left)
        frame_bytes = self._width * self.channels
        data = self._f.read(n * frame_bytes)
        got = len(data) // frame_bytes  # short if the file shrank while being read
        self._left = 0 if got < n else self._left - n
        data = data[: got * frame_bytes]
        if self._float:
            x = np.frombuffer(data, dtype="<f4" if self._width == 4 else "<f8").astype(np.float32)
            # NaN/inf or samples beyond full scale in a float file: silence / full scale.
            x = np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
            return x.reshape(-1, self.channels)
        return pcm_to_float(data, self._width, self.channels)

    def close(self) -> None:
        self._f.close()


class _SoundfileReader:
    """Any format libsndfile reads (FLAC, OGG, WAV encodings we do not decode ...)."""

    warnings: list[str] = []

    def __init__(self, path: str):
        import soundfile

        self._f = soundfile.SoundFile(path)
        self.rate_hz = self._f.samplerate
        self.channels = self._f.channels
        self.frames = self._f.frames
        self.format = f"{self._f.format} {self._f.subtype}"

    def read(self, n: int) -> np.ndarray:
        x = self._f.read(n, dtype="float32", always_2d=True)
        return np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)

    def close(self) -> None:
        self._f.close()


def _open_audio_file(path: str):
    """A reader for ``path``: vadstream's WAV parser, else soundfile; SourceError (one line) if neither."""
    if not os.path.exists(path):
        raise SourceError(f"input file not found: {path}")
    if os.path.isdir(path):
        raise SourceError(f"input is a directory, not an audio file: {path}")
    try:
        try:
            reader = _WavReader(path)
        except WavError as wav_exc:
            if not wav_exc.other_reader:
                raise SourceError(f"cannot read {path}: {wav_exc}") from None
            try:
                reader = _SoundfileReader(path)
            except ImportError:
                raise SourceError(f"cannot read {path}: {wav_exc} (WAV is supported; install soundfile for "
                                  "other formats)") from None
            except Exception as exc:  # soundfile.LibsndfileError and friends
                text = str(exc).replace(f"Error opening {path!r}: ", "").splitlines()
                raise SourceError(f"cannot read {path}: not a supported audio file "
                                  f"({text[0] if text else type(exc).__name__})") from None
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not (1 <= reader.channels <= MAX_CHANNELS and MIN_RATE_HZ <= reader.rate_hz <= MAX_RATE_HZ):
        reader.close()
        raise SourceError(f"cannot read {path}: unsupported format ({reader.channels} channel(s) at "
                          f"{reader.rate_hz} Hz; {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz, 1..{MAX_CHANNELS} channels)")
    return reader


class FileSource(Source):
    """A WAV (or soundfile-readable) file, resampled to 16 kHz mono, paced or as fast as read."""

    def __init__(self, spec: SourceSpec):
        super().__init__()
        self.spec = spec
        self.path = str(spec.input)
        self.name = f"file:{os.path.basename(self.path)}"
        self._reader = _open_audio_file(self.path)
        r = self._reader
        if spec.channel is not None and spec.channel >= r.channels:
            r.close()
            raise SourceError(f"channel {spec.channel} does not exist: {self.path} has "
                              f"{r.channels} channel(s) (0..{r.channels - 1})")
        self._resampler = Resampler(r.rate_hz, SAMPLE_RATE_HZ)
        self._chunk_frames = max(1, int(round(spec.block_ms * r.rate_hz / 1000.0)))
        self._pending = _Blocker(spec.block_samples)
        self._eof = False
        self._next_sample = 0
        self._t0_mono = self._t0_wall = 0
        self._started = False

    def start(self) -> None:
        self._t0_mono = time.monotonic_ns()
        self._t0_wall = time.time_ns()
        self._started = True
        r = self._reader
        for warning in r.warnings:  # a damaged but readable file: said once, at the start
            log.warning("%s: %s", self.path, warning)
        self._report("opened", f"reading {self.path} ({r.format}, {r.rate_hz} Hz, {r.channels} ch, "
                     f"{r.frames / r.rate_hz:.2f} s{'' if self.spec.realtime else ', not paced'})",
                     path=self.path, rate_hz=r.rate_hz, channels=r.channels,
                     duration_s=r.frames / r.rate_hz, realtime=self.spec.realtime, warnings=list(r.warnings))

    def _fill(self, want: int) -> None:
        while len(self._pending) < want and not self._eof:
            try:
                frames = self._reader.read(self._chunk_frames)
            except Exception as exc:
                self._eof = True
                self._report("error", f"read error in {self.path}: {exc}", path=self.path)
                break
            if frames.shape[0] == 0:
                self._eof = True
                self._pending.add(self._resampler.flush())
                self._reader.close()
                break
            self._pending.add(self._resampler.process(to_mono(frames, self.spec.channel)))

    def read(self, timeout_s: float) -> AudioBlock | None:
        if not self._started:
            self.start()
        n = self.spec.block_samples
        self._fill(n)
        if len(self._pending) == 0:
            if timeout_s > 0 and not self._eof:
                time.sleep(timeout_s)
            return None
        n = min(n, len(self._pending))
        s = self._next_sample
        if self.spec.realtime:
            due_ns = self._t0_mono + (s + n) * 1_000_000_000 // SAMPLE_RATE_HZ
            wait_s = (due_ns - time.monotonic_ns()) / 1e9
            if wait_s > timeout_s:
                time.sleep(max(0.0, timeout_s))
                return None
            if wait_s > 0:
                time.sleep(wait_s)
        samples = self._pending.take(n)
        self._next_sample = s + samples.size
        return AudioBlock(samples, s, self._t0_wall + s * 1_000_000_000 // SAMPLE_RATE_HZ)

    @property
    def finished(self) -> bool:
        return self._eof and len(self._pending) == 0

    def stats(self) -> dict:
        r = self._reader
        return {"kind": "file", "path": self.path, "format": r.format, "file_rate_hz": r.rate_hz,
                "channels": r.channels, "channel": self.spec.channel,
                "duration_s": r.frames / r.rate_hz, "realtime": self.spec.realtime,
                "samples_delivered": self._next_sample, "overflow_samples": 0}

    def close(self) -> None:
        try:
            self._reader.close()
        except Exception:
            pass


# -- raw stdin -----------------------------------------------------------------------------------
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
                data = self._read_raw(chunk)
                now = time.time_ns()
                if not data:
                    if carry:
                        log.warning("stdin ended with an odd byte; ignored")
                    break
                self._bytes += len(data)
                data = carry + data
                if first and len(data) < 64 and data[:4] == b"RIFF"[: len(data)]:
                    carry = data  # need more to decide whether this is a WAV header
                    continue
                if first:
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
                    x = np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0
                    self._queue.put(("audio", (x, now)))
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


def open_source(spec: SourceSpec) -> Source:
    """The source ``spec`` describes; raises :class:`SourceError` (one line) if it cannot be used."""
    if spec.input is None:
        from vadstream.capture import CaptureSource

        return CaptureSource(spec)
    if spec.input == "-":
        return StdinSource(spec)
    return FileSource(spec)
