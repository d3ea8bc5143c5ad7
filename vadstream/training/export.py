"""Export a trained :class:`~vadstream.training.net.VadNet` to ONNX with the runtime contract,
time it, and try int8 quantisation."""

from __future__ import annotations

import os
import timeit
import warnings
from pathlib import Path

import numpy as np

from vadstream.stages.model import INPUT_NAME, OUTPUT_NAME, STREAM_SPEC_VERSION, ModelSpec, OnnxModel, write_spec

OPSET = 17


def export_onnx(net, spec: ModelSpec, path: str | os.PathLike[str]) -> Path:
    """Write ``net`` (eval mode, sigmoid output) as ONNX with a dynamic batch axis and ``spec`` metadata.

    A :class:`~vadstream.training.net.VadNet` is exported through
    :class:`~vadstream.training.net.ExportNet` (BatchNorm and window mean folded into convolutions)."""
    import torch

    from vadstream.training.net import ExportNet, VadNet

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    if isinstance(net, VadNet) and not (net.cfg.global_stats or net.cfg.local_frames):
        net = ExportNet(net).eval()  # same function, fewer/faster ONNX operators
    dummy = torch.zeros(1, spec.context_frames, spec.features.numcep)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notices
        torch.onnx.export(
            net, (dummy,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )
    _strip_doc_strings(path)
    write_spec(path, spec)
    return path


def export_streaming(net, spec: ModelSpec, path: str | os.PathLike[str]) -> Path:
    """Write a trained :class:`~vadstream.training.net.StreamNet` as its streaming graph
    (:class:`~vadstream.training.net.StreamExport`) for any number of streams per call:
    ``features [batch, frames, numcep]`` and the state inputs ``[batch, ...]`` in,
    ``speech_prob [batch, frames]`` and the next states out (:func:`trace_streaming`, then
    :func:`make_batch_dynamic`, which checks that a batch gives each stream the numbers of a call
    for it alone). The metadata is ``spec`` with the network's state tensors
    (:func:`~vadstream.training.net.state_specs`, one stream's shapes)."""
    path = trace_streaming(net, spec, path)
    return make_batch_dynamic(path, path)


def trace_streaming(net, spec: ModelSpec, path: str | os.PathLike[str]) -> Path:
    """The streaming graph traced for one stream (batch 1, as model 4.0 first shipped):
    ``features [1, frames, numcep]``, states ``[1, ...]``; :func:`export_streaming` makes it
    batch-dynamic."""
    import dataclasses

    import torch

    from vadstream.training.net import StreamExport, state_specs

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the state tensors are the graph's: their names and shapes come from the network
    spec = dataclasses.replace(spec, spec_version=STREAM_SPEC_VERSION, state=state_specs(net.cfg))
    graph = StreamExport(net.eval()).eval()
    dummy = (torch.zeros(1, 3, spec.features.numcep), *[torch.zeros(st.shape) for st in spec.state])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph, dummy, str(path), input_names=[INPUT_NAME, *[st.input for st in spec.state]],
            output_names=[OUTPUT_NAME, *[st.output for st in spec.state]],
            dynamic_axes={INPUT_NAME: {1: "frames"}, OUTPUT_NAME: {1: "frames"}},
            opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )
    _strip_doc_strings(path, spec)
    write_spec(path, spec)
    return path


