"""The wire format: one frozen dataclass per message, each with ``to_message()`` / ``from_message()``.

A message is two ZeroMQ frames: the topic (``vad.<type>``, UTF-8) and a JSON object. Every object
carries the common header::

    schema_version  1
    type            speech_start | speech_end | status | heartbeat | prob
    seq             0, 1, 2, ... over all topics per daemon run, without gaps
    topic_seq       0, 1, 2, ... per topic per daemon run, without gaps (a subscriber to some
                    topics only detects what it missed with this one)
    stream_id       unique per daemon run (a new id = the daemon restarted; seq starts again)
    source          name of the audio source
    sample_index    position in the stream, in samples at 16 kHz
    time_s          sample_index / 16000
    wall_time_ns    wall-clock time of sample_index, unix nanoseconds

plus the fields of its type (see each class, ``docs/events.md`` and ``schemas/events.schema.json``).
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from typing import Any, ClassVar, Mapping

SCHEMA_VERSION = 1
SAMPLE_RATE_HZ = 16000
TOPIC_PREFIX = "vad."
END_REASONS = ("silence", "max_speech", "end_of_input", "shutdown", "device_lost")
STATUS_KINDS = ("started", "opened", "lost", "restored", "overflow", "error", "config", "stopping")
STATES = ("quiet", "starting", "speaking", "stopping", "lost")


class ParseError(ValueError):
    """A received message is not a valid vadstream message (one clear line)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Message:
    """Common header; ``seq``, ``topic_seq``, ``stream_id`` and ``source`` are stamped by the publisher."""

    TYPE: ClassVar[str] = ""

    sample_index: int
    wall_time_ns: int
    seq: int = 0
    topic_seq: int = 0
    stream_id: str = ""
    source: str = ""

    @property
    def topic(self) -> str:
        return TOPIC_PREFIX + self.TYPE

    @property
    def time_s(self) -> float:
        return self.sample_index / SAMPLE_RATE_HZ

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "type": self.TYPE}
        for field in dataclasses.fields(self):
            data[field.name] = getattr(self, field.name)
        data["time_s"] = round(self.time_s, 6)
        data.update(self._extra())
        return data

    def _extra(self) -> dict[str, Any]:
        return {}

    def to_message(self) -> list[bytes]:
        """``[topic, json]`` frames for ``send_multipart``."""
        return [self.topic.encode(), json.dumps(self.to_dict(), separators=(",", ":")).encode()]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Message":
        if data.get("type") != cls.TYPE:
            raise ParseError(f"expected type {cls.TYPE!r}, got {data.get('type')!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:
            raise ParseError(f"{cls.TYPE} message: {exc}") from None

    @classmethod
    def from_message(cls, frames: list[bytes]) -> "Message":
        message = parse(frames)
        if not isinstance(message, cls):
            raise ParseError(f"expected a {cls.TYPE} message, got {message.TYPE}")
        return message


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpeechStarted(Message):
    """Speech began at ``sample_index`` (padded boundary); known at ``decided_sample``."""

    TYPE: ClassVar[str] = "speech_start"
    probability: float
    decided_sample: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpeechEnded(Message):
    """The segment ``start_sample .. sample_index`` ended, for ``reason`` (see END_REASONS)."""

    TYPE: ClassVar[str] = "speech_end"
    probability: float
    decided_sample: int
    start_sample: int
    reason: str

    @property
    def duration_s(self) -> float:
        return (self.sample_index - self.start_sample) / SAMPLE_RATE_HZ

    def _extra(self) -> dict[str, Any]:
        return {"duration_s": round(self.duration_s, 6)}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Status(Message):
    """A change worth knowing: source opened/lost/restored, overflow, error, config, start/stop."""

    TYPE: ClassVar[str] = "status"
    kind: str
    message: str
    state: str
    details: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Heartbeat(Message):
    """Sent every ``heartbeat_s``: the daemon is alive; current detector state and counters."""

    TYPE: ClassVar[str] = "heartbeat"
    state: str
    uptime_s: float
    published: int
    dropped: int
    overflows: int
    dropped_by_topic: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Probability(Message):
    """Speech probability of the hop ``sample_index .. sample_index + hop_samples`` (opt-in)."""

    TYPE: ClassVar[str] = "prob"
    probability: float
    hop_samples: int


TYPES: dict[str, type[Message]] = {cls.TYPE: cls for cls in (SpeechStarted, SpeechEnded, Status, Heartbeat, Probability)}
TOPICS = tuple(TOPIC_PREFIX + t for t in TYPES)


def parse(frames: list[bytes]) -> Message:
    """A typed message from ``[topic, json]`` frames (``[topic, json, pcm]`` for the ``audio.`` topics,
    ``vadstream.wire.audio``); :class:`ParseError` if it is not one."""
    if frames and bytes(frames[0]).startswith(b"audio."):
        from vadstream.wire.audio import parse_audio

        return parse_audio(frames)
    if len(frames) != 2:
        raise ParseError(f"expected 2 frames [topic, json], got {len(frames)}")
    try:
        topic = frames[0].decode()
        data = json.loads(frames[1])
    except (UnicodeDecodeError, ValueError) as exc:
        raise ParseError(f"undecodable message: {exc}") from None
    if not isinstance(data, dict):
        raise ParseError("message payload is not a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ParseError(f"unsupported schema_version {version!r} (this client reads {SCHEMA_VERSION})")
    cls = TYPES.get(data.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise ParseError(f"unknown message type {data.get('type')!r}")
    if topic != TOPIC_PREFIX + cls.TYPE:
        raise ParseError(f"topic {topic!r} does not match type {cls.TYPE!r}")
    return cls.from_dict(data)


def schema() -> dict[str, Any]:
    """The JSON Schema every published payload validates against (``schemas/events.schema.json``)."""
    text = resources.files("vadstream.wire").joinpath("schemas/events.schema.json").read_text()
    return json.loads(text)
