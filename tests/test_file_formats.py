"""Segment output formats (exact text), probabilities, reference labels."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from vadstream.commands.formats import (
    FileResult,
    Segment,
    Writer,
    format_audacity,
    format_csv,
    format_json,
    format_probs_csv,
    format_probs_json,
    format_rttm,
    segments_from_events,
)
from vadstream.evaluation.labels import read_labels
from vadstream.stages.detector import EndReason, SpeechEnd, SpeechStart

SEGMENTS = [Segment(8000, 27360, "silence"), Segment(40480, 59520, "end_of_input")]


def result(path: str = "dir/my clip.wav", segments=SEGMENTS, probs=None) -> FileResult:
    return FileResult(path, list(segments), duration_samples=60000, probs=probs)


def test_segments_from_events_pairs_ends_with_their_starts():
    events = [SpeechStart(8000, 9600, 0.9), SpeechEnd(27360, 30400, 0.1, 8000, EndReason.SILENCE),
              SpeechStart(40480, 41000, 0.8), SpeechEnd(59520, 59520, 0.7, 40480, EndReason.END_OF_INPUT)]
    assert segments_from_events(events) == SEGMENTS


def test_json_is_one_object_per_line():
    text = format_json(result())
    assert text == (
        '{"file": "dir/my clip.wav", "duration_s": 3.75, "segments": ['
        '{"start_s": 0.5, "end_s": 1.71, "start_sample": 8000, "end_sample": 27360, "reason": "silence"}, '
        '{"start_s": 2.53, "end_s": 3.72, "start_sample": 40480, "end_sample": 59520, "reason": "end_of_input"}]}\n')
    assert json.loads(text)["segments"][1]["end_sample"] == 59520


def test_csv_rows():
    assert format_csv(result()).splitlines() == [
        "file,start_s,end_s,start_sample,end_sample,reason",
        "dir/my clip.wav,0.500,1.710,8000,27360,silence",
        "dir/my clip.wav,2.530,3.720,40480,59520,end_of_input",
    ]


def test_csv_quotes_a_path_with_a_comma():
    assert format_csv(result("a,b.wav"), header=False).splitlines()[0] == '"a,b.wav",0.500,1.710,8000,27360,silence'


def test_rttm_lines():
    assert format_rttm(result()).splitlines() == [
        "SPEAKER my_clip 1 0.500 1.210 <NA> <NA> speech <NA> <NA>",
        "SPEAKER my_clip 1 2.530 1.190 <NA> <NA> speech <NA> <NA>",
    ]


def test_audacity_labels():
    assert format_audacity(result()) == "0.500000\t1.710000\tspeech\n2.530000\t3.720000\tspeech\n"


def test_no_segments_gives_header_or_nothing():
    empty = result(segments=[])
    assert format_csv(empty) == "file,start_s,end_s,start_sample,end_sample,reason\n"
    assert format_rttm(empty) == "" and format_audacity(empty) == ""
    assert json.loads(format_json(empty))["segments"] == []


def test_probabilities_with_hop_start_times():
    r = result(probs=np.array([0.0, 0.25, 0.98766], dtype=np.float32))
    assert format_probs_csv(r).splitlines() == [
        "file,time_s,probability",
        "dir/my clip.wav,0.000,0.0000",
        "dir/my clip.wav,0.020,0.2500",
        "dir/my clip.wav,0.040,0.9877",
    ]
    doc = json.loads(format_probs_json(r))
    assert doc["hop_s"] == 0.02 and doc["time_s"] == [0.0, 0.02, 0.04]
    assert doc["probability"] == [0.0, 0.25, 0.9877]


def test_writer_writes_one_csv_header_per_stream():
    buf = io.StringIO()
    w = Writer(buf, "csv")
    w.write(result("a.wav"))
    w.write(result("b.wav"))
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("file,") and sum(line.startswith("file,") for line in lines) == 1
    assert [line.split(",")[0] for line in lines[1:]] == ["a.wav", "a.wav", "b.wav", "b.wav"]


def test_writer_refuses_two_files_in_one_audacity_track_and_probs_in_rttm():
    w = Writer(io.StringIO(), "audacity")
    w.write(result("a.wav"))
    with pytest.raises(ValueError, match="-o DIR"):
        w.write(result("b.wav"))
    with pytest.raises(ValueError, match="json, csv"):
        Writer(io.StringIO(), "rttm", probs=True)


def test_read_labels(tmp_path):
    path = tmp_path / "ref.txt"
    path.write_text("start,end\n0.5,1.7\n\n# comment\n2.53\t3.72\tspeech\n4 4.5\n")
    assert read_labels(path) == [(0.5, 1.7), (2.53, 3.72), (4.0, 4.5)]
    path.write_text("0.5,1.7\n2.0,oops\n")
    with pytest.raises(ValueError, match=r"ref.txt:2"):
        read_labels(path)
    path.write_text("2.0,1.0\n")
    with pytest.raises(ValueError, match="before start"):
        read_labels(path)


def test_one_label_reader_for_files_and_labelled_folders(tmp_path):
    """The label reader of `vadstream file --labels` and of labelled test folders: Audacity tracks,
    a header, comments, not-speech labels in a third column, TEN VAD's .scv."""
    audacity = tmp_path / "a.txt"
    audacity.write_text("0.5\t1.0\tspeech\n2.0\t3.0\tnoise\n4.0\t4.5\n")
    assert read_labels(audacity) == [(0.5, 1.0), (4.0, 4.5)]
    csv = tmp_path / "b.csv"
    csv.write_text("start,end,label\n# a comment\n0,1.5,1\n1.5,2,0\n")
    assert read_labels(csv) == [(0.0, 1.5)]
    scv = tmp_path / "c.scv"
    scv.write_text("c,1.2,3.5,1,3.5,4.0,0,4.0,5.25,1\n")
    assert read_labels(scv) == [(1.2, 3.5), (4.0, 5.25)]
