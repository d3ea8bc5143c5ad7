"""``vadstream monitor``: a live terminal view of speech probability, state, level and counters.

Two sources: the events of a running daemon (``vadstream run --prob`` publishes the per-hop
probabilities the moving bar needs; without ``--prob`` only the state and counters move), or the
monitor's own pipeline on an audio file (``--input FILE``, paced in real time unless
``--no-realtime``). On a terminal the view redraws a few lines in place (colour unless
``NO_COLOR`` is set); elsewhere it prints plain lines: one per event and a status line every
``--interval-s`` seconds of audio. Ctrl-C restores the terminal and prints a summary.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import math
import os
import shutil
import sys
import time
from typing import Iterator, TextIO

import numpy as np

from vadstream.stages.detector import EndReason, SpeechEnd, SpeechStart
from vadstream.stages.samples import SAMPLE_RATE_HZ

BLOCK_MS = 20.0  # file input is fed to the pipeline in blocks of this size
SPARK = "▁▂▃▄▅▆▇█"
LEVEL_FLOOR_DB = -70.0


# --------------------------------------------------------------------------------------------
# What the sources report


@dataclasses.dataclass(frozen=True)
class Prob:
    time_s: float  # start of the hop
    probability: float


@dataclasses.dataclass(frozen=True)
class Level:
    time_s: float
    dbfs: float


@dataclasses.dataclass(frozen=True)
class StateChange:
    state: str  # quiet, starting, speaking, stopping, lost
    time_s: float | None = None


@dataclasses.dataclass(frozen=True)
class Note:
    """Something to show as a line (daemon status messages, gaps)."""

    text: str
    time_s: float | None = None


@dataclasses.dataclass(frozen=True)
class Tick:
    """Nothing new; lets the view redraw (e.g. while waiting for a daemon)."""


Update = Prob | Level | SpeechStart | SpeechEnd | StateChange | Note | Tick  # speech events: sample indices


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level of float samples in dBFS (full-scale sine = -3 dB), floored at ``LEVEL_FLOOR_DB``."""
    if samples.size == 0:
        return LEVEL_FLOOR_DB
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(LEVEL_FLOOR_DB, 20.0 * math.log10(rms + 1e-12))


# --------------------------------------------------------------------------------------------
# Sources


def file_chunks(path: str, realtime: bool = True, speed: float = 1.0) -> Iterator[np.ndarray]:
    """A file as 16 kHz mono blocks of ``BLOCK_MS``, paced like a live input when ``realtime``."""
    from vadstream.commands.file import open_audio

    block = int(SAMPLE_RATE_HZ * BLOCK_MS / 1000)
    fed = 0
    started = time.monotonic()
    with open_audio(path, block_ms=BLOCK_MS) as f:
        for chunk in f.blocks():
            for i in range(0, chunk.size, block):
                piece = chunk[i: i + block]
                if realtime:
                    delay = started + fed / (SAMPLE_RATE_HZ * speed) - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                fed += piece.size
                yield piece


def microphone_chunks(device: str | int | None) -> Iterator[np.ndarray | Update]:
    """Live blocks from an input device (the daemon's capture source); its status changes as notes."""
    from vadstream.audio.blocks import SourceSpec
    from vadstream.audio.sources import open_source

    src = open_source(SourceSpec(input=None, device=device, block_ms=BLOCK_MS))
    try:
        src.start()
        while True:
            for status in src.poll_status():
                yield Note(f"{status.kind}: {status.message}")
            block = src.read(0.1)
            yield Tick() if block is None else block.samples
    finally:
        src.close()


def pipeline_updates(chunks: Iterator[np.ndarray | Update], vad, config) -> Iterator[Update]:
    """Run a :class:`Stream` (``vad`` + a Detector with ``config``) over 16 kHz blocks (other items
    pass through); close it at the end."""
    from vadstream.stages.stream import Stream

    stream = Stream(config=config, vad=vad)
    state = stream.state

    def convert(out) -> Iterator[Update]:
        nonlocal state
        for s, p in zip(out.hop_starts.tolist(), out.probs.tolist()):
            yield Prob(s / SAMPLE_RATE_HZ, p)
        yield from out.events
        if stream.state != state:
            state = stream.state
            end = out.hop_starts[-1] + stream.hop_samples if out.hop_starts.size else stream.sample_index
            yield StateChange(state.value, end / SAMPLE_RATE_HZ)

    for item in chunks:
        if not isinstance(item, np.ndarray):
            yield item
            continue
        out = stream.process(item)
        yield Level(stream.sample_index / SAMPLE_RATE_HZ, level_dbfs(item))
        yield from convert(out)
    yield from convert(stream.close())


