"""Helpers for the daemon tests: test audio, a running daemon subprocess, a collecting subscriber."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import zmq

from vadstream.wire import events

REPO = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = REPO / "models" / "vadstream.onnx"
RATE = 16000


def model_path() -> Path:
    """The shipped model (``VADSTREAM_TEST_MODEL`` may point elsewhere for local experiments)."""
    path = Path(os.environ.get("VADSTREAM_TEST_MODEL", SHIPPED_MODEL))
    if not path.is_file():
        pytest.fail(f"model missing: {path}")
    return path


def espeak(text: str, tmp_path: Path, voice: str = "en") -> np.ndarray:
    """``text`` spoken by espeak-ng, as float32 16 kHz mono (skips the test without espeak-ng)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    wav = tmp_path / f"espeak-{abs(hash((text, voice)))}.wav"
    subprocess.run([exe, "-v", voice, "-s", "150", "-w", str(wav), text], check=True, capture_output=True)
    with wave.open(str(wav)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    from vadstream.stages.resample import Resampler

    r = Resampler(rate, RATE)
    y = np.concatenate([r.process(x), r.flush()]).astype(np.float32)
    # Trim espeak's own leading/trailing silence so the regions below are exact.
    loud = np.flatnonzero(np.abs(y) > 0.02)
    return y[loud[0]: loud[-1] + 1]


def speech_track(tmp_path: Path, layout: list[float | str], noise: float = 0.001, seed: int = 0):
    """Concatenate silence (a float, seconds) and speech (a string) with faint noise.

    Returns (audio float32, [(start_s, end_s) of each speech part]).
    """
    parts, regions, t = [], [], 0.0
    for item in layout:
        x = espeak(item, tmp_path) if isinstance(item, str) else np.zeros(int(item * RATE), np.float32)
        if isinstance(item, str):
            regions.append((t, t + x.size / RATE))
        parts.append(x)
        t += x.size / RATE
    y = np.concatenate(parts)
    y = y + noise * np.random.default_rng(seed).standard_normal(y.size).astype(np.float32)
    return y.astype(np.float32), regions


def write_wav(path: Path, x: np.ndarray, rate: int = RATE) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(s16le(x))
    return path


def s16le(x: np.ndarray) -> bytes:
    return (np.clip(x, -1.0, 32767 / 32768) * 32768.0).astype("<i2").tobytes()


class Collector:
    """SUB socket in a thread collecting every message (parsed and schema-checked)."""

    def __init__(self, endpoint: str, ctx: zmq.Context, topics: tuple[bytes, ...] = (b"vad.",)):
        self.validator = jsonschema.Draft202012Validator(events.schema())
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.LINGER, 0)
        for topic in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, topic)
        self.sock.connect(endpoint)
        self.messages: list[events.Message] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.sock.poll(50):
                continue
            frames = self.sock.recv_multipart()
            try:
                self.validator.validate(json.loads(frames[1]))
                self.messages.append(events.parse(frames))
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"{exc}")

    def of(self, cls) -> list:
        return [m for m in list(self.messages) if isinstance(m, cls)]

    def wait_for(self, predicate, timeout_s: float = 10.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for m in list(self.messages):
                if predicate(m):
                    return m
            time.sleep(0.01)
        raise AssertionError(f"no matching message within {timeout_s} s; got {[m.TYPE for m in self.messages]}")

    def wait_stopped(self, timeout_s: float = 10.0) -> events.Status:
        """The daemon's last message, its ``stopping`` status: once it is here, so is every message
        before it. (A fixed sleep after the daemon exits is not: on a loaded machine this thread
        may still be parsing and checking the messages ZeroMQ holds for it.)"""
        return self.wait_for(lambda m: isinstance(m, events.Status) and m.kind == "stopping", timeout_s)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close(0)


class DaemonProcess:
    """``vadstream run`` as a subprocess with its endpoints in ``tmp_path``."""

    def __init__(self, tmp_path: Path, *args: str, stdin=None, env: dict | None = None, cli: bool = False):
        self.events = f"ipc://{tmp_path}/run/events"
        self.control = f"ipc://{tmp_path}/run/control"
        # cli: through `vadstream run`; else the daemon module alone (independent of the other commands)
        entry = ["-m", "vadstream", "run"] if cli else ["-m", "vadstream.service.daemon"]
        cmd = [sys.executable, *entry, "--model", str(model_path()), "--endpoint", self.events,
               *args]
        full_env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        full_env.update(PYTHONUNBUFFERED="1", **(env or {}))
        n = len(list(tmp_path.glob("daemon-*.log")))
        self.log_path = tmp_path / f"daemon-{n}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=self._log,
                                     env=full_env, cwd=tmp_path)

    def wait_subscribed(self, ctx: zmq.Context, timeout_s: float = 15.0) -> dict:
        """Poll the control socket until the daemon has seen a subscription; its status."""
        return self.wait_subscribed_n(ctx, 1, timeout_s)

    def wait_subscribed_n(self, ctx: zmq.Context, n: int, timeout_s: float = 15.0) -> dict:
        """Poll the control socket until the daemon counts ``n`` subscriptions; its status."""
        from vadstream.wire.client import ControlError, request

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"daemon exited early: {self.stderr()}"
            try:
                status = request(self.control, "status", timeout_s=0.5, context=ctx)["status"]
                if status["publisher"]["subscriptions"] >= n:
                    return status
            except ControlError:
                pass
            time.sleep(0.05)
        raise AssertionError("daemon never saw the subscription")

    def listen_when_flowing(self, ctx: zmq.Context, topics: tuple[bytes, ...] = (b"vad.",)) -> Collector:
        """A Collector on the events, once the daemon has seen it subscribe and audio flows
        (PortAudio's first stream in a process takes 1-2 s to deliver)."""
        col = Collector(self.events, ctx, topics=topics)
        self.wait_subscribed(ctx)
        col.wait_for(lambda m: isinstance(m, events.Heartbeat) and m.sample_index > 8000, timeout_s=20)
        return col

    def terminate(self, col: Collector, timeout_s: float = 10.0) -> int:
        """SIGTERM, wait for the exit and the last message (``stopping``), close ``col``; the exit status."""
        self.signal(signal.SIGTERM)
        rc = self.wait(timeout_s)
        if rc == 0:  # else the caller's check of rc shows stderr
            col.wait_stopped()
        col.close()
        return rc

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 30.0) -> int:
        return self.proc.wait(timeout_s)

    def stderr(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
