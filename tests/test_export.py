"""ONNX export: same numbers as PyTorch, runtime contract, training geometry == runtime geometry,
and the shipped model's behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from vadstream.stages.features import FeatureConfig, mfcc
from vadstream.stages.model import ModelSpec, OnnxModel
from vadstream.stages.vad import Vad

pytestmark = pytest.mark.training  # make test-fast skips them

SR = 16000


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(130 * (1 + 0.1 * np.sin(2 * np.pi * 1.5 * t))) / SR
    x = sum(np.sin(h * phase) / h for h in range(1, 12)) * np.abs(np.sin(2 * np.pi * 2 * t))
    return (0.2 * x + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module", params=[0.01, 0.02], ids=["step10ms", "step20ms"])
def exported(tmp_path_factory, request):
    """A small randomly initialised net with non-trivial BatchNorm statistics, exported, for both
    frame steps the trainer supports (two frames per 20 ms hop, or one)."""
    torch = pytest.importorskip("torch")
    from vadstream.training.export import export_onnx
    from vadstream.training.net import NetConfig, VadNet

    torch.manual_seed(0)
    cfg = NetConfig(context_frames=40, channels=(8, 16, 16), hidden=16)
    net = VadNet(cfg)
    net.train()
    with torch.no_grad():
        for _ in range(5):
            net(torch.randn(64, cfg.context_frames, cfg.numcep) * 2 + 0.5)
    net.eval()
    features = FeatureConfig(winstep_s=request.param)
    feats = mfcc(speechlike(3.0), features)
    # std floored at a realistic size (trained models: 10-19): a tiny std from one synthetic signal
    # would blow normalised features up to ~1e3 and test float32 rounding instead of the export
    spec = ModelSpec(features=features, frames_per_hop=round(0.02 / request.param), context_frames=cfg.context_frames,
                     lookahead_frames=1,
                     outputs_per_inference=2, norm_mean=tuple(feats.mean(0)),
                     norm_std=tuple(np.maximum(feats.std(0), 5.0)),
                     name="test", version="t")
    path = tmp_path_factory.mktemp("export") / "net.onnx"
    export_onnx(net, spec, path)
    return net, spec, path


def test_onnx_matches_torch_on_random_and_real_windows(exported):
    import torch

    net, spec, path = exported
    model = OnnxModel(path)
    rng = np.random.default_rng(1)
    random = rng.standard_normal((32, spec.context_frames, 13)).astype(np.float32) * 3
    feats = mfcc(speechlike(2.0, seed=2), spec.features)
    norm = ((feats - np.array(spec.norm_mean)) / np.array(spec.norm_std)).astype(np.float32)
    real = np.stack([norm[i:i + spec.context_frames] for i in range(0, norm.shape[0] - spec.context_frames, 7)])
    for x in (random, real, random[:1]):
        with torch.no_grad():
            want = net(torch.from_numpy(x)).numpy()
        got = model(x)
        assert got.shape == (x.shape[0], 2)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert np.ptp(model(real)) > 1e-3  # not a constant function


def test_metadata_roundtrip(exported):
    _, spec, path = exported
    assert OnnxModel(path).spec == spec


def test_training_windows_equal_runtime_windows(exported):
    """The training code cuts windows exactly as Vad feeds them (same frames, same padding)."""
    from vadstream.training.train import Windows, predict

    net, spec, path = exported
    audio = speechlike(1.37, seed=3)
    feats = mfcc(audio, spec.features).astype(np.float32)
    n_hops = int(np.ceil(audio.size / 320))
    w = Windows(feats[None], np.zeros((1, n_hops), np.float32), np.array(spec.norm_mean), np.array(spec.norm_std),
                spec.context_frames, spec.lookahead_frames, spec.frames_per_hop)
    train_probs = predict(net, w)
    runtime = Vad(path)(audio)
    assert len(train_probs) == 2 * int(np.ceil(n_hops / 2)) and len(runtime) == n_hops
    # every hop, the flushed ones at the end (last frame repeated past the stream end) included
    np.testing.assert_allclose(runtime, train_probs[:n_hops], atol=1e-5)


# ----------------------------------------------------------------------------- shipped model

def test_shipped_model_contract(shipped_model):
    model = OnnxModel(shipped_model)
    spec = model.spec
    assert spec.outputs_per_inference == 2
    assert spec.hop_samples == 320  # 20 ms hops (one 20 ms frame or two 10 ms frames each)
    assert Vad(model).lookahead_samples <= 800  # <= 50 ms
    assert shipped_model.stat().st_size <= 1_000_000
    assert spec.features.numcep == len(spec.norm_mean)
    from vadstream.stages.features import mel_filterbank

    assert (mel_filterbank(spec.features).sum(axis=1) > 0).all(), "a mel filter has no FFT bins"


def test_shipped_model_streaming_equals_offline(shipped_model):
    audio = np.concatenate([np.zeros(4000, np.float32), speechlike(2.5, seed=4), np.zeros(3000, np.float32)])
    vad = Vad(shipped_model)
    offline = vad(audio)
    rng = np.random.default_rng(5)
    pieces, pos = [], 0
    while pos < audio.size:
        n = int(rng.integers(1, 1500))
        pieces.append(vad.process(audio[pos:pos + n]))
        pos += n
    pieces.append(vad.flush())
    np.testing.assert_allclose(np.concatenate(pieces), offline, atol=1e-6)
    assert offline.size == int(np.ceil(audio.size / 320))


def test_shipped_model_digital_silence_is_not_speech(shipped_model):
    vad = Vad(shipped_model)
    assert vad(np.zeros(3 * SR, np.float32)).max() < 0.1
    dither = (np.random.default_rng(6).standard_normal(3 * SR) * 3e-5).astype(np.float32)  # ~-90 dBFS
    assert vad(dither).max() < 0.2
    assert vad(np.zeros(3 * SR, np.int16)).max() < 0.1


@pytest.mark.corpus
def test_shipped_model_separates_speech_from_silence_on_corpus(shipped_model, shared_data):
    from vadstream.evaluation.metrics import roc_auc
    from vadstream.training.data import build_eval_set

    items = build_eval_set(shared_data, "dev", 10.0, seed=0)[:6]
    vad = Vad(shipped_model)
    probs, labels = [], []
    for item in items:
        p = vad(item.audio)
        centres = np.minimum(np.arange(p.size) * 320 + 160, item.audio.size - 1)
        probs.append(p)
        labels.append(item.speech[centres])
    auc = roc_auc(np.concatenate(labels), np.concatenate(probs))
    assert auc > 0.85


# -- the streaming network (4.0): streaming ONNX graph == non-streaming training graph --------------

@pytest.fixture(scope="module", params=[(32, 32), (16, 16, 16)], ids=["crnn", "tcn"])
def streaming_export(tmp_path_factory, request):
    """A random StreamNet with non-trivial BatchNorm statistics, exported as its streaming graph:
    a conv + GRU net, and a dilated TCN without GRU (2.5 s receptive field)."""
    torch = pytest.importorskip("torch")
    from vadstream.training.export import export_streaming
    from vadstream.training.net import StreamNet, StreamNetConfig, state_specs

    torch.manual_seed(1)
    if len(request.param) == 2:
        cfg = StreamNetConfig(channels=request.param, kernels=(5, 3), dilations=(1, 1), gru=24)
    else:
        cfg = StreamNetConfig(channels=request.param, kernels=(3, 3, 3), dilations=(1, 8, 32), gru=0, hidden=16)
    net = StreamNet(cfg)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(4, 200, cfg.numcep) * 2 + 0.5)
    net.eval()
    spec = ModelSpec(features=FeatureConfig(winstep_s=0.02), frames_per_hop=1, context_frames=2, lookahead_frames=0,
                     outputs_per_inference=2, norm_mean=(0.0,) * 13, norm_std=(1.0,) * 13, spec_version=2,
                     state=state_specs(cfg))
    path = export_streaming(net, spec, tmp_path_factory.mktemp("stream") / "m.onnx")
    return net, path


def test_streaming_graph_equals_the_training_graph_over_a_whole_file(streaming_export):
    """Frames fed in pieces through the ONNX state equal the non-streaming graph (zero left
    padding) on the whole signal, to 1e-5; the receptive field is longer than any piece."""
    torch = pytest.importorskip("torch")
    net, path = streaming_export
    model = OnnxModel(path)
    x = np.random.default_rng(2).standard_normal((1500, 13)).astype(np.float32) * 1.5
    with torch.no_grad():
        want = net(torch.from_numpy(x)[None]).numpy()[0]
    for pieces in ([1500], [2] * 750, [2, 8, 100, 390, 1000]):
        model.reset_state()
        bounds = np.cumsum([0] + pieces)
        got = np.concatenate([model.stream(x[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert np.ptp(want) > 1e-2


def test_streaming_vad_equals_the_training_graph_on_audio(streaming_export):
    """Through Vad (MFCC, normalisation, call cadence, flush) in 20 ms blocks: the training graph's
    numbers on the offline MFCC of the whole signal."""
    torch = pytest.importorskip("torch")
    net, path = streaming_export
    vad = Vad(path)
    x = speechlike(4.1, seed=3)
    feats = mfcc(x.astype(np.float64), vad.spec.features).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(feats)[None]).numpy()[0]
    got = np.concatenate([vad.process(x[i:i + 320]) for i in range(0, x.size, 320)] + [vad.flush()])
    n = -(-x.size // 320)
    assert got.shape == (n,)
    np.testing.assert_allclose(got[: feats.shape[0]], want[:n], atol=1e-5, rtol=0)


def test_the_streaming_graph_steps_a_batch_of_streams(streaming_export):
    """The exported graph has a dynamic batch axis: five streams in one call per piece give each
    stream the training graph's numbers (1e-5) and, bit for bit, the numbers of calls for it alone."""
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    net, path = streaming_export
    model = OnnxModel(path)
    assert model.batch_dynamic
    spec = model.spec
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(5).standard_normal((5, 300, 13)).astype(np.float32) * 1.5
    states = {st.input: np.zeros((5, *st.shape[1:]), dtype=np.float32) for st in spec.state}
    got = []
    for a, b in ((0, 1), (1, 3), (3, 103), (103, 300)):
        out = session.run(None, {"features": x[:, a:b], **states})
        got.append(out[0])
        states = {st.input: v for st, v in zip(spec.state, out[1:])}
    got = np.concatenate(got, axis=1)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    for i in range(5):
        model.reset_state()
        alone = np.concatenate([model.stream(x[i, a:b]) for a, b in ((0, 2), (2, 300))])
        np.testing.assert_array_equal(alone, got[i])


