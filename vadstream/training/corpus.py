"""Extra real audio from Debian packages, converted to 16 kHz mono FLAC for ``--extra-speech`` and
``--extra-noise``.

    python -m vadstream.training.corpus --out cache/corpus [--install]
    vadstream train --extra-speech cache/corpus/speech --extra-noise cache/corpus/nonspeech ...

Speech sources (read if installed; ``--install`` runs ``apt-get install`` for them, needs root):
- ``ktuberling-data``: single words spoken in about 25 languages (22/44 kHz Ogg), all of them;
- ``asterisk-core-sounds-{en,es,fr,it,ru}-wav``: studio telephone prompts (8 kHz WAV), at most
  ``--asterisk-per-language`` per voice (narrow-band speech stays a minority of the corpus);
- ``hedgewars-data``: 15 acted voice packs (English accents, es/pl/ru/uk), their spoken files;
- ``tuxpaint-stamps-default``: the stamps' spoken descriptions (``*_desc*``, 14 languages), at most
  ``--tuxpaint-per-language`` per language;
- ``fillets-ng-data-cs``, ``fillets-ng-data-nl`` (new in 5.0): the acted Czech and Dutch dialogue
  of Fish Fillets NG (about 200 min, two talkers taking turns), all of it;
- ``gcin-voice`` (new in 5.0): Mandarin syllables, at most ``--gcin`` of them.
Non-speech sources (hard negatives next to the corpus's own):
- ``asterisk-moh-opsound-wav``: five music-on-hold pieces (8 kHz WAV, 18 min);
- ``tuxpaint-stamps-default``: the stamps' sound effects (animals, household, vehicles, ...),
  without the ``*_desc*`` files and the ``symbols`` folder, which are spoken words;
- ``sound-theme-freedesktop``: desktop sound effects, without ``audio-channel-*`` (spoken);
- ``hedgewars-data``: non-speech human sounds of the voice packs (laughs, coughs, moans, "ooff"
  and "ow" grunts, a kiss): the hard negatives the rest of the corpus lacks (set ``human``);
- new in 5.0, also set ``human`` (acted, game-processed: variety, not the only source):
  ``nexuiz-data`` player sounds (pain, death, gasp, drown, jump and fall grunts, read from its
  ``data.pk3`` zip), ``megaglest-data`` death screams (``*_die*`` of the human units),
  ``warmux-data`` voices without words (death, injured, jump grunts).
Output: ``<out>/{speech,nonspeech}/<source>/<language or group>_<name>.flac`` (the folder name is
the set name in logs; validation files are carved out by file name like the rest of the data).
Licences: fillets-ng-data-cs/-nl GPL-2+; gcin-voice GPL-3 or LGPL-3 / CC-BY 3.0 (per its copyright
file); nexuiz-data GPL-2+; megaglest-data CC-BY-SA 3.0; warmux-data GPL-2+; ktuberling-data GPL-2+;
hedgewars-data GPL-2 / CC-BY(-SA) / public domain per file;
asterisk-core-sounds CC-BY-SA 3.0 (Digium prompts);
asterisk-moh-opsound CC-BY-SA 3.0; tuxpaint-stamps GPL-2; sound-theme-freedesktop GPL-2(+) /
CC-BY(-SA) 3.0 per file (all per Debian's copyright files). We commit no audio, only this recipe.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from vadstream.training.scenes import spread

PACKAGES = (["ktuberling-data"] + [f"asterisk-core-sounds-{lang}-wav" for lang in ("en", "es", "fr", "it", "ru")]
            + ["asterisk-moh-opsound-wav", "tuxpaint-stamps-default", "sound-theme-freedesktop", "hedgewars-data",
               "fillets-ng-data-cs", "fillets-ng-data-nl", "gcin-voice", "nexuiz-data", "megaglest-data",
               "warmux-data"])
KTUBERLING = Path("/usr/share/ktuberling/sounds")
ASTERISK = Path("/usr/share/asterisk/sounds")
ASTERISK_MOH = Path("/usr/share/asterisk/moh")
TUXPAINT_STAMPS = Path("/usr/share/tuxpaint/stamps")
FREEDESKTOP = Path("/usr/share/sounds/freedesktop/stereo")
HEDGEWARS_SOUNDS = Path("/usr/share/games/hedgewars/Data/Sounds")
FILLETS_SOUNDS = Path("/usr/share/games/fillets-ng/sound")
GCIN_VOICE = Path("/usr/share/gcin-voice/ogg")
NEXUIZ_PK3 = Path("/usr/share/games/nexuiz/data/data.pk3")
MEGAGLEST_SOUNDS = Path("/usr/share/games/megaglest/techs/megapack/commondata/sounds")
WARMUX_VOICES = Path("/usr/share/games/warmux/sound/default/voices")
# Human units of megaglest (the rest are animals, golems, machines) and warmux voice files without words.
MEGAGLEST_HUMANS = ("ab_", "archer_", "archmage_", "axe_thrower_", "guard_", "horseman_", "swordman_",
                    "technician_", "worker_")
WARMUX_NONVERBAL = ("death", "injured_", "jump", "backjump", "superjump")
NEXUIZ_NONVERBAL = ("death", "drown", "fall", "gasp", "jump", "pain")
# Voice-pack files that are human sounds, not words (hard negatives); prefixes of the file stems.
HEDGEWARS_HUMAN = ("Laugh", "Ooff", "Ow", "PoisonCough", "PoisonMoan")


def _is_human_sound(stem: str) -> bool:
    return stem.startswith(HEDGEWARS_HUMAN) and not stem.startswith("Owl")


def sources(asterisk_per_language: int, tuxpaint_per_language: int = 150,
            gcin: int = 300) -> list[tuple[str, str, Path]]:
    """(source, language, path) of every clip to convert; deterministic order and subset."""
    out: list[tuple[str, str, Path]] = []
    if KTUBERLING.is_dir():
        for lang_dir in sorted(p for p in KTUBERLING.iterdir() if p.is_dir()):
            out += [("ktuberling", lang_dir.name, p) for p in sorted(lang_dir.glob("*.ogg"))]
    if ASTERISK.is_dir():
        for voice in sorted(p for p in ASTERISK.iterdir() if p.is_dir()):
            files = spread(sorted(voice.glob("*.wav")), asterisk_per_language)
            out += [("asterisk", voice.name.split("_")[0], p) for p in files]
    voices = HEDGEWARS_SOUNDS / "voices"
    if voices.is_dir():
        for pack in sorted(p for p in voices.iterdir() if p.is_dir()):
            out += [("hedgewars", pack.name, p) for p in sorted(pack.glob("*.ogg")) if not _is_human_sound(p.stem)]
    if TUXPAINT_STAMPS.is_dir():
        by_lang: dict[str, list[Path]] = {}
        for p in sorted(TUXPAINT_STAMPS.rglob("*_desc*.ogg")):
            lang = p.stem.split("_desc", 1)[1].lstrip("_") or "en"
            by_lang.setdefault(lang, []).append(p)
        for lang, files in sorted(by_lang.items()):
            out += [("tuxpaint", lang, p) for p in spread(files, tuxpaint_per_language)]
    if FILLETS_SOUNDS.is_dir():
        for lang in ("cs", "nl"):
            out += [("fillets", lang, p) for p in sorted(FILLETS_SOUNDS.glob(f"*/{lang}/*.ogg"))
                    + sorted(FILLETS_SOUNDS.glob(f"share/*/{lang}/*.ogg"))]
    if GCIN_VOICE.is_dir():
        # one folder per syllable and tone, files named by speaker number: the folder goes in the name
        out += [("gcin", f"zh-{p.parent.name}", p) for p in spread(sorted(GCIN_VOICE.rglob("*.ogg")), gcin)]
    return out


def _nexuiz_player_sounds(extract_to: Path) -> list[Path]:
    """Nexuiz's non-verbal player sounds, extracted from its ``data.pk3`` (a zip) once."""
    import zipfile

    if not NEXUIZ_PK3.is_file():
        return []
    out = []
    with zipfile.ZipFile(NEXUIZ_PK3) as pk3:
        for member in sorted(pk3.namelist()):
            parts = member.split("/")
            if (len(parts) == 5 and parts[:2] == ["sound", "player"] and parts[3] == "player"
                    and parts[4].startswith(NEXUIZ_NONVERBAL) and member.endswith(".ogg")):
                dst = extract_to / f"{parts[2]}-{parts[4]}"
                if not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    dst.write_bytes(pk3.read(member))
                out.append(dst)
    return out


