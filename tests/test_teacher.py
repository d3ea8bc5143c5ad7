"""Teacher labels (FireRedVAD), transient augmentation, as-recorded scenes and the streaming
real-world scoring protocol."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from vadstream.evaluation.realworld import GRID, aligned_scores, streaming_scores
from vadstream.training import augment as aug
from vadstream.training.scenes import close_dips
from vadstream.training.teacher import DEFAULT_DIR, frames_to_samples, read_kaldi_matrix

pytestmark = pytest.mark.training  # make test-fast skips them

SR = 16000


def test_read_kaldi_binary_matrix(tmp_path):
    m = np.arange(6, dtype=np.float64).reshape(2, 3) * 1.5
    raw = b"key \0BDM " + b"\x04" + struct.pack("<i", 2) + b"\x04" + struct.pack("<i", 3) + m.tobytes()
    (tmp_path / "m.ark").write_bytes(raw)
    assert np.array_equal(read_kaldi_matrix(tmp_path / "m.ark"), m)
    (tmp_path / "bad.ark").write_bytes(b"text matrix [ 1 2 ]")
    with pytest.raises(ValueError, match="not a Kaldi binary matrix"):
        read_kaldi_matrix(tmp_path / "bad.ark")


def test_frames_to_samples_interpolates_between_frame_centres():
    p = frames_to_samples(np.array([0.0, 1.0], dtype=np.float32), 600)
    assert p.shape == (600,) and p.dtype == np.float32
    assert p[200] == 0.0 and p[360] == 1.0 and p[280] == pytest.approx(0.5)
    assert p[0] == 0.0 and p[-1] == 1.0  # held flat outside the centres
    assert frames_to_samples(np.zeros(0, dtype=np.float32), 10).tolist() == [0.0] * 10


def test_close_dips_fills_short_pauses_only():
    p = np.zeros(200, dtype=np.float32)
    p[20:60] = 0.9
    p[70:110] = 0.9  # 100 ms dip: closed
    p[150:190] = 0.9  # 400 ms pause: kept
    q = close_dips(p, 300.0)
    assert q[60:70].min() == pytest.approx(0.9)
    assert q[115:145].max() == 0.0
    assert q[:15].max() == 0.0 and np.array_equal(q[20:60], p[20:60])


def test_transients_are_short_unit_peak_and_finite():
    rng = np.random.default_rng(3)
    for _ in range(30):
        for make, max_s in ((aug.click, 0.05), (aug.breath, 1.3), (aug.click_train, 7.0)):
            x = make(rng)
            assert x.dtype == np.float32 and np.isfinite(x).all()
            assert 0 < x.size <= max_s * SR
            assert np.max(np.abs(x)) == pytest.approx(1.0, abs=1e-6)


def test_opus_round_trip_keeps_length_and_content():
    t = np.arange(SR) / SR
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    y = aug.opus_round_trip(x)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.corrcoef(x[4000:12000], y[4000:12000])[0, 1] > 0.9 or \
        np.abs(np.abs(np.fft.rfft(y))[430:450]).sum() > 0.5 * np.abs(np.fft.rfft(x))[430:450].sum()


def test_streaming_scores_count_lag():
    # hop 0 known after 320 samples, hop 1 after 640 (one 2-hop call per 40 ms, no lookahead)
    probs = np.array([0.1, 0.9, 0.2, 0.8], dtype=np.float32)
    known = np.array([640, 640, 1280, 1280])
    s = streaming_scores(probs, known, 8)
    # frames 0-2 end before 640: nothing known yet -> 0; frames 3-6 see hop 1; frame 7 ends at 1280
    assert s.tolist() == pytest.approx([0, 0, 0, 0.9, 0.9, 0.9, 0.9, 0.8])
    a = aligned_scores(probs, 320, 8)
    assert a.tolist() == pytest.approx([0.1, 0.1, 0.9, 0.9, 0.2, 0.2, 0.8, 0.8])
    assert GRID == 160


def test_recorded_and_dry_scenes_carry_soft_labels():
    from vadstream.training.scenes import Corpus, SceneRecipe, make_scene

    rng = np.random.default_rng(5)
    t = np.arange(3 * SR) / SR
    voice = (0.3 * np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    frames = np.tile(np.array([0.0, 0.9], dtype=np.float16), 150)  # soft teacher labels per 10 ms
    noise = (0.01 * rng.standard_normal(4 * SR)).astype(np.float32)
    corpus = Corpus(speech=[voice, voice], noise=[noise], speech_names=["precise/a.flac", "ktuberling/b.flac"],
                    noise_names=["ambient/n.flac"], speech_frames=[frames, frames], events=[noise[:SR]],
                    human=[noise[:SR // 2]])
    assert corpus.recorded().tolist() == [0]
    seen_soft = False
    for _ in range(30):
        audio, labels = make_scene(rng, corpus, 4.0, SceneRecipe(recorded_share=0.5, transient_rate=1.0))
        assert audio.shape == labels.shape == (4 * SR,) and labels.dtype == np.float32
        assert np.isfinite(audio).all() and 0.0 <= labels.min() and labels.max() <= 0.9 + 1e-3
        seen_soft |= bool(np.any((labels > 0.05) & (labels < 0.85)))
    assert seen_soft


@pytest.mark.corpus
def test_teacher_labels_a_real_recording(shared_data):
    pytest.importorskip("kaldi_native_fbank", reason="teacher needs the train extra (kaldi_native_fbank)")
    if not (DEFAULT_DIR / "fireredvad_vad.onnx").is_file():
        pytest.skip(f"teacher model not found at {DEFAULT_DIR}")
    from vadstream.training.data import load_audio
    from vadstream.training.teacher import Teacher

    wav = sorted((shared_data / "dev" / "labelled" / "ami").glob("*.flac"))[0]
    audio = load_audio(wav)
    p = Teacher().frame_probs(audio)
    assert p.size == (audio.size - 400) // 160 + 1
    rows = [line.split(",") for line in wav.with_suffix(".csv").read_text().split()[1:]]
    lab = np.zeros(p.size, dtype=bool)
    centres = (np.arange(p.size) * 160 + 200) / SR
    for a, b in rows:
        lab |= (centres >= float(a)) & (centres < float(b))
    from vadstream.evaluation.metrics import roc_auc

    assert roc_auc(lab, p) > 0.9  # the teacher agrees with the human labels of this meeting
