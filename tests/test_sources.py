"""File and stdin sources: any rate/channels -> 16 kHz mono blocks, pacing, EOF, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import wave

import numpy as np
import pytest
from audio_gen import espeak_missing, make_test_audio, speech_regions, write_wav

from vadstream.audio.blocks import AudioBlock, SourceError, SourceSpec
from vadstream.audio.sources import open_source
from vadstream.audio.stdin import StdinSource

RATE = 16000


def read_all(src, timeout_s: float = 0.5, limit_s: float = 30.0) -> list[AudioBlock]:
    src.start()
    blocks = []
    t0 = time.monotonic()
    while not src.finished:
        assert time.monotonic() - t0 < limit_s, "source did not finish"
        b = src.read(timeout_s)
        if b is not None:
            blocks.append(b)
    return blocks


def join(blocks: list[AudioBlock]) -> np.ndarray:
    for a, b in zip(blocks, blocks[1:]):
        assert b.start_sample == a.end_sample, "blocks are not contiguous"
    assert not blocks or blocks[0].start_sample == 0
    for b in blocks:
        assert b.samples.dtype == np.float32 and b.samples.ndim == 1
    return np.concatenate([b.samples for b in blocks])


def two_tones(rate: int, seconds: float = 1.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 1000 * t)], axis=1)


def tone_amplitude(x: np.ndarray, freq: float) -> float:
    """Amplitude of the ``freq`` component of a 16 kHz signal (least squares fit)."""
    t = np.arange(x.size) / RATE
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, x.astype(np.float64), rcond=None)
    return float(np.hypot(*coef))


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_stereo_file_at_any_rate_downmixed_and_channel_picked(tmp_path, rate):
    path = write_wav(tmp_path / f"tones{rate}.wav", two_tones(rate), rate)
    for channel, want in ((None, {440: 0.2, 1000: 0.15}), (0, {440: 0.4, 1000: 0.0}),
                          (1, {440: 0.0, 1000: 0.3})):
        src = open_source(SourceSpec(input=str(path), realtime=False, channel=channel))
        blocks = read_all(src)
        x = join(blocks)
        assert x.size == -(-int(rate * 1.5) * RATE // rate)  # ceil(n * 16000 / rate)
        assert all(b.samples.size == 320 for b in blocks[:-1])  # 20 ms blocks
        mid = x[800:-800]
        for f, amp in want.items():
            assert abs(tone_amplitude(mid, f) - amp) < 0.002, (channel, f)
        status = src.poll_status()
        assert [s.kind for s in status] == ["opened"]
        assert status[0].details["rate_hz"] == rate and status[0].details["channels"] == 2
        stats = src.stats()
        assert stats["samples_delivered"] == x.size and stats["file_rate_hz"] == rate
        src.close()


@pytest.mark.skipif(espeak_missing() is not None, reason=str(espeak_missing()))
@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_speech_file_keeps_content_and_timing(tmp_path, rate):
    audio = make_test_audio(phrases=("hello there", "turn off the radio"), gap_s=1.0, noise_dbfs=None)
    path = audio.write_wav(tmp_path / "speech.wav", rate_hz=rate, channels=2)
    x = join(read_all(open_source(SourceSpec(input=str(path), realtime=False))))
    assert abs(x.size - audio.samples.size) <= 1
    n = min(x.size, audio.samples.size)
    err = x[:n] - audio.samples[:n]
    snr_db = 10 * np.log10(np.sum(audio.samples[:n] ** 2) / np.sum(err**2))
    print(f"{rate} Hz stereo file -> 16 kHz mono: SNR {snr_db:.1f} dB against the 16 kHz original")
    assert snr_db > (70 if rate == RATE else 33), snr_db  # 16-bit quantisation; 7.2-8 kHz band
    got = speech_regions(x)
    assert len(got) == len(audio.speech)
    for (a, b), (c, d) in zip(got, audio.speech):
        assert abs(a - c) <= 160 and abs(b - d) <= 160  # within one 10 ms frame


def test_pcm_widths_8_24_32_bit(tmp_path):
    x = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    for width, dtype, scale, offset in ((1, np.uint8, 127, 128), (3, None, 2**23 - 1, 0),
                                        (4, "<i4", 2**31 - 1, 0)):
        path = tmp_path / f"w{width}.wav"
        ints = np.round(x * scale).astype(np.int64) + offset
        if width == 3:
            data = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)
        else:
            data = ints.astype(dtype).tobytes()
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(width)
            w.setframerate(16000)
            w.writeframes(data)
        y = join(read_all(open_source(SourceSpec(input=str(path), realtime=False))))
        assert y.size == 16000
        assert np.max(np.abs(y - x)) < (0.01 if width == 1 else 1e-6), width


@pytest.mark.parametrize("fmt,subtype", [("WAV", "FLOAT"), ("WAV", "DOUBLE"), ("WAVEX", "FLOAT"),
                                         ("WAVEX", "PCM_24"), ("WAVEX", "PCM_16")])
def test_float_and_extensible_wav_without_soundfile(tmp_path, fmt, subtype):
    """Audacity's float WAVs and WAVE_FORMAT_EXTENSIBLE files are read by vadstream's own RIFF
    parser (the stdlib ``wave`` refuses them before Python 3.12); soundfile only writes them."""
    soundfile = pytest.importorskip("soundfile")
    t = np.arange(22050) / 22050
    x = np.stack([0.25 * np.sin(2 * np.pi * 500 * t), 0.25 * np.sin(2 * np.pi * 500 * t)], 1)
    path = tmp_path / f"{fmt}-{subtype}.wav"
    soundfile.write(str(path), x, 22050, format=fmt, subtype=subtype)
    from vadstream.audio import files

    reader = files._open_audio_file(str(path))
    assert isinstance(reader, files._WavReader), type(reader)
    reader.close()
    src = open_source(SourceSpec(input=str(path), realtime=False))
    y = join(read_all(src))
    assert y.size == 16000
    assert abs(tone_amplitude(y[800:-800], 500) - 0.25) < 0.001
    assert src.stats()["channels"] == 2


def test_flac_through_soundfile(tmp_path):
    soundfile = pytest.importorskip("soundfile")
    x = (0.25 * np.sin(2 * np.pi * 500 * np.arange(48000) / 48000)).astype(np.float32)
    path = tmp_path / "tone.flac"
    soundfile.write(str(path), x, 48000)
    src = open_source(SourceSpec(input=str(path), realtime=False))
    y = join(read_all(src))
    assert y.size == 16000 and "FLAC" in src.stats()["format"]
    assert abs(tone_amplitude(y[800:-800], 500) - 0.25) < 0.001


def test_realtime_pacing(tmp_path):
    path = write_wav(tmp_path / "one.wav", np.zeros(16000), 16000)
    src = open_source(SourceSpec(input=str(path), realtime=True))
    t0 = time.monotonic()
    blocks = read_all(src, timeout_s=0.05)
    elapsed = time.monotonic() - t0
    assert 0.95 <= elapsed < 1.4, elapsed
    assert sum(b.samples.size for b in blocks) == 16000
    # wall times follow the sample offsets
    w0 = blocks[0].wall_time_ns
    for b in blocks:
        assert b.wall_time_ns - w0 == b.start_sample * 1_000_000_000 // 16000
    # and read() respects its timeout while waiting for the next block
    src = open_source(SourceSpec(input=str(path), realtime=True, block_ms=500))
    src.start()
    t0 = time.monotonic()
    assert src.read(0.1) is None
    assert time.monotonic() - t0 < 0.3


def test_not_realtime_is_fast(tmp_path):
    path = write_wav(tmp_path / "ten.wav", np.zeros(160000), 16000)
    t0 = time.monotonic()
    blocks = read_all(open_source(SourceSpec(input=str(path), realtime=False)))
    assert time.monotonic() - t0 < 2.0
    assert sum(b.samples.size for b in blocks) == 160000


def test_bad_inputs_are_one_line_errors(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n")
    stereo = write_wav(tmp_path / "st.wav", np.zeros((100, 2)), 16000)
    cases = [
        (SourceSpec(input=str(tmp_path / "missing.wav")), "not found"),
        (SourceSpec(input=str(tmp_path)), "directory"),
        (SourceSpec(input=str(text)), "cannot read"),
        (SourceSpec(input=str(stereo), channel=2), "channel 2 does not exist"),
    ]
    for spec, words in cases:
        with pytest.raises(SourceError) as exc:
            open_source(spec)
        msg = str(exc.value)
        assert words in msg and "\n" not in msg, msg
    with pytest.raises(SourceError, match="block_ms"):
        SourceSpec(block_ms=0)
    with pytest.raises(SourceError, match="channel"):
        SourceSpec(channel=-1)


# -- stdin through a real pipe -------------------------------------------------------------------
READER = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from vadstream.audio.blocks import SourceSpec
    from vadstream.audio.sources import open_source
    src = open_source(SourceSpec(input="-"))
    src.start()
    blocks = []
    t0 = time.monotonic()
    while not src.finished and time.monotonic() - t0 < 20:
        b = src.read(0.5)
        if b is not None:
            blocks.append(b)
    x = np.concatenate([b.samples for b in blocks]) if blocks else np.zeros(0, np.float32)
    contiguous = all(b.start_sample == a.start_sample + a.samples.size for a, b in zip(blocks, blocks[1:]))
    np.save(sys.argv[1], x)
    print(json.dumps({"n": int(x.size), "blocks": len(blocks), "contiguous": contiguous,
                      "first": blocks[0].start_sample if blocks else None,
                      "finished": src.finished, "status": [[s.kind, s.message] for s in src.poll_status()],
                      "walls_increase": all(b.wall_time_ns >= a.wall_time_ns for a, b in zip(blocks, blocks[1:]))}))
""")