def daemon_updates(endpoint: str | None, timeout_s: float = 0.1) -> Iterator[Update]:
    """Subscribe to a daemon's events (:class:`vadstream.wire.client.Subscriber`) and translate them."""
    from vadstream.wire import events as ev
    from vadstream.wire.client import Subscriber

    notes: list[str] = []
    sub = Subscriber(endpoint, on_gap=lambda gap: notes.append(f"missed {gap.missing} message(s)"),
                     on_invalid=lambda why: notes.append(f"ignored a message: {why}"))
    stream_id = None
    heartbeats_without_prob = 0  # -1 once probabilities were seen or the hint was given
    yield Note(f"listening to {sub.endpoint}")
    try:
        while True:
            msg = sub.receive(timeout_s)
            for text in notes:
                yield Note(text)
            notes.clear()
            if msg is None:
                yield Tick()
                continue
            t = msg.time_s
            if stream_id is not None and msg.stream_id != stream_id:
                yield Note(f"daemon restarted (stream {msg.stream_id})", t)
            stream_id = msg.stream_id
            if isinstance(msg, ev.Probability):
                heartbeats_without_prob = -1
                yield Prob(t, float(msg.probability))
                level = getattr(msg, "level_dbfs", None)
                if level is not None:
                    yield Level(t, float(level))
            elif isinstance(msg, ev.SpeechStart):
                yield SpeechStart(msg.sample_index, msg.decided_sample, msg.probability)
            elif isinstance(msg, ev.SpeechEnd):
                yield SpeechEnd(msg.sample_index, msg.decided_sample, msg.probability, msg.start_sample,
                                EndReason(msg.reason))
            elif isinstance(msg, ev.Heartbeat):
                if heartbeats_without_prob >= 0:
                    heartbeats_without_prob += 1
                    if heartbeats_without_prob == 2:
                        heartbeats_without_prob = -1
                        yield Note("the daemon publishes no probabilities: run it with --prob "
                                   "(or publisher.prob = true) for the moving bar", t)
                yield StateChange(msg.state, t)
            elif isinstance(msg, ev.Status):
                text = msg.message if msg.message.startswith(msg.kind) else f"{msg.kind}: {msg.message}"
                yield Note(text, t)
                yield StateChange(msg.state, t)
    finally:
        sub.close()


# --------------------------------------------------------------------------------------------
# The model of the view


class MonitorState:
    """Everything the view shows, updated from :class:`Update` objects."""

    def __init__(self, history: int = 200):
        self.time_s = 0.0
        self.prob: float | None = None
        self.level_db: float | None = None
        self.state = "quiet"
        self.segments = 0
        self.speech_s = 0.0  # closed segments
        self.open_start_s: float | None = None
        self.last_end: SpeechEnd | None = None
        self.history: collections.deque[tuple[float, bool]] = collections.deque(maxlen=history)
        self.hops = 0

    @property
    def in_speech(self) -> bool:
        return self.state in ("speaking", "stopping")

    def apply(self, u: Update) -> None:
        if isinstance(u, Prob):
            self.prob = u.probability
            self.hops += 1
            self.time_s = max(self.time_s, u.time_s)
            self.history.append((u.probability, self.in_speech))
        elif isinstance(u, Level):
            self.level_db = u.dbfs
            self.time_s = max(self.time_s, u.time_s)
        elif isinstance(u, SpeechStart):
            self.open_start_s = u.sample_index / SAMPLE_RATE_HZ
            self.state = "speaking"
            self.time_s = max(self.time_s, u.decided_sample / SAMPLE_RATE_HZ)
        elif isinstance(u, SpeechEnd):
            self.segments += 1
            self.speech_s += u.duration_samples / SAMPLE_RATE_HZ
            self.open_start_s = None
            self.last_end = u
            self.state = "quiet"
            self.time_s = max(self.time_s, u.decided_sample / SAMPLE_RATE_HZ)
        elif isinstance(u, StateChange):
            self.state = u.state
            if u.time_s is not None:
                self.time_s = max(self.time_s, u.time_s)

    def total_speech_s(self) -> float:
        open_s = max(0.0, self.time_s - self.open_start_s) if self.open_start_s is not None else 0.0
        return self.speech_s + open_s


# --------------------------------------------------------------------------------------------
# Views

STATE_LABEL = {"quiet": "silence", "starting": "starting", "speaking": "SPEECH", "stopping": "SPEECH~", "lost": "LOST"}
STATE_COLOUR = {"quiet": "\x1b[2m", "starting": "\x1b[33m", "speaking": "\x1b[1;30;42m",
                "stopping": "\x1b[30;43m", "lost": "\x1b[1;37;41m"}
RESET = "\x1b[0m"


def _clock(seconds: float) -> str:
    m, s = divmod(max(0.0, seconds), 60.0)
    return f"{int(m):02d}:{s:05.2f}"


