"""Speech audio in the daemon loop in-process, with a scripted source: max_speech_s splits, a hole
filled with silence, a device lost mid-speech, live changes of [audio]; against the stream the model saw."""

from __future__ import annotations

import time

import numpy as np
import zmq
from daemon_util import RATE, speech_track
from scripted import ScriptedSource, blocks, inprocess_daemon

from vadstream.audio.blocks import SourceStatus
from vadstream.service import config
from vadstream.stages.detector import EndReason
from vadstream.stages.samples import to_int16
from vadstream.wire.audio import SpeechAudio, Utterance
from vadstream.wire.events import SpeechEnd


def make_daemon(tmp_path, **detector):
    # vad.status for the last message, stopping: once it is here, so is every message before it
    return inprocess_daemon(tmp_path, detector, topics=(b"vad.speech_", b"audio.", b"vad.status"))


def run(d, col, ctx, script):
    d.source = ScriptedSource(script)
    try:
        assert d.run() == 0
        col.wait_stopped()
    finally:
        col.close()
        ctx.destroy(linger=0)
    assert col.errors == []
    return col


def test_max_speech_split_gives_overlapping_whole_utterances(tmp_path):
    speech, _ = speech_track(tmp_path, [0.8, "the quick brown fox jumps over the lazy dog and the cat", 0.8])
    d, col, ctx = make_daemon(tmp_path, max_speech_s=1.0)
    col = run(d, col, ctx, blocks(speech, 0))
    stream = to_int16(np.clip(speech, -1, 1))  # the stream the model saw, as int16
    ends = col.of(SpeechEnd)
    utts = col.of(Utterance)
    assert sum(e.reason == "max_speech" for e in ends) >= 1
    assert len(utts) == len(ends)
    for u, e in zip(utts, ends):
        assert (u.start_sample, u.end_sample, u.reason) == (e.start_sample, e.sample_index, e.reason)
        assert np.array_equal(u.samples, stream[u.sample_index:u.end_of_audio])
        assert u.sample_index == max(0, u.start_sample - 8000)
    for a, b in zip(utts, utts[1:]):
        if a.reason == "max_speech":  # the next one starts where this one ended: they overlap by the rolls
            assert b.start_sample == a.end_sample
            assert b.sample_index == b.start_sample - 8000 and a.end_of_audio == min(stream.size, a.end_sample + 2400)
    # audio.speech: one gap-free stream over the whole speech, never repeating a sample
    chunks = col.of(SpeechAudio)
    for x, y in zip(chunks, chunks[1:]):
        assert y.sample_index >= x.end_of_audio
    split = [c for c in chunks if c.final and c.reason == "max_speech"][0]
    after = chunks[chunks.index(split) + 1]
    assert after.sample_index == split.sample_index and after.num_samples == 0  # no pre-roll repeated


def test_hole_and_device_loss_mid_speech(tmp_path):
    speech, _ = speech_track(tmp_path, [0.8, "the quick brown fox jumps over the lazy dog"])
    n = speech.size
    cut = n // 2 // 320 * 320
    hole = 320 * 10  # 200 ms: filled with zeros, which the model sees and the utterance carries
    script = blocks(speech[:cut], 0) + blocks(speech[cut:], cut + hole)
    script += [SourceStatus("lost", "device unplugged", {"device": "USB mic"})]
    d, col, ctx = make_daemon(tmp_path)
    col = run(d, col, ctx, script)
    stream = np.concatenate([to_int16(speech[:cut]), np.zeros(hole, "<i2"), to_int16(speech[cut:])])
    utts, ends = col.of(Utterance), col.of(SpeechEnd)
    assert len(utts) == len(ends) >= 1
    for u in utts:
        assert np.array_equal(u.samples, stream[u.sample_index:u.end_of_audio])  # zeros in the hole included
    assert any(u.sample_index < cut + 320 and u.end_of_audio > cut + hole - 320 for u in utts)
    (u,) = [u for u in utts if u.reason == "device_lost"]
    assert stream.size - 4000 < u.end_sample <= stream.size
    assert u.end_of_audio == stream.size  # the post-roll cut short: sent at once with what there was


def test_audio_settings_apply_live(tmp_path):
    d, col, ctx = make_daemon(tmp_path)
    try:
        assert (d.audio_tap.pre_roll_samples, d.audio_tap.post_roll_samples) == (8000, 2400)
        new = config.from_mapping({"audio": {"pre_roll_ms": 100.0, "post_roll_ms": 50.0},
                                   "detector": {"max_speech_s": 10.0}}, d.cfg)
        changes = d.live.set(new)
        assert set(changes) == {"audio.pre_roll_ms", "audio.post_roll_ms", "detector.max_speech_s"}
        assert (d.audio_tap.pre_roll_samples, d.audio_tap.post_roll_samples) == (1600, 800)
        assert d.audio_tap.capacity_samples == int((0.1 + 10 + 0.2 + 2.0) * RATE)  # max(post-roll, hangover 200 ms)
    finally:
        col.close()
        ctx.destroy(linger=0)
        d.shutdown(EndReason.SHUTDOWN)


def test_publisher_knows_which_audio_topics_are_subscribed(tmp_path):
    from vadstream.wire.publisher import Publisher

    ctx = zmq.Context()
    pub = Publisher(f"ipc://{tmp_path}/p", source="test", context=ctx)

    def settle(want: dict[str, bool]) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pub.poll()
            if all(pub.wants(t) == v for t, v in want.items()):
                return
            time.sleep(0.01)
        raise AssertionError({t: pub.wants(t) for t in want})

    try:
        events = ctx.socket(zmq.SUB)
        events.setsockopt(zmq.SUBSCRIBE, b"vad.")
        events.connect(f"ipc://{tmp_path}/p")
        settle({"vad.status": True, "audio.utterance": False, "audio.speech": False})
        speech = ctx.socket(zmq.SUB)
        speech.setsockopt(zmq.SUBSCRIBE, b"audio.speech")
        speech.connect(f"ipc://{tmp_path}/p")
        settle({"audio.utterance": False, "audio.speech": True})
        everything = ctx.socket(zmq.SUB)
        everything.setsockopt(zmq.SUBSCRIBE, b"")
        everything.connect(f"ipc://{tmp_path}/p")
        settle({"audio.utterance": True, "audio.speech": True})
        everything.close(0)
        settle({"audio.utterance": False, "audio.speech": True})
        speech.close(0)
        settle({"audio.utterance": False, "audio.speech": False, "vad.status": True})
        events.close(0)
    finally:
        pub.close(0)
        ctx.destroy(linger=0)
