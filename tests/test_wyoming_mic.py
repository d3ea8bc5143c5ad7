"""The daemon's Wyoming mic service (issue 16), on a WAV input paced in real time: every client gets
the audio the model was fed (bit for bit for 16 kHz 16-bit audio) with ``voice-started`` /
``voice-stopped`` where the ZeroMQ bus has ``speech_start`` / ``speech_end``; speech-only clients
get each segment from its pre-roll; misbehaving clients are dropped without the others, the ZeroMQ
bus or the daemon noticing; without the wyoming package the daemon's path never imports it. The
live-microphone version (PulseAudio) is tests/test_e2e_wyoming.py."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq
from audio_gen import read_wav, two_phrases
from daemon_util import Collector, DaemonProcess, model_path
from wyoming_util import MicListener, free_port

from vadstream.wire.audio import SpeechAudio
from vadstream.wire.client import request
from vadstream.wire.events import SpeechEnd, SpeechStart, Status

MAX_LAG_S = 0.5


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    wav = two_phrases().write_wav(tmp_path_factory.mktemp("wyoming-mic") / "m16.wav")
    return wav, np.rint(read_wav(wav)[0][:, 0] * 32768).astype("<i2")


def start_daemon(tmp_path, wav, *args):
    """The daemon on ``wav`` with a Wyoming mic service; it starts reading once a ZeroMQ subscriber came."""
    port = free_port()
    cfg = tmp_path / "vadstream.toml"
    cfg.write_text(f"[wyoming]\nmax_lag_s = {MAX_LAG_S}\n")
    d = DaemonProcess(tmp_path, "--input", str(wav), "--wyoming", f"tcp://127.0.0.1:{port}", "--config", str(cfg),
                      "--wait-subscriber", "30", *args)
    return d, port


def wait_clients(d: DaemonProcess, ctx, n: int) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert d.proc.poll() is None, d.stderr()
        try:
            status = request(d.control, "status", timeout_s=0.5, context=ctx)["status"]
            if status["wyoming"]["clients"] >= n:
                return status
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.05)
    raise AssertionError(f"the mic service never counted {n} client(s): {d.stderr()}")


def speech_events(col: Collector) -> list[tuple[str, int]]:
    return [(m.TYPE, m.sample_index) for m in col.messages if isinstance(m, (SpeechStart, SpeechEnd))]


def check_bus(col: Collector) -> None:
    """The ZeroMQ bus as without Wyoming: schema-valid, gapless seq (nothing published for Wyoming)."""
    assert col.errors == []
    seqs = [m.seq for m in col.messages]
    assert seqs == list(range(len(seqs))), seqs[:40]
    assert isinstance(col.messages[-1], Status) and col.messages[-1].kind == "stopping"


async def unknown_event_client(port: int) -> tuple[int, list]:
    from wyoming.client import AsyncTcpClient
    from wyoming.event import Event

    async with AsyncTcpClient("127.0.0.1", port) as c:
        await c.write_event(Event(type="transcribe", data={"language": "en"}))
        got = []
        while (e := await asyncio.wait_for(c.read_event(), 10)) is not None:
            if e.type == "error":
                got.append(e)
        return c._writer.get_extra_info("sockname")[1], got


def test_all_audio_and_voice_events_beside_zeromq_and_bad_clients(tmp_path, clip):
    wav, played = clip
    ctx = zmq.Context()
    d, port = start_daemon(tmp_path, wav)
    lazy = socket.socket()  # connects and never reads
    lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        mic = MicListener(port)
        lazy.connect(("127.0.0.1", port))
        lazy_port = lazy.getsockname()[1]
        wait_clients(d, ctx, 2)
        col = Collector(d.events, ctx)
        rude_port, rude = asyncio.run(unknown_event_client(port))  # while the audio flows
        assert d.wait(60) == 0, d.stderr()
        time.sleep(0.3)
        col.close()
        mic.close()
    finally:
        lazy.close()
        d.kill()
        ctx.destroy(linger=0)
    assert mic.error is None
    kinds = [e.type for e in mic.events]
    assert kinds[0] == "audio-start" and kinds[-1] == "audio-stop" and kinds.count("audio-start") == 1, kinds[:5]
    first, audio = mic.audio()
    assert first == 0 and mic.events[0].data["sample_index"] == 0
    assert np.array_equal(audio, played)  # every sample of the file, bit for bit
    assert mic.events[-1].data["sample_index"] == played.size
    voice = [(e.type, e.data["sample_index"]) for e in mic.events if e.type.startswith("voice-")]
    want = speech_events(col)
    assert len(want) == 4 and voice == [("voice-started" if t == "speech_start" else "voice-stopped", s)
                                        for t, s in want]
    for e in mic.events:
        if e.type.startswith("voice-"):
            assert e.data["timestamp"] == round(e.data["sample_index"] / 16)
    # a voice event comes after the audio it is about (the block it was decided in)
    at = 0
    for e in mic.events:
        if e.type == "audio-chunk":
            at = e.data["sample_index"] + len(e.payload) // 2
        elif e.type.startswith("voice-"):
            assert e.data["sample_index"] <= at
    check_bus(col)
    log = d.stderr()
    lines = [ln for ln in log.splitlines() if "wyoming mic service client" in ln]
    lazy_lines = [ln for ln in lines if f"127.0.0.1:{lazy_port}:" in ln]
    assert len(lazy_lines) == 1 and "not reading:" in lazy_lines[0] and "(wyoming.max_lag_s" in lazy_lines[0] \
        and lazy_lines[0].endswith("; connection dropped"), lines
    rude_lines = [ln for ln in lines if f"127.0.0.1:{rude_port}:" in ln]
    assert len(rude_lines) == 1 and "unknown event type 'transcribe'" in rude_lines[0], lines
    assert [e.data["code"] for e in rude] == ["unknown-event"]
    assert "Traceback" not in log


def test_speech_only_clients_get_each_segment_from_its_pre_roll(tmp_path, clip):
    """``--wyoming-speech-only``: the audio tap cuts audio.speech chunks for the Wyoming client
    alone (the ZeroMQ subscriber takes vad. only, and nothing else is published)."""
    wav, played = clip
    ctx = zmq.Context()
    d, port = start_daemon(tmp_path, wav, "--wyoming-speech-only")
    try:
        mic = MicListener(port)
        wait_clients(d, ctx, 1)
        col = Collector(d.events, ctx)
        assert d.wait(60) == 0, d.stderr()
        time.sleep(0.3)
        col.close()
        mic.close()
    finally:
        d.kill()
        ctx.destroy(linger=0)
    check_bus(col)
    assert not [m for m in col.messages if isinstance(m, SpeechAudio)]
    starts, ends = col.of(SpeechStart), col.of(SpeechEnd)
    assert len(starts) == len(ends) == 2
    # split the mic stream into its audio streams: one per segment
    streams, current = [], None
    for e in mic.events:
        if e.type == "audio-start":
            current = [e]
        else:
            current.append(e)
            if e.type == "audio-stop":
                streams.append(current)
                current = None
    assert current is None and len(streams) == 2, [e.type for e in mic.events]
    for events, start, end in zip(streams, starts, ends):
        kinds = [e.type for e in events]
        assert kinds[:2] == ["audio-start", "voice-started"] and kinds[-2:] == ["voice-stopped", "audio-stop"], kinds
        assert set(kinds[2:-2]) == {"audio-chunk"}
        assert events[1].data["sample_index"] == start.sample_index
        assert (events[-2].data["sample_index"], events[-2].data["start_sample"], events[-2].data["reason"]) == \
            (end.sample_index, end.start_sample, end.reason)
        chunks = events[2:-2]
        first = chunks[0].data["sample_index"]
        assert first == events[0].data["sample_index"] == start.sample_index - 8000  # [audio] pre_roll_ms 500
        pcm = np.frombuffer(b"".join(c.payload for c in chunks), "<i2")
        assert np.array_equal(pcm, played[first:first + pcm.size])  # the file's samples, bit for bit
        assert first + pcm.size >= end.sample_index  # to where the end was decided


BLOCK_WYOMING = "import sys; sys.modules['wyoming'] = None  # as if the extra were not installed\n"


def test_without_the_wyoming_package(tmp_path, clip):
    wav, _ = clip
    ep = f"ipc://{tmp_path}/ev"
    code = BLOCK_WYOMING + (
        "import argparse\n"
        "from vadstream.service import daemon\n"
        "p = argparse.ArgumentParser(); daemon.add_arguments(p)\n"
        f"rc = daemon.main(p.parse_args(['--input', {str(wav)!r}, '--no-realtime', '--endpoint', {ep!r}, "
        f"'--model', {str(model_path())!r}] + sys.argv[1:]))\n"
        "loaded = sorted(m for m, v in sys.modules.items() if m.split('.')[0] == 'wyoming' and v is not None)\n"
        "print(rc, loaded, 'vadstream.service.wyoming_mic' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.split() == ["0", "[]", "False"], proc.stderr
    proc = subprocess.run([sys.executable, "-c", code, "--wyoming", "tcp://127.0.0.1:1"], capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.split()[0] == "2", proc.stderr  # a configuration the installation cannot serve
    (line,) = proc.stderr.splitlines()
    assert line.startswith("vadstream: error: the Wyoming services need the wyoming package: "
                           "pip install 'vadstream[wyoming]'"), line
    cli = subprocess.run([sys.executable, "-c", BLOCK_WYOMING + "from vadstream.commands.cli import main; "
                          "sys.exit(main(['wyoming']))"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2 and "pip install 'vadstream[wyoming]'" in cli.stderr
    assert len(cli.stderr.splitlines()) == 1, cli.stderr


def test_mic_service_answers_describe_with_its_format(tmp_path, clip):
    from wyoming.client import AsyncTcpClient
    from wyoming.info import Describe, Info

    wav, _ = clip
    ctx = zmq.Context()
    d, port = start_daemon(tmp_path, wav)
    try:
        MicListener(port).close()  # the port is up

        async def describe():
            async with AsyncTcpClient("127.0.0.1", port) as c:
                await c.write_event(Describe().event())
                while (e := await asyncio.wait_for(c.read_event(), 10)).type != "info":
                    pass
                return e

        info = asyncio.run(describe())
        status = wait_clients(d, ctx, 0)
    finally:
        d.kill()
        ctx.destroy(linger=0)
    (mic,) = Info.from_event(info).mic
    assert (mic.mic_format.rate, mic.mic_format.width, mic.mic_format.channels) == (16000, 2, 1)
    assert "file:m16.wav" in mic.description and info.data["vad"][0]["models"][0]["version"] == \
        status["model"]["version"]
    assert status["wyoming"]["uri"] == f"tcp://127.0.0.1:{port}" and status["wyoming"]["speech_only"] is False
    json.dumps(status)


def test_mic_service_stream_restarts_splits_and_late_joiners():
    """MicService alone (real sockets, the daemon's calls made by the test): a jump in the stream
    (a device lost and back) is audio-stop + audio-start; speech-only clients get a max_speech
    split as two audio streams and join a segment in progress with its start."""
    from vadstream.service.config import WyomingConfig
    from vadstream.service.wyoming_mic import MicService

    block = np.full(320, 0.25, np.float32)

    def serve(speech_only: bool):
        port = free_port()
        svc = MicService(WyomingConfig(uri=f"tcp://127.0.0.1:{port}", speech_only=speech_only), model_name="m",
                         model_version="1", source_name="test")
        mic = MicListener(port)
        deadline = time.monotonic() + 10
        while svc.clients < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        return svc, mic

    svc, mic = serve(False)
    try:
        for start in (0, 320, 96000):
            svc.audio(start, block)
        svc.close()
        mic.wait_for(lambda m: len(m.events) >= 7)
    finally:
        mic.close()
    assert [(e.type, e.data["sample_index"]) for e in mic.events] == [
        ("audio-start", 0), ("audio-chunk", 0), ("audio-chunk", 320), ("audio-stop", 640),
        ("audio-start", 96000), ("audio-chunk", 96000), ("audio-stop", 96320)]
    assert mic.events[1].payload == (np.full(320, 8192, "<i2")).tobytes()  # 0.25 x 32768, bit for bit

    pcm, none = np.arange(160, dtype="<i2"), np.zeros(0, "<i2")

    def chunk(at, segment, samples, **end):
        return SpeechAudio(sample_index=at, wall_time_ns=0, segment_start=segment, samples=samples, **end)

    svc, mic = serve(True)
    try:
        svc.speech([chunk(100, 900, pcm)])  # joined mid-segment
        svc.speech([chunk(260, 900, none, final=True, end_sample=2000, reason="max_speech"),
                    chunk(260, 2000, none), chunk(260, 2000, pcm)])  # the split's next segment
        svc.close()
        mic.wait_for(lambda m: len(m.events) >= 9)
    finally:
        mic.close()
    got = [(e.type, e.data.get("sample_index"), e.data.get("reason")) for e in mic.events]
    assert got == [("audio-start", 100, None), ("voice-started", 900, None), ("audio-chunk", 100, None),
                   ("voice-stopped", 2000, "max_speech"), ("audio-stop", 260, None),
                   ("audio-start", 260, None), ("voice-started", 2000, None), ("audio-chunk", 260, None),
                   ("audio-stop", 420, None)], got  # closed at shutdown


def test_a_mic_service_that_cannot_serve_stops_the_daemon_with_one_line(tmp_path, clip):
    wav, _ = clip
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        cases = [(["--input", str(wav), "--wyoming", f"tcp://127.0.0.1:{busy.getsockname()[1]}"], 1,
                  f"cannot serve Wyoming on tcp://127.0.0.1:{busy.getsockname()[1]}: "),
                 (["--input", "-", "--wyoming", "stdio://"], 2,
                  "wyoming.uri = 'stdio://' cannot share stdin with input.source = '-'"),
                 (["--input", str(wav), "--wyoming", "udp://x:1"], 2, "is not a Wyoming URI")]
        for i, (args, rc, words) in enumerate(cases):
            run_dir = tmp_path / str(i)
            run_dir.mkdir()
            d = DaemonProcess(run_dir, *args, stdin=subprocess.DEVNULL)
            assert d.wait(60) == rc, d.stderr()
            (line,) = d.stderr().splitlines()
            assert line.startswith("vadstream: error: ") and words in line, line
    finally:
        busy.close()