class PlainView:
    """Plain lines for pipes and logs: every event, and a status line every ``interval_s`` of audio."""

    def __init__(self, out: TextIO, interval_s: float = 1.0):
        self.out = out
        self.interval_s = interval_s
        self._next_status = interval_s

    @staticmethod
    def event_line(s: MonitorState, u: Update) -> str | None:
        """The line an event gets (None for updates that only move the view)."""
        if isinstance(u, (SpeechStart, SpeechEnd)):
            at, decided = u.sample_index / SAMPLE_RATE_HZ, u.decided_sample / SAMPLE_RATE_HZ
            if isinstance(u, SpeechStart):
                return f"{_clock(decided)} {u.TYPE} at {at:.3f}s p={u.probability:.2f}"
            length = u.duration_samples / SAMPLE_RATE_HZ
            return f"{_clock(decided)} {u.TYPE} at {at:.3f}s ({length:.2f}s, {u.reason.value})"
        if isinstance(u, Note):
            return f"{_clock(u.time_s if u.time_s is not None else s.time_s)} {u.text}"
        return None

    def update(self, s: MonitorState, u: Update) -> None:
        line = self.event_line(s, u)
        if line:
            self.out.write(line + "\n")
        if self.interval_s > 0 and s.time_s >= self._next_status and s.hops:
            self.out.write(self.status_line(s) + "\n")
            self._next_status = (math.floor(s.time_s / self.interval_s) + 1) * self.interval_s
        if line:
            self.out.flush()

    @staticmethod
    def status_line(s: MonitorState) -> str:
        prob = f"{s.prob:.2f}" if s.prob is not None else "-"
        level = f"{s.level_db:.1f}dBFS" if s.level_db is not None else "-"
        return (f"{_clock(s.time_s)} state={s.state} p={prob} level={level} "
                f"segments={s.segments} speech={s.total_speech_s():.1f}s")

    def close(self, s: MonitorState) -> None:
        self.out.write(f"{_clock(s.time_s)} done: {s.segments} segment(s), {s.total_speech_s():.1f}s of speech "
                       f"in {s.time_s:.1f}s\n")
        self.out.flush()


