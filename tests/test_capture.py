"""Live capture through sounddevice/PortAudio from a private PulseAudio server started by the test.

The server's null sink plays test WAVs with ``paplay``; its monitor is what PortAudio's ``pulse``
device (ALSA pulse plugin) captures. Covered: 16 kHz and 48 kHz device rates (the latter through
the resampler), channel pick/downmix, device choice errors, overflow counting and reporting,
device loss (server killed) and restore (server restarted).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from audio_gen import espeak_missing, make_test_audio, speech_regions, write_wav
from pulse import PulseServer, pulse_server, use_in_this_process  # noqa: F401

from vadstream.audio.blocks import AudioBlock, SourceError, SourceSpec
from vadstream.audio.capture import CaptureSource, find_input_device
from vadstream.audio.sources import open_source

pytestmark = pytest.mark.audio
RATE = 16000


def wait_flowing(src, limit_s: float = 8.0) -> list[AudioBlock]:
    """Start ``src`` and wait for its first block (PortAudio's first pulse stream takes ~1-2 s)."""
    src.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        b = src.read(0.1)
        if b is not None:
            return [b]
    pytest.fail(f"no audio from {src.name} within {limit_s} s: {src.stats()}")


def read_for(src, seconds: float, timeout_s: float = 0.1) -> list[AudioBlock]:
    """Every block ``src`` delivers in the next ``seconds``."""
    blocks = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        b = src.read(timeout_s)
        if b is not None:
            blocks.append(b)
    return blocks


def capture_while_playing(src, server: PulseServer, wav, after_s: float = 0.6) -> list[AudioBlock]:
    blocks = wait_flowing(src)
    player = server.play(wav)
    t_end = None
    while True:
        b = src.read(0.1)
        if b is not None:
            blocks.append(b)
        if t_end is None and player.poll() is not None:
            assert player.returncode == 0, player.stderr.read()
            t_end = time.monotonic() + after_s
        if t_end is not None and time.monotonic() > t_end:
            return blocks


def joined(blocks: list[AudioBlock]) -> np.ndarray:
    for a, b in zip(blocks, blocks[1:]):
        assert b.start_sample == a.end_sample
        assert b.wall_time_ns > a.wall_time_ns
    return np.concatenate([b.samples for b in blocks])


def tone_wav(path, rate: int, freq: float, seconds: float, amp: float, channels: int = 1):
    t = np.arange(int(rate * seconds)) / rate
    x = amp * np.sin(2 * np.pi * freq * t)
    return write_wav(path, np.repeat(x[:, None], channels, axis=1) if channels > 1 else x, rate)


def check_tone(x: np.ndarray, freq: float, amp: float, seconds: float) -> None:
    loud = np.flatnonzero(np.abs(x) > amp / 2)
    assert loud.size, "the tone never arrived"
    dur = (loud[-1] - loud[0]) / RATE
    assert abs(dur - seconds) < 0.05, dur
    mid = x[loud[0] + 1600: loud[-1] - 1600].astype(np.float64)
    spec = np.abs(np.fft.rfft(mid * np.hanning(mid.size)))
    assert abs(np.argmax(spec) * RATE / mid.size - freq) < 2.0
    assert abs(np.sqrt(2) * mid.std() - amp) < 0.01 * amp
    # nothing but the tone: the rest of the spectrum is > 50 dB down (no aliasing, no glitches)
    k = np.argmax(spec)
    rest = np.concatenate([spec[: k - 20], spec[k + 20:]])
    assert 20 * np.log10(rest.max() / spec[k]) < -50


@pytest.mark.parametrize("device_rate", [None, 48000])
def test_tone_through_pulseaudio(pulse_server, tmp_path, device_rate):  # noqa: F811
    wav = tone_wav(tmp_path / "tone.wav", 48000, 1000.0, 1.5, 0.5)
    src = open_source(SourceSpec(device="pulse", samplerate_hz=device_rate))
    assert isinstance(src, CaptureSource)
    try:
        x = joined(capture_while_playing(src, pulse_server, wav))
        check_tone(x, 1000.0, 0.5, 1.5)
        status = src.poll_status()
        assert status[0].kind == "opened"
        assert [s.kind for s in status] == ["opened"], status  # no overflow, no loss
        stats = src.stats()
        assert stats["device"] == "pulse" and stats["overflow_samples"] == 0
        assert stats["portaudio_overflows"] == 0
        assert stats["device_rate_hz"] == (device_rate or RATE)
        assert stats["resampling"] == (device_rate is not None)
        assert status[0].details["device_rate_hz"] == (device_rate or RATE)
    finally:
        src.close()


def test_wall_time_tracks_the_sample_clock(pulse_server):  # noqa: F811
    src = open_source(SourceSpec(device="pulse", samplerate_hz=48000))
    try:
        blocks = wait_flowing(src) + read_for(src, 2.0)
        joined(blocks)
        first, last = blocks[1], blocks[-1]
        audio_s = (last.start_sample - first.start_sample) / RATE
        wall_s = (last.wall_time_ns - first.wall_time_ns) / 1e9
        assert abs(audio_s - wall_s) < 0.05, (audio_s, wall_s)
        assert abs(last.wall_time_ns - time.time_ns()) / 1e9 < 0.5  # recent, not made up
    finally:
        src.close()


@pytest.mark.skipif(espeak_missing() is not None, reason=str(espeak_missing()))
@pytest.mark.parametrize("device_rate", [None, 48000])
def test_speech_regions_survive_capture(pulse_server, tmp_path, device_rate):  # noqa: F811
    audio = make_test_audio(phrases=("turn on the lights", "stop the music now"), gap_s=1.2,
                            lead_s=0.5, tail_s=0.5, noise_dbfs=None)
    wav = audio.write_wav(tmp_path / "speech.wav", rate_hz=48000)
    src = open_source(SourceSpec(device="pulse", samplerate_hz=device_rate))
    try:
        x = joined(capture_while_playing(src, pulse_server, wav))
    finally:
        src.close()
    got = speech_regions(x)
    assert len(got) == len(audio.speech)
    shift = got[0][0] - audio.speech[0][0]  # when playback started in the capture
    for (a, b), (c, d) in zip(got, audio.speech):
        assert abs(a - shift - c) <= 320 and abs(b - shift - d) <= 320  # 20 ms


def test_channel_pick_and_downmix(tmp_path, tmp_path_factory, monkeypatch):
    from pulse import pulse_missing

    if pulse_missing():
        pytest.skip(pulse_missing())
    server = PulseServer(tmp_path_factory.mktemp("pulse_stereo"), rate_hz=48000, channels=2).start()
    try:
        use_in_this_process(server, monkeypatch)
        t = np.arange(int(48000 * 1.2)) / 48000
        stereo = np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 1000 * t)], 1)
        wav = write_wav(tmp_path / "lr.wav", stereo, 48000)
        for channel, want in ((0, {440: 0.4, 1000: 0.0}), (1, {440: 0.0, 1000: 0.2}),
                              (None, {440: 0.2, 1000: 0.1})):
            src = open_source(SourceSpec(device="pulse", channel=channel))
            try:
                x = joined(capture_while_playing(src, server, wav))
            finally:
                src.close()
            loud = np.flatnonzero(np.abs(x) > 0.05)
            mid = x[loud[0] + 1600: loud[-1] - 1600].astype(np.float64)
            tt = np.arange(mid.size) / RATE
            for f, amp in want.items():
                basis = np.stack([np.sin(2 * np.pi * f * tt), np.cos(2 * np.pi * f * tt)], 1)
                got = np.hypot(*np.linalg.lstsq(basis, mid, rcond=None)[0])
                assert abs(got - amp) < 0.01, (channel, f, got)
    finally:
        server.stop()
        import sounddevice as sd

        sd._terminate()
        sd._initialize()


