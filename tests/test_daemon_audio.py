"""Speech audio through the real daemon (file input): utterances and streamed chunks are the input's
own samples, bit for bit, over the stated interval, with pre-roll reaching before the labelled onset."""

from __future__ import annotations

import numpy as np
import pytest
import zmq
from daemon_util import RATE, Collector, DaemonProcess, speech_track, write_wav

from vadstream.wire.audio import SpeechAudio, Utterance
from vadstream.wire.events import SpeechEnd, SpeechStart, Status

LAYOUT = [1.0, "the quick brown fox jumps over the lazy dog", 1.5, "hello world this is vadstream speaking", 1.2]
PRE_ROLL = 8000  # the defaults: 500 ms
POST_ROLL = 2400  # 150 ms, the default


@pytest.fixture(scope="module")
def track(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audio")
    audio, regions = speech_track(tmp, LAYOUT)
    wav = write_wav(tmp / "track.wav", audio)
    from audio_gen import read_wav

    x, rate = read_wav(wav)
    assert rate == RATE
    pcm = np.rint(x[:, 0] * 32768).astype("<i2")  # the file's own int16 samples
    return pcm, regions, wav


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def run_file(tmp_path, ctx, wav, *args, topics=(b"",)):
    daemon = DaemonProcess(tmp_path, "--input", str(wav), "--no-realtime", "--wait-subscriber", "20", *args)
    col = Collector(daemon.events, ctx, topics=topics)
    try:
        assert daemon.wait(60) == 0, daemon.stderr()
        col.wait_for(lambda m: isinstance(m, Status) and m.kind == "stopping", 5)
    finally:
        daemon.kill()
        col.close()
    assert col.errors == [], col.errors[:3]
    return col


def test_file_utterances_are_the_input_samples_with_pre_and_post_roll(tmp_path, ctx, track):
    pcm, regions, wav = track
    col = run_file(tmp_path, ctx, wav)
    ends = col.of(SpeechEnd)
    utts = col.of(Utterance)
    assert len(ends) == len(regions) == 2
    assert len(utts) == len(ends)
    for u, e, (on_s, off_s) in zip(utts, ends, regions):
        assert (u.start_sample, u.end_sample, u.reason) == (e.start_sample, e.sample_index, e.reason)
        assert u.sample_index == max(0, u.start_sample - PRE_ROLL)
        assert u.end_of_audio == min(pcm.size, u.end_sample + POST_ROLL)
        assert np.array_equal(u.samples, pcm[u.sample_index:u.end_of_audio])  # bit-identical
        assert u.sample_index < round(on_s * RATE) < u.start_sample + 0.35 * RATE  # pre-roll before the onset
        assert u.end_of_audio > round(off_s * RATE)
        assert 0.0 < u.probability <= 1.0
        start = next(s for s in col.of(SpeechStart) if s.sample_index == u.start_sample)
        assert u.probability == pytest.approx(start.probability)
    # the utterance goes out right after its speech_end (the post-roll was already there)
    order = [m for m in col.messages if isinstance(m, (SpeechEnd, Utterance))]
    assert [type(m) for m in order] == [SpeechEnd, Utterance] * len(ends)
    assert all(m.stream_id == ends[0].stream_id for m in utts)


def test_file_speech_chunks_reassemble_to_the_input(tmp_path, ctx, track):
    pcm, regions, wav = track
    col = run_file(tmp_path, ctx, wav, topics=(b"audio.speech", b"vad.speech_", b"vad.status"))
    assert col.of(Utterance) == []  # not subscribed: not sent
    starts = col.of(SpeechStart)
    chunks = col.of(SpeechAudio)
    assert [c.topic_seq for c in chunks] == list(range(len(chunks)))
    for s in starts:
        mine = [c for c in chunks if c.segment_start == s.sample_index]
        assert mine[0].sample_index == max(0, s.sample_index - PRE_ROLL)
        assert [c.final for c in mine] == [False] * (len(mine) - 1) + [True]
        for a, b in zip(mine, mine[1:]):
            assert b.sample_index == a.end_of_audio  # gap-free within a segment
        got = np.concatenate([c.samples for c in mine])
        first = mine[0].sample_index
        assert np.array_equal(got, pcm[first:first + got.size])  # bit-identical
        end = next(e for e in col.of(SpeechEnd) if e.start_sample == s.sample_index)
        assert mine[-1].end_sample == end.sample_index and mine[-1].reason == end.reason
        assert first + got.size >= end.sample_index  # streamed past the end: up to the end decision


def test_no_audio_subscriber_no_audio_work(tmp_path, ctx, track):
    """A `vad.` subscriber gets no audio and the daemon holds no audio history."""
    pcm, regions, wav = track
    daemon = DaemonProcess(tmp_path, "--input", str(wav), "--wait-subscriber", "20")  # real time: ask while it runs
    col = Collector(daemon.events, ctx)
    try:
        from vadstream.wire.client import request

        col.wait_for(lambda m: isinstance(m, SpeechEnd), 15)
        status = request(daemon.control, "status", context=ctx)["status"]
        audio = status["audio"]
        subscribed = (audio["utterance_subscribed"], audio["speech_subscribed"], audio["history_samples"])
        assert subscribed == (False, False, 0)
        assert audio["history_capacity_samples"] == int((0.5 + 30 + 0.2 + 2.0) * 16000)  # hangover 0.2 s > post-roll
        assert daemon.wait(30) == 0
    finally:
        daemon.kill()
        col.close()
    assert not [m for m in col.messages if isinstance(m, (Utterance, SpeechAudio))]


class ArrivalCollector(Collector):
    """Collector that also stamps each message's arrival time (unix ns) in ``arrivals``."""

    def __init__(self, *a, **kw):
        self.arrivals: list[int] = []
        super().__init__(*a, **kw)

    def _run(self) -> None:
        import json
        import time as _time

        from vadstream.wire import events

        while not self._stop.is_set():
            if not self.sock.poll(50):
                continue
            frames = self.sock.recv_multipart()
            now = _time.time_ns()
            try:
                self.validator.validate(json.loads(frames[1]))
                self.messages.append(events.parse(frames))
                self.arrivals.append(now)
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"{exc}")


