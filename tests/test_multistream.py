"""MultiStream: many streams on one session, one ONNX call per step, each stream bit for bit a
lone Stream on the same blocks whatever the others do (start, stop, pause, join mid-run, 1-sample
chunks, restarts); memory per stream fixed; old fixed-batch models still served."""

from __future__ import annotations

import numpy as np
import pytest
from audio_gen import two_phrases
from daemon_util import model_path

from vadstream import DetectorConfig, MultiStream, SpeechEnd, Stream, StreamOutput
from vadstream.stages.model import BatchedModel, ModelError


@pytest.fixture(scope="module")
def signals() -> list[np.ndarray]:
    """Six different signals with speech: the test phrases shifted, scaled, with noise."""
    x = two_phrases().samples.astype(np.float32)
    rng = np.random.default_rng(7)
    return [(np.roll(x, 2500 * i) * (0.4 + 0.15 * i) + 0.003 * rng.standard_normal(x.size)).astype(np.float32)
            for i in range(6)]


def assert_same(got: list[StreamOutput], want: list[StreamOutput]) -> None:
    a, b = StreamOutput.join(got), StreamOutput.join(want)
    np.testing.assert_array_equal(a.probs, b.probs)
    np.testing.assert_array_equal(a.hop_starts, b.hop_starts)
    assert a.events == b.events


def run_scenario(signals, schedule, seed: int, engine: MultiStream | None = None, chunks=(1, 7, 160, 320, 640, 2999)):
    """Feed every stream its signal in random chunks, on the engine and on lone Streams; stream i
    is present from step ``schedule[i][0]`` on, pauses (is not fed) with probability
    ``schedule[i][1]`` per step, and leaves (closed) at step ``schedule[i][2]`` or at its end."""
    rng = np.random.default_rng(seed)
    engine = engine or MultiStream(model_path())
    lone: dict[int, Stream] = {}
    pos = dict.fromkeys(range(len(signals)), 0)
    got: dict[int, list[StreamOutput]] = {i: [] for i in range(len(signals))}
    want: dict[int, list[StreamOutput]] = {i: [] for i in range(len(signals))}
    done: set[int] = set()
    step = 0
    while len(done) < len(signals):
        blocks = []
        for i, (join, pause, leave) in enumerate(schedule):
            if i in done or step < join:
                continue
            if i not in lone:
                lone[i] = Stream(model_path())
                engine.add(i)
            if pos[i] >= signals[i].size or step >= leave:
                got[i].append(engine.remove(i))
                want[i].append(lone[i].close())
                done.add(i)
                continue
            if rng.random() < pause:
                continue
            n = int(rng.choice(chunks))
            block = signals[i][pos[i]:pos[i] + n]
            pos[i] += n
            blocks.append((i, block))
            want[i].append(lone[i].process(block))
        for i, out in engine.process(blocks).items():
            got[i].append(out)
        step += 1
    return got, want


def test_streams_that_start_stop_and_pause_at_different_times_equal_lone_streams(signals):
    schedule = [(0, 0.0, 10**9), (0, 0.3, 10**9), (5, 0.1, 10**9), (40, 0.5, 10**9), (0, 0.0, 60), (200, 0.2, 10**9)]
    engine = MultiStream(model_path())
    assert engine.batched
    got, want = run_scenario(signals, schedule, seed=1, engine=engine)
    for i in range(len(signals)):
        assert_same(got[i], want[i])
    assert len(engine) == 0
    full = StreamOutput.join(want[0])
    assert any(isinstance(e, SpeechEnd) for e in full.events) and full.probs.size > 300


def test_one_sample_chunks_and_a_stream_joining_mid_run(signals):
    """Stream 0 in 1-sample chunks from the start, stream 1 joins at step 30000 in big blocks."""
    sig = [signals[0][:40000], signals[1]]
    engine = MultiStream(model_path())
    engine.add(0)
    ones = [engine.process({0: sig[0][k:k + 1]})[0] for k in range(30000)]
    engine.add(1)
    got0, got1 = ones, []
    for k in range(30000, 40000):
        blocks = {0: sig[0][k:k + 1]}
        if (k - 30000) % 100 == 0:
            j = (k - 30000) // 100 * 1000
            blocks[1] = sig[1][j:j + 1000]
        outs = engine.process(blocks)
        got0.append(outs[0])
        got1.append(outs.get(1, StreamOutput()))
    got0.append(engine.remove(0))
    got1.append(engine.process({1: sig[1][100000:]})[1])
    got1.append(engine.remove(1))
    lone = Stream(model_path())
    assert_same(got0, [lone.process(sig[0][k:k + 1]) for k in range(40000)] + [lone.close()])
    lone = Stream(model_path())
    assert_same(got1, [lone.process(sig[1][j:j + 1000]) for j in range(0, 100000, 1000)]
                + [lone.process(sig[1][100000:]), lone.close()])


