"""Bad input and first-run traps (issue 10): each test failed before its fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from daemon_util import DaemonProcess, model_path
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
    return subprocess.run([sys.executable, "-m", "vadstream.service.daemon", "--model", str(model_path()),
                           "--input", str(wav),
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


# -- a model with a double input is refused at load (#10) ------------------------------------------

@pytest.fixture(scope="module")
def double_model(tmp_path_factory) -> Path:
    onnx = pytest.importorskip("onnx")
    import dataclasses

    from onnx import TensorProto, helper

    from vadstream.stages.model import METADATA_KEY, OnnxModel

    # a window model's contract (one input) with the shipped model's features
    spec = dataclasses.replace(OnnxModel(model_path()).spec, context_frames=64, spec_version=1, state=(),
                               state_reset="")
    ctx, numcep, k = spec.context_frames, spec.features.numcep, spec.outputs_per_inference
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["features"], ["mean"], axes=[2], keepdims=0),
         helper.make_node("Slice", ["mean", "starts", "ends", "axes"], ["first"]),
         helper.make_node("Sigmoid", ["first"], ["speech_prob"])],
        "double_input",
        [helper.make_tensor_value_info("features", TensorProto.DOUBLE, ["batch", ctx, numcep])],
        [helper.make_tensor_value_info("speech_prob", TensorProto.DOUBLE, ["batch", k])],
        initializer=[helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
                     helper.make_tensor("ends", TensorProto.INT64, [1], [k]),
                     helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    prop = model.metadata_props.add()
    prop.key, prop.value = METADATA_KEY, spec.to_json()
    path = tmp_path_factory.mktemp("model") / "double.onnx"
    onnx.save(model, str(path))
    return path


def test_double_input_model_is_refused_at_load_with_one_line(double_model, tmp_path, capsys):
    wav = tmp_path / "a.wav"
    wav.write_bytes(wav16k(tone()))
    want = (f"model {double_model} input 'features' is tensor(double), vadstream needs float32 (tensor(float)): "
            "export the model with a float32 input")
    rc = cli.main(["file", str(wav), "--model", str(double_model)])
    out, err = capsys.readouterr()
    assert (rc, out, err.splitlines()) == (2, "", [f"vadstream file: {want}"])
    proc = subprocess.run([sys.executable, "-m", "vadstream.service.daemon", "--model", str(double_model),
                           "--input", str(wav), "--no-realtime", "--endpoint", f"ipc://{tmp_path}/ev",
                           "--control-endpoint", "none"], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr.splitlines()) == (1, [f"vadstream: error: {want}"])


# -- a garbage --labels file is a clear error, not an empty reference (#10) -------------------------

@pytest.mark.parametrize("content, words", [
    (b"this is not a label file\n", "labels.txt:1: expected 'start,end' in seconds, got 'this is not a label file' "
                                    "(and no other line)"),
    (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "labels.txt: not a text file of 'start,end' lines (byte 0x89 at offset 0 "
                                       "is not UTF-8)"),
    (b"0.5,nan\n", "labels.txt:1: start and end must be seconds >= 0, got '0.5,nan'"),
])
def test_garbage_labels_file_is_one_clear_error(tmp_path, capsys, content, words):
    wav = tmp_path / "a.wav"
    wav.write_bytes(wav16k(tone()))
    labels = tmp_path / "labels.txt"
    labels.write_bytes(content)
    rc, out, err = run_file(capsys, str(wav), "--labels", str(labels), "--plot", str(tmp_path / "a.png"))
    assert (rc, out) == (2, "")
    assert err == [f"vadstream file: --labels: {tmp_path}/{words}"]


def test_empty_labels_file_is_a_reference_without_speech(tmp_path):
    from vadstream.evaluation.labels import read_labels

    labels = tmp_path / "labels.txt"
    labels.write_text("# no speech in this clip\n")
    assert read_labels(labels) == []


def test_listen_says_the_status_kind_once():
    from vadstream.commands.listen import format_event
    from vadstream.wire.events import Status

    def line(kind, message):
        return format_event(Status(sample_index=0, wall_time_ns=0, kind=kind, message=message, state="quiet",
                                   seq=7, topic_seq=1, stream_id="s", source="stdin"))

    assert "  stopping: received SIGTERM  [stdin #7]" in line("stopping", "stopping: received SIGTERM")
    assert "  opened: reading x.wav  [stdin #7]" in line("opened", "reading x.wav")


def test_odd_sample_rate_is_resampled_from_the_nearest_simple_rate(tmp_path, capsys):
    """Found by the fuzz suite: 383999 Hz needed a 39-million-tap filter (15 s, GBs to build)."""
    import time

    from wav_bytes import chunk, fmt_body, pcm16, riff

    wav = tmp_path / "odd_rate.wav"
    wav.write_bytes(riff(chunk(b"fmt ", fmt_body(rate=383999)), chunk(b"data", pcm16(np.zeros(383999, np.float32)))))
    t0 = time.monotonic()
    rc, out, err = run_file(capsys, str(wav))
    assert time.monotonic() - t0 < 5
    assert rc == 0 and json.loads(out)["duration_s"] == pytest.approx(1.0, abs=0.001)
    assert err == [f"vadstream file: {wav}: unusual sample rate 383999 Hz: resampled as 384000 Hz (3 ppm off)"]


# -- a config file that is not UTF-8 (#5) ----------------------------------------------------------

def test_non_utf8_config_is_one_line_and_exit_2(tmp_path):
    """Exit status 2 is in both units' RestartPreventExitStatus=: systemd does not restart a
    daemon whose config file it cannot read."""
    cfg = tmp_path / "vadstream.toml"
    cfg.write_bytes("# r\xe9glages du d\xe9tecteur\n[detector]\nonset_threshold = 0.8\n".encode("latin-1"))
    wav = tmp_path / "a.wav"
    wav.write_bytes(wav16k(tone()))
    proc = subprocess.run([sys.executable, "-m", "vadstream.service.daemon", "--config", str(cfg), "--input", str(wav),
                           "--endpoint", f"ipc://{tmp_path}/ev"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"vadstream: error: {cfg}: not UTF-8: byte 0xe9 on line 1 (TOML files are "
                                        "UTF-8; re-save the file as UTF-8)"]
    units = Path(__file__).resolve().parent.parent / "systemd"
    for unit in ("vadstream.service", "vadstream-user.service"):
        assert "RestartPreventExitStatus=2\n" in (units / unit).read_text()


# -- permission denied vs no process behind the socket (#4) ----------------------------------------

def listen_cmd(*args: str, as_nobody: bool = False, timeout: float = 30) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "vadstream.commands.listen", *args]
    if as_nobody:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")


def test_stale_socket_file_says_no_process_behind_it(tmp_path):
    import socket

    for name in ("events", "control"):  # what a crashed daemon leaves behind
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(tmp_path / name))
        s.close()
    status = listen_cmd("--control-endpoint", f"ipc://{tmp_path}/control", "--status")
    assert (status.returncode, status.stderr) == (
        1, f"vadstream listen: error: no process behind {tmp_path}/control: a stale socket file (the daemon is not "
           "running)\n")
    events = listen_cmd("--endpoint", f"ipc://{tmp_path}/events", "--timeout", "0.3")
    assert events.returncode == 1
    assert events.stderr.splitlines()[0] == (f"vadstream listen: no process behind {tmp_path}/events: a stale socket "
                                             "file (the daemon is not running); waiting for a daemon")


def test_permission_denied_on_the_socket_is_said_in_one_line(tmp_path):
    """A user outside the socket's group used to get `listening on ...` and silence."""
    import os
    import shutil
    import tempfile

    as_nobody = os.geteuid() == 0
    if as_nobody and shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to run the listener as another user")
    run_dir = Path(tempfile.mkdtemp(prefix="vadstream-perm-"))
    run_dir.chmod(0o755)  # the directory is searchable, the socket files are 0660 root:root
    d = DaemonProcess(tmp_path, "--input", "-", "--endpoint", f"ipc://{run_dir}/events", "--control-endpoint",
                      f"ipc://{run_dir}/control", stdin=subprocess.PIPE)
    try:
        request_until_up(f"ipc://{run_dir}/control")
        if not as_nobody:  # an ordinary user cannot switch users: take the permission away instead
            for name in ("events", "control"):
                (run_dir / name).chmod(0)
        for name, args in (("events", ["--endpoint", f"ipc://{run_dir}/events"]),
                           ("control", ["--control-endpoint", f"ipc://{run_dir}/control", "--status"])):
            proc = listen_cmd(*args, "--timeout", "5", as_nobody=as_nobody)
            path = run_dir / name
            st = path.stat()
            group, owner = grp_name(st.st_gid), pwd_name(st.st_uid)
            assert (proc.returncode, proc.stdout) == (1, "")
            assert proc.stderr == (f"vadstream listen: error: permission denied on the socket file {path} (mode "
                                   f"{st.st_mode & 0o777:04o}, owner {owner}, group {group}: add yourself to the "
                                   f"group: sudo usermod -aG {group} $USER, then log in again)\n")
    finally:
        d.proc.stdin.close()
        d.wait(10)
        shutil.rmtree(run_dir, ignore_errors=True)


