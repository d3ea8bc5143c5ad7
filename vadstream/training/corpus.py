"""Extra real speech from Debian packages, converted to 16 kHz mono FLAC for ``--extra-speech``.

    python -m vadstream.training.corpus --out cache/corpus [--install]
    vadstream train --extra-speech cache/corpus/speech ...

Sources (read if installed; ``--install`` runs ``apt-get install`` for them, needs root):
- ``ktuberling-data``: single words spoken in about 25 languages (22/44 kHz Ogg), all of them;
- ``asterisk-core-sounds-{en,es,fr,it,ru}-wav``: studio telephone prompts (8 kHz WAV), at most
  ``--asterisk-per-language`` per voice (narrow-band speech stays a minority of the corpus).
Output: ``<out>/speech/<source>/<language>_<name>.flac`` (the folder name is the set name in
logs; validation files are carved out by file name like the rest of the training data).
Licences: ktuberling-data GPL-2+; asterisk-core-sounds CC-BY-SA 3.0 (Digium prompts). We commit
no audio, only this recipe.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

PACKAGES = ["ktuberling-data"] + [f"asterisk-core-sounds-{lang}-wav" for lang in ("en", "es", "fr", "it", "ru")]
KTUBERLING = Path("/usr/share/ktuberling/sounds")
ASTERISK = Path("/usr/share/asterisk/sounds")


def sources(asterisk_per_language: int) -> list[tuple[str, str, Path]]:
    """(source, language, path) of every clip to convert; deterministic order and subset."""
    out: list[tuple[str, str, Path]] = []
    if KTUBERLING.is_dir():
        for lang_dir in sorted(p for p in KTUBERLING.iterdir() if p.is_dir()):
            out += [("ktuberling", lang_dir.name, p) for p in sorted(lang_dir.glob("*.ogg"))]
    if ASTERISK.is_dir():
        for voice in sorted(p for p in ASTERISK.iterdir() if p.is_dir()):
            files = sorted(voice.glob("*.wav"))
            if len(files) > asterisk_per_language:
                idx = np.linspace(0, len(files) - 1, asterisk_per_language).round().astype(int)
                files = [files[i] for i in idx]
            out += [("asterisk", voice.name.split("_")[0], p) for p in files]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vadstream.training.corpus", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("cache/corpus"))
    parser.add_argument("--asterisk-per-language", type=int, default=80)
    parser.add_argument("--install", action="store_true", help=f"apt-get install {' '.join(PACKAGES)} first")
    args = parser.parse_args(argv)
    if args.install:
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES], check=True)
    import soundfile as sf

    from vadstream.training.data import is_labelable, load_audio

    clips = sources(args.asterisk_per_language)
    if not clips:
        print(f"no package audio found (install: apt-get install {' '.join(PACKAGES)})", file=sys.stderr)
        return 1
    written = skipped = 0
    seconds = 0.0
    for source, lang, path in clips:
        dst = args.out / "speech" / source / f"{lang}_{path.stem}.flac"
        if dst.exists():
            written += 1
            continue
        audio = load_audio(path)
        if audio.size < 1600 or not is_labelable(audio):
            skipped += 1
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(dst), audio, 16000, subtype="PCM_16")
        written += 1
        seconds += audio.size / 16000
    print(f"{written} clips in {args.out / 'speech'} ({seconds / 60:.1f} min new), {skipped} skipped "
          "(too short or too noisy to label)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
