"""The Wyoming mic service on live capture (issue 16): PulseAudio -> PortAudio -> ``vadstream run
--wyoming`` -> the ``wyoming`` package's client, beside the ZeroMQ bus; and wyoming-satellite (the
Home Assistant voice satellite, from PyPI) reading it with ``--mic-uri``.

As in tests/test_e2e_audio.py, a private PulseAudio server with a 16 kHz null sink (nothing
resamples: PulseAudio at 100 % volume passes 16-bit samples unchanged), ``paplay`` plays espeak-ng
phrases, and the daemon captures the sink's monitor through the ``pulse`` device.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from audio_gen import espeak_missing, make_test_audio, read_wav
from daemon_util import DaemonProcess
from test_e2e_audio import locate, server  # noqa: F401 - server: its 16 kHz PulseAudio fixture
from wyoming_util import MicListener, free_port, wait_port

from vadstream.wire.events import SpeechEnd, SpeechStart

pytestmark = pytest.mark.audio

REPO = Path(__file__).resolve().parent.parent
SATELLITE = "wyoming-satellite==1.0.0"  # the newest on PyPI; it pins wyoming 1.4.1, so it gets a venv of its own


@pytest.fixture(scope="module")
def played(tmp_path_factory):
    if espeak_missing():
        pytest.skip(espeak_missing())
    audio = make_test_audio(gap_s=2.0, noise_dbfs=-60.0)
    wav = audio.write_wav(tmp_path_factory.mktemp("wyoming-e2e") / "speech16k.wav", rate_hz=16000)
    return wav, np.rint(read_wav(wav)[0][:, 0] * 32768).astype("<i2")


def run_mic(pulse, tmp_path, wav, port: int, *, extra=None):
    """The daemon on the pulse device with a Wyoming mic service on ``port``; ``extra()`` starts
    what reads it and returns a MicListener. Plays ``wav``; returns the listener and the collector."""
    ctx = zmq.Context()
    d = DaemonProcess(tmp_path, "--device", "pulse", "--wait-subscriber", "20", "--wyoming",
                      f"tcp://127.0.0.1:{port}", env=pulse.env({}), cli=True)
    try:
        wait_port(port, d.proc, log=d.log_path)
        mic = extra()
        col = d.listen_when_flowing(ctx)
        pulse.play_and_wait(wav, timeout_s=60)
        time.sleep(1.5)  # hangover and lookahead of the last phrase
        assert d.terminate(col) == 0, d.stderr()
        mic.close()
    finally:
        d.kill()
        ctx.destroy(linger=0)
    assert mic.error is None and "Traceback" not in d.stderr(), d.stderr()
    return mic, col


# PulseAudio does not pass the first milliseconds of a new playback stream verbatim: measured here,
# 1 to 61 of the file's first 256 samples (16 ms of faint fade-in noise) came out off by 1 to 3 LSB,
# varying from run to run; everything after is bit for bit. The comparison starts after them.
PLAYBACK_START_SAMPLES = 800  # 50 ms


def check_audio(mic: MicListener, played: np.ndarray) -> None:
    """The chunks are one gapless stream holding the played file bit for bit."""
    first, audio = mic.audio()
    at = locate(played, audio)
    assert at >= 0, "the played file is not in the mic stream bit for bit"
    got = audio[at:at + played.size]
    assert got.size == played.size
    k = PLAYBACK_START_SAMPLES
    bad = np.flatnonzero(got[k:] != played[k:])
    assert bad.size == 0, (bad.size, (bad[:5] + k).tolist(), got[bad[:5] + k].tolist(), played[bad[:5] + k].tolist())


def test_mic_service_on_live_capture_matches_the_source_and_the_bus(server, tmp_path, played):  # noqa: F811
    wav, pcm = played
    port = free_port()
    mic, col = run_mic(server, tmp_path, wav, port, extra=lambda: MicListener(port))
    check_audio(mic, pcm)
    kinds = [e.type for e in mic.events]
    assert kinds[0] == "audio-start" and kinds[-1] == "audio-stop", kinds[:3]
    voice = [(e.type, e.data["sample_index"], e.data["timestamp"]) for e in mic.events if e.type.startswith("voice")]
    bus = [("voice-started" if isinstance(m, SpeechStart) else "voice-stopped", m.sample_index,
            round(m.sample_index / 16)) for m in col.messages if isinstance(m, (SpeechStart, SpeechEnd))]
    print("wyoming:", voice)
    assert len(bus) >= 2 and voice == bus  # the same events, at the same samples, as on ZeroMQ
    stops = [e for e in mic.events if e.type == "voice-stopped"]
    ends = [m for m in col.messages if isinstance(m, SpeechEnd)]
    assert [(e.data["start_sample"], e.data["reason"]) for e in stops] == [(m.start_sample, m.reason) for m in ends]


def satellite_python(tmp_path_factory) -> Path:
    """A venv with wyoming-satellite from PyPI (kept in .venv/wyoming-satellite for the next run)."""
    venv = REPO / ".venv" / "wyoming-satellite" if (REPO / ".venv").is_dir() else \
        tmp_path_factory.mktemp("satellite") / "venv"
    ok = venv / ".installed"
    if ok.is_file() and ok.read_text() == SATELLITE:
        return venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", SATELLITE], capture_output=True, text=True,
                         timeout=600)
    if pip.returncode != 0:
        lines = (pip.stderr or pip.stdout).strip().splitlines()
        pytest.skip(f"pip cannot install {SATELLITE} here: {lines[-1] if lines else pip.returncode}")
    ok.write_text(SATELLITE)
    return venv / "bin" / "python"


@pytest.mark.slow
def test_wyoming_satellite_streams_the_daemons_microphone(server, tmp_path, tmp_path_factory,  # noqa: F811
                                                          played):
    """wyoming-satellite --mic-uri pointed at the daemon; the test plays Home Assistant: it connects to
    the satellite and sends run-satellite; the satellite asks for a pipeline and forwards the
    microphone's chunks, which must be the played audio bit for bit."""
    from wyoming.satellite import RunSatellite

    python = satellite_python(tmp_path_factory)
    wav, pcm = played
    port, sat_port = free_port(), free_port()
    log = (tmp_path / "satellite.log").open("wb")
    sat = None

    def satellite() -> MicListener:
        nonlocal sat
        sat = subprocess.Popen([str(python), "-m", "wyoming_satellite", "--name", "vadstream test",
                                "--uri", f"tcp://127.0.0.1:{sat_port}", "--mic-uri", f"tcp://127.0.0.1:{port}",
                                "--no-zeroconf", "--debug"], stdout=log, stderr=log, cwd=tmp_path,
                               env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        wait_port(sat_port, sat, log=tmp_path / "satellite.log")
        return MicListener(sat_port, hello=(RunSatellite().event(),))

    try:
        ha, _ = run_mic(server, tmp_path, wav, port, extra=satellite)
    finally:
        if sat is not None:
            sat.terminate()
            sat.wait(10)
        log.close()
    text = (tmp_path / "satellite.log").read_text(errors="replace")
    assert "Connected to mic service" in text, text[-2000:]
    kinds = [e.type for e in ha.events]
    assert kinds[0] == "run-pipeline", kinds[:5]  # the satellite asked Home Assistant for a pipeline
    check_audio(ha, pcm)  # and forwarded the daemon's microphone, sample for sample
