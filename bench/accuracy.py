"""Accuracy, offline event latency and detector-default tuning (sections accuracy, latency, tuning).

One pass runs every VAD over the dev mixtures (several SNRs, fixed seed), the dev non-speech clips
and any labelled folders; the three sections are computed from the stored probabilities.
Honesty: the detector defaults are chosen on the "tune" half of the dev items (even index) and
reported on the "test" half (odd index); threshold-free metrics and F1@0.5 use all of dev.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import sys
import time
from pathlib import Path

import numpy as np

from vadstream.evaluation import evaluate, metrics

from . import report

MIX = "mixtures"


def ms(v) -> str:
    return evaluate.fmt(v, 0) if not isinstance(v, str) else v


def pct(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"


def fmt_event_row(s: dict) -> list[str]:
    return [ms(s["onset_median_ms"]), ms(s["onset_p90_ms"]), ms(s["offset_median_ms"]), ms(s["offset_p90_ms"]),
            pct(s["missed_fraction"]), pct(s["early_fraction"]), pct(s["bridged_fraction"]),
            pct(s["fragments_per_segment"]), evaluate.fmt(s["false_starts_per_hour"], 1)]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def mixture_runs(by_cond: dict, which: str = "all") -> list:
    return [r for c, runs in by_cond.items() if c != "non-speech" and not c.startswith("set:")
            for r in evaluate.half(runs, which)]


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------
def collect(args) -> tuple[dict, dict, dict, dict]:
    """(peers, skipped, conditions, results)."""
    from vadstream.evaluation.peers import available_peers

    names = [n for n in args.peers.split(",") if n] if args.peers else None
    peers, skipped = available_peers(names, model=args.model)
    conditions: dict[str, list] = {}
    data_root = Path(args.data_root) if args.data_root else evaluate.default_data_root()
    if (data_root / "dev").is_dir():
        snrs = (10.0, None) if args.quick else evaluate.DEFAULT_SNRS
        conditions = evaluate.load_dev(data_root, snrs, args.seed, max_items=2 if args.quick else None,
                                max_nonspeech=2 if args.quick else None)
    else:
        log(f"bench accuracy: no dev split under {data_root}: dev mixtures skipped")
    from vadstream.evaluation import realworld
    from vadstream.evaluation.labels import load_folder

    if (data_root / "dev").is_dir():
        conditions.update(realworld.real_sets(data_root, Path(args.cache_dir), args.quick, log))
    for folder in args.labelled or []:
        conditions[f"set:{Path(folder).name}"] = load_folder(folder)
    if not conditions:
        raise SystemExit("bench accuracy: no data (need --data-root with a dev split, or --labelled DIR)")
    for c, items in conditions.items():
        log(f"  {c}: {len(items)} items, {sum(i.audio.size for i in items) / 16000 / 60:.1f} min")
    t0 = time.perf_counter()
    results = evaluate.run_all(peers, conditions, log=log)
    log(f"  all VADs: {time.perf_counter() - t0:.1f} s")
    return peers, skipped, conditions, results


# --------------------------------------------------------------------------------------------
# Section: accuracy
# --------------------------------------------------------------------------------------------
def accuracy_section(peers, skipped, conditions, results) -> tuple[dict, str]:
    data: dict = {"vads": {}, "skipped": skipped}
    conds = [c for c in conditions if c != "non-speech" and not c.startswith("set:")]
    sets = [c for c in conditions if c.startswith("set:")]
    lines = ["## Accuracy (per hop)\n"]
    n_mix = sum(len(conditions[c]) for c in conds)
    mix_min = sum(i.audio.size for c in conds for i in conditions[c]) / 16000 / 60
    if conds:
        ns = conditions.get("non-speech", [])
        lines.append(f"Dev split of the corpus, never trained on: {n_mix} mixtures ({mix_min:.1f} min) at "
                     f"{', '.join(conds)} (`build_eval_set`, seed {evaluate.DEFAULT_SEED}: the same speech and noise "
                     f"excerpts at every SNR), plus {len(ns)} non-speech clips "
                     f"({sum(i.audio.size for i in ns) / 16000 / 60:.1f} min) on their own. Labels from the "
                     "clean speech (`speech_mask`), per hop at the hop centre. P/R/F1/FPR at each VAD's "
                     "default threshold, 0.5 (WebRTC VAD is binary: its AUC/AP are those of a single "
                     "operating point).\n")
        header = ["VAD", "hop ms", "ROC-AUC", "AP", "precision", "recall", "F1", "FPR",
                  "speech flagged on non-speech"]
        rows = []
        for name, by_cond in results.items():
            s = evaluate.frame_summary(mixture_runs(by_cond), peers[name].default_threshold)
            ns_runs = by_cond.get("non-speech", [])
            ns_rate = float(np.mean(evaluate.concat(ns_runs)[1] >= 0.5)) if ns_runs else float("nan")
            per = {c: evaluate.frame_summary(by_cond[c]) for c in conds}
            data["vads"][name] = {"hop_samples": peers[name].hop_samples, "all": s, "per_condition": per,
                                  "nonspeech_flagged": ns_rate, "version": getattr(peers[name], "version", "")}
            rows.append([name, peers[name].hop_samples / 16, s["roc_auc"], s["ap"], s["precision"], s["recall"],
                         s["f1"], s["fpr"], ns_rate])
        lines.append("All dev mixtures together:\n")
        lines.append(evaluate.markdown_table(header, rows) + "\n")
        lines.append("Per SNR condition (ROC-AUC / AP / F1@0.5):\n")
        rows = []
        for name in results:
            per = data["vads"][name]["per_condition"]
            rows.append([name] + [f"{evaluate.fmt(per[c]['roc_auc'])} / {evaluate.fmt(per[c]['ap'])} / "
                                  f"{evaluate.fmt(per[c]['f1'])}"
                                  for c in conds])
        lines.append(evaluate.markdown_table(["VAD", *conds], rows) + "\n")
    from vadstream.evaluation import realworld

    groups = {"dev mixtures": conds, **{c[4:]: [c] for c in sets}}
    real = realworld.real_report(results, conditions, groups, ci=len(conditions.get("non-speech", [])) > 10)
    data["real_world"] = real
    lines.append("### Streaming protocol (what a real-time caller sees) and real recordings\n")
    lines.append(realworld.PROTOCOL + "\n")
    lines.append(realworld.render(real) + "\n")
    for name, reason in skipped.items():
        lines.append(f"- **{name} not measured**: {reason}")
    return data, "\n".join(lines) + "\n"


def plot_pr(results, peers, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5))
    for name, by_cond in results.items():
        labels, probs = evaluate.concat(mixture_runs(by_cond))
        if labels.size == 0 or not labels.any():
            continue
        if peers[name].binary:
            s = metrics.scores_at(labels, probs, 0.5)
            ax.plot([s.recall], [s.precision], "o", label=f"{name} (binary)")
            continue
        p, r, _ = metrics.precision_recall_curve(labels, probs)
        ap = metrics.average_precision(labels, probs)
        line, = ax.plot(r, p, label=f"{name} (AP {ap:.3f})", drawstyle="steps-post")
        s = metrics.scores_at(labels, probs, 0.5)
        ax.plot([s.recall], [s.precision], "x", color=line.get_color())
    ax.set_xlabel("recall (speech hops)")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall, all dev mixtures (x: threshold 0.5)")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0.3, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------
# Section: tuning (detector defaults)
# --------------------------------------------------------------------------------------------
TUNE_GRID = {
    "onset_threshold": (0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
    "offset_delta": (0.15, 0.25),
    "min_speech_ms": (20.0, 40.0, 60.0, 100.0),
    "min_silence_ms": (100.0, 150.0, 200.0, 300.0, 500.0),
}
TUNE_GRID_QUICK = {"onset_threshold": (0.5,), "offset_delta": (0.15,), "min_speech_ms": (60.0,),
                   "min_silence_ms": (100.0, 200.0)}


NEAR_BEST = 0.02  # settings within 2 % of the lowest tune cost count as equally good


def tuning_cost(s: dict, fs_per_hour: float) -> float:
    """Lower is better. Latency a live caller waits (onset p90 + offset median, ms), plus penalties:
    2 ms per false start per hour of non-speech, 10 ms per percent of segments missed, 3 ms per
    percent of pauses bridged, of segments fragmented and of onsets triggered early (in the pause)."""
    def nz(v: float) -> float:
        return 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else v

    return (nz(s["onset_p90_ms"]) + nz(s["offset_median_ms"]) + 2.0 * nz(fs_per_hour)
            + 1000.0 * nz(s["missed_fraction"]) + 300.0 * nz(s["bridged_fraction"])
            + 300.0 * nz(s["fragments_per_segment"]) + 300.0 * nz(s["early_fraction"]))


def evaluate_config(by_cond: dict, config, which: str) -> dict:
    mix = mixture_runs(by_cond, which)
    ns = evaluate.half(by_cond.get("non-speech", []), which)
    st = evaluate.event_summary(mix, config=config).summary()
    st["false_starts_per_hour"] = evaluate.false_starts_per_hour(ns, config=config) if ns else float("nan")
    st["cost"] = tuning_cost(st, st["false_starts_per_hour"])
    return st


def tuning_section(results, quick: bool) -> tuple[dict, str, object]:
    from vadstream.stages.detector import DetectorConfig

    if "vadstream" not in results or not mixture_runs(results["vadstream"]):
        return {}, "## Detector defaults\n\nNot tuned: vadstream or the dev mixtures are missing.\n", None
    by_cond = results["vadstream"]
    grid = TUNE_GRID_QUICK if quick else TUNE_GRID
    base = DetectorConfig()
    rows = []
    t0 = time.perf_counter()
    for on, delta, msp, msil in itertools.product(*grid.values()):
        cfg = base.replace(onset_threshold=on, offset_threshold=round(max(0.05, on - delta), 3),
                           min_speech_ms=msp, min_silence_ms=msil)
        rows.append((cfg, evaluate_config(by_cond, cfg, "tune")))
    log(f"  tuning grid ({len(rows)} configs): {time.perf_counter() - t0:.1f} s")
    rows.sort(key=lambda r: r[1]["cost"])
    lowest_cfg = rows[0][0]
    # Among the settings within NEAR_BEST of the lowest cost (the tune set cannot tell them apart),
    # take the one that cuts the fewest labelled segments into pieces: a sentence split into two
    # segments is the failure consumers notice most (a premature end of turn).
    near = [r for r in rows if r[1]["cost"] <= rows[0][1]["cost"] * (1 + NEAR_BEST)]
    best_cfg, best = min(near, key=lambda r: (r[1]["fragments_per_segment"], r[1]["cost"]))
    current = evaluate_config(by_cond, base, "tune")
    test_best = evaluate_config(by_cond, best_cfg, "test")
    test_lowest = evaluate_config(by_cond, lowest_cfg, "test")
    test_current = evaluate_config(by_cond, base, "test")

    def cfg_str(c) -> str:
        return (f"onset {c.onset_threshold:g}, offset {c.offset_threshold:g}, min speech {c.min_speech_ms:g} ms, "
                f"hangover {c.min_silence_ms:g} ms")

    header = ["detector settings", "onset p50 ms", "onset p90", "offset p50", "offset p90", "missed", "early",
              "bridged", "fragmented", "false starts/h", "cost"]
    lines = ["## Detector defaults (chosen on the tune half, reported on the test half)\n",
             "vadstream's own `Detector` re-run over the stored probabilities of every dev mixture and "
             "non-speech clip. Items are split deterministically by index: even = **tune**, odd = **test** "
             "(the same speech arrangement at every SNR, so no utterance is in both halves). The grid "
             f"({len(rows)} settings: onset {grid['onset_threshold']}, offset = onset - {grid['offset_delta']}, "
             f"min speech {grid['min_speech_ms']} ms, hangover {grid['min_silence_ms']} ms) is ranked on the "
             "tune half by one cost (`bench/accuracy.py:tuning_cost`): onset p90 + offset median (ms, what "
             "a live caller waits) + 2 ms per false start per hour of non-speech + 10 ms per % of labelled "
             "segments missed + 3 ms per % of pauses (>= 300 ms) bridged, of segments fragmented by a "
             "premature end and of onsets triggered early (> 200 ms before the labelled onset, in the pause). "
             "Latency = from the labelled boundary to the moment a caller "
             "feeding 20 ms chunks receives the probability that decides the event.\n",
             f"The recommendation is the setting with the lowest cost, or, among the settings within "
             f"{NEAR_BEST:.0%} of it (the tune half cannot tell them apart), the one that fragments the fewest "
             "labelled segments (a sentence cut in two is a premature end of turn, the failure consumers "
             "notice most).\n",
             "Best 8 settings on the tune half:\n"]
    lines.append(evaluate.markdown_table(header, [[cfg_str(c)] + fmt_event_row(s) + [ms(s["cost"])]
                                                  for c, s in rows[:8]]) + "\n")
    lines.append("Current defaults vs the recommendation, **test half** (not used for choosing):\n")
    test_rows = [[f"current: {cfg_str(base)}"] + fmt_event_row(test_current) + [ms(test_current["cost"])]]
    if lowest_cfg != best_cfg:
        test_rows.append([f"lowest tune cost: {cfg_str(lowest_cfg)}"] + fmt_event_row(test_lowest)
                         + [ms(test_lowest["cost"])])
    test_rows.append([f"**recommended**: {cfg_str(best_cfg)}"] + fmt_event_row(test_best) + [ms(test_best["cost"])])
    lines.append(evaluate.markdown_table(header, test_rows) + "\n")
    data = {"grid": {k: list(v) for k, v in grid.items()},
            "ranked_tune": [{"config": dataclasses.asdict(c), **s} for c, s in rows],
            "current_tune": current, "current_test": test_current, "best_test": test_best,
            "lowest_cost": dataclasses.asdict(lowest_cfg), "lowest_cost_test": test_lowest,
            "recommended": dataclasses.asdict(best_cfg)}
    return data, "\n".join(lines) + "\n", best_cfg


# --------------------------------------------------------------------------------------------
# Section: latency (offline, common rule)
# --------------------------------------------------------------------------------------------
def latency_section(results, peers, recommended, which: str = "test") -> tuple[dict, str]:
    from vadstream.stages.detector import DetectorConfig

    rule = evaluate.COMMON_RULE
    data: dict = {"rule": dataclasses.asdict(rule), "rows": {}}
    header = ["VAD / smoothing", "onset p50 ms", "onset p90", "offset p50", "offset p90", "missed", "early",
              "bridged", "fragmented", "false starts/h non-speech"]
    rows = []

    def add(label: str, by_cond: dict, **kw) -> None:
        mix = mixture_runs(by_cond, which)
        ns = evaluate.half(by_cond.get("non-speech", []), which)
        if not mix:
            return
        s = evaluate.event_summary(mix, **kw).summary()
        s["false_starts_per_hour"] = evaluate.false_starts_per_hour(ns, **kw) if ns else float("nan")
        data["rows"][label] = s
        rows.append([label] + fmt_event_row(s))

    for name, by_cond in results.items():
        add(f"{name}, common rule", by_cond, rule=rule)
        if name == "vadstream":
            add("vadstream, Detector current defaults", by_cond, config=DetectorConfig())
            if recommended is not None:
                add("vadstream, Detector recommended", by_cond, config=recommended)
    lines = [f"## Event latency, offline ({'test half of dev' if which == 'test' else 'all of dev (--quick)'})\n",
             f"Common smoothing rule for every VAD: {rule.describe()} (no minimum speech duration). Each VAD "
             "is streamed as a live caller (peers in their own hop, vadstream in 20 ms chunks); a delay runs "
             "from the labelled onset/offset (clean-speech labels; regions closer than 300 ms merged) to the "
             "moment the caller has the probability that triggers the event, so it includes each model's "
             "lookahead and hop. Missed = labelled segments no detection overlaps; early = the detection "
             "overlapping a segment was known > 200 ms before its onset (a trigger in the pause, not counted "
             "as an onset delay); bridged = pauses (>= 300 ms) inside one detection; "
             "fragmented = extra detections inside one labelled segment; "
             "false starts counted on the non-speech clips of the test half. All SNR conditions pooled.\n"]
    lines.append(evaluate.markdown_table(header, rows) + "\n")
    return data, "\n".join(lines) + "\n"


def plot_latency(latency_data: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(latency_data["rows"])
    rows = [latency_data["rows"][k] for k in labels]
    y = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) + 1.5))

    def val(v):
        return 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else v

    on = [val(r["onset_median_ms"]) for r in rows]
    on90 = [val(r["onset_p90_ms"]) for r in rows]
    off = [val(r["offset_median_ms"]) for r in rows]
    off90 = [val(r["offset_p90_ms"]) for r in rows]
    ax.barh(y - 0.2, on, height=0.4, label="onset median", color="tab:blue")
    ax.plot(on90, y - 0.2, "|", color="navy", markersize=12, label="onset p90")
    ax.barh(y + 0.2, off, height=0.4, label="offset median", color="tab:orange")
    ax.plot(off90, y + 0.2, "|", color="saddlebrown", markersize=12, label="offset p90")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("delay from labelled boundary to the caller knowing (ms)")
    ax.set_title("Event latency, offline, dev test half")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(args) -> list[str]:
    peers, skipped, conditions, results = collect(args)
    out = Path(args.out)
    cmd = report.command_line()
    texts = []
    data, md = accuracy_section(peers, skipped, conditions, results)
    if any(not c.startswith("set:") for c in conditions) and mixture_runs(next(iter(results.values()))):
        plot_pr(results, peers, out / "pr_curves.png")
        md += "\n![PR curves](pr_curves.png)\n"
    report.save_section(out, "accuracy", data, md, cmd)
    texts.append(md)
    tdata, tmd, best = tuning_section(results, args.quick)
    report.save_section(out, "tuning", tdata, tmd, cmd)
    texts.append(tmd)
    ldata, lmd = latency_section(results, peers, best, "all" if args.quick else "test")
    if ldata["rows"]:
        plot_latency(ldata, out / "latency.png")
        lmd += "\n![latency](latency.png)\n"
    report.save_section(out, "latency", ldata, lmd, cmd)
    texts.append(lmd)
    return texts
