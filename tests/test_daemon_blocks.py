"""The daemon loop in-process with a scripted source: bad blocks, device lost/restored, holes in the
stream. Nothing kills it; events stay schema-valid and gapless."""

from __future__ import annotations

import numpy as np
import pytest
from daemon_util import RATE, model_path, speech_track
from scripted import ScriptedSource, blocks, connected_daemon

from vadstream.audio.blocks import AudioBlock, SourceStatus
from vadstream.service import config
from vadstream.stages.detector import EndReason
from vadstream.wire.events import SpeechEnd, SpeechStart, Status


@pytest.fixture
def daemon(tmp_path):
    with connected_daemon(tmp_path, {"min_silence_ms": 2000.0}) as daemon_and_collector:
        yield daemon_and_collector


def test_bad_blocks_lost_device_and_holes(daemon, tmp_path):
    d, col = daemon
    speech, regions = speech_track(tmp_path, [1.0, "the quick brown fox jumps over the lazy dog"], noise=0.001)
    n = speech.size
    resume = n + 5 * RATE  # the device comes back 5 s later
    script = blocks(speech, 0)
    mid = script[len(script) // 2]
    script.insert(len(script) // 2, AudioBlock(np.array(["not", "audio"]), mid.start_sample, 0))  # garbage: skipped
    nan_block = script[len(script) // 2 + 3]
    script[len(script) // 2 + 3] = AudioBlock(np.where(np.arange(nan_block.samples.size) % 7 == 0, np.nan,
                                                        nan_block.samples).astype(np.float32),
                                              nan_block.start_sample, nan_block.wall_time_ns)
    script += [SourceStatus("lost", "device unplugged", {"device": "USB mic"}),
               SourceStatus("restored", "device back", {"resume_sample": resume, "gap_samples": resume - n})]
    script += blocks(speech, resume)
    hole = resume + n + RATE // 4  # a 250 ms hole (e.g. a driver hiccup): filled with silence
    script += blocks(np.zeros(RATE, np.float32), hole)
    d.source = ScriptedSource(script)

    assert d.run() == 0
    col.wait_stopped()
    msgs = col.messages
    assert col.errors == []
    assert [m.seq for m in msgs] == list(range(len(msgs)))
    speech_msgs = [m for m in msgs if isinstance(m, (SpeechStart, SpeechEnd))]
    kinds = [(m.TYPE, getattr(m, "reason", None)) for m in speech_msgs]
    assert kinds[0] == ("speech_start", None)
    lost_at = next(i for i, m in enumerate(msgs) if isinstance(m, Status) and m.kind == "lost")
    ends_before_lost = [m for m in msgs[:lost_at] if isinstance(m, SpeechEnd)]
    assert ends_before_lost[-1].reason == "device_lost"
    after = [m for m in msgs[lost_at:] if isinstance(m, (SpeechStart, SpeechEnd))]
    assert after and after[0].TYPE == "speech_start" and after[0].sample_index >= resume - 0.05 * RATE
    assert after[-1].TYPE == "speech_end" and after[-1].reason == "end_of_input"
    assert any(m.kind == "restored" for m in msgs if isinstance(m, Status))
    stop = msgs[-1]
    assert isinstance(stop, Status) and stop.kind == "stopping"
    assert stop.details["errors"] >= 2  # the garbage block and the NaN block
    assert stop.details["audio_s"] == pytest.approx((hole + RATE) / RATE)
    assert any(m.state == "lost" for m in msgs if isinstance(m, Status) and m.kind == "lost")
    assert d.source.closed


def test_overlapping_block_is_trimmed_and_int16_is_scaled(daemon):
    d, col = daemon
    d.live.set(config.from_mapping({"publisher": {"prob": True}}, d.cfg))
    x = (0.1 * np.random.default_rng(1).standard_normal(RATE)).astype(np.float32)
    d.process_block(AudioBlock(x[:8000], 0, 0))
    d.process_block(AudioBlock(x[4000:12000], 4000, 0))  # 4000 samples already seen
    assert d.stream.sample_index == 12000
    tail = (x[12000:] * 32768).astype(np.int16)
    d.process_block(AudioBlock(tail, 12000, 0))
    assert d.stream.sample_index == RATE and d.book.errors == 0
    assert d.shutdown(EndReason.END_OF_INPUT) == 0
    col.wait_stopped()
    from vadstream.stages.vad import Vad
    heard = np.concatenate([x[:12000], tail / np.float32(32768)])
    expected = Vad(model_path())(heard)  # the hops of one unbroken stream
    probs = [m for m in col.messages if m.TYPE == "prob"]
    assert [m.sample_index for m in probs] == [320 * k for k in range(expected.size)]
    np.testing.assert_allclose([m.probability for m in probs], expected, atol=1e-6)
