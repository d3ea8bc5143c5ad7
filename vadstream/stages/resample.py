"""Streaming rational-ratio polyphase FIR resampler (numpy only).

``Resampler(in_rate_hz, out_rate_hz)`` converts by ``up/down = out/in`` (reduced by their gcd)
with a Kaiser-windowed sinc low-pass designed at construction:

- passband up to ``passband`` x the lower Nyquist frequency (default 0.9: 7.2 kHz for 16 kHz out),
- stopband from the lower Nyquist frequency (8 kHz for 16 kHz out) with ``stopband_db``
  attenuation (default 80 dB), so nothing above 8 kHz folds back into the output band.

The filter's group delay is compensated: output sample ``n`` is the input signal at time
``n / out_rate_hz``, so sample indices map across the resampler without an offset. Streaming is
exact: feeding the signal in any chunking and then :meth:`flush` gives the same samples as
:func:`resample` on the whole signal (the filter history is carried across calls).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def design_lowpass(up: int, down: int, passband: float = 0.9, stopband_db: float = 80.0) -> np.ndarray:
    """Kaiser-windowed sinc for the upsampled rate (``up`` x input rate), DC gain ``up``.

    Transition band: ``passband .. 1.0`` of the lower Nyquist frequency. The length is odd and
    chosen so that the group delay ``(len-1)/2`` is a whole number of output samples (a multiple
    of ``down`` taps), which lets :class:`Resampler` drop exactly that many outputs.
    """
    if not 0.0 < passband < 1.0:
        raise ValueError(f"passband must be in (0, 1), got {passband}")
    # Frequencies as fractions of the upsampled rate (1.0 = fs_up); lower Nyquist = 0.5/max(up, down).
    nyq = 0.5 / max(up, down)
    f_pass, f_stop = passband * nyq, nyq
    cutoff = 0.5 * (f_pass + f_stop)
    width = 2.0 * math.pi * (f_stop - f_pass)
    a = stopband_db
    if a > 50:
        beta = 0.1102 * (a - 8.7)
    elif a >= 21:
        beta = 0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21)
    else:
        beta = 0.0
    n_taps = int(math.ceil((a - 7.95) / (2.285 * width))) + 1
    half = -(-(n_taps - 1) // (2 * down)) * down  # (len-1)/2 rounded up to a multiple of down
    n_taps = 2 * half + 1
    t = np.arange(n_taps, dtype=np.float64) - half
    h = 2.0 * cutoff * np.sinc(2.0 * cutoff * t) * np.kaiser(n_taps, beta)
    return h * (up / h.sum())


class Resampler:
    """Streaming resampler from ``in_rate_hz`` to ``out_rate_hz`` for mono float signals.

    ``process(x)`` returns the output samples that are complete given the input so far (float32);
    ``flush()`` returns the rest, as if the input were followed by silence, so that the total
    output length is ``ceil(n_in * out / in)``. Then the resampler is reset.
    """

    def __init__(self, in_rate_hz: int, out_rate_hz: int = 16000, passband: float = 0.9,
                 stopband_db: float = 80.0):
        in_rate_hz, out_rate_hz = int(in_rate_hz), int(out_rate_hz)
        if in_rate_hz <= 0 or out_rate_hz <= 0:
            raise ValueError(f"rates must be > 0 Hz, got {in_rate_hz} -> {out_rate_hz}")
        g = math.gcd(in_rate_hz, out_rate_hz)
        self.in_rate_hz, self.out_rate_hz = in_rate_hz, out_rate_hz
        self.up, self.down = out_rate_hz // g, in_rate_hz // g
        self.identity = self.up == 1 and self.down == 1
        h = design_lowpass(self.up, self.down, passband, stopband_db)
        self.n_taps = h.size
        self.delay_out = (h.size - 1) // 2 // self.down  # group delay in output samples
        self.taps_per_phase = -(-h.size // self.up)
        padded = np.zeros(self.taps_per_phase * self.up)
        padded[: h.size] = h
        # _poly[p, k] = h[p + k*up], reversed in k so a window of input x[b-K+1 .. b] dots with it.
        self._poly = padded.reshape(self.taps_per_phase, self.up).T[:, ::-1].copy()
        self.reset()

    def reset(self) -> None:
        """Forget all input: the next sample is sample 0 of a new signal."""
        k = self.taps_per_phase
        self._buf = np.zeros(k - 1, dtype=np.float64)  # input from index _buf_start on
        self._buf_start = -(k - 1)  # zeros stand for the time before the signal
        self._n_in = 0
        self._n_out = 0  # internal output index (includes the delay_out outputs dropped)

    def _produce(self, limit_in: int) -> np.ndarray:
        """Outputs whose newest input index is < limit_in (inputs past _n_in are zeros)."""
        up, down, k = self.up, self.down, self.taps_per_phase
        # Output n needs input indices floor(n*down/up) - k + 1 .. floor(n*down/up).
        n_end = -(-limit_in * up // down)  # first n with floor(n*down/up) >= limit_in
        n0 = self._n_out
        if n_end <= n0:
            return np.zeros(0, dtype=np.float32)
        if up == 1:
            windows = sliding_window_view(self._buf, k)
            first = n0 * down - (k - 1) - self._buf_start
            y = windows[first: first + (n_end - n0 - 1) * down + 1: down] @ self._poly[0]
        else:
            # Chunks of outputs bound the (outputs x taps) temporaries on long one-shot inputs.
            y = np.empty(n_end - n0)
            back = np.arange(k - 1, -1, -1)[None, :]
            for c0 in range(n0, n_end, 4096):
                n = np.arange(c0, min(c0 + 4096, n_end))
                idx = (n * down // up - self._buf_start)[:, None] - back
                y[c0 - n0: c0 - n0 + n.size] = np.einsum(
                    "ij,ij->i", self._buf[idx], self._poly[(n * down) % up])
        self._n_out = n_end
        # Keep only the history the next output needs.
        keep_from = (n_end * down) // up - (k - 1)
        drop = keep_from - self._buf_start
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start = keep_from
        return y.astype(np.float32)

    def _emit(self, y: np.ndarray, first_internal: int) -> np.ndarray:
        skip = self.delay_out - first_internal
        return y[skip:] if skip > 0 else y

    def process(self, x: np.ndarray) -> np.ndarray:
        """Feed mono samples; return the output samples that became complete (float32)."""
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if self.identity:
            return x.astype(np.float32)
        if x.size:
            self._buf = np.concatenate([self._buf, x])
            self._n_in += x.size
        first = self._n_out
        return self._emit(self._produce(self._n_in), first)

    def flush(self) -> np.ndarray:
        """End of signal: the remaining outputs (input padded with zeros), then reset."""
        if self.identity:
            return np.zeros(0, dtype=np.float32)
        total = -(-self._n_in * self.up // self.down)  # outputs wanted (after the delay)
        last_internal = total + self.delay_out  # exclusive
        need_in = ((last_internal - 1) * self.down) // self.up + 1 if last_internal > 0 else 0
        pad = need_in - (self._buf_start + self._buf.size)
        if pad > 0:
            self._buf = np.concatenate([self._buf, np.zeros(pad)])
        first = self._n_out
        y = self._produce(need_in) if last_internal > first else np.zeros(0, dtype=np.float32)
        y = self._emit(y, first)
        emitted_before = max(0, first - self.delay_out)
        y = y[: max(0, total - emitted_before)]
        self.reset()
        return y

    @property
    def input_samples(self) -> int:
        """Input samples fed since the last reset."""
        return self._n_in


def resample(x: np.ndarray, in_rate_hz: int, out_rate_hz: int = 16000, **kwargs) -> np.ndarray:
    """Resample a whole mono signal (float32 out, length ``ceil(len(x) * out / in)``)."""
    r = Resampler(in_rate_hz, out_rate_hz, **kwargs)
    return np.concatenate([r.process(x), r.flush()])