def test_timeline_restarts_and_per_stream_settings(signals):
    """Holes filled with silence, a jump that restarts a stream mid-speech, resync and reset via
    engine.stream(id), a stream's own detector settings: all as on a lone Stream."""
    cfg = DetectorConfig(min_silence_ms=100)
    engine = MultiStream(model_path())
    engine.add("a")
    engine.add("b", cfg)
    lone = {"a": Stream(model_path()), "b": Stream(model_path(), cfg)}
    got: dict[str, list[StreamOutput]] = {"a": [], "b": []}
    want: dict[str, list[StreamOutput]] = {"a": [], "b": []}
    x, y = signals[2], signals[3]
    plan = [("a", x[:16000], None), ("b", y[:8000], None), ("a", x[16000:40000], 16500),
            ("b", y[8000:30000], 60000), ("a", x[40000:50000], None), ("b", y[30000:31000], 60000 + 22000)]
    for sid, block, start in plan:
        want[sid].append(lone[sid].process(block, start))
        got[sid].append(engine.process([(sid, block, start)])[sid])
    for sid in ("a", "b"):
        want[sid].append(lone[sid].resync())
        got[sid].append(engine.stream(sid).resync())
    for sid in ("a", "b"):
        want[sid].append(lone[sid].process(x[50000:70000], 200000))
        got[sid].append(engine.process([(sid, x[50000:70000], 200000)])[sid])
    engine.stream("b").reset(5)
    lone["b"].reset(5)
    for sid in ("a", "b"):
        want[sid].append(lone[sid].process(y[:20000]))
        got[sid].append(engine.process({sid: y[:20000]})[sid])
        want[sid].append(lone[sid].close())
        got[sid].append(engine.remove(sid))
    for sid in ("a", "b"):
        assert_same(got[sid], want[sid])
    assert any(e.reason.value == "device_lost" for e in StreamOutput.join(want["b"]).events if isinstance(e, SpeechEnd))


def test_several_blocks_for_one_stream_in_one_call_are_taken_in_order(signals):
    engine = MultiStream(model_path())
    engine.add(0)
    engine.add(1)
    blocks = [(0, signals[0][i:i + 500]) for i in range(0, 20000, 500)] + [(1, signals[1][:20000])]
    outs = engine.process(blocks)
    lone = Stream(model_path())
    assert_same([outs[0]], [lone.process(signals[0][i:i + 500]) for i in range(0, 20000, 500)])
    assert_same([outs[1]], [Stream(model_path()).process(signals[1][:20000])])


def test_one_model_call_per_step_and_fixed_memory_per_stream(signals, monkeypatch):
    engine = MultiStream(model_path())
    for i in range(40):
        engine.add(i)
    calls = []
    real = engine._model.step
    monkeypatch.setattr(engine._model, "step", lambda slots, frames: calls.append(len(slots)) or real(slots, frames))
    for k in range(0, 6400, 640):
        engine.process({i: signals[i % 6][k:k + 640] for i in range(40)})
    # one call per 40 ms step for all 40 streams (none in the first: its hops wait for 5 ms of lookahead)
    assert calls == [40] * 9
    # the state store holds the model's state tensors per stream (float32; 5.0: 40 x 5 + 48 x 2 + 64
    # values, 1.4 KB) and grows by doubling; removed streams' places are reused
    per_stream = sum(int(np.prod(st.shape[1:])) for st in engine._model.spec.state)
    assert engine._model.state_bytes == 4 * per_stream and per_stream > 0
    capacity = engine._model.capacity
    for i in range(20):
        engine.remove(i)
    for i in range(20):
        engine.add(100 + i)
    assert engine._model.capacity == capacity


def test_an_unknown_stream_is_a_clear_error():
    engine = MultiStream(model_path())
    engine.add("x")
    with pytest.raises(KeyError, match="no stream 'y'"):
        engine.process({"y": np.zeros(320, dtype=np.float32)})
    with pytest.raises(KeyError, match="already there"):
        engine.add("x")


def test_a_model_traced_for_one_stream_gets_one_call_per_stream(signals, tmp_path):
    """A fixed-batch streaming file (as 4.0 first shipped) cannot be batched: BatchedModel refuses
    it in one line, and MultiStream falls back to a session per stream with the same results."""
    pytest.importorskip("torch")
    import torch

    from vadstream.training.export import trace_streaming
    from vadstream.training.net import StreamNet, StreamNetConfig

    torch.manual_seed(0)
    spec = MultiStream(model_path()).spec
    net = StreamNet(StreamNetConfig(numcep=spec.features.numcep, channels=(8, 8), gru=8)).eval()
    fixed = trace_streaming(net, spec, tmp_path / "fixed.onnx")
    with pytest.raises(ModelError, match="traced for one stream") as err:
        BatchedModel(fixed)
    assert "\n" not in str(err.value) and "--batch-dynamic" in str(err.value)
    engine = MultiStream(fixed)
    assert not engine.batched
    engine.add(0)
    engine.add(1)
    lone = [Stream(fixed), Stream(fixed)]
    for k in range(0, 30000, 700):
        outs = engine.process({0: signals[0][k:k + 700], 1: signals[1][k:k + 300]})
        assert_same([outs[0]], [lone[0].process(signals[0][k:k + 700])])
        assert_same([outs[1]], [lone[1].process(signals[1][k:k + 300])])
    assert_same([engine.remove(0)], [lone[0].close()])


def test_the_readme_example_runs(signals, tmp_path):
    """The README's MultiStream program, as written, on three WAVs of different lengths: each file's
    lines are a lone Stream's events for it in the same 40 ms blocks."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    from audio_gen import write_wav

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("### Many streams: `MultiStream`"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "streams.py").write_text(code)
    wavs = [write_wav(tmp_path / f"s{i}.wav", signals[i][: 60000 + 37000 * i], 16000) for i in range(3)]
    proc = subprocess.run([sys.executable, "streams.py", *map(str, wavs)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for wav in wavs:
        with __import__("wave").open(str(wav)) as w:
            heard = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        lone = Stream(model_path())
        want = [f"{wav} {e.TYPE} {e.sample_index / 16000}" for k in range(0, heard.size, 640)
                for e in lone.process(heard[k:k + 640]).events]
        want += [f"{wav} {e.TYPE} {e.sample_index / 16000} {e.reason.value}" for e in lone.close().events]
        assert [ln for ln in proc.stdout.splitlines() if ln.startswith(f"{wav} ")] == want
        assert len(want) >= 2
