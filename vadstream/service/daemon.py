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

import contextlib
import dataclasses
import logging
import sys
import time
from typing import Any

import numpy as np

from vadstream.service import config, lifecycle, live
from vadstream.service.config import Config, ConfigError
from vadstream.service.logs import filter_native_stderr, set_level, setup_logging
from vadstream.service.outputs import Outputs, open_mic_service
from vadstream.service.status import Moment, StatusBook
from vadstream.stages.detector import EndReason
from vadstream.stages.stream import Stream, StreamOutput
from vadstream.wire.events import Message

log = logging.getLogger("vadstream")

READ_TIMEOUT_S = 0.1

add_arguments = config.add_arguments  # vadstream run's flags


# --- the daemon ------------------------------------------------------------------------------------

class Daemon:
    """Wires one source, one :class:`Stream` (Vad + Detector), the publisher and the control socket."""

    def __init__(self, cfg: Config, args=None):
        from vadstream.audio.sources import open_source
        from vadstream.service.sdnotify import Notifier
        from vadstream.wire.control import ControlServer
        from vadstream.wire.publisher import Publisher

        self.live = live.LiveConfig(cfg, args, self._configure)  # control requests and reloads change it
        self.book = StatusBook()  # counters, and the status/heartbeat/welcome/progress messages
        self.stream = Stream(cfg.model.path, cfg.detector, on_audio=self._on_audio)
        self.vad = self.stream.vad
        self.events_endpoint, self.control_endpoint = cfg.endpoints()
        p = cfg.publisher
        with contextlib.ExitStack() as undo:  # a step that fails closes what the steps before it opened
            self.source = open_source(cfg.input.source_spec())
            undo.callback(self.source.close)
            lifecycle.refuse_if_running(self.events_endpoint, self.control_endpoint)
            self.publisher = Publisher(self.events_endpoint, source=self.source.name, sndhwm=p.sndhwm,
                                       linger_ms=p.linger_ms, ipc_mode=p.ipc_mode_bits)
            undo.callback(self.publisher.close, 0)
            self.control = None
            if self.control_endpoint:
                self.control = ControlServer(self.control_endpoint, self.handle_request, ipc_mode=p.ipc_mode_bits)
                undo.callback(self.control.close)
            mic = open_mic_service(cfg, self.vad.spec, self.source.name)
            undo.pop_all()
        self.notifier = Notifier.from_env()
        self.out = Outputs(cfg, self.publisher, self.book, self.stream.hop_samples, mic)
        self.audio_tap = self.out.tap
        self.signals = lifecycle.Signals()  # installed by run()
        self._lost = False

    # -- helpers ------------------------------------------------------------------------------
    @property
    def cfg(self) -> Config:
        """The running config."""
        return self.live.running

    @property
    def state(self) -> str:
        return "lost" if self._lost else self.stream.state.value

    def _moment(self) -> Moment:
        fed = self.stream.sample_index
        return Moment(fed, self.out.wall_ns(fed), self.state)

    def publish(self, message: Message) -> None:
        self.out.publish(message)

    def _human_status(self) -> str:
        return self.book.human(self.state, self.source.name, self.publisher)

    # -- audio ----------------------------------------------------------------------------------
    def process_block(self, block) -> None:
        """Feed one AudioBlock at its place on the stream timeline; publish what it completed."""
        self.out.anchor(int(block.start_sample), int(block.wall_time_ns))
        out = self.stream.process(block.samples, int(block.start_sample))
        if out.replaced_samples:
            self.book.error(f"block at sample {block.start_sample} has {out.replaced_samples} non-finite "
                            "sample(s); replaced by 0")
        self._publish_output(out)

    def _on_audio(self, start_sample: int, x: np.ndarray) -> None:
        """The audio the model is given (the Stream calls this before the model sees it)."""
        self.out.audio(start_sample, x)

    def _publish_output(self, out: StreamOutput) -> None:
        """Probabilities (with ``prob``), speech events, speech audio and Wyoming events."""
        self.out.stream_output(out, prob=self.cfg.publisher.prob)
        if out.events:
            self.notifier.status(self._human_status())

    def on_source_status(self, st) -> None:
        if st.kind in ("lost", "restored"):  # the next block restarts the stream at its own start
            self._publish_output(self.stream.resync(EndReason.DEVICE_LOST))
            self._lost = st.kind == "lost"
        self.publish(self.book.source_status(self._moment(), st))
        self.notifier.status(self._human_status())

    # -- control ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        reply = self.book.reply(self._moment(), stream=self.stream, vad=self.vad, source=self.source,
                                publisher=self.publisher, audio_tap=self.audio_tap, cfg=self.cfg,
                                control_endpoint=self.control_endpoint)
        reply["wyoming"] = self.out.mic_stats()
        return reply

    def handle_request(self, request: dict[str, Any]) -> dict[str, Any]:
        from vadstream.wire.control import RequestError

        cmd = request["cmd"]
        if cmd == "status":
            return {"status": self.status()}
        if cmd != "config":
            raise RequestError(f"unknown command {cmd!r}: use status or config")
        try:
            changes = self.live.request(request)
        except live.RequestRefused as exc:
            raise RequestError(str(exc)) from None
        if changes:
            self.publish(self.book.config_changed(self._moment(), changes))
        return {"changed": {k: list(v) for k, v in changes.items()},
                "detector": dataclasses.asdict(self.cfg.detector), "prob": self.cfg.publisher.prob}

    def _configure(self, cfg: Config, changes: live.Changes) -> None:
        """A new running config, to the parts that take it live."""
        self.stream.set_config(cfg.detector)
        self.out.configure(cfg)
        if "logging.level" in changes:
            set_level(cfg.logging.level)

    def reload(self) -> None:
        """SIGHUP: re-read the config file and apply what changed in it (:class:`live.LiveConfig`).
        A reload never stops the daemon: any failure is reported and the running config stays."""
        self.signals.reload = False
        self.notifier.reloading()
        try:
            new, changes, kept, restart = self.live.reload()
            self.publish(self.book.reloaded(self._moment(), new.path, changes, kept, restart))
        except Exception as exc:  # noqa: BLE001 - a reload must never stop the daemon
            self.publish(self.book.reload_failed(self._moment(), exc))
        self.notifier.ready(self._human_status())

    # -- main loop -------------------------------------------------------------------------------
    def heartbeat(self, now: float) -> None:
        beat = self.book.heartbeat(self._moment(), now, self.cfg.publisher.heartbeat_s, self.publisher)
        if beat is not None:
            self.publish(beat)

    def wait_for_subscriber(self) -> None:
        """Up to ``publisher.wait_subscriber_s``: wait for a first subscription (control stays answered)."""
        lifecycle.wait_for_subscriber(self.publisher, self.control, self.cfg.publisher.wait_subscriber_s,
                                      lambda: self.signals.stop is not None, self.events_endpoint,
                                      file_input=self.cfg.input.input is not None)
        self.out.welcome(self._moment(), self.source.name)

    def run(self) -> int:
        """Process audio until a signal, the end of the input or a failure; the exit status.

        Every exit path goes through :meth:`shutdown`: an open segment gets its ``speech_end``
        and the ``stopping`` status goes out, also after an unexpected exception (exit 1)."""
        from vadstream.audio.blocks import SourceError

        self.signals.install()
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
        while self.signals.stop is None:
            block = self.source.read(READ_TIMEOUT_S)
            self.out.update_wanted()
            for st in self.source.poll_status():
                self.on_source_status(st)
            if block is not None:
                try:
                    self.process_block(block)
                except Exception as exc:  # noqa: BLE001 - a bad block must not stop the daemon
                    self.book.error(f"block at sample {getattr(block, 'start_sample', '?')} skipped: "
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
            if self.signals.reload:
                self.reload()
            self.out.welcome(self._moment(), self.source.name)
        return EndReason.SHUTDOWN

    def shutdown(self, reason: EndReason, failure: str | None = None) -> int:
        """Close an open segment (``speech_end``), publish ``stopping``, close everything; the exit status."""
        if failure is not None:
            why = failure
        else:
            why = "end of input" if reason is EndReason.END_OF_INPUT else f"received {self.signals.stop}"
        self.notifier.stopping(f"stopping: {why}")
        try:
            self._publish_output(self.stream.close() if reason is EndReason.END_OF_INPUT else self.stream.stop(reason))
        except Exception as exc:  # noqa: BLE001
            self.book.error(f"final flush failed: {type(exc).__name__}: {exc}")
        self.out.end_open_segment(reason, self.stream.sample_index)  # one the stream could not close
        self.publish(self.book.stopping(self._moment(), why, self.publisher))
        self.book.log_totals(why, self.stream.sample_index, self.publisher)
        lifecycle.close_all([("source", self.source.close),
                             ("Wyoming mic service", self.out.mic.close if self.out.mic is not None else None),
                             ("control socket", self.control.close if self.control is not None else None),
                             ("publisher", self.publisher.close), ("systemd notifier", self.notifier.close)])
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
