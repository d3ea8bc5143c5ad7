"""``vadstream file``: speech segments (or probabilities, or a picture) for audio files.

Runs the daemon's pipeline (its file source, ``Vad`` + ``Detector`` with the same settings) on
each file: PCM WAV is read with the standard library; FLAC, OGG and other formats need the
``soundfile`` package. Any sample rate is resampled to 16 kHz and channels are averaged to mono.
The end of a file closes an open segment with reason ``end_of_input``, as the daemon does at the
end of its input.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, TextIO

import numpy as np

from vadstream.commands.formats import EXTENSIONS, FORMATS, FileResult, Writer, segments_from_events
from vadstream.stages.detector import DetectorConfig
from vadstream.stages.samples import SAMPLE_RATE_HZ

PROGRESS_AFTER_S = 1.0  # a batch shorter than this never shows a progress bar


# ---------------------------------------------------------------------------------------------
# Reading audio: the daemon's own file source (vadstream.audio.files.FileSource), unpaced


class AudioFileError(Exception):
    """A file cannot be read as audio; the message is one line meant for the user."""


@dataclasses.dataclass
class AudioFile:
    """An open audio file delivering 16 kHz mono float32 blocks, as the daemon's input does."""

    path: str
    source_rate_hz: int
    source_channels: int
    duration_samples: int  # at 16 kHz, estimated from the header
    _source: object

    def blocks(self) -> Iterator[np.ndarray]:
        """The audio, downmixed and resampled exactly as ``vadstream run --input FILE`` does."""
        src = self._source
        while not src.finished:
            block = src.read(0.0)
            for status in src.poll_status():
                if status.kind == "error":
                    raise AudioFileError(_strip_path(status.message, self.path))
            if block is not None:
                yield block.samples

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> "AudioFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _strip_path(message: str, path: str) -> str:
    """The source's one-line message without the path it repeats (it is printed in front)."""
    for prefix in (f"cannot read {path}: ", f"read error in {path}: "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    return message.replace(f"Error opening {path!r}: ", "")


def open_audio(path: str | os.PathLike[str], block_ms: float = 1000.0) -> AudioFile:
    """Open ``path`` with the daemon's file reader (WAV by vadstream's own parser, else ``soundfile``).

    Raises :class:`AudioFileError` with a one-line reason (missing file, not audio, soundfile
    needed for this format).
    """
    from vadstream.audio.blocks import SourceError, SourceSpec
    from vadstream.audio.files import FileSource

    path = str(path)
    if not os.path.exists(path):
        raise AudioFileError("no such file")
    if os.path.isdir(path):
        raise AudioFileError("is a directory, not an audio file")
    try:
        src = FileSource(SourceSpec(input=path, realtime=False, block_ms=block_ms))
    except SourceError as exc:
        raise AudioFileError(_strip_path(str(exc), path)) from None
    src.start()
    opened = {s.kind: s for s in src.poll_status()}.get("opened")
    details = opened.details if opened else {}
    rate = int(details.get("rate_hz", SAMPLE_RATE_HZ))
    duration = int(round(float(details.get("duration_s", 0.0)) * SAMPLE_RATE_HZ))
    return AudioFile(path, rate, int(details.get("channels", 1)), duration, src)


# ---------------------------------------------------------------------------------------------
# The pipeline


def analyse(path: str | os.PathLike[str], vad, config: DetectorConfig, keep_audio: bool = False,
            on_progress: Callable[[float], None] | None = None) -> tuple[FileResult, np.ndarray | None]:
    """Run one file through a :class:`Stream` (``vad`` and a Detector with ``config``), as the
    daemon does with ``--input FILE``; return its result and (if asked) its 16 kHz mono audio."""
    from vadstream.stages.stream import Stream, StreamOutput

    stream = Stream(config=config, vad=vad)
    outputs: list[StreamOutput] = []
    audio = []
    with open_audio(path) as f:
        for block in f.blocks():
            outputs.append(stream.process(block))
            if on_progress and f.duration_samples:
                on_progress(min(stream.sample_index / f.duration_samples, 1.0))
            if keep_audio:
                audio.append(block)
        outputs.append(stream.close())
        out = StreamOutput.join(outputs)
        result = FileResult(str(path), segments_from_events(out.events, SAMPLE_RATE_HZ), stream.sample_index,
                            probs=out.probs, hop_samples=stream.hop_samples,
                            source_rate_hz=f.source_rate_hz, source_channels=f.source_channels)
    samples = np.concatenate(audio) if audio else np.zeros(0, np.float32)
    return result, (samples if keep_audio else None)


# ---------------------------------------------------------------------------------------------
# Progress


class Progress:
    """A one-line progress bar on a terminal; silent elsewhere and for short batches."""

    def __init__(self, stream: TextIO, n_files: int, enabled: bool | None = None, width: int = 30):
        self.stream = stream
        self.n_files = n_files
        self.enabled = stream.isatty() if enabled is None else enabled
        self.width = width
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._shown = False
        self.index = 0
        self.name = ""

    def file(self, index: int, name: str) -> None:
        self.index, self.name = index, name
        self.update(0.0)

    def update(self, fraction: float) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.started < PROGRESS_AFTER_S or (now - self._last_draw < 0.1 and self._shown):
            return
        self._last_draw = now
        overall = (self.index + fraction) / max(self.n_files, 1)
        filled = int(round(overall * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        name = self.name if len(self.name) <= 40 else "..." + self.name[-37:]
        self.stream.write(f"\r\x1b[2K[{bar}] {self.index + 1}/{self.n_files} {overall:4.0%} {name}")
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._shown = False
            self._last_draw = 0.0


# ---------------------------------------------------------------------------------------------
# Command line

# The daemon's detector flags (same names and dests as ``vadstream run``, see vadstream.service.config).
DETECTOR_FLAGS = {
    # flag -> (dest = DetectorConfig field, metavar, help)
    "--onset": ("onset_threshold", "P", "onset threshold: probability that starts candidate speech"),
    "--offset": ("offset_threshold", "P", "offset threshold: probability below which speech pauses"),
    "--min-speech-ms": ("min_speech_ms", "MS", "speech needed before a segment starts"),
    "--min-silence-ms": ("min_silence_ms", "MS", "pause needed before a segment ends"),
    "--max-speech-s": ("max_speech_s", "S", "longest segment before a forced split (0: never)"),
    "--speech-pad-ms": ("speech_pad_ms", "MS", "padding added around each segment"),
}


def add_detector_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--model`` and the detector flags, as ``vadstream run`` spells them."""
    defaults = DetectorConfig()
    group = parser.add_argument_group("model and detector (as the daemon: defaults < config file < flags)")
    group.add_argument("--config", metavar="FILE",
                       help="daemon TOML config file (default: /etc/vadstream/vadstream.toml when it exists)")
    group.add_argument("--model", metavar="PATH", help="ONNX model file (default: the shipped model)")
    for flag, (field, metavar, help_text) in DETECTOR_FLAGS.items():
        group.add_argument(flag, dest=field, type=float, metavar=metavar,
                           help=f"{help_text} (default {getattr(defaults, field):g})")


def load_settings(args: argparse.Namespace) -> tuple[DetectorConfig, str | None]:
    """The detector settings and model path the daemon would use with the same file and flags.

    Raises ValueError (the config module's ConfigError is one) with a one-line message.
    """
    from vadstream.service import config as config_module

    only = argparse.Namespace(config=getattr(args, "config", None), model=getattr(args, "model", None),
                              **{field: getattr(args, field, None) for field, _, _ in DETECTOR_FLAGS.values()})
    cfg = config_module.load(only)
    return cfg.detector, cfg.model.path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="audio files (WAV; FLAC, OGG, ... with soundfile)")
    parser.add_argument("-f", "--format", choices=FORMATS, default="json",
                        help="output format (default json: one JSON object per file per line)")
    parser.add_argument("-o", "--output", metavar="PATH",
                        help="write here instead of stdout; a directory (existing, or ending in '/': "
                        "created) gets one file per input")
    parser.add_argument("--probs", action="store_true",
                        help="write per-hop speech probabilities (json or csv) instead of segments")
    parser.add_argument("--plot", metavar="PNG",
                        help="also draw a picture (one file: this PNG; several: a directory of PNGs)")
    parser.add_argument("--labels", metavar="FILE",
                        help="reference speech regions for the plot: 'start,end' lines in seconds")
    parser.add_argument("--plot-features", choices=("spectrogram", "mfcc"), default="spectrogram",
                        help="what the plot shows under the waveform (default spectrogram)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: only on a terminal, for batches over 1 s)")
    add_detector_arguments(parser)


def _directory(option: str | None, must_be: bool) -> Path | None:
    """The directory an ``-o`` / ``--plot`` value names, or None when it names one file."""
    if option and (must_be or option.endswith(("/", os.sep)) or Path(option).is_dir()):
        return Path(option)
    return None


def _error(message: str) -> None:
    print(f"vadstream file: {message}", file=sys.stderr, flush=True)


class _LogLines(logging.Handler):
    """The pipeline's warnings (e.g. a damaged WAV read as far as it goes) as ``vadstream file:``
    lines on stderr, with the progress bar cleared first."""

    def __init__(self, progress: "Progress"):
        super().__init__(logging.WARNING)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        self.progress.clear()
        _error(record.getMessage().replace("\n", " | "))


def main(args: argparse.Namespace) -> int:
    from vadstream.stages.model import ModelError
    from vadstream.stages.vad import Vad

    if args.probs and args.format not in ("json", "csv"):
        _error(f"--probs writes json or csv, not {args.format}")
        return 2
    if args.labels and len(args.paths) > 1:
        _error("--labels describes one file: give one PATH with it")
        return 2
    try:
        config, model_path = load_settings(args)
    except (ValueError, OSError) as exc:
        _error(str(exc))
        return 2
    try:
        labels = None
        if args.labels:
            from vadstream.evaluation.labels import read_labels

            labels = read_labels(args.labels)
    except (ValueError, OSError) as exc:
        _error(f"--labels: {exc}")
        return 2
    if args.plot:
        from vadstream.commands.plot import check_matplotlib

        problem = check_matplotlib()
        if problem:
            _error(problem)
            return 2
    try:
        vad = Vad(model_path)
    except ModelError as exc:
        _error(str(exc))
        return 2

    # -o and --plot name a directory (created if missing) when it exists, ends with '/', or
    # must be one: several inputs for one picture each, several Audacity label tracks.
    out_dir = _directory(args.output, args.format == "audacity" and len(args.paths) > 1)
    plot_dir = _directory(args.plot, len(args.paths) > 1)
    if out_dir is None and args.format == "audacity" and len(args.paths) > 1:  # no -o at all
        _error("an Audacity label track holds one file: use -o DIR/ to write one track per file")
        return 2
    if out_dir is not None or plot_dir is not None:
        stems = [Path(p).stem for p in args.paths]
        clash = sorted({s for s in stems if stems.count(s) > 1})
        if clash:
            _error(f"several inputs are named {clash[0]!r}: their outputs in a directory would overwrite "
                   "each other (rename them or run one at a time)")
            return 2
    try:
        for directory in (out_dir, plot_dir):
            if directory is not None:
                directory.mkdir(parents=True, exist_ok=True)
        stream = None
        if args.output and out_dir is None:
            stream = open(args.output, "w", encoding="utf-8", newline="")
        elif out_dir is None:
            stream = sys.stdout
    except OSError as exc:
        _error(f"{exc.filename}: {exc.strerror}")
        return 2
    writer = Writer(stream, args.format, args.probs) if stream is not None else None

    progress = Progress(sys.stderr, len(args.paths), enabled=args.progress)
    failed = 0
    logger = logging.getLogger("vadstream")
    handler = _LogLines(progress)
    logger.addHandler(handler)
    try:
        for index, path in enumerate(args.paths):
            progress.file(index, path)
            try:
                result, audio = analyse(path, vad, config, keep_audio=bool(args.plot), on_progress=progress.update)
                progress.clear()
                if out_dir is not None:
                    suffix = (".probs" if args.probs else "") + EXTENSIONS[args.format]
                    with open(out_dir / (Path(path).stem + suffix), "w", encoding="utf-8", newline="") as f:
                        Writer(f, args.format, args.probs).write(result)
                else:
                    writer.write(result)
                if args.plot:
                    from vadstream.commands.plot import plot_result

                    png = plot_dir / (Path(path).stem + ".png") if plot_dir else Path(args.plot)
                    plot_result(png, result, audio, config, labels=labels, features=args.plot_features,
                                feature_config=vad.spec.features)
            except BrokenPipeError:
                # The reader went away (``| head``): stop quietly, and keep Python's exit-time
                # flush of stdout from complaining.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 1
            except (AudioFileError, OSError, ValueError) as exc:
                progress.clear()
                failed += 1
                if isinstance(exc, OSError) and exc.strerror:
                    exc = f"{exc.strerror}: {exc.filename}" if exc.filename and exc.filename != path else exc.strerror
                _error(f"{path}: {exc}")
    finally:
        logger.removeHandler(handler)
        progress.clear()
        if stream is not None and stream is not sys.stdout:
            stream.close()
    if failed:
        _error(f"{failed} of {len(args.paths)} file(s) failed")
    return 1 if failed else 0
