"""Training labels from a teacher: FireRedVAD's non-streaming model (Apache-2.0).

The teacher is a DFSMN of about 570 K parameters that scores every 10 ms frame with context on
both sides (`../shared/models/fireredvad/`, see its README). It is far too slow and too late for
the daemon, and nothing at runtime loads it: it only labels training audio, which lets any real
recording (labelled by people or not) become training data.

Features as its README states: Kaldi fbank (80 mel bins, 25 ms window, 10 ms shift, snip_edges,
dither 0) on int16-scaled samples (``kaldi_native_fbank``, train extra), then CMVN from
``cmvn.ark`` (a Kaldi binary double matrix, read by :func:`read_kaldi_matrix`). Frame i covers
samples ``[160 i, 160 i + 400)``; :meth:`Teacher.sample_probs` spreads the frame probabilities
over samples by linear interpolation between frame centres.

    python -m vadstream.training.teacher FILE...      # print speech regions of each file

A second teacher (model 5.0): Silero VAD v6.2 (MIT), the bench peer, run over whole training
scenes (:class:`SileroTeacher`). Its probabilities are soft targets beside FireRedVAD's labels: it
was trained on far more audio, so it says what breath, coughs, music and far-field speech are.
It is causal and lags the audio by its rise time; :func:`best_lag_hops` measures that lag against
FireRedVAD's (non-causal) labels so the two can be mixed on one time grid.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
from pathlib import Path

import numpy as np

from vadstream.stages.samples import to_int16_range

REPO = Path(__file__).resolve().parent.parent.parent
DEFAULT_DIR = Path(os.environ.get("VADSTREAM_TEACHER", REPO.parent / "shared" / "models" / "fireredvad"))
FRAME_SHIFT = 160
FRAME_LENGTH = 400
MAX_FRAMES = 30_000  # the authors cut long inputs here (5 min)


def read_kaldi_matrix(path: str | os.PathLike[str]) -> np.ndarray:
    """A Kaldi binary matrix (``\\0B`` + ``DM``/``FM`` + int32 rows + int32 cols + data)."""
    raw = Path(path).read_bytes()
    at = raw.find(b"\0B")
    if at < 0:
        raise ValueError(f"{path}: not a Kaldi binary matrix")
    kind = raw[at + 2: at + 5]
    dtype = {b"DM ": "<f8", b"FM ": "<f4"}.get(kind)
    if dtype is None:
        raise ValueError(f"{path}: unsupported Kaldi matrix type {kind!r}")
    pos = at + 5
    rows, cols = [], []
    for out in (rows, cols):
        if raw[pos] != 4:
            raise ValueError(f"{path}: bad Kaldi integer size {raw[pos]}")
        out.append(struct.unpack_from("<i", raw, pos + 1)[0])
        pos += 5
    n = rows[0] * cols[0]
    return np.frombuffer(raw, dtype=dtype, count=n, offset=pos).reshape(rows[0], cols[0]).astype(np.float64)


class Teacher:
    """FireRedVAD non-streaming: 16 kHz float audio in, speech probability per 10 ms frame out."""

    def __init__(self, model_dir: str | os.PathLike[str] = DEFAULT_DIR, threads: int = 1):
        import kaldi_native_fbank as knf
        import onnxruntime as ort

        model_dir = Path(model_dir)
        onnx_path = model_dir / "fireredvad_vad.onnx"
        if not onnx_path.is_file():
            raise FileNotFoundError(f"teacher model not found: {onnx_path} (set VADSTREAM_TEACHER)")
        stats = read_kaldi_matrix(model_dir / "cmvn.ark")
        count = stats[0, -1]
        self._mean = stats[0, :-1] / count
        var = np.maximum(stats[1, :-1] / count - self._mean ** 2, 1e-20)
        self._inv_std = 1.0 / np.sqrt(var)
        opts = knf.FbankOptions()
        opts.frame_opts.samp_freq = 16000
        opts.frame_opts.dither = 0.0
        opts.frame_opts.snip_edges = True
        opts.frame_opts.frame_length_ms = 25.0
        opts.frame_opts.frame_shift_ms = 10.0
        opts.mel_opts.num_bins = 80
        self._opts = opts
        self._knf = knf
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        self.fingerprint = hashlib.sha256(onnx_path.read_bytes()).hexdigest()[:12]

    def features(self, audio: np.ndarray) -> np.ndarray:
        fbank = self._knf.OnlineFbank(self._opts)
        fbank.accept_waveform(16000, to_int16_range(audio).tolist())
        fbank.input_finished()
        n = fbank.num_frames_ready
        if n == 0:
            return np.zeros((0, 80), dtype=np.float32)
        feats = np.stack([fbank.get_frame(i) for i in range(n)])
        return ((feats - self._mean) * self._inv_std).astype(np.float32)

    def frame_probs(self, audio: np.ndarray) -> np.ndarray:
        """Speech probability of each 10 ms frame (frame i covers samples [160 i, 160 i + 400))."""
        feats = self.features(audio)
        out = []
        for start in range(0, max(1, feats.shape[0]), MAX_FRAMES):
            part = feats[start:start + MAX_FRAMES]
            if part.shape[0] == 0:
                break
            out.append(self._session.run(None, {"feat": part[None]})[0].reshape(-1))
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, dtype=np.float32)

    def sample_probs(self, audio: np.ndarray) -> np.ndarray:
        """Per-sample speech probability (float32), interpolated between frame centres."""
        return frames_to_samples(self.frame_probs(audio), np.asarray(audio).size)


def frames_to_samples(frame_probs: np.ndarray, n_samples: int) -> np.ndarray:
    if frame_probs.size == 0:
        return np.zeros(n_samples, dtype=np.float32)
    centres = np.arange(frame_probs.size) * FRAME_SHIFT + FRAME_LENGTH / 2
    return np.interp(np.arange(n_samples), centres, frame_probs).astype(np.float32)


class TeacherCache:
    """Frame probabilities of files, cached as ``.npy`` under ``cache_dir`` (keyed by the file's path,
    size and mtime and the teacher's fingerprint), computed on demand."""

    def __init__(self, cache_dir: str | os.PathLike[str], model_dir: str | os.PathLike[str] = DEFAULT_DIR):
        self.cache_dir = Path(cache_dir)
        self.model_dir = Path(model_dir)
        self._teacher: Teacher | None = None

    def _key(self, path: Path) -> Path:
        st = path.stat()
        h = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:16]
        return self.cache_dir / f"{path.stem[:40]}-{h}.npy"

    def cached(self, path: Path) -> np.ndarray | None:
        key = self._key(path)
        return np.load(key) if key.exists() else None

    def frame_probs(self, path: Path, audio: np.ndarray) -> np.ndarray:
        key = self._key(path)
        if key.exists():
            return np.load(key)
        if self._teacher is None:
            self._teacher = Teacher(self.model_dir)
        probs = self._teacher.frame_probs(audio).astype(np.float16)
        key.parent.mkdir(parents=True, exist_ok=True)
        tmp = key.with_suffix(".tmp.npy")
        np.save(tmp, probs)
        os.replace(tmp, key)
        return probs


