"""Per-file ROC-AUC on the human-labelled ``dev/labelled/ami`` recordings, vadstream models next
to Silero VAD, with each file's speech and non-speech level: where a pooled figure hides which
recordings a model loses on (the model card's development log uses it).

    python -m vadstream.evaluation.perfile models/vadstream.onnx [OTHER.onnx ...] [--data-root DIR]

Offline-aligned (each 10 ms frame scored with the probability of its hop); files with only one
class are listed without a score.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vadstream.evaluation import metrics, realworld
from vadstream.evaluation.evaluate import default_data_root


def level_dbfs(x: np.ndarray, frames: np.ndarray) -> float:
    """Mean power in dBFS of the 10 ms grid frames selected by ``frames``."""
    grid = x[: frames.size * realworld.GRID].reshape(-1, realworld.GRID)[frames]
    return float(10 * np.log10(np.mean(grid.astype(np.float64) ** 2) + 1e-12)) if grid.size else float("nan")


def main(argv: list[str] | None = None) -> int:
    from vadstream.evaluation.peers import available_peers, stream
    from vadstream.stages.vad import Vad

    parser = argparse.ArgumentParser(prog="python -m vadstream.evaluation.perfile", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="vadstream ONNX models")
    parser.add_argument("--data-root", type=Path, default=None, help="corpus root (default: ../shared/data)")
    args = parser.parse_args(argv)
    items = realworld.load_ami(Path(args.data_root or default_data_root()))
    if not items:
        parser.error("no dev/labelled/ami recordings under the data root")
    peers, skipped = available_peers(["silero"])
    vads = [(m.name, Vad(m)) for m in args.models]
    names = [n for n, _ in vads] + (["silero"] if "silero" in peers else [])
    print("| file | speech share | speech dBFS | non-speech dBFS | " + " | ".join(names) + " |")
    print("|---" * (4 + len(names)) + "|")
    for item in items:
        lab = realworld.grid_labels(item.speech)
        scores = [realworld.aligned_scores(vad(item.audio), vad.hop_samples, lab.size) for _, vad in vads]
        if "silero" in peers:
            probs, _ = stream(peers["silero"], item.audio)
            scores.append(realworld.aligned_scores(probs, peers["silero"].hop_samples, lab.size))
        both = lab.any() and not lab.all()
        cells = [f"{metrics.roc_auc(lab, s):.3f}" if both else "–" for s in scores]
        levels = f"{level_dbfs(item.audio, lab):.0f} | {level_dbfs(item.audio, ~lab):.0f}"
        print(f"| {item.name} | {lab.mean():.2f} | {levels} | " + " | ".join(cells) + " |")
    if "silero" not in peers:
        print(f"\nsilero skipped: {skipped.get('silero')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
