"""Speech segments and their file formats: JSON lines, CSV, RTTM, Audacity labels.

A :class:`Segment` is what the daemon publishes as a ``speech_start`` / ``speech_end`` pair:
sample indices at 16 kHz from the start of the stream (the unit of truth) and the reason the
segment ended. Writers turn the segments of one or many files into text:

- ``json``: one JSON object per file per line (JSON Lines), so one file is one JSON document and
  a batch stays parseable line by line;
- ``csv``: header ``file,start_s,end_s,start_sample,end_sample,reason`` then one row per segment;
- ``rttm``: NIST RTTM ``SPEAKER <file-id> 1 <onset> <duration> <NA> <NA> speech <NA> <NA>``;
- ``audacity``: Audacity label track ``start<TAB>end<TAB>speech`` (one file per track).

Per-hop probabilities (``--probs``) have a JSON and a CSV form (``file,time_s,probability``, the
time being the start of the hop).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Iterable, TextIO

import numpy as np

from vadstream.stages.detector import Event, SpeechEnd
from vadstream.stages.samples import SAMPLE_RATE_HZ

FORMATS = ("json", "csv", "rttm", "audacity")
PROB_FORMATS = ("json", "csv")
# Extension of a per-file output written into a directory (-o DIR).
EXTENSIONS = {"json": ".json", "csv": ".csv", "rttm": ".rttm", "audacity": ".txt"}


@dataclasses.dataclass(frozen=True)
class Segment:
    """One speech segment as output: ``[start_sample, end_sample)`` at ``sample_rate_hz``; ``reason``
    ended it. The latency metrics use ``evaluation.metrics.DetectedSegment`` (with decision times)."""

    start_sample: int
    end_sample: int
    reason: str = "silence"
    sample_rate_hz: int = SAMPLE_RATE_HZ

    @property
    def start_s(self) -> float:
        return self.start_sample / self.sample_rate_hz

    @property
    def end_s(self) -> float:
        return self.end_sample / self.sample_rate_hz

    @property
    def duration_s(self) -> float:
        return (self.end_sample - self.start_sample) / self.sample_rate_hz

    def to_dict(self) -> dict:
        return {"start_s": round(self.start_s, 6), "end_s": round(self.end_s, 6),
                "start_sample": self.start_sample, "end_sample": self.end_sample, "reason": self.reason}


def segments_from_events(events: Iterable[Event], sample_rate_hz: int = SAMPLE_RATE_HZ) -> list[Segment]:
    """The closed segments in a stream of detector events (each ``SpeechEnd`` carries its start)."""
    out = []
    for event in events:
        if isinstance(event, SpeechEnd):
            reason = getattr(event.reason, "value", event.reason)
            out.append(Segment(event.start_sample, event.sample_index, str(reason), sample_rate_hz))
    return out


@dataclasses.dataclass
class FileResult:
    """What the pipeline found in one file."""

    path: str
    segments: list[Segment]
    duration_samples: int
    probs: np.ndarray | None = None  # per hop, float32
    hop_samples: int = 320
    sample_rate_hz: int = SAMPLE_RATE_HZ
    source_rate_hz: int | None = None
    source_channels: int | None = None

    @property
    def duration_s(self) -> float:
        return self.duration_samples / self.sample_rate_hz

    @property
    def file_id(self) -> str:
        """RTTM file id: the file name without directory and extension, spaces replaced."""
        return Path(self.path).stem.replace(" ", "_") or "audio"


def _fmt(seconds: float, decimals: int) -> str:
    return f"{seconds:.{decimals}f}"


def format_json(result: FileResult) -> str:
    doc = {"file": result.path, "duration_s": round(result.duration_s, 6),
           "segments": [s.to_dict() for s in result.segments]}
    return json.dumps(doc) + "\n"


def format_csv(result: FileResult, header: bool = True) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(["file", "start_s", "end_s", "start_sample", "end_sample", "reason"])
    for s in result.segments:
        writer.writerow([result.path, _fmt(s.start_s, 3), _fmt(s.end_s, 3), s.start_sample, s.end_sample, s.reason])
    return buf.getvalue()


def format_rttm(result: FileResult) -> str:
    return "".join(f"SPEAKER {result.file_id} 1 {_fmt(s.start_s, 3)} {_fmt(s.duration_s, 3)} "
                   f"<NA> <NA> speech <NA> <NA>\n" for s in result.segments)


def format_audacity(result: FileResult) -> str:
    return "".join(f"{_fmt(s.start_s, 6)}\t{_fmt(s.end_s, 6)}\tspeech\n" for s in result.segments)


def format_probs_json(result: FileResult) -> str:
    probs = result.probs if result.probs is not None else np.zeros(0)
    doc = {"file": result.path, "hop_s": result.hop_samples / result.sample_rate_hz,
           "time_s": [round(i * result.hop_samples / result.sample_rate_hz, 6) for i in range(len(probs))],
           "probability": [round(float(p), 4) for p in probs]}
    return json.dumps(doc) + "\n"


def format_probs_csv(result: FileResult, header: bool = True) -> str:
    probs = result.probs if result.probs is not None else np.zeros(0)
    hop_s = result.hop_samples / result.sample_rate_hz
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(["file", "time_s", "probability"])
    for i, p in enumerate(probs):
        writer.writerow([result.path, _fmt(i * hop_s, 3), f"{float(p):.4f}"])
    return buf.getvalue()


class Writer:
    """Writes the results of a batch, one file after another, to one text stream.

    CSV headers are written once per stream. Audacity label tracks hold one file, so a second
    file on the same stream is an error (write one output per file with ``-o DIR``).
    """

    def __init__(self, stream: TextIO, fmt: str = "json", probs: bool = False):
        allowed = PROB_FORMATS if probs else FORMATS
        if fmt not in allowed:
            what = "probabilities" if probs else "segments"
            raise ValueError(f"format {fmt!r} is not available for {what}: choose one of {', '.join(allowed)}")
        self.stream = stream
        self.fmt = fmt
        self.probs = probs
        self.count = 0

    def write(self, result: FileResult) -> None:
        first = self.count == 0
        if self.fmt == "audacity" and not first:
            raise ValueError("an Audacity label track holds one file: use -o DIR to write one track per file")
        if self.probs:
            text = format_probs_json(result) if self.fmt == "json" else format_probs_csv(result, header=first)
        elif self.fmt == "json":
            text = format_json(result)
        elif self.fmt == "csv":
            text = format_csv(result, header=first)
        elif self.fmt == "rttm":
            text = format_rttm(result)
        else:
            text = format_audacity(result)
        self.stream.write(text)
        self.stream.flush()
        self.count += 1
