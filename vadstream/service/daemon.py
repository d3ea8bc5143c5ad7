"""``vadstream run``: audio source -> Vad -> Detector -> ZeroMQ events. This module only wires stages.

The processing loop runs in the main thread; capture runs in the source's own thread (PortAudio
callback or reader thread), so a slow step here never stalls capture. Each loop turn reads one
block (waiting at most ``READ_TIMEOUT_S``), handles source status changes, scores the block,
publishes events, pings the systemd watchdog, sends the heartbeat, and answers control requests.

Signals: SIGTERM/SIGINT close an open segment (``speech_end`` reason ``shutdown``), publish it and
exit 0; SIGHUP reloads the config file (what changed in it applies at once if it can change live;
control-socket changes stay until the file changes the same key; other changed keys are reported
as needing a restart; a failed reload is reported and never stops the daemon). End of a file or
stdin closes an open segment with reason ``end_of_input`` and exits 0. An unexpected exception
in the loop closes an open segment (reason ``shutdown``), publishes ``stopping`` and exits 1.

Exit status: 0 normal end, 1 runtime failure (model, audio source, socket, internal error), 2
configuration error (at start only).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import time
from typing import Any

import numpy as np

from vadstream.service import config, live
from vadstream.service.audio_tap import AudioTap, history_seconds
from vadstream.service.config import Config, ConfigError
from vadstream.service.logs import filter_native_stderr, set_level, setup_logging
from vadstream.service.status import Moment, StatusBook
from vadstream.stages.detector import EndReason, SpeechStart
from vadstream.stages.samples import SAMPLE_RATE_HZ
from vadstream.stages.stream import Stream, StreamOutput
from vadstream.wire import events as wire
from vadstream.wire.audio import SPEECH_TOPIC, UTTERANCE_TOPIC, SpeechAudio
from vadstream.wire.events import Message, Probability

log = logging.getLogger("vadstream")

READ_TIMEOUT_S = 0.1
WAIT_NOTE_EVERY_S = 5.0  # --wait-subscriber: a log line this often while nobody has subscribed
LAST_REASONS = (EndReason.END_OF_INPUT, EndReason.SHUTDOWN, EndReason.DEVICE_LOST)  # no more audio of the stream


def add_arguments(parser) -> None:
    config.add_arguments(parser)


# --- the daemon ------------------------------------------------------------------------------------

class Daemon:
    """Wires one source, one :class:`Stream` (Vad + Detector), the publisher and the control socket."""

    def __init__(self, cfg: Config, args=None):
        from vadstream.audio.sources import open_source
        from vadstream.service.sdnotify import Notifier
        from vadstream.wire.control import ControlServer
        from vadstream.wire.publisher import Publisher

        self.cfg = cfg
        self._file_cfg = cfg  # the config as last read from the file and flags (reload applies what changed)
        self.args = args
        self.book = StatusBook()  # counters, and the status/heartbeat/welcome/progress messages
        self.stream = Stream(cfg.model.path, cfg.detector, on_audio=self._tap_audio)
        self.vad = self.stream.vad
        self.source = open_source(cfg.input.source_spec())
        self.events_endpoint, self.control_endpoint = cfg.endpoints()
        p = cfg.publisher
        try:
            self._refuse_if_running()
        except OSError:
            self.source.close()
            raise
        self.control = None
        try:
            self.publisher = Publisher(self.events_endpoint, source=self.source.name, sndhwm=p.sndhwm,
                                       linger_ms=p.linger_ms, ipc_mode=p.ipc_mode_bits)
            if self.control_endpoint:
                self.control = ControlServer(self.control_endpoint, self.handle_request, ipc_mode=p.ipc_mode_bits)
        except Exception:
            self.source.close()
            if getattr(self, "publisher", None):
                self.publisher.close(0)
            raise
        try:
            self.wyoming = self._wyoming_mic()
        except BaseException:
            self.source.close()
            self.publisher.close(0)
            if self.control is not None:
                self.control.close()
            raise
        self.notifier = Notifier.from_env()
        self.audio_tap = AudioTap(*self._tap_sizes(), wall_ns=self._wall_ns)
        self._anchor = (0, time.time_ns())  # (stream sample, unix ns) of the latest block
        self._lost = False
        self._stop: str | None = None
        self._reload = False

    def _refuse_if_running(self) -> None:
        """ZeroMQ would silently take over an ipc socket file another daemon still serves: refuse."""
        from vadstream.wire.client import ControlError, request

        ep = self.events_endpoint
        if not ep.startswith("ipc://") or not os.path.exists(ep[len("ipc://"):]) or not self.control_endpoint:
            return
        try:
            other = request(self.control_endpoint, "status", timeout_s=0.3)["status"]
        except (ControlError, ValueError, OSError):
            return  # a stale file from a crashed run: take it over
        raise OSError(f"another vadstream (pid {other.get('pid')}) is already publishing on {ep}; stop it or "
                      "choose another --endpoint")

    def _wyoming_mic(self):
        """The Wyoming mic service ``[wyoming] uri`` asks for (None: none; the wyoming package is
        imported only then). ConfigError without the package; OSError when it cannot serve."""
        w = self.cfg.wyoming
        if w.uri is None:
            return None
        if w.uri.startswith("stdio://") and self.cfg.input.input == "-":
            raise ConfigError("wyoming.uri = 'stdio://' cannot share stdin with input.source = '-'")
        try:
            from vadstream.service.wyoming_mic import MicService
        except ImportError as exc:  # WyomingMissing says how to install the extra
            raise ConfigError(str(exc)) from None
        spec = self.vad.spec
        return MicService(w, model_name=spec.name, model_version=spec.version, source_name=self.source.name,
                          socket_mode=self.cfg.publisher.ipc_mode_bits)

    # -- signals ------------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        if signum == signal.SIGHUP:
            self._reload = True
        else:
            self._stop = signal.Signals(signum).name

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    # -- helpers ------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return "lost" if self._lost else self.stream.state.value

    def _moment(self) -> Moment:
        fed = self.stream.sample_index
        return Moment(fed, self._wall_ns(fed), self.state)

    def _wall_ns(self, sample: int) -> int:
        a_sample, a_wall = self._anchor
        return max(0, a_wall + (sample - a_sample) * 1_000_000_000 // SAMPLE_RATE_HZ)

    def _tap_sizes(self) -> tuple[int, int, int]:
        """Pre-roll, post-roll and history of the speech audio topics, in samples."""
        a, d = self.cfg.audio, self.cfg.detector
        history_s = history_seconds(a.pre_roll_ms / 1000, a.post_roll_ms / 1000, d.max_speech_s,
                                    d.min_silence_ms / 1000)
        return (round(a.pre_roll_ms * SAMPLE_RATE_HZ / 1000), round(a.post_roll_ms * SAMPLE_RATE_HZ / 1000),
                int(history_s * SAMPLE_RATE_HZ))

    def _update_audio_subscribers(self) -> None:
        """Cut speech audio only while someone subscribes to it (the XPUB socket knows) or a
        speech-only Wyoming client is connected."""
        p = self.publisher
        wyoming_speech = self.wyoming is not None and self.wyoming.wants_speech
        self.audio_tap.set_wanted(p.wants(UTTERANCE_TOPIC), p.wants(SPEECH_TOPIC) or wyoming_speech)

    def _publish_audio(self, messages: list) -> None:
        """The audio tap's messages: to the ZeroMQ subscribers of their topic, and ``audio.speech``
        chunks to the Wyoming mic service (which the tap may cut for it alone)."""
        if self.wyoming is not None:
            self.wyoming.speech(messages)
        for m in messages:
            if not isinstance(m, SpeechAudio) or self.publisher.wants(SPEECH_TOPIC):
                self.publish(m)

    def publish(self, message: Message) -> None:
        try:
            self.publisher.publish(message)
        except Exception as exc:  # noqa: BLE001 - never die for one message
            self._error(f"publish failed: {type(exc).__name__}: {exc}")

    def status_event(self, kind: str, message: str, **details: Any) -> None:
        self.publish(self.book.status(self._moment(), kind, message, **details))

    def _error(self, text: str) -> None:
        self.book.error(text)

    def _human_status(self) -> str:
        return self.book.human(self.state, self.source.name, self.publisher)

    # -- audio ----------------------------------------------------------------------------------
    def process_block(self, block) -> None:
        """Feed one AudioBlock at its place on the stream timeline; publish what it completed."""
        self._anchor = (int(block.start_sample), int(block.wall_time_ns))
        out = self.stream.process(block.samples, int(block.start_sample))
        if out.replaced_samples:
            self._error(f"block at sample {block.start_sample} has {out.replaced_samples} non-finite sample(s); "
                        "replaced by 0")
        self._publish_output(out)

    def _tap_audio(self, start_sample: int, x: np.ndarray) -> None:
        """The audio the model is given, for the speech audio topics and Wyoming (before its events)."""
        if self.audio_tap.active:
            self._publish_audio(self.audio_tap.audio(start_sample, x))
        if self.wyoming is not None and self.wyoming.wants_audio:
            self.wyoming.audio(start_sample, x)

    def _publish_output(self, out: StreamOutput) -> None:
        """Probabilities (with ``prob``) and speech events as wire messages (and speech audio)."""
        if self.cfg.publisher.prob:
            hop = self.stream.hop_samples
            for s, p in zip(out.hop_starts.tolist(), out.probs.tolist()):
                self.publish(Probability(sample_index=s, wall_time_ns=self._wall_ns(s), probability=p, hop_samples=hop))
        for ev in out.events:
            s = ev.sample_index
            wall = self._wall_ns(s)
            if isinstance(ev, SpeechStart):
                self.book.speech_started(s)
                self.publish(wire.SpeechStart(sample_index=s, wall_time_ns=wall, probability=ev.probability,
                                              decided_sample=ev.decided_sample))
                self._publish_audio(self.audio_tap.start(s, ev.probability))
                log.debug("speech_start at %.3f s (p=%.2f)", s / SAMPLE_RATE_HZ, ev.probability)
            else:
                self.book.speech_ended()
                self.publish(wire.SpeechEnd(sample_index=s, wall_time_ns=wall, probability=ev.probability,
                                            decided_sample=ev.decided_sample, start_sample=ev.start_sample,
                                            reason=ev.reason.value))
                self._publish_audio(self.audio_tap.end(ev.start_sample, s, ev.reason.value,
                                                       last=ev.reason in LAST_REASONS))
                log.debug("speech_end at %.3f s (%s, %.2f s)", s / SAMPLE_RATE_HZ, ev.reason.value,
                          ev.duration_samples / SAMPLE_RATE_HZ)
            self.notifier.status(self._human_status())
        if self.wyoming is not None and out.events:
            self.wyoming.events(out.events)

    def on_source_status(self, st) -> None:
        details = dict(st.details or {})
        if st.kind in ("lost", "restored"):  # the next block restarts the stream at its own start
            self._publish_output(self.stream.resync(EndReason.DEVICE_LOST))
            self._lost = st.kind == "lost"
        elif st.kind == "overflow":
            self.book.overflows += 1
        elif st.kind == "error":
            self.book.source_failed = True
        kind = st.kind if st.kind in ("opened", "lost", "restored", "overflow", "error") else "error"
        self.status_event(kind, st.message, **details)
        self.notifier.status(self._human_status())

    # -- control ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        reply = self.book.reply(self._moment(), stream=self.stream, vad=self.vad, source=self.source,
                                publisher=self.publisher, audio_tap=self.audio_tap, cfg=self.cfg,
                                control_endpoint=self.control_endpoint)
        reply["wyoming"] = self.wyoming.stats() if self.wyoming is not None else None
        return reply

    def handle_request(self, request: dict[str, Any]) -> dict[str, Any]:
        from vadstream.wire.control import RequestError

        cmd = request["cmd"]
        if cmd == "status":
            return {"status": self.status()}
        if cmd != "config":
            raise RequestError(f"unknown command {cmd!r}: use status or config")
        try:
            changes = self._apply(live.from_request(self.cfg, request))
        except live.RequestRefused as exc:
            raise RequestError(str(exc)) from None
        if changes:
            self.publish(self.book.config_changed(self._moment(), changes))
        return {"changed": {k: list(v) for k, v in changes.items()},
                "detector": dataclasses.asdict(self.cfg.detector), "prob": self.cfg.publisher.prob}

    def _apply(self, new: Config) -> live.Changes:
        """Apply the live-changeable parts of ``new``; return what changed."""
        self.cfg, changes = live.live_part(self.cfg, new)
        self.stream.set_config(self.cfg.detector)
        self.audio_tap.configure(*self._tap_sizes())
        if "logging.level" in changes:
            set_level(self.cfg.logging.level)
        return changes

    def reload(self) -> None:
        """SIGHUP: re-read the config file (and re-apply the flags); apply what changed in it.

        Only keys whose value in the file (or flags) changed since it was last read are applied,
        so a change made through the control socket stays until the file changes the same key.
        A reload never stops the daemon: any failure is reported and the running config stays."""
        self._reload = False
        self.notifier.reloading()
        try:
            self._reload_file()
        except Exception as exc:  # noqa: BLE001 - a reload must never stop the daemon
            self.publish(self.book.reload_failed(self._moment(), exc))
        self.notifier.ready(self._human_status())

    def _reload_file(self) -> None:
        new = config.load(self.args)
        merged, kept = live.from_reload(self.cfg, self._file_cfg, new)
        restart = live.restart_needed(self.cfg, new)
        changes = self._apply(merged)
        self._file_cfg = new
        self.publish(self.book.reloaded(self._moment(), new.path, changes, kept, restart))

    # -- main loop -------------------------------------------------------------------------------
    def welcome(self) -> None:
        """Answer each new subscription that covers ``vad.status`` with a ``welcome`` status: a late
        subscriber learns the state, the open segment and the latest seq without waiting."""
        for topic in self.publisher.joined():
            if b"vad.status".startswith(topic):
                self.publish(self.book.welcome(self._moment(), self.source.name, self.publisher))

    def heartbeat(self, now: float) -> None:
        beat = self.book.heartbeat(self._moment(), now, self.cfg.publisher.heartbeat_s, self.publisher)
        if beat is not None:
            self.publish(beat)

    def wait_for_subscriber(self) -> None:
        """Up to ``publisher.wait_subscriber_s``: wait for a first subscription (control stays answered)."""
        wait_s = self.cfg.publisher.wait_subscriber_s
        if wait_s > 0:
            log.info("waiting up to %g s for a subscriber on %s", wait_s, self.events_endpoint)
        t0 = time.monotonic()
        next_note = t0 + WAIT_NOTE_EVERY_S
        while self.publisher.subscriptions == 0 and self._stop is None and time.monotonic() < t0 + wait_s:
            self.publisher.poll()
            if self.control is not None:
                self.control.poll()
            time.sleep(0.01)
            if time.monotonic() >= next_note:
                next_note += WAIT_NOTE_EVERY_S
                log.info("still waiting for a subscriber on %s (%.0f s left)", self.events_endpoint,
                         t0 + wait_s - time.monotonic())
        if wait_s > 0 and self.publisher.subscriptions:
            log.info("a subscriber connected after %.2f s", time.monotonic() - t0)
        elif wait_s > 0 and self._stop is None:
            log.warning("no subscriber after %g s: starting anyway", wait_s)
        self.welcome()
        if self.publisher.subscriptions == 0 and self.cfg.input.input is not None:
            log.warning("nobody is listening on %s: messages published before a subscriber connects are lost "
                        "(--wait-subscriber S waits for one)", self.events_endpoint)

    def run(self) -> int:
        """Process audio until a signal, the end of the input or a failure; the exit status.

        Every exit path goes through :meth:`shutdown`: an open segment gets its ``speech_end``
        and the ``stopping`` status goes out, also after an unexpected exception (exit 1)."""
        from vadstream.audio.blocks import SourceError

        self.install_signal_handlers()
        end_reason, failure = EndReason.SHUTDOWN, None
        try:
            end_reason = self._run_loop()
        except SourceError as exc:  # e.g. the microphone cannot be opened at start
            failure = str(exc)
            log.error("%s", exc)
        except Exception as exc:  # noqa: BLE001 - one clear line, details at debug level
            failure = f"internal error: {type(exc).__name__}: {exc}"
            log.error("%s", failure)
            log.debug("traceback", exc_info=True)
        return self.shutdown(end_reason, failure)

    def _run_loop(self) -> EndReason:
        self.wait_for_subscriber()
        self.publish(self.book.started(self._moment(), self.vad, self.source.name, self.events_endpoint,
                                       self.control_endpoint, self.cfg))
        log.info("publishing on %s (control: %s), model %s", self.events_endpoint, self.control_endpoint or "off",
                 self.vad.model.path)
        self.source.start()
        self.book.start_progress(self.source.stats())
        while self._stop is None:
            block = self.source.read(READ_TIMEOUT_S)
            self._update_audio_subscribers()
            for st in self.source.poll_status():
                self.on_source_status(st)
            if block is not None:
                try:
                    self.process_block(block)
                except Exception as exc:  # noqa: BLE001 - a bad block must not stop the daemon
                    self._error(f"block at sample {getattr(block, 'start_sample', '?')} skipped: "
                                f"{type(exc).__name__}: {exc}")
                self.book.progress(self.stream.sample_index)
                if not self.book.ready:
                    self.book.ready = True
                    self.notifier.ready(self._human_status())
                    log.info("ready: first audio block processed from %s", self.source.name)
            elif self.source.finished:
                return EndReason.END_OF_INPUT
            now = time.monotonic()
            self.notifier.watchdog(now)
            self.heartbeat(now)
            if self.control is not None:
                self.control.poll()
            if self._reload:
                self.reload()
            self.welcome()
        return EndReason.SHUTDOWN

    def shutdown(self, reason: EndReason, failure: str | None = None) -> int:
        """Close an open segment (``speech_end``), publish ``stopping``, close everything; the exit status."""
        if failure is not None:
            why = failure
        else:
            why = "end of input" if reason is EndReason.END_OF_INPUT else f"received {self._stop}"
        self.notifier.stopping(f"stopping: {why}")
        try:
            self._publish_output(self.stream.close() if reason is EndReason.END_OF_INPUT else self.stream.stop(reason))
        except Exception as exc:  # noqa: BLE001
            self._error(f"final flush failed: {type(exc).__name__}: {exc}")
        if self.book.open_start is not None:  # the stream could not close it: the promise still holds
            s, fed = self.book.open_start, max(self.book.open_start, self.stream.sample_index)
            self.book.speech_ended()
            self.publish(wire.SpeechEnd(sample_index=fed, wall_time_ns=self._wall_ns(fed), probability=0.0,
                                        decided_sample=fed, start_sample=s, reason=reason.value))
        self.publish(self.book.stopping(self._moment(), why, self.publisher))
        self.book.log_totals(why, self.stream.sample_index, self.publisher)
        for name, close in (("source", self.source.close),
                            ("Wyoming mic service", self.wyoming.close if self.wyoming is not None else None),
                            ("control socket", self.control.close if self.control is not None else None),
                            ("publisher", self.publisher.close), ("systemd notifier", self.notifier.close)):
            try:
                if close is not None:
                    close()
            except Exception as exc:  # noqa: BLE001
                log.warning("closing the %s failed: %s", name, exc)
        return 1 if self.book.source_failed or failure is not None else 0


def main(args) -> int:
    from vadstream.audio.blocks import SourceError
    from vadstream.stages.model import ModelError

    setup_logging("info")
    try:
        cfg = config.load(args)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    if cfg.input.input is None:  # the microphone: PortAudio/ALSA print device-loss noise to fd 2
        filter_native_stderr()
    setup_logging(cfg.logging.level)
    try:
        daemon = Daemon(cfg, args)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    except (ModelError, SourceError, OSError) as exc:
        log.error("%s", exc)
        return 1
    return daemon.run()  # every failure inside is one line, the open segment closed, exit 1


if __name__ == "__main__":  # python -m vadstream.service.daemon: the daemon alone, without the other commands
    import argparse

    _parser = argparse.ArgumentParser(prog="vadstream run", description=__doc__.splitlines()[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
