"""Training scenes: augmented speech/noise mixtures with labels from the clean speech, and their
MFCC features (computed with the runtime's own :func:`vadstream.stages.features.mfcc`) cached on disk.

A scene is ``scene_s`` seconds of one of:
- speech (65 %): utterances (optionally sped up/slowed down, each at its own level) separated by
  0.1-2.5 s pauses, optionally reverberated, mixed with 0-2 non-speech clips and/or coloured
  noise at -5..30 dB SNR (10 % without any noise);
- non-speech only (27 %): 1-2 non-speech clips, sometimes with coloured noise;
- near silence (8 %): digital zeros, dither, mic self-noise, hum or DC, parts of it muted.
Then the channel: random mic EQ, telephone band, hum/DC, level from -50 to 0 dBFS peak (some
driven into clipping), low-bit quantisation, muted stretches of digital silence.
Labels are per sample, from the teacher (FireRedVAD, :mod:`vadstream.training.teacher`) on the
clean clip or the recording as recorded, or from :func:`vadstream.training.data.speech_mask`
(``labels='energy'``); hop targets are the mean label of each 20 ms hop.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zlib
from pathlib import Path

import numpy as np

from vadstream.stages.features import FeatureConfig, mfcc
from vadstream.training import augment as aug
from vadstream.training.data import (
    SAMPLE_RATE_HZ,
    clip_set,
    fit_noise,
    is_labelable,
    list_audio,
    load_audio,
    mix_at_snr,
    speech_mask,
)

# Sets whose clips are real recordings with their own room and microphone around the speech
# (crowd-sourced home microphones, read speech): used as recorded, not only as dry sources.
RECORDED_SETS = ("picovoice-wakeword", "picovoice-intent", "precise", "librispeech", "grid", "coswara-counting")
TEACHER_CLOSE_MS = 300.0  # teacher label convention: dips shorter than this inside speech are speech
OPUS_SHARE = 0.3  # share of non-speech files given the Opus round trip the crowd-sourced speech has
EVENT_MAX_S = 3.0  # non-speech clips up to this long are also inserted as events into scenes
HUMAN_SETS = ("human", "coswara")  # non-speech human sounds (laughs, coughs, breath): events, weighted up
EVENT_ONLY_SETS = ("human",)  # short acted clips: events only; the rest are also whole non-speech tracks
# Non-speech recorded at home by people (Coswara breath and coughs): a file in which the teacher
# hears one stretch of speech longer than this (someone talking) is left out. Not a share of the
# frames: the teacher calls a tenth of most cough files speech (its own weakness; coughs are what
# the student must learn to reject), but single coughs and bursts of them are short.
SCREENED_SETS = ("coswara",)
SCREEN_MAX_SPEECH_S = 1.5


@dataclasses.dataclass(frozen=True)
class SceneRecipe:
    """What goes into the training scenes (part of the feature cache key)."""

    nonspeech_share: float = 0.27
    recorded_share: float = 0.35  # scenes that are real recordings as recorded (+ noise/channel)
    transient_rate: float = 0.6  # chance that a scene gets transient events (clicks, breath, human sounds)
    distant_talkers: float = 0.4  # chance of far, quiet background talkers (labelled non-speech)
    min_speech_peak_dbfs: float = -45.0  # speech scenes are normalised to a peak in [this, 0] dBFS
    labels: str = "teacher"  # 'teacher' (FireRedVAD soft labels) or 'energy' (speech_mask)
    conversation_share: float = 0.0  # scenes with turn-taking talkers (model 4.0: 0.25)
    silero: bool = False  # also store Silero VAD's probabilities per hop (second teacher, model 5.0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Corpus:
    """Audio held in memory for scene generation, with per-clip speech labels."""

    speech: list[np.ndarray]
    noise: list[np.ndarray]
    speech_names: list[str]
    noise_names: list[str]
    # Per speech clip: teacher probabilities per 10 ms frame (float16), or None (energy labels).
    speech_frames: list[np.ndarray | None] = dataclasses.field(default_factory=list)
    events: list[np.ndarray] = dataclasses.field(default_factory=list)  # short non-speech clips
    human: list[np.ndarray] = dataclasses.field(default_factory=list)  # non-speech human sounds

    _speech_p: np.ndarray | None = None
    _recorded: np.ndarray | None = None

    def speech_probabilities(self) -> np.ndarray:
        """Sampling probability of each speech clip: a set's share grows with the square root of
        its minutes, clips within a set are equally likely (many one-word clips of one set do not
        crowd out the long read-speech utterances of another)."""
        if self._speech_p is None or self._speech_p.size != len(self.speech):
            sets = [n.split("/")[0] for n in self.speech_names]
            minutes: dict[str, float] = {}
            counts: dict[str, int] = {}
            for name, clip in zip(sets, self.speech):
                minutes[name] = minutes.get(name, 0.0) + clip.size / SAMPLE_RATE_HZ / 60
                counts[name] = counts.get(name, 0) + 1
            w = np.array([np.sqrt(minutes[name]) / counts[name] for name in sets])
            self._speech_p = w / w.sum()
        return self._speech_p

    def recorded(self) -> np.ndarray:
        """Indices of the speech clips that are real recordings with their own background."""
        if self._recorded is None:
            self._recorded = np.array([i for i, n in enumerate(self.speech_names)
                                       if n.split("/")[0] in RECORDED_SETS], dtype=np.int64)
        return self._recorded

    def labels(self, i: int) -> np.ndarray:
        """Per-sample speech labels (float32 in [0, 1]) of speech clip ``i``."""
        from vadstream.training.teacher import frames_to_samples

        frames = self.speech_frames[i] if self.speech_frames else None
        x = self.speech[i]
        if frames is None:
            return speech_mask(x).astype(np.float32)
        return frames_to_samples(frames.astype(np.float32), x.size)

    @property
    def minutes(self) -> tuple[float, float]:
        return (sum(x.size for x in self.speech) / SAMPLE_RATE_HZ / 60,
                sum(x.size for x in self.noise) / SAMPLE_RATE_HZ / 60)


def close_dips(frames: np.ndarray, close_ms: float = TEACHER_CLOSE_MS, step_ms: float = 10.0) -> np.ndarray:
    """Grey-scale closing of frame probabilities: dips shorter than ``close_ms`` between higher
    values are lifted (human labels run through short intra-phrase pauses)."""
    return grey_close(np.asarray(frames, dtype=np.float32), int(round(close_ms / step_ms)) + 1)


def grey_close(values: np.ndarray, width: int, axis: int = -1) -> np.ndarray:
    """Grey-scale closing (max filter, then min filter) of ``width`` samples along ``axis``: dips
    narrower than ``width`` between higher values are lifted to them."""
    from scipy.ndimage import maximum_filter1d, minimum_filter1d

    if values.size == 0:
        return values
    return minimum_filter1d(maximum_filter1d(values, width, axis=axis, mode="nearest"), width, axis=axis,
                            mode="nearest")


def is_validation(path: Path, fraction: float = 0.1) -> bool:
    """Stable per-file train/validation assignment (CRC32 of the file name)."""
    return (zlib.crc32(path.name.encode()) % 1000) < fraction * 1000


def corpus_paths(data_root: str | os.PathLike[str] | None, extra_speech: list[str], extra_noise: list[str],
                 part: str, val_fraction: float = 0.1, max_files: int | None = None) -> tuple[list[Path], list[Path]]:
    """Speech and non-speech files of the ``train`` split (+ extra folders), ``part`` 'train' or 'val'.

    Validation files are carved out of the training split by file (never ``dev``)."""
    speech: list[Path] = []
    noise: list[Path] = []
    if data_root:
        speech += list_audio(Path(data_root) / "train" / "speech")
        noise += list_audio(Path(data_root) / "train" / "nonspeech")
    for folder in extra_speech:
        speech += list_audio(folder)
    for folder in extra_noise:
        noise += list_audio(folder)
    want_val = part == "val"
    speech = [p for p in speech if is_validation(p, val_fraction) == want_val]
    noise = [p for p in noise if is_validation(p, val_fraction) == want_val]
    if max_files is not None:
        speech = spread(speech, max_files)
        noise = spread(noise, max_files)
    return speech, noise


def spread(paths: list[Path], n: int) -> list[Path]:
    """At most ``n`` files, taken evenly across the sorted list (so every set is represented)."""
    if len(paths) <= n:
        return paths
    idx = np.linspace(0, len(paths) - 1, n).round().astype(int)
    return [paths[i] for i in idx]


def load_corpus(speech_paths: list[Path], noise_paths: list[Path], labels: str = "teacher",
                cache_dir: Path | None = None, log=print) -> Corpus:
    """Load audio and labels.

    ``labels='teacher'``: every speech clip gets FireRedVAD frame probabilities (cached under
    ``cache_dir/teacher``), closed over dips < ``TEACHER_CLOSE_MS``. ``labels='energy'``: speech
    clips too noisy to label by energy (:func:`is_labelable`) are skipped. A fixed ``OPUS_SHARE`` of
    the non-speech files (CRC32 of the name) gets the Opus round trip (cached under
    ``cache_dir/opus``): the crowd-sourced speech is Opus-coded, so the codec must not mean speech."""
    from vadstream.training.augment import opus_round_trip

    cache_dir = Path(cache_dir) if cache_dir is not None else Path("cache")
    speech, names, frames = [], [], []
    teacher = None
    if labels == "teacher":
        from vadstream.training.teacher import TeacherCache

        teacher = TeacherCache(cache_dir / "teacher")
    elif labels != "energy":
        raise ValueError(f"labels must be 'teacher' or 'energy', got {labels!r}")
    for k, p in enumerate(speech_paths):
        x = load_audio(p)
        if teacher is None:
            if not is_labelable(x):
                continue
            frames.append(None)
        else:
            frames.append(close_dips(teacher.frame_probs(p, x)).astype(np.float16))
        speech.append(x)
        names.append(f"{clip_set(p)}/{p.name}")
        if (k + 1) % 1000 == 0:
            log(f"  speech labels: {k + 1}/{len(speech_paths)} files")
    noise, noise_names, events, human = [], [], [], []
    screened = 0
    for p in noise_paths:
        x = load_audio(p)
        name = f"{clip_set(p)}/{p.name}"
        if teacher is not None and clip_set(p) in SCREENED_SETS:
            if longest_run(teacher.frame_probs(p, x) >= 0.5) * 0.01 > SCREEN_MAX_SPEECH_S:
                screened += 1
                continue
        if clip_set(p) in HUMAN_SETS:
            human.append(x)
            if clip_set(p) in EVENT_ONLY_SETS:
                continue
        if (zlib.crc32(p.name.encode()) % 1000) < OPUS_SHARE * 1000:
            cached = cache_dir / "opus" / clip_set(p) / (p.stem + ".npy")
            if cached.exists():
                x = np.load(cached)
            else:
                x = opus_round_trip(x)
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.save(cached, x)
        noise.append(x)
        noise_names.append(name)
        if x.size <= EVENT_MAX_S * SAMPLE_RATE_HZ:
            events.append(x)
    if screened:
        log(f"  left out {screened} non-speech file(s) of {', '.join(SCREENED_SETS)} in which the teacher hears "
            f"speech for more than {SCREEN_MAX_SPEECH_S:g} s at a stretch")
    return Corpus(speech=speech, noise=noise, speech_names=names, noise_names=noise_names,
                  speech_frames=frames, events=events, human=human)


def longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of True in a 1-D boolean array."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return int((edges[1::2] - edges[::2]).max()) if edges.size else 0


def _db_to_amp(db: float) -> float:
    return 10.0 ** (db / 20.0)


def _noise_track(rng: np.random.Generator, corpus: Corpus, n: int, min_clips: int) -> np.ndarray:
    """Sum of 0-2 non-speech clips (random excerpts/loops, random relative levels) and maybe coloured noise."""
    track = np.zeros(n, dtype=np.float32)
    n_clips = (int(rng.choice([0, 1, 2], p=[0.1, 0.65, 0.25])) if min_clips == 0
               else int(rng.choice([1, 2], p=[0.7, 0.3])))
    for _ in range(n_clips if corpus.noise else 0):
        clip = corpus.noise[int(rng.integers(len(corpus.noise)))]
        part = fit_noise(clip, n, rng).astype(np.float64)
        rms = math.sqrt(float(np.mean(part ** 2))) or 1.0
        part *= _db_to_amp(rng.uniform(-10, 0)) / rms
        if rng.random() < 0.2:  # the noise source starts or stops during the scene
            cut = int(rng.integers(n))
            if rng.random() < 0.5:
                part[:cut] = 0
            else:
                part[cut:] = 0
        track += part.astype(np.float32)
    if not np.any(track) or rng.random() < 0.2:
        track += aug.coloured_noise(rng, n, rng.choice([0.0, 1.0, 2.0])) * np.float32(_db_to_amp(rng.uniform(-15, 0)))
    return track


def _pick_clip(rng: np.random.Generator, corpus: Corpus, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Speech clip ``i`` (or a 1-4 s excerpt of a long one), maybe sped up/slowed down, and its labels."""
    clip = corpus.speech[i]
    labels = corpus.labels(i)
    if clip.size > 4 * SAMPLE_RATE_HZ and rng.random() < 0.5:  # a random excerpt of a long utterance
        length = int(rng.uniform(1.0, 4.0) * SAMPLE_RATE_HZ)
        start = int(rng.integers(0, clip.size - length))
        clip, labels = clip[start:start + length], labels[start:start + length]
    if rng.random() < 0.4:
        clip = aug.change_speed(clip, float(rng.uniform(0.85, 1.2)))
        labels = np.interp(np.linspace(0, labels.size - 1, clip.size), np.arange(labels.size),
                           labels).astype(np.float32)
    return clip, labels


