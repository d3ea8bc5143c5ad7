"""The real daemon (section daemon): event latency through PulseAudio and ZeroMQ, and its CPU/RSS.

Setup: a private PulseAudio server (``tests/pulse.py``) with a null sink whose monitor is the
capture device; ``vadstream run --device pulse --samplerate RATE --prob`` captures it through
PortAudio; a ZeroMQ SUB socket in this process stamps every message with its arrival time
(``time.time_ns``); ``paplay`` plays the test audio into the sink in real time.

Latency: the delay from a labelled onset/offset to the arrival of the ``speech_start`` /
``speech_end`` message at the subscriber, measured from the moment that labelled sample reached
the daemon's capture (the daemon's own capture timestamps, ``wall_time_ns`` of its per-hop
``prob`` messages), so the harness's playback path is not counted. Where the played file landed
in the daemon's stream is found by matching the daemon's per-hop probabilities with offline
probabilities of the same file at every 1 ms sub-hop shift (exact at a 16 kHz device rate).

Cost: CPU time (``/proc/PID/stat`` utime + stime) and RSS of the daemon process over 60 s of
digital silence and 60 s of speech played into the sink (the null sink's monitor delivers audio
only while something plays, so silence is played as a file of zeros), at a 16 kHz and a 48 kHz
device rate.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from vadstream.evaluation import evaluate, metrics
from vadstream.stages.samples import SAMPLE_RATE_HZ, to_float32, to_int16

from . import report

RATE = SAMPLE_RATE_HZ


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def harness():
    """tests/pulse.py's PulseServer (the repository's PulseAudio harness), or a reason it is missing."""
    sys.path.insert(0, str(report.REPO))
    try:
        from tests.pulse import PulseServer, pulse_missing
    except Exception as exc:  # noqa: BLE001
        return None, f"tests/pulse.py not importable: {exc}"
    why = pulse_missing()
    return (None, why) if why else (PulseServer, None)


class Collector(threading.Thread):
    """SUB socket recording (arrival time_ns, parsed message) for every vadstream message."""

    def __init__(self, endpoint: str):
        super().__init__(daemon=True)
        import zmq

        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"vad.")
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.connect(endpoint)
        self.messages: list[tuple[int, object]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        import zmq

        from vadstream.wire.events import parse

        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self._halt.is_set():
            if poller.poll(50):
                while True:
                    try:
                        frames = self.sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    t = time.time_ns()
                    try:
                        self.messages.append((t, parse(frames)))
                    except Exception:  # noqa: BLE001
                        pass

    def of_type(self, type_: str, since_ns: int = 0, until_ns: int | None = None) -> list[tuple[int, object]]:
        return [(t, m) for t, m in list(self.messages)
                if m.TYPE == type_ and t >= since_ns and (until_ns is None or t <= until_ns)]

    def wait_for(self, pred, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(pred(m) for _, m in list(self.messages)):
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self._halt.set()
        self.join(2)
        self.sock.close(0)


@dataclasses.dataclass
class DaemonRun:
    server: object
    proc: subprocess.Popen
    collector: Collector
    log_path: Path

    def cpu_rss(self) -> tuple[float, int, int]:
        """(CPU seconds user+system, RSS kB, peak RSS kB) of the daemon process."""
        pid = self.proc.pid
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        rss = hwm = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
        return cpu, rss, hwm

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.collector.close()
        self.server.stop()


DETECTOR_FLAGS = {"onset_threshold": "--onset", "offset_threshold": "--offset", "min_speech_ms": "--min-speech-ms",
                  "min_silence_ms": "--min-silence-ms", "max_speech_s": "--max-speech-s",
                  "speech_pad_ms": "--speech-pad-ms"}
DETECTOR_ARGS: list[str] = []  # flags for the daemon's detector (empty: its defaults)


def start_daemon(tmp: Path, rate_hz: int, model: str | None, prob: bool = True) -> DaemonRun:
    PulseServer, why = harness()
    if PulseServer is None:
        raise RuntimeError(why)
    tmp.mkdir(parents=True, exist_ok=True)
    server = PulseServer(tmp / "pulse", rate_hz=rate_hz).start()
    events = f"ipc://{tmp}/events"
    cmd = [sys.executable, "-m", "vadstream", "run", "--device", "pulse", "--samplerate", str(rate_hz),
           "--endpoint", events, "--control-endpoint", "none", "--log-level", "info"]
    if model:
        cmd += ["--model", str(model)]
    if prob:
        cmd += ["--prob"]
    cmd += DETECTOR_ARGS
    env = server.env()
    env.pop("NOTIFY_SOCKET", None)
    env["PYTHONUNBUFFERED"] = "1"
    log_path = tmp / f"daemon-{rate_hz}.log"
    try:
        collector = Collector(events)
        collector.start()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log_path.open("wb"),
                                cwd=report.REPO)
    except BaseException:
        server.stop()
        raise
    run = DaemonRun(server, proc, collector, log_path)
    ok = collector.wait_for(lambda m: m.TYPE in ("prob", "status", "heartbeat"), 30.0)
    if not ok or proc.poll() is not None:
        run.stop()
        raise RuntimeError(f"daemon did not start: {log_path.read_text(errors='replace')[-1500:]}")
    return run


def write_wav(path: Path, audio: np.ndarray) -> Path:
    import soundfile as sf

    sf.write(str(path), np.clip(audio, -1, 32767 / 32768), RATE, subtype="PCM_16")
    return path


def quantise(audio: np.ndarray) -> np.ndarray:
    """What the daemon receives from a 16-bit file: int16 scaled by 1/32768."""
    return to_float32(to_int16(audio))


# --------------------------------------------------------------------------------------------
# Alignment of the played file in the daemon's stream
# --------------------------------------------------------------------------------------------
def align(daemon_probs: list[tuple[int, float]], audio: np.ndarray, model, hop: int,
          sync_s: float = 20.0, step: int = 16) -> tuple[int, float]:
    """Stream sample at which file sample 0 was captured, and the mean |Δp| of the best match."""
    from vadstream.stages.vad import Vad

    vad = Vad(model)
    idx = np.array([s for s, _ in daemon_probs], dtype=np.int64)
    d = np.array([p for _, p in daemon_probs], dtype=np.float64)
    # The capture may start a little after the file does (the stream's first samples are then the
    # file's): NaN hops in front allow negative offsets.
    pad = 2 * int(RATE // hop)
    base = idx[0] - pad * hop
    k_all = (idx - base) // hop
    dense = np.full(k_all.max() + 1, np.nan)
    dense[k_all] = d
    seg = audio[: int(sync_s * RATE)]
    best = (np.inf, 0)
    # One inference scores K hops, so the stream's hop pairing matters: shifts span K hops and lags
    # are multiples of K.
    K = vad.spec.outputs_per_inference
    for s in range(0, hop * K, step):
        p = vad(np.concatenate([np.zeros(s, dtype=np.float32), seg])).astype(np.float64)
        n = p.size - 2  # the last hops were flushed with zero lookahead: leave them out
        p = p[:n]
        if dense.size < n:
            continue
        # sliding mean absolute difference over every lag, leaving out the first half second: a
        # model with memory (4.0's GRU) answers the file's first hops with the stream's context
        lags = dense.size - n + 1
        win = np.lib.stride_tricks.sliding_window_view(dense, n)[:lags]
        skip = min(int(0.5 * RATE) // hop, n // 4)
        diff = np.abs(win[:, skip:] - p[None, skip:])
        valid = np.sum(~np.isnan(diff), axis=1)
        with np.errstate(invalid="ignore"):
            err = np.nansum(diff, axis=1) / np.maximum(valid, 1)
        err[valid < 0.8 * (n - skip)] = np.inf  # most of the window must overlap the stream
        err[(np.arange(err.size) + (base // hop)) % K != 0] = np.inf
        L = int(np.nanargmin(err))
        if err[L] < best[0]:
            best = (float(err[L]), base + L * hop + s)
    return best[1], best[0]


class WallClock:
    """Stream sample -> capture wall time (ns), from the daemon's stamped prob messages."""

    def __init__(self, daemon_probs: list[tuple[int, int]]):
        self.s = np.array([a for a, _ in daemon_probs], dtype=np.float64)
        self.w = np.array([b for _, b in daemon_probs], dtype=np.float64)

    def __call__(self, sample: float) -> float:
        i = int(np.clip(np.searchsorted(self.s, sample), 1, self.s.size - 1))
        return self.w[i - 1] + (sample - self.s[i - 1]) * 1e9 / RATE


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------
def latency_run(tmp: Path, model, speech_items, nonspeech_audio: np.ndarray, rate_hz: int = RATE,
                detector_config=None) -> dict:
    from vadstream.stages.model import OnnxModel

    gap = np.zeros(RATE, dtype=np.float32)
    audio = np.concatenate([gap] + [np.concatenate([quantise(i.audio), gap]) for i in speech_items])
    labels = np.concatenate([np.zeros(RATE, bool)] + [np.concatenate([i.speech, np.zeros(RATE, bool)])
                                                     for i in speech_items])
    speech_wav = write_wav(tmp / "speech.wav", audio)
    ns_wav = write_wav(tmp / "nonspeech.wav", quantise(nonspeech_audio)) if nonspeech_audio.size else None
    hop = OnnxModel(model).spec.hop_samples
    run = start_daemon(tmp / f"lat{rate_hz}", rate_hz, model)
    try:
        time.sleep(1.0)
        t_play = time.time_ns()
        run.server.play_and_wait(speech_wav, timeout_s=audio.size / RATE + 60)
        time.sleep(2.0)
        t_ns0 = time.time_ns()
        if nonspeech_audio.size:
            run.server.play_and_wait(ns_wav, timeout_s=nonspeech_audio.size / RATE + 60)
            time.sleep(2.0)
        t_ns1 = time.time_ns()
    finally:
        run.stop()
    col = run.collector
    probs = [(m.sample_index, m.probability) for t, m in col.of_type("prob") if t >= t_play - 2e9 and t <= t_ns0]
    stamps = [(m.sample_index, m.wall_time_ns) for _, m in col.of_type("prob")]
    offset, err = align(probs, audio, model, hop)
    clock = WallClock(stamps)
    w0 = clock(offset)

    def as_sample(t_ns: int) -> int:  # arrival time on the file's capture timeline, in samples
        return int(round((t_ns - w0) * RATE / 1e9))

    segs, open_start = [], None
    for t, m in sorted(col.of_type("speech_start", t_play, t_ns0) + col.of_type("speech_end", t_play, t_ns0),
                       key=lambda x: x[0]):
        if m.TYPE == "speech_start":
            open_start = (t, m)
        elif open_start is not None:
            ts, ms = open_start
            segs.append(metrics.DetectedSegment(ms.sample_index - offset, m.sample_index - offset, as_sample(ts),
                                                as_sample(t)))
            open_start = None
    ref = evaluate.reference_segments(labels)
    stats = metrics.event_latency(ref, segs, audio.size)
    # Self-check of the alignment: the same file offline (same sub-hop phase) through Vad + Detector
    # must give the daemon's boundaries.
    from vadstream.evaluation.peers import VadstreamPeer, stream

    peer = VadstreamPeer(model, detector_config)  # the daemon's detector settings
    phase = offset % (hop * peer.vad.spec.outputs_per_inference)  # same hop pairing as the daemon
    _, _ = stream(peer, np.concatenate([np.zeros(phase, dtype=np.float32), audio]), hop)
    offline = [e.sample_index - phase for e in peer.events if type(e).__name__ == "SpeechStart"]
    daemon_starts = [sg.start for sg in segs]
    diffs = [min(abs(a - b) for b in offline) for a in daemon_starts] if offline else []
    check_ms = float(np.median(diffs)) / 16 if diffs else float("nan")
    starts_ns = col.of_type("speech_start", t_ns0 + int(0.2e9), t_ns1 + int(1e9))
    ns_hours = max(nonspeech_audio.size, 1) / RATE / 3600
    heartbeats = col.of_type("heartbeat")
    dropped = heartbeats[-1][1].dropped if heartbeats else None
    overflows = heartbeats[-1][1].overflows if heartbeats else None
    return {"rate_hz": rate_hz, "speech_s": audio.size / RATE, "nonspeech_s": nonspeech_audio.size / RATE,
            "alignment_offset": offset, "alignment_mean_abs_dp": err, "summary": stats.summary(),
            "daemon_vs_offline_start_ms_median": check_ms, "daemon_starts": len(daemon_starts),
            "offline_starts": len(offline),
            "false_starts": len(starts_ns), "false_starts_per_hour": len(starts_ns) / ns_hours,
            "dropped": dropped, "overflows": overflows}


