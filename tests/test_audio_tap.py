"""Speech audio without sockets: the history ring, the wire format, and the tap's cutting rules."""

from __future__ import annotations

import numpy as np
import pytest

from vadstream.audio.history import SampleHistory
from vadstream.service.audio_tap import MAX_UTTERANCE_S, AudioTap, history_seconds
from vadstream.stages.samples import to_int16, to_int16_range
from vadstream.wire.audio import SpeechAudio, Utterance, parse_audio
from vadstream.wire.events import ParseError, parse


def ramp(start: int, n: int) -> np.ndarray:
    """int16 samples whose value is their stream index (mod 2**15), so any slice names its position."""
    return (np.arange(start, start + n) % 32768).astype("<i2")


def as_float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / np.float32(32768.0)


# -- int16 conversion and history ------------------------------------------------------------------

def test_to_int16_inverts_the_int16_scaling_exactly():
    x = np.arange(-32768, 32768, dtype=np.int32).astype("<i2")
    assert np.array_equal(to_int16(as_float(x)), x)
    assert to_int16(np.array([1.0, -1.5, 0.49 / 32768], np.float32)).tolist() == [32767, -32768, 0]


def test_to_int16_range_scales_without_rounding_or_clipping():
    got = to_int16_range([0.5, -1.0, 1.25, 0.1 / 32768])
    assert got.dtype == np.float32
    assert got.tolist() == [16384.0, -32768.0, 40960.0, float(np.float32(np.float32(0.1 / 32768) * 32768))]
    x = np.arange(-32768, 32768, dtype=np.int32).astype("<i2")
    assert np.array_equal(to_int16_range(as_float(x)), x.astype(np.float32))


def test_history_keeps_the_newest_samples_by_stream_index():
    h = SampleHistory(1000)
    for start in range(0, 2600, 320):
        h.append(start, ramp(start, 320))
    assert (h.start, h.end) == (2880 - 1000, 2880)
    first, got = h.get(0, 5000)  # clamped to what is held
    assert first == 1880 and np.array_equal(got, ramp(1880, 1000))
    first, got = h.get(2000, 2100)
    assert first == 2000 and np.array_equal(got, ramp(2000, 100))
    assert h.get(3000, 3100)[1].size == 0


def test_history_restarts_on_a_jump_and_takes_blocks_larger_than_itself():
    h = SampleHistory(500)
    h.append(0, ramp(0, 300))
    h.append(10_000, ramp(10_000, 200))  # a jump: the old timeline is gone
    assert (h.start, h.end) == (10_000, 10_200)
    h.append(10_200, ramp(10_200, 1234))
    assert (h.start, h.end) == (11_434 - 500, 11_434)
    assert np.array_equal(h.get(0, 20_000)[1], ramp(10_934, 500))


def test_history_resize_keeps_the_newest():
    h = SampleHistory(800)
    h.append(100, ramp(100, 700))
    h.resize(300)
    assert (h.start, h.end) == (500, 800) and np.array_equal(h.get(0, 900)[1], ramp(500, 300))
    h.resize(2000)
    h.append(800, ramp(800, 1000))
    assert np.array_equal(h.get(0, 9000)[1], ramp(500, 1300))


# -- wire format ---------------------------------------------------------------------------------

def test_audio_messages_round_trip_three_frames():
    samples = ramp(1000, 4800)
    u = Utterance(sample_index=1000, wall_time_ns=123, samples=samples, start_sample=3000, end_sample=5000,
                  probability=0.93, reason="silence", seq=7, topic_seq=2, stream_id="abc", source="file:x.wav")
    frames = u.to_message()
    assert frames[0] == b"audio.utterance" and len(frames) == 3 and frames[2] == samples.tobytes()
    back = parse(frames)
    assert isinstance(back, Utterance) and back == u and np.array_equal(back.samples, samples)
    header = back.to_dict()
    assert header["num_samples"] == 4800 and header["format"] == "s16le" and header["sample_rate_hz"] == 16000
    assert header["duration_s"] == 0.125 and "samples" not in header
    assert np.array_equal(back.segment(), ramp(3000, 2000))
    assert np.array_equal(back.float32(), as_float(samples))

    c = SpeechAudio(sample_index=5, wall_time_ns=1, samples=ramp(5, 10), segment_start=8)
    back = parse_audio(c.to_message())
    assert isinstance(back, SpeechAudio) and back.final is False and back.end_sample is None
    assert back.to_message()[0] == b"audio.speech"


