"""Late subscribers and file runs nobody listens to (issue 10, #9)."""

from __future__ import annotations

import re
import signal

import numpy as np
import pytest
import zmq
from daemon_util import RATE, Collector, DaemonProcess, speech_track, write_wav

from vadstream.wire.events import Heartbeat, SpeechStart, Status


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def welcomes(col: Collector) -> list[Status]:
    return [m for m in col.of(Status) if m.kind == "welcome"]


def test_a_late_subscriber_is_welcomed_with_state_stream_id_and_seq(tmp_path, ctx):
    audio, _ = speech_track(tmp_path, [1.0, "the quick brown fox jumps over the lazy dog and keeps on running", 30.0])
    wav = write_wav(tmp_path / "long.wav", audio)
    d = DaemonProcess(tmp_path, "--input", str(wav), "--min-silence-ms", "2000", "--heartbeat-s", "0.2")
    first = Collector(d.events, ctx)
    late = None
    try:
        welcome = first.wait_for(lambda m: isinstance(m, Status) and m.kind == "welcome", 20)
        assert welcome.details["in_speech"] is False and welcome.details["open_start_sample"] is None
        assert welcome.details["last_seq"] == welcome.seq - 1
        start = first.wait_for(lambda m: isinstance(m, SpeechStart), 20)
        late = Collector(d.events, ctx)  # joins during the sentence: learns about the open segment at once
        got = late.wait_for(lambda m: isinstance(m, Status) and m.kind == "welcome", 10)
        assert got.stream_id == start.stream_id and got.state == "speaking"
        assert got.details["in_speech"] is True and got.details["open_start_sample"] == start.sample_index
        assert got.details["last_seq"] == got.seq - 1 >= start.seq
        # every subscriber hears every welcome (PUB fans out): the first one sees both, nothing else repeats
        first.wait_for(lambda m: m is not welcome and isinstance(m, Status) and m.kind == "welcome", 5)
        # a subscriber that does not take vad.status is not welcomed
        speech_only = ctx.socket(zmq.SUB)
        speech_only.setsockopt(zmq.SUBSCRIBE, b"vad.speech_")
        speech_only.connect(d.events)
        d.wait_subscribed_n(ctx, 2 + 1)  # first + late (one subscription each) + speech_only
        n = len(first.of(Heartbeat))
        first.wait_for(lambda m: len(first.of(Heartbeat)) >= n + 2, 5)  # two heartbeats later ...
        assert len(welcomes(first)) == 2  # ... still only the two welcomes
        speech_only.close(0)
    finally:
        d.signal(signal.SIGTERM)
        assert d.wait(15) == 0, d.stderr()
        first.close()
        if late is not None:
            late.close()


def test_file_run_says_once_that_nobody_listens(tmp_path):
    wav = write_wav(tmp_path / "short.wav", np.zeros(RATE, np.float32))
    d = DaemonProcess(tmp_path, "--input", str(wav), "--no-realtime")
    assert d.wait(30) == 0, d.stderr()
    lines = [line for line in d.stderr().splitlines() if "listening" in line]
    assert lines == [f"vadstream: warning: nobody is listening on {d.events}: messages published before a "
                     "subscriber connects are lost (--wait-subscriber S waits for one)"]


def test_wait_subscriber_logs_what_it_waits_for(tmp_path, ctx):
    wav = write_wav(tmp_path / "short.wav", np.zeros(RATE, np.float32))
    d = DaemonProcess(tmp_path, "--input", str(wav), "--no-realtime", "--wait-subscriber", "0.3")
    assert d.wait(30) == 0, d.stderr()
    err = d.stderr().splitlines()
    assert f"vadstream: info: waiting up to 0.3 s for a subscriber on {d.events}" in err
    assert "vadstream: warning: no subscriber after 0.3 s: starting anyway" in err
    d = DaemonProcess(tmp_path, "--input", str(wav), "--no-realtime", "--wait-subscriber", "20")
    col = Collector(d.events, ctx)
    try:
        assert d.wait(30) == 0, d.stderr()
    finally:
        col.close()
    err = d.stderr()
    assert re.search(r"^vadstream: info: a subscriber connected after \d+\.\d\d s$", err, re.M), err
    assert "nobody is listening" not in err


def test_unpaced_long_file_logs_progress(tmp_path):
    x = 0.001 * np.random.default_rng(0).standard_normal(61 * RATE).astype(np.float32)
    wav = write_wav(tmp_path / "long.wav", x)
    d = DaemonProcess(tmp_path, "--input", str(wav), "--no-realtime")
    assert d.wait(120) == 0, d.stderr()
    progress = [line for line in d.stderr().splitlines() if "progress" in line]
    assert [int(re.search(r"\((\d+) %\)", line).group(1)) for line in progress] == list(range(10, 100, 10)), progress
    assert progress[0] == "vadstream: info: progress: 6.1 of 61.0 s of audio (10 %), 0 segment(s)"


def test_wait_subscriber_notes_while_it_waits(tmp_path, monkeypatch, caplog):
    """In-process with a short note interval: the periodic 'still waiting' lines (every 5 s)."""
    from daemon_util import model_path

    from vadstream.service import config, daemon, lifecycle

    wav = write_wav(tmp_path / "short.wav", np.zeros(RATE, np.float32))
    cfg = config.from_mapping({"input": {"source": str(wav)}, "model": {"path": str(model_path())},
                               "publisher": {"endpoint": f"ipc://{tmp_path}/ev", "control_endpoint": "none",
                                             "wait_subscriber_s": 0.5, "linger_ms": 0}})
    monkeypatch.setattr(lifecycle, "WAIT_NOTE_EVERY_S", 0.1)
    d = daemon.Daemon(cfg)
    caplog.set_level("INFO", logger="vadstream")
    try:
        d.wait_for_subscriber()
    finally:
        d.publisher.close(0)
        d.source.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "vadstream"]
    assert lines[0] == f"waiting up to 0.5 s for a subscriber on ipc://{tmp_path}/ev"
    notes = [line for line in lines if line.startswith("still waiting for a subscriber")]
    assert 3 <= len(notes) <= 5, lines
    assert "no subscriber after 0.5 s: starting anyway" in lines
