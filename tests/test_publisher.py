"""Publisher on real ZeroMQ sockets: stamping, socket file mode, and slow subscribers never block it."""

from __future__ import annotations

import os
import stat
import threading
import time

import jsonschema
import pytest
import zmq

from vadstream.wire import events
from vadstream.wire.events import Status
from vadstream.wire.publisher import Publisher


def status(i: int, pad: int = 0) -> Status:
    return Status(sample_index=i, wall_time_ns=time.time_ns(), kind="config", message=f"m{i}", state="quiet",
                  details={"pad": "x" * pad})


def subscribe(ctx: zmq.Context, pub: Publisher, rcvhwm: int = 1000) -> zmq.Socket:
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, rcvhwm)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(pub.last_endpoint)
    before = pub.subscriptions
    sub.setsockopt(zmq.SUBSCRIBE, b"vad.")
    deadline = time.monotonic() + 5
    while pub.subscriptions <= before:  # wait until the XPUB has seen the subscription
        assert time.monotonic() < deadline, "subscription never arrived"
        pub.poll()
        time.sleep(0.005)
    return sub


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def test_messages_are_stamped_gapless_and_schema_valid(ctx, tmp_path):
    endpoint = f"ipc://{tmp_path}/run/events"
    pub = Publisher(endpoint, source="test", sndhwm=100, context=ctx)
    mode = stat.S_IMODE(os.stat(tmp_path / "run" / "events").st_mode)
    assert mode == 0o660
    sub = subscribe(ctx, pub)
    validator = jsonschema.Draft202012Validator(events.schema())
    sent = [pub.publish(status(i)) for i in range(50)]
    assert [m.seq for m in sent] == list(range(50))
    for i in range(50):
        assert sub.poll(2000), f"message {i} did not arrive"
        frames = sub.recv_multipart()
        msg = events.parse(frames)
        validator.validate(events.json.loads(frames[1]))
        assert msg.seq == i and msg.stream_id == pub.stream_id and msg.source == "test"
        assert msg == sent[i]
    assert pub.dropped == 0 and pub.stats()["published"] == 50
    pub.close(0)


def test_stream_ids_differ_between_publishers(ctx):
    a = Publisher("inproc://a", source="s", context=ctx)
    b = Publisher("inproc://b", source="s", context=ctx)
    assert a.stream_id != b.stream_id and len(a.stream_id) >= 8
    a.close(0)
    b.close(0)


def test_absent_subscriber_never_blocks(ctx, tmp_path):
    pub = Publisher(f"ipc://{tmp_path}/events", source="s", sndhwm=5, context=ctx)
    t0 = time.monotonic()
    for i in range(2000):
        pub.publish(status(i, pad=100))
    assert time.monotonic() - t0 < 2.0
    assert pub.dropped == 0 and pub.seq == 2000  # nobody to deliver to is not a drop
    pub.close(0)


def test_slow_subscriber_is_counted_and_does_not_hold_back_a_fast_one(ctx, tmp_path):
    pub = Publisher(f"ipc://{tmp_path}/events", source="s", sndhwm=200, context=ctx)
    slow = subscribe(ctx, pub, rcvhwm=1)  # never reads
    fast = subscribe(ctx, pub, rcvhwm=0)
    received: list[int] = []

    def read_fast():
        while True:
            if not fast.poll(3000):
                return
            received.append(events.parse(fast.recv_multipart()).seq)
            if received[-1] == n - 1:
                return

    n = 3000
    reader = threading.Thread(target=read_fast)
    reader.start()
    t0 = time.monotonic()
    for i in range(n):
        pub.publish(status(i, pad=2000))  # 6 MB in all: far beyond every buffer of the slow one
        if i % 20 == 0:
            time.sleep(0.002)  # let the fast reader's I/O thread keep pace on a busy machine
    elapsed = time.monotonic() - t0
    reader.join(10)
    assert elapsed < 10.0
    assert pub.dropped > 0, "the slow subscriber's drops were not counted"
    assert pub.seq == n
    assert received == list(range(n)), f"fast subscriber missed messages: got {len(received)} of {n}"
    slow.close(0)
    fast.close(0)
    pub.close(0)


def test_bind_failure_is_one_clear_line(ctx, tmp_path):
    a = Publisher("tcp://127.0.0.1:0", source="s", context=ctx)
    with pytest.raises(OSError, match=r"cannot bind tcp://127\.0\.0\.1:\d+"):
        Publisher(a.last_endpoint, source="s", context=ctx)
    a.close(0)
