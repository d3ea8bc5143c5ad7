"""Helpers for the Wyoming tests: the real ``vadstream wyoming`` process, clients built on the
``wyoming`` package's own ``AsyncTcpClient``, and ``vadstream file``'s segments to compare with."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import warnings
import wave
from pathlib import Path

import numpy as np
import pytest
from daemon_util import model_path

wyoming = pytest.importorskip("wyoming", reason="the wyoming extra is not installed (make test installs it)")

with warnings.catch_warnings():  # wyoming.audio imports audioop, deprecated since Python 3.11
    warnings.simplefilter("ignore", DeprecationWarning)
    from wyoming.audio import AudioChunk, AudioStart, AudioStop  # noqa: E402
from wyoming.client import AsyncTcpClient  # noqa: E402
from wyoming.info import Describe  # noqa: E402

CHUNK_SAMPLES = 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout_s: float = 30.0,
              log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}: {log.read_text() if log else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {timeout_s} s")


class WyomingService:
    """``vadstream wyoming --uri tcp://127.0.0.1:PORT`` as a subprocess; its stderr in a file."""

    def __init__(self, tmp_path: Path, *args: str, port: int | None = None):
        self.port = port or free_port()
        self.uri = f"tcp://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"wyoming-{self.port}.log"
        self._log = self.log_path.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "vadstream", "wyoming", "--uri", self.uri,
                                      "--model", str(model_path()), *args],
                                     stdout=subprocess.DEVNULL, stderr=self._log, env=env, cwd=tmp_path)
        wait_port(self.port, self.proc, log=self.log_path)

    def stderr(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def lines_about(self, local_port: int) -> list[str]:
        """The service's log lines about the client connected from ``local_port``."""
        return [line for line in self.stderr().splitlines() if f"127.0.0.1:{local_port}:" in line]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(10)
        finally:
            self._log.close()


def wav_events(path: Path, chunk_samples: int = CHUNK_SAMPLES) -> list:
    """``audio-start``, 1024-sample ``audio-chunk`` s and ``audio-stop`` of a WAV, in its own format."""
    with wave.open(str(path), "rb") as w:
        rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
        out = [AudioStart(rate=rate, width=width, channels=channels, timestamp=0).event()]
        while True:
            pcm = w.readframes(chunk_samples)
            if not pcm:
                break
            out.append(AudioChunk(rate=rate, width=width, channels=channels, audio=pcm).event())
    out.append(AudioStop().event())
    return out


async def detect(port: int, events: list, read_timeout_s: float = 30.0, pace: bool = False) -> list:
    """Send ``events`` with the wyoming client, then ``describe``; the events received before the
    ``info`` answer (the service handles a connection's events in order). ``pace``: yield to the
    event loop after each event, so that concurrent clients' chunks interleave."""
    client = AsyncTcpClient("127.0.0.1", port, read_timeout=read_timeout_s)
    await client.connect()
    try:
        for event in events:
            await client.write_event(event)
            if pace:
                await asyncio.sleep(0)
        await client.write_event(Describe().event())
        got = []
        while True:
            event = await client.read_event()
            assert event is not None, f"connection closed after {[e.type for e in got]}"
            if event.type == "info":
                return got
            got.append(event)
    finally:
        await client.disconnect()


def pairs(events: list) -> list[tuple[int, int]]:
    """``[(voice-started ms, voice-stopped ms)]``; fails unless they strictly alternate."""
    kinds = [e.type for e in events]
    assert kinds == ["voice-started", "voice-stopped"] * (len(kinds) // 2), kinds
    stamps = [e.data["timestamp"] for e in events]
    return list(zip(stamps[0::2], stamps[1::2]))


def file_segments(*paths: Path) -> list[list[tuple[int, int]]]:
    """``vadstream file``'s segments of each file, as ``(start ms, end ms)`` (its 16 kHz samples / 16)."""
    proc = subprocess.run([sys.executable, "-m", "vadstream", "file", "--model", str(model_path()),
                           *map(str, paths)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    return [[(s["start_sample"] / 16, s["end_sample"] / 16) for s in r["segments"]] for r in out]


def run(coro):
    return asyncio.run(coro)


class MicListener:
    """The ``wyoming`` package's ``AsyncTcpClient`` reading a Wyoming mic service (or a satellite) in
    its own thread (the test's ZeroMQ collector runs in another); every event it receives, in order."""

    def __init__(self, port: int, timeout_s: float = 30.0, hello: tuple = ()):
        import threading

        self.port = port
        self.hello = hello  # events to send once connected
        self.events: list = []
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: AsyncTcpClient | None = None
        self._connected = threading.Event()
        wait_port(port, timeout_s=timeout_s)
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        self._connected.wait(timeout_s)

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        client = self._client = AsyncTcpClient("127.0.0.1", self.port)
        try:
            await client.connect()
            self._connected.set()
            for event in self.hello:
                await client.write_event(event)
            while (event := await client.read_event()) is not None:  # no timeout: a cancelled read loses events
                self.events.append(event)
        except (ConnectionError, AttributeError):  # closed by close(): the end
            pass
        except BaseException as exc:  # noqa: BLE001 - shown by the test
            self.error = exc
        finally:
            self._connected.set()

    def of(self, kind: str) -> list:
        return [e for e in list(self.events) if e.type == kind]

    def wait_for(self, predicate, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.02)
        raise AssertionError(f"mic events never matched; got {[e.type for e in self.events][-20:]}")

    def audio(self) -> tuple[int, np.ndarray]:
        """The chunks' audio as one int16 array and the stream sample of its first sample; fails
        unless each chunk starts where the previous one ended."""
        chunks = self.of("audio-chunk")
        assert chunks, "no audio"
        at = chunks[0].data["sample_index"]
        for c in chunks:
            assert c.data["sample_index"] == at and c.data["timestamp"] == round(at / 16), (c.data, at)
            assert (c.data["rate"], c.data["width"], c.data["channels"]) == (16000, 2, 1)
            at += len(c.payload or b"") // 2
        pcm = b"".join(c.payload or b"" for c in chunks)
        return chunks[0].data["sample_index"], np.frombuffer(pcm, "<i2")

    def close(self) -> None:
        """Stop reading (what came so far stays in ``events``)."""
        client = self._client
        if self._thread.is_alive() and self._loop is not None and client is not None and client._writer is not None:
            try:
                self._loop.call_soon_threadsafe(client._writer.transport.abort)
            except RuntimeError:  # its loop just ended: the service closed the connection
                pass
        self._thread.join(5)