def cost_run(tmp: Path, model, speech_audio: np.ndarray, rate_hz: int, seconds: float) -> dict:
    wav = write_wav(tmp / f"cost-speech-{rate_hz}.wav", quantise(speech_audio[: int(seconds * RATE)]))
    # The null sink's monitor delivers audio only while something plays: silence is played too.
    silence = write_wav(tmp / "cost-silence.wav", np.zeros(int(seconds * RATE), dtype=np.float32))
    run = start_daemon(tmp / f"cost{rate_hz}", rate_hz, model, prob=False)
    try:
        time.sleep(1.0)
        c0, _, _ = run.cpu_rss()
        t0 = time.monotonic()
        run.server.play_and_wait(silence, timeout_s=seconds + 60)
        c1, rss_sil, _ = run.cpu_rss()
        t1 = time.monotonic()
        run.server.play_and_wait(wav, timeout_s=seconds + 60)
        c2, rss_sp, hwm = run.cpu_rss()
        t2 = time.monotonic()
    finally:
        run.stop()
    return {"rate_hz": rate_hz, "silence_cpu_pct": 100 * (c1 - c0) / (t1 - t0),
            "speech_cpu_pct": 100 * (c2 - c1) / (t2 - t1), "rss_silence_mb": rss_sil / 1024,
            "rss_speech_mb": rss_sp / 1024, "peak_rss_mb": hwm / 1024, "seconds": seconds}


