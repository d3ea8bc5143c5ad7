"""The ONNX speech model and the contract stored in its metadata.

A vadstream model is an ONNX file whose metadata (``metadata_props``) holds a JSON document under
the key ``vadstream`` (:class:`ModelSpec`): the feature configuration it was trained with, how
many MFCC frames make one hop, the input window (context) and lookahead in frames, how many hops
one inference scores, and the per-coefficient normalisation. The graph takes one input of shape
``[batch, context_frames, numcep]`` (normalised MFCC, float32) and returns one output of shape
``[batch, outputs_per_inference]`` (speech probabilities).

A streaming model (spec version 2, model 4.0 on) lists its ``state`` tensors: the graph takes
``features`` of shape ``[1, frames, numcep]`` (any number of new frames, one per hop) plus one
input per state tensor and returns ``speech_prob`` ``[1, frames]`` plus the next value of each
state. The runtime starts every state at zeros (the reset rule, also in the metadata:
``state_reset``) at a stream's start and whenever :meth:`OnnxModel.reset_state` is called (Vad
reset: a new stream, a gap or device loss), and feeds each call's state outputs to the next call.
The window then lives in the state: each call costs the same whatever the receptive field.

Window geometry: an inference that scores hops ``g*K .. g*K+K-1`` (K = outputs_per_inference)
sees frames ``last-context_frames+1 .. last`` with ``last = (g+1)*K*frames_per_hop - 1 +
lookahead_frames``. Frames before the start of the stream are the zero vector in normalised
space; frames past its end (at flush) repeat the last real frame.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from vadstream.stages.features import FeatureConfig

METADATA_KEY = "vadstream"
SPEC_VERSION = 1  # window models
STREAM_SPEC_VERSION = 2  # models with state
STATE_RESET = "zeros at the start of a stream and after a gap, a resync or device loss (Vad.reset)"
INPUT_NAME = "features"
OUTPUT_NAME = "speech_prob"
# Package data: in the repository a symlink to models/vadstream.onnx, in a wheel the file itself.
DEFAULT_MODEL_PATH = Path(__file__).resolve().parents[1] / "models" / "vadstream.onnx"


class ModelError(ValueError):
    """The model file is missing, unreadable, or does not carry a valid vadstream contract."""


@dataclasses.dataclass(frozen=True)
class StateSpec:
    """One state tensor of a streaming model: its graph input, the output that gives its next
    value, and its fixed shape."""

    input: str
    output: str
    shape: tuple[int, ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StateSpec":
        return cls(input=str(data["input"]), output=str(data["output"]), shape=tuple(int(v) for v in data["shape"]))


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the runtime must know to feed a model; stored as JSON in the ONNX metadata."""

    features: FeatureConfig
    frames_per_hop: int
    context_frames: int
    lookahead_frames: int
    outputs_per_inference: int
    norm_mean: tuple[float, ...]
    norm_std: tuple[float, ...]
    name: str = "vadstream"
    version: str = "0"
    spec_version: int = SPEC_VERSION
    state: tuple[StateSpec, ...] = ()
    state_reset: str = ""

    @property
    def streaming(self) -> bool:
        """The model carries state between calls and takes only new frames."""
        return bool(self.state)

    def __post_init__(self) -> None:
        if self.state and not self.state_reset:
            object.__setattr__(self, "state_reset", STATE_RESET)
        numcep = self.features.numcep
        checks = [
            (self.frames_per_hop >= 1, "frames_per_hop must be >= 1"),
            (self.outputs_per_inference >= 1, "outputs_per_inference must be >= 1"),
            (self.lookahead_frames >= 0, "lookahead_frames must be >= 0"),
            (self.context_frames >= self.frames_per_hop * self.outputs_per_inference + self.lookahead_frames,
             "context_frames must cover the scored hops plus the lookahead"),
            (len(self.norm_mean) == numcep and len(self.norm_std) == numcep,
             f"norm_mean and norm_std must have numcep={numcep} values"),
            (all(s > 0 for s in self.norm_std), "norm_std values must be > 0"),
            (self.spec_version in (SPEC_VERSION, STREAM_SPEC_VERSION),
             f"spec_version {self.spec_version} is not {SPEC_VERSION} or {STREAM_SPEC_VERSION}"),
            (bool(self.state) == (self.spec_version == STREAM_SPEC_VERSION),
             f"spec_version {STREAM_SPEC_VERSION} models and only they carry state"),
            (not self.state or (self.frames_per_hop == 1 and self.lookahead_frames == 0),
             "a streaming model scores one frame per hop without lookahead"),
            (all(len(st.shape) >= 1 and all(d >= 0 for d in st.shape) for st in self.state),
             "state shapes must be lists of sizes"),
        ]
        for ok, message in checks:
            if not ok:
                raise ModelError(f"invalid model metadata: {message}")

    @property
    def hop_samples(self) -> int:
        return self.frames_per_hop * self.features.step_samples

    @property
    def lookahead_samples(self) -> int:
        """Samples after the end of a hop that must arrive before its probability is known."""
        step = self.features.step_samples
        frames_after_hop = (self.outputs_per_inference - 1) * self.frames_per_hop + self.lookahead_frames
        return max(0, (frames_after_hop - 1) * step + self.features.frame_samples)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["norm_mean"] = list(self.norm_mean)
        data["norm_std"] = list(self.norm_std)
        if not self.state:  # window models keep their version-1 metadata
            del data["state"], data["state_reset"]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        try:
            data: dict[str, Any] = json.loads(text)
            data["features"] = FeatureConfig.from_dict(data["features"])
            data["norm_mean"] = tuple(float(v) for v in data["norm_mean"])
            data["norm_std"] = tuple(float(v) for v in data["norm_std"])
            data["state"] = tuple(StateSpec.from_dict(v) for v in data.get("state", ()))
            names = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(data) - names)
            if unknown:
                raise ModelError(f"invalid model metadata: unknown key(s) {', '.join(unknown)}")
            return cls(**data)
        except ModelError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"invalid model metadata under '{METADATA_KEY}': {exc!r}") from exc


