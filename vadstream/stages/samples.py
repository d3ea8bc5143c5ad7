"""Audio inside vadstream: mono float32 at 16 kHz in [-1, 1). The one sample rate and the one
int16 <-> float conversion every module uses."""

from __future__ import annotations

import numpy as np

SAMPLE_RATE_HZ = 16000  # the pipeline's rate: sample indices and event times count in it
INT16_SCALE = 32768.0  # int16 full scale: int16 / 32768 is in [-1, 1)


def mono(samples: np.ndarray) -> np.ndarray:
    """``samples`` as a 1-D array (a single row or column is flattened); else ValueError."""
    x = np.asarray(samples)
    if x.ndim != 1:
        if x.ndim == 2 and 1 in x.shape:
            x = x.reshape(-1)
        else:
            raise ValueError(f"expected mono samples (1-D), got shape {x.shape}")
    return x


def to_float(samples: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Mono samples as ``dtype`` in [-1, 1): int16 is scaled by 1/32768 (exact in float32 and
    float64), floats pass through (no copy when already ``dtype``); anything else is a TypeError."""
    x = mono(samples)
    if x.dtype == np.int16:
        return x.astype(dtype) * dtype(1.0 / INT16_SCALE)
    if x.dtype.kind == "f":
        return x.astype(dtype, copy=False)
    raise TypeError(f"samples must be int16 or float, got {x.dtype}")


def to_float32(samples: np.ndarray) -> np.ndarray:
    """Mono samples as float32 in [-1, 1): int16 is scaled by 1/32768, floats pass through."""
    return to_float(samples, np.float32)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1) as int16: rounded to nearest (even), clipped to the int16 range.
    The exact inverse of ``int16 / 32768``; float32 input is scaled in float32 (exact: a power of two)."""
    x = np.asarray(samples)
    y = np.rint(np.multiply(x, INT16_SCALE, dtype=x.dtype if x.dtype.kind == "f" else np.float64))
    return np.clip(y, -32768, 32767).astype("<i2")


def to_int16_range(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1) as float32 scaled to the int16 range (x 32768, exact), neither rounded
    nor clipped: what front ends that expect int16-scaled floats (kaldi fbank) take."""
    return np.asarray(samples, dtype=np.float32) * np.float32(INT16_SCALE)


def int16_bytes_to_float32(data: bytes) -> np.ndarray:
    """Little-endian s16 PCM bytes as float32 in [-1, 1)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) * np.float32(1.0 / INT16_SCALE)
