"""bench: label readers, and a --quick smoke run of every offline section into a tmp dir (not timings)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bench.labelled import load_folder, read_labels
from tests.test_bench_corpus import make_corpus, make_labelled_folder
from tests.conftest import REPO


def test_read_labels_formats(tmp_path):
    scv = tmp_path / "x.scv"
    scv.write_text("x,0.0,1.2,0,1.2,3.5,1,3.5,4.0,0,4.0,5.25,1\n")
    assert read_labels(scv) == [(1.2, 3.5), (4.0, 5.25)]
    csv = tmp_path / "y.csv"
    csv.write_text("start,end\n0.5,1.0\n2\t3\tspeech\n4 5 silence\n")
    assert read_labels(csv) == [(0.5, 1.0), (2.0, 3.0)]


def test_load_folder_masks(tmp_path):
    items = load_folder(make_labelled_folder(tmp_path / "lab"))
    assert [i.name for i in items] == ["a", "b"]
    for it in items:
        assert it.speech.size == it.audio.size
        assert not it.speech[:8000].any() and it.speech[8000:24000].all() and not it.speech[24000:].any()


def test_bench_quick_smoke(tmp_path, shipped_model):
    data = make_corpus(tmp_path / "data")
    lab = make_labelled_folder(tmp_path / "lab")
    out = tmp_path / "out"
    for what in ("accuracy", "compute", "memory"):
        cmd = [sys.executable, "-m", "bench", what, "--quick", "--data-root", str(data), "--labelled", str(lab),
               "--out", str(out), "--peers", "vadstream,webrtc-3", "--model", str(shipped_model)]
        res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
    text = (out / "RESULTS.md").read_text()
    for heading in ("## Accuracy", "## Detector defaults", "## Event latency, offline", "## Compute", "## Memory"):
        assert heading in text
    assert "Labelled set `lab`" in text
    assert (out / "pr_curves.png").stat().st_size > 1000
    assert (out / "latency.png").stat().st_size > 1000
    acc = json.loads((out / "results" / "accuracy.json").read_text())["data"]["vads"]
    for name in ("vadstream", "webrtc-3"):
        auc = acc[name]["all"]["roc_auc"]
        assert auc is None or 0.0 <= auc <= 1.0
    comp = json.loads((out / "results" / "compute.json").read_text())["data"]["cases"]
    assert set(comp) == {"vadstream (20 ms chunks)", "vadstream (40 ms chunks)", "webrtc-3"}
    assert all(c["cpu_per_audio_s_median"] > 0 for c in comp.values())
    mem = json.loads((out / "results" / "memory.json").read_text())["data"]
    assert mem["baseline_kb"] > 0 and mem["vads"]["vadstream"]["maxrss_kb"] > mem["baseline_kb"]
