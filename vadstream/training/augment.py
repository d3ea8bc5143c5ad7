"""Signal augmentations that imitate real microphones and rooms (numpy/scipy, float32 16 kHz).

Every function takes and returns a 1-D float array and keeps its length (except
:func:`change_speed`, whose job is to change it), and draws randomness only from the
``rng`` it is given, so a seed reproduces a training set.
"""

from __future__ import annotations

import math

import numpy as np

from vadstream.stages.samples import SAMPLE_RATE_HZ


def apply_gain_db(x: np.ndarray, gain_db: float, clip: bool = True) -> np.ndarray:
    """Scale by ``gain_db``; with ``clip`` the result is hard-clipped to [-1, 1] like an ADC."""
    y = np.asarray(x, dtype=np.float32) * np.float32(10.0 ** (gain_db / 20.0))
    return np.clip(y, -1.0, 1.0) if clip else y


def normalise_peak(x: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """Scale so the absolute peak is at ``peak_dbfs`` (silence stays silence)."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak <= 0:
        return np.asarray(x, dtype=np.float32).copy()
    return (np.asarray(x, dtype=np.float32) * np.float32(10.0 ** (peak_dbfs / 20.0) / peak))


def synthetic_rir(rng: np.random.Generator, rt60_s: float, direct_to_reverb_db: float,
                  sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Room impulse response: a unit direct path then exponentially decaying noise (-60 dB at
    ``rt60_s``), a few ms of pre-delay, low-passed a little per reflection; the reverberant energy is
    set ``direct_to_reverb_db`` below the direct path's."""
    n = max(16, int(rt60_s * sample_rate_hz))
    t = np.arange(n) / sample_rate_hz
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60_s)  # ln(1000) = 60 dB
    # Walls absorb high frequencies: smooth the tail with a short one-pole low-pass.
    from scipy.signal import lfilter

    a = rng.uniform(0.0, 0.6)
    tail = lfilter([1 - a], [1, -a], tail)
    predelay = int(rng.uniform(0.002, 0.02) * sample_rate_hz)
    tail[:predelay] = 0.0
    energy = float(np.sum(tail ** 2))
    if energy > 0:
        tail *= math.sqrt(10.0 ** (-direct_to_reverb_db / 10.0) / energy)
    tail[0] = 1.0
    return tail.astype(np.float32)


