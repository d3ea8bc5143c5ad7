"""``Stream``: one audio stream through a :class:`Vad` and a :class:`Detector`, on one timeline.

Every caller that turns audio into speech events (the daemon, ``vadstream file``, ``vadstream
monitor``, the evaluation's vadstream peer, the benchmarks) goes through this class, so they
all give the same events for the same audio::

    stream = Stream()                       # the shipped model, DetectorConfig() defaults
    for block in blocks:                    # int16 or float, mono, 16 kHz, any length
        out = stream.process(block)
        out.probs, out.hop_starts           # probabilities and the stream sample each hop starts at
        out.events                          # SpeechStart / SpeechEnd, stream sample indices
    out = stream.close()                    # end of input: the last hops, an open segment ends

The timeline: samples are counted from the start of the stream. ``process(samples,
start_sample)`` places a block on it: a short hole before the block (up to ``max_fill_samples``)
is filled with silence, audio already fed is trimmed, and a longer hole (or a block after
:meth:`resync`) restarts the Vad and the Detector at the block's start (an open segment ends
with reason ``device_lost``). Samples are cleaned on the way in (non-finite -> 0, clipped to
[-1, 1]) and probabilities on the way out (NaN -> 0, clipped to [0, 1]).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np

from vadstream.stages.detector import Detector, DetectorConfig, EndReason, Event, SpeechEnd, State
from vadstream.stages.samples import SAMPLE_RATE_HZ, to_float32
from vadstream.stages.vad import Vad

MAX_FILL_SAMPLES = SAMPLE_RATE_HZ  # holes up to 1 s are filled with silence; longer ones restart the stream

_min, _max = np.minimum.reduce, np.maximum.reduce  # without ndarray.min's wrapper: runs per block
_F32 = np.dtype(np.float32)
_NO_PROBS = np.zeros(0, dtype=np.float32)
_NO_PROBS.flags.writeable = False
_NO_HOPS = np.zeros(0, dtype=np.int64)
_NO_HOPS.flags.writeable = False


@dataclasses.dataclass(frozen=True)
class StreamOutput:
    """What one call to :class:`Stream` produced.

    Attributes:
        probs: float32 speech probabilities of the hops that became ready, in [0, 1].
        hop_starts: for each probability, the stream sample its hop starts at (int64).
        events: the speech events they caused, in order, with stream sample indices.
        replaced_samples: non-finite input samples replaced by 0 in this call.
    """

    probs: np.ndarray = dataclasses.field(default_factory=lambda: _NO_PROBS)
    hop_starts: np.ndarray = dataclasses.field(default_factory=lambda: _NO_HOPS)
    events: tuple[Event, ...] = ()
    replaced_samples: int = 0

    def __add__(self, other: "StreamOutput") -> "StreamOutput":
        return StreamOutput.join([self, other])

    @staticmethod
    def join(parts: list["StreamOutput"]) -> "StreamOutput":
        """One output holding ``parts`` in order."""
        parts = [p for p in parts if p.probs.size or p.events or p.replaced_samples]
        if len(parts) <= 1:
            return parts[0] if parts else _NOTHING
        return StreamOutput(np.concatenate([p.probs for p in parts]), np.concatenate([p.hop_starts for p in parts]),
                            tuple(e for p in parts for e in p.events), sum(p.replaced_samples for p in parts))


_NOTHING = StreamOutput()


class Stream:
    """A :class:`Vad` and a :class:`Detector` for one 16 kHz mono stream, with its timeline.

    Args:
        model: an ONNX model path (None: the shipped model); ignored when ``vad`` is given.
        config: detector settings (None: :class:`DetectorConfig` defaults).
        vad: an existing :class:`Vad` to use (it is reset).
        max_fill_samples: the longest hole before a block that is filled with silence; longer
            holes restart the stream at the block.
        on_audio: called as ``on_audio(start_sample, samples)`` with every piece of audio the Vad
            is given (cleaned samples and the silence filling holes), before it is scored.

    Not thread-safe; one per stream.
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, config: DetectorConfig | None = None, *,
                 vad: Vad | None = None, max_fill_samples: int = MAX_FILL_SAMPLES,
                 on_audio: Callable[[int, np.ndarray], None] | None = None):
        self.vad = vad if vad is not None else Vad(model)
        self.hop_samples = self.vad.hop_samples
        self.detector = Detector(self.hop_samples, config or DetectorConfig(), sample_rate_hz=SAMPLE_RATE_HZ)
        self.max_fill_samples = max_fill_samples
        self.on_audio = on_audio
        self.reset()

    # -- state --------------------------------------------------------------------------------------
    def reset(self, start_sample: int = 0) -> None:
        """Forget everything: the next sample fed is stream sample ``start_sample``."""
        self.vad.reset()
        self.detector.reset()
        self._base = self._fed = int(start_sample)  # Vad/Detector sample 0 is stream sample _base
        self._hops = 0  # hops scored since _base
        self._resync = False

    @property
    def config(self) -> DetectorConfig:
        return self.detector.config

    def set_config(self, config: DetectorConfig) -> None:
        """New detector settings, from the next hop on; the state is kept."""
        self.detector.set_config(config)

    @property
    def sample_index(self) -> int:
        """The stream sample the next block is expected to start at (samples fed so far)."""
        return self._fed

    @property
    def state(self) -> State:
        return self.detector.state

    @property
    def in_speech(self) -> bool:
        return self.detector.in_speech

    # -- audio in ---------------------------------------------------------------------------------
    def process(self, samples: np.ndarray, start_sample: int | None = None) -> StreamOutput:
        """Feed a block of int16 or float mono samples that starts at stream sample ``start_sample``
        (None: right after the previous one). Returns the probabilities and events it completed."""
        out = self.take(samples, start_sample)
        return self.scored(out, self.vad.score())

    def take(self, samples: np.ndarray, start_sample: int | None = None) -> StreamOutput:
        """The first half of :meth:`process`: the block onto the timeline and into the Vad
        (:meth:`Vad.take <vadstream.stages.vad.Vad.take>`), without the model. Returns what it
        decided already (a segment ended by a restart, replaced samples); :meth:`scored` with the
        probabilities of the hops that became due finishes the block. A caller that scores many
        streams in one model call (:class:`~vadstream.stages.multistream.MultiStream`) calls the
        two halves itself."""
        x = samples if type(samples) is np.ndarray and samples.dtype == _F32 and samples.ndim == 1 \
            else to_float32(samples)  # the common case without the conversion's checks: it runs per block
        out = _NOTHING
        gap = 0 if start_sample is None else int(start_sample) - self._fed
        if self._resync or gap > self.max_fill_samples:
            start = self._fed + gap
            if not self._resync:  # a jump while speaking: the segment cannot go on
                out = self._end_segment(EndReason.DEVICE_LOST)
            self.reset(start)
        elif gap > 0:  # a short hole: keep the timeline with silence
            self._feed(np.zeros(gap, dtype=np.float32))
        elif gap < 0:  # overlaps audio already fed: drop that part
            x = x[min(-gap, x.size):]
        if not x.size:
            return out
        replaced = 0
        if not _max(np.abs(x)) <= 1.0:  # NaN/inf or beyond full scale (NaN fails the test): the slow path
            finite = np.isfinite(x)
            replaced = int(x.size - np.count_nonzero(finite))
            x = np.clip(np.where(finite, x, np.float32(0.0)), -1.0, 1.0)
        self._feed(x)
        if replaced:
            out = dataclasses.replace(out, replaced_samples=out.replaced_samples + replaced)
        return out

    def _feed(self, x: np.ndarray) -> None:
        if self.on_audio is not None:
            self.on_audio(self._fed, x)
        self._fed += x.size
        self.vad.take(x)

    def scored(self, out: StreamOutput, probs: np.ndarray) -> StreamOutput:
        """``out`` of :meth:`take` followed by ``probs``, the probabilities of the hops that became
        due (through the Detector)."""
        return out + self._scored(probs) if probs.size else out

    def _scored(self, probs: np.ndarray) -> StreamOutput:
        if not probs.size:
            return _NOTHING
        if not (_min(probs) >= 0.0 and _max(probs) <= 1.0):  # NaN or out of range: a broken model
            probs = np.nan_to_num(probs, nan=0.0).clip(0.0, 1.0).astype(np.float32)
        first, hop = self._base + self._hops * self.hop_samples, self.hop_samples
        hop_starts = np.arange(first, first + probs.size * hop, hop, dtype=np.int64)
        self._hops += probs.size
        return StreamOutput(probs, hop_starts, self._rebased(self.detector.process(probs)))

    def _rebased(self, events: list[Event]) -> tuple[Event, ...]:
        b = self._base
        if not events or not b:
            return tuple(events)
        out: list[Event] = []
        for e in events:
            if isinstance(e, SpeechEnd):
                out.append(dataclasses.replace(e, sample_index=b + e.sample_index, decided_sample=b + e.decided_sample,
                                               start_sample=b + e.start_sample))
            else:
                out.append(dataclasses.replace(e, sample_index=b + e.sample_index, decided_sample=b + e.decided_sample))
        return tuple(out)

    def _end_segment(self, reason: EndReason, end_sample: int | None = None) -> StreamOutput:
        end = self._fed if end_sample is None else int(end_sample)
        return StreamOutput(events=self._rebased(self.detector.flush(reason, end_sample=end - self._base)))

    # -- interruptions and the end --------------------------------------------------------------------
    def resync(self, reason: EndReason = EndReason.DEVICE_LOST) -> StreamOutput:
        """The next block does not continue the audio fed so far (the device was lost, or came
        back): an open segment ends now, at the end of the last hop scored (the samples still
        waiting for the model's lookahead are not scored), and the next block restarts the Vad
        and the Detector at its own start sample."""
        self._resync = True
        return self._end_segment(reason)

    def stop(self, reason: EndReason = EndReason.SHUTDOWN) -> StreamOutput:
        """Stop without waiting for the model's lookahead: an open segment ends with ``reason`` at
        the end of the last hop scored; hops still waiting for lookahead are not scored."""
        return self._end_segment(reason)

    def close(self, end_sample: int | None = None) -> StreamOutput:
        """End of input: score every remaining hop that started inside the audio, end an open
        segment (reason ``end_of_input``) at ``end_sample`` (default: the last sample fed).
        ``sample_index`` stays at the end; audio fed after this starts a fresh Vad and Detector
        there (:meth:`reset` starts over at sample 0)."""
        # after resync() the audio still waiting for lookahead was cut off: it is not scored (it
        # would score the old audio again and could open a segment after the device_lost end)
        out = _NOTHING if self._resync else self._scored(self.vad.flush())
        out = out + self._end_segment(EndReason.END_OF_INPUT, end_sample)
        self.reset(self._fed)
        return out

    def run(self, samples: np.ndarray, chunk_samples: int | None = None) -> StreamOutput:
        """A whole signal from a fresh stream: ``process`` in chunks of ``chunk_samples`` (default:
        all at once), then ``close``. The same result in any chunking."""
        self.reset()
        x = np.asarray(samples)
        step = chunk_samples or max(x.shape[0], 1)
        parts = [self.process(x[i:i + step]) for i in range(0, x.shape[0], step)]
        parts.append(self.close())
        return StreamOutput.join(parts)