def test_device_choice(pulse_server):  # noqa: F811
    assert find_input_device("PULS")["name"] == "pulse"
    assert find_input_device("default")["name"] == "default"  # exact name wins
    idx = find_input_device("pulse")["index"]
    assert find_input_device(idx)["name"] == "pulse"
    assert find_input_device(str(idx))["name"] == "pulse"
    assert find_input_device(None)["max_input_channels"] > 0
    with pytest.raises(SourceError) as exc:
        find_input_device("no such microphone")
    assert "no input device name contains 'no such microphone'" in str(exc.value)
    assert "'pulse'" in str(exc.value)  # lists what there is
    with pytest.raises(SourceError, match="ambiguous.*'pulse'.*'default'|ambiguous.*'default'.*'pulse'"):
        find_input_device("e")  # in both 'pulse' and 'default'
    with pytest.raises(SourceError, match="no input device with index 999"):
        find_input_device(999)
    with pytest.raises(SourceError, match="channel 40 does not exist"):
        open_source(SourceSpec(device="pulse", channel=40))


def test_overflow_is_counted_reported_and_logged_once(pulse_server, caplog):  # noqa: F811
    """A consumer that stops reading: the ring fills, drops are counted, one status per burst."""
    src = open_source(SourceSpec(device="pulse", ring_s=0.2))
    try:
        wait_flowing(src)
        src.poll_status()
        caplog.set_level(logging.WARNING)
        time.sleep(1.2)  # not reading: ~1 s of audio cannot fit in 0.2 s of ring
        blocks = read_for(src, 0.5, 0.05)
        stats = src.stats()
        dropped_s = stats["overflow_samples"] / stats["device_rate_hz"]
        assert 0.7 < dropped_s < 1.3, stats
        assert stats["ring_overflow_events"] >= 10
        status = src.poll_status()
        overflow = [s for s in status if s.kind == "overflow"]
        assert len(overflow) == 1, status  # one report for the burst
        assert overflow[0].details["overflow_samples"] > 0
        assert sum("audio lost" in r.getMessage() for r in caplog.records) == 1
        # audio keeps flowing after the burst; blocks stay contiguous (drops do not advance it)
        joined(blocks)
        # a second burst after a quiet second is reported again
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:
            src.read(0.05)
        assert [s.kind for s in src.poll_status()] == []
        time.sleep(0.8)
        src.read(0.05)
        assert [s.kind for s in src.poll_status()] == ["overflow"]
    finally:
        src.close()


