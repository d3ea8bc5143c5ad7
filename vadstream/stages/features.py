"""Streaming MFCC features with the maths of ``python_speech_features.mfcc``.

The offline ``python_speech_features.mfcc()`` pre-emphasises the whole signal, cuts it into
frames of ``winlen_s`` every ``winstep_s`` (the last frame zero-padded), takes the power
spectrum, applies a mel filterbank, logs, DCT-II (orthonormal), lifters and replaces c0 by the
log frame energy. :class:`StreamingMfcc` does the same on audio that arrives in pieces of any
size: pre-emphasis state and the frame overlap are carried across pieces, the filterbank and DCT
matrices are computed once, and only complete frames are emitted until :meth:`flush`, which
emits the zero-padded final frame exactly as the offline function does. Any chunking of the same
signal therefore yields the same frames (to float rounding, ~1e-12).

The runtime does not import python_speech_features (it pulls in scipy); the filterbank below is
the same construction as ``python_speech_features.get_filterbanks`` and tests check equality.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping

import numpy as np

_EPS = np.finfo(float).eps


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """MFCC parameters; names and defaults follow ``python_speech_features.mfcc``.

    Attributes:
        sample_rate_hz: audio sample rate in Hz.
        winlen_s: analysis window length in seconds.
        winstep_s: step between frames in seconds.
        numcep: number of cepstral coefficients kept.
        nfilt: number of mel filters.
        nfft: FFT size in samples.
        lowfreq_hz: lowest mel band edge in Hz.
        highfreq_hz: highest mel band edge in Hz (None: sample_rate_hz / 2).
        preemph: pre-emphasis coefficient (0 disables it).
        ceplifter: cepstral lifter coefficient (0 disables it).
        append_energy: replace c0 by the log of the frame's total energy.
    """

    sample_rate_hz: int = 16000
    winlen_s: float = 0.025
    winstep_s: float = 0.01
    numcep: int = 13
    nfilt: int = 26
    nfft: int = 512
    lowfreq_hz: float = 0.0
    highfreq_hz: float | None = None
    preemph: float = 0.97
    ceplifter: int = 22
    append_energy: bool = True

    @property
    def frame_samples(self) -> int:
        return _round_half_up(self.winlen_s * self.sample_rate_hz)

    @property
    def step_samples(self) -> int:
        return _round_half_up(self.winstep_s * self.sample_rate_hz)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeatureConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown feature parameter(s): {', '.join(unknown)}")
        return cls(**dict(data))

    def mfcc_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``python_speech_features.mfcc`` giving the same features."""
        return dict(
            samplerate=self.sample_rate_hz, winlen=self.winlen_s, winstep=self.winstep_s,
            numcep=self.numcep, nfilt=self.nfilt, nfft=self.nfft, lowfreq=self.lowfreq_hz,
            highfreq=self.highfreq_hz, preemph=self.preemph, ceplifter=self.ceplifter,
            appendEnergy=self.append_energy,
        )


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _hz2mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595 * np.log10(1 + np.asarray(hz) / 700.0)


def _mel2hz(mel: np.ndarray | float) -> np.ndarray:
    return 700 * (10 ** (np.asarray(mel) / 2595.0) - 1)


