"""Real-world evaluation: real recordings scored as a real-time caller sees them, every VAD in one run.

Sets (all from the ``dev`` split, never trained on):

- ``ami``: ``dev/labelled/ami`` (AMI meeting excerpts: far-field room microphones, several
  talkers, overlaps; human speech regions = union of the manual speaker turns);
- ``dev recorded``: every ``dev/speech`` recording as recorded (crowd-sourced home microphones,
  read speech), labelled by the FireRedVAD teacher (:mod:`vadstream.training.teacher`, closed over
  dips < 300 ms as the training labels are). Teacher labels, so it favours a student of the teacher:
  read it next to ``ami``, not alone;
- ``dev words`` (new with model 5.0): the dev recordings of counting, read speech and command
  sentences (``coswara-counting``, ``librispeech``, ``grid``) as recorded, with the teacher's
  **word-level** labels (raw, no closing: a pause between words is non-speech), the convention of
  word-level hand labels;
- ``dev noisy words`` (new with model 5.0): short real words (``precise`` wake words,
  ``coswara-counting`` numbers) mixed with real dev noise (ambient, babble) at 0, 5 or 10 dB SNR,
  word-level teacher labels of the clean recording;
- ``non-speech``: every ``dev/nonspeech`` clip (ambient, babble, music, crying): false starts per
  hour (vadstream through its own Detector with the shipped defaults, peers with the common rule)
  and the share of hops scoring >= 0.5; the Coswara breath and coughs (``non-speech coswara``)
  are also reported alone.

Streaming protocol (the primary figures): on a common 10 ms grid, the score of grid frame j is the
newest probability the VAD had returned once the audio up to the end of frame j had been fed
(vadstream in 20 ms chunks, the daemon's block; peers hop by hop), and the label is the human
label at the frame's centre. Lookahead and call cadence therefore count as lag. The
offline-aligned figures score each frame with the probability of the hop that contains it.
95 % intervals: bootstrap over files (frames of a file stay together).

Run by ``vadstream evaluate`` and ``python -m bench accuracy`` (the same conditions, one run).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from vadstream.evaluation import metrics

GRID = 160  # 10 ms at 16 kHz
BOOTSTRAP = 300
PROTOCOL = ("Streaming: on a 10 ms grid, each frame is scored with the newest probability the VAD had returned "
            "once the audio up to the frame's end had been fed (vadstream in 20 ms chunks, peers hop by hop), "
            "against the label at the frame's centre, so lookahead and call cadence count as lag. Offline-aligned: "
            "each frame scored with the probability of the hop that contains it. 95 % intervals: bootstrap over "
            "files. `ami`: human labels; `dev recorded`: FireRedVAD teacher labels (favour a student of the "
            "teacher). Non-speech: false starts per hour (vadstream: its Detector at the shipped defaults, in "
            "brackets the common rule; peers: the common rule) and the share of hops >= 0.5.")


@dataclasses.dataclass
class Scored:
    """Per-file grid scores of one VAD on one set."""

    labels: list[np.ndarray]  # bool per grid frame
    streaming: list[np.ndarray]  # score per grid frame, real-time view
    aligned: list[np.ndarray]  # score per grid frame, offline-aligned


def grid_labels(speech: np.ndarray) -> np.ndarray:
    n = speech.size // GRID
    centres = np.arange(n) * GRID + GRID // 2
    return speech[centres]


def streaming_scores(probs: np.ndarray, known_at: np.ndarray, n_frames: int) -> np.ndarray:
    """Score of each grid frame: the newest probability known once the frame's last sample was fed."""
    ends = (np.arange(n_frames) + 1) * GRID
    idx = np.searchsorted(known_at, ends, side="right") - 1
    out = np.zeros(n_frames, dtype=np.float32)
    ok = idx >= 0
    out[ok] = probs[idx[ok]]
    return out


