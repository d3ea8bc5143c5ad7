"""vadstream.evaluation.metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vadstream.evaluation import metrics

Y = np.array([1, 0, 1, 1, 0], dtype=bool)
S = np.array([0.9, 0.8, 0.7, 0.6, 0.2])


def test_roc_auc_hand_computed():
    # positive/negative pairs ranked correctly: (0.9>0.8, 0.9>0.2, 0.7>0.2, 0.6>0.2) = 4 of 6
    assert metrics.roc_auc(Y, S) == pytest.approx(4 / 6)


def test_average_precision_hand_computed():
    # thresholds 0.9: P=1 R=1/3; 0.8: P=1/2 R=1/3; 0.7: P=2/3 R=2/3; 0.6: P=3/4 R=1; 0.2: P=3/5 R=1
    assert metrics.average_precision(Y, S) == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3 + 1 / 3 * 3 / 4)


def test_ties_count_half():
    y = np.array([1, 1, 0, 0], dtype=bool)
    s = np.array([0.5, 0.5, 0.5, 0.1])
    assert metrics.roc_auc(y, s) == pytest.approx(0.75)
    assert metrics.average_precision(y, s) == pytest.approx(2 / 3)  # one step: P=2/3 at R=1
    assert metrics.roc_auc([True, False], [0.5, 0.5]) == pytest.approx(0.5)


def test_perfect_and_inverted():
    y = np.array([0, 0, 1, 1], dtype=bool)
    assert metrics.roc_auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.average_precision(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.roc_auc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    # inverted: positives found last, P at R=1/2 is 1/3, at R=1 is 2/4
    assert metrics.average_precision(y, [0.9, 0.8, 0.2, 0.1]) == pytest.approx(0.5 * 1 / 3 + 0.5 * 2 / 4)


def test_auc_equals_mann_whitney_on_random_data():
    rng = np.random.default_rng(1)
    y = rng.random(300) < 0.4
    s = np.round(rng.random(300) + 0.3 * y, 2)  # rounding makes ties
    pos, neg = s[y], s[~y]
    u = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert metrics.roc_auc(y, s) == pytest.approx(u / (pos.size * neg.size), abs=1e-12)


def test_one_class_gives_nan():
    assert math.isnan(metrics.roc_auc([1, 1], [0.2, 0.3]))
    assert math.isnan(metrics.average_precision([0, 0], [0.2, 0.3]))


def test_scores_at_threshold():
    r = metrics.scores_at(Y, S, 0.7)  # predicted [1,1,1,0,0]
    assert (r.tp, r.fp, r.fn, r.tn) == (2, 1, 1, 1)
    assert r.precision == pytest.approx(2 / 3)
    assert r.recall == pytest.approx(2 / 3)
    assert r.f1 == pytest.approx(2 / 3)
    assert r.fpr == pytest.approx(0.5)
    assert metrics.scores_at(Y, S, 0.6).recall == 1.0  # >= threshold is speech


def test_hop_labels_at_centre():
    speech = np.zeros(10, dtype=bool)
    speech[5:7] = True
    # hop 4: centres 2, 6, 10 (past the end -> last sample)
    assert metrics.hop_labels(speech, 4).tolist() == [False, True, False]
    speech[-1] = True
    assert metrics.hop_labels(speech, 4).tolist() == [False, True, True]
    assert metrics.hop_labels(speech, 4, n_hops=2).tolist() == [False, True]


def test_masks_and_segments():
    mask = metrics.segments_to_mask([(0.001, 0.002), (0.004, 0.0045)], 100, sample_rate_hz=16000)
    assert metrics.mask_to_segments(mask) == [(16, 32), (64, 72)]
    assert metrics.merge_segments([(16, 32), (64, 72)], min_gap=40) == [(16, 72)]
    assert metrics.merge_segments([(16, 32), (64, 72)], min_gap=30) == [(16, 32), (64, 72)]


def test_extract_segments_rule():
    probs = [0.0, 0.6, 0.4, 0.2, 0.2, 0.6, 0.1, 0.1, 0.1]
    rule = metrics.SmoothingRule(onset=0.5, offset=0.35, min_silence_ms=20.0)  # 2 hops of 10 ms
    segs = metrics.extract_segments(probs, 160, rule)
    assert segs == [metrics.DetectedSegment(160, 480, 320, 800), metrics.DetectedSegment(800, 960, 960, 1280)]
    # known_at shifts only the "known" samples
    known = (np.arange(9) + 1) * 160 + 100
    segs = metrics.extract_segments(probs, 160, rule, known_at=known)
    assert segs[0] == metrics.DetectedSegment(160, 480, 420, 900)
    # a segment still open at the end closes at its last speech hop
    assert metrics.extract_segments([0.9, 0.9], 160, rule) == [metrics.DetectedSegment(0, 320, 160, 320)]
    # 0.4 bridges only with offset <= 0.4
    assert len(metrics.extract_segments(probs, 160, metrics.SmoothingRule(0.5, 0.45, 20.0))) == 2


def test_event_latency_matching():
    ref = [(100, 500), (1000, 2000), (3000, 3500), (4000, 4100)]
    det = [metrics.DetectedSegment(150, 600, 200, 700), metrics.DetectedSegment(900, 3200, 950, 3400),
           metrics.DetectedSegment(5000, 5100, 5050, 5200)]
    st = metrics.event_latency(ref, det, n_samples=16000)
    assert st.onset_delays == [100, -50]  # the third segment is a continuation: no onset
    assert st.offset_delays == [200, -100]  # the pause after the second is bridged
    assert (st.n_reference, st.missed, st.n_pauses, st.bridged, st.false_starts) == (4, 1, 3, 1, 1)
    assert st.fragments == 0
    halves = [metrics.DetectedSegment(0, 400, 10, 500), metrics.DetectedSegment(600, 1000, 650, 1100)]
    cut = metrics.event_latency([(0, 1000)], halves, 2000)
    assert (cut.fragments, cut.onset_delays, cut.offset_delays) == (1, [10], [100])
    # a detection known 250 ms before the onset began in the pause: early, no onset delay
    early = metrics.event_latency([(8000, 16000)], [metrics.DetectedSegment(3000, 16000, 4000, 17000)], 20000)
    assert (early.early, early.onset_delays, early.offset_delays) == (1, [], [1000])
    ok = metrics.event_latency([(8000, 16000)], [metrics.DetectedSegment(7000, 16000, 5000, 17000)], 20000)
    assert (ok.early, ok.onset_delays) == (0, [-3000])
    s = st.summary()
    assert s["onset_median_ms"] == pytest.approx(25 / 16)  # median of 100 and -50 samples = 25
    assert s["bridged_fraction"] == pytest.approx(1 / 3)


def test_false_starts_per_hour():
    assert metrics.false_starts_per_hour(3, 16000 * 1800) == pytest.approx(6.0)


def test_roc_auc_and_average_precision_equal_scikit_learns():
    """The one metrics implementation (training and evaluation use it) against scikit-learn, with ties."""
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(4)
    for n, levels in ((50, None), (2000, None), (2000, 7)):  # levels: scores with many ties
        y = rng.random(n) < 0.3
        s = rng.random(n) + 0.5 * y
        if levels:
            s = np.round(s * levels) / levels
        assert metrics.roc_auc(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
        assert metrics.average_precision(y, s) == pytest.approx(sk.average_precision_score(y, s), abs=1e-12)
        fpr, tpr, _ = metrics.roc_curve(y, s)
        sk_fpr, sk_tpr, _ = sk.roc_curve(y, s, drop_intermediate=False)
        np.testing.assert_allclose(fpr, sk_fpr)
        np.testing.assert_allclose(tpr, sk_tpr)
