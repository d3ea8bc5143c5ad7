"""Speech audio for the ``audio.`` topics, cut from the audio the model was fed, at the detector's events.

:class:`AudioTap` has no sockets: the daemon hands it the audio it feeds the model
(:meth:`AudioTap.audio`, 16 kHz float32 at its stream sample index) and the detector's events
(:meth:`AudioTap.start`, :meth:`AudioTap.end`), and publishes the messages they return. It does
work only while :meth:`AudioTap.set_wanted` says someone subscribes: without an audio subscriber
``audio()`` is not called at all and ``start()`` / ``end()`` only note the open segment.

- ``audio.speech``: on ``start`` a chunk from ``start_sample - pre_roll`` (never before audio
  already sent on the topic) to the newest audio fed; on each ``audio`` while the segment lasts, that
  block; on ``end`` an empty chunk with ``final``, ``end_sample`` and ``reason``.
- ``audio.utterance``: on ``end`` the segment waits until ``end_sample + post_roll`` has been fed
  (at the defaults it already has: the end is decided ``min_silence_ms`` after the last speech
  hop), then goes out as one message. When no more audio of the stream will come (end of input,
  shutdown, device lost, a restart of the stream timeline) it goes out with what is held.
- Bounded memory: the history holds :func:`history_seconds` of audio, enough for the longest
  segment ``detector.max_speech_s`` allows (at most ``MAX_UTTERANCE_S``) with its pre- and
  post-roll and the end decision's delay. An utterance longer than that (``max_speech_s`` 0 or
  above ``MAX_UTTERANCE_S``) loses its beginning: its ``sample_index`` says where it starts.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from vadstream.audio.history import SampleHistory
from vadstream.stages.samples import to_int16
from vadstream.wire.audio import AudioMessage, SpeechAudio, Utterance

MAX_UTTERANCE_S = 300.0  # longest utterance held when segments are not split (9.6 MB of int16)
SLACK_S = 2.0  # model lookahead, a hop, one capture block (up to 1 s) and padding past the end decision


def history_seconds(pre_roll_s: float, post_roll_s: float, max_speech_s: float, min_silence_s: float) -> float:
    """Audio the tap must hold so that an utterance of the longest segment is complete when sent."""
    longest = max_speech_s if 0 < max_speech_s <= MAX_UTTERANCE_S else MAX_UTTERANCE_S
    return pre_roll_s + longest + max(post_roll_s, min_silence_s) + SLACK_S


class AudioTap:
    """Cuts ``audio.speech`` chunks and ``audio.utterance`` messages from one stream.

    Args:
        pre_roll_samples: audio sent before each segment's ``start_sample``.
        post_roll_samples: audio an utterance carries after its ``end_sample``.
        capacity_samples: audio history held while someone subscribes (see :func:`history_seconds`).
        wall_ns: stream sample index -> unix ns, for the messages' ``wall_time_ns``.
    """

    def __init__(self, pre_roll_samples: int, post_roll_samples: int, capacity_samples: int,
                 wall_ns: Callable[[int], int]):
        self.pre_roll_samples = int(pre_roll_samples)
        self.post_roll_samples = int(post_roll_samples)
        self.capacity_samples = int(capacity_samples)
        self.wall_ns = wall_ns
        self.history: SampleHistory | None = None  # allocated while someone subscribes
        self.utterances = False  # someone subscribes to audio.utterance
        self.stream = False  # someone subscribes to audio.speech
        self._segment: tuple[int, float] | None = None  # the open segment: (start_sample, probability)
        self._streaming = False  # audio.speech chunks are going out for the open segment
        self._sent_to = 0  # audio.speech has sent audio up to this stream index
        self._pending: list[tuple[int, int, float, str]] = []  # ended segments waiting for their post-roll

    @property
    def active(self) -> bool:
        """Whether the daemon must hand over the audio it feeds the model."""
        return self.utterances or self.stream

    def configure(self, pre_roll_samples: int, post_roll_samples: int, capacity_samples: int) -> None:
        self.pre_roll_samples = int(pre_roll_samples)
        self.post_roll_samples = int(post_roll_samples)
        self.capacity_samples = int(capacity_samples)
        if self.history is not None:
            self.history.resize(self.capacity_samples)

    def set_wanted(self, utterances: bool, stream: bool) -> None:
        """Who subscribes now. Without subscribers the history is freed and nothing is cut."""
        if stream and not self.stream and self._segment is not None:
            self._streaming = True  # joined mid-segment: stream from the next audio on
        if not stream:
            self._streaming = False
        if not utterances:
            self._pending.clear()
        self.utterances, self.stream = bool(utterances), bool(stream)
        if not self.active:
            self.history = None

    # -- audio ---------------------------------------------------------------------------------
    def audio(self, start_sample: int, x: np.ndarray) -> list[AudioMessage]:
        """Take the float32 audio fed to the model at ``start_sample``; the messages it completes."""
        out: list[AudioMessage] = []
        h = self.history
        if h is None:
            h = self.history = SampleHistory(self.capacity_samples)
        elif start_sample != h.end and len(h):  # the stream timeline restarted: nothing more of the old one
            out += self.flush()
        h.append(start_sample, to_int16(x))
        if self._streaming and self._segment is not None:
            seg = self._segment[0]
            out.append(self._chunk(max(self._sent_to, h.start, seg - self.pre_roll_samples), h.end, seg))
        if self._pending:
            out += self._ready(h.end)
        return out

    # -- detector events -----------------------------------------------------------------------
    def start(self, start_sample: int, probability: float) -> list[AudioMessage]:
        """A segment started at ``start_sample``: the first ``audio.speech`` chunk, with the pre-roll."""
        self._segment = (int(start_sample), float(probability))
        if not self.stream or self.history is None:
            return []
        self._streaming = True
        a = max(start_sample - self.pre_roll_samples, self._sent_to, self.history.start)
        return [self._chunk(a, self.history.end, start_sample)]

    def end(self, start_sample: int, end_sample: int, reason: str, *, last: bool = False) -> list[AudioMessage]:
        """The segment ``start_sample .. end_sample`` ended for ``reason``; ``last``: no more audio will come."""
        out: list[AudioMessage] = []
        probability = 0.0
        if self._segment is not None and self._segment[0] == start_sample:
            probability = self._segment[1]
        if self._streaming:
            at = max(self._sent_to, self.history.end if self.history is not None else 0)
            out.append(self._message(SpeechAudio, at, np.zeros(0, dtype="<i2"), segment_start=int(start_sample),
                                     final=True, end_sample=int(end_sample), reason=str(reason)))
            self._streaming = False
        self._segment = None
        if self.utterances and self.history is not None:
            self._pending.append((int(start_sample), int(end_sample), probability, str(reason)))
            out += self.flush() if last else self._ready(self.history.end)
        return out

    def flush(self) -> list[AudioMessage]:
        """Every waiting utterance, with the audio held (no more audio of this stream will come)."""
        return self._ready(None)

    # -- helpers -------------------------------------------------------------------------------
    def _ready(self, fed_to: int | None) -> list[AudioMessage]:
        out: list[AudioMessage] = []
        keep = []
        for start, end, probability, reason in self._pending:
            if fed_to is not None and end + self.post_roll_samples > fed_to:
                keep.append((start, end, probability, reason))
                continue
            if self.history is None:
                continue
            first, samples = self.history.get(start - self.pre_roll_samples, end + self.post_roll_samples)
            out.append(self._message(Utterance, first, samples, start_sample=start, end_sample=end,
                                     probability=probability, reason=reason))
        self._pending = keep
        return out

    def _chunk(self, a: int, b: int, segment_start: int) -> SpeechAudio:
        first, samples = self.history.get(a, b)  # type: ignore[union-attr]
        self._sent_to = max(self._sent_to, first + samples.size)
        return self._message(SpeechAudio, first, samples, segment_start=int(segment_start))

    def _message(self, cls, first: int, samples: np.ndarray, **fields) -> AudioMessage:
        return cls(sample_index=int(first), wall_time_ns=self.wall_ns(int(first)), samples=samples, **fields)
