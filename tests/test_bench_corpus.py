"""A tiny generated corpus in the shared-data layout, for bench/evaluate smoke tests (not real speech)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def vowel(seconds: float, f0: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    x = sum(0.1 / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) for k in range(1, 15))
    syllables = (np.sin(2 * np.pi * 3.0 * t) > -0.3).astype(float)  # on/off like syllables
    # a quiet room floor (-60 dBFS) between syllables: a clip energy labels can trust
    return (x * syllables + 0.001 * rng.standard_normal(t.size)).astype(np.float32)


def make_corpus(root: Path, seed: int = 0) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    for split in ("dev",):
        sp = root / split / "speech" / "gen"
        ns = root / split / "nonspeech" / "gen"
        sp.mkdir(parents=True)
        ns.mkdir(parents=True)
        for i in range(3):
            sf.write(sp / f"utt{i}.flac", vowel(1.5 + 0.5 * i, 120 + 40 * i, rng), 16000)
        for i in range(2):
            sf.write(ns / f"noise{i}.flac", (0.05 * rng.standard_normal(16000 * 4)).astype(np.float32), 16000)
    return root


def make_labelled_folder(folder: Path, seed: int = 1) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    x = np.concatenate([np.zeros(8000), vowel(1.0, 150, rng), np.zeros(8000)]).astype(np.float32)
    x += (0.003 * rng.standard_normal(x.size)).astype(np.float32)
    sf.write(folder / "a.wav", x, 16000)
    (folder / "a.scv").write_text("a,0.0,0.5,0,0.5,1.5,1,1.5,2.0,0\n")
    sf.write(folder / "b.wav", x, 16000)
    (folder / "b.txt").write_text("# start,end\n0.5,1.5\n")
    return folder
