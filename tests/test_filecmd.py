"""``vadstream file``: the daemon's pipeline on files of any format, rate and channel count."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from vadstream.commands.formats import segments_from_events
from vadstream.stages.detector import Detector, DetectorConfig, EndReason
from vadstream.stages.vad import Vad

RATE = 16000
LEAD_S, GAP_S, TAIL_S = 1.0, 1.5, 1.0
SENTENCES = ("Hello there, this is a voice activity detector test.",
             "The quick brown fox jumps over the lazy dog.")

needs_espeak = pytest.mark.skipif(not shutil.which("espeak-ng") or not shutil.which("sox"),
                                  reason="needs espeak-ng and sox (script/setup-system test)")


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    x = np.clip(np.asarray(samples), -1.0, 32767 / 32768)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1 if x.ndim == 1 else x.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((x * 32768).astype("<i2").tobytes())
    return path


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768


def speak(text: str, tmp: Path, name: str) -> np.ndarray:
    """espeak-ng speech at 16 kHz mono (sox resamples espeak's 22.05 kHz)."""
    raw, out = tmp / f"{name}-raw.wav", tmp / f"{name}.wav"
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(out)], check=True)
    return read_wav(out)


def active_region(x: np.ndarray) -> tuple[float, float]:
    """First and last 10 ms frame louder than 2% of the peak RMS, in seconds."""
    frames = x[: x.size // 160 * 160].reshape(-1, 160)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    loud = np.flatnonzero(rms > 0.02 * rms.max())
    return loud[0] * 0.01, (loud[-1] + 1) * 0.01


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """Two espeak-ng sentences separated by silence, light noise; returns (path, speech regions)."""
    if not shutil.which("espeak-ng") or not shutil.which("sox"):
        pytest.skip("needs espeak-ng and sox (script/setup-system test)")
    tmp = tmp_path_factory.mktemp("clip")
    a, b = (speak(text, tmp, f"s{i}") for i, text in enumerate(SENTENCES))
    def silence(s: float) -> np.ndarray:
        return np.zeros(int(s * RATE), np.float32)

    x = np.concatenate([silence(LEAD_S), a, silence(GAP_S), b, silence(TAIL_S)]) * 0.6
    x = x + np.random.default_rng(5).normal(0.0, 0.002, x.size).astype(np.float32)
    ra, rb = active_region(a), active_region(b)
    b_at = LEAD_S + a.size / RATE + GAP_S
    regions = [(LEAD_S + ra[0], LEAD_S + ra[1]), (b_at + rb[0], b_at + rb[1])]
    return write_wav(tmp / "clip.wav", x), regions


@pytest.fixture(scope="module")
def model(shipped_model) -> str:
    return str(shipped_model)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vadstream", "file", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def direct_segments(path: Path, model: str) -> list[tuple[int, int, str]]:
    """Vad + Detector on the whole 16 kHz signal at once: the reference the command must equal."""
    vad = Vad(model)
    detector = Detector(vad.hop_samples, DetectorConfig())
    events = detector.process(vad(read_wav(path)))
    events += detector.flush(EndReason.END_OF_INPUT)
    return [(s.start_sample, s.end_sample, s.reason) for s in segments_from_events(events)]


def as_tuples(doc: dict) -> list[tuple[int, int, str]]:
    return [(s["start_sample"], s["end_sample"], s["reason"]) for s in doc["segments"]]


def speech_mask(segments, duration_s: float) -> np.ndarray:
    """10 ms frames covered by segments given as (start_s, end_s)."""
    mask = np.zeros(int(round(duration_s * 100)) + 1, bool)
    for start, end in segments:
        mask[int(round(start * 100)): int(round(end * 100))] = True
    return mask


def test_segments_equal_vad_and_detector_on_the_whole_signal(clip, model):
    path, _ = clip
    proc = run_cli(str(path), "--model", model)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["file"] == str(path)
    assert as_tuples(doc) == direct_segments(path, model)
    assert doc["duration_s"] == pytest.approx(read_wav(path).size / RATE)


def test_espeak_clip_segments_near_the_speech(clip, model):
    path, regions = clip
    doc = json.loads(run_cli(str(path), "--model", model).stdout)
    segs = [(s["start_s"], s["end_s"]) for s in doc["segments"]]
    assert segs, "no speech found"
    (a0, a1), (b0, b1) = regions
    # Every segment overlaps a sentence; the middle of the gap and the lead-in are silence.
    for start, end in segs:
        assert any(start < r1 and end > r0 for r0, r1 in regions), (start, end, regions)
    gap_mid = (a1 + b0) / 2
    assert not any(start < gap_mid + 0.3 and end > gap_mid - 0.3 for start, end in segs), segs
    assert segs[0][0] > 0.5
    # Boundaries near the sentence edges; most of the speech covered.
    assert abs(segs[0][0] - a0) < 0.25 and abs(segs[-1][1] - b1) < 0.35, (segs, regions)
    truth = speech_mask(regions, doc["duration_s"])
    found = speech_mask(segs, doc["duration_s"])
    assert (truth & found).sum() / truth.sum() > 0.75
    assert (found & ~truth).sum() / found.sum() < 0.25


def test_stereo_44k_gives_the_segments_of_the_16k_mono_version(clip, model, tmp_path):
    path, _ = clip
    stereo = tmp_path / "clip-44k-stereo.wav"
    subprocess.run(["sox", str(path), "-r", "44100", "-c", "2", "-b", "16", str(stereo)], check=True)
    flac = tmp_path / "clip-48k.flac"
    subprocess.run(["sox", str(path), "-r", "48000", str(flac)], check=True)
    proc = run_cli(str(path), str(stereo), str(flac), "--model", model)
    assert proc.returncode == 0, proc.stderr
    mono, *others = [json.loads(line) for line in proc.stdout.splitlines()]
    for other in others:
        assert other["duration_s"] == pytest.approx(mono["duration_s"], abs=1e-3)
        a = [(s["start_s"], s["end_s"]) for s in mono["segments"]]
        b = [(s["start_s"], s["end_s"]) for s in other["segments"]]
        assert abs(len(a) - len(b)) <= 1, (a, b)
        assert b[0][0] == pytest.approx(a[0][0], abs=0.045) and b[-1][1] == pytest.approx(a[-1][1], abs=0.045)
        ma, mb = speech_mask(a, mono["duration_s"]), speech_mask(b, mono["duration_s"])
        assert (ma == mb).mean() > 0.97, (a, b)


def test_resampled_file_probabilities_follow_the_16k_ones(clip, model, tmp_path):
    path, _ = clip
    stereo = tmp_path / "clip-22k-stereo.wav"
    subprocess.run(["sox", str(path), "-r", "22050", "-c", "2", "-b", "16", str(stereo)], check=True)
    proc = run_cli(str(path), str(stereo), "--probs", "-f", "csv", "--model", model)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split(",") for line in proc.stdout.splitlines()[1:]]
    p = {name: np.array([float(r[2]) for r in rows if r[0] == name]) for name in (str(path), str(stereo))}
    assert p[str(path)].size == p[str(stereo)].size == -(-read_wav(path).size // 320)
    assert np.mean(np.abs(p[str(path)] - p[str(stereo)])) < 0.03
    assert [float(r[1]) for r in rows[:3]] == [0.0, 0.02, 0.04]


def test_output_file_directory_and_formats(clip, model, tmp_path):
    path, _ = clip
    want = direct_segments(path, model)
    out = tmp_path / "segs.rttm"
    proc = run_cli(str(path), "-f", "rttm", "-o", str(out), "--model", model)
    assert proc.returncode == 0 and proc.stdout == "", proc.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == len(want)
    assert lines[0].split()[:4] == ["SPEAKER", "clip", "1", f"{want[0][0] / RATE:.3f}"]
    outdir = tmp_path / "labels"
    outdir.mkdir()
    proc = run_cli(str(path), "-f", "audacity", "-o", str(outdir), "--model", model)
    assert proc.returncode == 0, proc.stderr
    labels = (outdir / "clip.txt").read_text().splitlines()
    assert [tuple(line.split("\t")) for line in labels] == \
        [(f"{s / RATE:.6f}", f"{e / RATE:.6f}", "speech") for s, e, _ in want]


def test_end_of_file_closes_an_open_segment(clip, model, tmp_path):
    path, regions = clip
    x = read_wav(path)
    cut = write_wav(tmp_path / "cut.wav", x[: int((regions[1][0] + 1.0) * RATE)])  # ends mid-sentence
    doc = json.loads(run_cli(str(cut), "--model", model).stdout)
    last = doc["segments"][-1]
    assert last["reason"] == "end_of_input"
    assert doc["duration_s"] - 0.02 <= last["end_s"] <= doc["duration_s"]  # never past the end of the file


def test_bad_files_report_one_line_each_and_the_rest_go_on(clip, model, tmp_path):
    path, _ = clip
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(path.read_bytes()[:30])
    missing = tmp_path / "missing.wav"
    proc = run_cli(str(missing), str(path), str(text), str(truncated), str(tmp_path), "--model", model, "-f", "csv")
    assert proc.returncode == 1
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 5, proc.stderr  # four bad ones (the directory included) + summary
    assert errors[0] == f"vadstream file: {missing}: no such file"
    assert errors[1] == f"vadstream file: {text}: not a supported audio file (Format not recognised.)"
    assert errors[2] == (f"vadstream file: {truncated}: damaged WAV header: the 'fmt' chunk at byte 12 declares "
                         "16 bytes, only 10 follow")
    assert errors[3] == f"vadstream file: {tmp_path}: is a directory, not an audio file"
    assert errors[-1] == "vadstream file: 4 of 5 file(s) failed"
    rows = proc.stdout.splitlines()
    assert rows[0].startswith("file,") and all(r.startswith(f"{path},") for r in rows[1:]) and len(rows) > 1


def test_wav_works_without_soundfile_and_other_formats_say_what_to_install(clip, model, tmp_path,
                                                                          monkeypatch, capsys):
    from vadstream.commands import cli

    path, _ = clip
    flac = tmp_path / "clip.flac"
    subprocess.run(["sox", str(path), str(flac)], check=True)
    monkeypatch.setitem(sys.modules, "soundfile", None)  # import soundfile -> ImportError
    assert cli.main(["file", str(path), str(flac), "--model", model]) == 1
    out, err = capsys.readouterr()
    assert as_tuples(json.loads(out)) == direct_segments(path, model)
    assert err.splitlines()[0].startswith(f"vadstream file: {flac}: ")
    assert "install soundfile for other formats" in err.splitlines()[0]


def test_float_and_24_bit_wav(clip, model, tmp_path):
    path, _ = clip
    want = direct_segments(path, model)
    for bits, encoding in ((24, "signed-integer"), (32, "floating-point")):
        other = tmp_path / f"clip{bits}.wav"
        subprocess.run(["sox", str(path), "-b", str(bits), "-e", encoding, str(other)], check=True)
        doc = json.loads(run_cli(str(other), "--model", model).stdout)
        assert as_tuples(doc) == want, bits


def test_detector_flags_and_config_file_are_the_daemons(clip, model, tmp_path):
    path, _ = clip
    strict = tmp_path / "strict.toml"
    strict.write_text("[detector]\nonset_threshold = 0.99\noffset_threshold = 0.98\nmin_speech_ms = 5000\n")
    doc = json.loads(run_cli(str(path), "--model", model, "--config", str(strict)).stdout)
    assert doc["segments"] == []
    d = DetectorConfig()  # flags beat the file: back to the defaults the reference uses
    doc = json.loads(run_cli(str(path), "--model", model, "--config", str(strict),
                             "--min-speech-ms", str(d.min_speech_ms), "--onset", str(d.onset_threshold),
                             "--offset", str(d.offset_threshold)).stdout)
    assert as_tuples(doc) == direct_segments(path, model)
    proc = run_cli(str(path), "--model", model, "--onset", "1.5")
    assert proc.returncode == 2
    assert "detector.onset_threshold = 1.5 is out of range" in proc.stderr


def test_missing_model_is_one_clear_line(clip, tmp_path):
    path, _ = clip
    proc = run_cli(str(path), "--model", str(tmp_path / "nope.onnx"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"vadstream file: model file not found: {tmp_path / 'nope.onnx'}"


def test_usage_errors_exit_2_before_any_output(clip, model, tmp_path):
    path, _ = clip
    outdir = tmp_path / "out"
    outdir.mkdir()
    cases = [
        ((str(path), str(path), "-o", str(outdir)), "several inputs are named 'clip'"),
        ((str(path), str(path), "-f", "audacity"), "an Audacity label track holds one file"),
        ((str(path), "--probs", "-f", "rttm"), "--probs writes json or csv, not rttm"),
        ((str(path), str(path), "--labels", str(path)), "--labels describes one file"),
        ((str(path), "-o", str(tmp_path / "missing" / "x.json")), "No such file or directory"),
    ]
    for args, words in cases:
        proc = run_cli(*args, "--model", model)
        assert proc.returncode == 2 and proc.stdout == "", (args, proc.stderr)
        assert words in proc.stderr and len(proc.stderr.splitlines()) == 1, (args, proc.stderr)
    assert list(outdir.iterdir()) == []


def test_progress_bar_draws_and_clears_only_when_enabled(monkeypatch):
    import io

    from vadstream.commands import file as filecmd

    monkeypatch.setattr(filecmd, "PROGRESS_AFTER_S", 0.0)
    buf = io.StringIO()
    bar = filecmd.Progress(buf, n_files=4, enabled=True, width=10)
    bar.file(1, "b.wav")
    bar.update(0.5)  # within 0.1 s of the last draw: skipped
    assert buf.getvalue() == "\r\x1b[2K[##--------] 2/4  25% b.wav"
    bar.clear()
    assert buf.getvalue().endswith("\r\x1b[2K") and not bar._shown
    quiet = io.StringIO()
    off = filecmd.Progress(quiet, n_files=4)  # StringIO is not a terminal
    off.file(0, "a.wav")
    off.update(1.0)
    off.clear()
    assert quiet.getvalue() == ""