def main(argv: list[str] | None = None) -> int:
    from vadstream.evaluation.metrics import mask_to_segments
    from vadstream.training.data import load_audio

    argv = sys.argv[1:] if argv is None else argv
    teacher = Teacher()
    for name in argv:
        p = teacher.frame_probs(load_audio(Path(name)))
        regions = mask_to_segments(p >= 0.5)  # in 10 ms frames
        print(name, " ".join(f"{a * 0.01:.2f}-{b * 0.01:.2f}" for a, b in regions))
    return 0


if __name__ == "__main__":
    sys.exit(main())


class SileroTeacher:
    """Silero VAD v6.2 (the ``silero-vad`` wheel's ONNX, :func:`vadstream.evaluation.peers.silero_onnx_path`)
    over whole signals in a batch: 512-sample windows with the previous 64 samples, state carried,
    exactly as its wrapper streams. :meth:`hop_probs` resamples its 32 ms probabilities to the
    20 ms hop grid (linear interpolation between window centres)."""

    window = 512
    context = 64

    def __init__(self, path: str | os.PathLike[str] | None = None):
        import onnxruntime as ort

        from vadstream.evaluation.peers import silero_onnx_path

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self.path = Path(path) if path else silero_onnx_path()
        self._session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])

    def window_probs(self, audio: np.ndarray) -> np.ndarray:
        """``audio`` [B, n] float32 -> [B, ceil(n / 512)] probabilities, window j = samples [512 j, 512 j + 512)."""
        audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
        b, n = audio.shape
        n_win = -(-n // self.window)
        padded = np.zeros((b, self.context + n_win * self.window), dtype=np.float32)
        padded[:, self.context:self.context + n] = audio
        state = np.zeros((2, b, 128), dtype=np.float32)
        sr = np.array(16000, dtype=np.int64)
        out = np.zeros((b, n_win), dtype=np.float32)
        for j in range(n_win):
            x = padded[:, j * self.window: j * self.window + self.context + self.window]
            prob, state = self._session.run(None, {"input": np.ascontiguousarray(x), "state": state, "sr": sr})
            out[:, j] = prob.reshape(-1)
        return out

    def hop_probs(self, audio: np.ndarray, hop_samples: int, n_hops: int) -> np.ndarray:
        """[B, n] audio -> [B, n_hops] Silero probabilities at the hop centres (not lag-corrected)."""
        win = self.window_probs(audio)
        centres = np.arange(win.shape[1]) * self.window + self.window / 2
        hops = np.arange(n_hops) * hop_samples + hop_samples / 2
        return np.stack([np.interp(hops, centres, row) for row in win]).astype(np.float32)


def shift_hops(probs: np.ndarray, lag: int) -> np.ndarray:
    """``probs`` [..., hops] moved ``lag`` hops earlier (hop k takes hop k + lag; the end repeats)."""
    if lag <= 0:
        return probs
    out = np.empty_like(probs)
    out[..., :-lag] = probs[..., lag:]
    out[..., -lag:] = probs[..., -1:]
    return out


def best_lag_hops(silero: np.ndarray, reference: np.ndarray, max_lag: int = 10) -> int:
    """The shift (in hops, 0..max_lag) that best aligns Silero's causal probabilities with a
    reference's (mean squared difference over all hops)."""
    errors = [float(np.mean((shift_hops(silero, lag) - reference) ** 2)) for lag in range(max_lag + 1)]
    return int(np.argmin(errors))
