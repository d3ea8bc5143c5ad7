"""Streaming polyphase resampler: streaming == one-shot, stopband attenuation, passband accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from vadstream.stages.resample import Resampler, resample

RATES = [48000, 44100, 32000, 22050, 8000]


def tone(freq_hz: float, rate_hz: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq_hz * np.arange(int(rate_hz * seconds)) / rate_hz)


def level_db(y: np.ndarray, edge: int = 2000) -> float:
    y = y[edge:-edge]
    return 20 * np.log10(np.sqrt(2) * np.std(y) + 1e-15)


@pytest.mark.parametrize("rate", RATES)
def test_streaming_random_chunks_equals_one_shot(rate):
    rng = np.random.default_rng(rate)
    x = rng.standard_normal(int(rate * 0.7)).astype(np.float32)
    whole = resample(x, rate)
    r = Resampler(rate)
    parts, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, 2000)) if rng.random() > 0.2 else 1
        parts.append(r.process(x[i: i + n]))
        i += n
    parts.append(r.flush())
    streamed = np.concatenate(parts)
    assert streamed.dtype == np.float32
    assert streamed.size == whole.size == -(-x.size * 16000 // rate)
    np.testing.assert_allclose(streamed, whole, atol=1e-6)


@pytest.mark.parametrize("rate", [48000, 44100])
def test_stopband_attenuation(rate):
    """Tones above 8 kHz would alias into the band; they must come out at least 75 dB down."""
    levels = {}
    for f in (8100, 8300, 9000, 10000, 12000, 15000, 20000):
        levels[f] = level_db(resample(tone(f, rate, amp=1.0), rate))
    print(f"{rate} Hz stopband levels (dB re full scale):",
          {f: round(v, 1) for f, v in levels.items()})
    assert max(levels.values()) < -75.0


@pytest.mark.parametrize("rate", RATES)
def test_passband_tones_keep_amplitude_and_frequency(rate):
    for f in (300.0, 1000.0, 3000.0):
        if f >= rate / 2 * 0.9:
            continue
        y = resample(tone(f, rate), rate)
        y_mid = y[2000:-2000]
        assert abs(np.sqrt(2) * y_mid.std() - 0.5) < 0.5 * 0.002  # within 0.02 dB
        spec = np.abs(np.fft.rfft(y_mid * np.hanning(y_mid.size)))
        peak_hz = np.argmax(spec) * 16000 / y_mid.size
        assert abs(peak_hz - f) < 2.0


def test_upper_passband_flat_to_7khz():
    assert abs(level_db(resample(tone(7000, 48000, amp=1.0), 48000))) < 0.05


def test_delay_compensated_alignment():
    """Output sample n is the input at time n/16000: an impulse lands where it should."""
    for rate in (48000, 44100, 8000):
        x = np.zeros(rate)
        x[rate // 2] = 1.0  # t = 0.5 s
        y = resample(x, rate)
        assert abs(int(np.argmax(y)) - 8000) <= 1


def test_identity_and_reset():
    r = Resampler(16000, 16000)
    x = np.arange(10, dtype=np.float32)
    assert np.array_equal(r.process(x), x)
    r = Resampler(48000)
    a = np.concatenate([r.process(np.ones(4800)), r.flush()])
    b = np.concatenate([r.process(np.ones(4800)), r.flush()])  # flush reset it
    np.testing.assert_array_equal(a, b)


def test_streaming_cost_is_small():
    """Live 48 kHz capture: resampling 1 s of 20 ms blocks takes well under 5% of a core."""
    import time

    r = Resampler(44100)
    x = np.random.default_rng(0).standard_normal(44100).astype(np.float32)
    t = time.perf_counter()
    for i in range(0, x.size, 882):
        r.process(x[i: i + 882])
    assert time.perf_counter() - t < 0.05 * 4  # allow for a shared, busy machine