def latencies_ms(col: ArrivalCollector) -> np.ndarray:
    """Per ``vad.prob`` message: arrival minus the capture (pacing) time of its hop, ms."""
    from vadstream.wire.events import Probability

    pairs = [(t, m) for t, m in zip(col.arrivals, col.messages) if isinstance(m, Probability)]
    return np.array([(t - m.wall_time_ns) / 1e6 for t, m in pairs])


def test_slow_audio_subscriber_leaves_event_latency_unchanged(tmp_path, ctx, track):
    """Two daemons on the same file in real time, side by side (same machine load): one with a
    speech audio subscriber that never reads. Its event subscriber gets every event as fast as the
    other daemon's; the audio subscriber's drops are counted, on audio topics only."""
    pcm, regions, _ = track
    wav = tmp_path / "twice.wav"
    from daemon_util import write_wav as write

    write(wav, np.tile(pcm.astype(np.float32) / 32768, 2))  # ~16 s
    runs = {}
    for name in ("plain", "slow"):
        d = tmp_path / name
        d.mkdir()
        # long rolls: about 1.5 MB of speech audio, well past what the socket buffers absorb
        runs[name] = DaemonProcess(d, "--input", str(wav), "--prob", "--hwm", "20", "--heartbeat-s", "0.5",
                                   "--pre-roll-ms", "3000", "--post-roll-ms", "3000")
    cols = {name: ArrivalCollector(p.events, ctx) for name, p in runs.items()}
    slow = ctx.socket(zmq.SUB)
    slow.setsockopt(zmq.RCVHWM, 1)
    slow.setsockopt(zmq.SUBSCRIBE, b"audio.")
    slow.connect(runs["slow"].events)  # never reads
    try:
        for p in runs.values():
            assert p.wait(60) == 0, p.stderr()
        for c in cols.values():
            c.wait_for(lambda m: isinstance(m, Status) and m.kind == "stopping", 5)
    finally:
        for p in runs.values():
            p.kill()
        for c in cols.values():
            c.close()
        slow.close(0)
    for c in cols.values():
        assert c.errors == []
        for topic in {m.topic for m in c.messages}:  # the event subscriber missed nothing
            seqs = [m.topic_seq for m in c.messages if m.topic == topic]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), topic
    speech = {n: [(type(m), m.sample_index) for m in c.messages if isinstance(m, (SpeechStart, SpeechEnd))]
              for n, c in cols.items()}
    assert speech["plain"] == speech["slow"] and len(speech["plain"]) == 8
    stop = {n: c.of(Status)[-1].details for n, c in cols.items()}
    assert stop["plain"]["dropped"] == 0
    assert stop["slow"]["dropped"] >= 1
    from vadstream.wire.events import Heartbeat

    by_topic = [h.dropped_by_topic for h in cols["slow"].of(Heartbeat)][-1]
    assert by_topic and set(by_topic) <= {"audio.utterance", "audio.speech"}, by_topic
    lat = {n: latencies_ms(c) for n, c in cols.items()}
    assert min(v.size for v in lat.values()) > 500
    med = {n: float(np.median(v)) for n, v in lat.items()}
    p95 = {n: float(np.percentile(v, 95)) for n, v in lat.items()}
    print(f"event latency ms: median {med}, p95 {p95}, drops {stop['slow']['dropped']} {by_topic}")
    assert abs(med["slow"] - med["plain"]) < 10.0, (med, p95)
    assert p95["slow"] < p95["plain"] + 20.0, (med, p95)