def reverberate(x: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with a room impulse response, keep the original length, keep the direct path level."""
    from scipy.signal import fftconvolve

    if x.size == 0:
        return np.asarray(x, dtype=np.float32).copy()
    return fftconvolve(np.asarray(x, dtype=np.float64), rir)[: x.size].astype(np.float32)


def band_limit(x: np.ndarray, low_hz: float | None, high_hz: float | None, order: int = 6) -> np.ndarray:
    """Butterworth band-pass/low-pass/high-pass (zero-phase not needed: causal like a real channel)."""
    from scipy.signal import butter, sosfilt

    nyq = SAMPLE_RATE_HZ / 2
    if low_hz and high_hz:
        sos = butter(order, [low_hz / nyq, min(high_hz / nyq, 0.999)], btype="bandpass", output="sos")
    elif high_hz:
        sos = butter(order, min(high_hz / nyq, 0.999), btype="lowpass", output="sos")
    elif low_hz:
        sos = butter(order, low_hz / nyq, btype="highpass", output="sos")
    else:
        return np.asarray(x, dtype=np.float32).copy()
    return sosfilt(sos, np.asarray(x, dtype=np.float64)).astype(np.float32)


def telephone(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Narrow-band telephone channel: 8 kHz round trip (nothing above 4 kHz), 300-3400 Hz band,
    optional G.711 mu-law companding. The round trip is the phone network's (scipy's polyphase
    filter), not vadstream's input resampling, and is per scene: it stays on scipy's fast C code."""
    from scipy.signal import resample_poly

    def resample(y: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
        g = math.gcd(from_hz, to_hz)
        return resample_poly(np.asarray(y, dtype=np.float64), to_hz // g, from_hz // g).astype(np.float32)

    y = resample(np.asarray(x, dtype=np.float32), SAMPLE_RATE_HZ, 8000)
    if rng.random() < 0.5:
        mu = 255.0
        yc = np.clip(y, -1, 1)
        q = np.round(np.sign(yc) * np.log1p(mu * np.abs(yc)) / math.log1p(mu) * 127) / 127
        y = (np.sign(q) * np.expm1(np.abs(q) * math.log1p(mu)) / mu).astype(np.float32)
    y = resample(y, 8000, SAMPLE_RATE_HZ)[: x.size]
    if y.size < x.size:
        y = np.concatenate([y, np.zeros(x.size - y.size, dtype=np.float32)])
    return band_limit(y, rng.uniform(200, 400), 3400)


def add_dc_and_hum(x: np.ndarray, rng: np.random.Generator, dc: float, hum_dbfs: float | None) -> np.ndarray:
    """Add a DC offset and mains hum (50 or 60 Hz with a few odd/even harmonics) at ``hum_dbfs`` RMS."""
    y = np.asarray(x, dtype=np.float32) + np.float32(dc)
    if hum_dbfs is not None:
        f0 = 50.0 if rng.random() < 0.5 else 60.0
        t = np.arange(x.size) / SAMPLE_RATE_HZ
        hum = np.zeros(x.size)
        for h in range(1, 6):
            hum += rng.uniform(0.0, 1.0 / h) * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi))
        rms = float(np.sqrt(np.mean(hum ** 2))) or 1.0
        y = y + (hum * (10.0 ** (hum_dbfs / 20.0) / rms)).astype(np.float32)
    return y


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (pitch and tempo together, by resampling); length / factor."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    frac = Fraction(factor).limit_denominator(40)
    if frac == 1:
        return np.asarray(x, dtype=np.float32).copy()
    return resample_poly(np.asarray(x, dtype=np.float64), frac.denominator, frac.numerator).astype(np.float32)


def random_eq(x: np.ndarray, rng: np.random.Generator, n_bands: int = 3) -> np.ndarray:
    """Microphone colouring: a few random peaking filters (+-10 dB, 100 Hz-6 kHz) and, sometimes, a
    high-pass (cheap mic, 80-400 Hz) and a low-pass (muffled or covered mic, 2-7 kHz)."""
    from scipy.signal import lfilter

    y = np.asarray(x, dtype=np.float64)
    for _ in range(n_bands):
        f0 = math.exp(rng.uniform(math.log(100), math.log(6000)))
        gain_db = rng.uniform(-10, 10)
        q = rng.uniform(0.5, 3.0)
        y = lfilter(*_peaking(f0, gain_db, q), y)
    if rng.random() < 0.4:
        y = band_limit(y, rng.uniform(80, 400), None, order=2)
    if rng.random() < 0.3:
        y = band_limit(y, None, rng.uniform(2000, 7000), order=4)
    return np.asarray(y, dtype=np.float32)


def _peaking(f0_hz: float, gain_db: float, q: float) -> tuple[np.ndarray, np.ndarray]:
    """RBJ audio-EQ-cookbook peaking biquad (b, a)."""
    amp = 10.0 ** (gain_db / 40.0)
    w0 = 2 * math.pi * f0_hz / SAMPLE_RATE_HZ
    alpha = math.sin(w0) / (2 * q)
    b = np.array([1 + alpha * amp, -2 * math.cos(w0), 1 - alpha * amp])
    a = np.array([1 + alpha / amp, -2 * math.cos(w0), 1 - alpha / amp])
    return b / a[0], a / a[0]


def quantise(x: np.ndarray, bits: int) -> np.ndarray:
    """Round to a ``bits``-bit integer grid (low-resolution ADC / 8-bit audio)."""
    scale = float(2 ** (bits - 1))
    return (np.round(np.clip(x, -1, 1) * scale) / scale).astype(np.float32)


def coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Unit-RMS noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.fft.rfftfreq(n)
    f[0] = f[1] if n > 1 else 1.0
    spec *= f ** (-exponent / 2.0)
    y = np.fft.irfft(spec, n)
    rms = float(np.sqrt(np.mean(y ** 2))) or 1.0
    return (y / rms).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Transient non-speech events: the impulsive room sounds (clicks, taps, breath, mouth noises)
# that stationary ambient loops hardly contain and that the real-world report showed as false
# alarms. All are unit-peak; the caller sets the level.
# --------------------------------------------------------------------------------------------
def _decay(n: int, tau_samples: float) -> np.ndarray:
    return np.exp(-np.arange(n) / max(tau_samples, 1.0)).astype(np.float32)


def click(rng: np.random.Generator) -> np.ndarray:
    """A click, tick or tap: a few-ms burst of coloured noise or a damped resonance, sharp attack."""
    n = int(rng.uniform(0.002, 0.04) * SAMPLE_RATE_HZ)
    if rng.random() < 0.5:
        y = coloured_noise(rng, n, rng.choice([0.0, 1.0])) * _decay(n, rng.uniform(0.0005, 0.01) * SAMPLE_RATE_HZ)
        if rng.random() < 0.6:
            lo = rng.uniform(100, 2000)
            y = band_limit(y, lo, min(7800.0, lo * rng.uniform(2, 10)), order=2)
    else:  # knock / tap on a surface: damped sinusoid(s)
        t = np.arange(n) / SAMPLE_RATE_HZ
        y = np.zeros(n)
        for _ in range(int(rng.integers(1, 4))):
            y += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * rng.uniform(80, 3000) * t + rng.uniform(0, 6.3))
        y *= _decay(n, rng.uniform(0.001, 0.02) * SAMPLE_RATE_HZ)
    peak = float(np.max(np.abs(y))) or 1.0
    return (np.asarray(y) / peak).astype(np.float32)