def run_stdin_reader(tmp_path, feeder_args: list[str] | None = None, data: bytes | None = None):
    out = tmp_path / "got.npy"
    reader = [sys.executable, "-c", READER, str(out)]
    if feeder_args is not None:
        feeder = subprocess.Popen(feeder_args, stdout=subprocess.PIPE)
        proc = subprocess.run(reader, stdin=feeder.stdout, capture_output=True, text=True, timeout=60)
        feeder.stdout.close()
        feeder.wait(timeout=10)
    else:
        proc = subprocess.run(reader, input=data, capture_output=True, timeout=60)
        proc = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(),
                                           proc.stderr.decode())
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), (np.load(out) if out.exists() else None)


def test_stdin_raw_s16le_through_a_pipe(tmp_path):
    rng = np.random.default_rng(3)
    pcm = rng.integers(-32768, 32767, size=24000, dtype=np.int16)
    raw = tmp_path / "in.raw"
    raw.write_bytes(pcm.astype("<i2").tobytes())
    # a paced writer in a separate process: 0.25 s of audio every 0.1 s
    feeder = [sys.executable, "-c",
              "import sys,time\nd=open(sys.argv[1],'rb').read()\n"
              "for i in range(0,len(d),8000):\n"
              " sys.stdout.buffer.write(d[i:i+8000]); sys.stdout.flush(); time.sleep(0.1)",
              str(raw)]
    info, x = run_stdin_reader(tmp_path, feeder)
    assert info["finished"] and info["contiguous"] and info["first"] == 0 and info["walls_increase"]
    assert info["n"] == 24000 and info["blocks"] >= 6
    np.testing.assert_array_equal(x, pcm.astype(np.float32) / 32768.0)
    assert [k for k, _ in info["status"]] == ["opened"]


