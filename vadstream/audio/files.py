"""Audio files as a :class:`~vadstream.audio.blocks.Source`: WAV (PCM 8-32-bit and float, any rate
4..384 kHz and channel count) through vadstream's own RIFF parser, anything else libsndfile reads
through ``soundfile``; resampled to 16 kHz mono. A damaged WAV is read as far as it makes sense
(a data chunk longer than the file, a trailing partial sample: one warning) or refused with one line."""

from __future__ import annotations

import logging
import math
import os
import time

import numpy as np

from vadstream.audio.blocks import (
    MAX_RATE_HZ,
    MIN_RATE_HZ,
    SAMPLE_RATE_HZ,
    AudioBlock,
    BlockCutter,
    Source,
    SourceError,
    SourceSpec,
    pcm_to_float,
    to_mono,
)
from vadstream.stages.resample import Resampler

log = logging.getLogger("vadstream.audio")


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


MAX_RATIO_TERM = 1000  # largest up/down term of the resampling ratio: every common rate needs <= 640


def resampling_rate(rate_hz: int) -> int:
    """The rate to resample ``rate_hz`` audio from: itself, unless its ratio to 16 kHz reduces to
    terms over ``MAX_RATIO_TERM`` (44101 Hz: 16000/44101 would need a 4.5-million-tap filter,
    seconds and hundreds of MB to build); then the nearest rate whose ratio is small (44100 Hz),
    at most 0.25 % away, a pitch and time error no detector notices."""
    for k in range(0, rate_hz):
        for r in (rate_hz - k, rate_hz + k):
            g = math.gcd(r, SAMPLE_RATE_HZ)
            if r > 0 and max(SAMPLE_RATE_HZ // g, r // g) <= MAX_RATIO_TERM:
                return r
    return SAMPLE_RATE_HZ  # not reached for rates > 0


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
        self.warnings = list(r.warnings)
        from_hz = resampling_rate(r.rate_hz)
        if from_hz != r.rate_hz:
            self.warnings.append(f"unusual sample rate {r.rate_hz} Hz: resampled as {from_hz} Hz "
                                 f"({abs(from_hz - r.rate_hz) / r.rate_hz * 1e6:.0f} ppm off)")
        self._resampler = Resampler(from_hz, SAMPLE_RATE_HZ)
        self._chunk_frames = max(1, int(round(spec.block_ms * r.rate_hz / 1000.0)))
        self._pending = BlockCutter(spec.block_samples)
        self._eof = False
        self._next_sample = 0
        self._t0_mono = self._t0_wall = 0
        self._started = False

    def start(self) -> None:
        self._t0_mono = time.monotonic_ns()
        self._t0_wall = time.time_ns()
        self._started = True
        r = self._reader
        for warning in self.warnings:  # a damaged or odd but readable file: said once, at the start
            log.warning("%s: %s", self.path, warning)
        self._report("opened", f"reading {self.path} ({r.format}, {r.rate_hz} Hz, {r.channels} ch, "
                     f"{r.frames / r.rate_hz:.2f} s{'' if self.spec.realtime else ', not paced'})",
                     path=self.path, rate_hz=r.rate_hz, channels=r.channels,
                     duration_s=r.frames / r.rate_hz, realtime=self.spec.realtime, warnings=self.warnings)

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
                self._pending.add(self._full_scale(self._resampler.flush()))
                self._reader.close()
                break
            self._pending.add(self._full_scale(self._resampler.process(to_mono(frames, self.spec.channel))))

    def _full_scale(self, x: np.ndarray) -> np.ndarray:
        """Resampling rings past full scale near clipped input (a sharp filter's overshoot, up to
        ~1.6 on a full-scale square wave): clip, as a converter would, so blocks stay in [-1, 1]."""
        if self._resampler.identity or not x.size or (x.min() >= -1.0 and x.max() <= 1.0):
            return x
        return np.clip(x, -1.0, 1.0, out=x)

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
