"""``vadstream wyoming`` end to end (issue 16): the real service process, driven by the ``wyoming``
package's own client (``AsyncTcpClient``, ``AsyncUnixClient``, its stdio framing functions).

The audio is the file-level tests' two-phrase clip (``tests/audio_gen.py``, espeak-ng); what the
service says is compared with what ``vadstream file`` finds in the same WAV, computed here: at
16 kHz mono the timestamps are its segments to the millisecond (the same Stream, and a Stream
gives the same events in any chunking); at 48 kHz stereo (summed to mono and resampled by
Wyoming's AudioChunkConverter, where ``vadstream file`` averages and uses its own resampler)
within 60 ms.
"""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys

import numpy as np
import pytest
from audio_gen import two_phrases, write_wav
from daemon_util import model_path
from wyoming_util import (
    CHUNK_SAMPLES,
    WyomingService,
    detect,
    file_segments,
    pairs,
    run,
    wav_events,
)

from vadstream import __version__

TOLERANCE_MS = 60


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The two-phrase WAV at 16 kHz mono and at 48 kHz stereo, with ``vadstream file``'s segments."""
    d = tmp_path_factory.mktemp("wyoming-clip")
    audio = two_phrases()
    m16 = audio.write_wav(d / "m16.wav")
    s48 = audio.write_wav(d / "s48.wav", rate_hz=48000, channels=2)
    seg16, seg48 = file_segments(m16, s48)
    assert len(seg16) == len(seg48) == 2, (seg16, seg48)  # the clip's two phrases, as vadstream file sees them
    return {"m16": (m16, seg16), "s48": (s48, seg48), "audio": audio, "dir": d}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    s = WyomingService(tmp_path_factory.mktemp("wyoming-service"))
    yield s
    assert s.stop() == 0, s.stderr()
    assert "Traceback" not in s.stderr()


def test_describe_names_the_program_model_and_attribution(service):
    from wyoming.info import Info

    from vadstream.stages.vad import Vad

    spec = Vad(model_path()).spec
    got = run(_info(service.port))
    (vad,) = got.data["vad"]
    assert vad["name"] == "vadstream" and vad["version"] == __version__ and vad["installed"] is True
    assert vad["attribution"]["name"] == "vadstream"
    (model,) = vad["models"]
    assert (model["name"], model["version"]) == (spec.name, spec.version)
    assert spec.version in vad["description"]
    assert Info.from_event(got).mic == []  # a VAD service, no microphone; the info parses as wyoming's Info


async def _info(port: int):
    from wyoming.client import AsyncTcpClient
    from wyoming.info import Describe

    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Describe().event())
        return await asyncio.wait_for(client.read_event(), 10)


@pytest.mark.parametrize("name", ["m16", "s48"], ids=["16k-mono", "48k-stereo"])
def test_two_phrases_give_two_pairs_at_vadstream_files_times(service, clip, name):
    wav, want = clip[name]
    events = run(detect(service.port, wav_events(wav)))
    got = pairs(events)
    print(f"{name}: wyoming {got}, vadstream file {want}")
    assert len(got) == 2
    for (s, e), (ws, we) in zip(got, want):
        assert abs(s - ws) <= TOLERANCE_MS and abs(e - we) <= TOLERANCE_MS, (got, want)
    if name == "m16":
        assert got == [(round(a), round(b)) for a, b in want]  # the same Stream: to the ms
    for ev in events:  # ms of the client's audio, from its 16 kHz sample index
        assert ev.data["timestamp"] == round(ev.data["sample_index"] / 16)
    assert [ev.data["reason"] for ev in events[1::2]] == ["silence", "silence"]
    assert events[1].data["start_sample"] == events[0].data["sample_index"]