def nonspeech_sources(extract_to: Path) -> list[tuple[str, str, Path]]:
    """(source, group, path) of every non-speech clip; spoken files in these packages are left out.
    Clips inside archives are extracted under ``extract_to`` first."""
    out: list[tuple[str, str, Path]] = []
    if ASTERISK_MOH.is_dir():
        out += [("moh", "music", p) for p in sorted(ASTERISK_MOH.glob("*.wav"))]
    if TUXPAINT_STAMPS.is_dir():
        for p in sorted(TUXPAINT_STAMPS.rglob("*.ogg")):
            group = p.relative_to(TUXPAINT_STAMPS).parts[0]
            if "_desc" not in p.stem and group != "symbols":
                out.append(("tuxpaint", group, p))
    if FREEDESKTOP.is_dir():
        out += [("freedesktop", "effects", p) for p in sorted(FREEDESKTOP.glob("*.oga"))
                if not p.stem.startswith("audio-channel-")]
    voices = HEDGEWARS_SOUNDS / "voices"
    if voices.is_dir():
        for pack in sorted(p for p in voices.iterdir() if p.is_dir()):
            out += [("human", pack.name, p) for p in sorted(pack.glob("*.ogg")) if _is_human_sound(p.stem)]
    if HEDGEWARS_SOUNDS.is_dir():
        out += [("human", "hedgewars", p) for p in sorted(HEDGEWARS_SOUNDS.glob("Kiss.ogg"))]
    out += [("human", "nexuiz", p) for p in _nexuiz_player_sounds(extract_to / "nexuiz")]
    if MEGAGLEST_SOUNDS.is_dir():
        out += [("human", "megaglest", p) for p in sorted(MEGAGLEST_SOUNDS.glob("*_die*.wav"))
                if p.stem.startswith(MEGAGLEST_HUMANS)]
    if WARMUX_VOICES.is_dir():
        out += [("human", "warmux", p) for p in sorted(WARMUX_VOICES.glob("*.ogg"))
                if p.stem.startswith(WARMUX_NONVERBAL)]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vadstream.training.corpus", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("cache/corpus"))
    parser.add_argument("--asterisk-per-language", type=int, default=80)
    parser.add_argument("--tuxpaint-per-language", type=int, default=150)
    parser.add_argument("--gcin", type=int, default=300, help="Mandarin syllables of gcin-voice to take")
    parser.add_argument("--energy-labels", action="store_true",
                        help="skip speech clips too noisy to label by energy (only needed for --labels energy)")
    parser.add_argument("--install", action="store_true", help=f"apt-get install {' '.join(PACKAGES)} first")
    args = parser.parse_args(argv)
    if args.install:
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES], check=True)
    import soundfile as sf

    from vadstream.training.data import is_labelable, load_audio

    jobs = ([("speech", c) for c in sources(args.asterisk_per_language, args.tuxpaint_per_language, args.gcin)]
            + [("nonspeech", c) for c in nonspeech_sources(args.out / "extracted")])
    if not jobs:
        print(f"no package audio found (install: apt-get install {' '.join(PACKAGES)})", file=sys.stderr)
        return 1
    written = {"speech": 0, "nonspeech": 0}
    skipped = 0
    seconds = 0.0
    for kind, (source, group, path) in jobs:
        dst = args.out / kind / source / f"{group}_{path.stem}.flac"
        if dst.exists():
            written[kind] += 1
            continue
        audio = load_audio(path)
        # speech must be labelable by energy; non-speech only long enough to mix
        if audio.size < 1600 or (kind == "speech" and args.energy_labels and not is_labelable(audio)):
            skipped += 1
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(dst), audio, 16000, subtype="PCM_16")
        written[kind] += 1
        seconds += audio.size / 16000
    print(f"{written['speech']} speech and {written['nonspeech']} non-speech clips in {args.out} "
          f"({seconds / 60:.1f} min new), {skipped} skipped (too short, or speech too noisy to label)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
