"""``vadstream file`` writes exactly what the daemon publishes for the same audio file."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq
from audio_gen import two_phrases, write_wav
from daemon_util import Collector, DaemonProcess, model_path

from vadstream.wire.events import Probability, SpeechEnd, SpeechStart, Status


@pytest.fixture(scope="module")
def audio():
    return two_phrases()


def daemon_messages(tmp_path, wav, *flags: str):
    """Run ``vadstream run --input WAV --no-realtime --prob`` and collect everything it publishes."""
    ctx = zmq.Context()
    d = DaemonProcess(tmp_path, "--input", str(wav), "--no-realtime", "--prob", "--wait-subscriber", "20",
                      *flags, cli=True)
    col = Collector(d.events, ctx)
    try:
        rc = d.wait(120)
        deadline = time.monotonic() + 5
        while not any(isinstance(m, Status) and m.kind == "stopping" for m in col.messages):
            assert time.monotonic() < deadline, "no 'stopping' status from the daemon"
            time.sleep(0.02)
    finally:
        d.kill()
        col.close()
        ctx.destroy(linger=0)
    assert rc == 0, d.stderr()
    assert col.errors == []
    return col.messages


def file_command(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "vadstream", "file", *args, "--model", str(model_path())],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def daemon_segments(messages) -> list[tuple[int, int, str]]:
    ends = [m for m in messages if isinstance(m, SpeechEnd)]
    starts = [m for m in messages if isinstance(m, SpeechStart)]
    assert [s.sample_index for s in starts] == [e.start_sample for e in ends]
    return [(e.start_sample, e.sample_index, e.reason) for e in ends]


@pytest.mark.parametrize("rate_hz,channels", [(16000, 1), (44100, 2)])
def test_segments_and_probabilities_equal_the_daemons(audio, tmp_path, rate_hz, channels):
    wav = audio.write_wav(tmp_path / f"clip-{rate_hz}-{channels}.wav", rate_hz=rate_hz, channels=channels)
    flags = ("--min-silence-ms", "300", "--speech-pad-ms", "40")  # non-default settings reach both
    messages = daemon_messages(tmp_path, wav, *flags)
    want = daemon_segments(messages)
    assert want, "the daemon found no speech"
    doc = json.loads(file_command(str(wav), *flags))
    assert [(s["start_sample"], s["end_sample"], s["reason"]) for s in doc["segments"]] == want
    # Per-hop probabilities: same hops, same values (the daemon rounds nothing but JSON floats).
    probs = [m for m in messages if isinstance(m, Probability)]
    rows = [line.split(",") for line in file_command(str(wav), "--probs", "-f", "csv", *flags).splitlines()[1:]]
    assert len(rows) == len(probs)
    assert [round(float(r[1]) * 16000) for r in rows] == [m.sample_index for m in probs]
    np.testing.assert_allclose([float(r[2]) for r in rows], [m.probability for m in probs], atol=6e-5)


def test_end_of_input_inside_speech_equals_the_daemon(audio, tmp_path):
    first_end = audio.speech[0][1]
    cut = tmp_path / "cut.wav"
    write_wav(cut, audio.samples[: first_end - 4000], 16000)  # ends 0.25 s before the phrase does
    want = daemon_segments(daemon_messages(tmp_path, cut))
    assert want[-1][2] == "end_of_input"
    doc = json.loads(file_command(str(cut)))
    assert [(s["start_sample"], s["end_sample"], s["reason"]) for s in doc["segments"]] == want
