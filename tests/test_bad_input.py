"""Bad input and first-run traps (issue 10): each test failed before its fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from daemon_util import model_path
from wav_bytes import wav16k
from vadstream.commands import cli

RATE = 16000


def tone(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    noise = 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * 440 * t) * (t > 0.3) + noise).astype(np.float32)


def run_file(capsys, *args: str) -> tuple[int, str, list[str]]:
    rc = cli.main(["file", *args, "--model", str(model_path())])
    out, err = capsys.readouterr()
    return rc, out, err.splitlines()


# -- WAV files with damaged chunk sizes (#6, #7) --------------------------------------------------

def test_huge_fmt_or_list_chunk_is_one_line_and_the_batch_goes_on(tmp_path, capsys):
    x = tone()
    good = tmp_path / "good.wav"
    good.write_bytes(wav16k(x))
    huge_fmt = tmp_path / "huge_fmt.wav"
    huge_fmt.write_bytes(wav16k(x, fmt_size=0xFFFFFFF0))
    huge_list = tmp_path / "huge_list.wav"
    huge_list.write_bytes(wav16k(x, list_size=0x7FFFFFFF))
    rc, out, err = run_file(capsys, str(huge_fmt), str(good), str(huge_list))
    assert rc == 1
    assert [json.loads(line)["file"] for line in out.splitlines()] == [str(good)]
    assert err == [
        f"vadstream file: {huge_fmt}: damaged WAV header: the 'fmt' chunk at byte 12 declares 4294967280 bytes, "
        f"only {huge_fmt.stat().st_size - 20} follow",
        f"vadstream file: {huge_list}: damaged WAV header: the 'LIST' chunk at byte 36 declares 2147483647 bytes, "
        f"only {huge_list.stat().st_size - 44} follow",
        "vadstream file: 2 of 3 file(s) failed",
    ]


def run_daemon(tmp_path: Path, wav: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vadstream.service.daemon", "--model", str(model_path()), "--input", str(wav),
                           "--no-realtime", "--endpoint", f"ipc://{tmp_path}/ev", "--control-endpoint", "none"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_run_input_with_a_huge_chunk_is_one_line_exit_1(tmp_path):
    wav = tmp_path / "huge_list.wav"
    wav.write_bytes(wav16k(tone(), list_size=0xFFFFFFFF))
    proc = run_daemon(tmp_path, wav)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [
        f"vadstream: error: cannot read {wav}: damaged WAV header: the 'LIST' chunk at byte 36 declares "
        f"4294967295 bytes, only {wav.stat().st_size - 44} follow"]


def test_odd_data_byte_count_is_read_with_one_warning(tmp_path, capsys):
    x = tone(2.0)
    even = tmp_path / "even.wav"
    even.write_bytes(wav16k(x))
    odd = tmp_path / "odd.wav"
    odd.write_bytes(wav16k(x, extra=b"\x7f"))
    rc, out, err = run_file(capsys, str(even), str(odd), "--probs")
    assert rc == 0, err
    docs = [json.loads(line) for line in out.splitlines()]
    assert docs[0]["probability"] == docs[1]["probability"] and len(docs[0]["probability"]) == 100
    assert err == [f"vadstream file: {odd}: the data ends with a partial sample (1 byte(s)): ignored"]

    proc = run_daemon(tmp_path, odd)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line and "listening" not in line]
    assert warnings == [f"vadstream: warning: {odd}: the data ends with a partial sample (1 byte(s)): ignored"]


def test_data_chunk_longer_than_the_file_reads_what_is_there(tmp_path, capsys):
    x = tone(1.0)
    wav = tmp_path / "cut.wav"
    wav.write_bytes(wav16k(x, data_size=0xFFFFFFFF))
    rc, out, err = run_file(capsys, str(wav))
    assert rc == 0, err
    assert json.loads(out)["duration_s"] == 1.0
    assert err == [f"vadstream file: {wav}: the data chunk declares a streaming placeholder but the file holds "
                   "32000: reading what is there (truncated file?)"]


# -- -o names a directory as --plot does (#2) ----------------------------------------------------

def test_output_directory_is_created_like_the_plot_directory(tmp_path, capsys):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.write_bytes(wav16k(tone(seed=1)))
    b.write_bytes(wav16k(tone(seed=2)))
    labels = tmp_path / "labels"
    rc, out, err = run_file(capsys, str(a), "-f", "audacity", "-o", f"{labels}/")  # missing, trailing slash
    assert (rc, out, err) == (0, "", [])
    assert (labels / "a.txt").is_file()
    tracks = tmp_path / "tracks"  # several Audacity tracks: -o must be a directory, so it is one
    rc, out, err = run_file(capsys, str(a), str(b), "-f", "audacity", "-o", str(tracks))
    assert (rc, out, err) == (0, "", [])
    assert sorted(p.name for p in tracks.iterdir()) == ["a.txt", "b.txt"]
    csvs = tmp_path / "csv" / "nested"
    rc, out, err = run_file(capsys, str(a), str(b), "-f", "csv", "-o", f"{csvs}/")
    assert (rc, out, err) == (0, "", [])
    assert sorted(p.name for p in csvs.iterdir()) == ["a.csv", "b.csv"]
    rc, out, err = run_file(capsys, str(a), str(b), "-f", "audacity")  # no -o: one stream cannot hold two tracks
    assert rc == 2 and err == ["vadstream file: an Audacity label track holds one file: use -o DIR/ to write "
                               "one track per file"]
