"""bench audio: a --quick smoke run of the speech-audio cost section (checks the code, not timings)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.audio


def test_bench_audio_quick_smoke(tmp_path, shipped_model):
    sys.path.insert(0, str(REPO / "tests"))
    from audio_gen import espeak_missing
    from pulse import pulse_missing

    why = pulse_missing() or espeak_missing()
    if why:
        pytest.skip(why)
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "bench", "audio", "--quick", "--out", str(out),
                          "--model", str(shipped_model)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads((out / "results" / "audio.json").read_text())
    data = doc["data"]
    assert data["errors"] == [], data["errors"]
    runs = {r["mode"]: r for r in data["runs"]}
    assert set(runs) == {"none", "reader", "stalled"}
    for r in runs.values():
        assert 0 < r["cpu_pct"] < 100 and r["rss_mb"] > 10 and r["peak_rss_mb"] >= r["rss_mb"]
    assert runs["none"]["audio_messages"] == {} and runs["none"]["dropped"] == 0
    got = runs["reader"]["audio_messages"]
    assert got.get("audio.utterance", 0) >= 2 and got.get("audio.speech", 0) > 50  # 12 s: 3 phrases streamed
    assert runs["reader"]["audio_mb_received"] > 0.1 and runs["reader"]["dropped"] == 0
    text = (out / "RESULTS.md").read_text()
    assert "## Speech audio topics: daemon cost" in text and "| subscribers | CPU % |" in text
