"""``vadstream train``: build augmented scenes from a corpus, train the CNN, export ONNX + metadata.

Reproduce the shipped model (about 37 min on 2 cores; the defaults are its recipe)::

    python -m vadstream.training.corpus --out cache/corpus --install
    vadstream train --extra-speech cache/corpus/speech --extra-noise cache/corpus/nonspeech \
        --version 2.0 --out models/vadstream.onnx

Steps: (1) split the ``train`` split's files into train/validation by file (CRC32 of the name;
``dev`` is never read); (2) generate augmented scenes (:mod:`vadstream.training.scenes`) and cache
their MFCC features under ``--cache-dir``; (3) per-coefficient normalisation from the training
features; (4) train with Adam on random windows, validate on the validation scenes, keep the
best checkpoint (mean of ROC-AUC and AP); (5) export ONNX with the runtime contract, time it,
try int8 quantisation and keep it only if faster and as accurate; write a JSON report.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from vadstream.evaluation import metrics
from vadstream.stages.features import FeatureConfig
from vadstream.stages.model import STREAM_SPEC_VERSION, ModelSpec

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = Path(os.environ.get("VADSTREAM_DATA", REPO.parent / "shared" / "data"))
HOP_S = 0.02  # every model scores 20 ms hops
OUTPUTS_PER_INFERENCE = 2  # window models (3.0): hops scored per window
CACHE_FORMAT = 8  # bump when scene generation changes, so old caches are not reused


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default=str(DEFAULT_DATA),
                        help="corpus with train/{speech,nonspeech}/<set>/*.flac (default: %(default)s); "
                             "'' to use only --extra-* folders")
    parser.add_argument("--extra-speech", action="append", default=[], metavar="DIR",
                        help="more clean speech (any audio files below DIR); repeatable")
    parser.add_argument("--extra-noise", action="append", default=[], metavar="DIR",
                        help="more non-speech audio (music, noise, ...); repeatable")
    parser.add_argument("--out", default=str(REPO / "models" / "vadstream.onnx"), help="ONNX file to write")
    parser.add_argument("--run-dir", default=None, help="checkpoints, log and report (default: runs/<out stem>)")
    parser.add_argument("--cache-dir", default=str(REPO / "cache" / "train"), help="feature cache")
    parser.add_argument("--arch", choices=("stream", "window"), default="stream",
                        help="stream: causal CNN (+ GRU) with state, trained on whole scenes (4.0); "
                             "window: the 1.28 s window CNN of 3.0")
    parser.add_argument("--scene-seconds", type=float, default=30.0, help="length of a training scene (3.0: 8)")
    parser.add_argument("--hours", type=float, default=50.0, help="hours of augmented training scenes")
    parser.add_argument("--val-hours", type=float, default=0.7, help="hours of validation scenes")
    parser.add_argument("--nonspeech-share", type=float, default=0.27,
                        help="share of scenes that are non-speech only")
    parser.add_argument("--conversation-share", type=float, default=0.25,
                        help="share of scenes with several talkers taking turns (pauses, overlaps, silences)")
    parser.add_argument("--recorded-share", type=float, default=0.30,
                        help="share of scenes that are real recordings as recorded (teacher-labelled)")
    parser.add_argument("--transient-rate", type=float, default=0.6,
                        help="chance that a scene gets transient events (clicks, breath, human sounds)")
    parser.add_argument("--distant-talkers", type=float, default=0.4,
                        help="chance of far, quiet background talkers in a scene (labelled non-speech)")
    parser.add_argument("--min-speech-peak", type=float, default=-45.0,
                        help="speech scenes are normalised to a peak level in [this, 0] dBFS")
    parser.add_argument("--labels", choices=("teacher", "energy"), default="teacher",
                        help="speech labels: FireRedVAD teacher probabilities or the energy rule")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="fraction of train files held out")
    parser.add_argument("--minutes", type=float, default=30.0, help="training time limit (after data)")
    parser.add_argument("--epochs", type=float, default=None, help="passes over the training windows (default: "
                        "as many as --minutes allows, estimated from the first steps)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="windows (window, default 256) or scene crops (stream, default 24) per step")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the machine is shared)")
    parser.add_argument("--workers", type=int, default=2, help="processes generating scenes")
    parser.add_argument("--winstep", type=float, default=0.02,
                        help="MFCC frame step in seconds: 0.02 (one frame per hop) or 0.01 (two; model 1.0)")
    parser.add_argument("--context-frames", type=int, default=64)
    parser.add_argument("--lookahead-frames", type=int, default=0, choices=(0, 1))
    parser.add_argument("--channels", type=_ints, default=(24, 32, 32))
    parser.add_argument("--kernels", type=_ints, default=(4, 3, 3))
    parser.add_argument("--strides", type=_ints, default=(2, 2, 2))
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--no-window-cmn", dest="window_cmn", action="store_false")
    parser.add_argument("--local-frames", type=int, default=None,
                        help="convolve only the last N frames of the window (default: all)")
    parser.add_argument("--global-stats", action="store_true",
                        help="feed per-coefficient mean/min/max over the whole window to the classifier")
    parser.add_argument("--stream-channels", type=_ints, default=(32, 32), help="stream: channels per convolution")
    parser.add_argument("--stream-kernels", type=_ints, default=(5, 3), help="stream: kernel per convolution")
    parser.add_argument("--dilations", type=_ints, default=(1, 1), help="stream: dilation per convolution")
    parser.add_argument("--gru", type=int, default=48, help="stream: GRU units (0: none, a per-frame MLP)")
    parser.add_argument("--hops-per-call", type=int, default=2, choices=(1, 2),
                        help="stream: hops the runtime scores per ONNX call at least (2 halves the calls and the "
                             "CPU, but delays every other hop by 20 ms; model card)")
    parser.add_argument("--crop-seconds", type=float, default=20.0,
                        help="stream: each training example is a random crop this long of a scene, state from zero")
    parser.add_argument("--bridge-ms", type=float, default=0.0,
                        help="stream: label pauses shorter than this between speech as speech (turn convention); "
                             "0 keeps the teacher's (dips < 300 ms closed)")
    parser.add_argument("--silero-weight", type=float, default=0.0,
                        help="stream: share of Silero VAD's lag-aligned probabilities in the targets (second teacher; "
                             "0: FireRedVAD's labels only)")
    parser.add_argument("--onset-weight", type=float, default=1.0,
                        help="stream: loss weight of the first --onset-ms of every speech region (1: none)")
    parser.add_argument("--onset-ms", type=float, default=160.0, help="stream: see --onset-weight")
    parser.add_argument("--numcep", type=int, default=13)
    parser.add_argument("--nfilt", type=int, default=26)
    parser.add_argument("--version", default="4.0", help="model version stored in the metadata")
    parser.add_argument("--no-quantise", dest="quantise", action="store_false", help="skip the int8 trial")
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds on a handful of clips (or generated audio without a corpus): CI check")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- metrics

def binary_metrics(targets: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """ROC-AUC, AP, F1, FPR (vadstream.evaluation.metrics) against targets >= 0.5."""
    return metrics.frame_metrics(np.asarray(targets) >= 0.5, probs, threshold)


# ----------------------------------------------------------------------------- windows

class Windows:
    """Normalised scene features with ``context`` zero rows in front; gathers model windows.

    Group ``g`` of scene ``s`` (hops 2g, 2g+1) sees frames ``last-C+1 .. last`` with
    ``last = G(g+1) - 1 + L`` (G = 2 * frames_per_hop frames per group), exactly the runtime's
    geometry (zeros before the stream start, the last frame repeated past its end)."""

    def __init__(self, feats: np.ndarray, targets: np.ndarray, mean: np.ndarray, std: np.ndarray,
                 context: int, lookahead: int, frames_per_hop: int):
        import torch

        s, t, c = feats.shape
        self.context, self.lookahead = context, lookahead
        self.group_frames = frames_per_hop * OUTPUTS_PER_INFERENCE
        # Like Vad.flush(): the groups covering the last hops see frames past the end of the stream.
        self.groups = -(-targets.shape[1] // OUTPUTS_PER_INFERENCE)
        tail = max(0, self.groups * self.group_frames + lookahead - t)
        padded = np.zeros((s, context + t + tail, c), dtype=np.float32)
        padded[:, context:context + t] = (feats - mean) / std
        if tail:  # as Vad.flush(): the missing lookahead past the end repeats the last frame
            padded[:, context + t:] = padded[:, context + t - 1: context + t]
        self.flat = torch.from_numpy(padded.reshape(-1, c))
        self.row_stride = context + t + tail
        self.scenes = s
        tg = np.zeros((s, self.groups * OUTPUTS_PER_INFERENCE), dtype=np.float32)
        tg[:, : targets.shape[1]] = targets
        tg = tg.reshape(s, self.groups, OUTPUTS_PER_INFERENCE)
        self.targets = torch.from_numpy(np.ascontiguousarray(tg.reshape(-1, OUTPUTS_PER_INFERENCE)))
        self._offsets = torch.arange(context)

    def __len__(self) -> int:
        return self.scenes * self.groups

    def batch(self, index):
        """Windows [B, C, numcep] and targets [B, K] for flat window indices (scene * groups + g)."""
        import torch

        index = torch.as_tensor(index)
        scene = index // self.groups
        g = index % self.groups
        start = scene * self.row_stride + g * self.group_frames + self.group_frames + self.lookahead
        rows = start[:, None] + self._offsets[None, :]
        return self.flat[rows], self.targets[index]


def predict(net, windows: Windows, batch: int = 4096) -> np.ndarray:
    import torch

    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(windows), batch):
            x, _ = windows.batch(torch.arange(i, min(len(windows), i + batch)))
            out.append(net(x).numpy())
    net.train()
    return np.concatenate(out).reshape(-1)


# ----------------------------------------------------------------------------- smoke corpus

def synthetic_corpus(rng: np.random.Generator, n_speech: int = 6, n_noise: int = 4):
    """Generated stand-in audio for the smoke run without a corpus: 'speech' = harmonic tones with
    syllable-rate amplitude and pitch modulation; 'noise' = coloured noise and steady chords."""
    from vadstream.training import augment as aug
    from vadstream.training.scenes import Corpus

    sr = 16000
    speech, noise = [], []
    for i in range(n_speech):
        n = int(rng.uniform(1.5, 3.0) * sr)
        t = np.arange(n) / sr
        f0 = rng.uniform(90, 250) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 3) * t))
        phase = 2 * np.pi * np.cumsum(f0) / sr
        x = sum(np.sin(h * phase) / h for h in range(1, 12))
        env = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t), 0, None) ** 2
        env[: int(0.2 * sr)] = 0
        env[-int(0.2 * sr):] = 0
        speech.append((0.3 * x * env).astype(np.float32))
    for i in range(n_noise):
        n = int(4.0 * sr)
        if i % 2 == 0:
            noise.append(aug.coloured_noise(rng, n, float(i % 3)) * np.float32(0.1))
        else:
            t = np.arange(n) / sr
            noise.append((0.1 * sum(np.sin(2 * np.pi * f * t) for f in (220, 277, 330))).astype(np.float32))
    return Corpus(speech=speech, noise=noise, speech_names=[f"synthetic/s{i}" for i in range(n_speech)],
                  noise_names=[f"synthetic/n{i}" for i in range(n_noise)])


# ----------------------------------------------------------------------------- main

def _cache_tag(kind: str, names: list[str], cfg: FeatureConfig, seed: int, scenes_per_shard: int,
               recipe, scene_s: float) -> str:
    key = [CACHE_FORMAT, kind, sorted(names), cfg.to_dict(), seed, scenes_per_shard, scene_s, recipe.to_dict()]
    h = hashlib.sha1(json.dumps(key).encode()).hexdigest()[:10]
    return f"{kind}-{h}"


def main(args: argparse.Namespace) -> int:
    import torch

    from vadstream.training import scenes as sc
    from vadstream.training.net import NetConfig, StreamNetConfig, state_specs

    t_start = time.time()
    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    out = Path(args.out)
    run_dir = Path(args.run_dir) if args.run_dir else REPO / "runs" / out.stem
    run_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(args.cache_dir)
    feat_cfg = FeatureConfig(numcep=args.numcep, nfilt=args.nfilt, winstep_s=args.winstep)
    frames_per_hop = round(HOP_S / args.winstep)
    if frames_per_hop < 1 or abs(frames_per_hop * args.winstep - HOP_S) > 1e-9:
        print(f"vadstream train: --winstep {args.winstep} must divide the 20 ms hop", file=sys.stderr)
        return 2
    hop_samples = frames_per_hop * feat_cfg.step_samples
    if args.arch == "stream":
        if frames_per_hop != 1:
            print("vadstream train: --arch stream needs one frame per hop (--winstep 0.02)", file=sys.stderr)
            return 2
        net_cfg = StreamNetConfig(numcep=feat_cfg.numcep, channels=args.stream_channels, kernels=args.stream_kernels,
                                  dilations=args.dilations, gru=args.gru, hidden=args.hidden)
    else:
        net_cfg = NetConfig(numcep=feat_cfg.numcep, context_frames=args.context_frames,
                            outputs=OUTPUTS_PER_INFERENCE, channels=args.channels, kernels=args.kernels,
                            strides=args.strides, hidden=args.hidden, window_cmn=args.window_cmn,
                            local_frames=args.local_frames, global_stats=args.global_stats)
        net_cfg.lengths()  # validates the geometry early
    if args.batch_size is None:
        args.batch_size = 24 if args.arch == "stream" else 256

    # 1. corpus, split by file
    data_root = args.data_root if args.data_root and Path(args.data_root, "train").is_dir() else None
    if args.data_root and data_root is None and not args.smoke:
        print(f"vadstream train: no corpus at {args.data_root} (expected train/speech and train/nonspeech); "
              "pass --data-root or --extra-speech/--extra-noise", file=sys.stderr)
        if not (args.extra_speech and args.extra_noise):
            return 2
    max_files = 8 if args.smoke else None
    if data_root is None and not args.extra_speech:
        log("smoke: no corpus, using generated audio")
        train_corpus = synthetic_corpus(np.random.default_rng(args.seed))
        val_corpus = synthetic_corpus(np.random.default_rng(args.seed + 1000), 3, 2)
    else:
        tr_s, tr_n = sc.corpus_paths(data_root, args.extra_speech, args.extra_noise, "train", args.val_fraction,
                                     max_files)
        va_s, va_n = sc.corpus_paths(data_root, args.extra_speech, args.extra_noise, "val", args.val_fraction,
                                     max_files and max_files // 2)
        if not tr_s or not tr_n:
            print("vadstream train: need both speech and non-speech training files", file=sys.stderr)
            return 2
        corpus_cache = cache_dir.parent
        train_corpus = sc.load_corpus(tr_s, tr_n, args.labels, corpus_cache, log)
        val_corpus = sc.load_corpus(va_s or tr_s[:1], va_n or tr_n[:1], args.labels, corpus_cache, log)
    log(f"corpus: train {len(train_corpus.speech)} speech / {len(train_corpus.noise)} non-speech files "
        f"({train_corpus.minutes[0]:.1f} / {train_corpus.minutes[1]:.1f} min), validation "
        f"{len(val_corpus.speech)} / {len(val_corpus.noise)} files")

    # 2. scenes -> cached features
    scene_s = args.scene_seconds
    scenes_per_shard = 8 if args.smoke else max(1, round(400.0 / scene_s))
    hours = 0.02 if args.smoke else args.hours
    val_hours = 0.01 if args.smoke else args.val_hours
    if args.smoke:
        scene_s = min(scene_s, 8.0)
    n_train = max(1, round(hours * 3600 / scene_s / scenes_per_shard))
    n_val = max(1, round(val_hours * 3600 / scene_s / scenes_per_shard))
    t0 = time.time()
    recipe = sc.SceneRecipe(nonspeech_share=args.nonspeech_share, recorded_share=args.recorded_share,
                            transient_rate=args.transient_rate, labels=args.labels,
                            distant_talkers=args.distant_talkers, min_speech_peak_dbfs=args.min_speech_peak,
                            conversation_share=args.conversation_share,
                            silero=args.arch == "stream" and args.silero_weight > 0)
    train_paths = sc.build_shards(train_corpus, cache_dir, _cache_tag("train", train_corpus.speech_names +
                                  train_corpus.noise_names, feat_cfg, args.seed, scenes_per_shard, recipe, scene_s),
                                  args.seed, n_train, scenes_per_shard, scene_s, feat_cfg,
                                  hop_samples, args.workers, log, recipe=recipe)
    val_paths = sc.build_shards(val_corpus, cache_dir, _cache_tag("val", val_corpus.speech_names +
                                val_corpus.noise_names, feat_cfg, 12345, scenes_per_shard, recipe, scene_s), 12345,
                                n_val, scenes_per_shard, scene_s, feat_cfg, hop_samples, args.workers, log,
                                recipe=recipe)
    train_data = sc.SceneBatch.concat([sc.SceneBatch.load(p) for p in train_paths])
    val_data = sc.SceneBatch.concat([sc.SceneBatch.load(p) for p in val_paths])
    data_s = time.time() - t0
    log(f"scenes: train {train_data.feats.shape[0]} x {scene_s:g} s, validation {val_data.feats.shape[0]} "
        f"({data_s:.0f} s)")

    # 3. normalisation from the training features
    flat = train_data.feats.reshape(-1, feat_cfg.numcep).astype(np.float64)
    mean = flat.mean(axis=0)
    std = np.maximum(flat.std(axis=0), 1e-3)
    del flat
    norm = dict(norm_mean=tuple(float(v) for v in mean), norm_std=tuple(float(v) for v in std))
    if args.arch == "stream":
        spec = ModelSpec(features=feat_cfg, frames_per_hop=1, context_frames=args.hops_per_call, lookahead_frames=0,
                         outputs_per_inference=args.hops_per_call, name="vadstream-stream", version=args.version,
                         state=state_specs(net_cfg), spec_version=STREAM_SPEC_VERSION, **norm)
        trainer = StreamTrainer(train_data, val_data, mean, std, args)
    else:
        spec = ModelSpec(features=feat_cfg, frames_per_hop=frames_per_hop, context_frames=net_cfg.context_frames,
                         lookahead_frames=args.lookahead_frames, outputs_per_inference=OUTPUTS_PER_INFERENCE,
                         name="vadstream-cnn", version=args.version, **norm)
        trainer = WindowTrainer(train_data, val_data, mean, std, net_cfg, args, frames_per_hop)
    del train_data, val_data

    # 4. training, 5. export
    result = fit(trainer, net_cfg, args, log)
    torch.save({"net_config": json.loads(net_cfg.to_json()), "arch": args.arch, "state_dict": result["state"],
                "mean": mean, "std": std, "spec": spec.to_json()}, run_dir / "best.pt")
    net = result["net"]
    candidates = trainer.export(net, spec, run_dir, args)
    chosen = "fp32"
    base = candidates["fp32"]
    for name, cand in candidates.items():
        if name == "fp32":
            continue
        faster = cand["us_per_inference"] < 0.9 * base["us_per_inference"]
        as_accurate = (cand["metrics"]["roc_auc"] >= base["metrics"]["roc_auc"] - 0.001
                       and cand["metrics"]["ap"] >= base["metrics"]["ap"] - 0.001)
        log(f"{name}: {cand['us_per_inference']:.2f} us (fp32 {base['us_per_inference']:.2f}), AUC "
            f"{cand['metrics']['roc_auc']:.4f} AP {cand['metrics']['ap']:.4f} -> "
            f"{'ship' if faster and as_accurate else 'not shipped'}")
        if faster and as_accurate and cand["us_per_inference"] < candidates[chosen]["us_per_inference"]:
            chosen = name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(candidates[chosen]["path"].read_bytes())

    multiplies = net_cfg.multiplies_per_frame() if args.arch == "stream" else net_cfg.multiplies()
    calls_per_s = 50 if args.arch == "stream" else 25
    report = {
        "out": str(out), "chosen": chosen, "version": args.version, "seed": args.seed, "arch": args.arch,
        "command": (" ".join(["vadstream", "train"] + sys.argv[2:]) if sys.argv[1:2] == ["train"]
                    else " ".join(sys.argv)),
        "net_config": json.loads(net_cfg.to_json()), "parameters": result["parameters"],
        "multiplies_per_inference": multiplies, "multiplies_per_audio_second": multiplies * calls_per_s,
        "receptive_field_frames": getattr(net_cfg, "receptive_field_frames", None),
        "lookahead_ms": spec.lookahead_samples / 16.0, "file_bytes": out.stat().st_size,
        "train_files": {"speech": len(train_corpus.speech), "nonspeech": len(train_corpus.noise)},
        "val_files": {"speech": len(val_corpus.speech), "nonspeech": len(val_corpus.noise)},
        "train_hours": trainer.train_hours, "val_hours": trainer.val_hours, "scene_seconds": scene_s,
        "bridge_ms": args.bridge_ms, "steps": result["steps"], "batch_size": args.batch_size,
        "best_step": result["best_step"], "data_seconds": round(data_s, 1), "train_seconds": result["train_seconds"],
        "total_seconds": round(time.time() - t_start, 1), "history": result["history"],
        "candidates": {k: {"metrics": v["metrics"], "us_per_inference": v["us_per_inference"],
                           "file_bytes": Path(v["path"]).stat().st_size} for k, v in candidates.items()},
    }
    (run_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {out} ({chosen}, {out.stat().st_size} bytes): val AUC {candidates[chosen]['metrics']['roc_auc']:.4f} "
        f"AP {candidates[chosen]['metrics']['ap']:.4f}, {candidates[chosen]['us_per_inference']:.1f} us/inference; "
        f"report {run_dir / 'report.json'}")
    return 0


def fit(trainer, net_cfg, args: argparse.Namespace, log) -> dict:
    """AdamW with a cosine schedule until ``--minutes`` (or ``--epochs``); validation 12 times,
    the best checkpoint (mean of validation ROC-AUC and AP) kept."""
    import torch

    from vadstream.training.net import StreamNet, VadNet, count_parameters

    net = StreamNet(net_cfg) if args.arch == "stream" else VadNet(net_cfg)
    log(f"model: {count_parameters(net)} parameters; {trainer.describe()}")
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    loss_fn_each = torch.nn.BCEWithLogitsLoss(reduction="none")
    steps_per_epoch = max(1, trainer.items // args.batch_size)
    limit_s = 5.0 if args.smoke else args.minutes * 60.0
    # With --epochs: a fixed number of steps. Otherwise: train until the time limit, the cosine
    # decay following the elapsed fraction of it (the machine is shared: step rates vary 10x).
    gen = torch.Generator().manual_seed(args.seed)
    t_train = time.time()
    if args.epochs is not None:
        total_steps = max(1, int(args.epochs * steps_per_epoch))
    else:
        total_steps = 60 if args.smoke else 10 ** 9
    n_evals = 4 if args.smoke else 12
    eval_every_steps = max(1, total_steps // n_evals) if (args.epochs is not None or args.smoke) else None
    log(f"training: {'%d steps' % total_steps if total_steps < 10 ** 9 else '%.1f min' % (limit_s / 60)} "
        f"of {args.batch_size} ({steps_per_epoch} steps per pass), validation {n_evals} times")

    def progress() -> float:
        frac = step / total_steps
        if args.epochs is None:
            frac = max(frac, (time.time() - t_train) / limit_s)
        return min(1.0, frac)

    best = {"score": -1.0, "step": 0}
    history = []
    step = 0
    running = 0.0
    next_eval = 1.0 / n_evals
    while True:
        frac = progress()
        for group in opt.param_groups:
            group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * frac))
        x, y, w = trainer.sample(args.batch_size, gen)
        loss = loss_fn(net.logits(x), y) if w is None else (w * loss_fn_each(net.logits(x), y)).sum() / w.sum()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        running = 0.98 * running + 0.02 * loss.item() if step > 0 else loss.item()
        step += 1
        frac = progress()
        done = frac >= 1.0
        due = (step % eval_every_steps == 0) if eval_every_steps else frac >= next_eval
        if due or done:
            next_eval = (int(frac * n_evals) + 1) / n_evals
            m = binary_metrics(trainer.val_targets, trainer.predict(net))
            score = (m["roc_auc"] + m["ap"]) / 2
            history.append({"step": step, "loss": running, "elapsed_s": round(time.time() - t_train, 1), **m})
            log(f"step {step} ({frac:.0%}) loss {running:.4f} val AUC {m['roc_auc']:.4f} AP {m['ap']:.4f} "
                f"F1 {m['f1']:.3f} FPR {m['fpr']:.3f}")
            if score > best["score"]:
                best = {"score": score, "step": step, "metrics": m,
                        "state": {k: v.clone() for k, v in net.state_dict().items()}}
        if done:
            break
    net.load_state_dict(best["state"])
    net.eval()
    return {"net": net, "state": best["state"], "best_step": best["step"], "steps": step, "history": history,
            "train_seconds": round(time.time() - t_train, 1), "parameters": count_parameters(net)}


class WindowTrainer:
    """Random windows of the scenes (model 3.0's window CNN)."""

    def __init__(self, train_data, val_data, mean, std, net_cfg, args, frames_per_hop: int):
        self.train_w = Windows(train_data.feats, train_data.targets, mean, std, net_cfg.context_frames,
                               args.lookahead_frames, frames_per_hop)
        self.val_w = Windows(val_data.feats, val_data.targets, mean, std, net_cfg.context_frames,
                             args.lookahead_frames, frames_per_hop)
        self.val_targets = self.val_w.targets.numpy().reshape(-1)
        self.items = len(self.train_w)
        self.train_hours = len(self.train_w) * 0.04 / 3600
        self.val_hours = len(self.val_w) * 0.04 / 3600
        self.net_cfg = net_cfg

    def describe(self) -> str:
        return f"{self.net_cfg.multiplies()} multiplies per inference; {self.items} training windows"

    def sample(self, batch: int, gen):
        import torch

        return (*self.train_w.batch(torch.randint(self.items, (batch,), generator=gen)), None)

    def predict(self, net) -> np.ndarray:
        return predict(net, self.val_w)

    def export(self, net, spec, run_dir: Path, args) -> dict:
        from vadstream.stages.model import OnnxModel
        from vadstream.training.export import export_onnx, quantise_dynamic, quantise_static, time_inference_us

        val_w = self.val_w
        fp32_path = run_dir / "model-fp32.onnx"
        export_onnx(net, spec, fp32_path)
        val_x = [val_w.batch(np.arange(i, min(len(val_w), i + 4096)))[0].numpy() for i in range(0, len(val_w), 4096)]

        def onnx_metrics(path: Path) -> dict[str, float]:
            model = OnnxModel(path)
            probs = np.concatenate([model(x) for x in val_x]).reshape(-1)
            return binary_metrics(self.val_targets, probs)

        calls = 2000 if args.smoke else 20000
        candidates = {"fp32": {"path": fp32_path, "metrics": onnx_metrics(fp32_path),
                               "us_per_inference": time_inference_us(fp32_path, calls=calls)}}
        if args.quantise:
            calib = np.concatenate(val_x)[:: max(1, len(val_w) // 2000)]
            for name, fn in (("int8-dynamic", lambda s, d: quantise_dynamic(s, d)),
                             ("int8-static", lambda s, d: quantise_static(s, d, calib))):
                path = run_dir / f"model-{name}.onnx"
                try:
                    fn(fp32_path, path)
                    candidates[name] = {"path": path, "metrics": onnx_metrics(path),
                                        "us_per_inference": time_inference_us(path, calls=calls)}
                except Exception as exc:  # quantisation is a trial; report and carry on
                    log(f"{name} failed: {exc}")
        return candidates


def bridge_targets(targets: np.ndarray, bridge_hops: int) -> np.ndarray:
    """Per-hop targets with dips shorter than ``bridge_hops`` between speech closed (grey-scale
    closing along each scene): the turn convention of human meeting labels."""
    from vadstream.training.scenes import grey_close

    return grey_close(targets, bridge_hops, axis=1) if bridge_hops > 1 else targets


def mix_teachers(targets: np.ndarray, silero: np.ndarray | None, weight: float, log=None) -> np.ndarray:
    """FireRedVAD's hop targets mixed with Silero VAD's probabilities, ``weight`` the Silero share.

    Silero is causal and its probability rises and falls late: it is shifted earlier by the lag
    (:func:`~vadstream.training.teacher.best_lag_hops`, measured on these scenes against
    FireRedVAD's labels) before mixing."""
    if weight <= 0:
        return targets
    if silero is None:
        raise ValueError("--silero-weight needs scenes with Silero's probabilities (a cache built with it)")
    from vadstream.training.teacher import best_lag_hops, shift_hops

    silero = silero[:, :targets.shape[1]]
    lag = best_lag_hops(silero, targets)
    aligned = shift_hops(silero, lag)
    if log:
        agree = float(np.mean((aligned >= 0.5) == (targets >= 0.5)))
        log(f"second teacher: Silero lags FireRedVAD by {lag} hop(s) ({lag * HOP_S * 1000:.0f} ms); aligned, the "
            f"two agree on {agree:.1%} of hops at 0.5; targets = {1 - weight:g} FireRedVAD + {weight:g} Silero")
    return ((1 - weight) * targets + weight * aligned).astype(np.float32)


def onset_weights(targets: np.ndarray, onset_hops: int, weight: float) -> np.ndarray:
    """Per-hop loss weights: ``weight`` on the first ``onset_hops`` hops of every speech region
    (targets >= 0.5 after a hop below), 1 elsewhere: the model's rise time is the daemon's onset."""
    w = np.ones_like(targets, dtype=np.float32)
    if weight == 1.0 or onset_hops < 1:
        return w
    speech = targets >= 0.5
    start = speech.copy()
    start[:, 1:] &= ~speech[:, :-1]
    for k in range(onset_hops):
        shifted = np.zeros_like(start)
        shifted[:, k:] = start[:, : start.shape[1] - k]
        w[shifted & speech] = weight
    return w


class StreamTrainer:
    """Whole scenes for the streaming network: random crops of ``--crop-seconds`` (the state
    starts from zero at the crop, as at a stream's start), loss on every hop; validation on the
    whole validation scenes."""

    def __init__(self, train_data, val_data, mean, std, args):
        import torch

        bridge_hops = int(round(args.bridge_ms / (HOP_S * 1000)))
        hops = min(train_data.feats.shape[1], train_data.targets.shape[1])
        self.x = torch.from_numpy(((train_data.feats[:, :hops] - mean) / std).astype(np.float32))
        targets = mix_teachers(train_data.targets[:, :hops], train_data.silero, args.silero_weight, log)
        targets = bridge_targets(targets, bridge_hops).astype(np.float32)
        self.y = torch.from_numpy(targets)
        self.w = None
        if args.onset_weight != 1.0:
            self.w = torch.from_numpy(onset_weights(targets, int(round(args.onset_ms / (HOP_S * 1000))),
                                                    args.onset_weight))
        # validation keeps FireRedVAD's labels alone: one yardstick for every run
        vh = min(val_data.feats.shape[1], val_data.targets.shape[1])
        self.val_x = torch.from_numpy(((val_data.feats[:, :vh] - mean) / std).astype(np.float32))
        self.val_y = bridge_targets(val_data.targets[:, :vh], bridge_hops)
        self.val_targets = self.val_y.reshape(-1)
        self.crop = max(1, min(hops, int(round(args.crop_seconds / HOP_S)))) if not args.smoke else hops
        self.items = self.x.shape[0] * max(1, hops // self.crop)
        self.train_hours = self.x.shape[0] * hops * HOP_S / 3600
        self.val_hours = self.val_x.shape[0] * vh * HOP_S / 3600

    def describe(self) -> str:
        return f"{self.x.shape[0]} training scenes, crops of {self.crop} hops"

    def sample(self, batch: int, gen):
        import torch

        scenes = torch.randint(self.x.shape[0], (batch,), generator=gen)
        start = torch.randint(self.x.shape[1] - self.crop + 1, (batch,), generator=gen)
        rows = start[:, None] + torch.arange(self.crop)[None, :]
        w = None if self.w is None else self.w[scenes[:, None], rows]
        return self.x[scenes[:, None], rows], self.y[scenes[:, None], rows], w

    def predict(self, net) -> np.ndarray:
        import torch

        net.eval()
        with torch.no_grad():
            out = torch.cat([net(self.val_x[i:i + 16]) for i in range(0, self.val_x.shape[0], 16)]).numpy()
        net.train()
        return out.reshape(-1)

    def export(self, net, spec, run_dir: Path, args) -> dict:
        from vadstream.stages.model import OnnxModel
        from vadstream.training.export import export_streaming, time_inference_us

        path = export_streaming(net, spec, run_dir / "model-fp32.onnx")
        model = OnnxModel(path)
        probs = []
        for scene in self.val_x.numpy():
            model.reset_state()
            probs.append(model.stream(scene))
        m = binary_metrics(self.val_targets, np.concatenate(probs))
        calls = 2000 if args.smoke else 20000
        return {"fp32": {"path": path, "metrics": m, "us_per_inference": time_inference_us(path, calls=calls)}}