class TtyView:
    """A few lines redrawn in place: probability history, bars, state in colour, counters."""

    LINES = 5

    def __init__(self, out: TextIO, title: str, fps: float = 25.0, colour: bool | None = None):
        self.out = out
        self.title = title
        self.min_interval = 1.0 / fps
        self.colour = (os.environ.get("NO_COLOR") is None) if colour is None else colour
        self._last = 0.0
        self._drawn = False
        self.out.write("\x1b[?25l\x1b[?7l")  # hide the cursor; clip long lines instead of wrapping

    def _c(self, code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if self.colour else text

    def update(self, s: MonitorState, u: Update) -> None:
        now = time.monotonic()
        note = PlainView.event_line(s, u)
        if note or now - self._last >= self.min_interval:
            self.draw(s, note=note)
            self._last = now

    def render(self, s: MonitorState, width: int) -> list[str]:
        inner = max(10, width - 24)
        # 1: title and clock
        head = f" vadstream monitor · {self.title}"
        lines = [head[: width - 12].ljust(width - 12) + _clock(s.time_s).rjust(10)]
        # 2: probability history, newest on the right, green where speech
        hist = list(s.history)[-inner:]
        spark = []
        for p, speech in hist:
            ch = SPARK[min(len(SPARK) - 1, int(p * (len(SPARK) - 1) + 0.5))]
            spark.append(self._c("\x1b[32m", ch) if speech else self._c("\x1b[2m", ch))
        lines.append(" history ".ljust(10) + " " * (inner - len(hist)) + "".join(spark))
        # 3: probability bar
        p = s.prob if s.prob is not None else 0.0
        filled = int(round(p * inner))
        bar = "█" * filled + "░" * (inner - filled)
        bar = self._c("\x1b[32m" if s.in_speech else "\x1b[36m", bar)
        lines.append(f" prob     {bar} {p:4.2f}" if s.prob is not None else f" prob     {'·' * inner}  -  ")
        # 4: level meter (-70 .. 0 dBFS)
        if s.level_db is not None:
            frac = (s.level_db - LEVEL_FLOOR_DB) / -LEVEL_FLOOR_DB
            n = int(round(max(0.0, min(1.0, frac)) * inner))
            colour = "\x1b[31m" if s.level_db > -6 else ("\x1b[33m" if s.level_db > -20 else "\x1b[34m")
            lines.append(f" level    {self._c(colour, '▮' * n)}{' ' * (inner - n)} {s.level_db:5.1f} dBFS")
        else:
            lines.append(f" level    {'n/a (the daemon does not publish levels)'[:inner]}")
        # 5: state and counters
        label = f" {STATE_LABEL.get(s.state, s.state)} ".center(10)
        last = ""
        if s.last_end is not None:
            e, rate = s.last_end, SAMPLE_RATE_HZ
            last = f"  last {e.start_sample / rate:.2f}-{e.sample_index / rate:.2f}s ({e.reason.value})"
        lines.append(f" state    {self._c(STATE_COLOUR.get(s.state, ''), label)}  segments {s.segments}"
                     f"  speech {s.total_speech_s():.1f}s{last}")
        return lines

    def draw(self, s: MonitorState, note: str | None = None) -> None:
        width = max(40, shutil.get_terminal_size((80, 24)).columns - 1)
        text = ""
        if self._drawn:
            text += f"\x1b[{self.LINES}F"  # back to the first line of the view
        if note:
            text += "\x1b[2K " + note[: width - 1] + "\n"
        text += "".join("\x1b[2K" + line + "\n" for line in self.render(s, width))
        self.out.write(text)
        self.out.flush()
        self._drawn = True

    def close(self, s: MonitorState) -> None:
        self.draw(s)
        self.out.write("\x1b[?25h\x1b[?7h")  # show the cursor, wrap lines again
        self.out.write(f"{s.segments} segment(s), {s.total_speech_s():.1f}s of speech in {s.time_s:.1f}s\n")
        self.out.flush()


# --------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vadstream.commands.file import add_detector_arguments

    parser.add_argument("--input", metavar="SRC",
                        help="run the pipeline here on an audio file, or on 'microphone', instead of "
                             "subscribing to a daemon")
    parser.add_argument("--device", metavar="DEV",
                        help="input device index or name substring (implies --input microphone)")
    parser.add_argument("--endpoint", metavar="EP",
                        help="daemon events endpoint (default: the daemon's, from its config file)")
    parser.add_argument("--no-realtime", dest="realtime", action="store_false",
                        help="with --input: process as fast as possible instead of in real time")
    parser.add_argument("--speed", type=float, default=1.0, metavar="X",
                        help="with --input: play the file X times faster than real time (default 1)")
    parser.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    parser.add_argument("--interval-s", type=float, default=1.0, metavar="S",
                        help="plain mode: a status line every S seconds of audio (0: events only)")
    add_detector_arguments(parser)


def _error(message: str) -> None:
    print(f"vadstream monitor: {message}", file=sys.stderr, flush=True)


def main(args: argparse.Namespace) -> int:
    from vadstream.audio.blocks import SourceError
    from vadstream.commands.file import AudioFileError, load_settings

    try:
        config, model_path = load_settings(args)
    except (ValueError, OSError) as exc:
        _error(str(exc))
        return 2
    if args.speed <= 0:
        _error(f"--speed must be > 0, got {args.speed}")
        return 2
    source = args.input or ("microphone" if args.device is not None else None)
    if source:
        from vadstream.stages.model import ModelError
        from vadstream.stages.vad import Vad

        try:
            vad = Vad(model_path)
        except ModelError as exc:
            _error(str(exc))
            return 2
        if source in ("microphone", "mic"):
            device = int(args.device) if args.device and args.device.isdigit() else args.device
            chunks = microphone_chunks(device)
            title = f"microphone {args.device or '(default)'}"
        else:
            chunks = file_chunks(source, realtime=args.realtime, speed=args.speed)
            title = f"{os.path.basename(source)} (file{', real time' if args.realtime else ''})"
        updates = pipeline_updates(chunks, vad, config)
    else:
        endpoint = args.endpoint
        if not endpoint:
            from vadstream.service import config as config_module

            try:
                endpoint = config_module.load(argparse.Namespace(config=args.config)).endpoints()[0]
            except (ValueError, OSError) as exc:
                _error(str(exc))
                return 2
        updates = daemon_updates(endpoint)
        title = f"daemon at {endpoint}"

    out = sys.stdout
    tty = out.isatty() and not args.plain and os.environ.get("TERM") != "dumb"
    view = TtyView(out, title) if tty else PlainView(out, args.interval_s)
    state = MonitorState()
    problem = None
    try:
        for u in updates:
            state.apply(u)
            view.update(state, u)
    except KeyboardInterrupt:
        pass
    except (AudioFileError, SourceError, OSError) as exc:
        problem = f"{source or 'daemon'}: {exc}"
    finally:
        try:
            updates.close()
        except (KeyboardInterrupt, Exception):
            pass
        try:
            if problem is None or state.hops or tty:  # no empty summary after a failed start
                view.close(state)
        except BrokenPipeError:
            pass
    if problem:
        _error(problem)
        return 1
    return 0