def run(args) -> list[str]:
    from vadstream.stages.detector import DetectorConfig
    from vadstream.stages.model import DEFAULT_MODEL_PATH

    model = str(args.model or DEFAULT_MODEL_PATH)
    cmd = report.command_line()
    cfg = DetectorConfig()
    DETECTOR_ARGS.clear()
    if getattr(args, "detector", "defaults") == "recommended":
        import json

        tuning = Path(args.out) / "results" / "tuning.json"
        rec = json.loads(tuning.read_text())["data"]["recommended"]
        cfg = cfg.replace(**rec)
        for key, flag in DETECTOR_FLAGS.items():
            DETECTOR_ARGS.extend([flag, str(rec[key])])
    PulseServer, why = harness()
    if PulseServer is None:
        md = f"## Through the real daemon\n\nNot measured: {why}.\n"
        report.save_section(Path(args.out), "daemon", {"measured": False, "reason": why}, md, cmd)
        return [md]
    data_root = Path(args.data_root) if args.data_root else evaluate.default_data_root()
    quick = args.quick
    if (data_root / "dev").is_dir():
        from vadstream.training.data import build_eval_set, build_nonspeech_set

        mixtures = evaluate.half(build_eval_set(data_root, "dev", snr_db=10.0, seed=args.seed), "test")
        speech_items = mixtures[:1] if quick else mixtures[:6]
        ns_items = evaluate.half(build_nonspeech_set(data_root, "dev"), "test")
        ns_items += evaluate.half(build_nonspeech_set(data_root, "dev"), "tune")  # only used past the test half
        need = (8.0 if quick else args.nonspeech_minutes * 60) * RATE
        parts, total = [np.zeros(0, dtype=np.float32)], 0
        for it in ns_items:
            if total >= need:
                break
            parts.append(it.audio[: int(need - total)])
            total += parts[-1].size
        nonspeech = np.concatenate(parts)
        if quick:
            speech_items = [dataclasses.replace(speech_items[0], audio=speech_items[0].audio[: 12 * RATE],
                                                speech=speech_items[0].speech[: 12 * RATE])]
    else:
        md = f"## Through the real daemon\n\nNot measured: no dev split under {data_root}.\n"
        report.save_section(Path(args.out), "daemon", {"measured": False}, md, cmd)
        return [md]
    results: dict = {"latency": None, "cost": [], "errors": []}
    cost_s = 3.0 if quick else 60.0
    previous = None
    prev_path = Path(args.out) / "results" / "daemon.json"
    if not quick and args.nonspeech_minutes == 0 and prev_path.is_file():
        import json

        previous = json.loads(prev_path.read_text())  # its non-speech and cost figures are kept
    with tempfile.TemporaryDirectory(prefix="vadstream-bench-") as d:
        tmp = Path(d)
        def latency() -> None:
            try:
                log(f"  daemon latency: {sum(i.audio.size for i in speech_items) / RATE:.0f} s speech + "
                    f"{nonspeech.size / RATE:.0f} s non-speech, real time")
                results["latency"] = latency_run(tmp, model, speech_items, nonspeech, detector_config=cfg)
            except Exception as exc:  # noqa: BLE001 - report, do not hide
                results["errors"].append(f"latency: {type(exc).__name__}: {exc}")

        # The latency run (real time, long) and the cost runs use separate PulseAudio servers and
        # daemons, so they run side by side; each daemon's CPU is its own process's.
        lat_thread = threading.Thread(target=latency)
        lat_thread.start()
        speech_audio = np.concatenate([i.audio for i in mixtures[1::2][:4]]) if not quick else speech_items[0].audio
        for rate in (() if previous else (RATE,) if quick else (RATE, 48000)):
            try:
                log(f"  daemon cost at {rate} Hz: {cost_s:.0f} s silence + {cost_s:.0f} s speech")
                results["cost"].append(cost_run(tmp, model, speech_audio, rate, cost_s))
            except Exception as exc:  # noqa: BLE001
                results["errors"].append(f"cost {rate} Hz: {type(exc).__name__}: {exc}")
        lat_thread.join()
    which = "the settings recommended by the tuning section, passed as flags" if DETECTOR_ARGS else \
        "the defaults in `DetectorConfig` at run time"
    lines = ["## Through the real daemon (PulseAudio -> `vadstream run` -> ZeroMQ)\n",
             "A private PulseAudio server (`tests/pulse.py`) with a null sink; `vadstream run --device pulse "
             "--samplerate RATE --prob` captures its monitor through PortAudio; `paplay` plays the test audio "
             "in real time; a ZeroMQ subscriber in the bench process stamps each message on arrival. Delays "
             "run from the moment the labelled boundary sample was captured by the daemon (its own capture "
             "timestamps) to the arrival of `speech_start`/`speech_end` at the subscriber: model lookahead, "
             "detector, processing and transport; not the harness's playback path. The file's position in "
             "the daemon's stream is found by matching the daemon's published per-hop probabilities with "
             f"offline ones at 1 ms sub-hop shifts. Detector: {which} "
             f"(onset {cfg.onset_threshold:g}, offset {cfg.offset_threshold:g}, min speech {cfg.min_speech_ms:g} ms, "
             f"hangover {cfg.min_silence_ms:g} ms, pad {cfg.speech_pad_ms:g} ms).\n"]
    lat = results["latency"]
    if previous and lat:
        p_lat = previous["data"].get("latency") or {}
        for key in ("nonspeech_s", "false_starts", "false_starts_per_hour"):
            lat[key] = p_lat.get(key)
        results["cost"] = previous["data"].get("cost", [])
        results["kept_from"] = previous["machine"]["date_utc"]
        lines.append(f"_Speech part re-run alone (`--nonspeech-minutes 0`); the non-speech false starts and the "
                     f"cost table are kept from the full run of {previous['machine']['date_utc']} (same model and "
                     f"settings; command `{previous['command']}`)._\n")
    if lat:
        s = lat["summary"]
        lines.append(f"{lat['speech_s']:.0f} s of dev test-half mixtures at 10 dB SNR (1 s silence between), then "
                     f"{lat['nonspeech_s'] / 60:.1f} min of dev non-speech clips (test half first, then the "
                     f"tune half if needed to reach the length), at a {lat['rate_hz']} Hz device rate. Alignment "
                     f"check: mean |Δp| between the daemon's and the offline probabilities "
                     f"{lat['alignment_mean_abs_dp']:.4f}; speech starts: daemon {lat['daemon_starts']}, offline "
                     f"{lat['offline_starts']}, median distance of a daemon start from an offline one "
                     f"{evaluate.fmt(lat['daemon_vs_offline_start_ms_median'], 1)} ms.\n")
        lines.append(evaluate.markdown_table(
            ["onset p50 ms", "onset p90", "offset p50", "offset p90", "segments", "missed", "early", "pauses",
             "bridged", "fragmented", "false starts (non-speech)", "per hour", "messages dropped"],
            [[evaluate.fmt(s["onset_median_ms"], 0), evaluate.fmt(s["onset_p90_ms"], 0),
              evaluate.fmt(s["offset_median_ms"], 0),
              evaluate.fmt(s["offset_p90_ms"], 0), s["segments"], s["missed"], s["early"], s["pauses"], s["bridged"],
              s["fragments"],
              lat["false_starts"], evaluate.fmt(lat["false_starts_per_hour"], 1),
              evaluate.fmt(lat["dropped"])]]) + "\n")
    if results["cost"]:
        lines.append(f"Daemon cost (CPU % of one core = CPU seconds / wall seconds; RSS from /proc), "
                     f"{cost_s:.0f} s of digital silence then {cost_s:.0f} s of dev speech mixtures:\n")
        lines.append(evaluate.markdown_table(["device rate", "CPU % silence", "CPU % speech", "RSS MB silence",
                                       "RSS MB speech", "peak RSS MB"],
                                      [[f"{c['rate_hz']} Hz", evaluate.fmt(c["silence_cpu_pct"], 2),
                                        evaluate.fmt(c["speech_cpu_pct"], 2),
                                        evaluate.fmt(c["rss_silence_mb"], 1), evaluate.fmt(c["rss_speech_mb"], 1),
                                        evaluate.fmt(c["peak_rss_mb"], 1)] for c in results["cost"]]) + "\n")
    for e in results["errors"]:
        lines.append(f"- **not measured**: {e}")
    md = "\n".join(lines) + "\n"
    report.save_section(Path(args.out), "daemon", results, md, cmd)
    return [md]
