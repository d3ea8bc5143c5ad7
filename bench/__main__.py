"""``python -m bench [accuracy|compute|memory|streams|latency|daemon|audio|all] [--quick] [options]``.

- accuracy: per-hop ROC-AUC/AP/P/R/F1 of every VAD on dev mixtures (+ labelled folders), the
  offline event latency of every VAD under a common smoothing rule, and the detector-default
  tuning (tune half / test half); writes pr_curves.png and latency.png.
- compute: single-thread CPU per audio second and µs per call, vadstream/Silero ratio.
- memory: peak RSS of a fresh process per VAD over a baseline.
- streams: streams served in real time per core and RSS per stream for 1-1000 streams: one
  MultiStream, a Stream per stream, a Silero session per stream.
- latency / daemon: the real daemon (``vadstream run``) fed through a PulseAudio source in real
  time; events over ZeroMQ; delays, false starts per hour, CPU % and RSS.
- audio: the daemon's CPU % and RSS without and with speech audio subscribers (``audio.``).
- all: everything above.

Every run rebuilds ``RESULTS.md`` in ``--out`` (default: this folder) from ``results/*.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", default="all",
                   choices=["accuracy", "compute", "memory", "streams", "latency", "daemon", "audio", "all"])
    p.add_argument("--quick", action="store_true", help="a few-seconds smoke run (checks the code, not timings)")
    p.add_argument("--out", type=Path, default=HERE, help="where RESULTS.md, plots and results/ go (default: bench/)")
    p.add_argument("--data-root", type=Path, default=None,
                   help="corpus root (default: $VADSTREAM_DATA or ../shared/data)")
    p.add_argument("--labelled", type=Path, action="append", default=[],
                   help="folder of *.wav with label files (start,end lines or TEN .scv); repeatable")
    p.add_argument("--model", type=Path, default=None, help="vadstream model (default: models/vadstream.onnx)")
    p.add_argument("--cache-dir", type=Path, default=HERE.parent / "cache",
                   help="teacher labels of the dev recordings are cached under CACHE/teacher")
    p.add_argument("--peers", default=None,
                   help="comma-separated VADs (default: vadstream,silero,ten,webrtc-0..3 for accuracy; "
                        "vadstream,silero,ten,webrtc-3 for compute/memory)")
    p.add_argument("--seed", type=int, default=None, help="mixing seed (default: vadstream evaluate's)")
    p.add_argument("--detector", choices=["defaults", "recommended"], default="defaults",
                   help="daemon: run it with DetectorConfig's defaults, or with the settings recommended by "
                        "the last tuning (results/tuning.json) passed as flags")
    p.add_argument("--nonspeech-minutes", type=float, default=10.0,
                   help="daemon latency: minutes of non-speech to play for false starts (default 10)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vadstream.evaluation import evaluate

    if args.seed is None:
        args.seed = evaluate.DEFAULT_SEED
    args.out.mkdir(parents=True, exist_ok=True)
    from . import report

    steps = ["accuracy", "compute", "memory", "streams", "daemon", "audio"] if args.what == "all" else [args.what]
    texts: list[str] = []
    for step in steps:
        print(f"bench: {step}", file=sys.stderr, flush=True)
        if step == "accuracy":
            from . import accuracy

            texts += accuracy.run(args)
        elif step == "compute":
            from . import compute

            texts += compute.run(args)
        elif step == "memory":
            from . import memory

            texts += memory.run(args)
        elif step == "streams":
            from . import streams

            texts += streams.run(args)
        elif step in ("latency", "daemon"):
            from . import daemon

            texts += daemon.run(args)
        elif step == "audio":
            from . import audio

            texts += audio.run(args)
    path = report.rebuild(args.out, args.model)
    print("\n".join(texts))
    print(f"bench: wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
