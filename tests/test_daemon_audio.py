"""Speech audio through the real daemon (file input): utterances and streamed chunks are the input's
own samples, bit for bit, over the stated interval, with pre-roll reaching before the labelled onset."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from daemon_util import RATE, Collector, DaemonProcess, speech_track, write_wav
from vadstream.wire.events import SpeechEnded, SpeechStarted, Status
from vadstream.wire.audio import SpeechAudio, Utterance

LAYOUT = [1.0, "the quick brown fox jumps over the lazy dog", 1.5, "hello world this is vadstream speaking", 1.2]
PRE_ROLL = 8000  # the defaults: 500 ms
POST_ROLL = 4000  # 250 ms


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
    ends = col.of(SpeechEnded)
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
        start = next(s for s in col.of(SpeechStarted) if s.sample_index == u.start_sample)
        assert u.probability == pytest.approx(start.probability)
    # the utterance goes out right after its speech_end (the post-roll was already there)
    order = [m for m in col.messages if isinstance(m, (SpeechEnded, Utterance))]
    assert [type(m) for m in order] == [SpeechEnded, Utterance] * len(ends)
    assert all(m.stream_id == ends[0].stream_id for m in utts)


def test_file_speech_chunks_reassemble_to_the_input(tmp_path, ctx, track):
    pcm, regions, wav = track
    col = run_file(tmp_path, ctx, wav, topics=(b"audio.speech", b"vad.speech_", b"vad.status"))
    assert col.of(Utterance) == []  # not subscribed: not sent
    starts = col.of(SpeechStarted)
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
        end = next(e for e in col.of(SpeechEnded) if e.start_sample == s.sample_index)
        assert mine[-1].end_sample == end.sample_index and mine[-1].reason == end.reason
        assert first + got.size >= end.sample_index  # streamed past the end: up to the end decision


def test_no_audio_subscriber_no_audio_work(tmp_path, ctx, track):
    """A `vad.` subscriber gets no audio and the daemon holds no audio history."""
    pcm, regions, wav = track
    daemon = DaemonProcess(tmp_path, "--input", str(wav), "--wait-subscriber", "20")  # real time: ask while it runs
    col = Collector(daemon.events, ctx)
    try:
        from vadstream.wire.client import request

        col.wait_for(lambda m: isinstance(m, SpeechEnded), 15)
        status = request(daemon.control, "status", context=ctx)["status"]
        assert status["audio"] == {"utterance_subscribed": False, "speech_subscribed": False,
                                   "history_samples": 0, "history_capacity_samples": status["audio"]["history_capacity_samples"]}
        assert daemon.wait(30) == 0
    finally:
        daemon.kill()
        col.close()
    assert not [m for m in col.messages if isinstance(m, (Utterance, SpeechAudio))]
