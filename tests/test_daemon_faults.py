"""Fault injection: every speech_start gets exactly one speech_end on every exit path, a reload
never stops the daemon, and the exit status says what happened (issue 10, #5 and #10).

In-process (the real Daemon, a scripted source, real ZeroMQ): an exception injected into the
loop, a failing reload, device loss and end of input, each in the middle of a segment. As
processes (the real CLI and signals): SIGINT, SIGHUP with a config file that is not UTF-8, and
SIGHUP after control-socket changes. SIGTERM is in test_daemon.py."""

from __future__ import annotations

import json
import signal

import pytest
import zmq
from daemon_util import RATE, Collector, DaemonProcess, speech_track, write_wav
from scripted import BLOCK, ScriptedSource, blocks, connected_daemon

from vadstream.audio.blocks import SourceStatus
from vadstream.service import config
from vadstream.wire.client import request
from vadstream.wire.events import SpeechEnd, SpeechStart, Status

SENTENCE = "the quick brown fox jumps over the lazy dog and keeps on running through the field"


def check_pairs(messages) -> list[SpeechEnd]:
    """Every speech_start is followed by exactly one speech_end (matching start_sample) before the next
    start; the run ends with a stopping status. Returns the ends."""
    speech = [m for m in messages if isinstance(m, (SpeechStart, SpeechEnd))]
    assert speech, "no speech events"
    ends = []
    for start, end in zip(speech[::2], speech[1::2]):
        assert isinstance(start, SpeechStart) and isinstance(end, SpeechEnd), speech
        assert end.start_sample == start.sample_index
        ends.append(end)
    assert len(speech) % 2 == 0, f"a speech_start without its speech_end: {speech[-1]}"
    assert isinstance(messages[-1], Status) and messages[-1].kind == "stopping", messages[-1]
    return ends


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    audio, regions = speech_track(tmp_path_factory.mktemp("speech"), [1.0, SENTENCE, 3.0])
    return audio, regions


@pytest.fixture
def daemon(tmp_path):
    with connected_daemon(tmp_path, {"min_silence_ms": 2000.0}) as daemon_and_collector:
        yield daemon_and_collector


def run_to_end(d, col) -> tuple[int, list]:
    rc = d.run()
    col.wait_for(lambda m: isinstance(m, Status) and m.kind == "stopping", 5)
    assert col.errors == []
    return rc, list(col.messages)


MID_SPEECH = int(2.5 * RATE) // BLOCK  # block index 1.5 s into the sentence


def test_an_exception_in_the_loop_closes_the_segment_and_exits_1(daemon, speech, caplog):
    d, col = daemon
    d.source = ScriptedSource(blocks(speech[0]), fail_at=MID_SPEECH)
    rc, msgs = run_to_end(d, col)
    assert rc == 1
    (end,) = check_pairs(msgs)
    assert end.reason == "shutdown" and end.sample_index <= MID_SPEECH * BLOCK
    assert msgs[-1].message == "stopping: internal error: RuntimeError: injected fault"
    assert d.source.closed
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["internal error: RuntimeError: injected fault"]


def test_a_failing_heartbeat_is_an_internal_error_too(daemon, speech, monkeypatch):
    d, col = daemon
    d.source = ScriptedSource(blocks(speech[0]))
    real = d.heartbeat

    def heartbeat(now):
        if d.stream.in_speech and d.stream.sample_index > 2 * RATE:
            raise OSError("injected")
        real(now)

    monkeypatch.setattr(d, "heartbeat", heartbeat)
    rc, msgs = run_to_end(d, col)
    assert rc == 1
    (end,) = check_pairs(msgs)
    assert end.reason == "shutdown"


def test_a_failing_reload_mid_speech_keeps_the_daemon_running(daemon, speech, monkeypatch):
    d, col = daemon
    script = blocks(speech[0])
    d.source = ScriptedSource(script)

    def broken_load(args=None):
        raise RuntimeError("injected reload fault")

    monkeypatch.setattr(config, "load", broken_load)
    real = d.heartbeat

    def heartbeat(now):  # ask for a reload once, in the middle of the segment
        if d.stream.in_speech and d.stream.sample_index > 2 * RATE and not getattr(d, "_asked", False):
            d._asked = d.signals.reload = True
        real(now)

    monkeypatch.setattr(d, "heartbeat", heartbeat)
    rc, msgs = run_to_end(d, col)
    assert rc == 0
    (end,) = check_pairs(msgs)
    assert end.reason == "silence"  # the segment went on after the failed reload
    errors = [m for m in msgs if isinstance(m, Status) and m.kind == "error"]
    assert [m.message for m in errors] == [
        "reload failed, keeping the running config: internal error: RuntimeError: injected reload fault"]
    assert errors[0].state == "speaking"
    assert msgs[-1].message == "stopping: end of input" and msgs[-1].details["audio_s"] == speech[0].size / RATE


@pytest.mark.parametrize("path", ["device_lost", "end_of_input"])
def test_device_loss_and_end_of_input_mid_speech(daemon, speech, path):
    d, col = daemon
    script = blocks(speech[0][: MID_SPEECH * BLOCK])
    if path == "device_lost":
        script += [SourceStatus("lost", "device unplugged", {"device": "USB mic"})]
    d.source = ScriptedSource(script)
    rc, msgs = run_to_end(d, col)
    assert rc == 0
    (end,) = check_pairs(msgs)
    assert end.reason == path


