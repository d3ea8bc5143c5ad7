"""``vadstream file``: speech segments (or probabilities, or a picture) for audio files.

Runs the daemon's pipeline (``Vad`` + ``Detector`` with the same settings) on each file: WAV is
read with the standard library; FLAC, OGG and other formats need the ``soundfile`` package. Any
sample rate is resampled to 16 kHz and any channel count is averaged to mono. The end of a file
closes an open segment with reason ``end_of_input``, as the daemon does at the end of its input.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import wave
from pathlib import Path
from typing import Callable, Iterator, TextIO

import numpy as np

from vadstream.detector import DetectorConfig, EndReason
from vadstream.segments import EXTENSIONS, FORMATS, FileResult, Writer, segments_from_events

SAMPLE_RATE_HZ = 16000
BLOCK_S = 1.0  # audio read and processed per step
PROGRESS_AFTER_S = 1.0  # a batch shorter than this never shows a progress bar


class AudioFileError(Exception):
    """A file cannot be read as audio; the message is one line meant for the user."""


# ---------------------------------------------------------------------------------------------
# Reading audio


class AudioReader:
    """Streams an audio file as float32 blocks of shape (frames, channels).

    Attributes: ``sample_rate_hz``, ``channels``, ``frames`` (total, per channel).
    """

    sample_rate_hz: int
    channels: int
    frames: int

    def blocks(self, frames: int) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class WaveReader(AudioReader):
    """Integer PCM WAV (8, 16, 24, 32 bit) through the standard library ``wave`` module."""

    def __init__(self, path: str | os.PathLike[str]):
        self._wav = wave.open(str(path), "rb")
        self.sample_rate_hz = self._wav.getframerate()
        self.channels = self._wav.getnchannels()
        self.frames = self._wav.getnframes()
        self._width = self._wav.getsampwidth()
        if self._width not in (1, 2, 3, 4):
            self._wav.close()
            raise wave.Error(f"unsupported sample width {self._width} bytes")

    def _decode(self, raw: bytes) -> np.ndarray:
        w = self._width
        if w == 1:  # unsigned 8 bit
            x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
        elif w == 2:
            x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
        elif w == 3:
            b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
            v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
            v = np.where(v >= 1 << 23, v - (1 << 24), v)
            x = v.astype(np.float32) / float(1 << 23)
        else:
            x = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
        return x.reshape(-1, self.channels)

    def blocks(self, frames: int) -> Iterator[np.ndarray]:
        while True:
            raw = self._wav.readframes(frames)
            if not raw:
                return
            yield self._decode(raw[: len(raw) - len(raw) % (self._width * self.channels)])

    def close(self) -> None:
        self._wav.close()


class SoundfileReader(AudioReader):
    """Anything libsndfile reads (FLAC, OGG/Vorbis, float WAV, AIFF, ...) through ``soundfile``."""

    def __init__(self, path: str | os.PathLike[str]):
        import soundfile

        try:
            self._file = soundfile.SoundFile(str(path))
        except (RuntimeError, soundfile.LibsndfileError) as exc:
            detail = _short(exc)
            if detail.startswith("Error opening") and "': " in detail:
                detail = detail.split("': ", 1)[1]  # drop the repeated path
            raise AudioFileError(f"not a readable audio file ({detail.rstrip('.')})") from exc
        self.sample_rate_hz = self._file.samplerate
        self.channels = self._file.channels
        self.frames = self._file.frames

    def blocks(self, frames: int) -> Iterator[np.ndarray]:
        while True:
            block = self._file.read(frames, dtype="float32", always_2d=True)
            if block.shape[0] == 0:
                return
            yield block

    def close(self) -> None:
        self._file.close()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _soundfile_available() -> bool:
    try:
        import soundfile  # noqa: F401
    except (ImportError, OSError):  # OSError: the Python package is there but libsndfile is not
        return False
    return True


def open_audio(path: str | os.PathLike[str]) -> AudioReader:
    """A reader for ``path``: stdlib ``wave`` for integer PCM WAV, else ``soundfile``."""
    path = Path(path)
    if not path.exists():
        raise AudioFileError("no such file")
    if path.is_dir():
        raise AudioFileError("is a directory, not an audio file")
    wave_problem = None
    if path.suffix.lower() in (".wav", ".wave", ""):
        try:
            return WaveReader(path)
        except (wave.Error, EOFError) as exc:
            wave_problem = _short(exc) or "truncated header"
        except OSError as exc:
            raise AudioFileError(_short(exc)) from exc
    if not _soundfile_available():
        if wave_problem:
            raise AudioFileError(f"not a PCM WAV file the standard library can read ({wave_problem}); "
                                 "other formats need the soundfile package: pip install soundfile")
        raise AudioFileError(f"reading {path.suffix or 'this'} files needs the soundfile package "
                             "(pip install soundfile); without it only PCM WAV is supported")
    return SoundfileReader(path)


def make_resampler(rate_in_hz: int) -> Callable[[np.ndarray, bool], np.ndarray] | None:
    """A streaming ``(mono_block, final) -> 16 kHz block`` function, or None at 16 kHz."""
    if rate_in_hz == SAMPLE_RATE_HZ:
        return None
    try:
        from vadstream.resample import Resampler
    except ImportError as exc:
        raise AudioFileError(f"{rate_in_hz} Hz audio needs resampling to {SAMPLE_RATE_HZ} Hz "
                             "and vadstream.resample is not available") from exc
    resampler = Resampler(rate_in_hz, SAMPLE_RATE_HZ)

    def step(block: np.ndarray, final: bool) -> np.ndarray:
        out = resampler.process(block)
        if final:
            out = np.concatenate([out, resampler.flush()])
        return out

    return step


def read_16k_blocks(reader: AudioReader, block_s: float = BLOCK_S,
                    on_frames: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
    """Mono float32 16 kHz blocks of a file, downmixed (channel mean) and resampled."""
    resample = make_resampler(reader.sample_rate_hz)
    frames = max(1, int(block_s * reader.sample_rate_hz))
    pending = None
    for block in reader.blocks(frames):
        mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
        if on_frames:
            on_frames(block.shape[0])
        if resample is None:
            yield np.ascontiguousarray(mono, dtype=np.float32)
            continue
        # Hold one block back so the last one can be resampled with the flush.
        if pending is not None:
            yield resample(pending, False)
        pending = mono
    if resample is not None:
        yield resample(pending if pending is not None else np.zeros(0, np.float32), True)


# ---------------------------------------------------------------------------------------------
# The pipeline


def analyse(path: str | os.PathLike[str], vad, config: DetectorConfig, keep_audio: bool = False,
            on_progress: Callable[[float], None] | None = None) -> tuple[FileResult, np.ndarray | None]:
    """Run Vad + Detector over one file; return its result and (if asked) its 16 kHz mono audio.

    The same calls the daemon makes: ``vad.process`` / ``detector.process`` per block, then
    ``vad.flush()`` and ``detector.flush(END_OF_INPUT)`` at the end of the file.
    """
    from vadstream.detector import Detector

    detector = Detector(vad.hop_samples, config, sample_rate_hz=SAMPLE_RATE_HZ)
    vad.reset()
    events, probs, audio = [], [], []
    n_samples = 0
    with open_audio(path) as reader:
        if reader.channels < 1:
            raise AudioFileError("file has no audio channels")
        total = max(reader.frames, 1)
        done = 0

        def on_frames(n: int) -> None:
            nonlocal done
            done += n
            if on_progress:
                on_progress(min(done / total, 1.0))

        try:
            for block in read_16k_blocks(reader, on_frames=on_frames):
                n_samples += block.size
                if keep_audio:
                    audio.append(block)
                p = vad.process(block)
                probs.append(p)
                events.extend(detector.process(p))
        except (RuntimeError, wave.Error, EOFError) as exc:
            raise AudioFileError(f"error while decoding: {_short(exc)}") from exc
        p = vad.flush()
        probs.append(p)
        events.extend(detector.process(p))
        events.extend(detector.flush(EndReason.END_OF_INPUT))
        result = FileResult(str(path), segments_from_events(events, SAMPLE_RATE_HZ), n_samples,
                            probs=np.concatenate(probs).astype(np.float32), hop_samples=vad.hop_samples,
                            source_rate_hz=reader.sample_rate_hz, source_channels=reader.channels)
    samples = np.concatenate(audio) if keep_audio and audio else (np.zeros(0, np.float32) if keep_audio else None)
    return result, samples


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

# The daemon's detector flags (same names and dests as ``vadstream run``, see vadstream.config).
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
    from vadstream import config as config_module

    only = argparse.Namespace(config=getattr(args, "config", None), model=getattr(args, "model", None),
                              **{field: getattr(args, field, None) for field, _, _ in DETECTOR_FLAGS.values()})
    cfg = config_module.load(only)
    return cfg.detector, cfg.model.path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="audio files (WAV; FLAC, OGG, ... with soundfile)")
    parser.add_argument("-f", "--format", choices=FORMATS, default="json",
                        help="output format (default json: one JSON object per file per line)")
    parser.add_argument("-o", "--output", metavar="PATH",
                        help="write here instead of stdout; an existing directory gets one file per input")
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


def _error(message: str) -> None:
    print(f"vadstream file: {message}", file=sys.stderr, flush=True)


def main(args: argparse.Namespace) -> int:
    from vadstream.model import ModelError
    from vadstream.vad import Vad

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
            from vadstream.segments import read_labels

            labels = read_labels(args.labels)
    except (ValueError, OSError) as exc:
        _error(f"--labels: {exc}")
        return 2
    if args.plot:
        from vadstream.plot import check_matplotlib

        problem = check_matplotlib()
        if problem:
            _error(problem)
            return 2
    try:
        vad = Vad(model_path)
    except ModelError as exc:
        _error(str(exc))
        return 2

    out_dir = Path(args.output) if args.output and Path(args.output).is_dir() else None
    plot_dir = None
    if args.plot and (len(args.paths) > 1 or Path(args.plot).is_dir()):
        plot_dir = Path(args.plot)
        plot_dir.mkdir(parents=True, exist_ok=True)
    stream = None
    if args.output and out_dir is None:
        stream = open(args.output, "w", encoding="utf-8", newline="")
    elif out_dir is None:
        stream = sys.stdout
    writer = Writer(stream, args.format, args.probs) if stream is not None else None
    if writer and args.format == "audacity" and len(args.paths) > 1:
        _error("an Audacity label track holds one file: use -o DIR to write one track per file")
        return 2

    progress = Progress(sys.stderr, len(args.paths), enabled=args.progress)
    failed = 0
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
                    from vadstream.plot import plot_result

                    png = plot_dir / (Path(path).stem + ".png") if plot_dir else Path(args.plot)
                    plot_result(png, result, audio, config, labels=labels, features=args.plot_features,
                                feature_config=vad.spec.features)
            except (AudioFileError, OSError, ValueError) as exc:
                progress.clear()
                failed += 1
                _error(f"{path}: {exc}" if not isinstance(exc, OSError) else f"{path}: {_short(exc)}")
    finally:
        progress.clear()
        if stream is not None and stream is not sys.stdout:
            stream.close()
    if failed:
        _error(f"{failed} of {len(args.paths)} file(s) failed")
    return 1 if failed else 0
