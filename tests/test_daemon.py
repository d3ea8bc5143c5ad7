"""The real daemon as a subprocess: file and stdin input, events on a real ZeroMQ socket, signals,
runtime config, slow subscribers and errors. Speech is espeak-ng between known silences."""

from __future__ import annotations

import signal
import subprocess
import time

import numpy as np
import pytest
import zmq
from daemon_util import RATE, Collector, DaemonProcess, s16le, speech_track, write_wav

from vadstream.wire.client import ControlError, request
from vadstream.wire.events import Heartbeat, SpeechEnd, SpeechStart, Status

# Event timing tolerance against the known speech regions (espeak-ng, trimmed): onset within
# -0.3 .. +0.35 s (padding, model lookahead, min speech), offset within -0.35 .. +0.5 s (padding,
# hangover); generous enough for any decent model, tight enough to catch a broken timeline.
ONSET_TOL = (-0.3, 0.35)
OFFSET_TOL = (-0.35, 0.5)
LAYOUT = [1.0, "the quick brown fox jumps over the lazy dog", 1.5, "hello world this is vadstream speaking", 1.2]


@pytest.fixture(scope="module")
def track(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audio")
    audio, regions = speech_track(tmp, LAYOUT)
    return audio, regions, write_wav(tmp / "track.wav", audio)


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def speech_events(messages):
    return [m for m in messages if isinstance(m, (SpeechStart, SpeechEnd))]


def check_stream(col: Collector, from_zero: bool = True):
    """Gapless seq (from 0 unless we may have joined late), one stream id, every message schema-valid."""
    assert col.errors == []
    seqs = [m.seq for m in col.messages]
    first = 0 if from_zero else seqs[0]
    assert seqs == list(range(first, first + len(seqs))), f"seq not gapless: {seqs[:50]}"
    for kind in {m.TYPE for m in col.messages}:
        tseqs = [m.topic_seq for m in col.messages if m.TYPE == kind]
        first = 0 if from_zero else tseqs[0]
        assert tseqs == list(range(first, first + len(tseqs))), f"{kind} topic_seq not gapless: {tseqs[:50]}"
    assert len({m.stream_id for m in col.messages}) == 1


def check_segments(messages, regions):
    speech = speech_events(messages)
    kinds = [type(m) for m in speech]
    assert kinds == [SpeechStart, SpeechEnd] * (len(kinds) // 2) and kinds, f"not start/end pairs: {speech}"
    starts, ends = speech[0::2], speech[1::2]
    for s, e in zip(starts, ends):
        assert e.start_sample == s.sample_index and e.sample_index > s.sample_index
        assert s.decided_sample >= s.sample_index and e.decided_sample >= e.sample_index
        assert e.duration_s == pytest.approx((e.sample_index - s.sample_index) / RATE)
    assert len(starts) == len(regions), f"{len(starts)} segments for {len(regions)} regions: " \
        f"{[(s.time_s, e.time_s) for s, e in zip(starts, ends)]} vs {regions}"
    for (r0, r1), s, e in zip(regions, starts, ends):
        assert ONSET_TOL[0] <= s.time_s - r0 <= ONSET_TOL[1], f"start {s.time_s:.3f} vs onset {r0:.3f}"
        assert OFFSET_TOL[0] <= e.time_s - r1 <= OFFSET_TOL[1], f"end {e.time_s:.3f} vs offset {r1:.3f}"
    return starts, ends


@pytest.fixture(scope="module")
def file_run(track, tmp_path_factory):
    """One --no-realtime run over the track; its messages, exit code, stderr and wall time."""
    audio, regions, wav = track
    tmp = tmp_path_factory.mktemp("file_run")
    ctx = zmq.Context()
    d = DaemonProcess(tmp, "--input", str(wav), "--no-realtime", "--wait-subscriber", "20", "--min-silence-ms", "400")
    col = Collector(d.events, ctx)
    t0 = time.monotonic()
    rc = d.wait(60)
    elapsed = time.monotonic() - t0
    if rc == 0:
        col.wait_stopped()
    col.close()
    ctx.destroy(linger=0)
    return col, rc, d.stderr(), elapsed


def test_file_input_events_are_timely_gapless_and_valid(file_run, track):
    col, rc, stderr, _ = file_run
    audio, regions, _ = track
    assert rc == 0, stderr
    check_stream(col)
    msgs = col.messages
    assert isinstance(msgs[0], Status) and msgs[0].kind == "welcome"  # the subscription was answered
    assert msgs[0].details == {"last_seq": -1, "in_speech": False, "open_start_sample": None, "segments": 0,
                               "uptime_s": msgs[0].details["uptime_s"], "subscriptions": 1}
    assert isinstance(msgs[1], Status) and msgs[1].kind == "started"
    assert any(isinstance(m, Status) and m.kind == "opened" for m in msgs)
    assert isinstance(msgs[-1], Status) and msgs[-1].kind == "stopping"
    assert msgs[-1].details["audio_s"] == pytest.approx(audio.size / RATE, abs=0.01)
    assert all(m.source == "file:track.wav" for m in msgs)
    assert col.of(Heartbeat), "no heartbeat"
    starts, ends = check_segments(msgs, regions)
    assert all(e.reason == "silence" for e in ends)
    # wall clock follows the sample clock
    walls = [m.wall_time_ns for m in speech_events(msgs)]
    assert walls == sorted(walls) and abs(walls[0] / 1e9 - time.time()) < 300
    assert "vadstream: error" not in stderr and "warning" not in stderr


def test_stdin_gives_the_same_events_as_the_file(file_run, track, tmp_path, ctx):
    audio, regions, _ = track
    d = DaemonProcess(tmp_path, "--input", "-", "--wait-subscriber", "20", "--min-silence-ms", "400",
                      stdin=subprocess.PIPE)
    col = Collector(d.events, ctx)
    d.wait_subscribed(ctx)
    data = s16le(audio)
    for i in range(0, len(data), 3001):  # odd-sized writes: samples split across reads
        d.proc.stdin.write(data[i: i + 3001])
    d.proc.stdin.close()
    assert d.wait(60) == 0, d.stderr()
    col.wait_stopped()
    col.close()
    check_stream(col)
    assert all(m.source == "stdin" for m in col.messages)

    def key(m):
        return (m.TYPE, m.sample_index, m.decided_sample, getattr(m, "reason", None))

    assert [key(m) for m in speech_events(col.messages)] == [key(m) for m in speech_events(file_run[0].messages)]


def run_file(tmp_path, ctx, wav, *flags) -> Collector:
    """A --no-realtime daemon over ``wav`` with ``flags``: exits 0; its messages, checked by check_stream."""
    d = DaemonProcess(tmp_path, "--input", str(wav), "--no-realtime", "--wait-subscriber", "20", *flags)
    col = Collector(d.events, ctx)
    assert d.wait(60) == 0, d.stderr()
    col.wait_stopped()
    col.close()
    check_stream(col)
    return col


def test_end_of_input_inside_speech_closes_the_segment(track, tmp_path, ctx):
    audio, regions, _ = track
    cut = int((regions[0][0] + 1.0) * RATE)  # stop one second into the first sentence
    wav = write_wav(tmp_path / "cut.wav", audio[:cut])
    col = run_file(tmp_path, ctx, wav, "--min-silence-ms", "2000")
    speech = speech_events(col.messages)
    assert [m.TYPE for m in speech] == ["speech_start", "speech_end"]
    assert speech[1].reason == "end_of_input" and speech[1].sample_index <= cut


def test_max_speech_splits_segments_back_to_back(track, tmp_path, ctx):
    _, _, wav = track
    col = run_file(tmp_path, ctx, wav, "--min-silence-ms", "400", "--max-speech-s", "1")
    speech = speech_events(col.messages)
    splits = [i for i, m in enumerate(speech) if isinstance(m, SpeechEnd) and m.reason == "max_speech"]
    assert len(splits) >= 2, speech
    for i in splits:
        end, nxt = speech[i], speech[i + 1]
        assert end.duration_s == pytest.approx(1.0, abs=0.021)
        assert isinstance(nxt, SpeechStart) and nxt.sample_index == end.sample_index


def test_sigterm_closes_the_open_segment_and_exits_within_1s(track, tmp_path, ctx):
    audio, regions, _ = track
    d = DaemonProcess(tmp_path, "--input", "-", "--min-silence-ms", "2000", stdin=subprocess.PIPE)
    col = Collector(d.events, ctx)
    d.wait_subscribed(ctx)
    d.proc.stdin.write(s16le(audio[: int((regions[0][0] + 1.5) * RATE)]))  # silence, then speech; stdin stays open
    d.proc.stdin.flush()
    col.wait_for(lambda m: isinstance(m, SpeechStart), timeout_s=20)
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    rc = d.wait(5)
    took = time.monotonic() - t0
    assert rc == 0, d.stderr()
    assert took < 1.0, f"exit took {took:.2f} s"
    end = col.wait_for(lambda m: isinstance(m, SpeechEnd), timeout_s=2)
    assert end.reason == "shutdown"
    last = col.wait_for(lambda m: isinstance(m, Status) and m.kind == "stopping", timeout_s=2)
    assert "SIGTERM" in last.message and last.seq == end.seq + 1
    col.close()
    check_stream(col, from_zero=False)  # joined without --wait-subscriber: may miss the first status
    d.proc.stdin.close()


def test_sighup_reloads_the_config_and_control_changes_thresholds(tmp_path, ctx):
    cfg = tmp_path / "vadstream.toml"
    cfg.write_text("[detector]\nonset_threshold = 0.5\noffset_threshold = 0.35\n")
    d = DaemonProcess(tmp_path, "--config", str(cfg), "--input", "-", stdin=subprocess.PIPE)
    try:
        col = Collector(d.events, ctx)
        status = d.wait_subscribed(ctx)
        assert status["config"]["detector"]["onset_threshold"] == 0.5
        d.proc.stdin.write(s16le(np.zeros(RATE // 2, np.float32)))
        d.proc.stdin.flush()

        cfg.write_text("[detector]\nonset_threshold = 0.8\noffset_threshold = 0.35\nmin_silence_ms = 500\n"
                       "[input]\nblock_ms = 40\n")
        d.signal(signal.SIGHUP)
        m = col.wait_for(lambda m: isinstance(m, Status) and m.kind == "config")
        assert m.details["changed"] == {"detector.onset_threshold": [0.5, 0.8],
                                        "detector.min_silence_ms": [200.0, 500.0]}
        assert m.details["restart_needed"] == ["input.block_ms"]
        assert request(d.control, "status", context=ctx)["status"]["config"]["detector"]["onset_threshold"] == 0.8

        cfg.write_text("[detector]\nonset_threshold = 7\n")
        d.signal(signal.SIGHUP)
        m = col.wait_for(lambda m: isinstance(m, Status) and m.kind == "error")
        assert "detector.onset_threshold = 7" in m.message and "keeping the running config" in m.message

        reply = request(d.control, {"cmd": "config", "detector": {"offset_threshold": 0.3}, "prob": True}, context=ctx)
        assert reply["detector"]["offset_threshold"] == 0.3 and reply["detector"]["onset_threshold"] == 0.8
        assert reply["prob"] is True
        with pytest.raises(ControlError, match=r"detector.offset_threshold = 0.9 must not exceed"):
            request(d.control, {"cmd": "config", "detector": {"offset_threshold": 0.9}}, context=ctx)
        with pytest.raises(ControlError, match=r"unknown key detector.loudness"):
            request(d.control, {"cmd": "config", "detector": {"loudness": 1}}, context=ctx)
        d.proc.stdin.write(s16le(np.zeros(RATE // 2, np.float32)))
        d.proc.stdin.flush()
        col.wait_for(lambda m: m.TYPE == "prob")  # the prob stream is on now
        status = request(d.control, "status", context=ctx)["status"]
        assert status["state"] == "quiet" and status["ready"] is True and status["source"]["name"] == "stdin"
        assert status["model"]["hop_samples"] > 0 and status["publisher"]["dropped"] == 0
        d.signal(signal.SIGTERM)
        assert d.wait(5) == 0, d.stderr()
        assert "reloaded" in d.stderr() and "reload failed" in d.stderr()
        col.close()
        check_stream(col, from_zero=False)
    finally:
        d.kill()


def test_slow_subscriber_does_not_stall_processing(track, tmp_path, ctx):
    audio, _, _ = track
    long = np.tile(audio, int(np.ceil(60 * RATE / audio.size)))  # >= 60 s: ~3000 vad.prob messages
    wav = write_wav(tmp_path / "long.wav", long)
    d = DaemonProcess(tmp_path, "--input", str(wav), "--no-realtime", "--prob", "--hwm", "5",
                      "--wait-subscriber", "20")
    slow = ctx.socket(zmq.SUB)
    slow.setsockopt(zmq.RCVHWM, 1)
    slow.setsockopt(zmq.SUBSCRIBE, b"vad.")
    slow.connect(d.events)  # never reads
    t0 = time.monotonic()
    rc = d.wait(60)
    took = time.monotonic() - t0
    err = d.stderr()
    assert rc == 0, err
    summary = [line for line in err.splitlines() if "stopping (end of input)" in line][0]
    episodes = int(summary.split(" drop episode")[0].rsplit(" ", 1)[1])
    assert episodes >= 1, summary
    assert "not keeping up" in err
    assert took < long.size / RATE / 3, f"{took:.1f} s for {long.size / RATE:.0f} s of audio"
    slow.close(0)


def test_a_second_daemon_on_the_same_endpoint_is_refused(tmp_path, ctx):
    first = DaemonProcess(tmp_path, "--input", "-", stdin=subprocess.PIPE)
    try:
        for _ in range(300):  # up once its control socket answers (a missing file fails at once)
            try:
                request(first.control, "status", timeout_s=0.3, context=ctx)
                break
            except ControlError:
                time.sleep(0.05)
        second = DaemonProcess(tmp_path, "--input", "-", stdin=subprocess.PIPE)
        assert second.wait(30) == 1
        assert f"another vadstream (pid {first.proc.pid}) is already publishing" in second.stderr()
        assert first.proc.poll() is None
    finally:
        first.proc.stdin.close()
        assert first.wait(10) == 0


@pytest.mark.parametrize("args, rc, words", [
    (["--onset", "1.5"], 2, "detector.onset_threshold = 1.5 is out of range: allowed 0.0 to 1.0"),
    (["--config", "/nonexistent/vadstream.toml"], 2, "config file not found: /nonexistent/vadstream.toml"),
    (["--input", "/nonexistent.wav"], 1, "input file not found: /nonexistent.wav"),
    (["--input", "x.wav", "--model", "/nonexistent.onnx"], 1, "model file not found: /nonexistent.onnx"),
])
def test_startup_errors_are_one_line_with_an_exit_code(tmp_path, args, rc, words):
    d = DaemonProcess(tmp_path, *args, cli=True)  # through the real `vadstream run` command line
    assert d.wait(30) == rc
    err = d.stderr().strip()
    assert words in err, err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
