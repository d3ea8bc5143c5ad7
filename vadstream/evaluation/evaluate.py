"""The runs and summaries behind ``vadstream evaluate`` (:mod:`vadstream.evaluation.command`) and
``python -m bench``: the model against Silero VAD, TEN VAD and WebRTC VAD on held-out data.

Data: the ``dev`` split (never trained on) mixed by :func:`vadstream.training.data.build_eval_set`
at fixed seeds and SNRs (0, 5, 10, 20 dB and clean), plus every dev non-speech clip on its own.
Labels come from the clean speech and are taken per hop at each hop's centre sample.

Per VAD: ROC-AUC, average precision, precision/recall/F1 at its default threshold (0.5) on all
dev mixtures, and false speech starts per hour of non-speech after smoothing. vadstream's
smoothing is its own :class:`~vadstream.stages.detector.Detector` with the default
:class:`~vadstream.stages.detector.DetectorConfig`; the peers' is the common rule of
:class:`vadstream.evaluation.metrics.SmoothingRule` (start at p >= 0.5, end after p < 0.35 held 100 ms).

The same functions feed ``python -m bench`` (one implementation of the metrics and runs).
Heavy imports (soundfile, onnxruntime, peers) happen inside functions.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from vadstream.evaluation import metrics

REPO = Path(__file__).resolve().parent.parent.parent
DEFAULT_SNRS: tuple[float | None, ...] = (0.0, 5.0, 10.0, 20.0, None)
DEFAULT_SEED = 1234
REFERENCE_MERGE_MS = 300.0  # labelled speech regions closer than this are one reference segment
COMMON_RULE = metrics.SmoothingRule(onset=0.5, offset=0.35, min_silence_ms=100.0)


def default_data_root() -> Path:
    return Path(os.environ.get("VADSTREAM_DATA", REPO.parent / "shared" / "data"))


def condition_name(snr_db: float | None) -> str:
    return "clean" if snr_db is None else f"{snr_db:g} dB"


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
def load_dev(data_root: str | os.PathLike[str], snrs: Sequence[float | None] = DEFAULT_SNRS,
             seed: int = DEFAULT_SEED, split: str = "dev", max_items: int | None = None,
             nonspeech: bool = True, max_nonspeech: int | None = None) -> dict[str, list]:
    """condition name -> list of LabelledAudio (mixtures per SNR, and 'non-speech')."""
    from vadstream.training.data import build_eval_set, build_nonspeech_set

    out: dict[str, list] = {}
    for snr in snrs:
        items = build_eval_set(data_root, split=split, snr_db=snr, seed=seed)
        out[condition_name(snr)] = items[:max_items] if max_items else items
    if nonspeech:
        items = build_nonspeech_set(data_root, split=split)
        out["non-speech"] = items[:max_nonspeech] if max_nonspeech else items
    return out


def half(items: Sequence, which: str) -> list:
    """Deterministic split of a condition's items by index: 'tune' = even, 'test' = odd, 'all'."""
    if which == "all":
        return list(items)
    r = 0 if which == "tune" else 1
    return [it for i, it in enumerate(items) if i % 2 == r]


# --------------------------------------------------------------------------------------------
# Running a VAD over items
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class ItemRun:
    """One VAD on one item: per-hop probabilities, when they were known, labels, reference segments."""

    name: str
    condition: str
    index: int
    hop_samples: int
    n_samples: int
    probs: np.ndarray
    known_at: np.ndarray
    labels: np.ndarray  # per hop, at the hop centre
    reference: list[tuple[int, int]]  # labelled speech segments [start, end) in samples
    detector_segments: list[metrics.DetectedSegment] | None = None  # vadstream: its own Detector's segments


def reference_segments(speech: np.ndarray, merge_ms: float = REFERENCE_MERGE_MS) -> list[tuple[int, int]]:
    return metrics.merge_segments(metrics.mask_to_segments(speech), int(merge_ms * metrics.SAMPLE_RATE_HZ / 1000))


