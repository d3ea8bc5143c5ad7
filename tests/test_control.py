"""Control socket on real ZeroMQ sockets: replies, errors, and bad requests never break it."""

from __future__ import annotations

import threading
import time

import pytest
import zmq

from vadstream.wire.client import ControlError, request
from vadstream.wire.control import ControlServer, RequestError


def handler(req):
    if req["cmd"] == "status":
        return {"status": {"state": "quiet"}}
    if req["cmd"] == "boom":
        raise KeyError("bug")
    raise RequestError(f"unknown command {req['cmd']!r}")


@pytest.fixture
def server(tmp_path):
    ctx = zmq.Context()
    srv = ControlServer(f"ipc://{tmp_path}/control", handler, context=ctx)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            srv.poll()
            time.sleep(0.005)

    t = threading.Thread(target=loop)
    t.start()
    yield srv, ctx
    stop.set()
    t.join()
    srv.close()
    ctx.destroy(linger=0)


def test_status_request(server):
    srv, ctx = server
    assert request(srv.last_endpoint, {"cmd": "status"}, context=ctx) == {"ok": True, "status": {"state": "quiet"}}
    assert request(srv.last_endpoint, "status", context=ctx)["status"]["state"] == "quiet"


@pytest.mark.parametrize("raw, words", [
    (b"{not json", "Expecting"),
    (b"[1, 2]", 'JSON object with a "cmd"'),
    (b'{"cmd": "dance"}', "unknown command 'dance'"),
    (b'{"cmd": "boom"}', "internal error: KeyError"),
    (b"\xff\xfe", "decode"),
    (b'{"cmd": "status", "x": "' + b"a" * 70000 + b'"}', "request of 70026 bytes is over the limit of 65536 bytes"),
])
def test_bad_requests_get_an_error_reply_and_the_server_keeps_going(server, raw, words):
    srv, ctx = server
    sock = ctx.socket(zmq.REQ)
    sock.connect(srv.last_endpoint)
    sock.send(raw)
    assert sock.poll(2000)
    import json
    reply = json.loads(sock.recv())
    assert reply["ok"] is False and words in reply["error"]
    sock.close(0)
    assert request(srv.last_endpoint, "status", context=ctx)["ok"]


def test_error_reply_raises_control_error(server):
    srv, ctx = server
    with pytest.raises(ControlError, match="unknown command 'dance'"):
        request(srv.last_endpoint, "dance", context=ctx)


def test_no_daemon_is_said_at_once_and_a_silent_one_times_out(tmp_path):
    with pytest.raises(ControlError, match=f"^no daemon: {tmp_path}/nobody does not exist"):
        request(f"ipc://{tmp_path}/nobody", "status", timeout_s=0.2)
    ctx = zmq.Context()
    mute = ctx.socket(zmq.REP)  # bound, never answers
    mute.bind(f"ipc://{tmp_path}/mute")
    try:
        with pytest.raises(ControlError, match="no answer from .* within 0.2 s"):
            request(f"ipc://{tmp_path}/mute", "status", timeout_s=0.2, context=ctx)
    finally:
        mute.close(0)
        ctx.destroy(linger=0)
