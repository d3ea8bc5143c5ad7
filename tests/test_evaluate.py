"""vadstream evaluate: the CLI on a tiny generated corpus, and its helpers."""

from __future__ import annotations

import numpy as np

from tests.test_bench_corpus import make_corpus
from vadstream.commands import cli
from vadstream.evaluation import evaluate, metrics
from vadstream.stages.detector import Detector, DetectorConfig


def test_half_split_is_disjoint_and_deterministic():
    items = list(range(7))
    assert evaluate.half(items, "tune") == [0, 2, 4, 6]
    assert evaluate.half(items, "test") == [1, 3, 5]
    assert evaluate.half(items, "all") == items


def test_events_to_segments_uses_known_time():
    probs = np.array([0.0, 0.9, 0.9, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    hop = 320
    det = Detector(hop, DetectorConfig(min_speech_ms=40, min_silence_ms=60, speech_pad_ms=0))
    events = det.process(probs) + det.flush()
    known = (np.arange(probs.size) + 1) * hop + 560
    segs = evaluate.events_to_segments(events, hop, known)
    # start decided at the end of hop 2 (40 ms of speech), end after 3 quiet hops (hop 6)
    assert segs == [metrics.DetectedSegment(320, 1280, 3 * 320 + 560, 7 * 320 + 560)]


def test_evaluate_cli_quick(tmp_path, capsys, shipped_model):
    data = make_corpus(tmp_path / "data")
    rc = cli.main(["evaluate", "--quick", "--data-root", str(data), "--model", str(shipped_model),
                   "--peers", "vadstream,webrtc-3"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "| VAD | ROC-AUC | AP |" in out
    assert "| vadstream |" in out and "| webrtc-3 |" in out
    assert "AUC 0 dB" in out and "AUC clean" in out


def test_evaluate_cli_missing_data(tmp_path, capsys):
    rc = cli.main(["evaluate", "--data-root", str(tmp_path)])
    assert rc == 2
    assert "no 'dev' split" in capsys.readouterr().err
