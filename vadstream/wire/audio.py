"""Speech audio on the wire: ``audio.utterance`` and ``audio.speech``, three frames each.

A message is ``[topic, json header, pcm]``: the header is a JSON object with the common fields of
every vadstream message (``message.py``) plus its type's fields; ``pcm`` is raw 16 kHz mono signed
16-bit little-endian samples, the stream the model was fed (after resampling, with short capture
holes filled with zeros), ``num_samples`` of them starting at stream sample ``sample_index``.

- :class:`Utterance` (``audio.utterance``): one whole segment after its ``speech_end``, from
  ``start_sample - pre_roll`` to ``end_sample + post_roll`` (less where the daemon did not hold
  that audio: see ``docs/events.md``).
- :class:`SpeechAudio` (``audio.speech``): the same audio as it is captured: a first chunk on
  ``speech_start`` with the pre-roll (and the audio fed up to then), one chunk per captured block
  while the segment lasts, and an empty chunk with ``final`` true, ``end_sample`` and ``reason`` at
  ``speech_end``. Chunks never repeat audio: a chunk starts where the previous one ended or later
  (``sample_index`` shows the gap).

The topics are not under ``vad.``, so the usual ``vad.`` / ``vad.speech_`` subscriptions never
receive audio, and the daemon does no audio work unless someone subscribes to ``audio.``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar, Mapping

import numpy as np

from vadstream.stages.samples import to_float32
from vadstream.wire.message import SAMPLE_RATE_HZ, SCHEMA_VERSION, Message, ParseError, decode

AUDIO_TOPIC_PREFIX = "audio."
PCM_FORMAT = "s16le"


def _empty() -> np.ndarray:
    return np.zeros(0, dtype="<i2")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AudioMessage(Message):
    """Common header plus ``samples`` (int16, 16 kHz mono) starting at stream sample ``sample_index``."""

    TOPIC_PREFIX: ClassVar[str] = AUDIO_TOPIC_PREFIX
    FRAMES: ClassVar[str] = "topic, json, pcm"

    samples: np.ndarray = dataclasses.field(default_factory=_empty, repr=False, compare=False)
    sample_rate_hz: int = SAMPLE_RATE_HZ

    @property
    def num_samples(self) -> int:
        return int(self.samples.size)

    @property
    def end_of_audio(self) -> int:
        """Stream index one past the last sample carried."""
        return self.sample_index + self.num_samples

    def float32(self) -> np.ndarray:
        """The samples as float32 in [-1, 1) (``int16 / 32768``, as the model saw them)."""
        return to_float32(self.samples)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "type": self.TYPE}
        for field in dataclasses.fields(self):
            if field.name != "samples":
                data[field.name] = getattr(self, field.name)
        data["time_s"] = round(self.time_s, 6)
        data["num_samples"] = self.num_samples
        data["format"] = PCM_FORMAT
        data.update(self._extra())
        return data

    def to_message(self) -> list[bytes]:
        """``[topic, json, pcm]`` frames for ``send_multipart``."""
        pcm = np.ascontiguousarray(self.samples, dtype="<i2").tobytes()
        return [self.topic.encode(), json.dumps(self.to_dict(), separators=(",", ":")).encode(), pcm]

    @classmethod
    def from_frames(cls, frames: list[bytes], data: Mapping[str, Any]) -> "AudioMessage":
        """The message from its JSON header ``data`` and its PCM frame (format and length checked)."""
        if data.get("format", PCM_FORMAT) != PCM_FORMAT or data.get("sample_rate_hz") != SAMPLE_RATE_HZ:
            raise ParseError(f"unsupported audio: format {data.get('format')!r} at {data.get('sample_rate_hz')!r} Hz "
                             f"(this client reads {PCM_FORMAT} at {SAMPLE_RATE_HZ} Hz)")
        pcm = bytes(frames[2])
        if len(pcm) != 2 * data.get("num_samples", -1):
            raise ParseError(f"{cls.TYPE} message: {len(pcm)} PCM bytes for num_samples = {data.get('num_samples')!r}")
        return cls.from_dict(data, samples=np.frombuffer(pcm, dtype="<i2"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Utterance(AudioMessage):
    """The segment ``start_sample .. end_sample`` with its pre-roll and post-roll, sent after ``speech_end``.

    ``probability`` is the speech_start's (the deciding hop's), ``reason`` the speech_end's. The
    audio runs from ``sample_index`` for ``num_samples``; ``start_sample - sample_index`` is the
    pre-roll actually included.
    """

    TYPE: ClassVar[str] = "utterance"
    start_sample: int
    end_sample: int
    probability: float
    reason: str

    @property
    def duration_s(self) -> float:
        """Length of the segment (without pre- and post-roll), seconds."""
        return (self.end_sample - self.start_sample) / SAMPLE_RATE_HZ

    def segment(self) -> np.ndarray:
        """The samples of ``start_sample .. end_sample`` only (what the detector called speech)."""
        a = max(0, self.start_sample - self.sample_index)
        b = max(a, self.end_sample - self.sample_index)
        return self.samples[a:b]

    def _extra(self) -> dict[str, Any]:
        return {"duration_s": round(self.duration_s, 6)}


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpeechAudio(AudioMessage):
    """A chunk of the audio of the segment that started at ``segment_start`` (streamed while it lasts).

    The last chunk of a segment has ``final`` true and carries the segment's ``end_sample`` and
    ``reason``; on the others they are null.
    """

    TYPE: ClassVar[str] = "speech"
    segment_start: int
    final: bool = False
    end_sample: int | None = None
    reason: str | None = None


AUDIO_TYPES: dict[str, type[AudioMessage]] = {cls.TYPE: cls for cls in (Utterance, SpeechAudio)}
AUDIO_TOPICS = tuple(AUDIO_TOPIC_PREFIX + t for t in AUDIO_TYPES)
UTTERANCE_TOPIC = AUDIO_TOPIC_PREFIX + Utterance.TYPE
SPEECH_TOPIC = AUDIO_TOPIC_PREFIX + SpeechAudio.TYPE


def parse_audio(frames: list[bytes]) -> AudioMessage:
    """A typed audio message from ``[topic, json, pcm]`` frames; :class:`ParseError` if it is not one."""
    return decode(frames, AUDIO_TYPES)  # type: ignore[return-value]
