"""Training pipeline: labels, augmentation, metrics, window geometry, smoke training."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from vadstream.training import augment as aug
from vadstream.training.data import (
    LabelledAudio,
    build_eval_set,
    build_nonspeech_set,
    find_clips,
    load_audio,
    mix_at_snr,
    speech_mask,
)

pytestmark = pytest.mark.training  # make test-fast skips them

SR = 16000


def voiced(seconds: float, f0: float = 140.0, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    """A speech-like harmonic signal with a syllable-rate envelope that never reaches zero."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 2 * t))) / SR
    x = sum(np.sin(h * phase + rng.uniform(0, 6)) / h for h in range(1, 15))
    env = 0.4 + 0.6 * np.abs(np.sin(2 * np.pi * 2.5 * t))
    return (amp * x * env / np.max(np.abs(x))).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


def band_energy(x: np.ndarray, lo_hz: float, hi_hz: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / SR)
    return float(spec[(f >= lo_hz) & (f < hi_hz)].sum())


# ----------------------------------------------------------------------------- labels

def test_speech_mask_finds_known_regions():
    x = np.concatenate([silence(1.0), voiced(1.0), silence(1.0), voiced(0.5, f0=220, seed=1), silence(0.5)])
    m = speech_mask(x)
    assert m.shape == x.shape and m.dtype == bool
    assert m[int(1.05 * SR): int(1.95 * SR)].all()
    assert m[int(3.05 * SR): int(3.45 * SR)].all()
    # silence more than the 20 ms padding + one analysis frame away from speech is not speech
    assert not m[: int(0.95 * SR)].any()
    assert not m[int(2.05 * SR): int(2.95 * SR)].any()
    assert not m[int(3.55 * SR):].any()


def test_speech_mask_closes_short_pauses_but_not_long_ones():
    x = np.concatenate([silence(0.5), voiced(0.5), silence(0.1), voiced(0.5), silence(0.6), voiced(0.5), silence(0.5)])
    m = speech_mask(x)
    assert m[int(1.0 * SR): int(1.1 * SR)].all()  # 100 ms pause: bridged
    assert not m[int(1.7 * SR): int(2.1 * SR)].any()  # 600 ms pause: not


def test_speech_mask_is_level_independent():
    x = np.concatenate([silence(0.5), voiced(1.0), silence(0.5)])
    loud, quiet = speech_mask(x), speech_mask(x * np.float32(0.01))
    assert np.mean(loud == quiet) > 0.99


def test_digital_silence_and_dither_are_not_speech():
    assert not speech_mask(silence(2.0)).any()
    rng = np.random.default_rng(0)
    assert not speech_mask((rng.standard_normal(2 * SR) * 1e-5).astype(np.float32)).any()  # -100 dBFS
    assert not speech_mask(np.full(SR, 0.01, dtype=np.float32)).any()  # pure DC
    assert speech_mask(np.zeros(0, dtype=np.float32)).size == 0


def test_mix_at_snr_sets_the_ratio():
    rng = np.random.default_rng(1)
    clean = np.concatenate([silence(0.5), voiced(1.0), silence(0.5)])
    mask = speech_mask(clean)
    noise = rng.standard_normal(clean.size).astype(np.float32)
    mixed = mix_at_snr(clean, mask, noise, 5.0)
    added = mixed.astype(np.float64) - clean
    snr = 10 * np.log10(np.mean(clean[mask].astype(np.float64) ** 2) / np.mean(added ** 2))
    assert snr == pytest.approx(5.0, abs=0.01)


# ----------------------------------------------------------------------------- augmentation

def test_telephone_removes_energy_above_4khz_and_keeps_length():
    rng = np.random.default_rng(2)
    x = aug.coloured_noise(rng, 2 * SR, 0.0) * np.float32(0.1)
    y = aug.telephone(x, rng)
    assert y.shape == x.shape and np.isfinite(y).all()
    assert band_energy(y, 4200, 8000) < 1e-4 * band_energy(x, 4200, 8000)
    assert band_energy(y, 500, 3000) > 0.3 * band_energy(x, 500, 3000)