def test_ten_concurrent_clients_each_get_their_own_pairs(service, clip):
    """Ten clients at once, each with the clip after a different lead (so that a mix-up between
    connections shows), their chunks interleaved on the service; each gets its own file's segments."""
    audio, d = clip["audio"], clip["dir"]
    wavs = []
    for i in range(10):
        lead = np.zeros(i * 5717, np.float32)  # 0 to 3.2 s, not a multiple of the chunk or the hop
        wavs.append(write_wav(d / f"lead{i}.wav", np.concatenate([lead, audio.samples]), 16000))
    want = file_segments(*wavs)
    assert len({tuple(w) for w in want}) == 10  # ten different answers

    async def all_clients():
        return await asyncio.gather(*(detect(service.port, wav_events(w), pace=True) for w in wavs))

    got = [pairs(events) for events in run(all_clients())]
    assert got == [[(round(a), round(b)) for a, b in w] for w in want]


def test_a_hundred_concurrent_clients_through_one_engine(tmp_path, clip):
    """100 clients at once (--max-clients 100), each with the clip after its own lead: each gets
    its own file's segments to the ms, and the service stepped them together (fewer model steps
    than chunks: one MultiStream, not a session per connection)."""
    audio = clip["audio"]
    wavs = []
    for i in range(100):
        lead = np.zeros(i * 1733, np.float32)  # 0 to 10.7 s, not a multiple of the chunk or the hop
        wavs.append(write_wav(tmp_path / f"lead{i}.wav", np.concatenate([lead, audio.samples]), 16000))
    want = file_segments(*wavs)
    assert len({tuple(w) for w in want}) == 100

    async def all_clients(port):
        return await asyncio.gather(*(detect(port, wav_events(w), pace=True, read_timeout_s=120) for w in wavs))

    service = WyomingService(tmp_path, "--max-clients", "100", "--log-level", "info")
    try:
        got = [pairs(events) for events in run(all_clients(service.port))]
    finally:
        assert service.stop() == 0, service.stderr()
    assert got == [[(round(a), round(b)) for a, b in w] for w in want]
    log = service.stderr()
    assert "Traceback" not in log and "one model call per step for all clients" in log
    chunks, steps = map(int, re.search(r"(\d+) chunks in (\d+) model steps", log).groups())
    assert chunks == sum(len(wav_events(w)) - 2 for w in wavs)
    assert steps < chunks / 5, log  # batched: many clients' chunks per model call


