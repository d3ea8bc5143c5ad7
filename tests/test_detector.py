"""Detector state machine: hysteresis, min speech, hangover, max speech split, padding, flush."""

import pytest

from vadstream.stages.detector import Detector, DetectorConfig, EndReason, SpeechEnd, SpeechStart, State

HOP = 320  # 20 ms at 16 kHz


def det(**kw):
    base = dict(onset_threshold=0.5, offset_threshold=0.35, min_speech_ms=60, min_silence_ms=200,
                max_speech_s=30, speech_pad_ms=0)
    base.update(kw)
    return Detector(HOP, DetectorConfig(**base))


def test_quiet_stays_quiet():
    d = det()
    assert d.process([0.1, 0.49, 0.3] * 100) == []
    assert d.state is State.QUIET and d.flush() == []


def test_start_after_min_speech_and_end_after_hangover():
    d = det()
    events = d.process([0.0] * 5 + [0.9] * 10 + [0.0] * 20)
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]
    start, end = events
    assert start.sample_index == 5 * HOP
    assert start.decided_sample == 8 * HOP  # 3 hops = 60 ms of speech confirmed
    assert end.sample_index == 15 * HOP  # end of the last speech hop
    assert end.decided_sample == 25 * HOP  # 200 ms of silence = 10 hops
    assert end.reason is EndReason.SILENCE and end.start_sample == start.sample_index
    assert end.duration_samples == 10 * HOP


def test_blip_shorter_than_min_speech_is_dropped():
    d = det()
    assert d.process([0.0, 0.9, 0.9, 0.0, 0.0] * 10) == []


def test_hysteresis_keeps_speech_between_thresholds():
    d = det()
    events = d.process([0.9] * 5 + [0.4] * 30 + [0.1] * 10)
    assert [type(e) for e in events] == [SpeechStart, SpeechEnd]
    assert events[1].sample_index == 35 * HOP


def test_onset_requires_onset_threshold():
    d = det()
    assert d.process([0.45] * 50) == []


def test_short_pause_is_bridged_long_pause_splits():
    d = det(min_silence_ms=100)
    events = d.process([0.9] * 10 + [0.1] * 4 + [0.9] * 10 + [0.1] * 6 + [0.9] * 10)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["SpeechStart", "SpeechEnd", "SpeechStart"]
    assert events[1].sample_index == 24 * HOP


def test_max_speech_forces_split():
    d = det(max_speech_s=1.0)
    events = d.process([0.9] * 120)
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    starts = [e for e in events if isinstance(e, SpeechStart)]
    assert len(ends) == 2 and all(e.reason is EndReason.MAX_SPEECH for e in ends)
    assert ends[0].sample_index == 16000 and starts[1].sample_index == 16000
    assert all(e.duration_samples == 16000 for e in ends)


def test_padding_is_clamped_to_zero_and_previous_end():
    d = det(speech_pad_ms=100, min_silence_ms=60)
    events = d.process([0.9] * 5 + [0.1] * 3 + [0.9] * 5 + [0.1] * 10)
    s1, e1, s2, e2 = events
    assert s1.sample_index == 0  # would be negative
    assert e1.sample_index == 5 * HOP + 3 * HOP  # padding clamped to what had been seen
    assert s2.sample_index == e1.sample_index  # never overlaps the previous segment
    # 100 ms padding would pass the decision point (60 ms hangover): clamped to it.
    assert e2.sample_index == e2.decided_sample == 16 * HOP


def test_flush_closes_open_segment_with_reason():
    d = det()
    d.process([0.9] * 10)
    (end,) = d.flush(EndReason.SHUTDOWN)
    assert end.reason is EndReason.SHUTDOWN and end.sample_index == 10 * HOP
    assert d.state is State.QUIET and d.flush() == []


def test_flush_never_closes_past_the_end_of_input():
    d = det()
    d.process([0.9] * 10)
    (end,) = d.flush(EndReason.END_OF_INPUT, end_sample=10 * HOP - 7)
    assert end.sample_index == end.decided_sample == 10 * HOP - 7
    d = det()
    d.process([0.9] * 10)
    (end,) = d.flush(EndReason.END_OF_INPUT, end_sample=20 * HOP)  # later than the last hop: no effect
    assert end.sample_index == end.decided_sample == 10 * HOP


def test_flush_while_starting_drops_candidate():
    d = det(min_speech_ms=200)
    d.process([0.9] * 3)
    assert d.state is State.STARTING
    assert d.flush() == []


def test_config_change_applies_to_next_hops():
    d = det()
    d.set_config(d.config.replace(onset_threshold=0.95, offset_threshold=0.9))
    assert d.process([0.9] * 20) == []


@pytest.mark.parametrize("key,value", [("onset_threshold", 1.5), ("min_silence_ms", -1),
                                       ("speech_pad_ms", "10"), ("max_speech_s", True)])
def test_invalid_config_names_key_value_and_range(key, value):
    with pytest.raises(ValueError) as info:
        DetectorConfig(**{key: value})
    assert key in str(info.value) and "allowed" in str(info.value)


def test_offset_above_onset_rejected():
    with pytest.raises(ValueError, match="offset_threshold"):
        DetectorConfig(onset_threshold=0.3, offset_threshold=0.5)


def test_unknown_key_rejected():
    with pytest.raises(ValueError, match="unknown detector key"):
        DetectorConfig().replace(bogus=1)


def test_independent_detectors_do_not_share_state():
    a, b = det(), det()
    a.process([0.9] * 10)
    assert a.in_speech and not b.in_speech and b.process([0.0] * 3) == []


def test_chunked_fast_path_equals_hop_by_hop_stepping():
    """process() skips steady stretches in bulk; events must equal stepping one hop at a time."""
    import numpy as np

    rng = np.random.default_rng(0)
    for trial in range(400):
        cfg = DetectorConfig(
            onset_threshold=0.5, offset_threshold=float(rng.choice([0.2, 0.35, 0.5])),
            min_speech_ms=float(rng.choice([0, 20, 60, 200])), min_silence_ms=float(rng.choice([0, 40, 200])),
            max_speech_s=float(rng.choice([0, 0.1, 0.5])), speech_pad_ms=float(rng.choice([0, 30, 100])))
        n = int(rng.integers(1, 300))
        p = np.repeat(rng.random(n), rng.integers(1, 12, size=n))[:n]
        p = np.clip(p + rng.normal(0, 0.05, p.size), 0, 1)
        ref, got = Detector(HOP, cfg), Detector(HOP, cfg)
        want = [e for x in p for e in ref._step(float(x))] + ref.flush()
        events, i = [], 0
        while i < p.size:
            k = int(rng.integers(1, 20))
            events += got.process(p[i:i + k])
            i += k
        assert events + got.flush() == want, trial