def test_band_limit_low_pass():
    x = aug.coloured_noise(np.random.default_rng(3), SR, 0.0)
    y = aug.band_limit(x, None, 2000)
    assert y.shape == x.shape
    assert band_energy(y, 3000, 8000) < 1e-3 * band_energy(x, 3000, 8000)


def test_reverb_adds_a_decaying_tail_and_keeps_length():
    rng = np.random.default_rng(4)
    x = np.concatenate([voiced(0.3), silence(1.0)])
    rir = aug.synthetic_rir(rng, rt60_s=0.6, direct_to_reverb_db=0.0)
    y = aug.reverberate(x, rir)
    assert y.shape == x.shape and np.isfinite(y).all()
    tail = slice(int(0.35 * SR), int(0.5 * SR))
    assert np.mean(y[tail] ** 2) > 1e-3 * np.mean(x[: int(0.3 * SR)] ** 2)
    late = slice(int(1.1 * SR), int(1.3 * SR))
    assert np.mean(y[late] ** 2) < np.mean(y[tail] ** 2) / 100  # decays (RT60 0.6 s: -60 dB per 0.6 s)


def test_gain_clips_like_an_adc():
    x = voiced(0.5, amp=0.5)
    y = aug.apply_gain_db(x, 20.0)
    assert y.shape == x.shape and np.max(np.abs(y)) == pytest.approx(1.0)
    assert np.mean(np.abs(y) == 1.0) > 0.1
    assert np.max(np.abs(aug.apply_gain_db(x, -40.0))) == pytest.approx(0.005 * np.max(np.abs(x)) / 0.5, rel=1e-3)


def test_dc_and_hum():
    rng = np.random.default_rng(5)
    y = aug.add_dc_and_hum(silence(1.0), rng, dc=0.02, hum_dbfs=-30.0)
    assert np.mean(y) == pytest.approx(0.02, abs=1e-3)
    ac = y - y.mean()
    assert 10 * np.log10(np.mean(ac ** 2)) == pytest.approx(-30.0, abs=0.5)
    assert band_energy(ac, 40, 400) > 0.99 * band_energy(ac, 0, 8000)


def test_change_speed_changes_length_and_pitch():
    x = (0.5 * np.sin(2 * np.pi * 200 * np.arange(SR) / SR)).astype(np.float32)
    y = aug.change_speed(x, 1.25)
    assert abs(y.size - SR / 1.25) <= 2
    f = np.fft.rfftfreq(y.size, 1 / SR)[np.argmax(np.abs(np.fft.rfft(y)))]
    assert f == pytest.approx(250, abs=3)


def test_random_eq_and_quantise_keep_length_and_finite():
    rng = np.random.default_rng(6)
    x = aug.coloured_noise(rng, SR, 1.0) * np.float32(0.1)
    y = aug.random_eq(x, rng)
    assert y.shape == x.shape and np.isfinite(y).all() and not np.allclose(x, y)
    q = aug.quantise(x, 8)
    assert q.shape == x.shape and np.unique(q).size <= 256


def test_scenes_are_finite_and_labelled():
    from vadstream.training.scenes import make_scene
    from vadstream.training.train import synthetic_corpus

    rng = np.random.default_rng(7)
    corpus = synthetic_corpus(rng)
    kinds = set()
    for _ in range(20):
        audio, labels = make_scene(rng, corpus, 4.0)
        assert audio.shape == labels.shape == (4 * SR,)
        assert audio.dtype == np.float32 and np.isfinite(audio).all() and np.max(np.abs(audio)) <= 1.0
        assert not labels[audio == 0].all() or not labels.any() or (audio != 0).any()
        kinds.add(bool(labels.any()))
    assert kinds == {True, False}


# ----------------------------------------------------------------------------- metrics

