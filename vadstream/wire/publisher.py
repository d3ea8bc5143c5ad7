"""ZeroMQ publisher: stamps ``seq``/``stream_id``/``source`` on messages and never blocks.

The socket is an XPUB with ``XPUB_NODROP`` so that a send to a subscriber whose queue is full
(``SNDHWM`` reached) fails with ``EAGAIN`` instead of vanishing silently: that is how drops are
counted. The same message is then sent once more in lossy mode, so subscribers that keep up
still get it and only the slow one misses it. ZeroMQ then parks the slow subscriber's queue
until it has caught up, and it misses every message meanwhile without another ``EAGAIN``; so
``dropped`` counts drop episodes (one per time a subscriber fell behind), not every message
lost. Subscribers see exactly what they missed: ``seq`` counts every message published,
delivered or not, so each loss is a visible gap.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import uuid
from pathlib import Path

import zmq

from vadstream.wire.events import Message

log = logging.getLogger("vadstream.wire.publisher")


def new_stream_id() -> str:
    """A random id, unique per daemon run."""
    return uuid.uuid4().hex[:16]


def prepare_ipc(endpoint: str) -> Path | None:
    """Create the directory of an ``ipc://`` endpoint (mode 0755 if new); its socket path, or None."""
    if not endpoint.startswith("ipc://"):
        return None
    path = Path(endpoint[len("ipc://"):])
    if str(path).startswith("@"):  # abstract namespace: no file
        return None
    try:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create the socket directory {path.parent}: {exc.strerror}") from None
    return path


def bind(sock: zmq.Socket, endpoint: str, ipc_mode: int = 0o660) -> str:
    """Bind ``sock`` and return the endpoint it got (``LAST_ENDPOINT``); ``ipc://`` socket files get
    ``ipc_mode`` permissions. On failure the socket is closed and OSError says why in one line."""
    try:
        path = prepare_ipc(endpoint)
        old_umask = os.umask(0o777 & ~ipc_mode) if path is not None else None
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise OSError(f"cannot bind {endpoint}: {exc}") from None
        finally:
            if old_umask is not None:
                os.umask(old_umask)
        if path is not None:
            os.chmod(path, ipc_mode)
    except OSError:
        sock.close(0)
        raise
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


class Publisher:
    """Publishes :class:`~vadstream.wire.events.Message` s on a bound XPUB socket (one thread only)."""

    def __init__(self, endpoint: str, *, source: str, stream_id: str | None = None, sndhwm: int = 1000,
                 linger_ms: int = 500, ipc_mode: int = 0o660, context: zmq.Context | None = None):
        self.endpoint = endpoint
        self.source = source
        self.stream_id = stream_id or new_stream_id()
        self.seq = 0  # seq of the next message
        self._topic_seq: dict[str, int] = {}  # type -> topic_seq of its next message
        self.dropped = 0  # times a subscriber's queue was full (drop episodes)
        self.dropped_by_topic: dict[str, int] = {}  # the same, per topic of the message that met the full queue
        self.subscriptions = 0
        self._prefixes: dict[bytes, int] = {}  # subscribed topic prefix -> subscriptions to it
        self._wanted: dict[str, bool] = {}  # topic -> someone's prefix matches it (cleared on every change)
        self._joined: list[bytes] = []  # topic prefixes subscribed since the last joined() call
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.XPUB)
        self._sndhwm = sndhwm
        self._sock.setsockopt(zmq.SNDHWM, sndhwm)
        self._sock.setsockopt(zmq.LINGER, linger_ms)
        self._sock.setsockopt(zmq.XPUB_NODROP, 1)
        self._sock.setsockopt(zmq.XPUB_VERBOSER, 1)  # every (un)subscription, to count subscribers
        self.last_endpoint = bind(self._sock, endpoint, ipc_mode)

    def publish(self, message: Message) -> Message:
        """Stamp and send ``message`` without blocking; returns the stamped message."""
        topic_seq = self._topic_seq.get(message.TYPE, 0)
        message = dataclasses.replace(message, seq=self.seq, topic_seq=topic_seq, stream_id=self.stream_id,
                                      source=self.source)
        self.seq += 1
        self._topic_seq[message.TYPE] = topic_seq + 1
        frames = message.to_message()
        try:
            self._sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            self.dropped_by_topic[message.topic] = self.dropped_by_topic.get(message.topic, 0) + 1
            if self.dropped <= 3 or self.dropped % 100 == 0:
                log.warning("a subscriber is not keeping up (queue of %d messages full): it misses messages until it "
                            "catches up; %d drop episode(s) so far", self._sndhwm, self.dropped)
            self._send_lossy(frames)
        self._drain_subscriptions()
        return message

    def _send_lossy(self, frames: list[bytes]) -> None:
        self._sock.setsockopt(zmq.XPUB_NODROP, 0)
        try:
            self._sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:  # cannot happen in lossy mode, but never block or die for it
            pass
        finally:
            self._sock.setsockopt(zmq.XPUB_NODROP, 1)

    def _drain_subscriptions(self) -> None:
        """Read (un)subscription notices so they do not pile up; count subscribers' topics."""
        while True:
            try:
                msg = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg[:1] == b"\x01":
                self.subscriptions += 1
                self._prefixes[msg[1:]] = self._prefixes.get(msg[1:], 0) + 1
                self._wanted.clear()
                self._joined.append(msg[1:])
            elif msg[:1] == b"\x00":
                self.subscriptions = max(0, self.subscriptions - 1)
                left = self._prefixes.get(msg[1:], 0) - 1
                if left > 0:
                    self._prefixes[msg[1:]] = left
                else:
                    self._prefixes.pop(msg[1:], None)
                self._wanted.clear()

    def wants(self, topic: str) -> bool:
        """Whether some subscriber's prefix matches ``topic`` (a message of it would reach someone)."""
        wanted = self._wanted.get(topic)
        if wanted is None:
            t = topic.encode()
            wanted = self._wanted[topic] = any(t.startswith(p) for p in self._prefixes)
        return wanted

    def joined(self) -> list[bytes]:
        """Topic prefixes subscribed since the last call (one per subscription, oldest first).

        The daemon answers each one that covers ``vad.status`` with a ``welcome`` status, so a
        late subscriber learns the current state at once (ZeroMQ has no last-value cache)."""
        self._drain_subscriptions()
        out, self._joined = self._joined, []
        return out

    def poll(self) -> None:
        """Process subscription notices (call from the loop when nothing was published)."""
        self._drain_subscriptions()

    def stats(self) -> dict:
        return {"endpoint": self.endpoint, "stream_id": self.stream_id, "published": self.seq,
                "dropped": self.dropped, "dropped_by_topic": dict(self.dropped_by_topic),
                "subscriptions": self.subscriptions}

    def close(self, linger_ms: int | None = None) -> None:
        """Close the socket; queued messages get up to ``linger_ms`` to leave."""
        if linger_ms is not None:
            self._sock.setsockopt(zmq.LINGER, linger_ms)
        self._sock.close()
