"""Uniform streaming wrappers around vadstream and its peers (Silero VAD, WebRTC VAD, TEN VAD).

Every wrapper has ``name``, ``hop_samples``, ``default_threshold``, ``binary``, ``version``,
``process_hop(hop) -> float`` (exactly ``hop_samples`` float32 samples at 16 kHz in, the hop's
speech probability out), ``process(samples) -> np.ndarray`` (any chunk length; probabilities of
the hops completed, in order), ``flush()`` (the zero-padded last hop; then ``reset``) and
``reset()``. vadstream's own wrapper (:class:`VadstreamPeer`) runs the real :class:`~vadstream.stages.vad.Vad`
and :class:`~vadstream.stages.detector.Detector`; its probabilities come out with the model's lookahead,
so it has no ``process_hop``.

:func:`available_peers` builds whatever is installed and gives a reason for what is not; nothing
is faked. Peers are optional: ``pip install -e '.[bench]'`` installs WebRTC VAD and TEN VAD (TEN
needs Debian's ``libc++1``); Silero's ONNX file is read from the ``silero-vad`` wheel on PyPI
(downloaded with ``pip download --no-deps``, so torch is never installed) by
:func:`silero_onnx_path`.

Module imports stay light: onnxruntime, webrtcvad and ten_vad load when a wrapper is built.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from vadstream.stages.samples import SAMPLE_RATE_HZ, to_float32, to_int16

SILERO_VERSION = "6.2.3"
SILERO_WHEEL_MEMBER = "silero_vad/data/silero_vad.onnx"
SILERO_SHA256 = "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"


class PeerUnavailable(RuntimeError):
    """A peer cannot be built here (package or file missing); the message says why."""


# --------------------------------------------------------------------------------------------
# Base class: hop buffering shared by the peers
# --------------------------------------------------------------------------------------------
class FixedHopPeer:
    """A peer VAD that scores fixed hops of ``hop_samples``: buffers what does not fill a hop;
    ``flush`` zero-pads the last partial hop. Subclasses give ``process_hop`` and ``_reset_state``."""

    name = "?"
    hop_samples = 512
    default_threshold = 0.5
    binary = False
    version = ""

    def __init__(self) -> None:
        self._buf = np.zeros(0, dtype=np.float32)

    def process_hop(self, hop: np.ndarray) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _reset_state(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset(self) -> None:
        self._buf = np.zeros(0, dtype=np.float32)
        self._reset_state()

    def process(self, samples: np.ndarray) -> np.ndarray:
        x = to_float32(samples)
        if self._buf.size:
            x = np.concatenate([self._buf, x])
        h = self.hop_samples
        n = x.size // h
        out = np.empty(n, dtype=np.float32)
        for k in range(n):
            out[k] = self.process_hop(x[k * h:(k + 1) * h])
        self._buf = x[n * h:].copy()
        return out

    def flush(self) -> np.ndarray:
        out = np.zeros(0, dtype=np.float32)
        if self._buf.size:
            last = np.zeros(self.hop_samples, dtype=np.float32)
            last[: self._buf.size] = self._buf
            out = np.array([self.process_hop(last)], dtype=np.float32)
        self.reset()
        return out


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vadstream" / "peers"


def silero_onnx_path(download: bool = True) -> Path:
    """Path of Silero VAD's ``silero_vad.onnx`` (v6.2.3), fetched from PyPI without torch.

    Order: ``$VADSTREAM_SILERO_ONNX``; the cache (``~/.cache/vadstream/peers``); else, with
    ``download``, ``pip download silero-vad==6.2.3 --no-deps`` and read the file from the wheel
    (its SHA-256 is checked). Raises :class:`PeerUnavailable` with the reason.
    """
    env = os.environ.get("VADSTREAM_SILERO_ONNX")
    if env:
        if not Path(env).is_file():
            raise PeerUnavailable(f"VADSTREAM_SILERO_ONNX={env} is not a file")
        return Path(env)
    target = _cache_dir() / f"silero_vad-{SILERO_VERSION}.onnx"
    if target.is_file():
        return target
    if not download:
        raise PeerUnavailable(f"Silero ONNX not cached at {target}")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "-d", tmp, f"silero-vad=={SILERO_VERSION}"]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PeerUnavailable(f"cannot run pip download silero-vad: {exc}") from exc
        wheels = list(Path(tmp).glob("silero_vad-*.whl"))
        if res.returncode != 0 or not wheels:
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no wheel"]
            raise PeerUnavailable(f"pip download silero-vad=={SILERO_VERSION} failed: {tail[0]}")
        with zipfile.ZipFile(wheels[0]) as zf:
            data = zf.read(SILERO_WHEEL_MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SILERO_SHA256:
        raise PeerUnavailable(f"{SILERO_WHEEL_MEMBER} from the wheel has SHA-256 {digest}, expected {SILERO_SHA256}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_target = target.with_suffix(".tmp")
    tmp_target.write_bytes(data)
    tmp_target.replace(target)
    return target


class SileroPeer(FixedHopPeer):
    """Silero VAD v6 ONNX: 512-sample chunks with the previous 64 samples prepended, state carried.

    Inputs ``input`` [1, 576], ``state`` [2, 1, 128], ``sr`` int64 (16000); outputs the
    probability and the next state, exactly as ``OnnxWrapper.__call__``. ONNX Runtime runs with one
    thread and spinning off (the same session options as vadstream's own model).
    """

    name = "silero"
    hop_samples = 512
    context_samples = 64

    def __init__(self, path: str | os.PathLike[str] | None = None):
        super().__init__()
        import onnxruntime as ort

        from vadstream.stages.model import bound_run, session_options

        self.path = Path(path) if path else silero_onnx_path()
        self.version = f"v{SILERO_VERSION} ({self.path.name})"
        self._session = ort.InferenceSession(str(self.path), sess_options=session_options(),
                                             providers=["CPUExecutionProvider"])
        self._sr = np.array(SAMPLE_RATE_HZ, dtype=np.int64)
        self._x = np.zeros((1, self.context_samples + self.hop_samples), dtype=np.float32)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._state_out = np.zeros_like(self._state)
        self._prob = np.zeros((1, 1), dtype=np.float32)
        # The same live fast path as vadstream.stages.model.OnnxModel.score_window: an IO binding on
        # fixed buffers (the bench compares call paths of equal overhead).
        self._run_bound = bound_run(self._session, {"input": self._x, "state": self._state, "sr": self._sr},
                                    {"output": self._prob, "stateN": self._state_out})
        self._reset_state()

    def _reset_state(self) -> None:
        self._state[:] = 0.0  # in place: the binding holds these buffers
        self._x[:] = 0.0

    def process_hop(self, hop: np.ndarray) -> float:
        x = self._x
        x[0, self.context_samples:] = hop
        self._run_bound()
        self._state[:] = self._state_out
        x[0, : self.context_samples] = x[0, -self.context_samples:]
        return float(self._prob[0, 0])


# --------------------------------------------------------------------------------------------
# WebRTC VAD (webrtcvad-wheels): binary decisions on 30 ms frames
# --------------------------------------------------------------------------------------------
class WebRtcPeer(FixedHopPeer):
    binary = True
    hop_samples = 480  # 30 ms

    def __init__(self, mode: int = 3, frame_ms: int = 30):
        super().__init__()
        try:
            import webrtcvad
        except ImportError as exc:
            raise PeerUnavailable("webrtcvad not installed (pip install webrtcvad-wheels, in the bench extra)") from exc
        if mode not in (0, 1, 2, 3):
            raise ValueError(f"WebRTC VAD mode must be 0-3, got {mode}")
        self.mode = mode
        self.name = f"webrtc-{mode}"
        self.hop_samples = frame_ms * SAMPLE_RATE_HZ // 1000
        self._module = webrtcvad
        try:
            from importlib.metadata import version

            self.version = version("webrtcvad-wheels")
        except Exception:  # pragma: no cover - metadata missing
            self.version = "?"
        self._reset_state()

    def _reset_state(self) -> None:
        self._vad = self._module.Vad(self.mode)

    def process_hop(self, hop: np.ndarray) -> float:
        return 1.0 if self._vad.is_speech(to_int16(hop).tobytes(), SAMPLE_RATE_HZ) else 0.0


# --------------------------------------------------------------------------------------------
# TEN VAD (pip ten-vad): 16 ms hops of int16
# --------------------------------------------------------------------------------------------
class TenPeer(FixedHopPeer):
    name = "ten"
    hop_samples = 256

    def __init__(self, hop_samples: int = 256):
        super().__init__()
        try:
            from ten_vad import TenVad
        except ImportError as exc:
            raise PeerUnavailable("ten_vad not installed (pip install ten-vad, in the bench extra)") from exc
        except OSError as exc:
            raise PeerUnavailable(f"ten_vad cannot load its library ({exc}); install Debian's libc++1") from exc
        self._cls = TenVad
        self.hop_samples = hop_samples
        try:
            from importlib.metadata import version

            self.version = version("ten-vad")
        except Exception:  # pragma: no cover
            self.version = "?"
        try:
            self._vad = TenVad(hop_samples, self.default_threshold)
        except OSError as exc:
            raise PeerUnavailable(f"ten_vad cannot load libten_vad.so ({exc}); install Debian's libc++1") from exc

    def _reset_state(self) -> None:
        # The library has no reset call: a fresh handle is a fresh state.
        self._vad = self._cls(self.hop_samples, self.default_threshold)

    def process_hop(self, hop: np.ndarray) -> float:
        return float(self._vad.process(to_int16(hop))[0])


# --------------------------------------------------------------------------------------------
# vadstream: the real Vad + Detector
# --------------------------------------------------------------------------------------------
class VadstreamPeer:
    """vadstream's full pipeline, a :class:`~vadstream.stages.stream.Stream` (Vad, then Detector).

    ``process`` returns the probabilities that became ready (the model's lookahead delays them);
    the detector's events accumulate in ``events``.
    """

    name = "vadstream"
    binary = False

    def __init__(self, model: str | os.PathLike[str] | None = None, detector_config=None):
        from vadstream.stages.model import ModelError
        from vadstream.stages.stream import Stream

        try:
            self.stream = Stream(model, detector_config)
        except ModelError as exc:
            raise PeerUnavailable(str(exc)) from exc
        self.vad = self.stream.vad
        self.hop_samples = self.vad.hop_samples
        self.lookahead_samples = self.vad.lookahead_samples
        # Per-hop scores use the model's nominal 0.5 (as for every peer); the detector's onset
        # threshold is a smoothing setting tuned separately (bench/RESULTS.md).
        self.default_threshold = 0.5
        self.version = f"{self.vad.spec.name} {self.vad.spec.version}"
        self.detector = self.stream.detector
        self.events: list = []

    def reset(self) -> None:
        self.stream.reset()
        self.events = []

    def process(self, samples: np.ndarray) -> np.ndarray:
        out = self.stream.process(samples)
        self.events.extend(out.events)
        return out.probs

    def flush(self) -> np.ndarray:
        out = self.stream.close()
        self.events.extend(out.events)
        self.stream.reset()
        return out.probs


# --------------------------------------------------------------------------------------------
# Building and running
# --------------------------------------------------------------------------------------------
def peer_factories(model: str | os.PathLike[str] | None = None, silero_path: str | None = None,
                   webrtc_modes: tuple[int, ...] = (0, 1, 2, 3), ten: bool = True) -> dict[str, Callable[[], object]]:
    """name -> zero-argument constructor, in report order."""
    out: dict[str, Callable[[], object]] = {"vadstream": lambda: VadstreamPeer(model)}
    out["silero"] = lambda: SileroPeer(silero_path)
    if ten:
        out["ten"] = TenPeer
    for m in webrtc_modes:
        out[f"webrtc-{m}"] = (lambda m=m: WebRtcPeer(m))
    return out


def available_peers(names: list[str] | None = None, **kwargs) -> tuple[dict[str, object], dict[str, str]]:
    """Build the peers that can run here: (name -> wrapper, name -> reason it was skipped)."""
    built: dict[str, object] = {}
    skipped: dict[str, str] = {}
    for name, make in peer_factories(**kwargs).items():
        if names and name not in names:
            continue
        try:
            built[name] = make()
        except PeerUnavailable as exc:
            skipped[name] = str(exc)
        except (ImportError, OSError) as exc:
            skipped[name] = f"{type(exc).__name__}: {exc}"
    return built, skipped


def stream(peer, audio: np.ndarray, chunk_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Feed ``audio`` as a live caller would, ``chunk_samples`` at a time (default: the peer's hop).

    Returns ``(probs, known_at)``: one probability per hop that started inside the audio, and for
    each the number of samples fed when it came out (the flushed tail counts as known at the end).
    """
    x = to_float32(audio)
    chunk = chunk_samples or peer.hop_samples
    peer.reset()
    probs: list[np.ndarray] = []
    known: list[np.ndarray] = []
    for i in range(0, x.size, chunk):
        p = peer.process(x[i:i + chunk])
        if p.size:
            probs.append(p)
            known.append(np.full(p.size, min(i + chunk, x.size), dtype=np.int64))
    p = peer.flush()
    if p.size:
        probs.append(p)
        known.append(np.full(p.size, x.size, dtype=np.int64))
    if not probs:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    return np.concatenate(probs).astype(np.float32), np.concatenate(known)
