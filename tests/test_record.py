"""``vadstream record``: files from a real daemon run, --exec, retention, sizes."""

from __future__ import annotations

import json
import subprocess
import sys
import wave

import numpy as np
import pytest
from daemon_util import DaemonProcess
from test_daemon_audio import POST_ROLL, PRE_ROLL, track  # noqa: F401 - the fixture

from vadstream.commands.record import enforce_retention, exec_argv, parse_size, write_recording
from vadstream.wire.audio import Utterance


def read_wav16(path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def test_record_writes_each_utterance_and_runs_the_command(tmp_path, track):  # noqa: F811
    pcm, regions, wav = track
    out_dir = tmp_path / "rec" / "sub"  # created
    log = tmp_path / "exec.log"
    daemon = DaemonProcess(tmp_path, "--input", str(wav), "--no-realtime", "--wait-subscriber", "20")
    cmd = [sys.executable, "-m", "vadstream", "record", str(out_dir), "--endpoint", daemon.events, "--count", "2",
           "--timeout", "60", "--exec", f"sh -c 'echo \"$0 $VADSTREAM_JSON\" >> {log}' {{wav}}"]
    try:
        rec = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
        assert daemon.wait(30) == 0, daemon.stderr()
    finally:
        daemon.kill()
    assert rec.returncode == 0, rec.stderr
    wavs = sorted(out_dir.glob("utt-*.wav"))
    assert len(wavs) == 2 and rec.stdout.split() == [str(p) for p in wavs]
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([p.name for p in wavs] +
                                                               [p.with_suffix(".json").name for p in wavs])
    for path, (on_s, off_s) in zip(wavs, regions):
        side = json.loads(path.with_suffix(".json").read_text())
        samples = read_wav16(path)
        first = side["audio_start_sample"]
        assert side["wav"] == path.name and side["num_samples"] == samples.size
        assert np.array_equal(samples, pcm[first:first + samples.size])  # the input, bit for bit
        assert first == side["start_sample"] - PRE_ROLL and side["pre_roll_s"] == 0.5
        assert first + samples.size == side["end_sample"] + POST_ROLL
        assert first < on_s * 16000 and first + samples.size > off_s * 16000
        assert side["reason"] == "silence" and 0 < side["probability"] <= 1
        assert side["source"] == f"file:{wav.name}" and len(side["stream_id"]) == 16
        assert side["duration_s"] == pytest.approx((side["end_sample"] - side["start_sample"]) / 16000)
        assert side["wall_time"].endswith("+00:00")
    lines = log.read_text().splitlines()
    assert lines == [f"{p} {p.with_suffix('.json')}" for p in wavs]


def fake_utterance(i: int, n: int = 16000) -> Utterance:
    return Utterance(sample_index=i * 100_000, wall_time_ns=1_767_225_600_000_000_000 + i * 10**10,
                     samples=np.full(n, i, dtype="<i2"), start_sample=i * 100_000 + 800,
                     end_sample=i * 100_000 + n - 400, probability=0.9, reason="silence", stream_id="abcd", seq=i)


def test_retention_deletes_the_oldest_pairs(tmp_path):
    paths = [write_recording(tmp_path, fake_utterance(i))[0] for i in range(5)]
    (tmp_path / "mine.wav").write_bytes(b"x" * 10**6)  # not a recording: never touched
    assert enforce_retention(tmp_path, 3, None, keep=paths[-1]) == paths[:2]
    assert sorted(tmp_path.glob("utt-*.wav")) == paths[2:]
    assert not list(tmp_path.glob(f"{paths[0].stem}.*"))
    one = paths[2].stat().st_size + paths[2].with_suffix(".json").stat().st_size
    assert enforce_retention(tmp_path, None, 2 * one, keep=paths[-1]) == paths[2:3]
    # the newest stays even when it alone is over the limit
    assert enforce_retention(tmp_path, None, 10, keep=paths[-1]) == paths[3:4]
    assert sorted(tmp_path.glob("utt-*")) == [paths[4].with_suffix(".json"), paths[4]]
    assert (tmp_path / "mine.wav").exists() and not list(tmp_path.glob(".*.tmp"))


def test_names_sort_by_time_and_sidecar_times():
    u = fake_utterance(3)
    from vadstream.commands.record import file_stem, sidecar

    assert file_stem(u) == "utt-20260101T000030.050Z-abcd-300800"
    side = sidecar(u, "x.wav")
    assert side["wall_time"] == "2026-01-01T00:00:30.050+00:00" and side["pre_roll_s"] == 0.05
    assert side["post_roll_s"] == 0.025 and side["start_s"] == 300800 / 16000


def test_sizes_and_exec_argv(tmp_path):
    assert parse_size("500M") == 500 * 2**20 and parse_size("2g") == 2 * 2**30 and parse_size("1000") == 1000
    assert parse_size("1.5k") == 1536 and parse_size("10MiB") == 10 * 2**20
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")
    assert exec_argv("whisper --model small", tmp_path / "a.wav", tmp_path / "a.json")[-1] == str(tmp_path / "a.wav")
    assert exec_argv("cp {json} {wav} /x", tmp_path / "a.wav", tmp_path / "a.json") == \
        ["cp", str(tmp_path / "a.json"), str(tmp_path / "a.wav"), "/x"]


def test_bad_arguments_exit_2(tmp_path):
    for extra, why in ((["--max-files", "0"], "must be at least 1"), (["--max-bytes", "lots"], "not a size"),
                       (["--exec", "unbalanced 'quote"], "No closing quotation")):
        res = subprocess.run([sys.executable, "-m", "vadstream", "record", str(tmp_path), *extra],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 2, (extra, res.stderr)
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith("vadstream record: error:") and why in last and "Traceback" not in res.stderr


def test_no_daemon_is_said_and_a_timeout_ends_it(tmp_path):
    res = subprocess.run([sys.executable, "-m", "vadstream", "record", str(tmp_path / "rec"), "--endpoint",
                          f"ipc://{tmp_path}/nothing", "--timeout", "0.5"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 1 and res.stdout == ""
    assert f"no daemon: {tmp_path}/nothing does not exist" in res.stderr
    assert "no utterance for 0.5 s" in res.stderr and "Traceback" not in res.stderr