# -- signals, as processes -------------------------------------------------------------------------

@pytest.fixture
def speaking_daemon(tmp_path, speech):
    """A daemon reading a speech file in real time with a config file, and a collector; yields once a
    segment is open."""
    wav = write_wav(tmp_path / "speech.wav", speech[0])
    cfg = tmp_path / "vadstream.toml"
    cfg.write_text("[detector]\nonset_threshold = 0.9\noffset_threshold = 0.3\nmin_silence_ms = 2000\n")
    d = DaemonProcess(tmp_path, "--config", str(cfg), "--input", str(wav), "--heartbeat-s", "0.2", cli=True)
    ctx = zmq.Context()
    col = Collector(d.events, ctx)
    try:
        col.wait_for(lambda m: isinstance(m, SpeechStart), 20)
        yield d, col, cfg, ctx
    finally:
        d.kill()
        col.close()
        ctx.destroy(linger=0)


def test_sigint_mid_speech_closes_the_segment_and_exits_0(speaking_daemon):
    d, col, _, _ = speaking_daemon
    d.signal(signal.SIGINT)
    assert d.wait(10) == 0, d.stderr()
    col.wait_for(lambda m: isinstance(m, Status) and m.kind == "stopping", 5)
    (end,) = check_pairs(col.messages)
    assert end.reason == "shutdown" and col.messages[-1].message == "stopping: received SIGINT"


def test_sighup_with_a_non_utf8_file_mid_speech_keeps_running(speaking_daemon):
    d, col, cfg, _ = speaking_daemon
    cfg.write_bytes("# r\xe9glages\n[detector]\nonset_threshold = 0.5\n".encode("latin-1"))
    d.signal(signal.SIGHUP)
    error = col.wait_for(lambda m: isinstance(m, Status) and m.kind == "error", 10)
    assert error.message == (f"reload failed, keeping the running config: {cfg}: not UTF-8: byte 0xe9 on line 1 "
                             "(TOML files are UTF-8; re-save the file as UTF-8)")
    assert d.proc.poll() is None and error.state == "speaking"
    n = len(col.messages)
    col.wait_for(lambda m: len(col.messages) > n + 2, 5)  # still publishing (heartbeats)
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0, d.stderr()
    col.wait_for(lambda m: isinstance(m, Status) and m.kind == "stopping", 5)
    assert len(check_pairs(col.messages)) == 1


def reload_answers(col) -> list[Status]:
    """The daemon's answers to SIGHUP so far: ``reloaded ...`` (kind config) or ``reload failed ...``."""
    return [m for m in col.of(Status) if m.message.startswith(("reloaded ", "reload failed"))]


def test_sighup_keeps_control_changes_unless_the_file_changed_the_key(speaking_daemon):
    """#10: SIGHUP used to undo control-socket changes silently. Decision: a reload applies what
    changed in the file since it was last read; a control change stays until then."""
    d, col, cfg, ctx = speaking_daemon

    def detector() -> dict:
        return request(d.control, "status", context=ctx)["status"]["config"]["detector"]

    def reload() -> Status:
        """SIGHUP and the daemon's answer to it, told by what it says, not by when it arrives: the
        control request's own ``config`` status is published before the request's reply but may
        reach the collector after it (#21), so counting statuses could take it for the reload's."""
        n = len(reload_answers(col))
        d.signal(signal.SIGHUP)
        col.wait_for(lambda m: len(reload_answers(col)) > n, 10)
        return reload_answers(col)[n]

    request(d.control, {"cmd": "config", "detector": {"onset_threshold": 0.7, "offset_threshold": 0.6}}, context=ctx)
    head = "[detector]\noffset_threshold = 0.3\nmin_silence_ms = 1500\n"
    cfg.write_text(head + "onset_threshold = 0.9\n")  # onset and offset unchanged in the file
    st = reload()
    assert st.kind == "config" and st.details["changed"] == {"detector.min_silence_ms": [2000.0, 1500.0]}
    assert st.details["kept"] == ["detector.offset_threshold", "detector.onset_threshold"]
    got = detector()
    assert (got["onset_threshold"], got["offset_threshold"], got["min_silence_ms"]) == (0.7, 0.6, 1500.0)
    cfg.write_text(head + "onset_threshold = 0.8\n")  # the file changes onset: the file wins for that key
    st = reload()
    assert st.details["changed"] == {"detector.onset_threshold": [0.7, 0.8]}
    assert st.details["kept"] == ["detector.offset_threshold"]
    assert (detector()["onset_threshold"], detector()["offset_threshold"]) == (0.8, 0.6)
    cfg.write_text(head + "onset_threshold = 0.5\n")  # valid alone, below the offset set by control
    st = reload()
    assert st.kind == "error" and st.message == (
        f"reload failed, keeping the running config: {cfg}: detector.offset_threshold = 0.6 must not exceed "
        "detector.onset_threshold = 0.5 (with the values set through the control socket)")
    assert detector()["onset_threshold"] == 0.8
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0, d.stderr()
    assert json.dumps(st.details)  # schema-valid, serialisable
