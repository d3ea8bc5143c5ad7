"""``vadstream monitor``: plain lines off a terminal, a redrawn view on a pty, Ctrl-C, daemon events."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from daemon_util import write_wav

from vadstream.commands.monitor import MonitorState, PlainView, Prob, StateChange, level_dbfs
from vadstream.stages.detector import EndReason, SpeechEnd, SpeechStart

RATE = 16000


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """An espeak-ng sentence, silence, another sentence, at 16 kHz mono with a little noise."""
    if not shutil.which("espeak-ng") or not shutil.which("sox"):
        pytest.skip("needs espeak-ng and sox (script/setup-system test)")
    tmp = tmp_path_factory.mktemp("monitor")
    parts = []
    for i, text in enumerate(("Testing the live monitor.", "Speech again after a pause.")):
        raw, wav = tmp / f"{i}-raw.wav", tmp / f"{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), text], check=True)
        subprocess.run(["sox", str(raw), "-r", str(RATE), "-b", "16", str(wav), "pad", "0.8", "0.8"], check=True)
        with wave.open(str(wav)) as w:
            parts.append(np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768)
    x = np.concatenate(parts) * 0.6 + np.random.default_rng(2).normal(0, 0.002, sum(p.size for p in parts))
    return write_wav(tmp / "clip.wav", x)


@pytest.fixture(scope="module")
def model(shipped_model) -> str:
    return str(shipped_model)


@pytest.fixture(scope="module")
def file_segments(clip, model) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "vadstream", "file", str(clip), "--model", model],
                          capture_output=True, text=True, timeout=120, check=True)
    segments = json.loads(proc.stdout)["segments"]
    assert segments, "the model found no speech in the clip"
    return segments


def monitor_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "vadstream", "monitor", *args]


def test_plain_lines_report_the_segments_vadstream_file_finds(clip, model, file_segments):
    proc = subprocess.run(monitor_cmd("--input", str(clip), "--no-realtime", "--model", model),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "\x1b" not in proc.stdout  # no terminal codes in a pipe
    ends = [re.match(r"\d\d:\d\d\.\d\d speech_end at (\d+\.\d+)s \((\d+\.\d+)s, (\w+)\)", line) for line in lines]
    ends = [(float(m[1]), m[3]) for m in ends if m]
    assert ends == [(round(s["end_s"], 3), s["reason"]) for s in file_segments]
    starts = [float(m[1]) for m in (re.search(r"speech_start at (\d+\.\d+)s", line) for line in lines) if m]
    assert starts == [round(s["start_s"], 3) for s in file_segments]
    status = [line for line in lines if " state=" in line]
    assert len(status) >= 3 and all("level=" in line and "segments=" in line for line in status)
    with wave.open(str(clip)) as w:
        duration_s = w.getnframes() / RATE
    speech_s = sum(s["end_s"] - s["start_s"] for s in file_segments)
    assert lines[-1].endswith(f"done: {len(file_segments)} segment(s), {speech_s:.1f}s of speech in {duration_s:.1f}s")


def read_pty(fd: int, proc: subprocess.Popen, timeout_s: float) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def spawn_on_pty(args: list[str]) -> tuple[subprocess.Popen, int]:
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="100", LINES="30")
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    return proc, master


def test_terminal_view_redraws_in_colour_and_restores_the_cursor(clip, model, file_segments):
    proc, fd = spawn_on_pty(monitor_cmd("--input", str(clip), "--speed", "6", "--model", model))
    try:
        out = read_pty(fd, proc, 60).decode("utf-8", "replace")
        assert proc.wait(10) == 0
    finally:
        os.close(fd)
    assert out.startswith("\x1b[?25l")  # cursor hidden while drawing
    assert out.count("\x1b[5F") > 10  # redrawn in place many times
    assert re.search(r"\x1b\[1;30;42m *SPEECH", out)  # speech in colour
    assert "history" in out and "level" in out and "dBFS" in out
    tail = out[out.rindex("\x1b[?25h"):]  # cursor shown again, then the summary
    assert f"{len(file_segments)} segment(s)" in tail


def test_ctrl_c_exits_cleanly(clip, model):
    proc, fd = spawn_on_pty(monitor_cmd("--input", str(clip), "--model", model))  # real time: ~5 s
    try:
        first = read_pty(fd, proc, 1.5)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        rest = read_pty(fd, proc, 10)
        assert proc.wait(10) == 0
    finally:
        os.close(fd)
    out = (first + rest).decode("utf-8", "replace")
    assert "Traceback" not in out
    assert "\x1b[?25h" in out and re.search(r"\d+ segment\(s\), [\d.]+s of speech in [\d.]+s", out)


class FakeDaemon:
    """An XPUB socket stamping messages like the daemon's publisher, with seq jumps on demand."""

    def __init__(self, endpoint: str):
        import zmq

        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.seq = 0
        self.topic_seq: dict[str, int] = {}

    def wait_subscriber(self, timeout_s: float = 30.0) -> None:
        assert self.sock.poll(int(timeout_s * 1000)), "monitor never subscribed"
        assert self.sock.recv()[:1] == b"\x01"

    def publish(self, message, skip: int = 0) -> None:
        import dataclasses

        self.seq += skip
        n = self.topic_seq.get(message.TYPE, 0) + skip
        stamp = dict(seq=self.seq, stream_id="teststream", source="test")
        if "topic_seq" in {f.name for f in dataclasses.fields(message)}:
            stamp["topic_seq"] = n
        self.sock.send_multipart(dataclasses.replace(message, **stamp).to_message())
        self.seq += 1
        self.topic_seq[message.TYPE] = n + 1

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()


