"""The daemon loop in-process with a scripted source (no audio device, no subprocess): the source,
block cutting, and a daemon with a subscriber connected."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
import zmq
from daemon_util import RATE, Collector, model_path, write_wav

from vadstream.audio.blocks import AudioBlock, SourceStatus
from vadstream.service import config
from vadstream.service.daemon import Daemon

BLOCK = 320
T0_NS = 1_700_000_000_000_000_000  # wall time of stream sample 0


class ScriptedSource:
    """Plays a script of AudioBlocks and SourceStatus changes, like a live source would report them;
    ``fail_at`` (a read() call index) raises inside read(), like a broken driver would."""

    name = "scripted"

    def __init__(self, script, fail_at: int | None = None):
        self.script = list(script)
        self.fail_at = fail_at
        self.reads = 0
        self.status: list[SourceStatus] = []
        self.closed = False

    def start(self):
        pass

    def read(self, timeout_s):
        if self.reads == self.fail_at:
            raise RuntimeError("injected fault")
        self.reads += 1
        if self.script:
            item = self.script.pop(0)
            if isinstance(item, SourceStatus):
                self.status.append(item)
                return None
            return item
        return None

    @property
    def finished(self):
        return not self.script

    def poll_status(self):
        out, self.status = self.status, []
        return out

    def stats(self):
        return {"kind": "scripted"}

    def close(self):
        self.closed = True


def blocks(x: np.ndarray, start: int = 0, t0_ns: int = T0_NS) -> list[AudioBlock]:
    """``x`` cut into BLOCK-sample AudioBlocks starting at stream sample ``start``."""
    return [AudioBlock(x[i: i + BLOCK], start + i, t0_ns + (start + i) * 62_500) for i in range(0, x.size, BLOCK)]


def inprocess_daemon(tmp_path: Path, detector: dict, topics: tuple[bytes, ...] = (b"vad.",)):
    """A Daemon (its own file source closed: tests set ``d.source``) and a Collector subscribed to
    ``topics``, connected; returns (daemon, collector, context)."""
    wav = write_wav(tmp_path / "unused.wav", np.zeros(RATE, np.float32))
    cfg = config.from_mapping({
        "input": {"source": str(wav), "realtime": False},
        "model": {"path": str(model_path())},
        "detector": detector,
        "publisher": {"endpoint": f"ipc://{tmp_path}/events", "control_endpoint": "none", "heartbeat_s": 0.1},
    })
    d = Daemon(cfg)
    d.source.close()
    ctx = zmq.Context()
    col = Collector(d.events_endpoint, ctx, topics=topics)
    deadline = time.monotonic() + 5
    while d.publisher.subscriptions < len(topics) and time.monotonic() < deadline:
        d.publisher.poll()
        time.sleep(0.01)
    return d, col, ctx


@contextlib.contextmanager
def connected_daemon(tmp_path: Path, detector: dict):
    """``inprocess_daemon`` as (daemon, collector), closed afterwards."""
    d, col, ctx = inprocess_daemon(tmp_path, detector)
    try:
        yield d, col
    finally:
        col.close()
        ctx.destroy(linger=0)