def test_device_lost_and_restored(pulse_server, tmp_path):  # noqa: F811
    """The server dies (device gone): 'lost'; it comes back on the same socket: 'restored'."""
    src = open_source(SourceSpec(device="pulse"))
    try:
        blocks = wait_flowing(src) + read_for(src, 0.5)
        assert [s.kind for s in src.poll_status()] == ["opened"]
        end_before = blocks[-1].end_sample
        pulse_server.kill()
        t_kill = time.monotonic()
        lost = None
        while time.monotonic() - t_kill < 8 and lost is None:
            b = src.read(0.1)
            if b is not None:
                blocks.append(b)
            lost = next((s for s in src.poll_status() if s.kind == "lost"), None)
        assert lost is not None, "device loss not detected"
        assert time.monotonic() - t_kill < 3.0
        time.sleep(1.0)
        pulse_server.start()
        t_back = time.monotonic()
        restored, after = None, []
        while time.monotonic() - t_back < 15 and not after:
            b = src.read(0.1)
            for s in src.poll_status():
                if s.kind == "restored":
                    restored = s
            if b is not None and restored is not None:
                after.append(b)
        assert restored is not None, f"not restored: {src.stats()}"
        assert after, "no audio after restore"
        resume = restored.details["resume_sample"]
        assert after[0].start_sample == resume
        gap_s = (resume - lost.details["sample_index"]) / RATE
        outage_s = time.monotonic() - t_kill
        assert 1.0 < gap_s < outage_s + 1.0, (gap_s, outage_s)
        assert lost.details["sample_index"] >= end_before
        assert src.stats()["device_losses"] == 1 and src.stats()["state"] == "open"
    finally:
        src.close()


def test_device_refusing_16k_opens_at_its_default_rate(pulse_server, tmp_path, monkeypatch):  # noqa: F811
    """A device that PortAudio will not open at 16 kHz (common for USB mics: 'Invalid sample
    rate') is opened at its default rate and resampled. The refusal is simulated by making
    PortAudio's check refuse 16 kHz; the stream itself is real."""
    import sounddevice as sd

    real_check = sd.check_input_settings

    def refuse_16k(*args, samplerate=None, **kwargs):
        if samplerate == 16000:
            raise sd.PortAudioError("Invalid sample rate [PaErrorCode -9997]")
        return real_check(*args, samplerate=samplerate, **kwargs)

    monkeypatch.setattr(sd, "check_input_settings", refuse_16k)
    default_rate = int(find_input_device("pulse")["default_samplerate"])
    assert default_rate != RATE
    wav = tone_wav(tmp_path / "tone.wav", 48000, 3000.0, 1.0, 0.3)
    src = open_source(SourceSpec(device="pulse"))
    try:
        x = joined(capture_while_playing(src, pulse_server, wav))
        check_tone(x, 3000.0, 0.3, 1.0)
        assert src.stats()["device_rate_hz"] == default_rate and src.stats()["resampling"]
        assert f"at {default_rate} Hz, resampled to 16 kHz" in src.poll_status()[0].message
    finally:
        src.close()


def test_devices_command_lists_the_pulse_inputs(pulse_server):  # noqa: F811
    import json
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "vadstream", "devices"], env=pulse_server.env(),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "default Hz" in lines[0] and "16k" in lines[0]
    assert any(" pulse " in line and line.rstrip().endswith("yes") for line in lines), run.stdout
    run = subprocess.run([sys.executable, "-m", "vadstream", "devices", "--json"], env=pulse_server.env(),
                         capture_output=True, text=True, timeout=60)
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    pulse = next(r for r in rows if r["name"] == "pulse")
    assert pulse["channels"] > 0 and pulse["opens_at_16k"] and pulse["default_rate_hz"] > 0
    assert sum(r["default"] for r in rows) == 1


def test_devices_command_without_any_input(tmp_path):
    """No sound server reachable (and no sound card): a clear message and exit status 1."""
    import os
    import subprocess
    import sys

    (tmp_path / "client.conf").write_text("autospawn = no\n")
    env = dict(os.environ, PULSE_SERVER=f"unix:{tmp_path}/none", PULSE_CLIENTCONFIG=str(tmp_path / "client.conf"))
    run = subprocess.run([sys.executable, "-m", "vadstream", "devices"], env=env,
                         capture_output=True, text=True, timeout=60)
    if run.returncode == 0:
        pytest.skip("this machine has sound cards PortAudio lists even without a configuration")
    assert run.returncode == 1
    assert "PortAudio found no audio input devices" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
