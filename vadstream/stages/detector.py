"""Turn per-hop speech probabilities into speech start/end events.

A transport-free state machine in the style of pipecat's analyser, with sample indices as the
unit of truth (Silero's ``VADIterator``). States:

- ``QUIET``: no speech. A hop with ``p >= onset_threshold`` moves to STARTING.
- ``STARTING``: candidate speech. Hops with ``p >= offset_threshold`` count as speech; once
  ``min_speech_ms`` of it has accumulated, ``speech_start`` is emitted and the state is SPEAKING.
  A hop with ``p < offset_threshold`` before that drops the candidate (back to QUIET).
- ``SPEAKING``: a hop with ``p < offset_threshold`` moves to STOPPING. A segment reaching
  ``max_speech_s`` is split: ``speech_end`` (reason ``max_speech``) then ``speech_start`` at the
  same sample.
- ``STOPPING``: a hop with ``p >= offset_threshold`` goes back to SPEAKING (pause bridged); once
  ``min_silence_ms`` of hops below it have passed, ``speech_end`` (reason ``silence``) is emitted.

Boundaries: a segment starts at the first hop of the candidate minus ``speech_pad_ms`` and ends
at the end of its last speech hop plus ``speech_pad_ms``, never overlapping the previous
segment and never before sample 0. ``decided_sample`` is the sample at which the detector had
enough evidence (the end of the deciding hop), so ``decided_sample - sample_index`` is the
algorithmic delay of an event, before model lookahead and transport.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import ClassVar, Iterable, Iterator

import numpy as np


class State(enum.Enum):
    QUIET = "quiet"
    STARTING = "starting"
    SPEAKING = "speaking"
    STOPPING = "stopping"


class EndReason(str, enum.Enum):
    SILENCE = "silence"
    MAX_SPEECH = "max_speech"
    END_OF_INPUT = "end_of_input"
    SHUTDOWN = "shutdown"
    DEVICE_LOST = "device_lost"


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """Smoothing parameters.

    Defaults were chosen for model 3.0 from the measured grid in bench/RESULTS.md (dev tune
    half): onset 0.9 / offset 0.65 as at the lowest cost (onset 0.8 missed fewer segments but
    raised the daemon's false starts above 2.0's, 300 vs 264 per hour), min speech one hop, and
    a 200 ms hangover, which keeps the median end under 250 ms while splitting under 9 % of
    sentences (100 ms: 16 %). See "Detector defaults" there and bench/notes.md.

    Attributes:
        onset_threshold: probability at or above which quiet turns into candidate speech (0..1).
        offset_threshold: probability below which speech counts as a pause (0..onset_threshold).
        min_speech_ms: speech needed before speech_start is emitted (drops shorter blips).
        min_silence_ms: pause needed before speech_end is emitted (the hangover).
        max_speech_s: longest segment before a forced split (0 disables splitting).
        speech_pad_ms: padding added before the start and after the end of each segment.
    """

    onset_threshold: float = 0.9
    offset_threshold: float = 0.65
    min_speech_ms: float = 20.0
    min_silence_ms: float = 200.0
    max_speech_s: float = 30.0
    speech_pad_ms: float = 30.0

    # name -> (low, high) inclusive bounds, checked by validate()
    BOUNDS = {
        "onset_threshold": (0.0, 1.0),
        "offset_threshold": (0.0, 1.0),
        "min_speech_ms": (0.0, 10_000.0),
        "min_silence_ms": (0.0, 60_000.0),
        "max_speech_s": (0.0, 86_400.0),
        "speech_pad_ms": (0.0, 2_000.0),
    }

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name, (low, high) in self.BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError(f"detector.{name} = {value!r} is out of range: allowed {low} to {high}")
        if self.offset_threshold > self.onset_threshold:
            raise ValueError(f"detector.offset_threshold = {self.offset_threshold} must not exceed "
                             f"detector.onset_threshold = {self.onset_threshold}")

    def replace(self, **changes: float) -> "DetectorConfig":
        unknown = sorted(set(changes) - set(self.BOUNDS))
        if unknown:
            raise ValueError(f"unknown detector key(s): {', '.join(unknown)}; allowed: {', '.join(self.BOUNDS)}")
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class SpeechStart:
    """Speech began at ``sample_index`` (padded); the detector knew at ``decided_sample``."""

    TYPE: ClassVar[str] = "speech_start"  # the event's name everywhere (wire topic vad.speech_start)
    sample_index: int
    decided_sample: int
    probability: float


@dataclasses.dataclass(frozen=True)
class SpeechEnd:
    """The segment that began at ``start_sample`` ended at ``sample_index``, because of ``reason``."""

    TYPE: ClassVar[str] = "speech_end"
    sample_index: int
    decided_sample: int
    probability: float
    start_sample: int
    reason: EndReason

    @property
    def duration_samples(self) -> int:
        return self.sample_index - self.start_sample


Event = SpeechStart | SpeechEnd


class Detector:
    """Hysteresis + hangover state machine over per-hop probabilities, for one stream."""

    def __init__(self, hop_samples: int, config: DetectorConfig | None = None, sample_rate_hz: int = 16000):
        if hop_samples <= 0:
            raise ValueError(f"hop_samples must be > 0, got {hop_samples}")
        self.hop_samples = hop_samples
        self.sample_rate_hz = sample_rate_hz
        self.config = config or DetectorConfig()
        self.reset()

    def _samples(self, ms: float) -> int:
        return int(round(ms * self.sample_rate_hz / 1000.0))

    def reset(self) -> None:
        """Back to QUIET at sample 0."""
        self.state = State.QUIET
        self.hop_index = 0
        self._candidate_start = 0  # first sample of the first hop of the current/candidate segment
        self._speech_samples = 0  # speech accumulated while STARTING
        self._last_speech_end = 0  # end of the last speech hop of the open segment
        self._segment_start = 0  # emitted start sample of the open segment
        self._prev_end = 0  # emitted end sample of the previous segment
        self._last_prob = 0.0

    @property
    def in_speech(self) -> bool:
        return self.state in (State.SPEAKING, State.STOPPING)

    def set_config(self, config: DetectorConfig) -> None:
        """Change parameters; takes effect from the next hop, state is kept."""
        self.config = config

    def process(self, probs: Iterable[float] | np.ndarray) -> list[Event]:
        """Feed the next hops' probabilities; return the events they caused, in order."""
        if isinstance(probs, np.ndarray) and probs.size == 0:  # a chunk that completed no hop
            return []
        values = np.asarray(probs, dtype=np.float64).reshape(-1).tolist()  # Python floats: cheaper per hop
        if not values or self._skip_steady(values):
            return []
        events: list[Event] = []
        for p in values:
            events.extend(self._step(p))
        return events

    def _skip_steady(self, p_all: list[float]) -> bool:
        """Fast path for the common case, with exactly the effect of stepping hop by hop: all
        hops quiet (below onset) while QUIET, or all speech (at or above offset) while SPEAKING
        with no max_speech split due. Returns False (nothing done) otherwise."""
        cfg = self.config
        n = len(p_all)
        if self.state is State.QUIET:
            if max(p_all) >= cfg.onset_threshold:
                return False
        elif self.state is State.SPEAKING:
            end = (self.hop_index + n) * self.hop_samples
            if min(p_all) < cfg.offset_threshold or self._split_due(end):
                return False
            self._last_speech_end = end
        else:
            return False
        self.hop_index += n
        self._last_prob = p_all[-1]
        return True

    def _step(self, p: float) -> Iterator[Event]:
        cfg = self.config
        hop_start = self.hop_index * self.hop_samples
        hop_end = hop_start + self.hop_samples
        self.hop_index += 1
        self._last_prob = p
        speechy = p >= cfg.offset_threshold

        if self.state is State.QUIET:
            if p >= cfg.onset_threshold:
                self.state = State.STARTING
                self._candidate_start = hop_start
                self._speech_samples = 0
            else:
                return
        if self.state is State.STARTING:
            if not speechy:
                self.state = State.QUIET
                return
            self._speech_samples += self.hop_samples
            self._last_speech_end = hop_end
            if self._speech_samples >= max(self._samples(cfg.min_speech_ms), 1):
                self.state = State.SPEAKING
                start = max(self._candidate_start - self._samples(cfg.speech_pad_ms), self._prev_end, 0)
                self._segment_start = start
                yield SpeechStart(start, hop_end, p)
            return
        if speechy:
            self.state = State.SPEAKING
            self._last_speech_end = hop_end
            if self._split_due(hop_end):
                yield self._end(hop_end, p, EndReason.MAX_SPEECH)
                self.state = State.SPEAKING
                self._segment_start = hop_end
                yield SpeechStart(hop_end, hop_end, p)
            return
        self.state = State.STOPPING
        if hop_end - self._last_speech_end >= max(self._samples(cfg.min_silence_ms), 1):
            yield self._end(hop_end, p, EndReason.SILENCE)

    def _split_due(self, end_sample: int) -> bool:
        """The open segment would reach max_speech_s at end_sample (0 disables splitting)."""
        max_samples = self._samples(self.config.max_speech_s * 1000.0)
        return bool(max_samples) and end_sample - self._segment_start >= max_samples

    def _end(self, decided: int, p: float, reason: EndReason) -> SpeechEnd:
        if reason is EndReason.MAX_SPEECH:
            end = decided  # split point: the next segment starts here
        else:
            # Padding never claims audio the detector has not seen yet.
            end = min(self._last_speech_end + self._samples(self.config.speech_pad_ms), decided)
        end = max(end, self._segment_start)
        self._prev_end = end
        self.state = State.QUIET
        return SpeechEnd(end, decided, p, self._segment_start, reason)

    def flush(self, reason: EndReason = EndReason.END_OF_INPUT, end_sample: int | None = None) -> list[Event]:
        """Close an open segment (speech_end with ``reason``) and return to QUIET; keeps the hop count.

        ``end_sample``: where the input really ended (the last hop usually runs past it); the
        closing event never lies beyond it."""
        events: list[Event] = []
        if self.in_speech:
            decided = self.hop_index * self.hop_samples
            if end_sample is not None:
                decided = min(decided, max(int(end_sample), self._segment_start))
            events.append(self._end(decided, self._last_prob, reason))
        self.state = State.QUIET
        return events
