"""vadstream evaluate: the CLI on a tiny generated corpus, and its helpers."""

from __future__ import annotations

import numpy as np
import pytest

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


@pytest.mark.corpus
def test_per_file_ami_table(shared_data, capsys):
    """python -m vadstream.evaluation.perfile: one row per AMI recording with its speech share,
    levels and a ROC-AUC per VAD in [0, 1] (a dash where a file has only one class)."""
    from daemon_util import model_path

    from vadstream.evaluation import perfile

    assert perfile.main([str(model_path()), "--data-root", str(shared_data)]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| ami-")]
    assert len(rows) == len(list((shared_data / "dev" / "labelled" / "ami").glob("*.csv")))
    scored = 0
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert 0.0 <= float(cells[1]) <= 1.0
        for auc in cells[4:]:
            if auc != "–":
                assert 0.5 <= float(auc) <= 1.0, row  # every VAD here does better than chance per file
                scored += 1
    assert scored >= len(rows)
