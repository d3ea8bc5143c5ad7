"""Bad input to ``vadstream wyoming`` (issue 16): each case is one misbehaving connection to the real
service process, while a well-behaved client streams the two-phrase clip beside it. Each case must
give one clear log line naming the client, that connection dropped (with an ``error`` event where
the client still listens), the other client's answers exactly right, the service alive with bounded
memory, and no traceback anywhere."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time

import pytest
from audio_gen import two_phrases
from wyoming_util import WyomingService, detect, file_segments, pairs, run, wav_events

MAX_PAYLOAD = 65536
MAX_LAG_S = 0.5


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("wyoming-bad")
    wav = two_phrases().write_wav(d / "m16.wav")
    (want,) = file_segments(wav)
    return wav, [(round(a), round(b)) for a, b in want]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    d = tmp_path_factory.mktemp("wyoming-bad-service")
    cfg = d / "vadstream.toml"
    cfg.write_text(f"[wyoming]\nmax_lag_s = {MAX_LAG_S}\nmax_payload_bytes = {MAX_PAYLOAD}\n")
    s = WyomingService(d, "--config", str(cfg))
    yield s
    assert s.stop() == 0, s.stderr()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def header(kind: str, data: dict | None = None, **fields) -> bytes:
    return json.dumps({"type": kind, **({"data": data} if data is not None else {}), **fields}).encode() + b"\n"


FMT = {"rate": 16000, "width": 2, "channels": 1}
AUDIO = bytes(2048)  # 1024 samples of silence
START = header("audio-start", FMT)
CHUNK = header("audio-chunk", FMT, payload_length=len(AUDIO)) + AUDIO

# name -> (bytes sent, words of the log line and of the error event)
CASES = {
    "oversized header": (b'{"type": "' + b"x" * 70000, "header line over 65536 bytes"),
    "header not JSON": (b"hello wyoming\n", "malformed header (not JSON): b'hello wyoming"),
    "header not UTF-8": (b'{"type": "\xff\xfe"}\n', "malformed header (not JSON)"),
    "header not an object": (b"[1, 2, 3]\n", "malformed header: a JSON list, not an object"),
    "no event type": (b'{"data": {}}\n', 'malformed header: no event type ("type" is None)'),
    "data not an object": (b'{"type": "audio-start", "data": [1]}\n', "'audio-start' header: \"data\" is not a JSON"),
    "data_length not a number": (header("describe", data_length="12"), "data_length '12' is not a byte count"),
    "negative payload_length": (header("audio-chunk", FMT, payload_length=-5), "payload_length -5 is not a byte"),
    "payload_length over the limit": (header("audio-chunk", FMT, payload_length=2**40) + bytes(1 << 20),
                                      f"payload_length {2**40} is over the limit of {MAX_PAYLOAD} bytes"),
    "extra data not JSON": (header("describe", data_length=5) + b"xxxxx", "its extra data is not a JSON object"),
    "payload_length longer than the payload": (header("audio-chunk", FMT, payload_length=4096) + bytes(100),
                                               f"did not arrive within {MAX_LAG_S:g} s"),
    "payload_length shorter than the payload": (START + header("audio-chunk", FMT, payload_length=100)
                                                + b"\x01\x80" * 1024 + CHUNK, "malformed header (not JSON)"),
    "header that never ends": (b'{"type": "describe"', f"a header did not end (no newline) within {MAX_LAG_S:g} s"),
    "unknown event type": (header("transcribe", {"language": "en"}), "unknown event type 'transcribe'"),
    "unknown program": (header("select-program", {"name": "whisper"}), "select-program 'whisper'"),
    "sample width": (header("audio-start", {**FMT, "width": 5}), "audio width 5 is not supported"),
    "three channels": (START + header("audio-chunk", {**FMT, "channels": 3}, payload_length=6) + bytes(6),
                       "audio channels 3 is not supported"),
    "rate zero": (header("audio-start", {**FMT, "rate": 0}), "audio rate 0 is not supported"),
    "rate not a number": (header("audio-start", {**FMT, "rate": "16k"}), "audio rate '16k' is not supported"),
    "no rate": (header("audio-chunk", {"width": 2, "channels": 1}, payload_length=2) + bytes(2),
                "audio-chunk without 'rate'"),
    "half a frame": (START + header("audio-chunk", FMT, payload_length=1023) + bytes(1023),
                     "audio-chunk of 1023 bytes is not a whole number of 2-byte x 1-channel frames"),
}


async def misbehave(port: int, data: bytes, *, then_close: bool = False, reset: bool = False,
                    timeout_s: float = 10.0) -> tuple[int, list]:
    """Send ``data``; return the local port and the events the service sent until it closed."""
    from wyoming.event import async_read_event

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    local = writer.get_extra_info("sockname")[1]
    try:
        writer.write(data)
        await writer.drain()
    except ConnectionError:
        pass  # dropped while sending: what we want to see
    if reset:  # vanish (RST instead of FIN), once the service has taken what was sent
        writer.write(header("describe"))
        while (await asyncio.wait_for(async_read_event(reader), timeout_s)).type != "info":
            pass
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        return local, []
    if then_close:
        writer.close()
        return local, []
    got = []
    try:
        while (event := await asyncio.wait_for(async_read_event(reader), timeout_s)) is not None:
            got.append(event)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    writer.close()
    return local, got


def the_line(service: WyomingService, local: int, timeout_s: float = 5.0) -> str:
    """The one log line about the client at ``local`` (waits for it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = service.lines_about(local)
        if lines:
            time.sleep(0.2)  # a second line would be a bug: let it show
            lines = service.lines_about(local)
            assert len(lines) == 1, lines
            return lines[0]
        time.sleep(0.05)
    raise AssertionError(f"no log line about client 127.0.0.1:{local}: {service.stderr()[-2000:]}")


def beside(service, clip, bad):
    """Run the misbehaving coroutine ``bad`` while a good client streams the clip; check the good one."""
    wav, want = clip

    async def both():
        return await asyncio.gather(bad, detect(service.port, wav_events(wav), pace=True))

    (local, got), good = run(both())
    assert pairs(good) == want  # the other connection did not notice
    assert service.proc.poll() is None and "Traceback" not in service.stderr()
    return local, got


@pytest.mark.parametrize("case", CASES)
def test_bad_input_drops_that_connection_with_one_line(service, clip, case):
    data, words = CASES[case]
    rss0 = rss_kb(service.proc.pid)
    local, got = beside(service, clip, misbehave(service.port, data))
    line = the_line(service, local)
    assert words in line and line.endswith("; connection dropped"), line
    assert line.startswith(f"vadstream: warning: wyoming vad service client 127.0.0.1:{local}: "), line
    assert [e.type for e in got] == ["error"], got  # told why, then closed
    assert words in got[0].data["text"] and got[0].data["code"], got[0].data
    assert rss_kb(service.proc.pid) - rss0 < 30_000  # kB: nothing of an announced 1 TB payload was held


def test_client_vanishing_mid_stream(service, clip):
    stream = START + CHUNK * 10
    local, _ = beside(service, clip, misbehave(service.port, stream, reset=True))
    line = the_line(service, local)
    assert "connection lost" in line and "mid-stream, after 0.64 s of audio" in line, line
    local, _ = beside(service, clip, misbehave(service.port, stream, then_close=True))
    line = the_line(service, local)
    assert "closed the connection mid-stream, after 0.64 s of audio without audio-stop" in line, line
    local, _ = beside(service, clip, misbehave(service.port, b'{"type": "audio-ch', then_close=True))
    assert "connection closed in the middle of a header (18 bytes of it came)" in the_line(service, local)


def test_client_that_never_reads_is_dropped(service, clip):
    """It asks for info again and again and never reads the answers: once the socket buffers are full
    a write waits; after max_lag_s it is dropped, and its unread answers with it."""

    async def never_reads():
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", service.port))
        _, writer = await asyncio.open_connection(sock=sock)
        local = sock.getsockname()[1]
        deadline = time.monotonic() + 20
        try:
            while time.monotonic() < deadline:
                writer.write(header("describe") * 100)
                await asyncio.wait_for(writer.drain(), 5)
                await asyncio.sleep(0.01)
                if service.lines_about(local):
                    break
        except (ConnectionError, asyncio.TimeoutError):
            pass
        writer.transport.abort()
        return local, []

    rss0 = rss_kb(service.proc.pid)
    local, _ = beside(service, clip, never_reads())
    line = the_line(service, local)
    assert f"not reading: a write waited over {MAX_LAG_S:g} s (wyoming.max_lag_s); connection dropped" in line, line
    assert rss_kb(service.proc.pid) - rss0 < 30_000


def test_clients_beyond_max_clients_are_refused(tmp_path, clip):
    from wyoming.client import AsyncTcpClient
    from wyoming.info import Describe

    s = WyomingService(tmp_path, "--max-clients", "2")
    try:
        async def three():
            clients = [AsyncTcpClient("127.0.0.1", s.port) for _ in range(3)]
            for c in clients[:2]:
                await c.connect()
                await c.write_event(Describe().event())
                assert (await asyncio.wait_for(c.read_event(), 10)).type == "info"  # admitted
            await clients[2].connect()
            refused = await asyncio.wait_for(clients[2].read_event(), 10)
            after = await asyncio.wait_for(clients[2].read_event(), 10)
            local = clients[2]._writer.get_extra_info("sockname")[1]
            for c in clients:
                await c.disconnect()
            return refused, after, local

        refused, after, local = run(three())
        assert refused.type == "error" and refused.data["code"] == "too-many-clients" and after is None
        assert "refused: 2 clients already (wyoming.max_clients)" in the_line(s, local)
        assert pairs(run(detect(s.port, wav_events(clip[0])))) == clip[1]  # the slots are free again
    finally:
        assert s.stop() == 0


def test_bad_max_clients_is_one_line_exit_2(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "vadstream", "wyoming", "--max-clients", "0"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("vadstream: error: command line: wyoming.max_clients = 0 is out of range: "
                                   "allowed 1 to 256")
    proc = subprocess.run([sys.executable, "-m", "vadstream", "wyoming", "--uri", "http://x"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "--uri = 'http://x' is not a Wyoming URI" in proc.stderr