def test_unix_socket(tmp_path, clip):
    from wyoming.client import AsyncUnixClient

    wav, want = clip["m16"]
    path = tmp_path / "run" / "vad.sock"
    proc = subprocess.Popen([sys.executable, "-m", "vadstream", "wyoming", "--uri", f"unix://{path}",
                             "--model", str(model_path())], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        for _ in range(300):
            if path.exists() or proc.poll() is not None:
                break
            subprocess.run(["sleep", "0.05"])
        assert path.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no socket"
        assert oct(path.stat().st_mode & 0o777) == "0o660"  # publisher.ipc_mode, as the ZeroMQ sockets

        async def talk():
            async with AsyncUnixClient(path) as client:
                for event in wav_events(wav):
                    await client.write_event(event)
                await client.write_event(wav_events(wav)[-1])  # a second audio-stop: nothing more to end
                got = []
                while len(got) < 4:
                    got.append(await asyncio.wait_for(client.read_event(), 10))
                return got

        got = pairs(run(talk()))
        assert got == [(round(a), round(b)) for a, b in want]
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
    assert not path.exists()  # removed at exit


def test_stdio_for_rhasspy_style_programs(clip):
    """``stdio://``: events on stdin, answers on stdout, logs on stderr; the end of stdin ends it (exit 0)."""
    from wyoming.event import read_event, write_event

    wav, want = clip["m16"]
    stdin = io.BytesIO()
    for event in wav_events(wav):
        write_event(event, stdin)
    proc = subprocess.run([sys.executable, "-m", "vadstream", "wyoming", "--uri", "stdio://",
                           "--model", str(model_path())], input=stdin.getvalue(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    out = io.BytesIO(proc.stdout)
    events = []
    while (event := read_event(out)) is not None:
        events.append(event)
    assert pairs(events) == [(round(a), round(b)) for a, b in want]
    assert out.read() == b""  # nothing but events on stdout
    assert b"serving Wyoming" in proc.stderr


def test_chunk_sizes_do_not_matter(service, clip):
    """Any chunking, also one that splits frames across nothing (odd sizes): the same events."""
    wav, want = clip["m16"]
    small = pairs(run(detect(service.port, wav_events(wav, chunk_samples=77))))
    big = pairs(run(detect(service.port, wav_events(wav, chunk_samples=16000 * 3))))
    assert small == big == [(round(a), round(b)) for a, b in want]
    assert CHUNK_SAMPLES == 1024


UNIT = "vadstream-wyoming.service"


def test_systemd_unit_verifies_and_the_service_speaks_notify(tmp_path):
    """The example unit passes systemd-analyze verify (as tests/test_systemd.py checks the daemon's),
    and the service it starts sends READY=1 once it serves, STOPPING=1 on SIGTERM (Type=notify)."""
    import os
    import shutil
    import socket
    import time
    from pathlib import Path

    from test_systemd import REPO, collect, notify_socket, unit_settings

    s = unit_settings(UNIT)
    assert s["Type"] == ["notify"] and "2" in s["RestartPreventExitStatus"] and s["PrivateDevices"] == ["yes"]
    assert s["ExecStart"][0].split()[1:3] == ["wyoming", "--uri"]
    assert (REPO / s["Documentation"][0][len("file:///opt/vadstream/"):]).is_file()
    exe = shutil.which("systemd-analyze")
    vadstream = Path(sys.executable).parent / "vadstream"
    if exe is not None and vadstream.is_file():
        unit = tmp_path / UNIT
        unit.write_text((REPO / "systemd" / UNIT).read_text().replace("/opt/vadstream/.venv/bin/vadstream",
                                                                       str(vadstream)))
        result = subprocess.run([exe, "verify", str(unit)], capture_output=True, text=True, timeout=60)
        if "Failed to initialize manager" not in result.stderr:
            assert result.returncode == 0 and [ln for ln in result.stderr.splitlines() if UNIT in ln] == [], \
                result.stderr
    address = str(tmp_path / "notify")
    sock = notify_socket(address)
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    uri = f"tcp://127.0.0.1:{port.getsockname()[1]}"
    port.close()
    proc = subprocess.Popen([sys.executable, "-m", "vadstream", "wyoming", "--uri", uri, "--model", str(model_path())],
                            env={**os.environ, "NOTIFY_SOCKET": address}, stderr=subprocess.PIPE)
    try:
        got = collect(sock, lambda g: any("READY=1" in m for m in g))
        assert any("READY=1" in m and f"STATUS=serving Wyoming on {uri}" in m for m in got), got
        socket.create_connection(("127.0.0.1", int(uri.rsplit(":", 1)[1])), timeout=2).close()  # serving by then
        proc.terminate()
        got = collect(sock, lambda g: any("STOPPING=1" in m for m in g), timeout_s=10)
        assert any("STOPPING=1" in m for m in got), got
        assert proc.wait(10) == 0
        time.sleep(0)
    finally:
        proc.kill()
        sock.close()


def test_ping_and_select_program(service):
    from wyoming.client import AsyncTcpClient
    from wyoming.event import Event
    from wyoming.ping import Ping

    async def talk():
        async with AsyncTcpClient("127.0.0.1", service.port) as client:
            await client.write_event(Event(type="select-program", data={"name": "vadstream"}))
            await client.write_event(Ping(text="hello").event())
            return await asyncio.wait_for(client.read_event(), 10)

    pong = run(talk())
    assert pong.type == "pong" and pong.data["text"] == "hello"


def test_the_docs_python_client_runs_as_written(service, clip, tmp_path):
    """docs/wyoming.md's client example, with this service's port and the clip for talk.wav."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "wyoming.md").read_text()
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", doc, re.S) if "AsyncTcpClient" in c]
    wav, want = clip["m16"]
    code = code.replace("10700", str(service.port)).replace('"talk.wav"', repr(str(wav)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expect = [f"{kind} {round(t)} ms" for a, b in want for kind, t in (("voice-started", a), ("voice-stopped", b))]
    assert proc.stdout.splitlines() == expect
