"""``MultiStream``: many independent audio streams, their model calls batched into one per step.

A conferencing or telephony backend, or a Wyoming server with many satellites, has many streams at
once. Each stream here is a full :class:`~vadstream.stages.stream.Stream` (its own MFCC state,
model state, Detector and timeline); what they share is one ONNX session of the model, and each
step runs it once for all the streams that have hops due, their states stacked on the batch axis
(:class:`~vadstream.stages.model.BatchedModel`)::

    streams = MultiStream()                        # the shipped model, DetectorConfig() defaults
    streams.add("alice"); streams.add("bob")       # any hashable ids, added and removed at any time
    outs = streams.process({"alice": block_a, "bob": block_b})   # 16 kHz mono, any lengths
    outs["alice"].probs, outs["alice"].events     # a StreamOutput per stream fed
    last = streams.remove("bob")                   # its last hops and an open segment's end

A stream's probabilities and events are bit for bit those of a lone ``Stream`` given the same
blocks, whatever the other streams do (the batch-dynamic graph gives a stream in a batch the
numbers of a call for it alone; the Vad's MFCC passes and frames are its own). Memory per stream
is fixed: the model state (:attr:`BatchedModel.state_bytes`, 1.4 KB for 5.0) plus the Stream's
buffers (tens of KB, bench/RESULTS.md); the shared session is loaded once.

A model that cannot step many streams per call (a window model, or a streaming file traced for one
stream, as 4.0 first shipped) still works: each stream then gets its own session and its own call
(:attr:`MultiStream.batched` is False), the same API and numbers, without the savings.
"""

from __future__ import annotations

import os
from typing import Hashable, Iterable, Mapping, Union

import numpy as np

from vadstream.stages.detector import DetectorConfig
from vadstream.stages.model import BatchedModel, OnnxModel
from vadstream.stages.stream import MAX_FILL_SAMPLES, Stream, StreamOutput
from vadstream.stages.vad import Vad

_NO_PROBS = np.zeros(0, dtype=np.float32)
_NO_PROBS.flags.writeable = False

# (stream_id, samples) or (stream_id, samples, start_sample)
Block = Union[tuple[Hashable, np.ndarray], tuple[Hashable, np.ndarray, int]]


class MultiStream:
    """Many :class:`Stream` s on one model session; one ONNX call per step for all of them.

    Args:
        model: an ONNX model path (None: the shipped model).
        config: the detector settings of streams added without their own.
        max_fill_samples: as :class:`Stream`'s.

    Not thread-safe: one caller steps it (the Wyoming service steps it from its event loop).
    """

    def __init__(self, model: str | os.PathLike[str] | None = None, config: DetectorConfig | None = None, *,
                 max_fill_samples: int = MAX_FILL_SAMPLES):
        loaded = OnnxModel(model)
        self.spec = loaded.spec
        self.batched = loaded.spec.streaming and loaded.batch_dynamic
        self._model: BatchedModel | None = BatchedModel(loaded) if self.batched else None
        self._path = loaded.path
        self.config = config or DetectorConfig()
        self.max_fill_samples = max_fill_samples
        self._streams: dict[Hashable, Stream] = {}

    # -- streams ----------------------------------------------------------------------------------
    def add(self, stream_id: Hashable, config: DetectorConfig | None = None) -> Stream:
        """A new stream at sample 0 (its detector settings: ``config`` or the engine's)."""
        if stream_id in self._streams:
            raise KeyError(f"stream {stream_id!r} is already there")
        vad = Vad(self._model.slot()) if self._model is not None else Vad(self._path)
        stream = Stream(config=config or self.config, vad=vad, max_fill_samples=self.max_fill_samples)
        self._streams[stream_id] = stream
        return stream

    def remove(self, stream_id: Hashable) -> StreamOutput:
        """End a stream as the end of its input (:meth:`Stream.close`: its last hops, an open
        segment's end) and free its place."""
        stream = self._streams.pop(stream_id)
        out = stream.close()
        if self._model is not None:
            self._model.release(stream.vad.model)  # type: ignore[arg-type]
        return out

    def stream(self, stream_id: Hashable) -> Stream:
        """The stream itself: for ``reset``, ``resync``, ``stop``, ``close``, ``set_config``,
        ``sample_index`` and the rest of :class:`Stream` (its ``process`` scores it alone)."""
        return self._streams[stream_id]

    def __contains__(self, stream_id: Hashable) -> bool:
        return stream_id in self._streams

    def __len__(self) -> int:
        return len(self._streams)

    @property
    def ids(self) -> list[Hashable]:
        return list(self._streams)

    # -- audio --------------------------------------------------------------------------------------
    def process(self, blocks: Mapping[Hashable, np.ndarray] | Iterable[Block]) -> dict[Hashable, StreamOutput]:
        """Feed blocks to their streams: a mapping ``{stream_id: samples}``, or ``(stream_id,
        samples)`` / ``(stream_id, samples, start_sample)`` tuples (``start_sample`` as in
        :meth:`Stream.process`). Returns a :class:`StreamOutput` per stream fed. One model call
        for all the streams with a hop group due (one more per further group of a long block); a stream given
        several blocks gets them in order, one step each."""
        items = [(k, v) for k, v in blocks.items()] if isinstance(blocks, Mapping) else list(blocks)
        rounds: list[list[Block]] = []
        seen: dict[Hashable, int] = {}
        for item in items:
            r = seen.get(item[0], 0)
            seen[item[0]] = r + 1
            if r == len(rounds):
                rounds.append([])
            rounds[r].append(item)
        outs: dict[Hashable, StreamOutput] = {}
        for blocks_of_round in rounds:
            for stream_id, out in self._step(blocks_of_round):
                outs[stream_id] = outs[stream_id] + out if stream_id in outs else out
        return outs

    def _step(self, blocks: list[Block]) -> list[tuple[Hashable, StreamOutput]]:
        """One block per stream: every block taken, one model call, every stream scored."""
        try:
            streams = [self._streams[b[0]] for b in blocks]
        except KeyError as exc:
            raise KeyError(f"no stream {exc.args[0]!r} (add it first)") from None
        taken = [s.take(*b[1:]) for s, b in zip(streams, blocks)]
        if self._model is None:
            probs = [s.vad.score() for s in streams]
        else:
            probs = self._score(streams)
        return [(b[0], s.scored(out, p)) for b, s, out, p in zip(blocks, streams, taken, probs)]

    def _score(self, streams: list[Stream]) -> list[np.ndarray]:
        """One call per hop group in turn, as a lone Vad makes them: call r holds the r-th due
        group of every stream that has one (every call the same number of frames per stream)."""
        frames = [s.vad.due_frames() for s in streams]
        g = self.spec.frames_per_hop * self.spec.outputs_per_inference
        groups = [f.shape[0] // g for f in frames]
        probs = [np.empty(n * g, dtype=np.float32) if n else _NO_PROBS for n in groups]
        for r in range(max(groups, default=0)):
            idx = [i for i, n in enumerate(groups) if n > r]
            slots = np.fromiter((streams[i].vad.model.index for i in idx), dtype=np.intp, count=len(idx))  # type: ignore[union-attr]
            batch = self._model.step(slots, np.stack([frames[i][r * g:(r + 1) * g] for i in idx]))  # type: ignore[union-attr]
            for row, i in enumerate(idx):
                probs[i][r * g:(r + 1) * g] = batch[row]
        return probs
