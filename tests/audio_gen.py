"""Deterministic test audio with known speech regions: espeak-ng phrases between silences and noise.

``make_test_audio()`` returns a :class:`TestAudio`: 16 kHz mono float32 samples and the speech
regions as ``[start, end)`` sample pairs, measured from the espeak-ng output's energy (10 ms
frames above ``max(-50 dBFS, loudest frame - 40 dB)``; pauses shorter than ``merge_gap_s``
inside a phrase belong to the region). The layout is fixed: ``lead_s`` of background, then each
phrase followed by a gap; optional noise bursts sit in the middle of gaps. Background noise is
synthetic (seeded pink noise) or, with ``corpus_noise=True`` and ``../shared/data`` present, an
ambient clip from the corpus. Same arguments, same samples: espeak-ng is deterministic and the
noise is seeded. espeak-ng's 22.05 kHz output is resampled with scipy's ``resample_poly`` (not
with the resampler under test).
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

RATE_HZ = 16000
FRAME = 160  # 10 ms

DEFAULT_PHRASES = (
    "turn on the kitchen lights",
    "what is the weather like tomorrow morning",
    "set a timer for ten minutes",
)


def espeak_missing() -> str | None:
    if shutil.which("espeak-ng") is None:
        return "espeak-ng not installed (Debian: espeak-ng)"
    return None


def _resample_poly(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    from scipy.signal import resample_poly

    g = np.gcd(in_rate, out_rate)
    return resample_poly(x.astype(np.float64), out_rate // g, in_rate // g)


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """PCM 16-bit WAV -> (float32 (frames, channels), rate)."""
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2, "test WAVs are 16-bit"
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return (data.reshape(-1, w.getnchannels()).astype(np.float32) / 32768.0), w.getframerate()


def write_wav(path: str | Path, samples: np.ndarray, rate_hz: int) -> Path:
    """Write float samples ((n,) or (n, channels)) as 16-bit PCM WAV."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(pcm.tobytes())
    return Path(path)


@functools.lru_cache(maxsize=32)
def _espeak_cached(text: str, voice: str, speed_wpm: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed_wpm), "-w", str(out), text],
                       check=True, capture_output=True, timeout=60)
        x, rate = read_wav(out)
    y = _resample_poly(x[:, 0], rate, RATE_HZ).astype(np.float32)
    y.setflags(write=False)
    return y


def espeak(text: str, voice: str = "en", speed_wpm: int = 160) -> np.ndarray:
    """``text`` spoken by espeak-ng, 16 kHz mono float32 (a copy)."""
    return _espeak_cached(text, voice, speed_wpm).copy()


def speech_regions(x: np.ndarray, merge_gap_s: float = 0.3, floor_dbfs: float = -50.0,
                   below_peak_db: float = 40.0) -> list[tuple[int, int]]:
    """``[start, end)`` sample regions of ``x`` whose 10 ms frame energy is above the threshold."""
    n = x.size // FRAME
    if n == 0:
        return []
    frames = x[: n * FRAME].astype(np.float64).reshape(n, FRAME)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
    thr = max(floor_dbfs, db.max() - below_peak_db)
    active = np.flatnonzero(db > thr)
    if active.size == 0:
        return []
    regions = []
    start = prev = active[0]
    gap = int(round(merge_gap_s * RATE_HZ / FRAME))
    for f in active[1:]:
        if f - prev > gap:
            regions.append((int(start) * FRAME, (int(prev) + 1) * FRAME))
            start = f
        prev = f
    regions.append((int(start) * FRAME, (int(prev) + 1) * FRAME))
    return regions


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS pink (1/f) noise, by shaping white noise in the frequency domain."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    y = np.fft.irfft(spec / np.sqrt(f), n)
    return y / (np.sqrt(np.mean(y**2)) + 1e-20)


