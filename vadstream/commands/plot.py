"""A picture of what the detector heard: waveform, spectrogram (or MFCC), probability, segments.

Needs matplotlib (the ``plot`` extra: ``pip install 'vadstream[plot]'``); it is imported inside
the functions and drawn with the Agg canvas, so no display or pyplot state is involved.

Panels, sharing one time axis in seconds:

1. waveform (min/max envelope for long files) with detected speech shaded;
2. spectrogram (dB, 0-8 kHz) or the model's MFCC input;
3. the per-hop speech probability with the onset and offset thresholds, speech shaded;
4. a timeline: detected segments, and the reference labels when given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from vadstream.commands.formats import FileResult
from vadstream.stages.detector import DetectorConfig

WIDTH_PX = 1400
HEIGHT_PX = 900
DPI = 100
MAX_COLUMNS = 3000  # spectrogram columns drawn at most (longer files are decimated)
SPEECH_COLOUR = "#2ca02c"
REFERENCE_COLOUR = "#1f77b4"
PROB_COLOUR = "#d62728"


def check_matplotlib() -> str | None:
    """None when plotting works, else a one-line message saying what to install."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "plotting needs matplotlib: pip install 'vadstream[plot]' (or pip install matplotlib)"
    return None


def spectrogram_db(samples: np.ndarray, sample_rate_hz: int = 16000, win_s: float = 0.025,
                   step_s: float = 0.01, nfft: int = 512) -> np.ndarray:
    """Power spectrogram in dB, shape (nfft // 2 + 1, frames); Hann window, ``step_s`` hop."""
    win = int(round(win_s * sample_rate_hz))
    step = int(round(step_s * sample_rate_hz))
    x = np.asarray(samples, dtype=np.float32)
    if x.size < win:
        x = np.concatenate([x, np.zeros(win - x.size, np.float32)])
    n = 1 + (x.size - win) // step
    stride = max(1, -(-n // MAX_COLUMNS))  # decimate frames for very long files
    starts = np.arange(0, n, stride) * step
    frames = x[starts[:, None] + np.arange(win)[None, :]] * np.hanning(win).astype(np.float32)
    power = np.abs(np.fft.rfft(frames, nfft, axis=1)) ** 2
    return (10.0 * np.log10(power + 1e-10)).T


def _envelope(samples: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bucket index, min, max) of the signal in ``columns`` buckets."""
    n = samples.size
    per = max(1, n // columns)
    usable = (n // per) * per
    buckets = samples[:usable].reshape(-1, per)
    return np.arange(buckets.shape[0]) * per, buckets.min(axis=1), buckets.max(axis=1)


def _shade(ax, regions: Sequence[tuple[float, float]], colour: str, alpha: float) -> None:
    for start, end in regions:
        ax.axvspan(start, end, color=colour, alpha=alpha, linewidth=0)


def plot_result(path: str | os.PathLike[str], result: FileResult, samples: np.ndarray,
                config: DetectorConfig | None = None, labels: Sequence[tuple[float, float]] | None = None,
                features: str = "spectrogram", feature_config=None, title: str | None = None,
                size_px: tuple[int, int] = (WIDTH_PX, HEIGHT_PX)) -> Path:
    """Draw one file's analysis into a PNG of ``size_px`` pixels; returns the path written.

    Args:
        result: segments and per-hop probabilities from :func:`vadstream.commands.file.analyse`.
        samples: the 16 kHz mono audio the probabilities were computed on.
        config: detector settings (threshold lines); defaults to ``DetectorConfig()``.
        labels: reference speech regions ``(start_s, end_s)``, drawn on the timeline.
        features: ``"spectrogram"`` or ``"mfcc"`` (the model's input features).
        feature_config: :class:`vadstream.stages.features.FeatureConfig` for ``"mfcc"``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    config = config or DetectorConfig()
    rate = result.sample_rate_hz
    x = np.asarray(samples, dtype=np.float32)
    duration = max(x.size / rate, result.duration_s, 1e-3)
    detected = [(s.start_s, s.end_s) for s in result.segments]

    fig = Figure(figsize=(size_px[0] / DPI, size_px[1] / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(4, 1, height_ratios=[1.1, 1.6, 1.5, 0.55], hspace=0.12,
                            left=0.065, right=0.985, top=0.93, bottom=0.07)
    ax_wave = fig.add_subplot(grid[0])
    ax_spec = fig.add_subplot(grid[1], sharex=ax_wave)
    ax_prob = fig.add_subplot(grid[2], sharex=ax_wave)
    ax_line = fig.add_subplot(grid[3], sharex=ax_wave)

    # 1. waveform
    if x.size > 4 * size_px[0]:
        idx, lo, hi = _envelope(x, 2 * size_px[0])
        ax_wave.fill_between(idx / rate, lo, hi, color="#333333", linewidth=0)
    elif x.size:
        ax_wave.plot(np.arange(x.size) / rate, x, color="#333333", linewidth=0.6)
    peak = float(np.max(np.abs(x))) if x.size else 1.0
    ax_wave.set_ylim(-1.05 * max(peak, 1e-3), 1.05 * max(peak, 1e-3))
    _shade(ax_wave, detected, SPEECH_COLOUR, 0.18)
    ax_wave.set_ylabel("waveform")
    ax_wave.set_yticks([])

    # 2. spectrogram or MFCC
    if features == "mfcc":
        from vadstream.stages.features import FeatureConfig, mfcc

        fcfg = feature_config or FeatureConfig()
        feats = mfcc(x.astype(np.float64), fcfg) if x.size else np.zeros((1, fcfg.numcep))
        step_s = fcfg.step_samples / rate
        # Each coefficient scaled to zero mean, unit variance so all rows are visible.
        z = (feats - feats.mean(axis=0)) / (feats.std(axis=0) + 1e-9)
        ax_spec.imshow(z.T, origin="lower", aspect="auto", cmap="magma", vmin=-2.5, vmax=2.5,
                       extent=(0, feats.shape[0] * step_s, -0.5, feats.shape[1] - 0.5), interpolation="nearest")
        ax_spec.set_ylabel("MFCC")
    else:
        spec = spectrogram_db(x, rate)
        top = float(np.percentile(spec, 99.5)) if spec.size else 0.0
        ax_spec.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top,
                       extent=(0, duration, 0, rate / 2000.0), interpolation="nearest")
        ax_spec.set_ylabel("kHz")

    # 3. probability and thresholds
    probs = result.probs if result.probs is not None else np.zeros(0)
    hop_s = result.hop_samples / rate
    if probs.size:
        t = np.arange(probs.size + 1) * hop_s
        ax_prob.stairs(probs, t, color=PROB_COLOUR, linewidth=1.4, label="speech probability")
    _shade(ax_prob, detected, SPEECH_COLOUR, 0.18)
    ax_prob.axhline(config.onset_threshold, color="black", linestyle="--", linewidth=1.0,
                    label=f"onset {config.onset_threshold:g}")
    ax_prob.axhline(config.offset_threshold, color="grey", linestyle=":", linewidth=1.2,
                    label=f"offset {config.offset_threshold:g}")
    ax_prob.set_ylim(-0.02, 1.02)
    ax_prob.set_yticks([0, 0.5, 1])
    ax_prob.set_ylabel("P(speech)")

    # 4. timeline: detected vs reference
    rows = [("detected", detected, SPEECH_COLOUR)]
    if labels is not None:
        rows.insert(0, ("reference", list(labels), REFERENCE_COLOUR))
    for i, (_, regions, colour) in enumerate(rows):
        ax_line.broken_barh([(a, b - a) for a, b in regions], (i + 0.15, 0.7), facecolors=colour)
    ax_line.set_ylim(0, len(rows))
    ax_line.set_yticks([i + 0.5 for i in range(len(rows))])
    ax_line.set_yticklabels([name for name, _, _ in rows])
    ax_line.set_xlabel("time (s)")
    ax_line.set_xlim(0, duration)

    for ax in (ax_wave, ax_spec, ax_prob):
        ax.tick_params(labelbottom=False)
    for ax in (ax_wave, ax_prob, ax_line):
        ax.grid(axis="x", alpha=0.3)

    speech_s = sum(b - a for a, b in detected)
    name = title or Path(result.path).name
    fig.suptitle(f"{name}: {len(detected)} speech segment(s), {speech_s:.1f} s of {duration:.1f} s",
                 fontsize=12, x=0.065, ha="left")
    handles = ax_prob.get_legend_handles_labels()[0]
    handles.append(Patch(color=SPEECH_COLOUR, alpha=0.5, label="detected speech"))
    if labels is not None:
        handles.append(Patch(color=REFERENCE_COLOUR, label="reference"))
    fig.legend(handles=handles, loc="upper right", fontsize=9, ncol=len(handles), frameon=False,
               bbox_to_anchor=(0.985, 0.975))

    out = Path(path)
    fig.savefig(out, dpi=DPI, format="png")
    return out