@pytest.mark.parametrize("mutate, match", [
    (lambda f: f[:2], "expected 3 frames"),
    (lambda f: [f[0], f[1], f[2][:-1]], "PCM bytes"),
    (lambda f: [b"audio.speech", f[1], f[2]], "does not match"),
    (lambda f: [f[0], f[1].replace(b'"sample_rate_hz":16000', b'"sample_rate_hz":8000'), f[2]], "unsupported audio"),
])
def test_bad_audio_messages_are_one_clear_error(mutate, match):
    u = Utterance(sample_index=0, wall_time_ns=0, samples=ramp(0, 10), start_sample=0, end_sample=10,
                  probability=1.0, reason="silence")
    with pytest.raises(ParseError, match=match):
        parse(mutate(u.to_message()))


# -- the tap ---------------------------------------------------------------------------------------

def make_tap(pre=800, post=400, capacity=100_000, utterances=True, stream=True) -> AudioTap:
    tap = AudioTap(pre, post, capacity, wall_ns=lambda s: 1_000_000 + s)
    tap.set_wanted(utterances, stream)
    return tap


def feed(tap: AudioTap, start: int, end: int, block: int = 320) -> list:
    out = []
    for a in range(start, end, block):
        out += tap.audio(a, as_float(ramp(a, min(block, end - a))))
    return out


def test_utterance_carries_pre_and_post_roll_bit_exact():
    tap = make_tap()
    assert feed(tap, 0, 3200) == []  # no speech yet: nothing goes out
    tap.start(2000, 0.95)
    feed(tap, 3200, 6400)
    out = tap.end(2000, 5000, "silence")  # 5000 + 400 <= 6400 already fed: out at once
    utt = [m for m in out if isinstance(m, Utterance)]
    assert len(utt) == 1
    u = utt[0]
    assert (u.sample_index, u.num_samples, u.start_sample, u.end_sample) == (1200, 4200, 2000, 5000)
    assert np.array_equal(u.samples, ramp(1200, 4200)) and u.probability == 0.95 and u.reason == "silence"
    assert u.wall_time_ns == 1_000_000 + 1200


def test_utterance_waits_for_its_post_roll_then_flushes_what_is_held():
    tap = make_tap(post=1000)
    feed(tap, 0, 3200)
    tap.start(1000, 0.9)
    assert [m for m in tap.end(1000, 3000, "silence") if isinstance(m, Utterance)] == []  # 4000 not fed yet
    out = feed(tap, 3200, 3520)
    assert [m for m in out if isinstance(m, Utterance)] == []
    out = feed(tap, 3520, 4160)
    (u,) = [m for m in out if isinstance(m, Utterance)]
    assert (u.sample_index, u.end_of_audio) == (200, 4000)
    # end of input: the utterance goes out with the audio there is
    tap.start(4000, 0.9)
    (u,) = [m for m in tap.end(4000, 4160, "end_of_input", last=True) if isinstance(m, Utterance)]
    assert (u.sample_index, u.end_of_audio) == (3200, 4160)
    assert np.array_equal(u.samples, ramp(3200, 960))