def breath(rng: np.random.Generator) -> np.ndarray:
    """A breath, sigh, blow or rustle: 0.15-1.2 s of band-limited noise under a smooth envelope."""
    n = int(rng.uniform(0.15, 1.2) * SAMPLE_RATE_HZ)
    y = coloured_noise(rng, n, rng.choice([0.0, 1.0, 2.0]))
    lo = rng.uniform(100, 1500)
    y = band_limit(y, lo, min(7800.0, lo * rng.uniform(2, 8)), order=2)
    attack = rng.uniform(0.1, 0.5)
    env = np.sin(np.pi * np.clip(np.linspace(0, 1, n) / (2 * attack), 0, 0.5)) * \
        np.sin(np.pi * np.clip((1 - np.linspace(0, 1, n)) / (2 * (1 - attack)), 0, 0.5))
    y = y * env * (1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(2, 12) * np.arange(n) / SAMPLE_RATE_HZ))
    peak = float(np.max(np.abs(y))) or 1.0
    return (y / peak).astype(np.float32)


def click_train(rng: np.random.Generator) -> np.ndarray:
    """Typing, tapping or a ticking clock: 3-15 clicks 60-400 ms apart."""
    parts: list[np.ndarray] = []
    for _ in range(int(rng.integers(3, 16))):
        parts.append(click(rng) * np.float32(rng.uniform(0.3, 1.0)))
        parts.append(np.zeros(int(rng.uniform(0.06, 0.4) * SAMPLE_RATE_HZ), dtype=np.float32))
    y = np.concatenate(parts)
    return y / np.float32(np.max(np.abs(y)) or 1.0)


def transient(rng: np.random.Generator) -> np.ndarray:
    """One random transient event (click, breath or click train)."""
    kind = rng.choice(3, p=[0.45, 0.35, 0.2])
    return click(rng) if kind == 0 else breath(rng) if kind == 1 else click_train(rng)


def opus_round_trip(x: np.ndarray) -> np.ndarray:
    """Encode to Ogg/Opus and decode (libsndfile), as the crowd-sourced speech sets were stored:
    applied to non-speech alike so that the codec is no cue for speech."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(x, dtype=np.float32), -1, 1), SAMPLE_RATE_HZ, format="OGG", subtype="OPUS")
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")
    out = np.zeros(np.asarray(x).size, dtype=np.float32)
    m = min(out.size, y.size)
    out[:m] = y[:m]
    return out