def aligned_scores(probs: np.ndarray, hop_samples: int, n_frames: int) -> np.ndarray:
    """Score of each grid frame: the probability of the hop containing the frame's centre."""
    centres = np.arange(n_frames) * GRID + GRID // 2
    idx = np.minimum(centres // hop_samples, max(probs.size - 1, 0))
    return probs[idx] if probs.size else np.zeros(n_frames, dtype=np.float32)


def score_runs(items: Sequence, runs: Sequence) -> Scored:
    s = Scored([], [], [])
    for item, run in zip(items, runs):
        lab = grid_labels(item.speech)
        s.labels.append(lab)
        s.streaming.append(streaming_scores(run.probs, run.known_at, lab.size))
        s.aligned.append(aligned_scores(run.probs, run.hop_samples, lab.size))
    return s


def _metrics(labels: list[np.ndarray], scores: list[np.ndarray], threshold: float) -> dict[str, float]:
    y = np.concatenate(labels)
    p = np.concatenate(scores)
    b = metrics.scores_at(y, p, threshold)
    return {"roc_auc": metrics.roc_auc(y, p), "ap": metrics.average_precision(y, p), "f1": b.f1, "recall": b.recall,
            "fpr": b.fpr}


def bootstrap_ci(labels: list[np.ndarray], scores: list[np.ndarray], seed: int = 0,
                 n: int = BOOTSTRAP) -> dict[str, tuple[float, float]]:
    """95 % percentile intervals of ROC-AUC and AP, resampling files with replacement."""
    rng = np.random.default_rng(seed)
    k = len(labels)
    aucs, aps = [], []
    for _ in range(n):
        pick = rng.integers(0, k, k)
        y = np.concatenate([labels[i] for i in pick])
        p = np.concatenate([scores[i] for i in pick])
        if y.all() or not y.any():
            continue
        aucs.append(metrics.roc_auc(y, p))
        aps.append(metrics.average_precision(y, p))
    def q(v: list[float]) -> tuple[float, float]:
        return (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) if v else (float("nan"),) * 2

    return {"roc_auc": q(aucs), "ap": q(aps)}


def summarise(scored: Scored, threshold: float = 0.5, ci: bool = True) -> dict:
    out = {"streaming": _metrics(scored.labels, scored.streaming, threshold),
           "aligned": _metrics(scored.labels, scored.aligned, threshold),
           "files": len(scored.labels), "minutes": sum(x.size for x in scored.labels) * GRID / 16000 / 60}
    if ci:
        out["streaming_ci"] = bootstrap_ci(scored.labels, scored.streaming)
    return out


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------
def load_ami(data_root: Path) -> list:
    from vadstream.evaluation.labels import load_folder

    folder = data_root / "dev" / "labelled" / "ami"
    return load_folder(folder) if folder.is_dir() else []


WORD_SETS = ("coswara-counting", "librispeech", "grid")  # dev recordings scored at word level
NOISY_WORD_SETS = ("precise", "coswara-counting")  # short words for the noisy-words set
NOISY_WORD_NOISE = ("ambient", "babble")  # the real dev noise they are mixed with
NOISY_WORD_SNRS_DB = (0.0, 5.0, 10.0)


def _teacher_labelled(data_root: Path, cache_dir: Path, sets: Sequence[str] | None, max_files: int | None,
                      close: bool = False):
    """(path, audio, teacher labels per sample) of the dev recordings of ``sets`` (None: all):
    word-level (the teacher's frames as they are) or, with ``close``, closed like the training labels."""
    from vadstream.training.data import list_audio, load_audio
    from vadstream.training.scenes import close_dips
    from vadstream.training.teacher import TeacherCache, frames_to_samples

    teacher = TeacherCache(cache_dir / "teacher")
    root = data_root / "dev" / "speech"
    paths = list_audio(root) if sets is None else [p for name in sets for p in list_audio(root / name)]
    if max_files:
        paths = paths[:: max(1, len(paths) // max_files)][:max_files]
    for p in paths:
        x = load_audio(p)
        frames = teacher.frame_probs(p, x)
        frames = close_dips(frames) if close else frames.astype(np.float32)
        yield p, x, frames_to_samples(frames, x.size) >= 0.5


def load_dev_recorded(data_root: Path, cache_dir: Path, max_files: int | None = None) -> list:
    """Every dev speech recording as recorded, with teacher labels (closed like the training labels)."""
    from vadstream.training.data import LabelledAudio

    return [LabelledAudio(name=f"{p.parent.name}/{p.stem}", audio=x, speech=speech, snr_db=None)
            for p, x, speech in _teacher_labelled(data_root, cache_dir, None, max_files, close=True)]


def load_dev_words(data_root: Path, cache_dir: Path, max_files: int | None = None) -> list:
    """Dev recordings of :data:`WORD_SETS` as recorded, word-level teacher labels (no closing)."""
    from vadstream.training.data import LabelledAudio

    return [LabelledAudio(name=f"{p.parent.name}/{p.stem}", audio=x, speech=speech, snr_db=None)
            for p, x, speech in _teacher_labelled(data_root, cache_dir, WORD_SETS, max_files)]


def load_dev_noisy_words(data_root: Path, cache_dir: Path, max_files: int | None = None, seed: int = 5) -> list:
    """Short dev words (:data:`NOISY_WORD_SETS`) in real dev noise at 0, 5 or 10 dB (in turn),
    labelled at word level by the teacher on the clean recording; a fixed seed picks the noise."""
    from vadstream.training.data import LabelledAudio, fit_noise, list_audio, load_audio, mix_at_snr

    noise_paths = [p for name in NOISY_WORD_NOISE for p in list_audio(data_root / "dev" / "nonspeech" / name)]
    if not noise_paths:
        return []
    rng = np.random.default_rng(seed)
    items = []
    for k, (p, x, speech) in enumerate(_teacher_labelled(data_root, cache_dir, NOISY_WORD_SETS, max_files)):
        snr = NOISY_WORD_SNRS_DB[k % len(NOISY_WORD_SNRS_DB)]
        noise = fit_noise(load_audio(noise_paths[int(rng.integers(len(noise_paths)))]), x.size, rng)
        if not speech.any():
            continue
        items.append(LabelledAudio(name=f"{p.parent.name}/{p.stem}-{snr:g}dB", speech=speech, snr_db=snr,
                                   audio=mix_at_snr(x, speech, noise, snr)))
    return items


def nonspeech_summary(runs: Sequence, name: str) -> dict:
    from vadstream.evaluation.evaluate import false_starts_per_hour

    probs = np.concatenate([r.probs for r in runs]) if runs else np.zeros(0)
    out = {"hours": sum(r.n_samples for r in runs) / 16000 / 3600,
           "hops_over_half": float(np.mean(probs >= 0.5)) if probs.size else float("nan"),
           "false_starts_per_hour": false_starts_per_hour(runs)}
    if name == "vadstream":
        from vadstream.evaluation.evaluate import COMMON_RULE

        out["false_starts_per_hour_common_rule"] = false_starts_per_hour(runs, rule=COMMON_RULE)
    return out


COSWARA_TAG = "-coswara-"  # dev non-speech items of Coswara (breath, coughs): also reported alone
SET_PREFIX = "set:"  # condition names of real sets inside run_all's conditions


def real_sets(data_root: Path, cache_dir: Path, quick: bool = False, log=None) -> dict[str, list]:
    """``set:<name>`` -> items of the real sets present (the teacher-labelled set needs the train
    extra and the teacher model; without them it is left out with one logged line)."""
    out: dict[str, list] = {}
    ami = load_ami(data_root)
    if ami:
        out[SET_PREFIX + "ami"] = ami[:4] if quick else ami
    for name, loader in (("dev recorded", load_dev_recorded), ("dev words", load_dev_words),
                         ("dev noisy words", load_dev_noisy_words)):
        try:
            items = loader(data_root, cache_dir, 40 if quick else None)
        except (ImportError, FileNotFoundError) as exc:
            if log:
                log(f"  {name} (teacher labels) left out: {exc}")
            items = []
        if items:
            out[SET_PREFIX + name] = items
    return out


def real_report(results: dict, conditions: dict[str, list], groups: dict[str, list[str]] | None = None,
                ci: bool = True) -> dict:
    """Streaming and offline-aligned figures from run_all's results.

    ``groups``: report name -> condition keys scored together (default: every ``set:`` condition
    on its own); 'non-speech' runs, if present, give the non-speech block."""
    if groups is None:
        groups = {c[len(SET_PREFIX):]: [c] for c in conditions if c.startswith(SET_PREFIX)}
    report: dict = {"sets": {}, "non-speech": {}}
    for name, by_cond in results.items():
        for group, conds in groups.items():
            scored = Scored([], [], [])
            for c in conds:
                part = score_runs(conditions[c], by_cond[c])
                scored.labels += part.labels
                scored.streaming += part.streaming
                scored.aligned += part.aligned
            report["sets"].setdefault(group, {})[name] = summarise(scored, ci=ci)
        if by_cond.get("non-speech"):
            report["non-speech"][name] = nonspeech_summary(by_cond["non-speech"], name)
            coswara = [r for r in by_cond["non-speech"] if COSWARA_TAG in r.name]
            if coswara:
                report.setdefault("non-speech coswara", {})[name] = nonspeech_summary(coswara, name)
    return report


def render(report: dict) -> str:
    lines = []
    for set_name, by_vad in report["sets"].items():
        any_v = next(iter(by_vad.values()))
        lines.append(f"\n### {set_name} ({any_v['files']} files, {any_v['minutes']:.1f} min)\n")
        lines.append("| VAD | ROC-AUC streaming (95 % CI) | AP streaming (95 % CI) | F1@0.5 | recall@0.5 | FPR@0.5 "
                     "| ROC-AUC / AP offline-aligned |")
        lines.append("|---|---|---|---|---|---|---|")
        for vad, r in by_vad.items():
            s, a, ci = r["streaming"], r["aligned"], r.get("streaming_ci")
            auc_ci = f" ({ci['roc_auc'][0]:.3f}-{ci['roc_auc'][1]:.3f})" if ci else ""
            ap_ci = f" ({ci['ap'][0]:.3f}-{ci['ap'][1]:.3f})" if ci else ""
            lines.append(f"| {vad} | {s['roc_auc']:.3f}{auc_ci} | {s['ap']:.3f}{ap_ci} | {s['f1']:.3f} | "
                         f"{s['recall']:.3f} | {s['fpr']:.3f} | {a['roc_auc']:.3f} / {a['ap']:.3f} |")
    for key in ("non-speech", "non-speech coswara"):
        lines += _render_nonspeech(key, report.get(key) or {})
    return "\n".join(lines)


def _render_nonspeech(key: str, ns: dict) -> list[str]:
    lines: list[str] = []
    if ns:
        any_v = next(iter(ns.values()))
        what = "dev non-speech" if key == "non-speech" else "of it Coswara breath and coughs"
        lines.append(f"\n### {key} ({any_v['hours'] * 60:.1f} min {what})\n")
        lines.append("| VAD | false starts per hour | hops >= 0.5 |")
        lines.append("|---|---|---|")
        for vad, r in ns.items():
            extra = (f" (common rule: {r['false_starts_per_hour_common_rule']:.0f})"
                     if "false_starts_per_hour_common_rule" in r else "")
            lines.append(f"| {vad} | {r['false_starts_per_hour']:.0f}{extra} | {100 * r['hops_over_half']:.1f} % |")
    return lines

