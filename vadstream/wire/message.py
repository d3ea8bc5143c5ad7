"""The common part of every vadstream message: the header, ``ParseError``, and the decoding of
``[topic, json, ...]`` frames that :mod:`vadstream.wire.events` and :mod:`vadstream.wire.audio`
share."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar, Mapping

from vadstream.stages.samples import SAMPLE_RATE_HZ

SCHEMA_VERSION = 1
TOPIC_PREFIX = "vad."


class ParseError(ValueError):
    """A received message is not a valid vadstream message (one clear line)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Message:
    """Common header; ``seq``, ``topic_seq``, ``stream_id`` and ``source`` are stamped by the publisher."""

    TYPE: ClassVar[str] = ""
    TOPIC_PREFIX: ClassVar[str] = TOPIC_PREFIX
    FRAMES: ClassVar[str] = "topic, json"  # what a message of this class is made of

    sample_index: int
    wall_time_ns: int
    seq: int = 0
    topic_seq: int = 0
    stream_id: str = ""
    source: str = ""

    @property
    def topic(self) -> str:
        return self.TOPIC_PREFIX + self.TYPE

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
    def from_dict(cls, data: Mapping[str, Any], **fields: Any) -> "Message":
        """The message from its JSON object; ``fields`` are given from elsewhere (an audio frame)."""
        if data.get("type") != cls.TYPE:
            raise ParseError(f"expected type {cls.TYPE!r}, got {data.get('type')!r}")
        names = {f.name for f in dataclasses.fields(cls)} - fields.keys()
        try:
            return cls(**{k: v for k, v in data.items() if k in names}, **fields)
        except TypeError as exc:
            raise ParseError(f"{cls.TYPE} message: {exc}") from None

    @classmethod
    def from_frames(cls, frames: list[bytes], data: Mapping[str, Any]) -> "Message":
        """The message from its decoded JSON ``data`` (and its further frames)."""
        return cls.from_dict(data)

    @classmethod
    def from_message(cls, frames: list[bytes]) -> "Message":
        """A message of this class from its frames; :class:`ParseError` if it is not one."""
        message = decode(frames, {cls.TYPE: cls}, what="a " + cls.TYPE)
        return message


def decode(frames: list[bytes], types: Mapping[str, type[Message]], what: str = "") -> Message:
    """A typed message of one of ``types`` (type name -> class, all with the same frame layout)
    from ``frames``; :class:`ParseError` (one line) if it is not one."""
    layout = next(iter(types.values()))
    n = layout.FRAMES.count(",") + 1
    if len(frames) != n:
        raise ParseError(f"expected {n} frames [{layout.FRAMES}], got {len(frames)}")
    try:
        topic = bytes(frames[0]).decode()
        data = json.loads(bytes(frames[1]))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ParseError(f"undecodable message: {exc}") from None
    if not isinstance(data, dict):
        raise ParseError("message payload is not a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ParseError(f"unsupported schema_version {version!r} (this client reads {SCHEMA_VERSION})")
    cls = types.get(data.get("type"))  # type: ignore[arg-type]
    if cls is None:
        if what:
            raise ParseError(f"expected {what} message, got {data.get('type')!r}")
        raise ParseError(f"unknown message type {data.get('type')!r}")
    if topic != cls.TOPIC_PREFIX + cls.TYPE:
        raise ParseError(f"topic {topic!r} does not match type {cls.TYPE!r}")
    return cls.from_frames(frames, data)
