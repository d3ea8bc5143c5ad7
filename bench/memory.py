"""Memory (section memory): peak RSS of a fresh process running only one VAD, minus a baseline.

The child (``python -m bench.memory NAME``) imports numpy, builds one VAD, streams 10 s of audio
through it and prints its peak RSS: ``VmHWM`` from ``/proc/self/status`` where there is one (Linux).
Not ``ru_maxrss``: Linux carries the peak of the forked parent across ``exec`` into it, so a child
of a big bench process (the accuracy section holds ~1 GB) would report the parent's size. The
baseline child does the same with no VAD (Python + numpy + the audio), so the difference is what
the VAD itself costs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from . import report

CHILD_SECONDS = 10.0


def peak_rss_kb() -> int:
    """This process's peak resident set in KiB (VmHWM; ``ru_maxrss`` where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def child(name: str, model: str | None) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    audio = (0.05 * rng.standard_normal(int(CHILD_SECONDS * 16000))).astype(np.float32)
    if name != "baseline":
        from vadstream.evaluation.peers import available_peers

        peers, skipped = available_peers([name], model=model)
        if name not in peers:
            print(json.dumps({"skipped": skipped.get(name, "unknown VAD")}))
            return
        peer = peers[name]
        chunk = 320 if name == "vadstream" else peer.hop_samples
        for i in range(0, audio.size - chunk + 1, chunk):
            peer.process(audio[i:i + chunk])
    print(json.dumps({"maxrss_kb": peak_rss_kb()}))


def measure(name: str, model: str | None) -> dict:
    cmd = [sys.executable, "-m", "bench.memory", name] + (["--model", str(model)] if model else [])
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=report.REPO, timeout=300)
    if res.returncode != 0:
        return {"skipped": f"child failed: {(res.stderr.strip().splitlines() or ['?'])[-1]}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def run(args) -> list[str]:
    from vadstream.evaluation import evaluate

    names = [n for n in (args.peers or "vadstream,silero,ten,webrtc-3").split(",") if n]
    base = measure("baseline", None)
    data = {"baseline_kb": base.get("maxrss_kb"), "vads": {}}
    rows = []
    for name in names:
        r = measure(name, args.model)
        data["vads"][name] = r
        if "maxrss_kb" in r and base.get("maxrss_kb"):
            rows.append([name, f"{r['maxrss_kb'] / 1024:.1f}", f"+{(r['maxrss_kb'] - base['maxrss_kb']) / 1024:.1f}"])
        else:
            rows.append([name, "–", f"not measured: {r.get('skipped', '?')}"])
    lines = ["## Memory (peak RSS of a process running only that VAD)\n",
             f"Fresh `python -m bench.memory NAME` per VAD: imports, builds the VAD, streams {CHILD_SECONDS:g} s "
             f"of audio; its peak RSS (`VmHWM`). Baseline (Python + numpy + the audio, no VAD): "
             f"{(base.get('maxrss_kb') or 0) / 1024:.1f} MB.\n",
             evaluate.markdown_table(["VAD", "peak RSS MB", "over baseline MB"], rows) + "\n"]
    md = "\n".join(lines)
    report.save_section(Path(args.out), "memory", data, md, report.command_line())
    return [md]


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("name")
    p.add_argument("--model", default=None)
    a = p.parse_args()
    child(a.name, a.model)
