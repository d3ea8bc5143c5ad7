"""Checks on the TRAIN split's validation slice (never ``dev``): labels against Silero VAD, and a
model against Silero on validation mixtures, per condition.

    python -m vadstream.evaluation.checks labels            # speech_mask vs Silero on clean clips
    python -m vadstream.evaluation.checks compare [MODEL]   # AUC/AP per SNR, model vs Silero
    python -m vadstream.evaluation.checks speed [MODEL]     # µs per inference, CPU per audio second

Used while developing (model choices, label parameters); the honest numbers are ``vadstream
evaluate`` on ``dev``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from vadstream.evaluation.metrics import average_precision, roc_auc
from vadstream.training.data import concat_utterances, fit_noise, load_audio, mix_at_snr, speech_mask
from vadstream.training.scenes import corpus_paths
from vadstream.training.train import DEFAULT_DATA


def hop_probs(vad, audio: np.ndarray) -> tuple[np.ndarray, int]:
    """Offline probabilities of a vadstream Vad or a peer (all of ``audio`` in one call, then the
    flush), and its hop size in samples."""
    from vadstream.evaluation.peers import stream

    return stream(vad, audio, chunk_samples=max(audio.size, 1))[0], vad.hop_samples


def centre_labels(speech: np.ndarray, n: int, hop: int) -> np.ndarray:
    return speech[np.minimum(np.arange(n) * hop + hop // 2, speech.size - 1)]


def check_labels(data_root: Path, limit: int) -> None:
    from vadstream.evaluation.peers import SileroPeer

    silero = SileroPeer()
    speech, _ = corpus_paths(data_root, [], [], "val")
    by_set: dict[str, list] = {}
    for p in speech[:limit]:
        x = load_audio(p)
        x = np.concatenate([np.zeros(8000, np.float32), x, np.zeros(8000, np.float32)])
        mask = speech_mask(x)
        probs, hop = hop_probs(silero, x)
        lab = centre_labels(mask, probs.size, hop)
        by_set.setdefault(p.parent.name, []).append((lab, probs))
    print("set          clips  label-speech  silero>0.5  agree  silero-AUC-vs-labels")
    for name, rows in sorted(by_set.items()):
        lab = np.concatenate([r[0] for r in rows])
        pr = np.concatenate([r[1] for r in rows])
        print(f"{name:12s} {len(rows):5d}  {lab.mean():12.3f}  {np.mean(pr > 0.5):10.3f}  "
              f"{np.mean(lab == (pr > 0.5)):5.3f}  {roc_auc(lab, pr):.3f}")


def compare(data_root: Path, model: str | None, snrs=(-5.0, 0.0, 10.0, None), seed: int = 7) -> None:
    from vadstream.evaluation.peers import SileroPeer
    from vadstream.stages.vad import Vad

    vads = {"vadstream": Vad(model), "silero": SileroPeer()}
    speech, noise = corpus_paths(data_root, [], [], "val")
    rng = np.random.default_rng(seed)
    groups = [speech[i:i + 8] for i in range(0, len(speech), 8)]
    clean_items = [concat_utterances((load_audio(p) for p in g), rng) for g in groups]
    noises = [load_audio(p) for p in noise]
    rows = []
    for snr in snrs:
        items = []
        for k, (clean, mask) in enumerate(clean_items):
            if snr is None:
                items.append((clean, mask))
            else:
                n = fit_noise(noises[k % len(noises)], clean.size, np.random.default_rng([seed, k]))
                items.append((mix_at_snr(clean, mask, n, snr), mask))
        rows.append(("clean" if snr is None else f"{snr:g} dB", items))
    rows.append(("non-speech", [(x, np.zeros(x.size, bool)) for x in noises]))
    print(f"{'condition':12s} " + "  ".join(f"{n + ' AUC':>14s} {n + ' AP':>12s} {'FPR@.5':>7s}" for n in vads))
    speech_rows = {n: ([], []) for n in vads}
    for cond, items in rows:
        line = f"{cond:12s} "
        for name, vad in vads.items():
            labs, prs = [], []
            for audio, mask in items:
                p, hop = hop_probs(vad, audio)
                labs.append(centre_labels(mask, p.size, hop))
                prs.append(p)
            lab, pr = np.concatenate(labs), np.concatenate(prs)
            if cond != "non-speech":
                speech_rows[name][0].append(lab)
                speech_rows[name][1].append(pr)
            fpr = float(np.mean(pr[~lab] > 0.5)) if (~lab).any() else float("nan")
            line += f"  {roc_auc(lab, pr):14.4f} {average_precision(lab, pr):12.4f} {fpr:7.3f}"
        print(line, flush=True)
    line = f"{'all mixtures':12s} "
    for name in vads:
        lab, pr = np.concatenate(speech_rows[name][0]), np.concatenate(speech_rows[name][1])
        line += f"  {roc_auc(lab, pr):14.4f} {average_precision(lab, pr):12.4f} {np.mean(pr[~lab] > 0.5):7.3f}"
    print(line)


def speed(model: str | None, seconds: float = 60.0, rounds: int = 5) -> None:
    """Single-thread cost: one ONNX call (min of interleaved repeats) and the whole streaming
    pipeline (MFCC + windows + ONNX) per second of audio fed in 40 ms blocks, next to Silero."""
    import time
    import timeit

    from vadstream.stages.model import OnnxModel
    from vadstream.stages.vad import Vad

    onnx = OnnxModel(model)
    x = np.random.default_rng(0).standard_normal((1, onnx.spec.context_frames, onnx.spec.features.numcep))
    x = x.astype(np.float32)
    # a streaming model's call: the new frames of one hop group (its state moves on); else one window
    call = (lambda: onnx.stream(x[0])) if onnx.spec.streaming else (lambda: onnx(x))
    best_call = min(timeit.timeit(call, number=2000, timer=time.process_time) / 2000
                    for _ in range(rounds * 4))
    audio = (np.random.default_rng(1).standard_normal(int(seconds * 16000)) * 0.05).astype(np.float32)
    block = 640

    def pipeline_cost(vad) -> float:
        best = float("inf")
        for _ in range(rounds):
            vad.reset()
            t0 = time.process_time()
            for i in range(0, audio.size, block):
                vad.process(audio[i:i + block])
            best = min(best, (time.process_time() - t0) / seconds)
        return best

    ours = pipeline_cost(Vad(model))
    print(f"vadstream ONNX call: {best_call * 1e6:.1f} us CPU (min of {rounds * 4} x 2000 calls, 1 thread)")
    print(f"vadstream pipeline: {ours * 1e3:.2f} ms CPU per audio second (40 ms blocks, min of {rounds})")
    try:
        from vadstream.evaluation.peers import SileroPeer

        sil = pipeline_cost(SileroPeer())
        print(f"silero pipeline:    {sil * 1e3:.2f} ms CPU per audio second; ratio vadstream/silero {ours / sil:.2f}")
    except Exception as exc:  # the peer is optional here
        print(f"silero not measured: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vadstream.evaluation.checks", description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("labels", "compare", "speed"))
    parser.add_argument("model", nargs="?", default=None)
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=400)
    args = parser.parse_args(argv)
    if args.what == "labels":
        check_labels(args.data_root, args.limit)
    elif args.what == "speed":
        speed(args.model)
    else:
        compare(args.data_root, args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
