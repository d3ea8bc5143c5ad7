"""Vad on the shipped model: streaming equals offline, hop timing, input types; model contract errors."""

from pathlib import Path

import numpy as np
import pytest

from vadstream.stages.features import FeatureConfig
from vadstream.stages.model import METADATA_KEY, ModelError, ModelSpec, OnnxModel, write_spec
from vadstream.stages.vad import Vad

onnx = pytest.importorskip("onnx", reason="the onnx package (test/train extra) builds the contract test models")
from onnx import TensorProto, helper  # noqa: E402


def _tiny_onnx(path: Path, context: int, numcep: int, outputs: int, in_name="features", out_name="speech_prob"):
    """A real ONNX graph: flatten -> matmul -> sigmoid, with a dynamic batch axis."""
    w = np.random.default_rng(0).standard_normal((context * numcep, outputs)).astype(np.float32) * 0.01
    nodes = [
        helper.make_node("Flatten", [in_name], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], [out_name]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, ["batch", context, numcep])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["batch", outputs])],
        [helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.flatten())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _spec(context=20, outputs=2, lookahead=1, numcep=13):
    return ModelSpec(FeatureConfig(numcep=numcep), 2, context, lookahead, outputs,
                     tuple([-10.0] * numcep), tuple([5.0] * numcep), name="tiny")


def test_model_without_metadata_is_refused(tmp_path):
    path = _tiny_onnx(tmp_path / "m.onnx", 20, 13, 2)
    with pytest.raises(ModelError, match="no 'vadstream' metadata"):
        OnnxModel(path)


def test_model_with_mismatching_input_shape_is_refused(tmp_path):
    path = _tiny_onnx(tmp_path / "m.onnx", 24, 13, 2)
    write_spec(path, _spec(context=20))
    with pytest.raises(ModelError, match="input shape .* does not match its metadata"):
        OnnxModel(path)


def test_model_with_mismatching_output_count_is_refused(tmp_path):
    path = _tiny_onnx(tmp_path / "m.onnx", 20, 13, 1)
    write_spec(path, _spec(outputs=2))
    with pytest.raises(ModelError, match="output shape"):
        OnnxModel(path)


def test_model_with_wrong_io_names_is_refused(tmp_path):
    path = _tiny_onnx(tmp_path / "m.onnx", 20, 13, 2, in_name="x")
    write_spec(path, _spec())
    with pytest.raises(ModelError, match="one input named 'features'"):
        OnnxModel(path)


