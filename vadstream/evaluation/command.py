"""``vadstream evaluate``: dev mixtures (:mod:`vadstream.evaluation.evaluate`) and the real-world
sets (:mod:`vadstream.evaluation.realworld`), every VAD in the same run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vadstream.evaluation import realworld
from vadstream.evaluation.evaluate import (
    COMMON_RULE,
    DEFAULT_SEED,
    DEFAULT_SNRS,
    REPO,
    condition_name,
    default_data_root,
    evaluation_table,
    is_mixture,
    load_dev,
    render_evaluation,
    run_all,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=Path, default=None,
                        help="corpus root with dev/{speech,nonspeech} (default: $VADSTREAM_DATA or ../shared/data)")
    parser.add_argument("--model", type=Path, default=None, help="vadstream ONNX model (default: the shipped one)")
    parser.add_argument("--quick", action="store_true", help="a few clips at two SNRs (CI smoke run)")
    parser.add_argument("--split", default="dev", help="corpus split to evaluate on (default: dev)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"mixing seed (default {DEFAULT_SEED})")
    parser.add_argument("--peers", default="vadstream,silero,ten,webrtc-3",
                        help="comma-separated VADs (vadstream, silero, ten, webrtc-0..3)")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "cache",
                        help="teacher labels of the dev recordings are cached under CACHE/teacher")
    parser.add_argument("--json", type=Path, default=None, help="also write the real-world report as JSON")
    parser.add_argument("--no-ci", dest="ci", action="store_false",
                        help="skip the bootstrap intervals (minutes per VAD on the full dev split): quick grid rows")


def main(args: argparse.Namespace) -> int:
    from vadstream.evaluation.peers import available_peers

    data_root = args.data_root or default_data_root()
    if not (Path(data_root) / args.split).is_dir():
        print(f"vadstream evaluate: no '{args.split}' split under {data_root} (use --data-root)", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.peers.split(",") if n.strip()]
    peers, skipped = available_peers(names, model=args.model)
    if "vadstream" in names and "vadstream" not in peers:
        print(f"vadstream evaluate: {skipped['vadstream']}", file=sys.stderr)
        return 2
    snrs = (0.0, None) if args.quick else DEFAULT_SNRS
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    conditions = load_dev(data_root, snrs, args.seed, args.split, max_items=2 if args.quick else None,
                          max_nonspeech=4 if args.quick else None)
    mixtures = [k for k in conditions if is_mixture(k)]
    conditions.update(realworld.real_sets(Path(data_root), args.cache_dir, args.quick, log))
    n_mix = sum(len(conditions[k]) for k in mixtures)
    mix_s = sum(it.audio.size for k in mixtures for it in conditions[k]) / 16000
    ns_s = sum(it.audio.size for it in conditions.get("non-speech", [])) / 16000
    print(f"# vadstream evaluate: {args.split} split of {data_root}\n")
    print(f"{n_mix} mixtures ({mix_s / 60:.1f} min) at SNRs {', '.join(condition_name(s) for s in snrs)}, "
          f"seed {args.seed}; {len(conditions.get('non-speech', []))} non-speech clips ({ns_s / 60:.1f} min). "
          "Labels from clean speech, per hop at the hop centre.", flush=True)
    results = run_all(peers, conditions, log=log)
    thresholds = {n: getattr(p, "default_threshold", 0.5) for n, p in peers.items()}
    rows = evaluation_table(results, thresholds)
    print("\n## Dev mixtures, offline-aligned (each hop scored with its own probability)\n")
    print(render_evaluation(rows))
    print(f"\nP/R/F1/FPR at each VAD's default threshold (0.5 for all; WebRTC is binary). False starts per "
          f"hour on the non-speech clips: vadstream through its Detector with default settings; peers with "
          f"the common rule ({COMMON_RULE.describe()}); onset / offset medians on the mixtures under the same rules, "
          f"from the true onset to when a streaming caller learns of the event.")
    groups = {"dev mixtures": mixtures, **{c[4:]: [c] for c in conditions if c.startswith("set:")}}
    report = realworld.real_report(results, conditions, groups, ci=args.ci and not args.quick)
    print("\n## Streaming protocol (what a real-time caller sees) and real recordings\n")
    print(realworld.PROTOCOL)
    print(realworld.render(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"mixtures_offline_aligned": rows, **report}, indent=1, default=float))
    for name, reason in skipped.items():
        print(f"- {name} skipped: {reason}")
    return 0