def events_to_segments(events: Iterable, hop_samples: int, known_at: np.ndarray) -> list[metrics.DetectedSegment]:
    """Detector events -> Segments; 'known' = when the deciding hop's probability came out."""
    from vadstream.stages.detector import SpeechEnd, SpeechStart

    def known(decided: int) -> int:
        k = min(max(0, -(-decided // hop_samples) - 1), known_at.size - 1)
        return int(known_at[k]) if known_at.size else decided

    segs: list[metrics.DetectedSegment] = []
    start = None
    for ev in events:
        if isinstance(ev, SpeechStart):
            start = ev
        elif isinstance(ev, SpeechEnd) and start is not None:
            segs.append(metrics.DetectedSegment(ev.start_sample, ev.sample_index, known(start.decided_sample),
                                        known(ev.decided_sample)))
            start = None
    return segs


def detector_segments(run: ItemRun, config) -> list[metrics.DetectedSegment]:
    """Re-run a Detector with ``config`` over stored probabilities (tuning without re-inference)."""
    from vadstream.stages.detector import Detector

    det = Detector(run.hop_samples, config)
    events = det.process(run.probs) + det.flush(end_sample=run.n_samples)
    return events_to_segments(events, run.hop_samples, run.known_at)


def run_vad(peer, items: Sequence, condition: str, chunk_samples: int | None = None) -> list[ItemRun]:
    from vadstream.evaluation.peers import stream

    runs = []
    for i, item in enumerate(items):
        probs, known = stream(peer, item.audio, chunk_samples)
        labels = metrics.hop_labels(item.speech, peer.hop_samples, probs.size)
        segs = None
        if getattr(peer, "detector", None) is not None:
            segs = events_to_segments(peer.events, peer.hop_samples, known)
        runs.append(ItemRun(item.name, condition, i, peer.hop_samples, int(item.audio.size), probs, known,
                            labels, reference_segments(item.speech), segs))
    return runs


def run_all(peers: dict, conditions: dict[str, list], chunk_ms: float = 20.0,
            log=None) -> dict[str, dict[str, list[ItemRun]]]:
    """peer name -> condition -> runs. vadstream is fed ``chunk_ms`` chunks, peers their own hop."""
    out: dict[str, dict[str, list[ItemRun]]] = {}
    for name, peer in peers.items():
        t0 = time.perf_counter()
        chunk = int(chunk_ms * 16) if name == "vadstream" else None
        out[name] = {cond: run_vad(peer, items, cond, chunk) for cond, items in conditions.items()}
        if log:
            log(f"  {name}: {time.perf_counter() - t0:.1f} s")
    return out


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------
def concat(runs: Sequence[ItemRun]) -> tuple[np.ndarray, np.ndarray]:
    if not runs:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.float32)
    return np.concatenate([r.labels for r in runs]), np.concatenate([r.probs for r in runs])


def frame_summary(runs: Sequence[ItemRun], threshold: float = 0.5) -> dict[str, float]:
    labels, probs = concat(runs)
    return metrics.frame_metrics(labels, probs, threshold)


def segments_for(run: ItemRun, rule: metrics.SmoothingRule | None = None, config=None) -> list[metrics.DetectedSegment]:
    """Segments of a run: ``config`` -> Detector, ``rule`` -> common rule, neither -> stored detector
    segments if any, else the common rule."""
    if config is not None:
        return detector_segments(run, config)
    if rule is None and run.detector_segments is not None:
        return run.detector_segments
    return metrics.extract_segments(run.probs, run.hop_samples, rule or COMMON_RULE, run.known_at)


def event_summary(runs: Sequence[ItemRun], rule: metrics.SmoothingRule | None = None,
                  config=None) -> metrics.LatencyStats:
    stats = metrics.LatencyStats()
    for r in runs:
        stats.extend(metrics.event_latency(r.reference, segments_for(r, rule, config), r.n_samples))
    return stats


def false_starts_per_hour(runs: Sequence[ItemRun], rule: metrics.SmoothingRule | None = None, config=None) -> float:
    starts = sum(len(segments_for(r, rule, config)) for r in runs)
    return metrics.false_starts_per_hour(starts, sum(r.n_samples for r in runs))


def is_mixture(condition: str) -> bool:
    """Dev mixture conditions (per SNR), as opposed to 'non-speech' and real sets ('set:<name>')."""
    return condition != "non-speech" and not condition.startswith("set:")


def evaluation_table(results: dict[str, dict[str, list[ItemRun]]], thresholds: dict[str, float]) -> list[dict]:
    """Rows: VAD, AUC, AP, P/R/F1/FPR at its threshold on all mixtures, per-SNR AUC, onset and offset
    medians on the mixtures (vadstream: its Detector at the shipped defaults; peers: the common
    rule), false starts/h."""
    rows = []
    for name, by_cond in results.items():
        mix = [r for c, runs in by_cond.items() if is_mixture(c) for r in runs]
        row = {"vad": name, **frame_summary(mix, thresholds.get(name, 0.5))}
        for c, runs in by_cond.items():
            if is_mixture(c):
                row[f"auc {c}"] = frame_summary(runs)["roc_auc"]
        timing = event_summary(mix).summary()
        row["onset_median_ms"], row["offset_median_ms"] = timing["onset_median_ms"], timing["offset_median_ms"]
        ns = by_cond.get("non-speech", [])
        row["nonspeech_hours"] = sum(r.n_samples for r in ns) / 16000 / 3600
        row["false_starts_per_hour"] = false_starts_per_hour(ns) if ns else float("nan")
        rows.append(row)
    return rows


def fmt(v, digits: int = 3) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "–"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{v:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_evaluation(rows: list[dict]) -> str:
    conds = [k[4:] for k in rows[0] if k.startswith("auc ")] if rows else []
    header = ["VAD", "ROC-AUC", "AP", "P", "R", "F1", "FPR", *[f"AUC {c}" for c in conds], "onset / offset median ms",
              "false starts/h"]
    body = []
    for r in rows:
        fs = r["false_starts_per_hour"]
        body.append([r["vad"], r["roc_auc"], r["ap"], r["precision"], r["recall"], r["f1"], r["fpr"],
                     *[r[f"auc {c}"] for c in conds],
                     f"{fmt(r['onset_median_ms'], 0)} / {fmt(r['offset_median_ms'], 0)}", fmt(fs, 1)])
    return markdown_table(header, body)
