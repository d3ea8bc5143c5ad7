"""Metrics shared by ``python -m bench`` and ``vadstream evaluate`` (one implementation, numpy only).

Conventions:

- Labels per hop: a hop is speech when the per-sample label at the hop's *centre* sample
  (``k * hop + hop // 2``) is speech (:func:`hop_labels`).
- Scores are "speech" when ``score >= threshold``.
- :func:`roc_auc` and :func:`average_precision` follow scikit-learn's definitions: ROC-AUC is the
  trapezoidal area under the ROC curve (ties between scores make diagonal steps, i.e. count half);
  AP is the step-wise sum ``sum_n (R_n - R_{n-1}) * P_n`` over distinct score thresholds in
  decreasing order (no interpolation).
- Events: :func:`extract_segments` applies one smoothing rule to any VAD's probabilities (start
  when ``p >= onset``; end once ``p < offset`` has held for ``min_silence_ms``), recording both the
  boundary samples and the sample at which a streaming caller *knew* (see ``known_at``).
- Latency: :func:`event_latency` matches detected segments with labelled ones and returns onset and
  offset delays (from the labelled boundary to the moment the caller knew), missed segments,
  bridged pauses and false starts.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import numpy as np

from vadstream.stages.samples import SAMPLE_RATE_HZ


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------
def hop_labels(speech: np.ndarray, hop_samples: int, n_hops: int | None = None) -> np.ndarray:
    """Per-hop labels from per-sample labels, taken at each hop's centre sample.

    ``n_hops`` defaults to ``ceil(len(speech) / hop_samples)`` (every hop that starts inside the
    audio, which is what the VADs score at flush). A centre past the end takes the last sample's
    label.
    """
    speech = np.asarray(speech, dtype=bool).reshape(-1)
    if hop_samples <= 0:
        raise ValueError(f"hop_samples must be > 0, got {hop_samples}")
    if n_hops is None:
        n_hops = -(-speech.size // hop_samples)
    if speech.size == 0:
        return np.zeros(n_hops, dtype=bool)
    centres = np.arange(n_hops, dtype=np.int64) * hop_samples + hop_samples // 2
    return speech[np.minimum(centres, speech.size - 1)]


def segments_to_mask(segments: Iterable[tuple[float, float]], n_samples: int,
                     sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Per-sample speech mask from ``(start_s, end_s)`` segments in seconds."""
    mask = np.zeros(n_samples, dtype=bool)
    for start, end in segments:
        a = max(0, int(round(float(start) * sample_rate_hz)))
        b = min(n_samples, int(round(float(end) * sample_rate_hz)))
        if b > a:
            mask[a:b] = True
    return mask


