"""``Stream``: the one audio -> Vad -> Detector -> close loop. Its timeline (holes, overlaps,
restarts, the end), and the same events from every caller: the daemon, ``vadstream file``, the
monitor, the evaluation's vadstream peer and ``vadstream evaluate`` (which the bench runs)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from audio_gen import two_phrases, write_wav
from daemon_util import model_path
from test_file_daemon import daemon_messages, daemon_segments, file_command

from vadstream import DetectorConfig, EndReason, SpeechEnd, SpeechStart, Stream, Vad

README = Path(__file__).resolve().parents[1] / "README.md"
HOP = 320


@pytest.fixture(scope="module")
def audio():
    return two_phrases()


@pytest.fixture(scope="module")
def stream():
    return Stream(model_path())


def segments(events) -> list[tuple[int, int, str]]:
    """(start, end, reason) of each segment; starts and ends must pair up."""
    starts = [e.sample_index for e in events if isinstance(e, SpeechStart)]
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert starts == [e.start_sample for e in ends]
    return [(e.start_sample, e.sample_index, e.reason.value) for e in ends]


def quantised(x: np.ndarray) -> np.ndarray:
    """What a 16-bit WAV of ``x`` holds, read back as floats."""
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16) / np.float32(32768.0)


# -- the timeline ------------------------------------------------------------------------------------
def test_any_chunking_gives_the_offline_probabilities_and_events(audio, stream):
    whole = stream.run(audio.samples)
    np.testing.assert_array_equal(whole.probs, Vad(model_path())(audio.samples))
    np.testing.assert_array_equal(whole.hop_starts, np.arange(whole.probs.size) * HOP)
    assert len(segments(whole.events)) == 2
    for chunk in (1 + 7 * 13, 320, 1000):
        out = stream.run(audio.samples, chunk)
        np.testing.assert_array_equal(out.probs, whole.probs)
        assert out.events == whole.events


def test_a_short_hole_is_silence_and_an_overlap_is_trimmed(stream):
    x = (0.1 * np.random.default_rng(2).standard_normal(20000)).astype(np.float32)
    hole = np.concatenate([x[:8000], np.zeros(800, np.float32), x[8800:]])
    want = stream.run(hole).probs
    stream.reset()
    parts = [stream.process(x[:8000]), stream.process(x[8800:14000], 8800),  # 800 samples missing
             stream.process(x[12000:], 12000),  # 2000 samples seen already
             stream.close()]
    assert stream.sample_index == 20000
    got = np.concatenate([p.probs for p in parts])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.concatenate([p.hop_starts for p in parts]), np.arange(want.size) * HOP)


def test_a_long_hole_or_resync_restarts_the_stream_and_ends_open_speech(audio, stream):
    first, _ = audio.speech[0]
    x = audio.samples[: first + 16000]  # one second into the first phrase
    stream.reset()
    out = stream.process(x)
    assert stream.in_speech
    later = x.size + 3 * 16000  # 3 s later: more than the 1 s that is filled
    jump = stream.process(audio.samples[:4000], later)
    assert [type(e) for e in jump.events] == [SpeechEnd]
    end = jump.events[0]
    # It ends where the detector's evidence ends: the last hop scored (the lookahead's samples wait).
    assert end.reason is EndReason.DEVICE_LOST and end.sample_index == out.hop_starts[-1] + HOP < x.size
    assert end.start_sample == segments(out.events + jump.events)[0][0]
    # The restarted stream numbers its hops from the new start.
    rest = stream.close()
    starts = np.concatenate([jump.hop_starts, rest.hop_starts])
    np.testing.assert_array_equal(starts, later + np.arange(starts.size) * HOP)
    assert stream.sample_index == later + 4000
    # resync(): the same without waiting for the jump; the next block restarts even when contiguous.
    stream.reset()
    stream.process(x)
    lost = stream.resync()
    assert [(e.sample_index, e.reason) for e in lost.events] == [(end.sample_index, EndReason.DEVICE_LOST)]
    after = stream.process(np.zeros(640, np.float32))
    assert stream.sample_index == x.size + 640 and not after.events


def test_close_ends_speech_at_the_end_of_input_and_bad_samples_are_cleaned(audio, stream):
    _, end = audio.speech[0]
    cut = end - 4000  # 0.25 s before the phrase ends
    stream.reset()
    out = stream.process(audio.samples[:cut])
    closed = stream.close()
    assert segments(out.events + closed.events)[-1][1:] == (cut, "end_of_input")
    stream.reset()
    stream.process(audio.samples[:cut])
    closed = stream.close(end_sample=cut - 100)
    assert [(e.sample_index, e.reason) for e in closed.events][-1] == (cut - 100, EndReason.END_OF_INPUT)
    # stop(): shutdown without the lookahead's hops
    stream.reset()
    stream.process(audio.samples[:cut])
    stopped = stream.stop()
    assert [e.reason for e in stopped.events] == [EndReason.SHUTDOWN]
    assert cut - stream.vad.lookahead_samples - 2 * HOP <= stopped.events[0].sample_index <= cut
    # Non-finite samples become silence, samples past full scale are clipped; int16 is scaled.
    x = (0.1 * np.random.default_rng(3).standard_normal(8000)).astype(np.float32)
    bad = x.copy()
    bad[::50] = np.nan
    bad[1::50] = 4.0
    clean = np.where(np.isnan(bad), 0.0, np.clip(bad, -1.0, 1.0)).astype(np.float32)
    stream.reset()
    got = stream.process(bad)
    assert got.replaced_samples == 160
    np.testing.assert_array_equal(np.concatenate([got.probs, stream.close().probs]), stream.run(clean).probs)
    as_int16 = (x * 32768).astype(np.int16)
    np.testing.assert_array_equal(stream.run(as_int16).probs, stream.run(as_int16 / np.float32(32768)).probs)


# -- every caller, the same events -----------------------------------------------------------------
def test_every_caller_gives_the_same_events_for_a_file_ending_in_speech(audio, tmp_path, stream):
    from vadstream.commands.file import open_audio
    from vadstream.commands.monitor import file_chunks, pipeline_updates
    from vadstream.evaluation import evaluate
    from vadstream.evaluation.peers import VadstreamPeer
    from vadstream.training.data import LabelledAudio

    start, end = audio.speech[1]
    cut = (start + end) // 2  # the file ends in the middle of the second phrase
    wav = write_wav(tmp_path / "cut.wav", audio.samples[:cut], 16000)
    with open_audio(wav) as f:
        heard = np.concatenate(list(f.blocks()))
    np.testing.assert_array_equal(heard, quantised(audio.samples[:cut]))
    want = segments(stream.run(heard).events)
    assert len(want) == 2 and want[-1][1:] == (cut, "end_of_input")

    got = {"daemon": daemon_segments(daemon_messages(tmp_path, wav))}
    doc = json.loads(file_command(str(wav)))
    got["vadstream file"] = [(s["start_sample"], s["end_sample"], s["reason"]) for s in doc["segments"]]
    ends = [u for u in pipeline_updates(file_chunks(str(wav), realtime=False), Vad(model_path()), DetectorConfig())
            if isinstance(u, SpeechEnd)]
    got["monitor"] = [(e.start_sample, e.sample_index, e.reason.value) for e in ends]
    peer = VadstreamPeer(model_path())
    item = LabelledAudio("cut", heard, np.zeros(heard.size, bool), None)
    run = evaluate.run_vad(peer, [item], "clean", chunk_samples=320)[0]
    got["peer / evaluate"] = [(s.start, s.end) for s in run.detector_segments]
    got["evaluate (detector re-run)"] = [(s.start, s.end) for s in evaluate.detector_segments(run, DetectorConfig())]
    for caller, segs in got.items():
        expected = want if len(segs[0]) == 3 else [s[:2] for s in want]
        assert segs == expected, caller


# -- the README's example ------------------------------------------------------------------------
def test_the_readme_python_example_runs(audio, tmp_path, stream):
    text = README.read_text()
    section = text[text.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "example.py").write_text(code)
    first_end = audio.speech[0][1]
    cut = first_end - 4000
    wav = write_wav(tmp_path / "talk.wav", audio.samples[:cut], 16000)
    proc = subprocess.run([sys.executable, "example.py", str(wav)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    heard = quantised(audio.samples[:cut])
    stream.reset()
    fed = [e for i in range(0, heard.size, 320) for e in stream.process(heard[i:i + 320]).events]
    closed = stream.close().events
    want = [f"{e.TYPE} {e.sample_index / 16000}" for e in fed]
    want += [f"{e.TYPE} {e.sample_index / 16000} {e.reason.value}" for e in closed]
    assert proc.stdout.splitlines() == want
    assert want[-1].startswith("speech_end") and want[-1].endswith("end_of_input")