def test_daemon_events_become_lines(tmp_path):
    from vadstream.wire import events as ev

    endpoint = f"ipc://{tmp_path}/events"
    daemon = FakeDaemon(endpoint)
    proc = subprocess.Popen(monitor_cmd("--endpoint", endpoint, "--interval-s", "0.5"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        daemon.wait_subscriber()
        time.sleep(0.2)
        wall = time.time_ns()
        beat = dict(wall_time_ns=wall, state="quiet", uptime_s=1.0, published=60, dropped=0, overflows=0)
        daemon.publish(ev.Heartbeat(sample_index=0, **beat))
        for k in range(50):  # 1 s of hops, speech from 0.2 s to 0.7 s
            p = 0.9 if 10 <= k < 35 else 0.05
            daemon.publish(ev.Probability(sample_index=k * 320, wall_time_ns=wall, probability=p, hop_samples=320))
            if k == 13:
                daemon.publish(ev.SpeechStart(sample_index=2720, wall_time_ns=wall, probability=0.9,
                                                decided_sample=4160))
            if k == 45:
                daemon.publish(ev.SpeechEnd(sample_index=11680, wall_time_ns=wall, probability=0.05,
                                              decided_sample=14720, start_sample=2720, reason="silence"))
        daemon.publish(ev.Status(sample_index=16000, wall_time_ns=wall, kind="lost", message="device unplugged",
                                 state="lost"))
        daemon.publish(ev.Heartbeat(sample_index=16000, **beat), skip=3)  # three this subscriber never sees
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        daemon.close()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == f"00:00.00 listening to {endpoint}"
    assert "00:00.26 speech_start at 0.170s p=0.90" in lines
    assert "00:00.92 speech_end at 0.730s (0.56s, silence)" in lines
    assert "00:01.00 lost: device unplugged" in lines
    assert any(line.endswith("missed 3 message(s)") for line in lines), lines
    assert any(" state=speaking p=0.90 level=- segments=0" in line for line in lines), lines
    assert lines[-1] == "00:01.00 done: 1 segment(s), 0.6s of speech in 1.0s"


def test_state_model_and_plain_status_line():
    s = MonitorState()
    for k, p in enumerate([0.1, 0.8, 0.9]):
        s.apply(Prob(k * 0.02, p))
    s.apply(SpeechStart(0, 960, 0.9))
    assert s.in_speech and s.history[-1] == (0.9, False)
    s.apply(Prob(0.06, 0.2))
    s.apply(SpeechEnd(1600, 4800, 0.2, 0, EndReason.SILENCE))
    s.apply(StateChange("quiet", 0.3))
    assert (s.segments, round(s.speech_s, 3), s.state) == (1, 0.1, "quiet")
    assert PlainView.status_line(s) == "00:00.30 state=quiet p=0.20 level=- segments=1 speech=0.1s"
    assert level_dbfs(np.full(160, 0.5, np.float32)) == pytest.approx(-6.02, abs=0.01)
    assert level_dbfs(np.zeros(160, np.float32)) == -70.0


@pytest.mark.audio
def test_microphone_through_a_private_pulseaudio_server(clip, model, tmp_path):
    from pulse import PulseServer, pulse_missing

    if pulse_missing():
        pytest.skip(pulse_missing())
    with PulseServer(tmp_path / "pulse", rate_hz=48000) as server:
        proc = subprocess.Popen(monitor_cmd("--device", "pulse", "--model", model, "--interval-s", "0.5"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=server.env())
        try:
            time.sleep(3.0)  # PortAudio's first pulse stream takes a moment
            assert proc.poll() is None, proc.communicate()[1]
            server.play_and_wait(clip)
            time.sleep(1.0)
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert any("opened:" in line for line in lines), out
    assert sum(" speech_start at " in line for line in lines) >= 1, out
    assert any(re.search(r"level=-[1-4]\d\.\d+dBFS", line) for line in lines), out  # speech level seen
    assert re.search(r"done: [1-9]\d* segment\(s\)", lines[-1]), out


def test_real_daemon_events_match_vadstream_file(clip, model, file_segments, tmp_path):
    from daemon_util import DaemonProcess

    d = DaemonProcess(tmp_path, "--input", str(clip), "--no-realtime", "--prob", "--wait-subscriber", "20",
                      "--control-endpoint", "none")
    proc = subprocess.Popen(monitor_cmd("--endpoint", d.events, "--interval-s", "1"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    stopped = threading.Event()

    def read() -> None:  # readline blocks: a thread, so that the wait below has a deadline
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if " stopping: " in line:
                stopped.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert d.wait(60) == 0, d.stderr()
        # the daemon's last message: once the monitor shows it, it has shown every event before it
        # (a fixed sleep only guesses how long the monitor takes to parse every vad.prob)
        assert stopped.wait(30), lines[-5:]
    finally:
        d.kill()
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        reader.join(5)
    assert proc.returncode == 0, proc.stderr.read()
    starts = [float(m[1]) for m in (re.search(r"speech_start at (\d+\.\d+)s", line) for line in lines) if m]
    ends = [float(m[1]) for m in (re.search(r"speech_end at (\d+\.\d+)s", line) for line in lines) if m]
    assert starts == [round(s["start_s"], 3) for s in file_segments]
    assert ends == [round(s["end_s"], 3) for s in file_segments]
    assert any(" state=" in line and " p=" in line for line in lines)  # probabilities arrived
    assert not any("publishes no probabilities" in line for line in lines)
