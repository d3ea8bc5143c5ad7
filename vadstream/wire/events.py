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
from typing import Any, ClassVar

from vadstream.stages.detector import EndReason, State
from vadstream.wire.audio import AUDIO_TOPIC_PREFIX, AUDIO_TYPES
from vadstream.wire.message import SAMPLE_RATE_HZ, TOPIC_PREFIX, Message, decode
from vadstream.wire.message import SCHEMA_VERSION as SCHEMA_VERSION  # re-exported: part of this module's API
from vadstream.wire.message import ParseError as ParseError

END_REASONS = tuple(r.value for r in EndReason)  # the detector's names, said once
STATUS_KINDS = ("started", "welcome", "opened", "lost", "restored", "overflow", "error", "config", "stopping")
STATES = tuple(s.value for s in State) + ("lost",)  # the detector's states, and the daemon's lost device


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpeechStart(Message):
    """Speech began at ``sample_index`` (padded boundary); known at ``decided_sample``."""

    TYPE: ClassVar[str] = "speech_start"
    probability: float
    decided_sample: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpeechEnd(Message):
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


TYPES: dict[str, type[Message]] = {cls.TYPE: cls
                                   for cls in (SpeechStart, SpeechEnd, Status, Heartbeat, Probability)}
TOPICS = tuple(TOPIC_PREFIX + t for t in TYPES)


def parse(frames: list[bytes]) -> Message:
    """A typed message from ``[topic, json]`` frames (``[topic, json, pcm]`` for the ``audio.`` topics,
    ``vadstream.wire.audio``); :class:`ParseError` if it is not one."""
    if frames and bytes(frames[0]).startswith(AUDIO_TOPIC_PREFIX.encode()):
        return decode(frames, AUDIO_TYPES)
    return decode(frames, TYPES)


def schema() -> dict[str, Any]:
    """The JSON Schema every published payload validates against (``schemas/events.schema.json``)."""
    text = resources.files("vadstream.wire").joinpath("schemas/events.schema.json").read_text()
    return json.loads(text)
