"""Label files: reference speech regions for ``vadstream file --labels`` and labelled test folders
(``python -m bench accuracy --labelled DIR``, the AMI set of ``vadstream evaluate``). One reader.

Formats (seconds):

- one region per line, ``start,end``; commas, tabs or spaces separate the fields, so Audacity
  label tracks work; a third field of ``0`` / ``nonspeech`` / ``silence`` / ``noise`` marks a
  region that is not speech (any other third field, e.g. Audacity's ``speech``, is speech);
  ``#`` starts a comment; a non-numeric first line is a header;
- TEN VAD's ``.scv``: one line ``name,start,end,label,start,end,label,...`` (label 1 = speech).

For a folder, ``x.wav`` (or ``x.flac``) takes its labels from the first of ``x.scv``, ``x.csv``,
``x.txt``, ``x.lab`` beside it.
"""

from __future__ import annotations

import math
from pathlib import Path

LABEL_SUFFIXES = (".scv", ".csv", ".txt", ".lab")
NOT_SPEECH = {"0", "nonspeech", "non-speech", "silence", "noise", "sil", "ns"}


def _read_scv(text: str) -> list[tuple[float, float]]:
    segments = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",") if f.strip()]
        body = fields[1:] if len(fields) % 3 == 1 else fields
        for i in range(0, len(body) - 2, 3):
            if body[i + 2].lower() not in NOT_SPEECH:
                segments.append((float(body[i]), float(body[i + 1])))
    return segments


def read_labels(path: str | Path) -> list[tuple[float, float]]:
    """Speech regions ``(start_s, end_s)`` from a label file (formats above).

    Blank lines, ``#`` comments and a non-numeric header line are skipped; an empty file (or
    comments only) is a reference without speech. Anything else that gives no region (one line of
    text, a binary file) is refused: ValueError with one line.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text file of 'start,end' lines (byte 0x{exc.object[exc.start]:02x} "
                         f"at offset {exc.start} is not UTF-8)") from None
    if Path(path).suffix.lower() == ".scv":
        return _read_scv(text)
    regions = []
    header = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.replace(",", " ").split()
        try:
            start, end = float(fields[0]), float(fields[1])
        except (ValueError, IndexError):
            if not regions and header is None:
                header = (lineno, raw)  # a header, if real lines follow
                continue
            raise ValueError(f"{path}:{lineno}: expected 'start,end' in seconds, got {raw[:80]!r}") from None
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0:
            raise ValueError(f"{path}:{lineno}: start and end must be seconds >= 0, got {raw[:80]!r}")
        if end < start:
            raise ValueError(f"{path}:{lineno}: end {end} is before start {start}")
        if len(fields) < 3 or fields[2].lower() not in NOT_SPEECH:
            regions.append((start, end))
    if header is not None and not regions:
        lineno, raw = header
        raise ValueError(f"{path}:{lineno}: expected 'start,end' in seconds, got {raw[:80]!r} (and no other line)")
    return regions


def load_folder(folder: str | Path):
    """LabelledAudio items for every ``*.wav`` / ``*.flac`` in ``folder`` that has a label file."""
    from vadstream.evaluation.metrics import segments_to_mask
    from vadstream.training.data import LabelledAudio, load_audio

    folder = Path(folder)
    items = []
    for wav in sorted(list(folder.glob("*.wav")) + list(folder.glob("*.flac"))):
        label = next((wav.with_suffix(s) for s in LABEL_SUFFIXES if wav.with_suffix(s).is_file()), None)
        if label is None:
            continue
        audio = load_audio(wav)
        mask = segments_to_mask(read_labels(label), audio.size)
        items.append(LabelledAudio(name=wav.stem, audio=audio, speech=mask, snr_db=None))
    if not items:
        raise FileNotFoundError(f"no labelled audio in {folder} (need x.wav with x.scv/.csv/.txt/.lab)")
    return items
