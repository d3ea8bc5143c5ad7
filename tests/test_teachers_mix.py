"""Model 5.0's training targets: Silero VAD as a second teacher (batched, lag-aligned, mixed with
FireRedVAD's labels), the onset loss weights, screened Coswara non-speech and the new dev sets."""

from __future__ import annotations

import numpy as np
import pytest

from vadstream.evaluation import peers
from vadstream.training.teacher import best_lag_hops, shift_hops
from vadstream.training.train import mix_teachers, onset_weights


def test_onset_weights_mark_the_first_hops_of_each_region_only():
    targets = np.array([[0, 0, 1, 1, 1, 1, 0, 1, 1, 0.4]], dtype=np.float32)
    w = onset_weights(targets, 2, 3.0)
    assert w.tolist() == [[1, 1, 3, 3, 1, 1, 1, 3, 3, 1]]
    # a region that starts at the scene's first hop counts as an onset too (a stream starting mid-speech)
    assert onset_weights(np.ones((1, 4), np.float32), 3, 2.0).tolist() == [[2, 2, 2, 1]]
    assert (onset_weights(targets, 2, 1.0) == 1).all()


def test_shift_and_best_lag_recover_a_known_delay():
    rng = np.random.default_rng(0)
    ref = (rng.random((4, 300)) < 0.5).astype(np.float32)
    ref = np.repeat(ref[:, ::10], 10, axis=1)  # 100 ms regions
    late = np.concatenate([np.zeros((4, 4), np.float32), ref[:, :-4]], axis=1)  # 4 hops late
    assert best_lag_hops(late, ref) == 4
    assert np.array_equal(shift_hops(late, 4)[:, :-4], ref[:, :-4])
    assert np.array_equal(shift_hops(late, 0), late)


def test_mix_teachers_aligns_then_mixes_and_needs_the_probabilities():
    ref = np.zeros((2, 100), np.float32)
    ref[:, 30:60] = 1.0
    silero = np.concatenate([np.zeros((2, 3), np.float32), ref[:, :-3] * 0.8], axis=1)
    mixed = mix_teachers(ref, silero, 0.5)
    assert mixed[0, 45] == pytest.approx(0.9) and mixed[0, 10] == 0.0
    assert mixed[0, 29] == 0.0 and mixed[0, 30] == pytest.approx(0.9)  # aligned: no late rise
    assert mix_teachers(ref, None, 0.0) is ref
    with pytest.raises(ValueError, match="Silero"):
        mix_teachers(ref, None, 0.3)


def test_silero_teacher_in_a_batch_equals_the_streaming_peer():
    from vadstream.training.teacher import SileroTeacher

    try:
        teacher, peer = SileroTeacher(), peers.SileroPeer()
    except peers.PeerUnavailable as exc:
        pytest.skip(f"silero not available: {exc}")
    rng = np.random.default_rng(1)
    t = np.arange(3 * 16000) / 16000
    vowel = sum(0.05 / k * np.sin(2 * np.pi * 130 * k * t) for k in range(1, 16)) * ((t > 1) & (t < 2))
    batch = np.stack([0.01 * rng.standard_normal(t.size), vowel + 0.003 * rng.standard_normal(t.size)])
    batch = batch.astype(np.float32)
    win = teacher.window_probs(batch)
    assert win.shape == (2, 94)
    streamed = peer.process(batch[1])
    assert np.array_equal(win[1, : streamed.size], streamed)  # same state, same windows, bit for bit
    hops = teacher.hop_probs(batch, 320, 150)
    assert hops.shape == (2, 150)
    assert hops[1, 50:100].max() > 0.5 > hops[0].max()  # the vowel, not the noise
    # hop centres between window centres: values interpolated, never outside their neighbours
    assert hops[1, 8] == pytest.approx(np.interp(8 * 320 + 160, [4 * 512 + 256, 5 * 512 + 256], win[1, 4:6]))


@pytest.mark.corpus
def test_dev_word_sets_are_labelled_at_word_level(shared_data, tmp_path):
    pytest.importorskip("kaldi_native_fbank")
    from vadstream.evaluation.realworld import load_dev_noisy_words, load_dev_words

    words = load_dev_words(shared_data, tmp_path, max_files=3)
    noisy = load_dev_noisy_words(shared_data, tmp_path, max_files=3)
    assert len(words) == 3 and 1 <= len(noisy) <= 3
    for item in words + noisy:
        share = item.speech.mean()
        assert 0.05 < share < 0.95, item.name  # words and pauses both present
    assert {it.snr_db for it in noisy} <= {0.0, 5.0, 10.0}
    again = load_dev_noisy_words(shared_data, tmp_path, max_files=3)
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(noisy, again))  # deterministic


def test_longest_run_screens_talk_not_coughs():
    from vadstream.training.scenes import SCREEN_MAX_SPEECH_S, longest_run

    assert longest_run(np.array([0, 1, 1, 0, 1, 1, 1, 0], bool)) == 3
    assert longest_run(np.zeros(5, bool)) == 0 and longest_run(np.ones(4, bool)) == 4
    coughs = np.zeros(1000, bool)  # 10 s of 10 ms teacher frames: six 0.4 s coughs, 40 % "speech"
    for start in range(0, 1000, 160):
        coughs[start:start + 40] = True
    talk = coughs.copy()
    talk[500:700] = True  # someone says something for 2 s
    assert longest_run(coughs) * 0.01 <= SCREEN_MAX_SPEECH_S < longest_run(talk) * 0.01
