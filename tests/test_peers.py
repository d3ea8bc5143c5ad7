"""Peer wrappers: right number of probabilities in [0, 1], streaming in any chunking; skip when absent."""

from __future__ import annotations

import numpy as np
import pytest

from vadstream.evaluation import peers
from vadstream.stages.detector import SpeechEnd, SpeechStart


def tone_and_noise(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.01 * rng.standard_normal(t.size)
    voiced = (t > 0.5) & (t < 1.4)
    # a crude vowel: harmonics of 140 Hz with a formant-like envelope
    for k in range(1, 20):
        x += voiced * 0.08 / k * np.sin(2 * np.pi * 140 * k * t)
    return x.astype(np.float32)


def build(name: str):
    try:
        if name == "silero":
            return peers.SileroPeer()
        if name == "ten":
            return peers.TenPeer()
        if name.startswith("webrtc"):
            return peers.WebRtcPeer(int(name[-1]))
    except peers.PeerUnavailable as exc:
        pytest.skip(f"{name} not available: {exc}")
    raise AssertionError(name)


@pytest.mark.parametrize("name,hop", [("silero", 512), ("ten", 256), ("webrtc-0", 480), ("webrtc-3", 480)])
def test_peer_counts_and_range(name, hop):
    vad = build(name)
    assert vad.hop_samples == hop
    x = tone_and_noise()
    probs, known = peers.stream(vad, x)
    n = -(-x.size // hop)
    assert probs.shape == (n,) and known.shape == (n,)
    assert np.all((probs >= 0) & (probs <= 1))
    assert known[0] == hop and known[-1] == x.size
    if vad.binary:
        assert set(np.unique(probs)) <= {0.0, 1.0}
    # any chunking gives the same probabilities (state carried, reset between runs)
    again, _ = peers.stream(vad, x, chunk_samples=333)
    np.testing.assert_allclose(again, probs, atol=1e-6)
    # int16 input is scaled like float input
    as_int, _ = peers.stream(vad, np.round(x * 32768).astype(np.int16))
    np.testing.assert_allclose(as_int, probs, atol=1e-3)


def test_silero_separates_silence_from_the_vowel():
    vad = build("silero")
    probs, _ = peers.stream(vad, np.zeros(16000, dtype=np.float32))
    assert probs.max() < 0.2


def test_silero_bound_call_path_equals_a_plain_session_run():
    """The IO-binding fast path (used so the CPU bench compares equal call paths) gives the
    probabilities of a plain InferenceSession.run with the state carried, exactly."""
    import onnxruntime as ort

    vad = build("silero")
    sess = ort.InferenceSession(str(vad.path), providers=["CPUExecutionProvider"])
    x = tone_and_noise(seed=3)
    state, context, want = np.zeros((2, 1, 128), np.float32), np.zeros(64, np.float32), []
    for i in range(0, x.size - 511, 512):
        window = np.concatenate([context, x[i:i + 512]])[None]
        out, state = sess.run(None, {"input": window, "state": state, "sr": np.array(16000, np.int64)})
        context = window[0, -64:]
        want.append(float(out[0, 0]))
    vad.reset()
    got = [vad.process_hop(x[i:i + 512]) for i in range(0, x.size - 511, 512)]
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert max(want) - min(want) > 0.3  # the vowel is scored differently from the noise


def test_vadstream_peer_counts_and_events(shipped_model):
    vad = peers.VadstreamPeer(shipped_model)
    x = tone_and_noise()
    probs, known = peers.stream(vad, x, chunk_samples=640)
    n = -(-x.size // vad.hop_samples)
    assert probs.shape == (n,)
    assert np.all((probs >= 0) & (probs <= 1))
    # no probability comes out before its hop and its lookahead have been fed (except the flushed tail)
    ends = (np.arange(n) + 1) * vad.hop_samples
    live = known < x.size
    assert np.all(known[live] >= ends[live] + vad.lookahead_samples - vad.hop_samples)
    # events alternate start/end
    kinds = [type(e) for e in vad.events]
    assert all(a is SpeechStart for a in kinds[0::2]) and all(b is SpeechEnd for b in kinds[1::2])


def test_available_peers_reports_reasons(tmp_path):
    built, skipped = peers.available_peers(["vadstream"], model=tmp_path / "missing.onnx")
    assert built == {}
    assert "vadstream" in skipped and "not found" in skipped["vadstream"]