def grp_name(gid: int) -> str:
    import grp

    return grp.getgrgid(gid).gr_name


def pwd_name(uid: int) -> str:
    import pwd

    return pwd.getpwuid(uid).pw_name


def request_until_up(endpoint: str, timeout_s: float = 20) -> None:
    import time

    from vadstream.wire.client import ControlError, request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            request(endpoint, "status", timeout_s=0.5)
            return
        except ControlError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_native_stderr_filter_drops_portaudio_noise_and_keeps_the_rest():
    """The unit behind test_e2e's device-loss check: what C code writes to fd 2 is filtered by
    pattern, the daemon's own lines and anything unknown pass unchanged."""
    code = (
        "import logging, os, time\n"
        "from vadstream.service.logs import filter_native_stderr, setup_logging\n"
        "filter_native_stderr(); setup_logging('info')\n"
        "os.write(2, b\"Expression 'alsa_snd_pcm_poll_descriptors_revents( x )' failed in "
        "'src/hostapi/alsa/pa_linux_alsa.c', line: 3665\\n\")\n"
        "os.write(2, b'ALSA lib pcm.c:8545:(snd_pcm_recover) underrun occurred\\n')\n"
        "os.write(2, b'a message from elsewhere\\n')\n"
        "logging.getLogger('vadstream').warning('device lost')\n"
        "time.sleep(0.3)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stderr.splitlines()) == ["a message from elsewhere", "vadstream: warning: device lost"]


def test_resampled_file_stays_within_full_scale(tmp_path, capsys):
    """Found by the fuzz suite: a full-scale square wave at 22.05 kHz came out of the resampler at
    up to ~1.6 (filter overshoot), outside the [-1, 1] every block promises."""
    from wav_bytes import chunk, fmt_body, riff

    from vadstream.audio.blocks import SourceSpec
    from vadstream.audio.sources import open_source

    square = np.where(np.arange(22050) % 40 < 20, 32767, -32768).astype("<i2").tobytes()
    wav = tmp_path / "square.wav"
    wav.write_bytes(riff(chunk(b"fmt ", fmt_body(rate=22050)), chunk(b"data", square)))
    src = open_source(SourceSpec(input=str(wav), realtime=False))
    peak = 0.0
    while not src.finished:
        block = src.read(0.0)
        if block is not None:
            peak = max(peak, float(np.abs(block.samples).max()))
    src.close()
    assert 0.99 < peak <= 1.0