def _random_clip(rng: np.random.Generator, corpus: Corpus) -> tuple[np.ndarray, np.ndarray]:
    """A speech clip drawn by :meth:`Corpus.speech_probabilities`, through :func:`_pick_clip`."""
    return _pick_clip(rng, corpus, int(rng.choice(len(corpus.speech), p=corpus.speech_probabilities())))


def _random_recording(rng: np.random.Generator, corpus: Corpus) -> int:
    """Index of a speech clip that is a real recording as recorded, uniformly drawn."""
    idx = corpus.recorded()
    return int(idx[int(rng.integers(idx.size))])


def _speech_track(rng: np.random.Generator, corpus: Corpus, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Dry utterances dropped into digital silence with 0.1-2.5 s pauses."""
    audio = np.zeros(n, dtype=np.float32)
    labels = np.zeros(n, dtype=np.float32)
    pos = int(rng.uniform(0.0, 1.5) * SAMPLE_RATE_HZ)
    while pos < n:
        clip, mask = _random_clip(rng, corpus)
        clip = clip * np.float32(_db_to_amp(rng.uniform(-8, 4)))
        m = min(clip.size, n - pos)
        audio[pos:pos + m] = clip[:m]
        labels[pos:pos + m] = mask[:m]
        pos += m + int(rng.uniform(0.1, 2.5) * SAMPLE_RATE_HZ)
    return audio, labels


def _recorded_track(rng: np.random.Generator, corpus: Corpus, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Real recordings as recorded, back to back (each with its own room, microphone, pauses and
    background), starting at a random point of the first: what a live microphone hears."""
    audio = np.zeros(n, dtype=np.float32)
    labels = np.zeros(n, dtype=np.float32)
    pos = 0
    first = True
    while pos < n:
        i = _random_recording(rng, corpus)
        clip, mask = corpus.speech[i], corpus.labels(i)
        if first and clip.size > SAMPLE_RATE_HZ:
            start = int(rng.integers(0, clip.size // 2))
            clip, mask = clip[start:], mask[start:]
        first = False
        gain = np.float32(_db_to_amp(rng.uniform(-6, 6)))
        m = min(clip.size, n - pos)
        audio[pos:pos + m] = clip[:m] * gain
        labels[pos:pos + m] = mask[:m]
        pos += m
    return audio, labels


def _turn(rng: np.random.Generator, corpus: Corpus, recorded: bool, max_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """One talker's turn: 1-4 utterances with 0.1-1.0 s pauses inside (real recordings keep their
    own room silence around the words, so their pauses come out longer)."""
    parts, masks = [], []
    for j in range(int(rng.integers(1, 5))):
        if j:
            gap = int(rng.uniform(0.1, 1.0) * SAMPLE_RATE_HZ)
            parts.append(np.zeros(gap, dtype=np.float32))
            masks.append(np.zeros(gap, dtype=np.float32))
        if recorded and corpus.recorded().size:
            i = _random_recording(rng, corpus)
            clip, mask = corpus.speech[i], corpus.labels(i)
        else:
            clip, mask = _random_clip(rng, corpus)
        parts.append(np.asarray(clip, dtype=np.float32))
        masks.append(np.asarray(mask, dtype=np.float32))
        if sum(x.size for x in parts) >= max_samples:
            break
    return np.concatenate(parts)[:max_samples], np.concatenate(masks)[:max_samples]


def _conversation_track(rng: np.random.Generator, corpus: Corpus, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Several talkers taking turns, as a meeting or living-room microphone hears them.

    2-4 talkers, each with their own level (-10..+4 dB) and place in the room (60 % reverberated,
    RT60 0.2-0.9 s) and a source kind (real recordings as recorded or dry utterances). Turns of
    1-4 utterances with 0.1-1.0 s pauses inside; between turns 15 % overlaps (0.1-0.8 s), 50 %
    short gaps (0.1-1 s), 25 % longer ones (1-4 s) and 10 % silences of 4-12 s; 20 % of turns
    get a backchannel (a 0.2-0.7 s excerpt from another talker) on top. Labels: the union of the
    talkers' teacher labels (pauses inside a turn stay non-speech unless the teacher bridged
    them: the teacher convention; training can bridge them with ``--bridge-ms``)."""
    audio = np.zeros(n, dtype=np.float32)
    labels = np.zeros(n, dtype=np.float32)
    talkers = []
    for _ in range(int(rng.integers(2, 5))):
        rir = (aug.synthetic_rir(rng, rt60_s=float(rng.uniform(0.2, 0.9)),
                                 direct_to_reverb_db=float(rng.uniform(-3, 12)))
               if rng.random() < 0.6 else None)
        talkers.append((np.float32(_db_to_amp(rng.uniform(-10, 4))), rir, bool(rng.random() < 0.5)))

    def place(x: np.ndarray, mask: np.ndarray, talker: int, pos: int) -> int:
        gain, rir, _ = talkers[talker]
        if rir is not None:
            x = aug.reverberate(x, rir)[: x.size]
        m = min(x.size, n - pos)
        if m <= 0:
            return 0
        audio[pos:pos + m] += x[:m] * gain
        np.maximum(labels[pos:pos + m], mask[:m], out=labels[pos:pos + m])
        return m

    pos = int(rng.uniform(0.0, 2.0) * SAMPLE_RATE_HZ)
    who = int(rng.integers(len(talkers)))
    while pos < n:
        x, mask = _turn(rng, corpus, talkers[who][2], n - pos)
        length = place(x, mask, who, pos)
        if rng.random() < 0.2 and length > SAMPLE_RATE_HZ:  # a backchannel from someone else
            other = (who + int(rng.integers(1, len(talkers)))) % len(talkers)
            clip, cmask = _random_clip(rng, corpus)
            keep = int(rng.uniform(0.2, 0.7) * SAMPLE_RATE_HZ)
            speech_at = np.flatnonzero(cmask >= 0.5)
            s0 = int(speech_at[0]) if speech_at.size else 0
            place(clip[s0:s0 + keep], cmask[s0:s0 + keep], other, pos + int(rng.integers(0, length - keep)))
        r = rng.random()
        gap = (-rng.uniform(0.1, 0.8) if r < 0.15 else rng.uniform(0.1, 1.0) if r < 0.65
               else rng.uniform(1.0, 4.0) if r < 0.9 else rng.uniform(4.0, 12.0))
        pos += max(int(0.2 * SAMPLE_RATE_HZ), length + int(gap * SAMPLE_RATE_HZ))
        if rng.random() < 0.85:
            who = (who + int(rng.integers(1, len(talkers)))) % len(talkers)
    return audio, labels


def _distant_talkers(rng: np.random.Generator, corpus: Corpus, n: int, ref_power: float,
                     below_db: tuple[float, float]) -> np.ndarray:
    """1-3 other talkers far from the microphone (strong synthetic reverb, sometimes muffled) at
    ``below_db`` dB under ``ref_power``: what a meeting-room or living-room microphone hears from
    people not talking to it. Their labels stay non-speech (the human-label and teacher convention:
    AMI's turn labels and FireRedVAD both leave faint background voices out)."""
    track = np.zeros(n, dtype=np.float32)
    for _ in range(int(rng.integers(1, 4))):
        voice, _ = _speech_track(rng, corpus, n)
        rir = aug.synthetic_rir(rng, rt60_s=float(rng.uniform(0.3, 1.0)), direct_to_reverb_db=float(rng.uniform(-8, 3)))
        voice = aug.reverberate(voice, rir)
        if rng.random() < 0.4:
            voice = aug.band_limit(voice, None, float(rng.uniform(1500, 4000)), order=2)
        track += voice.astype(np.float32)
    p = float(np.mean(track.astype(np.float64) ** 2))
    if p <= 0 or ref_power <= 0:
        return track * 0
    return (track * np.float32(math.sqrt(ref_power / p) * _db_to_amp(-rng.uniform(*below_db)))).astype(np.float32)


def _add_events(rng: np.random.Generator, corpus: Corpus, audio: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Insert 1-6 transient non-speech events (synthetic clicks/breath, non-speech human sounds,
    short effects) at random places, -30..+6 dB around the scene's level; labels stay as they are
    (over speech the event is background, in pauses it must not count as speech)."""
    n = audio.size
    ref = math.sqrt(float(np.mean(audio.astype(np.float64) ** 2))) or 10 ** (-40 / 20)
    out = audio.astype(np.float32, copy=True)
    for _ in range(int(rng.integers(1, 7))):
        r = rng.random()
        if r < 0.35 and corpus.human:
            ev = corpus.human[int(rng.integers(len(corpus.human)))]
        elif r < 0.5 and corpus.events:
            ev = corpus.events[int(rng.integers(len(corpus.events)))]
        else:
            ev = aug.transient(rng)
        ev = np.asarray(ev, dtype=np.float32)[: n]
        if rng.random() < 0.3:
            rir = aug.synthetic_rir(rng, rt60_s=float(rng.uniform(0.15, 0.8)),
                                    direct_to_reverb_db=float(rng.uniform(-3, 15)))
            ev = aug.reverberate(ev, rir)[: n]
        ev_rms = math.sqrt(float(np.mean(ev.astype(np.float64) ** 2))) or 1.0
        ev = ev * np.float32(ref * _db_to_amp(rng.uniform(-30, 6)) / ev_rms)
        pos = int(rng.integers(0, max(1, n - ev.size)))
        out[pos:pos + ev.size] += ev[: n - pos]
    return out


DEFAULT_NONSPEECH_SHARE = SceneRecipe.nonspeech_share
SILENCE_SHARE = 0.08


def make_scene(rng: np.random.Generator, corpus: Corpus, scene_s: float = 8.0,
               recipe: SceneRecipe = SceneRecipe()) -> tuple[np.ndarray, np.ndarray]:
    """One augmented scene: (float32 audio, float32 per-sample speech labels in [0, 1]).

    Kinds: ``recipe.nonspeech_share`` non-speech only, 8 % near silence, ``recipe.recorded_share``
    real recordings as recorded (maybe with added noise), the rest dry utterances in a synthetic
    room with noise."""
    n = int(scene_s * SAMPLE_RATE_HZ)
    recorded_share = recipe.recorded_share if corpus.speech and corpus.recorded().size else 0.0
    talk_share = recipe.conversation_share if corpus.speech else 0.0
    speech_share = max(0.0, 1.0 - recipe.nonspeech_share - SILENCE_SHARE - recorded_share - talk_share)
    shares = np.array([speech_share, recorded_share, talk_share, recipe.nonspeech_share, SILENCE_SHARE])
    kind = rng.choice(["speech", "recorded", "conversation", "nonspeech", "silence"], p=shares / shares.sum())
    labels = np.zeros(n, dtype=np.float32)
    if kind == "conversation":
        audio, labels = _conversation_track(rng, corpus, n)
        if rng.random() < 0.6:  # the room's background
            noise = _noise_track(rng, corpus, n, min_clips=0)
            audio = mix_at_snr(audio, labels >= 0.5, noise, float(rng.uniform(0, 30)))
        kind = "speech"  # from here on treated as a speech scene (distant talkers, channel, level)
    elif kind == "recorded":
        audio, labels = _recorded_track(rng, corpus, n)
        if rng.random() < 0.3:  # the same talker further away (far-field meeting/living-room microphone)
            rir = aug.synthetic_rir(rng, rt60_s=float(rng.uniform(0.2, 0.9)),
                                    direct_to_reverb_db=float(rng.uniform(-3, 12)))
            audio = aug.reverberate(audio, rir)
        if rng.random() < 0.5:  # the room's own background, plus maybe another source
            noise = _noise_track(rng, corpus, n, min_clips=0)
            audio = mix_at_snr(audio, labels >= 0.5, noise, float(rng.uniform(0, 30)))
    elif kind == "speech" and corpus.speech:
        speech, labels = _speech_track(rng, corpus, n)
        if rng.random() < 0.5:
            rir = aug.synthetic_rir(rng, rt60_s=float(rng.uniform(0.15, 1.0)),
                                    direct_to_reverb_db=float(rng.uniform(-6, 15)))
            speech = aug.reverberate(speech, rir)
        if rng.random() < 0.9:
            noise = _noise_track(rng, corpus, n, min_clips=0)
            audio = mix_at_snr(speech, labels >= 0.5, noise, float(rng.uniform(-5, 30)))
        else:
            audio = speech
    elif kind in ("nonspeech", "speech"):
        audio = _noise_track(rng, corpus, n, min_clips=1)
        if rng.random() < 0.2:
            rir = aug.synthetic_rir(rng, rt60_s=float(rng.uniform(0.15, 1.0)),
                                    direct_to_reverb_db=float(rng.uniform(-6, 15)))
            audio = aug.reverberate(audio, rir)
    else:
        audio = np.zeros(n, dtype=np.float32)
        if rng.random() < 0.7:  # dither / self-noise, -100..-55 dBFS
            audio += aug.coloured_noise(rng, n, rng.choice([0.0, 1.0])) * np.float32(_db_to_amp(rng.uniform(-100, -55)))
        if rng.random() < 0.3:
            audio = aug.add_dc_and_hum(audio, rng, dc=float(rng.uniform(-0.01, 0.01)),
                                       hum_dbfs=float(rng.uniform(-80, -45)))
        if rng.random() < 0.5:
            cut = int(rng.integers(n))
            audio[:cut] = 0.0
        return quantise_maybe(rng, audio), labels
    if corpus.speech and rng.random() < recipe.distant_talkers:
        if kind in ("speech", "recorded"):  # 15-35 dB under the talker addressed
            ref = float(np.mean(audio[labels >= 0.5].astype(np.float64) ** 2)) if np.any(labels >= 0.5) else 0.0
            audio = audio + _distant_talkers(rng, corpus, n, ref, (15.0, 35.0))
        else:  # buried in the room's noise (babble-like), -3..10 dB under it
            audio = audio + _distant_talkers(rng, corpus, n, float(np.mean(audio.astype(np.float64) ** 2)),
                                             (-3.0, 10.0))
    if rng.random() < recipe.transient_rate:
        audio = _add_events(rng, corpus, audio, labels)

    # Channel: microphone colouring, telephone, hum/DC, level, clipping, quantisation, muting.
    if rng.random() < 0.5:
        audio = aug.random_eq(audio, rng)
    if rng.random() < 0.12:
        audio = aug.telephone(audio, rng)
    lowest = recipe.min_speech_peak_dbfs if kind in ("speech", "recorded") else -50.0
    peak_db = float(rng.uniform(lowest, 0)) if rng.random() < 0.9 else float(rng.uniform(0, 15))
    audio = aug.normalise_peak(audio, peak_db)
    if rng.random() < 0.3:  # microphone self-noise
        audio += aug.coloured_noise(rng, n, 0.0) * np.float32(_db_to_amp(rng.uniform(-95, -60)))
    if rng.random() < 0.12:
        audio = aug.add_dc_and_hum(audio, rng, dc=float(rng.uniform(-0.05, 0.05)),
                                   hum_dbfs=float(rng.uniform(-70, -30)) if rng.random() < 0.7 else None)
    audio = np.clip(audio, -1.0, 1.0)
    if rng.random() < 0.08:  # muted microphone: a stretch of digital silence
        a = int(rng.integers(n))
        b = min(n, a + int(rng.uniform(0.2, 4.0) * SAMPLE_RATE_HZ))
        audio[a:b] = 0.0
        labels = labels.copy()
        labels[a:b] = 0.0
    return quantise_maybe(rng, audio), labels


def quantise_maybe(rng: np.random.Generator, audio: np.ndarray) -> np.ndarray:
    if rng.random() < 0.5:
        return aug.quantise(audio, 16)  # what a real 16-bit source delivers
    if rng.random() < 0.1:
        return aug.quantise(audio, int(rng.integers(8, 13)))
    return audio.astype(np.float32)


def hop_targets(labels: np.ndarray, hop_samples: int, n_hops: int) -> np.ndarray:
    """Fraction of speech samples in each hop (hop k = samples k*hop .. (k+1)*hop-1; zero-padded)."""
    padded = np.zeros(n_hops * hop_samples, dtype=np.float32)
    m = min(labels.size, padded.size)
    padded[:m] = labels[:m]
    return padded.reshape(n_hops, hop_samples).mean(axis=1)


@dataclasses.dataclass
class SceneBatch:
    """Features of equally long scenes: ``feats`` [scenes, frames, numcep] float32 (raw MFCC),
    ``targets`` [scenes, hops] float32 (speech fraction per hop), and with ``SceneRecipe.silero``
    ``silero`` [scenes, hops] float32 (Silero VAD's probability at each hop centre, not lag-corrected)."""

    feats: np.ndarray
    targets: np.ndarray
    silero: np.ndarray | None = None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        extra = {} if self.silero is None else {"silero": self.silero}
        np.savez(tmp, feats=self.feats, targets=self.targets, **extra)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "SceneBatch":
        with np.load(path) as data:
            return cls(feats=data["feats"], targets=data["targets"],
                       silero=data["silero"] if "silero" in data.files else None)

    @classmethod
    def concat(cls, parts: list["SceneBatch"]) -> "SceneBatch":
        silero = None if any(p.silero is None for p in parts) else np.concatenate([p.silero for p in parts])
        return cls(feats=np.concatenate([p.feats for p in parts]), targets=np.concatenate([p.targets for p in parts]),
                   silero=silero)


def scene_features(rng: np.random.Generator, corpus: Corpus, n_scenes: int, scene_s: float, cfg: FeatureConfig,
                   hop_samples: int, recipe: SceneRecipe = SceneRecipe()) -> SceneBatch:
    n = int(scene_s * SAMPLE_RATE_HZ)
    n_hops = n // hop_samples
    feats, targets, audios = [], [], []
    for _ in range(n_scenes):
        audio, labels = make_scene(rng, corpus, scene_s, recipe)
        feats.append(mfcc(audio, cfg).astype(np.float32))
        targets.append(hop_targets(labels, hop_samples, n_hops))
        if recipe.silero:
            audios.append(audio)
    silero = None
    if recipe.silero:
        from vadstream.training.teacher import SileroTeacher

        silero = SileroTeacher().hop_probs(np.stack(audios), hop_samples, n_hops)
    return SceneBatch(feats=np.stack(feats), targets=np.stack(targets), silero=silero)


# Worker-process state for multiprocessing (fork shares the loaded corpus copy-on-write).
_WORKER_CORPUS: Corpus | None = None


def _shard_worker(job: tuple[int, int, float, dict, int, str, dict]) -> str:
    seed, n_scenes, scene_s, cfg_dict, hop_samples, out, recipe = job
    assert _WORKER_CORPUS is not None
    rng = np.random.default_rng(seed)
    batch = scene_features(rng, _WORKER_CORPUS, n_scenes, scene_s, FeatureConfig.from_dict(cfg_dict), hop_samples,
                           SceneRecipe(**recipe))
    batch.save(Path(out))
    return out


def build_shards(corpus: Corpus, cache_dir: Path, tag: str, seed: int, n_shards: int, scenes_per_shard: int,
                 scene_s: float, cfg: FeatureConfig, hop_samples: int, workers: int = 2, log=print,
                 recipe: SceneRecipe = SceneRecipe()) -> list[Path]:
    """Generate (or reuse) ``n_shards`` cached shards of scenes; shard i uses seed ``[seed, i]``."""
    global _WORKER_CORPUS
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = [cache_dir / f"{tag}-{i:04d}.npz" for i in range(n_shards)]
    jobs = [(int(np.random.SeedSequence([seed, i]).generate_state(1)[0]), scenes_per_shard, scene_s, cfg.to_dict(),
             hop_samples, str(p), recipe.to_dict()) for i, p in enumerate(paths) if not p.exists()]
    if jobs:
        log(f"generating {len(jobs)} shard(s) of {scenes_per_shard} x {scene_s:g} s scenes in {cache_dir} ({tag})")
        _WORKER_CORPUS = corpus
        try:
            if workers > 1 and len(jobs) > 1:
                import multiprocessing as mp

                with mp.get_context("fork").Pool(workers) as pool:
                    for done, _ in enumerate(pool.imap_unordered(_shard_worker, jobs), 1):
                        if done % max(1, len(jobs) // 10) == 0:
                            log(f"  {done}/{len(jobs)} shards")
            else:
                for job in jobs:
                    _shard_worker(job)
        finally:
            _WORKER_CORPUS = None
    return paths