def _strip_doc_strings(path: Path, spec: ModelSpec | None = None) -> None:
    """Drop the exporter's per-node doc strings (source paths): smaller, reproducible file. With a
    streaming ``spec``, also declare each state output with its fixed shape (the exporter leaves
    the sliced axis symbolic)."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        node.doc_string = ""
    model.producer_name = "vadstream"
    shapes = {st.output: st.shape for st in spec.state} if spec is not None else {}
    for out in model.graph.output:
        for dim, size in zip(out.type.tensor_type.shape.dim, shapes.get(out.name, ())):
            dim.Clear()
            dim.dim_value = int(size)
    if shapes:
        onnx.checker.check_model(model)
    onnx.save(model, str(path))


BATCH_AXIS = "batch"


def make_batch_dynamic(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Rewrite a streaming model's graph (a :class:`~vadstream.training.net.StreamExport` traced
    with a batch of 1) so that it steps any number of streams in one call, and write it to ``dst``.

    Every input and output gets a symbolic first axis ``batch``: ``features [batch, frames,
    numcep]``, each state ``[batch, ...]`` (its metadata shape is one stream's, batch 1),
    ``speech_prob [batch, frames]``. What the trace hard-coded for one stream is rewritten:
    the GRU's hidden state, which ONNX lays out ``[directions, batch, hidden]``, gets a Transpose
    in and out (the state stays batch-first); the classifier's flatten of the time-major
    ``[frames, batch, width]`` gets a Transpose to batch-major first; the output's ``Reshape(1,
    -1)`` takes the shape ``[batch, frames]`` of ``features`` instead. A graph with any other
    hard-coded batch (another Reshape) is refused. A batch-dynamic file is returned as it is.
    The result is checked: a batch of streams gives the numbers of one call per stream, bit for
    bit (:func:`check_batch_invariance`); batch-1 numbers are the original graph's."""
    import onnx
    from onnx import helper, numpy_helper

    from vadstream.stages.model import ModelError

    src, dst = Path(src), Path(dst)
    model = onnx.load(str(src))
    spec = _spec_of(model, src)
    graph = model.graph
    if _dim(graph.input, INPUT_NAME, 0).dim_param == BATCH_AXIS:
        if src != dst:
            onnx.save(model, str(dst))
        return dst
    state_out = {st.input: st.output for st in spec.state}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
              if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    consts.update({t.name: numpy_helper.to_array(t) for t in graph.initializer})
    nodes = list(graph.node)
    new: list = [helper.make_node("Shape", [INPUT_NAME], ["batch_frames"], start=0, end=2)]
    after: dict[str, list] = {}  # producer output -> nodes to insert right after it
    transposed_states: set[str] = set()
    for node in nodes:
        if node.op_type == "GRU" and len(node.input) > 5 and node.input[5] in state_out:
            name = node.input[5]
            new.append(helper.make_node("Transpose", [name], [f"{name}_dbh"], perm=[1, 0, 2]))
            node.input[5] = f"{name}_dbh"
            transposed_states.add(state_out[name])
        if node.op_type != "Reshape":
            continue
        shape = consts.get(node.input[1])
        if node.output[0] == OUTPUT_NAME and shape is not None and list(shape) == [1, -1]:
            node.input[1] = "batch_frames"
        elif shape is not None and len(shape) == 2 and shape[0] == -1:  # the classifier's flatten
            flat_in = node.input[0]
            after.setdefault(flat_in, []).append(
                helper.make_node("Transpose", [flat_in], [f"{flat_in}_btw"], perm=[1, 0, 2]))
            node.input[0] = f"{flat_in}_btw"
        else:
            raise ModelError(f"{src}: Reshape {node.name or node.output[0]} to {shape} may hard-code the batch; "
                             "make_batch_dynamic knows only the StreamExport graph")
    for node in nodes:
        for i, out in enumerate(node.output):
            if out in transposed_states:
                node.output[i] = f"{out}_dbh"
                after.setdefault(node.output[i], []).append(
                    helper.make_node("Transpose", [node.output[i]], [out], perm=[1, 0, 2]))
    for node in nodes:
        new.append(node)
        for out in node.output:
            new.extend(after.pop(out, []))
    del graph.node[:]
    graph.node.extend(new)
    del graph.value_info[:]  # the traced shapes hold the old batch
    for io in list(graph.input) + list(graph.output):
        dims = io.type.tensor_type.shape.dim
        dims[0].Clear()
        dims[0].dim_param = BATCH_AXIS
    frames = _dim(graph.output, OUTPUT_NAME, 1)
    frames.Clear()
    frames.dim_param = _dim(graph.input, INPUT_NAME, 1).dim_param
    onnx.checker.check_model(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    check_batch_invariance(dst, src)
    return dst


def _spec_of(model, path: Path) -> ModelSpec:
    from vadstream.stages.model import METADATA_KEY, ModelError

    meta = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in meta:
        raise ModelError(f"{path} has no '{METADATA_KEY}' metadata: not a vadstream model")
    spec = ModelSpec.from_json(meta[METADATA_KEY])
    if not spec.streaming:
        raise ModelError(f"{path} is a window model; only streaming models (spec version "
                         f"{STREAM_SPEC_VERSION}) step many streams in one call")
    return spec


def _dim(values, name: str, axis: int):
    return next(v for v in values if v.name == name).type.tensor_type.shape.dim[axis]


def check_batch_invariance(path: str | os.PathLike[str], reference: str | os.PathLike[str] | None = None,
                           batches: tuple[int, ...] = (2, 3, 7, 64), frames: tuple[int, ...] = (1, 2, 5),
                           seed: int = 0) -> None:
    """Raise :class:`~vadstream.stages.model.ModelError` unless the batch-dynamic model at ``path``
    gives every stream of a batch exactly (bit for bit) what one call per stream gives, on random
    features and states; the one-stream calls run on ``reference`` (the file it was rewritten from,
    default: ``path`` itself at batch 1)."""
    import onnxruntime as ort

    from vadstream.stages.model import ModelError, session_options

    def session(p):
        return ort.InferenceSession(str(p), sess_options=session_options(), providers=["CPUExecutionProvider"])

    batched = session(path)
    single = session(reference or path)
    spec = ModelSpec.from_json(batched.get_modelmeta().custom_metadata_map["vadstream"])
    rng = np.random.default_rng(seed)
    for b in batches:
        for n in frames:
            feeds = {INPUT_NAME: rng.standard_normal((b, n, spec.features.numcep)).astype(np.float32) * 2,
                     **{st.input: rng.standard_normal((b, *st.shape[1:])).astype(np.float32) for st in spec.state}}
            together = batched.run(None, feeds)
            for i in range(b):
                alone = single.run(None, {k: v[i:i + 1] for k, v in feeds.items()})
                for name, x, y in zip([OUTPUT_NAME] + [st.output for st in spec.state], alone, together):
                    if not np.array_equal(x, y[i:i + 1]):
                        raise ModelError(f"{path}: stream {i} of a batch of {b} ({n} frames) differs in {name} from "
                                         f"one call for it alone (max {np.abs(x - y[i:i + 1]).max():.3g})")


def time_inference_us(path: str | os.PathLike[str], calls: int = 20000, repeats: int = 3, seed: int = 0) -> float:
    """Best-of-``repeats`` mean µs per single-window call through :class:`OnnxModel` (one thread)."""
    model = OnnxModel(path)
    spec = model.spec
    if spec.streaming:  # one call as the live stream makes it: the frames of outputs_per_inference hops
        frames = np.random.default_rng(seed).standard_normal(
            (spec.outputs_per_inference, spec.features.numcep)).astype(np.float32)
        out = np.zeros(spec.outputs_per_inference, dtype=np.float32)

        def call() -> None:
            model.stream(frames, out)
    else:
        x = np.random.default_rng(seed).standard_normal(
            (1, spec.context_frames, spec.features.numcep)).astype(np.float32)

        def call() -> None:
            model(x)
    call()
    times = timeit.repeat(call, number=calls, repeat=repeats)
    return 1e6 * min(times) / calls


def quantise_dynamic(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """int8 dynamic quantisation (weights int8, activations quantised per call); keeps the metadata."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from vadstream.stages.model import ModelSpec as _Spec

    spec = OnnxModel(src).spec
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    write_spec(dst, spec if isinstance(spec, _Spec) else spec)
    return Path(dst)


def quantise_static(src: str | os.PathLike[str], dst: str | os.PathLike[str], calibration: np.ndarray) -> Path:
    """int8 static quantisation (QDQ) calibrated on ``calibration`` windows [n, context, numcep]."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    spec = OnnxModel(src).spec

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration[i:i + 1].astype(np.float32) for i in range(len(calibration)))

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {INPUT_NAME: x}

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    write_spec(dst, spec)
    return Path(dst)


def export_checkpoint(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str],
                      spec: ModelSpec | None = None, **changes) -> Path:
    """Export a training checkpoint (``runs/<name>/best.pt``) again, e.g. after an exporter change.
    The spec comes from the checkpoint (saved since 4.0) unless given; ``changes`` replace its
    fields (``version``, ``outputs_per_inference``...)."""
    import dataclasses

    import torch

    from vadstream.training.net import NetConfig, StreamNet, StreamNetConfig, VadNet

    ckpt = torch.load(str(checkpoint), map_location="cpu", weights_only=False)
    if spec is None:
        if "spec" not in ckpt:
            raise ValueError(f"{checkpoint} holds no model spec: pass --spec-from an ONNX file of the same run")
        spec = ModelSpec.from_json(ckpt["spec"])
    spec = dataclasses.replace(spec, **changes)
    if ckpt.get("arch") == "stream":
        net = StreamNet(StreamNetConfig.from_dict(ckpt["net_config"]))
        net.load_state_dict(ckpt["state_dict"])
        return export_streaming(net.eval(), spec, out)
    net = VadNet(NetConfig.from_dict(ckpt["net_config"]))
    net.load_state_dict(ckpt["state_dict"])
    return export_onnx(net.eval(), spec, out)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m vadstream.training.export",
                                     description="export a training checkpoint to a vadstream ONNX model")
    parser.add_argument("checkpoint", help="best.pt of a training run (with --batch-dynamic: a streaming ONNX model)")
    parser.add_argument("out", help="ONNX file to write")
    parser.add_argument("--batch-dynamic", action="store_true",
                        help="rewrite the streaming ONNX model CHECKPOINT (traced for one stream) to step any "
                             "number of streams per call, checked bit for bit against it; no checkpoint needed")
    parser.add_argument("--spec-from", default=None, help="take the model spec from this ONNX file")
    parser.add_argument("--version", default=None, help="model version to store (default: the spec's)")
    parser.add_argument("--hops-per-call", type=int, default=None,
                        help="streaming models: hops the runtime scores per call (default: the spec's)")
    args = parser.parse_args(argv)
    if args.batch_dynamic:
        path = make_batch_dynamic(args.checkpoint, args.out)
        print(f"wrote {path} ({path.stat().st_size} bytes): batch-dynamic, each stream of a batch checked equal "
              "to a call for it alone")
        return 0
    changes = {"version": args.version} if args.version else {}
    if args.hops_per_call:
        changes.update(outputs_per_inference=args.hops_per_call, context_frames=args.hops_per_call)
    spec = OnnxModel(args.spec_from).spec if args.spec_from else None
    path = export_checkpoint(args.checkpoint, args.out, spec, **changes)
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
