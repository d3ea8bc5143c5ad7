"""``Vad``: audio samples in, one speech probability per hop out; streaming equals offline."""

from __future__ import annotations

import os

import numpy as np

from vadstream.stages.features import StreamingMfcc
from vadstream.stages.model import ModelSlot, ModelSpec, OnnxModel
from vadstream.stages.samples import to_float

_EMPTY = np.zeros(0, dtype=np.float32)
_EMPTY.flags.writeable = False


class Vad:
    """Streaming voice activity probabilities for one 16 kHz mono stream.

    ``process(samples)`` accepts int16 or float32 samples of any length and returns the
    probabilities of the hops completed so far (float32, possibly empty). The k-th probability
    since the last :meth:`reset` belongs to the hop starting at sample ``k * hop_samples``; it is
    returned once ``lookahead_samples`` past that hop's end have arrived. :meth:`flush` returns
    the rest (every hop that started before the end of the audio) and resets. Each instance owns
    its own ONNX session and state: use one per stream.

    A streaming model (:attr:`ModelSpec.streaming`) is given only the frames of the new hops,
    exactly one group of ``outputs_per_inference`` hops per ONNX call (a block holding several
    groups makes several calls); its state starts from zeros at every :meth:`reset`. Every call
    has the same shape, so any chunking gives the same numbers bit for bit: ONNX Runtime's
    convolution kernels round differently for different numbers of frames (model 5.0: up to
    3e-7 between one call over 40 groups and 40 calls of one). A window model is given its whole
    window for every group of hops.

    ``process`` is :meth:`take` (samples in, MFCC when a model call is due) then :meth:`score` (the
    model on the hop groups that became due). A caller that steps many streams in one model call
    (:class:`~vadstream.stages.multistream.MultiStream`) takes :meth:`due_frames` instead of
    scoring: the same MFCC passes, the same frames, so the same numbers.
    """

    def __init__(self, model: str | os.PathLike[str] | OnnxModel | ModelSlot | None = None):
        self.model = model if isinstance(model, (OnnxModel, ModelSlot)) else OnnxModel(model)
        self.spec: ModelSpec = self.model.spec
        spec = self.spec
        self.sample_rate_hz = spec.features.sample_rate_hz
        self.hop_samples = spec.hop_samples
        self.lookahead_samples = spec.lookahead_samples
        self._mean = np.asarray(spec.norm_mean, dtype=np.float64)
        self._inv_std = 1.0 / np.asarray(spec.norm_std, dtype=np.float64)
        self._group_frames = spec.frames_per_hop * spec.outputs_per_inference
        self._context = spec.context_frames
        # Normalised frames, with `context` zero rows in front standing for "before the stream".
        # A streaming model needs only the frames not yet scored: a small store (grown for big blocks).
        self._capacity = self._context + (128 if spec.streaming else 4096)
        self._frames = np.zeros((self._capacity, spec.features.numcep), dtype=np.float32)
        self._mfcc = StreamingMfcc(spec.features)
        # Samples the next model call needs beyond group g's: the MFCC runs only when a call is
        # due (small chunks cost one MFCC pass per call, not one per chunk); exact either way.
        step = spec.features.step_samples
        self._first_due = (self._group_frames - 1 + spec.lookahead_frames) * step + spec.features.frame_samples
        self._due_step = self._group_frames * step
        self._streaming = spec.streaming
        self.reset()

    def reset(self) -> None:
        """Forget all audio: the next sample is sample 0 of a new stream (a streaming model's
        state back to zeros)."""
        self.model.reset_state()
        self._mfcc.reset()
        self._frames[: self._context] = 0.0
        self._base = 0  # frame-store row of stream frame (first_kept_frame)
        self._first_kept_frame = -self._context  # stream frame index held at row 0
        self._n_frames = 0  # stream frames stored so far
        self._groups_done = 0
        self._groups_ready = 0  # hop groups whose frames are all stored (scored or due)
        self._samples_seen = 0
        self._pending: list[np.ndarray] = []  # float64 chunks not yet given to the MFCC

    def _append(self, feats: np.ndarray, normalised: bool = False) -> None:
        n = feats.shape[0]
        if n == 0:
            return
        end_row = self._n_frames - self._first_kept_frame
        if end_row + n > self._capacity:
            # Keep only what future windows can still need: the last `context` frames (and frames
            # taken but not scored yet, which only a caller of take() without score() leaves).
            keep_from = min(self._n_frames - self._context, self._groups_done * self._group_frames)
            src = keep_from - self._first_kept_frame
            end_row = self._n_frames - keep_from
            self._frames[:end_row] = self._frames[src: src + end_row]
            self._first_kept_frame = keep_from
            if end_row + n > self._capacity:
                self._capacity = end_row + 2 * n
                grown = np.zeros((self._capacity, self._frames.shape[1]), dtype=np.float32)
                grown[:end_row] = self._frames[:end_row]
                self._frames = grown
        self._frames[end_row: end_row + n] = feats if normalised else (feats - self._mean) * self._inv_std
        self._n_frames += n
        self._groups_ready = self._ready_groups(self._n_frames)

    def _score_ready(self, available_frames: int) -> np.ndarray:
        """Run the model on every hop group whose last needed frame index is < available_frames."""
        ready = self._ready_groups(available_frames)
        n = ready - self._groups_done
        if n <= 0:
            return _EMPTY
        if self._streaming:
            # The new groups' frames only (the model's state holds what came before), one group per
            # call: every call has the same shape, so any chunking gives the same numbers
            # (tests/test_stream_model.py; see the class docstring).
            start = self._groups_done * self._group_frames - self._first_kept_frame
            self._groups_done = ready
            g = self._group_frames
            out = np.empty(n * g, dtype=np.float32)
            for i in range(n):
                self.model.stream(self._frames[start + i * g: start + (i + 1) * g], out[i * g: (i + 1) * g])
            return out
        first_end = (self._groups_done + 1) * self._group_frames + self.spec.lookahead_frames - self._first_kept_frame
        self._groups_done = ready
        # One window per call, as in live streaming: ONNX Runtime picks batch-size dependent
        # kernels whose float32 rounding differs (~1e-6), and offline must equal streaming.
        out = np.empty((n, self.spec.outputs_per_inference), dtype=np.float32)
        for i in range(n):
            end = first_end + i * self._group_frames
            self.model.score_window(self._frames[end - self._context: end], out[i])
        return out.reshape(-1)

    def _ready_groups(self, available_frames: int) -> int:
        # Group g needs frames up to (g+1)*group_frames - 1 + lookahead_frames.
        return (available_frames - self.spec.lookahead_frames) // self._group_frames

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Feed samples; return the probabilities of the hops that became ready."""
        return self.score() if self.take(samples) else _EMPTY

    def take(self, samples: np.ndarray) -> bool:
        """Feed samples without running the model; True when hop groups are due (:meth:`score`,
        :meth:`due_frames`)."""
        x = to_float(samples, np.float64)  # the MFCC's working type, in one conversion
        if x.size == 0:
            return self._groups_ready > self._groups_done
        self._samples_seen += x.size
        if self._samples_seen < self._first_due + self._groups_ready * self._due_step:
            # No model call due yet: keep the samples for the next MFCC pass. float64 input was
            # not converted (x may be the caller's buffer, which it may reuse): keep a copy.
            self._pending.append(x.copy() if getattr(samples, "dtype", None) == np.float64 else x)
            return self._groups_ready > self._groups_done
        self._pending.append(x)
        self._feed_pending()
        return self._groups_ready > self._groups_done

    def score(self) -> np.ndarray:
        """The probabilities of the hop groups taken and due, from the model (one call per group)."""
        return self._score_ready(self._n_frames)

    def due_frames(self) -> np.ndarray:
        """Streaming models: the normalised frames ``(n, numcep)`` of the hop groups taken and due,
        now counted as scored; their probabilities are the model's on them (a view: use it before
        the next :meth:`take`)."""
        n = self._groups_ready - self._groups_done
        start = self._groups_done * self._group_frames - self._first_kept_frame
        self._groups_done = self._groups_ready
        return self._frames[start: start + n * self._group_frames]

    def _feed_pending(self) -> None:
        pending = self._pending
        if pending:
            x = pending[0] if len(pending) == 1 else np.concatenate(pending)
            pending.clear()
            self._append(self._mfcc.process(x))

    def flush(self) -> np.ndarray:
        """End of stream: score every remaining hop that started inside the audio, then reset."""
        n_hops = -(-self._samples_seen // self.hop_samples)
        hops_before = self._groups_done * self.spec.outputs_per_inference
        self._feed_pending()
        self._append(self._mfcc.flush())
        out = [self._score_ready(self._n_frames)]
        groups_needed = -(-n_hops // self.spec.outputs_per_inference)
        if self._groups_done < groups_needed:
            # Missing lookahead past the end: the last frame repeated (the audio goes on as it
            # ended); a stream too short for any frame gets zeros, as before the start.
            last_needed = groups_needed * self._group_frames - 1 + self.spec.lookahead_frames
            row = self._n_frames - self._first_kept_frame - 1
            self._append(np.repeat(self._frames[row: row + 1], last_needed + 1 - self._n_frames, axis=0),
                         normalised=True)
            out.append(self._score_ready(self._n_frames))
        probs = np.concatenate(out)[: max(0, n_hops - hops_before)]
        self.reset()
        return probs

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """Probabilities of a whole signal (offline): ``process`` then ``flush`` on a fresh stream."""
        self.reset()
        return np.concatenate([self.process(samples), self.flush()])