def _corpus_noise(n: int, rng: np.random.Generator) -> np.ndarray | None:
    from conftest import SHARED_DATA

    files = sorted((SHARED_DATA / "dev" / "nonspeech" / "ambient").rglob("*.flac"))
    if not files:
        return None
    import soundfile

    x, rate = soundfile.read(str(files[int(rng.integers(len(files)))]), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if rate != RATE_HZ:
        x = _resample_poly(x, rate, RATE_HZ)
    x = np.resize(x, n).astype(np.float64)
    return x / (np.sqrt(np.mean(x**2)) + 1e-20)


@dataclasses.dataclass
class TestAudio:
    """16 kHz mono test signal and its speech regions (``[start, end)`` samples)."""

    __test__ = False  # not a pytest test class

    samples: np.ndarray
    speech: list[tuple[int, int]]
    phrases: tuple[str, ...]
    rate_hz: int = RATE_HZ

    @property
    def duration_s(self) -> float:
        return self.samples.size / self.rate_hz

    def speech_s(self) -> list[tuple[float, float]]:
        return [(a / self.rate_hz, b / self.rate_hz) for a, b in self.speech]

    def write_wav(self, path: str | Path, rate_hz: int = RATE_HZ, channels: int = 1) -> Path:
        """Write as 16-bit PCM at ``rate_hz`` (scipy polyphase) with the signal on every channel."""
        x = self.samples if rate_hz == RATE_HZ else _resample_poly(self.samples, RATE_HZ, rate_hz)
        if channels > 1:
            x = np.repeat(np.asarray(x)[:, None], channels, axis=1)
        return write_wav(path, x, rate_hz)


def make_test_audio(phrases: tuple[str, ...] = DEFAULT_PHRASES, lead_s: float = 1.0,
                    gap_s: float = 2.0, tail_s: float = 1.5, noise_dbfs: float | None = -55.0,
                    burst_dbfs: float | None = None, corpus_noise: bool = False,
                    speech_dbfs: float = -20.0, fade_in_s: float = 0.5, seed: int = 0) -> TestAudio:
    """Phrases spoken by espeak-ng separated by ``gap_s`` of background; see the module docstring.

    Args:
        noise_dbfs: RMS level of the background noise in dBFS (None: digital silence).
        burst_dbfs: RMS level of a 0.6 s noise burst in the middle of every gap (None: none).
        speech_dbfs: RMS level each phrase is scaled to over its speech region.
        corpus_noise: use an ambient clip from ../shared/data as background when present.
        fade_in_s: the background fades in over this long (no step out of digital silence,
            which is what a sound server's monitor gives before playback starts).
    """
    rng = np.random.default_rng(seed)
    lead, gap, tail = (int(round(s * RATE_HZ)) for s in (lead_s, gap_s, tail_s))
    parts, regions, pos = [np.zeros(lead)], [], lead
    burst_at = []
    for i, text in enumerate(phrases):
        y = espeak(text).astype(np.float64)
        local = speech_regions(y.astype(np.float32))
        a, b = local[0][0], local[-1][1]
        y = y * (10 ** (speech_dbfs / 20) / (np.sqrt(np.mean(y[a:b] ** 2)) + 1e-20))
        regions += [(pos + s, pos + e) for s, e in local]
        parts.append(y)
        pos += y.size
        after = tail if i == len(phrases) - 1 else gap
        if i < len(phrases) - 1:
            burst_at.append(pos + after // 2)
        parts.append(np.zeros(after))
        pos += after
    x = np.concatenate(parts)
    if noise_dbfs is not None:
        noise = _corpus_noise(x.size, rng) if corpus_noise else None
        if noise is None:
            noise = pink_noise(x.size, rng)
        noise = noise * 10 ** (noise_dbfs / 20)
        n_fade = min(int(fade_in_s * RATE_HZ), lead)
        noise[:n_fade] *= np.linspace(0.0, 1.0, n_fade)
        x = x + noise
    if burst_dbfs is not None:
        half = int(0.3 * RATE_HZ)
        for c in burst_at:
            ramp = np.hanning(2 * half)
            x[c - half: c + half] += ramp * pink_noise(2 * half, rng) * 10 ** (burst_dbfs / 20) * np.sqrt(1.5)
    return TestAudio(np.clip(x, -1.0, 32767 / 32768).astype(np.float32), regions, tuple(phrases))


def two_phrases() -> TestAudio:
    """Two phrases over faint noise with a click between them (skips the test without espeak-ng):
    the file-level tests' clip (daemon, ``vadstream file``, Stream)."""
    import pytest

    if espeak_missing():
        pytest.skip(espeak_missing())
    return make_test_audio(("turn on the kitchen lights", "what is the weather like tomorrow morning"),
                           gap_s=1.5, tail_s=1.0, noise_dbfs=-50.0, burst_dbfs=-30.0)