def session_options():
    """ONNX Runtime options for a live stream: one thread each, no spinning (idle CPU stays idle)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


def bound_run(session, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> Callable[[], None]:
    """A no-argument call that runs ``session`` on fixed numpy buffers through an IO binding.

    The inputs are read from, and the outputs written into, the given arrays on every call (fill
    them in place; never rebind a name): no input dict, no output allocation, the same kernels and
    numbers as ``session.run``. The live fast path of :class:`OnnxModel` and of the Silero peer."""
    binding = session.io_binding()
    for name, array in inputs.items():
        binding.bind_cpu_input(name, array)
    for name, array in outputs.items():
        binding.bind_output(name, "cpu", 0, array.dtype.type, list(array.shape), array.ctypes.data)
    run, raw = session._sess.run_with_iobinding, binding._iobinding
    return lambda: run(raw, None)


class OnnxModel:
    """A loaded model: validated spec plus an ONNX Runtime session (one per stream; not shared)."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        import onnxruntime as ort

        self.path = Path(path) if path is not None else DEFAULT_MODEL_PATH
        if not self.path.is_file():
            raise ModelError(f"model file not found: {self.path}")
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=session_options(),
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"cannot load ONNX model {self.path}: {exc}") from exc
        meta = self._session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ModelError(f"model {self.path} has no '{METADATA_KEY}' metadata: not a vadstream model "
                             "(export it with vadstream.training.export)")
        self.spec = ModelSpec.from_json(meta[METADATA_KEY])
        # The bound C++ run method skips Python-side argument checks already done in _check_io.
        self._run = self._session._sess.run
        self.batch_dynamic = False  # steps many streams per call (streaming models exported since 4.1)
        if self.spec.streaming:
            self._check_stream_io()
            self._init_state()
            return
        self._check_io()
        # Live scoring (one window per call) runs through an IO binding on fixed buffers: no input
        # dict, no output allocation. Same kernels as a batch-1 run(), so the same numbers.
        self._window = np.zeros((1, self.spec.context_frames, self.spec.features.numcep), dtype=np.float32)
        self._probs = np.zeros((1, self.spec.outputs_per_inference), dtype=np.float32)
        self._run_bound = bound_run(self._session, {INPUT_NAME: self._window}, {OUTPUT_NAME: self._probs})

    def _check_io(self) -> None:
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
            raise ModelError(f"model {self.path} must have one input named '{INPUT_NAME}', "
                             f"has {[i.name for i in inputs]}")
        if len(outputs) != 1 or outputs[0].name != OUTPUT_NAME:
            raise ModelError(f"model {self.path} must have one output named '{OUTPUT_NAME}', "
                             f"has {[o.name for o in outputs]}")
        self._require_float32([(inputs[0], "input"), (outputs[0], "output")])
        want_in = [self.spec.context_frames, self.spec.features.numcep]
        got_in = list(inputs[0].shape[1:])
        if len(inputs[0].shape) != 3 or got_in != want_in:
            raise ModelError(f"model {self.path} input shape {inputs[0].shape} does not match its metadata "
                             f"[batch, {want_in[0]}, {want_in[1]}] (context_frames, numcep)")
        got_out = list(outputs[0].shape[1:])
        if len(outputs[0].shape) != 2 or got_out != [self.spec.outputs_per_inference]:
            raise ModelError(f"model {self.path} output shape {outputs[0].shape} does not match its metadata "
                             f"[batch, {self.spec.outputs_per_inference}] (outputs_per_inference)")

    def _require_float32(self, ios) -> None:
        for io, what in ios:
            if io.type != "tensor(float)":  # float32 buffers are bound to it: anything else fails every call
                raise ModelError(f"model {self.path} {what} '{io.name}' is {io.type}, vadstream needs float32 "
                                 "(tensor(float)): export the model with a float32 " + what)

    # -- streaming models -------------------------------------------------------------------------
    def _check_stream_io(self) -> None:
        spec = self.spec
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
        want_in = [INPUT_NAME] + [st.input for st in spec.state]
        want_out = [OUTPUT_NAME] + [st.output for st in spec.state]
        if sorted(inputs) != sorted(want_in) or sorted(outputs) != sorted(want_out):
            raise ModelError(f"model {self.path} has inputs {sorted(inputs)} and outputs {sorted(outputs)}; its "
                             f"metadata promises inputs {want_in} and outputs {want_out}")
        self._require_float32([(io, "input") for io in inputs.values()] + [(io, "output") for io in outputs.values()])
        feats = inputs[INPUT_NAME].shape
        if len(feats) != 3 or feats[2] != spec.features.numcep:
            raise ModelError(f"model {self.path} input shape {feats} is not [batch, frames, {spec.features.numcep}]")
        # the first axis is the batch: 1 in a graph traced for one stream, symbolic in a batch-dynamic one
        self.batch_dynamic = not isinstance(feats[0], int)
        for st in spec.state:
            got = list(inputs[st.input].shape)
            if got[1:] != list(st.shape[1:]) or got[0] != (feats[0] if self.batch_dynamic else st.shape[0]):
                raise ModelError(f"model {self.path} state '{st.input}' has shape {got}, its metadata says "
                                 f"{list(st.shape)} (batch first)")

    def _init_state(self) -> None:
        spec = self.spec
        k = spec.outputs_per_inference
        # Two sets of state buffers; call i reads set i % 2 and writes the other (no copies).
        self._states = [[np.zeros(st.shape, dtype=np.float32) for st in spec.state] for _ in range(2)]
        self._cur = 0
        self._frames = np.zeros((1, k, spec.features.numcep), dtype=np.float32)
        self._probs = np.zeros((1, k), dtype=np.float32)
        self._bound = []
        for a in (0, 1):
            ins = {INPUT_NAME: self._frames, **{st.input: v for st, v in zip(spec.state, self._states[a])}}
            outs = {OUTPUT_NAME: self._probs, **{st.output: v for st, v in zip(spec.state, self._states[1 - a])}}
            self._bound.append(bound_run(self._session, ins, outs))
        self._state_outputs = [OUTPUT_NAME] + [st.output for st in spec.state]

    def reset_state(self) -> None:
        """Streaming models: back to the zero state of a stream's start (no-op for window models)."""
        if self.spec.streaming:
            for buffers in self._states:
                for v in buffers:
                    v.fill(0.0)
            self._cur = 0

    def stream(self, frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Streaming models: probabilities of ``frames`` (n, numcep) normalised MFCC frames that
        follow the ones fed before; the state moves on. One ONNX call for all n frames."""
        n = frames.shape[0]
        if n == self._frames.shape[1]:
            self._frames[0] = frames
            self._bound[self._cur]()
            self._cur ^= 1
            probs = self._probs[0]
        else:
            cur = self._states[self._cur]
            feeds = {INPUT_NAME: np.ascontiguousarray(frames[None], dtype=np.float32),
                     **{st.input: v for st, v in zip(self.spec.state, cur)}}
            res = self._run(self._state_outputs, feeds, None)
            for v, new in zip(cur, res[1:]):
                v[...] = new
            probs = res[0][0]
        if out is None:
            return probs.copy()
        out[:] = probs
        return out

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities (batch, outputs_per_inference) for normalised windows (batch, context, numcep)."""
        return self._run([OUTPUT_NAME], {INPUT_NAME: windows}, None)[0]

    def score_window(self, window: np.ndarray, out: np.ndarray) -> None:
        """Score one normalised window (context, numcep) into ``out`` (outputs_per_inference,).

        Equal to ``self(window[None])[0]`` bit for bit, with less per-call overhead (the live path)."""
        self._window[0] = window
        self._run_bound()
        out[:] = self._probs[0]


class BatchedModel:
    """One ONNX session of a batch-dynamic streaming model that steps many streams per call.

    Each stream holds a :class:`ModelSlot` (from :meth:`slot`): a row of every state tensor in
    shared arrays ``[capacity, ...]`` (the capacity doubles when full; a released slot is reused).
    :meth:`step` runs the graph once for a batch of slots, each with the same number of new
    frames: it gathers their states, runs, and puts the next states back. A stream in a batch gets
    bit for bit the numbers of a call for it alone (checked when the file was made batch-dynamic,
    :func:`vadstream.training.export.make_batch_dynamic`). State memory per stream:
    :attr:`state_bytes`."""

    def __init__(self, model: str | os.PathLike[str] | OnnxModel | None = None, capacity: int = 16):
        self.model = model if isinstance(model, OnnxModel) else OnnxModel(model)
        self.spec = self.model.spec
        if not (self.spec.streaming and self.model.batch_dynamic):
            kind = "a window model" if not self.spec.streaming else "a streaming model traced for one stream (batch 1)"
            raise ModelError(f"model {self.model.path} is {kind}: one call for many streams needs a batch-dynamic "
                             "streaming model (python -m vadstream.training.export --batch-dynamic IN OUT makes one "
                             "from a streaming file)")
        self._run = self.model._run
        self._outputs = [OUTPUT_NAME] + [st.output for st in self.spec.state]
        self._stores = [np.zeros((capacity, *st.shape[1:]), dtype=np.float32) for st in self.spec.state]
        self._free = list(range(capacity - 1, -1, -1))
        self.state_bytes = sum(int(np.prod(st.shape)) * 4 for st in self.spec.state)

    @property
    def capacity(self) -> int:
        return self._stores[0].shape[0]

    def slot(self) -> "ModelSlot":
        """A fresh stream's state (zeros)."""
        if not self._free:
            n = self.capacity
            self._stores = [np.concatenate([v, np.zeros_like(v)]) for v in self._stores]
            self._free = list(range(2 * n - 1, n - 1, -1))
        index = self._free.pop()
        for v in self._stores:
            v[index] = 0.0
        return ModelSlot(self, index)

    def release(self, slot: "ModelSlot") -> None:
        self._free.append(slot.index)

    def reset(self, index: int) -> None:
        for v in self._stores:
            v[index] = 0.0

    def step(self, slots: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """Probabilities ``[len(slots), n]`` of ``frames [len(slots), n, numcep]``, the n new
        normalised frames of each slot's stream, in one ONNX call; the slots' states move on."""
        feeds = {INPUT_NAME: frames, **{st.input: v[slots] for st, v in zip(self.spec.state, self._stores)}}
        res = self._run(self._outputs, feeds, None)
        for v, new in zip(self._stores, res[1:]):
            v[slots] = new
        return res[0]


class ModelSlot:
    """One stream's place in a :class:`BatchedModel`: what a :class:`~vadstream.stages.vad.Vad`
    needs of a model (``spec``, ``reset_state``, ``stream``), its calls a batch of one."""

    def __init__(self, owner: BatchedModel, index: int):
        self.owner = owner
        self.index = index
        self.spec = owner.spec
        self._slots = np.array([index])

    def reset_state(self) -> None:
        self.owner.reset(self.index)

    def stream(self, frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        probs = self.owner.step(self._slots, np.ascontiguousarray(frames[None], dtype=np.float32))[0]
        if out is None:
            return probs
        out[:] = probs
        return out


def write_spec(onnx_path: str | os.PathLike[str], spec: ModelSpec) -> None:
    """Store ``spec`` in an ONNX file's metadata (needs the ``onnx`` package, a training extra)."""
    import onnx

    model = onnx.load(str(onnx_path))
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    prop = model.metadata_props.add()
    prop.key = METADATA_KEY
    prop.value = spec.to_json()
    onnx.save(model, str(onnx_path))
