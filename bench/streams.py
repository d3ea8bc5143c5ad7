"""Many streams (section streams): streams served in real time on one core, and RSS per stream.

For 1, 10, 100 and 1000 streams of 16 kHz audio, three ways, each in a fresh child process
(``python -m bench.streams WAY N SECONDS``) with one thread everywhere (ONNX Runtime sessions
single-threaded, ``OPENBLAS_NUM_THREADS=1``):

- ``multistream``: one :class:`~vadstream.stages.multistream.MultiStream` (one session, one ONNX
  call per step for all streams);
- ``stream``: one vadstream :class:`~vadstream.stages.stream.Stream` per stream (a session each);
- ``silero``: one Silero VAD ONNX session per stream, through the bench's Silero wrapper
  (:class:`~vadstream.evaluation.peers.SileroPeer`: ``OnnxWrapper``'s call on an IO binding, one
  thread, no torch; faster than ``OnnxWrapper`` itself, so the comparison favours Silero).

Every stream gets its own noise signal in 40 ms blocks (one block per stream per step, as a server
receives them). CPU: the child's process time for ``SECONDS`` of audio on every stream, the best
of three passes (a shared machine: the minimum is the least disturbed); streams per core = N x
SECONDS / CPU seconds. RSS: the child's resident set after the imports (and, for multistream, the
shared session) and again after its streams ran; per stream = the difference / N, and the slope
between two sizes says what one more stream costs. A way whose projected RSS at the next size
(its per-stream RSS at the size before) passes ``MAX_PROJECTED_GB`` is not run there (the machine
is shared); the table gives the projection instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from . import report

SIZES = (1, 10, 100, 1000)
WAYS = ("multistream", "stream", "silero")
BLOCK = 640  # 40 ms
SECONDS = 4.0
REPEATS = 3
MAX_PROJECTED_GB = 6.0
TARGET_RATIO = 5.0  # issue 19: at 100 streams, >= 5x the streams per core of a Silero session per stream
TARGET_RSS_MB = 1.0  # issue 19: RSS per added stream under 1 MB


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise OSError("no VmRSS in /proc/self/status")


def child(way: str, n: int, seconds: float, model: str | None) -> dict:
    import numpy as np

    from vadstream.evaluation.peers import SileroPeer, silero_onnx_path
    from vadstream.stages.multistream import MultiStream
    from vadstream.stages.stream import Stream

    rng = np.random.default_rng(n)
    total = int(seconds * 16000) // BLOCK * BLOCK
    audio = (0.05 * rng.standard_normal((n, total))).astype(np.float32)
    step = None
    if way == "multistream":
        engine = MultiStream(model)
        base = rss_kb()
        for i in range(n):
            engine.add(i)

        def step(k: int) -> None:
            engine.process({i: audio[i, k:k + BLOCK] for i in range(n)})
    elif way == "stream":
        Stream(model)  # ONNX Runtime's one-off start, as the others have it in the base
        base = rss_kb()
        streams = [Stream(model) for _ in range(n)]

        def step(k: int) -> None:
            for i, s in enumerate(streams):
                s.process(audio[i, k:k + BLOCK])
    else:
        path = silero_onnx_path()
        SileroPeer(path)
        base = rss_kb()
        peers = [SileroPeer(path) for _ in range(n)]

        def step(k: int) -> None:
            for i, p in enumerate(peers):
                p.process(audio[i, k:k + BLOCK])
    cpu = []
    for _ in range(REPEATS):
        t = time.process_time()
        for k in range(0, total, BLOCK):
            step(k)
        cpu.append(time.process_time() - t)
    return {"streams": n, "audio_s": total / 16000, "cpu_s": min(cpu), "cpu_s_all": cpu, "rss_base_kb": base,
            "rss_kb": rss_kb(), "streams_per_core": n * total / 16000 / min(cpu),
            "rss_per_stream_mb": (rss_kb() - base) / 1024 / n}


def measure(way: str, n: int, seconds: float, model: str | None) -> dict:
    cmd = [sys.executable, "-m", "bench.streams", way, str(n), str(seconds)]
    cmd += ["--model", str(model)] if model else []
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=report.REPO, timeout=1800, env=env)
    if res.returncode != 0:
        return {"skipped": f"child failed: {(res.stderr.strip().splitlines() or ['?'])[-1]}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def run(args) -> list[str]:
    from vadstream.evaluation import evaluate

    sizes = (1, 10) if args.quick else SIZES
    seconds = 0.5 if args.quick else SECONDS
    results: dict[str, dict[int, dict]] = {w: {} for w in WAYS}
    for n in sizes:
        for way in WAYS:
            before = [r for r in results[way].values() if "rss_per_stream_mb" in r]
            if before:
                projected_gb = before[-1]["rss_per_stream_mb"] * n / 1024
                if projected_gb > MAX_PROJECTED_GB:
                    results[way][n] = {"skipped": f"projected {projected_gb:.1f} GB (over {MAX_PROJECTED_GB:g} GB)",
                                       "projected_gb": projected_gb}
                    continue
            print(f"bench streams: {way} x {n}", file=sys.stderr, flush=True)
            results[way][n] = measure(way, n, seconds, args.model)

    def per_core(way: str, n: int) -> str:
        r = results[way].get(n, {})
        return f"{r['streams_per_core']:.0f}" if "streams_per_core" in r else f"not run ({r.get('skipped', '?')})"

    def rss(way: str, n: int) -> str:
        r = results[way].get(n, {})
        return f"{r['rss_per_stream_mb']:.3f}" if "rss_per_stream_mb" in r else "–"

    rows, ratios = [], {}
    for n in sizes:
        ms, si = results["multistream"].get(n, {}), results["silero"].get(n, {})
        both = "streams_per_core" in ms and "streams_per_core" in si
        ratio = ms["streams_per_core"] / si["streams_per_core"] if both else None
        ratios[n] = ratio
        rows.append([str(n), per_core("multistream", n), per_core("stream", n), per_core("silero", n),
                     f"{ratio:.1f}x" if ratio else "–", rss("multistream", n), rss("stream", n), rss("silero", n)])
    slopes = {}
    for way in WAYS:
        done = [(n, r) for n, r in results[way].items() if "rss_kb" in r]
        if len(done) >= 2:
            (n0, r0), (n1, r1) = done[-2], done[-1]
            slopes[way] = ((r1["rss_kb"] - r1["rss_base_kb"]) - (r0["rss_kb"] - r0["rss_base_kb"])) / 1024 / (n1 - n0)
    at = 100 if 100 in ratios else sizes[-1]
    checks = [f"at {at} streams: MultiStream serves {ratios[at]:.1f}x the streams per core of a Silero session per "
              f"stream (target {TARGET_RATIO:g}x: {'met' if ratios[at] >= TARGET_RATIO else 'NOT met'})"
              if ratios.get(at) else f"at {at} streams: no ratio (a way was not run)"]
    if "multistream" in slopes:
        ms_slope = slopes["multistream"]
        checks.append(f"MultiStream RSS per added stream {ms_slope * 1024:.0f} KB (target < {TARGET_RSS_MB:g} MB: "
                      f"{'met' if ms_slope < TARGET_RSS_MB else 'NOT met'})")
    head = ["streams", "MultiStream streams/core", "Stream per stream", "Silero session per stream",
            "MultiStream / Silero", "MultiStream RSS MB/stream", "Stream RSS MB/stream", "Silero RSS MB/stream"]
    slope_text = ", ".join(f"{w} {v * 1024:.0f} KB" for w, v in slopes.items())
    lines = ["## Many streams on one machine (`python -m bench streams`)\n",
             f"N streams of 16 kHz noise in 40 ms blocks, {seconds:g} s each, best of {REPEATS} passes, one thread "
             "(ONNX Runtime and BLAS), each way and size in a fresh process: **streams served in real time per "
             "core** = N x audio seconds / CPU seconds. MultiStream: one session, one ONNX call per step for all "
             "streams; Stream: one vadstream `Stream` (own session) per stream; Silero: one Silero ONNX session per "
             "stream through the bench's wrapper (`OnnxWrapper`'s call on an IO binding, no torch). RSS per stream: "
             "(RSS after the run - RSS after imports and the shared session) / N. A size whose projected RSS passes "
             f"{MAX_PROJECTED_GB:g} GB is not run (shared machine).\n",
             evaluate.markdown_table(head, rows) + "\n",
             f"RSS per added stream (slope between the two largest sizes run): {slope_text}.\n",
             "Issue 19's targets: " + "; ".join(checks) + ".\n"]
    md = "\n".join(lines)
    report.save_section(Path(args.out), "streams", {"results": results, "ratios": ratios, "rss_slope_mb": slopes},
                        md, report.command_line())
    return [md]


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("way", choices=WAYS)
    p.add_argument("n", type=int)
    p.add_argument("seconds", type=float)
    p.add_argument("--model", default=None)
    a = p.parse_args()
    print(json.dumps(child(a.way, a.n, a.seconds, a.model)))
