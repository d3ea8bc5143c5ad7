"""``vadstream record DIR``: write every utterance the daemon publishes as a WAV file with a JSON sidecar.

Each ``audio.utterance`` message (one speech segment with its pre- and post-roll, 16 kHz mono
16-bit) becomes ``DIR/utt-<UTC start time>-<stream id>-<start sample>.wav`` and a ``.json`` beside
it (stream and wall-clock times, stream id, source, probability, reason). Both are written to a
temporary name and renamed, so a reader never sees half a file. The WAV path is printed on stdout,
one per line, as soon as both files are complete.

``--exec CMD`` runs CMD on each file, one at a time, in the background so recording goes on
meanwhile (``{wav}`` and ``{json}`` in CMD are replaced by the paths; without them the WAV path
is appended; the environment has ``VADSTREAM_WAV`` and ``VADSTREAM_JSON``). ``--max-files`` and
``--max-bytes`` delete the oldest recordings (only this command's ``utt-*`` pairs) after each new
one, so a forgotten recorder cannot fill the disk.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import re
import shlex
import subprocess
import sys
import threading
import wave
from pathlib import Path

from vadstream.service import config
from vadstream.stages.samples import SAMPLE_RATE_HZ

PREFIX = "utt-"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"500M"`` -> bytes (k/M/G/T are powers of 1024; a plain number is bytes)."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size: use bytes or a number with k, M, G or T (e.g. 500M)")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2).lower() or " "))


def _size_arg(text: str) -> int:
    import argparse

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser) -> None:
    parser.add_argument("dir", metavar="DIR", type=Path, help="directory for the recordings (created if missing)")
    parser.add_argument("--endpoint", metavar="EP", help="events endpoint (default: from --config, else the "
                        "runtime directory's ipc socket)")
    parser.add_argument("--config", metavar="FILE", help="read the endpoint from this daemon config file")
    parser.add_argument("--exec", dest="exec_cmd", metavar="CMD",
                        help="run CMD on each recording ({wav} and {json} are replaced; else the WAV path is appended)")
    parser.add_argument("--max-files", type=int, metavar="N", help="keep at most N recordings (oldest deleted)")
    parser.add_argument("--max-bytes", type=_size_arg, metavar="SIZE",
                        help="keep at most SIZE bytes of recordings, WAV and JSON (e.g. 500M; oldest deleted)")
    parser.add_argument("--count", type=int, metavar="N", help="exit after N recordings")
    parser.add_argument("--timeout", type=float, metavar="S",
                        help="exit (status 1) if no utterance arrives for S seconds")


# -- one recording ---------------------------------------------------------------------------------

def file_stem(utt) -> str:
    """``utt-20260101T120000.123Z-<stream id>-<start sample>``: names sort by time within a stream."""
    start_ns = utt.wall_time_ns + (utt.start_sample - utt.sample_index) * 1_000_000_000 // SAMPLE_RATE_HZ
    t = dt.datetime.fromtimestamp(start_ns / 1e9, tz=dt.timezone.utc)
    return f"{PREFIX}{t.strftime('%Y%m%dT%H%M%S')}.{t.microsecond // 1000:03d}Z-{utt.stream_id}-{utt.start_sample}"


def sidecar(utt, wav_name: str) -> dict:
    """What a program needs to know about a recording besides its samples."""
    rate = SAMPLE_RATE_HZ
    start_ns = utt.wall_time_ns + (utt.start_sample - utt.sample_index) * 1_000_000_000 // rate
    return {
        "wav": wav_name, "stream_id": utt.stream_id, "source": utt.source, "seq": utt.seq,
        "sample_rate_hz": utt.sample_rate_hz,
        "start_sample": utt.start_sample, "end_sample": utt.end_sample,
        "start_s": utt.start_sample / rate, "end_s": utt.end_sample / rate, "duration_s": utt.duration_s,
        "audio_start_sample": utt.sample_index, "num_samples": utt.num_samples,
        "pre_roll_s": (utt.start_sample - utt.sample_index) / rate,
        "post_roll_s": (utt.end_of_audio - utt.end_sample) / rate,
        "wall_time_ns": start_ns,
        "wall_time": dt.datetime.fromtimestamp(start_ns / 1e9, tz=dt.timezone.utc).isoformat(timespec="milliseconds"),
        "probability": utt.probability, "reason": utt.reason,
        "note": "the WAV holds audio_start_sample .. audio_start_sample + num_samples; the segment is "
                "start_sample .. end_sample (stream samples at 16 kHz); wall_time is the segment's start",
    }


def write_recording(directory: Path, utt) -> tuple[Path, Path]:
    """WAV and JSON sidecar for ``utt``, each written under a temporary name and renamed."""
    stem = file_stem(utt)
    wav_path, json_path = directory / f"{stem}.wav", directory / f"{stem}.json"
    tmp = directory / f".{stem}.wav.tmp"
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(utt.sample_rate_hz)
        w.writeframes(utt.samples.astype("<i2", copy=False).tobytes())
    os.replace(tmp, wav_path)
    tmp = directory / f".{stem}.json.tmp"
    tmp.write_text(json.dumps(sidecar(utt, wav_path.name), indent=1) + "\n")
    os.replace(tmp, json_path)
    return wav_path, json_path


def enforce_retention(directory: Path, max_files: int | None, max_bytes: int | None,
                      keep: Path | None = None) -> list[Path]:
    """Delete the oldest ``utt-*`` recordings (WAV + JSON) beyond the limits; the deleted WAVs.

    The newest recording (``keep``) is never deleted, even when it alone exceeds ``max_bytes``.
    """
    if max_files is None and max_bytes is None:
        return []
    wavs = sorted(directory.glob(f"{PREFIX}*.wav"), key=lambda p: p.name)
    sizes = {}
    for p in wavs:
        side = p.with_suffix(".json")
        try:
            sizes[p] = p.stat().st_size + (side.stat().st_size if side.exists() else 0)
        except FileNotFoundError:  # deleted meanwhile (e.g. by the --exec command)
            sizes[p] = 0
    total = sum(sizes.values())
    deleted = []
    for p in wavs:
        over_files = max_files is not None and len(wavs) - len(deleted) > max_files
        over_bytes = max_bytes is not None and total > max_bytes
        if not (over_files or over_bytes):
            break
        if keep is not None and p == keep:
            continue
        for f in (p, p.with_suffix(".json")):
            try:
                f.unlink()
            except FileNotFoundError:
                pass
        total -= sizes[p]
        deleted.append(p)
    return deleted


# -- --exec ----------------------------------------------------------------------------------------

def exec_argv(cmd: str, wav: Path, side: Path) -> list[str]:
    argv = shlex.split(cmd)
    if not any("{wav}" in a or "{json}" in a for a in argv):
        return [*argv, str(wav)]
    return [a.replace("{wav}", str(wav)).replace("{json}", str(side)) for a in argv]


class Runner(threading.Thread):
    """Runs ``--exec`` commands one at a time, in order, so that receiving never waits for them."""

    def __init__(self, cmd: str):
        super().__init__(daemon=True)
        self.cmd = cmd
        self.jobs: queue.Queue = queue.Queue()
        self.failures = 0

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            wav, side = job
            if not wav.exists():  # deleted by --max-files/--max-bytes before its turn came
                print(f"vadstream record: {wav.name} was deleted by the retention limits before --exec ran",
                      file=sys.stderr, flush=True)
                continue
            env = {**os.environ, "VADSTREAM_WAV": str(wav), "VADSTREAM_JSON": str(side)}
            try:
                rc = subprocess.run(exec_argv(self.cmd, wav, side), env=env, stdin=subprocess.DEVNULL).returncode
            except OSError as exc:
                rc = None
                print(f"vadstream record: --exec failed: {exc}", file=sys.stderr, flush=True)
            if rc:
                print(f"vadstream record: --exec exited {rc} for {wav.name}", file=sys.stderr, flush=True)
            if rc != 0:
                self.failures += 1

    def finish(self) -> None:
        self.jobs.put(None)
        self.join()


# -- main ------------------------------------------------------------------------------------------

def main(args) -> int:
    from vadstream.wire.audio import UTTERANCE_TOPIC, Utterance
    from vadstream.wire.client import Subscriber

    def fail(text: str, status: int = 2) -> int:
        print(f"vadstream record: error: {text}", file=sys.stderr)
        return status

    for name in ("max_files", "count"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return fail(f"--{name.replace('_', '-')} = {value} must be at least 1")
    try:
        cfg = config.load_file(args.config) if args.config else config.Config()
    except config.ConfigError as exc:
        return fail(str(exc))
    endpoint = args.endpoint or cfg.endpoints()[0]
    try:
        args.dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return fail(f"cannot create {args.dir}: {exc.strerror}", 1)
    if args.exec_cmd is not None:
        try:
            exec_argv(args.exec_cmd, Path("x.wav"), Path("x.json"))
        except ValueError as exc:
            return fail(f"--exec {args.exec_cmd!r}: {exc}")
    runner = Runner(args.exec_cmd) if args.exec_cmd else None
    if runner:
        runner.start()

    def on_gap(gap) -> None:
        print(f"vadstream record: missed {gap.missing} utterance(s): this recorder fell behind the daemon",
              file=sys.stderr, flush=True)

    from vadstream.wire.endpoints import unreachable

    problem = unreachable(endpoint)
    if problem and problem.startswith("permission denied"):  # waiting would be silence forever
        if runner:
            runner.finish()
        return fail(problem, 1)
    if problem:  # no daemon yet, or a stale socket file: say so, and wait for one to start
        print(f"vadstream record: {problem}; waiting for a daemon", file=sys.stderr, flush=True)
    print(f"vadstream record: recording utterances from {endpoint} into {args.dir}", file=sys.stderr, flush=True)
    written = 0
    status = 0
    try:
        with Subscriber(endpoint, (UTTERANCE_TOPIC,), on_gap=on_gap) as sub:
            while args.count is None or written < args.count:
                message = sub.receive(args.timeout)
                if message is None:
                    print(f"vadstream record: no utterance for {args.timeout} s from {endpoint}", file=sys.stderr)
                    status = 1
                    break
                if not isinstance(message, Utterance):
                    continue
                try:
                    wav, side = write_recording(args.dir, message)
                except OSError as exc:  # a full disk: say so, keep going (retention may free space)
                    print(f"vadstream record: cannot write to {args.dir}: {exc.strerror}", file=sys.stderr, flush=True)
                    enforce_retention(args.dir, args.max_files, args.max_bytes)
                    continue
                written += 1
                enforce_retention(args.dir, args.max_files, args.max_bytes, keep=wav)
                try:
                    print(wav, flush=True)
                except BrokenPipeError:  # `vadstream record DIR | head -1`
                    break
                if runner:
                    runner.jobs.put((wav, side))
    except KeyboardInterrupt:
        pass
    finally:
        if runner:
            runner.finish()
    return status


if __name__ == "__main__":
    import argparse

    _parser = argparse.ArgumentParser(prog="vadstream record", description=__doc__.splitlines()[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
