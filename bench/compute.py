"""Compute cost (section compute): single-thread CPU time per second of audio, streamed as a live caller.

Each VAD gets the same audio in its natural live chunks: peers one hop per call (Silero 512
samples, TEN 256, WebRTC 480); vadstream's full pipeline (``Vad.process`` = MFCC + ONNX, then
``Detector.process``) in 20 ms and in 40 ms chunks. CPU time is the calling thread's
(``time.thread_time_ns``) around each call; ONNX Runtime runs one thread without spinning, so
that is all the work. Rounds interleave the VADs so that they share the machine's noise; the
vadstream/Silero ratio is taken within each round and its median reported.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from vadstream.evaluation import evaluate

from . import report


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def bench_audio(args, seconds: float) -> tuple[np.ndarray, str]:
    """A dev mixture at 10 dB (speech and noise) if the corpus is there, else generated audio."""
    data_root = Path(args.data_root) if args.data_root else evaluate.default_data_root()
    if (data_root / "dev").is_dir() and not args.quick:
        from vadstream.training.data import build_eval_set

        items = build_eval_set(data_root, "dev", snr_db=10.0, seed=evaluate.DEFAULT_SEED)
        audio = np.concatenate([i.audio for i in items])[: int(seconds * 16000)]
        return audio.astype(np.float32), f"{audio.size / 16000:.0f} s of dev mixtures at 10 dB SNR"
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.02 * rng.standard_normal(t.size) + 0.1 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    return x.astype(np.float32), f"{seconds:.0f} s of generated noise and tone"


def time_calls(fn, chunks: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """Per-call thread CPU ns and the total over the loop."""
    clock = time.thread_time_ns
    durs = np.empty(len(chunks), dtype=np.int64)
    t_start = clock()
    for i, c in enumerate(chunks):
        a = clock()
        fn(c)
        durs[i] = clock() - a
    return durs, clock() - t_start


def run(args) -> list[str]:
    from vadstream.evaluation.peers import available_peers

    seconds = 3.0 if args.quick else 60.0
    rounds = 1 if args.quick else 5
    audio, what = bench_audio(args, seconds)
    names = [n for n in (args.peers or "vadstream,silero,ten,webrtc-3").split(",") if n]
    peers, skipped = available_peers(names, model=args.model)
    # (label, peer, chunk samples, callable-maker)
    cases = []
    for name, peer in peers.items():
        if name == "vadstream":
            cases.append(("vadstream (20 ms chunks)", peer, 320))
            cases.append(("vadstream (40 ms chunks)", peer, 640))
        else:
            cases.append((name, peer, peer.hop_samples))
    per_case: dict[str, dict] = {c[0]: {"cpu_per_s": [], "durs": []} for c in cases}
    for rnd in range(rounds):
        order = cases[rnd % len(cases):] + cases[: rnd % len(cases)]
        for label, peer, chunk in order:
            n = audio.size // chunk
            chunks = [audio[i * chunk:(i + 1) * chunk] for i in range(n)]
            fn = peer.process if label.startswith("vadstream") else peer.process_hop
            peer.reset()
            for c in chunks[: max(1, int(0.5 * 16000 / chunk))]:  # warm-up: caches, lazy ORT init
                fn(c)
            peer.reset()
            durs, total = time_calls(fn, chunks)
            per_case[label]["cpu_per_s"].append(total / 1e9 / (n * chunk / 16000))
            per_case[label]["durs"].append(durs)
            per_case[label]["chunk"] = chunk
    ratios = {}
    sil = per_case.get("silero")
    for label, d in per_case.items():
        if label.startswith("vadstream") and sil:
            ratios[label] = float(np.median(np.array(d["cpu_per_s"]) / np.array(sil["cpu_per_s"])))
    header = ["VAD", "call = audio", "CPU s per audio s (median of rounds)", "min of rounds", "µs per call median",
              "µs per call p99", "µs per 20 ms of audio", "vs Silero (same round)"]
    rows = []
    data = {"audio": what, "rounds": rounds, "cases": {}, "skipped": skipped}
    for label, d in per_case.items():
        durs = np.concatenate(d["durs"]) / 1000.0
        cps = np.array(d["cpu_per_s"])
        row = {"chunk_ms": d["chunk"] / 16, "cpu_per_audio_s_median": float(np.median(cps)),
               "cpu_per_audio_s_min": float(cps.min()), "us_per_call_median": float(np.median(durs)),
               "us_per_call_p99": float(np.percentile(durs, 99)),
               "us_per_20ms": float(np.median(cps)) * 20000.0, "ratio_vs_silero": ratios.get(label)}
        data["cases"][label] = row
        rows.append([label, f"{row['chunk_ms']:g} ms", f"{row['cpu_per_audio_s_median']:.5f}",
                     f"{row['cpu_per_audio_s_min']:.5f}", f"{row['us_per_call_median']:.1f}",
                     f"{row['us_per_call_p99']:.1f}", f"{row['us_per_20ms']:.1f}",
                     f"{ratios[label]:.2f}" if label in ratios else ("1" if label == "silero" else "–")])
    lines = ["## Compute (single thread, streamed as a live caller)\n",
             f"{what}, {rounds} interleaved rounds. Thread CPU time (`time.thread_time_ns`) around each call; "
             "peers are called once per hop with exactly one hop of samples, vadstream's whole pipeline "
             "(MFCC + ONNX + Detector) with 20 ms or 40 ms chunks (it scores two 20 ms hops per ONNX call and "
             "runs the MFCC only when a call is due, so with 20 ms chunks every other call does the work). "
             "Silero runs its ONNX file through ONNX Runtime with the same session options and the same call "
             "path as vadstream (an IO binding on fixed buffers; one thread, no spinning). "
             "The ratio is vadstream's CPU per audio second over Silero's, measured in the same round "
             "(median over rounds).\n"]
    lines.append(evaluate.markdown_table(header, rows) + "\n")
    for name, reason in skipped.items():
        lines.append(f"- **{name} not measured**: {reason}")
    md = "\n".join(lines) + "\n"
    report.save_section(Path(args.out), "compute", data, md, report.command_line())
    return [md]