def mask_to_segments(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` sample ranges of the True runs of a boolean mask."""
    m = np.asarray(mask, dtype=bool).reshape(-1).astype(np.int8)
    if m.size == 0:
        return []
    d = np.diff(np.concatenate([[0], m, [0]]))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return list(zip(starts.tolist(), ends.tolist()))


def merge_segments(segments: Sequence[tuple[int, int]], min_gap: int) -> list[tuple[int, int]]:
    """Merge segments separated by gaps shorter than ``min_gap`` samples (word gaps inside a phrase)."""
    out: list[list[int]] = []
    for a, b in sorted(segments):
        if out and a - out[-1][1] < min_gap:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


# --------------------------------------------------------------------------------------------
# Threshold-free metrics
# --------------------------------------------------------------------------------------------
def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).reshape(-1).astype(bool)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.size} vs {s.size}")
    return y, s


def _binary_clf_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (fps, tps) at each distinct score threshold, in decreasing score order."""
    order = np.argsort(-s, kind="mergesort")
    s = s[order]
    y = y[order]
    distinct = np.flatnonzero(np.diff(s)) if s.size else np.zeros(0, dtype=np.int64)
    idx = np.concatenate([distinct, [s.size - 1]]) if s.size else np.zeros(0, dtype=np.int64)
    tps = np.cumsum(y)[idx].astype(np.float64)
    fps = (idx + 1 - tps).astype(np.float64)
    return fps, tps, s[idx]


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), starting at (0, 0) with threshold +inf."""
    y, s = _check(labels, scores)
    fps, tps, thr = _binary_clf_curve(y, s)
    P, N = y.sum(), y.size - y.sum()
    fpr = np.concatenate([[0.0], fps / N]) if N else np.full(fps.size + 1, np.nan)
    tpr = np.concatenate([[0.0], tps / P]) if P else np.full(tps.size + 1, np.nan)
    return fpr, tpr, np.concatenate([[np.inf], thr])


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoidal; NaN when only one class is present)."""
    y, _ = _check(labels, scores)
    if y.all() or not y.any():
        return float("nan")
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def precision_recall_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) in decreasing threshold order (recall rising)."""
    y, s = _check(labels, scores)
    fps, tps, thr = _binary_clf_curve(y, s)
    P = y.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tps / (tps + fps)
        recall = tps / P if P else np.full(tps.size, np.nan)
    return precision, recall, thr


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Step-wise average precision ``sum (R_n - R_{n-1}) P_n`` (scikit-learn's definition)."""
    y, _ = _check(labels, scores)
    if not y.any():
        return float("nan")
    precision, recall, _ = precision_recall_curve(labels, scores)
    prev = np.concatenate([[0.0], recall[:-1]])
    return float(np.sum((recall - prev) * precision))


# --------------------------------------------------------------------------------------------
# At a threshold
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BinaryScores:
    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def f1(self) -> float:
        d = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / d if d else float("nan")

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else float("nan")

    def as_dict(self) -> dict[str, float]:
        return {"threshold": self.threshold, "precision": self.precision, "recall": self.recall,
                "f1": self.f1, "fpr": self.fpr, "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}


def scores_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> BinaryScores:
    """Confusion counts with ``score >= threshold`` as speech."""
    y, s = _check(labels, scores)
    pred = s >= threshold
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    tn = int(np.sum(~pred & ~y))
    return BinaryScores(float(threshold), tp, fp, fn, tn)


def frame_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """ROC-AUC, AP and P/R/F1/FPR at ``threshold`` in one dict."""
    out = {"roc_auc": roc_auc(labels, scores), "ap": average_precision(labels, scores)}
    out.update(scores_at(labels, scores, threshold).as_dict())
    out["n"] = int(np.asarray(labels).size)
    out["speech_fraction"] = float(np.mean(labels)) if np.asarray(labels).size else float("nan")
    return out


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SmoothingRule:
    """The common event rule applied to every VAD's probabilities.

    A segment starts at the first hop with ``p >= onset``; it ends once hops with ``p < offset``
    have lasted ``min_silence_ms`` (a hop with ``p >= offset`` before that bridges the pause).
    """

    onset: float = 0.5
    offset: float = 0.35
    min_silence_ms: float = 100.0

    def describe(self) -> str:
        return f"start at p >= {self.onset:g}; end after p < {self.offset:g} held {self.min_silence_ms:g} ms"


@dataclasses.dataclass(frozen=True)
class DetectedSegment:
    """A detected segment as the latency metrics see it: boundaries ``[start, end)`` and the stream
    samples at which a streaming caller knew each of them. Not ``commands.formats.Segment``, the
    output record (boundaries, end reason and rate, no decision times)."""

    start: int
    end: int
    start_known: int
    end_known: int


def extract_segments(probs: np.ndarray, hop_samples: int, rule: SmoothingRule = SmoothingRule(),
                     known_at: np.ndarray | None = None, sample_rate_hz: int = SAMPLE_RATE_HZ) -> list[DetectedSegment]:
    """Apply ``rule`` to per-hop probabilities.

    ``known_at[k]`` is the number of input samples a streaming caller had fed when hop ``k``'s
    probability came out (default: the hop's end, i.e. no lookahead). A segment open at the end of
    the input is closed at the end of the last hop, known then.
    """
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    n = p.size
    if known_at is None:
        known_at = (np.arange(n, dtype=np.int64) + 1) * hop_samples
    known_at = np.asarray(known_at, dtype=np.int64)
    if known_at.size != n:
        raise ValueError(f"known_at has {known_at.size} entries for {n} probabilities")
    need = max(1, int(round(rule.min_silence_ms * sample_rate_hz / 1000.0)))
    segments: list[DetectedSegment] = []
    in_speech = False
    start = start_known = last_speech_end = 0
    for k in range(n):
        hop_end = (k + 1) * hop_samples
        if not in_speech:
            if p[k] >= rule.onset:
                in_speech = True
                start, start_known, last_speech_end = k * hop_samples, int(known_at[k]), hop_end
            continue
        if p[k] >= rule.offset:
            last_speech_end = hop_end
        elif hop_end - last_speech_end >= need:
            segments.append(DetectedSegment(start, last_speech_end, start_known, int(known_at[k])))
            in_speech = False
    if in_speech:
        segments.append(DetectedSegment(start, last_speech_end, start_known, int(known_at[-1])))
    return segments


def false_starts_per_hour(n_starts: int, n_samples: int, sample_rate_hz: int = SAMPLE_RATE_HZ) -> float:
    hours = n_samples / sample_rate_hz / 3600.0
    return n_starts / hours if hours > 0 else float("nan")


@dataclasses.dataclass
class LatencyStats:
    """Event timing against labelled segments (delays in samples; positive = after the truth)."""

    onset_delays: list[int] = dataclasses.field(default_factory=list)
    offset_delays: list[int] = dataclasses.field(default_factory=list)
    n_reference: int = 0
    missed: int = 0
    n_pauses: int = 0
    bridged: int = 0
    early: int = 0
    fragments: int = 0
    false_starts: int = 0
    audio_samples: int = 0

    def extend(self, other: "LatencyStats") -> "LatencyStats":
        self.onset_delays += other.onset_delays
        self.offset_delays += other.offset_delays
        for f in ("n_reference", "missed", "n_pauses", "bridged", "early", "fragments", "false_starts",
                  "audio_samples"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        return self

    def summary(self, sample_rate_hz: int = SAMPLE_RATE_HZ) -> dict[str, float]:
        ms = 1000.0 / sample_rate_hz

        def pct(v: list[int], q: float) -> float:
            return float(np.percentile(np.asarray(v) * ms, q)) if v else float("nan")

        return {
            "onset_median_ms": pct(self.onset_delays, 50), "onset_p90_ms": pct(self.onset_delays, 90),
            "offset_median_ms": pct(self.offset_delays, 50), "offset_p90_ms": pct(self.offset_delays, 90),
            "segments": self.n_reference, "missed": self.missed,
            "missed_fraction": self.missed / self.n_reference if self.n_reference else float("nan"),
            "pauses": self.n_pauses, "bridged": self.bridged,
            "bridged_fraction": self.bridged / self.n_pauses if self.n_pauses else float("nan"),
            "early": self.early,
            "early_fraction": self.early / self.n_reference if self.n_reference else float("nan"),
            "fragments": self.fragments,
            "fragments_per_segment": self.fragments / self.n_reference if self.n_reference else float("nan"),
            "false_starts": self.false_starts,
        }


EARLY_TOLERANCE_SAMPLES = 3200  # 200 ms


def event_latency(reference: Sequence[tuple[int, int]], detected: Sequence[DetectedSegment],
                  n_samples: int, early_tolerance: int = EARLY_TOLERANCE_SAMPLES) -> LatencyStats:
    """Match detected segments with labelled ``[start, end)`` reference segments.

    - A reference segment that no detection overlaps is *missed*.
    - Onset delay of a reference segment: ``start_known - ref_start`` of the first detection that
      overlaps it, counted only when that detection began after the previous reference segment
      ended (otherwise it is a continuation, not a new start). A detection known more than
      ``early_tolerance`` samples before the labelled onset started in the pause (a false trigger
      that ran into the speech): it counts as *early*, not as an onset delay.
    - Offset delay: ``end_known - ref_end`` of the last overlapping detection, counted only when
      that detection ends before the next reference segment starts; otherwise the pause after the
      segment is *bridged* (the pauses are the gaps between consecutive reference segments).
    - Every overlapping detection after the first one of a reference segment is a *fragment* (the
      segment was cut by a premature end).
    - A detection that overlaps no reference segment is a *false start*.
    """
    ref = sorted((int(a), int(b)) for a, b in reference)
    det = sorted(detected, key=lambda d: d.start)
    st = LatencyStats(n_reference=len(ref), n_pauses=max(0, len(ref) - 1), audio_samples=int(n_samples))
    used = [False] * len(det)
    for i, (a, b) in enumerate(ref):
        prev_end = ref[i - 1][1] if i else -1
        next_start = ref[i + 1][0] if i + 1 < len(ref) else None
        hits = [j for j, d in enumerate(det) if d.start < b and d.end > a]
        if not hits:
            st.missed += 1
            continue
        for j in hits:
            used[j] = True
        st.fragments += len(hits) - 1
        first, last = det[hits[0]], det[hits[-1]]
        if first.start >= prev_end:
            if first.start_known < a - early_tolerance:
                st.early += 1
            else:
                st.onset_delays.append(first.start_known - a)
        if next_start is not None and last.end > next_start:
            st.bridged += 1
        else:
            st.offset_delays.append(last.end_known - b)
    st.false_starts = used.count(False)
    return st
