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
    (:class:`~vadstream.training.net.StreamExport`): ``features [1, frames, numcep]`` and the
    state inputs in, ``speech_prob [1, frames]`` and the next states out. The metadata is
    ``spec`` with the network's state tensors (:func:`~vadstream.training.net.state_specs`)."""
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
    parser.add_argument("checkpoint", help="best.pt of a training run")
    parser.add_argument("out", help="ONNX file to write")
    parser.add_argument("--spec-from", default=None, help="take the model spec from this ONNX file")
    parser.add_argument("--version", default=None, help="model version to store (default: the spec's)")
    parser.add_argument("--hops-per-call", type=int, default=None,
                        help="streaming models: hops the runtime scores per call (default: the spec's)")
    args = parser.parse_args(argv)
    changes = {"version": args.version} if args.version else {}
    if args.hops_per_call:
        changes.update(outputs_per_inference=args.hops_per_call, context_frames=args.hops_per_call)
    spec = OnnxModel(args.spec_from).spec if args.spec_from else None
    path = export_checkpoint(args.checkpoint, args.out, spec, **changes)
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
