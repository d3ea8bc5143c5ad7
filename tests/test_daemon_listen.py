"""`vadstream listen` against the real daemon: JSON lines, human-readable lines, --status."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import zmq
from daemon_util import DaemonProcess, speech_track, write_wav

LAYOUT = [0.8, "the quick brown fox jumps over the lazy dog", 1.2, "hello world this is vadstream speaking", 1.0]


def listen(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vadstream.commands.listen", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_listen_json_and_human(tmp_path):
    audio, regions = speech_track(tmp_path, LAYOUT)
    wav = write_wav(tmp_path / "t.wav", audio)
    common = ["--input", str(wav), "--no-realtime", "--wait-subscriber", "20", "--min-silence-ms", "400"]

    d = DaemonProcess(tmp_path, *common)
    js = listen("--endpoint", d.events, "--json", "--count", "8", "--timeout", "20")
    out, err = js.communicate(timeout=60)
    assert js.returncode == 0, err
    assert d.wait(30) == 0, d.stderr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(m["type"], m.get("kind")) for m in lines] == [
        ("status", "welcome"), ("status", "started"), ("status", "opened"), ("speech_start", None),
        ("speech_end", None), ("speech_start", None), ("speech_end", None), ("status", "stopping")]
    assert [m["seq"] for m in lines] == sorted(m["seq"] for m in lines)
    assert [m["topic_seq"] for m in lines if m["type"] == "speech_end"] == [0, 1]
    assert "missed" not in err  # hidden heartbeats are not gaps
    assert lines[4]["reason"] == "silence" and lines[4]["duration_s"] > 1.0

    d = DaemonProcess(tmp_path, *common)
    human = listen("--endpoint", d.events, "--count", "8", "--timeout", "20")
    out, err = human.communicate(timeout=60)
    assert human.returncode == 0, err
    assert d.wait(30) == 0
    rows = out.splitlines()
    assert len(rows) == 8 and "listening on" in err
    assert "status" in rows[0] and "welcome: quiet on file:t.wav" in rows[0]
    assert "speech_start" in rows[3] and "p=" in rows[3] and "[file:t.wav #" in rows[3]
    assert "speech_end" in rows[4] and "reason=silence" in rows[4] and "duration=" in rows[4]


def test_listen_status_and_timeout(tmp_path):
    d = DaemonProcess(tmp_path, "--input", "-", stdin=subprocess.PIPE)
    try:
        ctx = zmq.Context()
        # the daemon is up once its control socket answers
        from vadstream.wire.client import request
        for _ in range(300):  # a missing socket file fails at once: poll, up to 15 s
            try:
                request(d.control, "status", timeout_s=0.3, context=ctx)
                break
            except Exception:
                time.sleep(0.05)
        st = listen("--control-endpoint", d.control, "--status")
        out, err = st.communicate(timeout=30)
        assert st.returncode == 0, err
        status = json.loads(out)
        assert status["source"]["name"] == "stdin" and status["state"] == "quiet"
        quiet = listen("--endpoint", d.events, "--timeout", "0.5")  # nothing but heartbeats, which are hidden
        _, err = quiet.communicate(timeout=30)
        assert quiet.returncode == 1 and "nothing received for 0.5 s" in err
        ctx.destroy(linger=0)
    finally:
        d.proc.stdin.close()
        d.wait(10)
    nobody = listen("--control-endpoint", f"ipc://{tmp_path}/nobody", "--status")
    _, err = nobody.communicate(timeout=30)
    assert nobody.returncode == 1 and err == (f"vadstream listen: error: no daemon: {tmp_path}/nobody does not exist "
                                              "(start one: vadstream run, or systemctl start vadstream)\n")
