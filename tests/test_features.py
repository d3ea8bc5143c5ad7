"""Streaming MFCC equals python_speech_features.mfcc() on the whole signal, in any chunking."""

import numpy as np
import pytest
import python_speech_features as psf

from vadstream.stages.features import FeatureConfig, StreamingMfcc, mel_filterbank, mfcc

CONFIGS = [
    FeatureConfig(),
    FeatureConfig(numcep=20, nfilt=32, preemph=0.95, ceplifter=0, append_energy=False),
    FeatureConfig(winlen_s=0.032, winstep_s=0.016, nfft=512, lowfreq_hz=60, highfreq_hz=7600),
    FeatureConfig(winstep_s=0.02),  # the shipped model's frames: 25 ms every 20 ms
    FeatureConfig(winlen_s=0.02, winstep_s=0.01, nfft=401),  # odd FFT size
]


def _stream(cfg, x, rng, max_chunk):
    s = StreamingMfcc(cfg)
    parts, i = [], 0
    while i < x.size:
        k = int(rng.integers(1, max_chunk + 1))
        parts.append(s.process(x[i:i + k]))
        i += k
    parts.append(s.flush())
    return np.concatenate(parts)


@pytest.mark.parametrize("cfg", CONFIGS, ids=["default", "no-energy", "32ms", "step20ms", "odd-nfft"])
@pytest.mark.parametrize("length", [1, 399, 400, 401, 561, 4000, 16123])
def test_streaming_equals_offline_any_chunking(cfg, length):
    rng = np.random.default_rng(length)
    x = rng.standard_normal(length) * 0.1
    x[: length // 3] *= 0.001  # quiet stretch, then louder
    ref = psf.mfcc(x, **cfg.mfcc_kwargs())
    assert np.abs(mfcc(x, cfg) - ref).max() < 1e-6
    for max_chunk in (1, 7, 160, 1000):
        got = _stream(cfg, x, rng, max_chunk)
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() < 1e-6, max_chunk


def test_per_chunk_offline_calls_would_differ():
    """The trap the streaming code avoids: psf.mfcc per chunk restarts pre-emphasis at edges."""
    cfg = FeatureConfig()
    x = np.random.default_rng(0).standard_normal(3200) * 0.1
    whole = psf.mfcc(x, **cfg.mfcc_kwargs())
    naive = np.concatenate([psf.mfcc(x[i:i + 800], **cfg.mfcc_kwargs()) for i in range(0, 3200, 800)])
    assert naive.shape != whole.shape or np.abs(naive - whole).max() > 1e-3


def test_filterbank_matches_python_speech_features():
    for cfg in CONFIGS:
        ref = psf.get_filterbanks(cfg.nfilt, cfg.nfft, cfg.sample_rate_hz, cfg.lowfreq_hz, cfg.highfreq_hz)
        assert np.array_equal(mel_filterbank(cfg), ref)


def test_digital_silence_gives_log_eps_not_nan():
    cfg = FeatureConfig()
    out = mfcc(np.zeros(1600), cfg)
    assert np.isfinite(out).all()
    assert np.allclose(out[:, 0], np.log(np.finfo(float).eps))
    assert np.allclose(out, psf.mfcc(np.zeros(1600), **cfg.mfcc_kwargs()))


def test_frame_count_and_reset():
    cfg = FeatureConfig()
    s = StreamingMfcc(cfg)
    assert s.process(np.zeros(399)).shape == (0, 13)
    assert s.process(np.zeros(1)).shape == (1, 13)
    assert s.process(np.zeros(160)).shape == (1, 13)
    s.reset()
    assert s.frames_emitted == 0 and s.flush().shape == (0, 13)


def test_rejects_window_longer_than_fft():
    with pytest.raises(ValueError, match="longer than nfft"):
        StreamingMfcc(FeatureConfig(winlen_s=0.05, nfft=512))
