"""The README's shell examples that talk to a daemon run as written (issue 10, #1). The Python API
example is run by tests/test_stream.py."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq
from daemon_util import DaemonProcess

from vadstream.wire.client import ControlError, request

README = Path(__file__).resolve().parents[1] / "README.md"


def control_example() -> str:
    """The control-socket line of the README's Configuration section."""
    section = README.read_text().split("### Configuration", 1)[1].split("\n### ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    (line,) = [ln for ln in block.splitlines() if "request(" in ln]
    return line


def test_the_readme_control_example_works_as_written(tmp_path):
    line = control_example()
    argv = shlex.split(line)
    assert argv[0] == ".venv/bin/python" and argv[1] == "-c", "the example must use the venv's python"
    code = argv[2]
    assert "request(None," in code  # the default endpoint; here the test daemon's, the only change made
    code = code.replace("request(None,", "request(CONTROL,")
    d = DaemonProcess(tmp_path, "--input", "-", stdin=subprocess.PIPE)
    ctx = zmq.Context()
    try:
        for _ in range(300):
            try:
                request(d.control, "status", timeout_s=0.3, context=ctx)
                break
            except ControlError:
                time.sleep(0.05)
        venv_python = Path(sys.executable)  # the test venv's python stands for .venv/bin/python
        proc = subprocess.run([str(venv_python), "-c", f"CONTROL = {d.control!r}\n" + code], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        reply = ast.literal_eval(proc.stdout)  # the example prints the reply dict
        assert reply["ok"] is True
        want = json.loads(re.search(r'"detector": (\{[^}]*\})', code).group(1))
        got = request(d.control, "status", context=ctx)["status"]["config"]["detector"]
        assert {k: got[k] for k in want} == want
    finally:
        d.proc.stdin.close()
        d.wait(10)
        ctx.destroy(linger=0)


def test_the_readme_file_examples_run_as_written(tmp_path):
    """Every `vadstream file` line of the README, in a directory holding the files it names."""
    soundfile = pytest.importorskip("soundfile")
    pytest.importorskip("matplotlib")
    import numpy as np
    from wav_bytes import wav16k

    t = np.arange(32000) / 16000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) * (t > 0.5)).astype(np.float32)
    for name in ("talk.wav", "a.wav"):
        (tmp_path / name).write_bytes(wav16k(x))
    soundfile.write(str(tmp_path / "b.ogg"), x, 16000)
    soundfile.write(str(tmp_path / "one.flac"), x, 16000)
    soundfile.write(str(tmp_path / "two.flac"), x, 16000)
    (tmp_path / "ref.csv").write_text("start,end\n0.5,2.0\n")
    lines = [ln.split("#", 1)[0].strip() for ln in README.read_text().splitlines() if ln.startswith("vadstream file ")]
    assert len(lines) >= 6
    bin_dir = Path(sys.executable).parent  # the venv's vadstream
    for line in lines:
        proc = subprocess.run(line, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
        assert proc.returncode == 0, (line, proc.stderr)
    assert (tmp_path / "segments.csv").read_text().startswith("file,start_s,end_s")
    assert (tmp_path / "labels" / "talk.txt").is_file() and (tmp_path / "talk.png").stat().st_size > 1000
