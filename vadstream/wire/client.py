"""A small client for the daemon: subscribe and iterate typed events, ask the control socket.

::

    from vadstream.wire.client import Subscriber, request

    with Subscriber("ipc:///run/user/1000/vadstream/events") as sub:
        for event in sub:                       # SpeechStart, SpeechEnd, Status, Heartbeat, ...
            print(event.TYPE, event.time_s)

    print(request("ipc:///run/user/1000/vadstream/control", {"cmd": "status"}))

    for utt in utterances():                    # speech audio: one Utterance per segment
        print(utt.start_sample, utt.samples.shape, utt.reason)   # int16 16 kHz mono numpy array

Speech audio (``audio.utterance``, ``audio.speech``: ``vadstream.wire.audio``) is not under
``vad.``: subscribe to those topics, or iterate :func:`utterances`.

Each message is parsed (and validated against the JSON schema when ``jsonschema`` is installed);
invalid ones are skipped and reported to ``on_invalid``. Gaps in a topic's ``topic_seq``
(messages of a subscribed topic this subscriber missed) are reported to ``on_gap`` and kept in
``gaps``; a new ``stream_id`` means the daemon restarted, which is not a gap.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import zmq

from vadstream.wire import events
from vadstream.wire.endpoints import default_endpoint, unreachable
from vadstream.wire.events import Message, ParseError

if TYPE_CHECKING:
    from vadstream.wire.audio import Utterance


@dataclasses.dataclass(frozen=True)
class Gap:
    """Messages ``expected_seq .. got_seq - 1`` (``topic_seq``) of ``topic`` in ``stream_id`` never arrived."""

    stream_id: str
    topic: str
    expected_seq: int
    got_seq: int

    @property
    def missing(self) -> int:
        return self.got_seq - self.expected_seq


def _validator():
    try:
        import jsonschema
    except ImportError:
        return None
    return jsonschema.Draft202012Validator(events.schema())


class Subscriber:
    """SUB socket connected to the daemon's events endpoint, yielding typed messages."""

    def __init__(self, endpoint: str | None = None, topics: Iterable[str] = ("vad.",), *, validate: bool = True,
                 on_gap: Callable[[Gap], None] | None = None,
                 on_invalid: Callable[[str], None] | None = None, context: zmq.Context | None = None):
        self.endpoint = endpoint or default_endpoint()
        self.gaps: list[Gap] = []
        self.invalid = 0
        self.on_gap = on_gap
        self.on_invalid = on_invalid
        self._validator = _validator() if validate else None
        self._next_seq: dict[tuple[str, str], int] = {}  # (stream_id, topic) -> next topic_seq
        self._stream_id: str | None = None
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, 0)  # never drop on our side: gaps are the daemon's drops
        for topic in topics:
            self._sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self._sock.connect(self.endpoint)

    def receive(self, timeout_s: float | None = None) -> Message | None:
        """The next valid message, or None when ``timeout_s`` passes first (None: wait forever)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            wait_ms = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not self._sock.poll(wait_ms):
                return None
            frames = self._sock.recv_multipart()
            message = self._check(frames)
            if message is not None:
                return message

    def _check(self, frames: list[bytes]) -> Message | None:
        try:
            message = events.parse(frames)
            if self._validator is not None:
                error = next(iter(self._validator.iter_errors(json.loads(frames[1]))), None)
                if error is not None:
                    raise ParseError(f"{message.TYPE} message does not match the schema: {error.message}")
        except ParseError as exc:
            self.invalid += 1
            if self.on_invalid:
                self.on_invalid(str(exc))
            return None
        key = (message.stream_id, message.topic)
        expected = self._next_seq.get(key)
        if expected is not None and message.topic_seq != expected:
            gap = Gap(message.stream_id, message.topic, expected, message.topic_seq)
            self.gaps.append(gap)
            if self.on_gap:
                self.on_gap(gap)
        self._next_seq[key] = message.topic_seq + 1
        self._stream_id = message.stream_id
        return message

    def __iter__(self) -> Iterator[Message]:
        while True:
            message = self.receive()
            if message is not None:
                yield message

    def close(self) -> None:
        self._sock.close(0)

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def utterances(endpoint: str | None = None, **kwargs: Any) -> Iterator["Utterance"]:
    """Yield each :class:`~vadstream.wire.audio.Utterance` the daemon publishes, forever.

    An utterance is one speech segment with its pre- and post-roll: ``samples`` (int16 numpy
    array, 16 kHz mono, ``float32()`` for floats, ``segment()`` for the segment without the
    rolls) and its metadata (``start_sample``, ``end_sample``, ``sample_index`` of the first
    sample, ``wall_time_ns``, ``probability``, ``reason``, ``stream_id``, ``seq``). ``kwargs`` go to
    :class:`Subscriber` (``on_gap`` reports utterances missed while this loop was too slow).
    """
    from vadstream.wire.audio import UTTERANCE_TOPIC, Utterance

    with Subscriber(endpoint, (UTTERANCE_TOPIC,), **kwargs) as sub:
        for message in sub:
            if isinstance(message, Utterance):
                yield message


class ControlError(RuntimeError):
    """The control socket did not answer, or answered with an error."""


def request(endpoint: str | None, command: dict[str, Any] | str, timeout_s: float = 2.0,
            context: zmq.Context | None = None) -> dict[str, Any]:
    """Send one request to the control socket and return the reply (``ok`` true), else ControlError."""
    endpoint = endpoint or default_endpoint("control")
    ctx = context or zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        problem = unreachable(endpoint, probe=False)  # no file, no permission: say so at once
        if problem:
            raise ControlError(problem)
        sock.connect(endpoint)
        sock.send(json.dumps({"cmd": command} if isinstance(command, str) else command).encode())
        if not sock.poll(int(timeout_s * 1000)):
            raise ControlError(unreachable(endpoint) or f"no answer from {endpoint} within {timeout_s} s "
                               "(is the daemon running?)")
        reply = json.loads(sock.recv())
    finally:
        sock.close(0)
    if not reply.get("ok"):
        raise ControlError(f"{endpoint}: {reply.get('error', 'request failed')}")
    return reply