def test_a_model_traced_for_one_stream_is_made_batch_dynamic(streaming_export, tmp_path, capsys):
    """``python -m vadstream.training.export --batch-dynamic`` rewrites a batch-1 file (as 4.0
    first shipped): the same numbers for one stream, bit for bit, and a batch axis."""
    pytest.importorskip("torch")
    from vadstream.training.export import main, trace_streaming

    net, path = streaming_export
    fixed = trace_streaming(net, OnnxModel(path).spec, tmp_path / "fixed.onnx")
    assert not OnnxModel(fixed).batch_dynamic  # the runtime still loads it
    assert main([str(fixed), str(tmp_path / "dyn.onnx"), "--batch-dynamic"]) == 0
    assert "batch-dynamic" in capsys.readouterr().out
    dyn = OnnxModel(tmp_path / "dyn.onnx")
    assert dyn.batch_dynamic and dyn.spec == OnnxModel(fixed).spec
    x = speechlike(3.0, seed=4)
    np.testing.assert_array_equal(Vad(dyn)(x), Vad(fixed)(x))
    assert (tmp_path / "dyn.onnx").read_bytes() == path.read_bytes()  # what export_streaming writes


def test_a_hard_coded_batch_is_refused(tmp_path):
    """A Reshape the rewrite does not know may fix the batch at 1: refused, in one line."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from vadstream.stages.model import ModelError, write_spec
    from vadstream.training.export import make_batch_dynamic

    spec = OnnxModel().spec
    shape = numpy_helper.from_array(np.array([1, 2, 13], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["features", "shape"], ["r"]),
         helper.make_node("ReduceMean", ["r"], ["m"], axes=[2], keepdims=0),
         helper.make_node("Sigmoid", ["m"], ["speech_prob"])]
        + [helper.make_node("Identity", [st.input], [st.output]) for st in spec.state], "fixed",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, "frames", 13])]
        + [helper.make_tensor_value_info(st.input, TensorProto.FLOAT, list(st.shape)) for st in spec.state],
        [helper.make_tensor_value_info("speech_prob", TensorProto.FLOAT, [1, "frames"])]
        + [helper.make_tensor_value_info(st.output, TensorProto.FLOAT, list(st.shape)) for st in spec.state],
        initializer=[shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    write_spec(tmp_path / "m.onnx", spec)
    with pytest.raises(ModelError, match="may hard-code the batch") as err:
        make_batch_dynamic(tmp_path / "m.onnx", tmp_path / "out.onnx")
    assert "\n" not in str(err.value)
