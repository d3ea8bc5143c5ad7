"""Client: typed events from a real publisher, schema validation, seq gap and restart detection."""

from __future__ import annotations

import time

import pytest
import zmq

from vadstream.wire.client import Gap, Subscriber
from vadstream.wire.events import SpeechEnd, SpeechStart, Status
from vadstream.wire.publisher import Publisher


def start(i):
    return SpeechStart(sample_index=i, wall_time_ns=time.time_ns(), probability=0.9, decided_sample=i + 320)


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def connected(ctx, endpoint, pub, **kw):
    sub = Subscriber(endpoint, context=ctx, **kw)
    deadline = time.monotonic() + 5
    while pub.subscriptions < 1:
        assert time.monotonic() < deadline
        pub.poll()
        time.sleep(0.005)
    return sub


def test_typed_events_and_gap_detection(ctx, tmp_path):
    endpoint = f"ipc://{tmp_path}/events"
    pub = Publisher(endpoint, source="t", context=ctx)
    gaps = []
    sub = connected(ctx, endpoint, pub, on_gap=gaps.append)
    pub.publish(start(0))
    pub.seq += 3  # three messages this subscriber never sees ...
    pub._topic_seq["speech_start"] += 3  # ... all of them speech starts
    pub.publish(SpeechEnd(sample_index=800, wall_time_ns=1, probability=0.1, decided_sample=900,
                            start_sample=0, reason="silence"))
    pub.publish(start(1))
    a, b, c = sub.receive(2), sub.receive(2), sub.receive(2)
    assert isinstance(a, SpeechStart) and a.seq == 0 and a.topic_seq == 0 and a.source == "t"
    assert isinstance(b, SpeechEnd) and b.seq == 4 and b.topic_seq == 0 and b.duration_s == 0.05
    assert c.seq == 5 and c.topic_seq == 4
    assert gaps == [Gap(pub.stream_id, "vad.speech_start", 1, 4)] and gaps[0].missing == 3
    assert sub.receive(0.05) is None
    sub.close()
    pub.close(0)


def test_restart_is_not_a_gap_and_invalid_messages_are_skipped(ctx, tmp_path):
    endpoint = f"ipc://{tmp_path}/events"
    pub = Publisher(endpoint, source="t", context=ctx)
    invalid = []
    sub = connected(ctx, endpoint, pub, on_invalid=invalid.append)
    pub.publish(start(0))
    pub.publish(start(1))
    raw = pub._sock
    raw.send_multipart([b"vad.status", b'{"schema_version": 1, "type": "status"}'])
    bad = Status(sample_index=0, wall_time_ns=1, kind="opened", message="x", state="confused")
    pub.publish(bad)  # parses, but the schema rejects state "confused"
    pub.stream_id, pub.seq = "restarted", 0
    pub.publish(start(2))
    got = [sub.receive(2) for _ in range(3)]
    assert [(m.stream_id == "restarted", m.seq) for m in got] == [(False, 0), (False, 1), (True, 0)]
    assert sub.gaps == [] and sub.invalid == 2 and len(invalid) == 2
    assert "does not match the schema" in invalid[1]
    sub.close()
    pub.close(0)
