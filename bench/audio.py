"""Speech audio topics (section audio): the daemon's CPU and RSS without and with audio subscribers.

Setup as in the daemon section's cost runs (``bench/daemon.py``): a private PulseAudio server with
a 16 kHz null sink, ``vadstream run --device pulse`` capturing its monitor, the same speech played
with ``paplay`` in real time. Three daemons run side by side, each with its own server, so they
share the machine's load; each one's CPU time and RSS are its own process's (``/proc``):

- ``none``: one event subscriber (``vad.``) only: the daemon does no audio work;
- ``reader``: plus a subscriber to ``audio.`` that reads every utterance and chunk;
- ``stalled``: plus a subscriber to ``audio.`` that never reads: its queue fills, the daemon
  counts drop episodes and holds at most ``publisher.sndhwm`` messages for it.

Speech: dev test-half mixtures when the corpus is there, else the tests' espeak-ng phrases
(``tests/audio_gen.py``) repeated to the length.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from vadstream.stages.samples import SAMPLE_RATE_HZ

from . import daemon, report

RATE = SAMPLE_RATE_HZ
MODES = {
    "none": "event subscriber only (`vad.`): no audio work",
    "reader": "+ a subscriber reading `audio.utterance` and `audio.speech`",
    "stalled": "+ an `audio.` subscriber that never reads",
}


class AudioReader(threading.Thread):
    """SUB to ``audio.``: counts messages and PCM bytes per topic (``read=False``: connects, never reads)."""

    def __init__(self, endpoint: str, read: bool = True):
        super().__init__(daemon=True)
        import zmq

        self.read = read
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0 if read else 1)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"audio.")
        self.sock.connect(endpoint)
        self.messages: dict[str, int] = {}
        self.pcm_bytes = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            if not self.read:
                time.sleep(0.05)
                continue
            if self.sock.poll(50):
                frames = self.sock.recv_multipart()
                topic = frames[0].decode()
                self.messages[topic] = self.messages.get(topic, 0) + 1
                self.pcm_bytes += len(frames[-1])

    def close(self) -> None:
        self._halt.set()
        self.join(2)
        self.sock.close(0)


def measure(tmp: Path, model: str | None, wav: Path, seconds: float, mode: str) -> dict:
    """One daemon with ``mode``'s subscribers; its CPU % over the played speech, RSS and drops."""
    run = daemon.start_daemon(tmp / f"audio-{mode}", RATE, model, prob=False)
    reader = None
    try:
        if mode != "none":
            reader = AudioReader(f"ipc://{tmp / f'audio-{mode}'}/events", read=mode == "reader")
            reader.start()
        time.sleep(1.0)  # the subscriptions reach the daemon
        c0, _, _ = run.cpu_rss()
        t0 = time.monotonic()
        run.server.play_and_wait(wav, timeout_s=seconds + 60)
        time.sleep(0.5)  # the last utterance goes out
        c1, rss, hwm = run.cpu_rss()
        t1 = time.monotonic()
        beats = [m for _, m in run.collector.of_type("heartbeat")]
    finally:
        run.stop()
        if reader is not None:
            reader.close()
    last = beats[-1] if beats else None
    return {"mode": mode, "cpu_pct": 100 * (c1 - c0) / (t1 - t0), "rss_mb": rss / 1024, "peak_rss_mb": hwm / 1024,
            "seconds": t1 - t0, "audio_messages": dict(reader.messages) if reader else {},
            "audio_mb_received": (reader.pcm_bytes / 2**20) if reader else 0.0,
            "dropped": last.dropped if last else None,
            "dropped_by_topic": dict(getattr(last, "dropped_by_topic", {}) or {}) if last else None}