def test_metrics_match_hand_computed_values():
    from vadstream.evaluation.metrics import average_precision, roc_auc

    y = np.array([0, 0, 1, 1, 0, 1], dtype=bool)
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    # pairs (pos, neg): 0.35 beats 0.1, 0.2 (2 of 3); 0.8 and 0.9 beat all -> 8/9
    assert roc_auc(y, s) == pytest.approx(8 / 9)
    # ranking 0.9+ 0.8+ 0.4- 0.35+ ...: AP = (1 + 1 + 3/4) / 3
    assert average_precision(y, s) == pytest.approx((1 + 1 + 0.75) / 3)
    assert roc_auc(y, np.full(6, 0.5)) == pytest.approx(0.5)


def test_hop_targets():
    from vadstream.training.scenes import hop_targets

    labels = np.zeros(1000, dtype=bool)
    labels[320:480] = True
    np.testing.assert_allclose(hop_targets(labels, 320, 4), [0, 0.5, 0, 0])


# ----------------------------------------------------------------------------- smoke training

def _train_args(tmp_path, **over) -> argparse.Namespace:
    from vadstream.training import train

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(["--smoke", "--out", str(tmp_path / "m.onnx"), "--cache-dir", str(tmp_path / "cache"),
                              "--run-dir", str(tmp_path / "run"), "--threads", "1", "--workers", "1"])
    for k, v in over.items():
        setattr(args, k, v)
    return args


def _check_trained_model(path):
    from vadstream.stages.model import OnnxModel
    from vadstream.stages.vad import Vad

    model = OnnxModel(path)
    assert model.spec.hop_samples == 320 and model.spec.outputs_per_inference == 2
    x = np.concatenate([silence(0.5), voiced(1.0), silence(0.5)])
    probs = Vad(model)(x)
    assert probs.shape == (int(np.ceil(x.size / 320)),)
    assert np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()


def test_smoke_training_on_generated_audio(tmp_path):
    from vadstream.training import train

    args = _train_args(tmp_path, data_root="")
    assert train.main(args) == 0
    _check_trained_model(tmp_path / "m.onnx")
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["train_files"] == {"speech": 6, "nonspeech": 4}
    assert report["candidates"]["fp32"]["file_bytes"] < 1_000_000


@pytest.mark.corpus
def test_smoke_training_on_corpus(tmp_path, shared_data):
    from vadstream.training import train

    assert train.main(_train_args(tmp_path, data_root=str(shared_data))) == 0
    _check_trained_model(tmp_path / "m.onnx")


def test_train_refuses_missing_corpus(tmp_path):
    from vadstream.training import train

    assert train.main(_train_args(tmp_path, data_root=str(tmp_path / "nowhere"), smoke=False)) == 2


# ----------------------------------------------------------------------------- corpus API

@pytest.mark.corpus
def test_eval_sets_are_deterministic_and_labelled(shared_data):
    a = build_eval_set(shared_data, "dev", 5.0, seed=3)
    b = build_eval_set(shared_data, "dev", 5.0, seed=3)
    clean = build_eval_set(shared_data, "dev", None, seed=3)
    assert len(a) == len(b) == len(clean) > 10
    for x, y, c in zip(a[:3], b[:3], clean[:3]):
        assert isinstance(x, LabelledAudio) and x.snr_db == 5.0 and c.snr_db is None
        np.testing.assert_array_equal(x.audio, y.audio)
        np.testing.assert_array_equal(x.speech, c.speech)
        assert x.audio.dtype == np.float32 and x.audio.shape == x.speech.shape
        assert 0.2 < x.speech.mean() < 0.95
        assert not np.array_equal(x.audio, c.audio)
    ns = build_nonspeech_set(shared_data, "dev")
    assert len(ns) == len(find_clips(shared_data, "dev", "nonspeech")) and not any(i.speech.any() for i in ns)


@pytest.mark.corpus
def test_labels_on_grid_clips(shared_data):
    """GRID clips: a short sentence with silence before and after; labels must find one main region."""
    paths = [p for p in find_clips(shared_data, "dev", "speech") if p.parent.name == "grid"][:10]
    assert paths
    for p in paths:
        x = load_audio(p)
        m = speech_mask(x)
        assert 0.4 < m.mean() < 0.98
        assert not m[:160].any() or not m[-160:].any()
