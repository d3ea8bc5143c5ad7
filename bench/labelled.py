"""Labelled test sets given as a folder of ``*.wav`` files with label files beside them.

For ``x.wav`` the labels are read from the first of ``x.scv``, ``x.csv``, ``x.txt``, ``x.lab``:

- TEN VAD's ``.scv`` format: one line ``name,start,end,label,start,end,label,...`` (seconds;
  label 1 = speech, 0 = not);
- otherwise one segment per line: ``start,end`` (speech), or ``start,end,label`` where a label of
  0 / ``nonspeech`` / ``silence`` / ``noise`` is not speech; commas, tabs or spaces separate fields
  (Audacity label files work), ``#`` starts a comment.
"""

from __future__ import annotations

import re
from pathlib import Path

LABEL_SUFFIXES = (".scv", ".csv", ".txt", ".lab")
NOT_SPEECH = {"0", "nonspeech", "non-speech", "silence", "noise", "sil", "ns"}


def read_labels(path: str | Path) -> list[tuple[float, float]]:
    """Speech segments (start_s, end_s) from a label file."""
    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    segments: list[tuple[float, float]] = []
    if path.suffix.lower() == ".scv":
        for line in text.splitlines():
            fields = [f.strip() for f in line.split(",") if f.strip()]
            if not fields:
                continue
            body = fields[1:] if len(fields) % 3 == 1 else fields
            for i in range(0, len(body) - 2, 3):
                start, end, label = float(body[i]), float(body[i + 1]), body[i + 2]
                if label.lower() not in NOT_SPEECH:
                    segments.append((start, end))
        return segments
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f for f in re.split(r"[,\t ]+", line) if f]
        try:
            start, end = float(fields[0]), float(fields[1])
        except (ValueError, IndexError):
            continue  # header line
        if len(fields) >= 3 and fields[2].lower() in NOT_SPEECH:
            continue
        segments.append((start, end))
    return segments


def load_folder(folder: str | Path):
    """LabelledAudio items for every ``*.wav`` (or .flac) in ``folder`` that has a label file."""
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