def mel_filterbank(cfg: FeatureConfig) -> np.ndarray:
    """Triangular mel filterbank, shape (nfilt, nfft // 2 + 1), as python_speech_features builds it."""
    highfreq = cfg.highfreq_hz or cfg.sample_rate_hz / 2
    if highfreq > cfg.sample_rate_hz / 2:
        raise ValueError(f"highfreq_hz {highfreq} is above the Nyquist frequency {cfg.sample_rate_hz / 2}")
    melpoints = np.linspace(_hz2mel(cfg.lowfreq_hz), _hz2mel(highfreq), cfg.nfilt + 2)
    bins = np.floor((cfg.nfft + 1) * _mel2hz(melpoints) / cfg.sample_rate_hz)
    fb = np.zeros((cfg.nfilt, cfg.nfft // 2 + 1))
    for j in range(cfg.nfilt):
        for i in range(int(bins[j]), int(bins[j + 1])):
            fb[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(int(bins[j + 1]), int(bins[j + 2])):
            fb[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    return fb


def _dct_ortho_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Rows of the orthonormal DCT-II (scipy ``dct(type=2, norm='ortho')``), shape (n_in, n_out)."""
    k = np.arange(n_out)[None, :]
    n = np.arange(n_in)[:, None]
    mat = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    mat[:, 0] /= np.sqrt(2.0)
    return mat


@functools.lru_cache(maxsize=None)
def _rfft_function(nfft: int, frame_samples: int):
    """``frames -> np.fft.rfft(frames, nfft)`` along the last axis.

    numpy's own FFT ufunc is called directly where it exists (numpy >= 2.0): the same computation
    without ``np.fft.rfft``'s Python wrapper, which costs more than the FFT itself at two frames
    per call. Checked equal to ``np.fft.rfft`` bit for bit once per FFT size (cached); any
    difference or a numpy without it falls back to ``np.fft.rfft``."""

    def public(frames: np.ndarray) -> np.ndarray:
        return np.fft.rfft(frames, nfft)

    try:
        from numpy.fft import _pocketfft_umath as pfu

        ufunc = pfu.rfft_n_even if nfft % 2 == 0 else pfu.rfft_n_odd
    except (ImportError, AttributeError):
        return public
    bins = nfft // 2 + 1
    axes = [(-1,), (), (-1,)]

    def direct(frames: np.ndarray) -> np.ndarray:
        return ufunc(frames, 1.0, axes=axes, out=np.empty(frames.shape[:-1] + (bins,), dtype=np.complex128))

    probe = np.random.default_rng(0).standard_normal((3, frame_samples))
    try:
        same = np.array_equal(direct(probe), public(probe)) and np.array_equal(direct(probe[:1]), public(probe[:1]))
    except Exception:  # noqa: BLE001 - a changed private signature means: use the public function
        same = False
    return direct if same else public


class MfccTransform:
    """Frames -> MFCC rows; the precomputed half of the pipeline, shared by streaming and offline use.

    Two matrix products do all the work: ``|rfft|^2 @ fb_ext`` gives the mel energies and, in an
    extra column, the frame energy (both scaled by 1/nfft as python_speech_features does); after
    the log, ``@ out_mat`` applies DCT-II (orthonormal) and the lifter and, when ``append_energy``,
    puts log energy in c0 (the DCT's c0 column is zeroed; the energy row adds exactly 1 * log E).
    """

    def __init__(self, cfg: FeatureConfig):
        if cfg.frame_samples > cfg.nfft:
            raise ValueError(f"window of {cfg.frame_samples} samples is longer than nfft {cfg.nfft}")
        self.cfg = cfg
        fb = mel_filterbank(cfg)
        self._fb_ext = np.vstack([fb, np.ones((1, fb.shape[1]))]).T * (1.0 / cfg.nfft)
        dct = _dct_ortho_matrix(cfg.nfilt, cfg.numcep)
        if cfg.ceplifter > 0:
            n = np.arange(cfg.numcep)
            dct = dct * (1 + (cfg.ceplifter / 2.0) * np.sin(np.pi * n / cfg.ceplifter))[None, :]
        energy_row = np.zeros((1, cfg.numcep))
        if cfg.append_energy:
            dct[:, 0] = 0.0
            energy_row[0, 0] = 1.0
        self._out_mat = np.vstack([dct, energy_row])
        self._rfft = _rfft_function(cfg.nfft, cfg.frame_samples)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """MFCC of pre-emphasised frames, shape (n, frame_samples) -> (n, numcep) float64."""
        power = np.abs(self._rfft(frames))
        power *= power
        feat = power @ self._fb_ext
        feat[feat == 0] = _EPS  # python_speech_features replaces exact zeros only
        np.log(feat, out=feat)
        return feat @ self._out_mat


def mfcc(signal: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Offline MFCC of a whole float signal; equals ``python_speech_features.mfcc(signal, **cfg.mfcc_kwargs())``."""
    stream = StreamingMfcc(cfg)
    return np.concatenate([stream.process(signal), stream.flush()])


class StreamingMfcc:
    """Incremental MFCC: feed samples in any chunking, get each frame once.

    Frame ``i`` starts at sample ``i * step_samples``. :meth:`process` returns the frames that are
    complete after the new samples; :meth:`flush` returns the zero-padded tail frame that the
    offline function would produce (none if the offline function would not), then resets.
    """

    def __init__(self, cfg: FeatureConfig):
        self.cfg = cfg
        self._transform = MfccTransform(cfg)
        self._frame = cfg.frame_samples
        self._step = cfg.step_samples
        self._index = np.zeros((0, self._frame), dtype=np.intp)
        self.reset()

    def _frame_index(self, n: int) -> np.ndarray:
        """Index matrix (n, frame_samples) cutting n frames from a buffer; cached, grown on demand."""
        if self._index.shape[0] < n:
            rows = max(n, 2 * self._index.shape[0])
            self._index = np.arange(rows)[:, None] * self._step + np.arange(self._frame)[None, :]
        return self._index[:n]

    def reset(self) -> None:
        self._prev = None  # last raw sample, for pre-emphasis across chunks
        # pre-emphasised samples from the next frame's start: work[:buf_len]
        self._work = np.empty(max(4096, 2 * self._frame))
        self._buf_len = 0
        self._samples_seen = 0
        self.frames_emitted = 0

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Feed float samples; return MFCC rows (n, numcep) of the frames completed by them."""
        x = samples
        if samples.dtype != np.float64 or samples.ndim != 1:
            x = np.asarray(samples, np.float64).reshape(-1)
        m = x.size
        if m == 0:
            return np.zeros((0, self.cfg.numcep))
        k = self._buf_len
        if self._work.size < k + m:
            grown = np.empty(max(k + m, 2 * self._work.size))
            grown[:k] = self._work[:k]
            self._work = grown
        work = self._work
        # pre-emphasis written straight behind the carried samples: y[i] = x[i] + (-c * x[i-1])
        c = self.cfg.preemph
        work[k] = x[0] if self._prev is None else x[0] - c * self._prev
        np.multiply(x[:-1], -c, out=work[k + 1:k + m])
        work[k + 1:k + m] += x[1:]
        self._prev = x[-1]
        self._samples_seen += m
        k += m
        n = 0 if k < self._frame else 1 + (k - self._frame) // self._step
        if n == 0:
            self._buf_len = k
            return np.zeros((0, self.cfg.numcep))
        out = self._transform(work[self._frame_index(n)])
        used = n * self._step
        self._buf_len = k - used
        work[: k - used] = work[used:k]
        self.frames_emitted += n
        return out

    def flush(self) -> np.ndarray:
        """Return the final zero-padded frame(s) the offline function adds, then reset."""
        total = self._samples_seen
        if total == 0:
            self.reset()
            return np.zeros((0, self.cfg.numcep))
        offline_frames = 1 if total <= self._frame else 1 + math.ceil((total - self._frame) / self._step)
        missing = offline_frames - self.frames_emitted
        out = np.zeros((0, self.cfg.numcep))
        if missing > 0:
            need = (missing - 1) * self._step + self._frame
            buf = np.concatenate([self._work[: self._buf_len], np.zeros(max(0, need - self._buf_len))])
            out = self._transform(buf[self._frame_index(missing)])
        self.reset()
        return out
