"""Audio corpus access, clean-speech frame labels and deterministic evaluation mixtures.

Corpus layout (``../shared/data`` or any folder with the same shape)::

    <data_root>/<split>/<kind>/<set>/*.flac|wav|ogg     split: train | dev, kind: speech | nonspeech

Labels come from the CLEAN speech before anything is mixed in (:func:`speech_mask`): under added
noise the labels stay exact. No torch here: the evaluation code imports this module too.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from vadstream.stages.samples import SAMPLE_RATE_HZ

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg")
KINDS = ("speech", "nonspeech")

# speech_mask parameters (see its docstring; MODEL_CARD.md explains how they were checked).
LABEL_FRAME_SAMPLES = 320  # 20 ms analysis frames
LABEL_STEP_SAMPLES = 160  # every 10 ms
LABEL_PEAK_PERCENTILE = 95.0  # "loud speech" reference level of a clip
LABEL_FLOOR_PERCENTILE = 10.0  # noise-floor estimate of a clip
LABEL_BELOW_PEAK_DB = 40.0  # frames within this of the reference can be speech...
LABEL_ABOVE_FLOOR_FRACTION = 0.4  # ...and at least this far (as a fraction) from floor to peak
LABEL_ABS_FLOOR_DBFS = -80.0  # never speech below this level
LABEL_CLOSE_GAPS_MS = 200.0  # pauses shorter than this inside speech are speech
LABEL_MIN_SPEECH_MS = 60.0  # isolated islands shorter than this are not speech
LABEL_PAD_MS = 20.0  # widen every speech region by this much on both sides
LABEL_MIN_RANGE_DB = 15.0  # clips whose peak-to-floor range is below this cannot be labelled by energy


def load_audio(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an audio file as float32 mono 16 kHz in [-1, 1] (channels averaged, resampled if needed)."""
    import soundfile as sf

    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE_HZ:
        audio = resample(audio, rate, SAMPLE_RATE_HZ)
    return np.ascontiguousarray(audio, dtype=np.float32)


