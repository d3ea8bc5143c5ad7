"""The daemon's bookkeeping (service/status.py) without a daemon: counters in, messages out."""

from __future__ import annotations

import logging

import pytest
import zmq

from vadstream.service.status import Moment, StatusBook
from vadstream.wire.events import Heartbeat, Status
from vadstream.wire.publisher import Publisher


@pytest.fixture
def publisher(tmp_path):
    ctx = zmq.Context()
    pub = Publisher(f"ipc://{tmp_path}/events", source="t", context=ctx)
    yield pub
    pub.close(0)
    ctx.destroy(linger=0)


AT = Moment(sample_index=32000, wall_time_ns=5_000_000_000, state="speaking")


def test_heartbeat_only_when_its_interval_has_passed(publisher):
    book = StatusBook(started_mono=100.0, overflows=2)
    first = book.heartbeat(AT, 101.0, 1.0, publisher)
    assert isinstance(first, Heartbeat)
    assert (first.sample_index, first.wall_time_ns, first.state, first.uptime_s, first.overflows) == \
        (32000, 5_000_000_000, "speaking", 1.0, 2)
    assert book.heartbeat(AT, 101.5, 1.0, publisher) is None
    assert book.heartbeat(AT, 102.0, 1.0, publisher).uptime_s == 2.0


def test_segments_welcome_and_stopping_count_what_happened(publisher):
    book = StatusBook()
    book.speech_started(16000)
    welcome = book.welcome(AT, "mic", publisher)
    assert isinstance(welcome, Status) and welcome.kind == "welcome"
    assert welcome.details["in_speech"] is True and welcome.details["open_start_sample"] == 16000
    assert welcome.message == "welcome: speaking on mic, 0 message(s) published so far"
    book.speech_ended()
    assert (book.segments, book.open_start) == (1, None)
    stop = book.stopping(AT, "end of input", publisher)
    assert stop.message == "stopping: end of input"
    assert stop.details == {"audio_s": 2.0, "segments": 1, "published": 1, "dropped": 0, "overflows": 0,
                            "errors": 0}
    assert book.human("quiet", "mic", publisher) == \
        "quiet on mic; 1 segment(s); published 0, drop episodes 0, overflows 0"


def test_progress_logs_each_tenth_of_a_long_unpaced_file(caplog):
    book = StatusBook()
    book.start_progress({"kind": "file", "realtime": True, "duration_s": 600.0})
    assert book.progress_total == 0  # paced: no progress lines
    book.start_progress({"kind": "file", "realtime": False, "duration_s": 30.0})
    assert book.progress_total == 0  # short
    book.start_progress({"kind": "file", "realtime": False, "duration_s": 100.0})
    caplog.set_level(logging.INFO, logger="vadstream")
    for fed in range(0, 100 * 16000 + 1, 16000):
        book.progress(fed)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress:")]
    assert len(lines) == 9 and lines[0].startswith("progress: 10.0 of 100.0 s of audio (10 %)")


def test_errors_are_counted_and_their_log_lines_limited(caplog):
    book = StatusBook()
    caplog.set_level(logging.ERROR, logger="vadstream")
    for i in range(10):
        book.error(f"bad block {i}")
    assert book.errors == 10
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == [f"bad block {i} (errors so far: {i + 1})" for i in range(3)]
    assert len(lines) < 10  # the rest within a second: not logged (3 unless this machine stalled)
