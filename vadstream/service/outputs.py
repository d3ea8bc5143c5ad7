"""What the daemon sends out of its stream: wire events on the publisher, speech audio (the audio
tap's ``audio.`` topics) and the Wyoming mic service (``[wyoming] uri``).

:class:`Outputs` has no socket of its own: it publishes through the daemon's :class:`Publisher`
(a failed message is counted in the :class:`StatusBook`, never raised) and hands the mic service,
which runs in its own thread, what it is given. The tap cuts speech audio only while someone
wants it: a subscriber of an ``audio.`` topic or a speech-only Wyoming client.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from vadstream.service.audio_tap import AudioTap, history_seconds
from vadstream.service.config import Config, ConfigError
from vadstream.service.status import Moment, StatusBook
from vadstream.stages.detector import EndReason, SpeechStart
from vadstream.stages.samples import SAMPLE_RATE_HZ
from vadstream.stages.stream import StreamOutput
from vadstream.wire import events as wire
from vadstream.wire.audio import SPEECH_TOPIC, UTTERANCE_TOPIC, AudioMessage, SpeechAudio
from vadstream.wire.events import Message, Probability

if TYPE_CHECKING:
    from vadstream.service.wyoming_mic import MicService
    from vadstream.stages.model import ModelSpec
    from vadstream.wire.publisher import Publisher

log = logging.getLogger("vadstream")

LAST_REASONS = (EndReason.END_OF_INPUT, EndReason.SHUTDOWN, EndReason.DEVICE_LOST)  # no more audio of the stream


def tap_sizes(cfg: Config) -> tuple[int, int, int]:
    """Pre-roll, post-roll and history of the speech audio topics, in samples."""
    a, d = cfg.audio, cfg.detector
    history_s = history_seconds(a.pre_roll_ms / 1000, a.post_roll_ms / 1000, d.max_speech_s,
                                d.min_silence_ms / 1000)
    return (round(a.pre_roll_ms * SAMPLE_RATE_HZ / 1000), round(a.post_roll_ms * SAMPLE_RATE_HZ / 1000),
            int(history_s * SAMPLE_RATE_HZ))


def open_mic_service(cfg: Config, spec: ModelSpec, source_name: str) -> MicService | None:
    """The Wyoming mic service ``[wyoming] uri`` asks for (None: none; the wyoming package is
    imported only then). ConfigError without the package; OSError when it cannot serve."""
    w = cfg.wyoming
    if w.uri is None:
        return None
    if w.uri.startswith("stdio://") and cfg.input.input == "-":
        raise ConfigError("wyoming.uri = 'stdio://' cannot share stdin with input.source = '-'")
    try:
        from vadstream.service.wyoming_mic import MicService
    except ImportError as exc:  # WyomingMissing says how to install the extra
        raise ConfigError(str(exc)) from None
    return MicService(w, model_name=spec.name, model_version=spec.version, source_name=source_name,
                      socket_mode=cfg.publisher.ipc_mode_bits)


class Outputs:
    """One stream's output as wire messages, speech audio and Wyoming events.

    Args:
        cfg: the running config (the tap's sizes; :meth:`configure` applies a new one).
        publisher: sends the messages and knows which topics have subscribers.
        book: counts segments and failed messages.
        hop_samples: the model's hop, for probability messages.
        mic: the Wyoming mic service, or None.
    """

    def __init__(self, cfg: Config, publisher: Publisher, book: StatusBook, hop_samples: int,
                 mic: MicService | None):
        self.publisher = publisher
        self.book = book
        self.hop_samples = hop_samples
        self.mic = mic
        self.tap = AudioTap(*tap_sizes(cfg), wall_ns=self.wall_ns)
        self._anchor = (0, time.time_ns())  # (stream sample, unix ns) of the latest block

    def configure(self, cfg: Config) -> None:
        self.tap.configure(*tap_sizes(cfg))

    # -- time -------------------------------------------------------------------------------------
    def anchor(self, start_sample: int, wall_time_ns: int) -> None:
        """The latest block's first sample was captured at ``wall_time_ns``: later samples count from it."""
        self._anchor = (start_sample, wall_time_ns)

    def wall_ns(self, sample: int) -> int:
        a_sample, a_wall = self._anchor
        return max(0, a_wall + (sample - a_sample) * 1_000_000_000 // SAMPLE_RATE_HZ)

    # -- out --------------------------------------------------------------------------------------
    def publish(self, message: Message) -> None:
        try:
            self.publisher.publish(message)
        except Exception as exc:  # noqa: BLE001 - never die for one message
            self.book.error(f"publish failed: {type(exc).__name__}: {exc}")

    def welcome(self, at: Moment, source_name: str) -> None:
        """Answer each new subscription that covers ``vad.status`` with a ``welcome`` status: a late
        subscriber learns the state, the open segment and the latest seq without waiting."""
        for topic in self.publisher.joined():
            if b"vad.status".startswith(topic):
                self.publish(self.book.welcome(at, source_name, self.publisher))

    def update_wanted(self) -> None:
        """Cut speech audio only while someone subscribes to it (the XPUB socket knows) or a
        speech-only Wyoming client is connected."""
        p = self.publisher
        wyoming_speech = self.mic is not None and self.mic.wants_speech
        self.tap.set_wanted(p.wants(UTTERANCE_TOPIC), p.wants(SPEECH_TOPIC) or wyoming_speech)

    def audio(self, start_sample: int, x: np.ndarray) -> None:
        """The audio the model is given, for the speech audio topics and Wyoming (before its events)."""
        if self.tap.active:
            self._publish_audio(self.tap.audio(start_sample, x))
        if self.mic is not None and self.mic.wants_audio:
            self.mic.audio(start_sample, x)

    def stream_output(self, out: StreamOutput, *, prob: bool) -> None:
        """Probabilities (with ``prob``) and speech events as wire messages (and speech audio)."""
        if prob:
            hop = self.hop_samples
            for s, p in zip(out.hop_starts.tolist(), out.probs.tolist()):
                self.publish(Probability(sample_index=s, wall_time_ns=self.wall_ns(s), probability=p, hop_samples=hop))
        for ev in out.events:
            s = ev.sample_index
            wall = self.wall_ns(s)
            if isinstance(ev, SpeechStart):
                self.book.speech_started(s)
                self.publish(wire.SpeechStart(sample_index=s, wall_time_ns=wall, probability=ev.probability,
                                              decided_sample=ev.decided_sample))
                self._publish_audio(self.tap.start(s, ev.probability))
                log.debug("speech_start at %.3f s (p=%.2f)", s / SAMPLE_RATE_HZ, ev.probability)
            else:
                self.book.speech_ended()
                self.publish(wire.SpeechEnd(sample_index=s, wall_time_ns=wall, probability=ev.probability,
                                            decided_sample=ev.decided_sample, start_sample=ev.start_sample,
                                            reason=ev.reason.value))
                self._publish_audio(self.tap.end(ev.start_sample, s, ev.reason.value, last=ev.reason in LAST_REASONS))
                log.debug("speech_end at %.3f s (%s, %.2f s)", s / SAMPLE_RATE_HZ, ev.reason.value,
                          ev.duration_samples / SAMPLE_RATE_HZ)
        if self.mic is not None and out.events:
            self.mic.events(out.events)

    def end_open_segment(self, reason: EndReason, fed_samples: int) -> None:
        """A ``speech_end`` for a ``speech_start`` the stream could not close: the promise still holds."""
        if self.book.open_start is None:
            return
        s, fed = self.book.open_start, max(self.book.open_start, fed_samples)
        self.book.speech_ended()
        self.publish(wire.SpeechEnd(sample_index=fed, wall_time_ns=self.wall_ns(fed), probability=0.0,
                                    decided_sample=fed, start_sample=s, reason=reason.value))

    def mic_stats(self) -> dict[str, Any] | None:
        return self.mic.stats() if self.mic is not None else None

    def _publish_audio(self, messages: list[AudioMessage]) -> None:
        """The tap's messages: to the ZeroMQ subscribers of their topic, and ``audio.speech`` chunks
        to the Wyoming mic service (which the tap may cut for it alone)."""
        if self.mic is not None:
            self.mic.speech(messages)
        for m in messages:
            if not isinstance(m, SpeechAudio) or self.publisher.wants(SPEECH_TOPIC):
                self.publish(m)