def resample(audio: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """``audio`` from ``from_hz`` to ``to_hz`` with the daemon's own anti-aliasing resampler
    (:mod:`vadstream.stages.resample`), so training audio is coloured as served audio is."""
    from vadstream.stages.resample import resample as pipeline_resample

    if from_hz == to_hz:
        return np.asarray(audio, dtype=np.float32)
    return pipeline_resample(np.asarray(audio, dtype=np.float32), int(from_hz), int(to_hz)).astype(np.float32)


def find_clips(data_root: str | os.PathLike[str], split: str, kind: str) -> list[Path]:
    """Sorted audio files under ``<data_root>/<split>/<kind>/`` (any depth). Empty list if absent."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    root = Path(data_root) / split / kind
    return list_audio(root)


def list_audio(folder: str | os.PathLike[str]) -> list[Path]:
    """Sorted audio files (flac/wav/ogg) anywhere under ``folder``; empty if it does not exist."""
    root = Path(folder)
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def clip_set(path: Path) -> str:
    """The corpus set a clip belongs to (its parent folder name, e.g. 'librispeech')."""
    return path.parent.name


def _frame_energy_db(x: np.ndarray) -> np.ndarray:
    """Mean-square level in dBFS of 20 ms frames every 10 ms (frame i starts at i*160)."""
    n = len(x)
    n_frames = max(1, 1 + int(math.ceil(max(0, n - LABEL_FRAME_SAMPLES) / LABEL_STEP_SAMPLES)))
    padded = np.zeros((n_frames - 1) * LABEL_STEP_SAMPLES + LABEL_FRAME_SAMPLES)
    padded[:n] = x
    csum = np.concatenate([[0.0], np.cumsum(padded.astype(np.float64) ** 2)])
    starts = np.arange(n_frames) * LABEL_STEP_SAMPLES
    ms = (csum[starts + LABEL_FRAME_SAMPLES] - csum[starts]) / LABEL_FRAME_SAMPLES
    return 10.0 * np.log10(ms + 1e-12)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index pairs of the True runs in a boolean array."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def speech_mask(clean: np.ndarray) -> np.ndarray:
    """Per-sample speech labels of a CLEAN speech recording (bool, same length).

    Method (energy based, relative to the clip itself so the recording level does not matter):
    1. level in dBFS of 20 ms frames every 10 ms (DC removed first);
    2. reference ``peak`` = 95th percentile and ``floor`` = 10th percentile of the levels of the
       frames above -80 dBFS (digital silence is not the recording's background);
    3. a frame is speech when its level is above all of: ``peak - 40 dB``,
       ``floor + 0.4 * (peak - floor)`` (keeps a recording's own background out) and -80 dBFS
       (digital silence and dither are never speech);
    4. pauses shorter than 200 ms between speech frames become speech (closing; words and short
       stops are one region), speech islands shorter than 60 ms are dropped (clicks), and each
       region is widened by 20 ms on both sides (weak onsets/offsets, the frame length).
    """
    x = np.asarray(clean, dtype=np.float64).reshape(-1)
    n = x.size
    out = np.zeros(n, dtype=bool)
    if n == 0 or not np.any(x):
        return out
    x = x - x.mean()
    level = _frame_energy_db(x)
    audible = level[level > LABEL_ABS_FLOOR_DBFS]
    if audible.size == 0:
        return out
    # Percentiles over audible frames only: leading/trailing digital zeros (common at the start of
    # a recording) would otherwise pull the floor estimate to -120 dB and let the recording's own
    # background noise pass as speech.
    peak = float(np.percentile(audible, LABEL_PEAK_PERCENTILE))
    floor = float(np.percentile(audible, LABEL_FLOOR_PERCENTILE))
    threshold = max(peak - LABEL_BELOW_PEAK_DB, floor + LABEL_ABOVE_FLOOR_FRACTION * (peak - floor),
                    LABEL_ABS_FLOOR_DBFS)
    frames = level > threshold
    step_ms = 1000.0 * LABEL_STEP_SAMPLES / SAMPLE_RATE_HZ
    close = int(round(LABEL_CLOSE_GAPS_MS / step_ms))
    runs = _runs(frames)
    for (s0, e0), (s1, _) in zip(runs, runs[1:]):
        if s1 - e0 < close:
            frames[e0:s1] = True
    min_frames = int(round(LABEL_MIN_SPEECH_MS / step_ms))
    pad = int(round(LABEL_PAD_MS * SAMPLE_RATE_HZ / 1000.0))
    for s, e in _runs(frames):
        if e - s < min_frames:
            continue
        a = max(0, s * LABEL_STEP_SAMPLES - pad)
        b = min(n, (e - 1) * LABEL_STEP_SAMPLES + LABEL_FRAME_SAMPLES + pad)
        out[a:b] = True
    return out


def label_range_db(clean: np.ndarray) -> float:
    """Peak-to-floor level range (dB) of a clean speech clip, as :func:`speech_mask` measures it.

    Below :data:`LABEL_MIN_RANGE_DB` the recording's own background is too loud for energy labels
    (checked against Silero VAD: agreement falls from ~0.8 to ~0.54 on such clips); the training
    scenes and :func:`build_eval_set` leave those clips out (see :func:`is_labelable`)."""
    x = np.asarray(clean, dtype=np.float64).reshape(-1)
    if x.size == 0 or not np.any(x):
        return 0.0
    level = _frame_energy_db(x - x.mean())
    audible = level[level > LABEL_ABS_FLOOR_DBFS]
    if audible.size == 0:
        return 0.0
    return float(np.percentile(audible, LABEL_PEAK_PERCENTILE) - np.percentile(audible, LABEL_FLOOR_PERCENTILE))


def is_labelable(clean: np.ndarray) -> bool:
    """True when energy labels of this clean speech clip can be trusted (range >= 15 dB)."""
    return label_range_db(clean) >= LABEL_MIN_RANGE_DB


@dataclasses.dataclass
class LabelledAudio:
    """A signal with per-sample speech labels (from clean speech) and the SNR it was mixed at."""

    name: str
    audio: np.ndarray  # float32, 16 kHz mono
    speech: np.ndarray  # bool per sample
    snr_db: float | None


def active_power(clean: np.ndarray, mask: np.ndarray) -> float:
    """Mean power of ``clean`` over its speech samples (all samples if none are labelled)."""
    x = np.asarray(clean, dtype=np.float64)
    sel = x[mask] if np.any(mask) else x
    return float(np.mean(sel ** 2)) if sel.size else 0.0


def fit_noise(noise: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` samples of ``noise``: a random excerpt, or the clip looped (random start) if short."""
    noise = np.asarray(noise, dtype=np.float32)
    if noise.size == 0:
        return np.zeros(length, dtype=np.float32)
    if noise.size >= length:
        start = int(rng.integers(0, noise.size - length + 1))
        return noise[start:start + length].copy()
    reps = int(math.ceil(length / noise.size)) + 1
    start = int(rng.integers(0, noise.size))
    return np.tile(noise, reps)[start:start + length].copy()


def mix_at_snr(clean: np.ndarray, mask: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``clean + g * noise`` with g chosen so active-speech power / noise power = ``snr_db``."""
    p_s = active_power(clean, mask)
    p_n = float(np.mean(np.asarray(noise, dtype=np.float64) ** 2))
    if p_n <= 0 or p_s <= 0:
        return np.asarray(clean, dtype=np.float32).copy()
    gain = math.sqrt(p_s / (p_n * 10.0 ** (snr_db / 10.0)))
    return (np.asarray(clean, dtype=np.float64) + gain * noise).astype(np.float32)


def concat_utterances(clips: Iterable[np.ndarray], rng: np.random.Generator, gap_s: tuple[float, float] = (0.5, 2.0),
                      lead_s: tuple[float, float] = (0.5, 2.0)) -> tuple[np.ndarray, np.ndarray]:
    """Utterances separated by digital-silence gaps (uniform in ``gap_s``), with a leading and a
    trailing gap; returns (clean audio float32, per-sample labels from :func:`speech_mask`)."""
    audio: list[np.ndarray] = []
    labels: list[np.ndarray] = []

    def gap(bounds: tuple[float, float]) -> None:
        n = int(rng.uniform(*bounds) * SAMPLE_RATE_HZ)
        audio.append(np.zeros(n, dtype=np.float32))
        labels.append(np.zeros(n, dtype=bool))

    gap(lead_s)
    for clip in clips:
        clip = np.asarray(clip, dtype=np.float32)
        audio.append(clip)
        labels.append(speech_mask(clip))
        gap(gap_s)
    return np.concatenate(audio), np.concatenate(labels)


def build_eval_set(data_root: str | os.PathLike[str], split: str = "dev", snr_db: float | None = None,
                   seed: int = 0, item_s: float = 30.0) -> list[LabelledAudio]:
    """Deterministic speech-in-noise mixtures of one split.

    The split's speech clips (all sets, shuffled with ``seed``; clips too noisy to label by energy,
    :func:`is_labelable`, are left out) are packed into items of about
    ``item_s`` seconds: utterances separated by 0.5-2 s gaps. Each item is mixed with an excerpt of
    one of the split's non-speech clips (chosen with ``seed``) at ``snr_db`` (active speech power /
    noise power); ``snr_db=None`` leaves the speech clean (gaps are digital silence). For a given
    ``seed`` every SNR uses the same speech arrangement and noise excerpts, so results at different
    SNRs are comparable. Labels come from the clean speech (:func:`speech_mask`).
    """
    speech_paths = [p for p in find_clips(data_root, split, "speech") if is_labelable(load_audio(p))]
    noise_paths = find_clips(data_root, split, "nonspeech")
    if not speech_paths:
        raise FileNotFoundError(f"no speech clips under {Path(data_root) / split / 'speech'}")
    if snr_db is not None and not noise_paths:
        raise FileNotFoundError(f"no non-speech clips under {Path(data_root) / split / 'nonspeech'}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(speech_paths))
    groups: list[list[Path]] = [[]]
    total = 0.0
    for i in order:
        path = speech_paths[int(i)]
        dur = _duration_s(path) + 1.25
        if groups[-1] and total + dur > item_s:
            groups.append([])
            total = 0.0
        groups[-1].append(path)
        total += dur
    items: list[LabelledAudio] = []
    tag = "clean" if snr_db is None else f"snr{snr_db:g}"
    for k, group in enumerate(groups):
        item_rng = np.random.default_rng([seed, k])
        clean, mask = concat_utterances((load_audio(p) for p in group), item_rng)
        noise_path = noise_paths[int(item_rng.integers(0, len(noise_paths)))] if noise_paths else None
        noise_rng = np.random.default_rng([seed, k, 1])
        if snr_db is None or noise_path is None:
            audio = clean
        else:
            noise = fit_noise(load_audio(noise_path), clean.size, noise_rng)
            audio = mix_at_snr(clean, mask, noise, snr_db)
        items.append(LabelledAudio(name=f"{split}-mix{k:03d}-{tag}", audio=audio, speech=mask, snr_db=snr_db))
    return items


def build_nonspeech_set(data_root: str | os.PathLike[str], split: str = "dev") -> list[LabelledAudio]:
    """Every non-speech clip of a split as it is, all samples labelled non-speech."""
    items = []
    for path in find_clips(data_root, split, "nonspeech"):
        audio = load_audio(path)
        items.append(LabelledAudio(name=f"{split}-{clip_set(path)}-{path.stem}", audio=audio,
                                   speech=np.zeros(audio.size, dtype=bool), snr_db=None))
    return items


def _duration_s(path: Path) -> float:
    import soundfile as sf

    return float(sf.info(str(path)).duration)