def speech_audio(args, seconds: float) -> tuple[np.ndarray, str]:
    from vadstream.evaluation import evaluate

    data_root = Path(args.data_root) if args.data_root else evaluate.default_data_root()
    if (data_root / "dev").is_dir() and not args.quick:
        from vadstream.training.data import build_eval_set

        mixtures = evaluate.half(build_eval_set(data_root, "dev", snr_db=10.0, seed=args.seed), "test")
        audio = np.concatenate([i.audio for i in mixtures[:8]])
        what = "dev test-half mixtures at 10 dB SNR"
    else:
        sys.path.insert(0, str(report.REPO / "tests"))
        from audio_gen import espeak_missing, make_test_audio

        why = espeak_missing()
        if why:
            raise RuntimeError(why)
        audio = make_test_audio(gap_s=1.0, noise_dbfs=-60.0).samples
        what = "espeak-ng phrases with 1 s gaps (tests/audio_gen.py)"
    reps = int(np.ceil(seconds * RATE / audio.size))
    return np.tile(audio, reps)[: int(seconds * RATE)].astype(np.float32), what


def run(args) -> list[str]:
    from vadstream.service.config import AudioConfig, PublisherConfig
    from vadstream.stages.model import DEFAULT_MODEL_PATH

    model = str(args.model or DEFAULT_MODEL_PATH)
    cmd = report.command_line()
    out = Path(args.out)
    PulseServer, why = daemon.harness()
    seconds = 12.0 if args.quick else 60.0
    try:
        if PulseServer is None:
            raise RuntimeError(why)
        audio, what = speech_audio(args, seconds)
    except Exception as exc:  # noqa: BLE001 - report, do not hide
        md = f"## Speech audio topics: daemon cost\n\nNot measured: {exc}.\n"
        report.save_section(out, "audio", {"measured": False, "reason": str(exc)}, md, cmd)
        return [md]
    results: dict = {"seconds": seconds, "speech": what, "runs": [], "errors": []}
    with tempfile.TemporaryDirectory(prefix="vadstream-bench-audio-") as d:
        tmp = Path(d)
        wav = daemon.write_wav(tmp / "speech.wav", daemon.quantise(audio))
        got: dict[str, dict] = {}

        def one(mode: str) -> None:
            try:
                got[mode] = measure(tmp, model, wav, seconds, mode)
            except Exception as exc:  # noqa: BLE001
                results["errors"].append(f"{mode}: {type(exc).__name__}: {exc}")

        daemon.log(f"  audio topics: {seconds:.0f} s of speech, 3 daemons side by side ({', '.join(MODES)})")
        threads = [threading.Thread(target=one, args=(m,)) for m in MODES]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results["runs"] = [got[m] for m in MODES if m in got]
    a, p = AudioConfig(), PublisherConfig()
    lines = ["## Speech audio topics: daemon cost\n",
             f"`vadstream run --device pulse` at a 16 kHz device rate, {seconds:.0f} s of {what} played in real "
             "time; three daemons side by side (each with its own PulseAudio server, the same audio), CPU % of "
             "one core (CPU seconds / wall seconds over the playback) and RSS from /proc. Pre-roll "
             f"{a.pre_roll_ms:g} ms, post-roll {a.post_roll_ms:g} ms, `sndhwm` {p.sndhwm}.\n"]
    if results["runs"]:
        rows = []
        for r in results["runs"]:
            msgs = r["audio_messages"]
            rows.append([MODES[r["mode"]], f"{r['cpu_pct']:.2f}", f"{r['rss_mb']:.1f}", f"{r['peak_rss_mb']:.1f}",
                         str(msgs.get("audio.utterance", 0)), str(msgs.get("audio.speech", 0)),
                         f"{r['audio_mb_received']:.2f}", str(r["dropped"])])
        lines.append(report_table(["subscribers", "CPU %", "RSS MB", "peak RSS MB", "utterances read",
                                   "chunks read", "PCM MB read", "drop episodes"], rows) + "\n")
    for e in results["errors"]:
        lines.append(f"- **not measured**: {e}")
    md = "\n".join(lines) + "\n"
    report.save_section(out, "audio", results, md, cmd)
    return [md]


def report_table(header: list[str], rows: list[list[str]]) -> str:
    from vadstream.evaluation.evaluate import markdown_table

    return markdown_table(header, rows)