def test_corrupt_metadata_and_missing_file_are_refused(tmp_path):
    path = _tiny_onnx(tmp_path / "m.onnx", 20, 13, 2)
    m = onnx.load(str(path))
    prop = m.metadata_props.add()
    prop.key, prop.value = METADATA_KEY, '{"features": {"numcep": 13}}'
    onnx.save(m, str(path))
    with pytest.raises(ModelError, match="invalid model metadata"):
        OnnxModel(path)
    with pytest.raises(ModelError, match="not found"):
        OnnxModel(tmp_path / "absent.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        OnnxModel(tmp_path / "junk.onnx")


def test_invalid_spec_values_are_refused():
    with pytest.raises(ModelError, match="norm_std"):
        ModelSpec(FeatureConfig(), 2, 20, 1, 2, tuple([0.0] * 13), tuple([0.0] * 13))
    with pytest.raises(ModelError, match="context_frames"):
        ModelSpec(FeatureConfig(), 2, 4, 1, 2, tuple([0.0] * 13), tuple([1.0] * 13))


def test_spec_round_trips_through_onnx_metadata(tmp_path):
    path = _tiny_onnx(tmp_path / "m.onnx", 20, 13, 2)
    spec = _spec()
    write_spec(path, spec)
    assert OnnxModel(path).spec == spec


def _speechlike(seconds: float, seed: int) -> np.ndarray:
    """Harmonic bursts with pauses and noise: enough to move a VAD's probability around."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 120 + 40 * np.sin(2 * np.pi * 3 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / 16000) / k for k in range(1, 12))
    gate = (np.sin(2 * np.pi * 0.7 * t) > 0).astype(float)
    return (0.3 * voiced * gate + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def vad(shipped_model):
    return Vad(shipped_model)


def test_shipped_model_geometry(vad):
    assert vad.hop_samples <= 320, "output at least every 20 ms"
    assert vad.lookahead_samples <= 800, "lookahead at most 50 ms"
    assert vad.model.path.stat().st_size <= 1_000_000


def test_bound_single_window_scoring_equals_a_batch_one_run(tmp_path):
    """The live path of a window model (IO binding on fixed buffers) gives the plain run()'s
    numbers bit for bit, and later calls do not overwrite earlier results. (The shipped streaming
    model's bound path: tests/test_stream_model.py.)"""
    rng = np.random.default_rng(7)
    path = _tiny_onnx(tmp_path / "m.onnx", 20, 13, 2)
    write_spec(path, _spec(context=20))
    model = OnnxModel(path)
    windows = rng.standard_normal((5, model.spec.context_frames, model.spec.features.numcep)).astype(np.float32)
    out = np.empty((5, model.spec.outputs_per_inference), dtype=np.float32)
    for i, w in enumerate(windows):
        model.score_window(w, out[i])
    want = np.stack([model(w[None])[0] for w in windows])
    np.testing.assert_array_equal(out, want)
    assert np.ptp(out) > 1e-4  # different windows, different numbers


@pytest.mark.parametrize("seed", [0, 1])
def test_streaming_equals_offline_in_any_chunking(vad, seed):
    rng = np.random.default_rng(seed)
    x = _speechlike(3.3, seed)
    offline = vad(x)
    assert offline.shape == (-(-x.size // vad.hop_samples),)
    assert np.all((offline >= 0) & (offline <= 1))
    for max_chunk in (1, 50, 320, 3000):
        if max_chunk == 1:
            chunks = [x[i:i + 1] for i in range(0, 4000)] + [x[4000:]]  # sample-by-sample start
        else:
            cuts = np.cumsum(rng.integers(1, max_chunk + 1, size=x.size))
            chunks = np.split(x, cuts[cuts < x.size])
        vad.reset()
        got = np.concatenate([vad.process(c) for c in chunks] + [vad.flush()])
        np.testing.assert_allclose(got, offline, atol=1e-6, err_msg=f"max_chunk={max_chunk}")


def test_caller_may_reuse_its_buffer_between_calls(vad):
    """Samples held until the next model call are not a view of the caller's (reused) buffer."""
    x = _speechlike(1.5, 5).astype(np.float64)
    offline = vad(x)
    vad.reset()
    buf = np.empty(160, dtype=np.float64)
    got = []
    for i in range(0, x.size, 160):
        n = min(160, x.size - i)
        buf[:n] = x[i:i + n]
        got.append(vad.process(buf[:n]))
        buf[:] = 12345.0  # the caller scribbles over its buffer after each call
    got.append(vad.flush())
    np.testing.assert_allclose(np.concatenate(got), offline, atol=1e-6)


def test_probability_k_is_ready_after_its_lookahead(vad):
    x = _speechlike(1.0, 3)
    vad.reset()
    count = 0
    for n in range(1, x.size + 1):
        count += vad.process(x[n - 1:n]).size
        ready_bound = max(0, (n - vad.lookahead_samples) // vad.hop_samples)
        assert count >= ready_bound, n  # every hop whose lookahead has arrived is out
        assert count <= -(-n // vad.hop_samples), n  # never a hop that has not started
    vad.reset()


def test_int16_and_float_inputs_agree(vad):
    x = _speechlike(1.0, 4)
    as_int16 = np.round(x * 32767).astype(np.int16)
    np.testing.assert_allclose(vad(as_int16), vad(as_int16.astype(np.float32) / 32768), atol=1e-6)
    with pytest.raises(TypeError):
        vad.process(np.zeros(10, dtype=np.int32))
    with pytest.raises(ValueError, match="mono"):
        vad.process(np.zeros((10, 2), dtype=np.float32))


def test_digital_silence_and_near_silence_are_not_speech(vad):
    assert vad(np.zeros(32000, np.float32)).max() < 0.1
    hiss = (np.random.default_rng(5).standard_normal(32000) * 1e-4).astype(np.float32)
    assert vad(hiss).max() < 0.2


def test_independent_streams_do_not_share_state(shipped_model):
    x, y = _speechlike(2.0, 6), np.zeros(32000, np.float32)
    a, b = Vad(shipped_model), Vad(shipped_model)
    ref_y = Vad(shipped_model)(y)
    out_a, out_b = [], []
    for i in range(0, x.size, 640):
        out_a.append(a.process(x[i:i + 640]))
        out_b.append(b.process(y[i:i + 640]))
    out_b.append(b.flush())
    np.testing.assert_allclose(np.concatenate(out_b), ref_y, atol=1e-6)


def test_the_shipped_model_is_the_default():
    """``Vad()`` without a path loads models/vadstream.onnx, through the package's
    vadstream/models/vadstream.onnx (package data: a symlink here, the file in a wheel)."""
    repo_model = Path(__file__).resolve().parents[1] / "models" / "vadstream.onnx"
    package_model = Path(__file__).resolve().parents[1] / "vadstream" / "models" / "vadstream.onnx"
    assert Vad().model.path == package_model and package_model.resolve() == repo_model