def test_stdin_accepts_a_matching_wav_header_and_rejects_others(tmp_path):
    pcm = (np.arange(8000) % 200 - 100).astype(np.int16)
    good = write_wav(tmp_path / "good.wav", pcm / 32768.0, 16000)
    info, x = run_stdin_reader(tmp_path, data=good.read_bytes())
    assert info["n"] == 8000
    np.testing.assert_array_equal(x, pcm / np.float32(32768.0))
    bad = write_wav(tmp_path / "bad.wav", np.zeros((800, 2)), 44100)
    info, _ = run_stdin_reader(tmp_path, data=bad.read_bytes())
    assert info["n"] == 0 and info["finished"]
    errors = [m for k, m in info["status"] if k == "error"]
    assert len(errors) == 1 and "44100 Hz" in errors[0] and "s16le mono 16 kHz" in errors[0]


def test_stdin_odd_byte_and_empty_input(tmp_path):
    info, x = run_stdin_reader(tmp_path, data=b"\x01\x00\x02\x00\x03")
    assert info["n"] == 2 and info["finished"]
    np.testing.assert_array_equal(x, np.array([1, 2], np.float32) / 32768)
    info, _ = run_stdin_reader(tmp_path, data=b"")
    assert info["n"] == 0 and info["finished"]


def test_stdin_terminal_is_refused():
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "rb", buffering=0, closefd=False) as tty:
            with pytest.raises(SourceError, match="terminal"):
                StdinSource(SourceSpec(input="-"), stream=tty)
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("channels", [2, 3, 6])
def test_downmix_equals_numpy_mean_exactly(channels):
    from vadstream.audio.blocks import to_mono

    frames = np.random.default_rng(channels).standard_normal((320, channels)).astype(np.float32)
    got = to_mono(frames, None)
    assert got.dtype == np.float32 and got.shape == (320,)
    np.testing.assert_array_equal(got, frames.mean(axis=1, dtype=np.float32))
    np.testing.assert_array_equal(to_mono(frames, 1), frames[:, 1])
