"""Speech audio from live capture: PulseAudio -> PortAudio -> ``vadstream run`` -> ``audio.utterance``.

A private PulseAudio server (``tests/pulse.py``) with a 16 kHz null sink; the daemon captures its
monitor at 16 kHz (nothing resamples on the way); ``paplay`` plays espeak-ng phrases with known
speech regions (``tests/audio_gen.py``). Each utterance is found in the played file by its own
samples: it must be the played audio bit for bit (PulseAudio at 100 % volume passes 16-bit
samples unchanged, PortAudio's float conversion is exact), one per phrase, and its pre-roll must
reach before the labelled onset and its post-roll past the labelled offset.
"""

from __future__ import annotations

import numpy as np
import pytest
import zmq
from audio_gen import espeak_missing, make_test_audio, read_wav
from daemon_util import DaemonProcess
from pulse import start_server

from vadstream.wire.audio import SpeechAudio, Utterance
from vadstream.wire.events import SpeechEnd

pytestmark = pytest.mark.audio


@pytest.fixture
def server(tmp_path_factory):
    if espeak_missing():
        pytest.skip(espeak_missing())
    srv = start_server(tmp_path_factory, 16000)
    yield srv
    srv.stop()


def locate(needle: np.ndarray, haystack: np.ndarray) -> int:
    """Index where ``needle``'s loudest 64 samples occur in ``haystack`` (exactly), or -1."""
    k = int(np.argmax(np.convolve(np.abs(needle.astype(np.int64)), np.ones(64), "valid")))
    part = needle[k:k + 64]
    win = np.lib.stride_tricks.sliding_window_view(haystack, 64)
    hits = np.flatnonzero((win == part).all(axis=1))
    return int(hits[0]) - k if hits.size == 1 else -1


def test_live_capture_utterances_are_the_played_samples(server, tmp_path):
    audio = make_test_audio(gap_s=2.0, noise_dbfs=-60.0)
    wav = audio.write_wav(tmp_path / "speech16k.wav", rate_hz=16000)
    played = np.rint(read_wav(wav)[0][:, 0] * 32768).astype("<i2")
    ctx = zmq.Context()
    d = DaemonProcess(tmp_path, "--device", "pulse", "--wait-subscriber", "20", env=server.env({}), cli=True)
    try:
        col = d.listen_when_flowing(ctx, topics=(b"vad.", b"audio."))
        server.play_and_wait(wav, timeout_s=60)
        col.wait_for(lambda m: isinstance(m, Utterance) and len(col.of(Utterance)) >= len(audio.speech), 5)
        assert d.terminate(col) == 0, d.stderr()
    finally:
        d.kill()
        ctx.destroy(linger=0)
    assert col.errors == []
    utts, ends = col.of(Utterance), col.of(SpeechEnd)
    assert len(utts) == len(ends) == len(audio.speech), [(e.start_sample, e.sample_index) for e in ends]
    offsets = []
    for u, e, (on, off) in zip(utts, ends, audio.speech):
        assert (u.start_sample, u.end_sample) == (e.start_sample, e.sample_index)
        assert u.start_sample - u.sample_index == 8000 and u.end_of_audio - u.end_sample == 2400
        at = locate(u.samples, played)
        assert at >= 0, "utterance not found bit for bit in the played file"
        assert np.array_equal(u.samples, played[at:at + u.num_samples])  # bit-identical over its interval
        offsets.append(u.sample_index - at)  # stream index of the file's sample 0
        assert at < on and at + u.num_samples > off  # pre-roll before the labelled onset, post-roll past the offset
    assert max(offsets) - min(offsets) == 0  # one capture timeline: no sample lost or doubled in between
    # the streamed chunks of each segment are the same samples
    for u in utts:
        chunks = [c for c in col.of(SpeechAudio) if c.segment_start == u.start_sample]
        got = np.concatenate([c.samples for c in chunks])
        first = chunks[0].sample_index
        assert np.array_equal(got, played[first - offsets[0]:first - offsets[0] + got.size])