def test_speech_chunks_are_gap_free_from_the_pre_roll_and_never_repeat():
    tap = make_tap(utterances=False)
    feed(tap, 0, 3200)
    chunks = tap.start(2500, 0.9) + feed(tap, 3200, 4800) + tap.end(2500, 4500, "max_speech")
    chunks += tap.start(4500, 0.9)  # a max_speech split: the next segment starts where this one ended
    chunks += feed(tap, 4800, 5440) + tap.end(4500, 5400, "silence")
    assert all(isinstance(c, SpeechAudio) for c in chunks)
    first = [c for c in chunks if c.segment_start == 2500]
    second = [c for c in chunks if c.segment_start == 4500]
    assert first[0].sample_index == 1700  # start - pre_roll
    assert [c.final for c in first] == [False] * (len(first) - 1) + [True]
    assert first[-1].end_sample == 4500 and first[-1].reason == "max_speech" and first[-1].num_samples == 0
    # audio.speech never repeats audio: the second segment's pre-roll starts where the first stopped
    assert second[0].sample_index == 4800 and second[0].num_samples == 0
    whole = np.concatenate([c.samples for c in chunks])
    assert np.array_equal(whole, ramp(1700, 5440 - 1700))
    pos = [c.sample_index for c in chunks]
    ends = [c.end_of_audio for c in chunks]
    assert all(p == e for p, e in zip(pos[1:], ends[:-1]))


def test_nothing_is_cut_without_subscribers_and_history_is_freed():
    tap = make_tap(utterances=False, stream=False)
    assert not tap.active and tap.history is None
    assert tap.start(100, 0.9) == [] and tap.end(100, 900, "silence") == []
    tap.set_wanted(True, False)
    feed(tap, 0, 640)
    assert tap.history is not None
    tap.set_wanted(False, False)
    assert tap.history is None


def test_stream_subscriber_joining_mid_segment_gets_the_rest():
    tap = make_tap(pre=300, stream=False)  # history kept for the utterance subscriber
    feed(tap, 0, 960)
    tap.start(500, 0.9)
    tap.set_wanted(True, True)
    out = feed(tap, 960, 1600)  # the first chunk catches up from the pre-roll
    assert [(c.sample_index, c.end_of_audio) for c in out] == [(200, 1280), (1280, 1600)]
    assert all(c.segment_start == 500 for c in out)
    assert np.array_equal(np.concatenate([c.samples for c in out]), ramp(200, 1400))


def test_restart_of_the_timeline_flushes_waiting_utterances():
    tap = make_tap(post=3000, stream=False)
    feed(tap, 0, 3200)
    tap.start(1000, 0.9)
    assert tap.end(1000, 3000, "silence") == []
    (u,) = tap.audio(100_000, as_float(ramp(100_000, 320)))
    assert (u.sample_index, u.end_of_audio) == (200, 3200)


def test_history_size_covers_the_longest_segment():
    assert history_seconds(0.5, 0.25, 30.0, 0.3) == pytest.approx(0.5 + 30 + 0.3 + 2.0)
    assert history_seconds(0.5, 0.25, 0.0, 0.3) == pytest.approx(0.5 + MAX_UTTERANCE_S + 0.3 + 2.0)
    # a segment as long as max_speech_s, ended by a split, still has its pre-roll
    tap = make_tap(pre=8000, post=4000, capacity=int(history_seconds(0.5, 0.25, 3.0, 0.3) * 16000), stream=False)
    tap.start(20_000, 0.9)
    feed(tap, 0, 20_000 + 48_000 + 4000 + 8000)
    (u,) = tap.end(20_000, 68_000, "max_speech")
    assert (u.sample_index, u.end_of_audio) == (12_000, 72_000)


def test_audio_headers_match_the_schema():
    import dataclasses
    import json

    import jsonschema

    from vadstream.wire.events import schema

    validator = jsonschema.Draft202012Validator(schema())
    u = Utterance(sample_index=1000, wall_time_ns=1, samples=ramp(1000, 100), start_sample=1500, end_sample=1600,
                  probability=0.9, reason="max_speech", seq=1, stream_id="abc", source="stdin")
    tap = make_tap(utterances=False)
    feed(tap, 0, 640)
    chunks = tap.start(300, 0.9) + tap.end(300, 600, "silence")
    for m in [u, *chunks]:
        validator.validate(json.loads(dataclasses.replace(m, stream_id="abc").to_message()[1]))
    bad = json.loads(u.to_message()[1]) | {"reason": "tired"}
    assert not validator.is_valid(bad)
