"""``vadstream file --plot``: a PNG of the expected size with segments, probabilities and labels."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from daemon_util import write_wav

from vadstream.commands.formats import FileResult, Segment

pytest.importorskip("matplotlib", reason="plots need the 'plot' extra (matplotlib)")

from vadstream.commands import plot  # noqa: E402

RATE = 16000


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def colour_pixels(path: Path, hex_colour: str, tol: float = 0.03) -> int:
    """How many pixels have (about) this colour."""
    import matplotlib.image

    img = matplotlib.image.imread(str(path))[..., :3]
    rgb = np.array([int(hex_colour[i: i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(img - rgb).max(axis=2) < tol).sum())


def burst_signal(seconds: float = 6.0) -> np.ndarray:
    """Voiced-like bursts (120 Hz pulse train through a resonance) at 1-2.5 s and 3.5-5 s, noise floor."""
    t = np.arange(int(seconds * RATE)) / RATE
    pulses = (np.sin(2 * np.pi * 120 * t) > 0.95).astype(np.float64)
    voiced = np.convolve(pulses, np.exp(-np.arange(200) / 40.0) * np.sin(2 * np.pi * 700 * np.arange(200) / RATE),
                         mode="same")
    gate = ((t > 1.0) & (t < 2.5)) | ((t > 3.5) & (t < 5.0))
    x = 0.3 * voiced / np.abs(voiced).max() * gate + np.random.default_rng(1).normal(0, 0.002, t.size)
    return x.astype(np.float32)


def make_result(x: np.ndarray) -> FileResult:
    hop = 320
    n = -(-x.size // hop)
    t = np.arange(n) * hop / RATE
    probs = np.where(((t > 1.0) & (t < 2.5)) | ((t > 3.5) & (t < 5.0)), 0.9, 0.05).astype(np.float32)
    segments = [Segment(int(0.97 * RATE), int(2.53 * RATE)), Segment(int(3.47 * RATE), int(5.03 * RATE))]
    return FileResult("bursts.wav", segments, x.size, probs=probs, hop_samples=hop)


@pytest.mark.parametrize("features", ["spectrogram", "mfcc"])
def test_plot_size_and_content(tmp_path, features):
    x = burst_signal()
    out = plot.plot_result(tmp_path / "p.png", make_result(x), x, labels=[(1.0, 2.5), (3.5, 5.0)],
                           features=features)
    assert png_size(out) == (plot.WIDTH_PX, plot.HEIGHT_PX)
    # Solid bars on the timeline: detected (green) and reference (blue).
    assert colour_pixels(out, plot.SPEECH_COLOUR) > 2000
    assert colour_pixels(out, plot.REFERENCE_COLOUR) > 2000


def test_plot_without_labels_has_no_reference_row(tmp_path):
    x = burst_signal()
    out = plot.plot_result(tmp_path / "p.png", make_result(x), x, size_px=(800, 500))
    assert png_size(out) == (800, 500)
    assert colour_pixels(out, plot.REFERENCE_COLOUR) < 50


def test_plot_long_file_and_empty_file(tmp_path):
    x = np.tile(burst_signal(), 100)  # 10 minutes: envelope waveform, decimated spectrogram
    res = make_result(x)
    res.probs = np.resize(res.probs, -(-x.size // 320))
    out = plot.plot_result(tmp_path / "long.png", res, x)
    assert png_size(out) == (plot.WIDTH_PX, plot.HEIGHT_PX)
    empty = FileResult("empty.wav", [], 0, probs=np.zeros(0, np.float32))
    assert png_size(plot.plot_result(tmp_path / "empty.png", empty, np.zeros(0, np.float32))) == \
        (plot.WIDTH_PX, plot.HEIGHT_PX)


def test_file_command_plot_with_labels(tmp_path, shipped_model):
    wav = write_wav(tmp_path / "bursts.wav", burst_signal())
    labels = tmp_path / "ref.csv"
    labels.write_text("1.0,2.5\n3.5,5.0\n")
    png = tmp_path / "bursts.png"
    proc = subprocess.run([sys.executable, "-m", "vadstream", "file", str(wav), "--plot", str(png),
                           "--labels", str(labels), "--model", str(shipped_model)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert png_size(png) == (plot.WIDTH_PX, plot.HEIGHT_PX)
    assert colour_pixels(png, plot.REFERENCE_COLOUR) > 2000
    missing_dir = tmp_path / "no" / "p.png"
    proc = subprocess.run([sys.executable, "-m", "vadstream", "file", str(wav), "--plot", str(missing_dir),
                           "--model", str(shipped_model)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.splitlines()[0] == \
        f"vadstream file: {wav}: No such file or directory: {tmp_path / 'no' / 'p.png'}"
    # Several files: --plot is a directory of PNGs named after the inputs.
    wav2 = write_wav(tmp_path / "second.wav", burst_signal(3.0))
    proc = subprocess.run([sys.executable, "-m", "vadstream", "file", str(wav), str(wav2), "--plot",
                           str(tmp_path / "pngs"), "--model", str(shipped_model), "-o", str(tmp_path / "s.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == ["bursts.png", "second.png"]


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch, capsys, shipped_model):
    from vadstream.commands import cli

    wav = write_wav(tmp_path / "bursts.wav", burst_signal(1.0))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert cli.main(["file", str(wav), "--plot", str(tmp_path / "p.png"), "--model", str(shipped_model)]) == 2
    assert "plotting needs matplotlib: pip install 'vadstream[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()
