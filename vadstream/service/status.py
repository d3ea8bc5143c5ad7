"""The daemon's bookkeeping: its counters, and the status, heartbeat, welcome, progress and stopping
messages (and the control socket's status reply) built from them.

:class:`StatusBook` holds no socket and no stage: the daemon hands it the current :class:`Moment`
(stream position, its wall time, the state) and the parts a payload reports, and publishes what it
returns. So the daemon module is wiring plus its loop, and these payloads are written once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from vadstream import __version__
from vadstream.service import live
from vadstream.service.config import ConfigError
from vadstream.stages.samples import SAMPLE_RATE_HZ
from vadstream.wire.events import Heartbeat, Status

if TYPE_CHECKING:
    from vadstream.audio.blocks import SourceStatus

log = logging.getLogger("vadstream")

SOURCE_KINDS = ("opened", "lost", "restored", "overflow", "error")  # source statuses published as their own kind
PROGRESS_MIN_S = 60.0  # unpaced files at least this long log their progress every 10 %


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (anything else as its ``str``)."""
    return json.loads(json.dumps(value, default=str))


@dataclasses.dataclass(frozen=True)
class Moment:
    """Where the daemon stands: the stream sample fed so far, its wall time (unix ns), the state."""

    sample_index: int
    wall_time_ns: int
    state: str


@dataclasses.dataclass
class StatusBook:
    """The daemon's counters and the messages built from them."""

    started_mono: float = dataclasses.field(default_factory=time.monotonic)
    segments: int = 0  # speech_end messages published
    open_start: int | None = None  # stream sample of the speech_start without its speech_end yet
    overflows: int = 0
    errors: int = 0
    ready: bool = False  # the first block has been processed
    source_failed: bool = False  # the source reported an error: exit 1
    last_heartbeat: float = 0.0
    last_error_log: float = 0.0
    progress_total: int = 0  # samples of an unpaced file long enough to report progress (0: none)
    progress_step: int = 0  # tenths of it reported so far

    # -- counters -----------------------------------------------------------------------------
    def uptime_s(self, now: float | None = None) -> float:
        return round((time.monotonic() if now is None else now) - self.started_mono, 3)

    def error(self, text: str) -> None:
        """Count an error; log it, at most a few lines per second."""
        self.errors += 1
        now = time.monotonic()
        if now - self.last_error_log >= 1.0 or self.errors <= 3:
            self.last_error_log = now
            log.error("%s (errors so far: %d)", text, self.errors)

    def speech_started(self, sample: int) -> None:
        self.open_start = sample

    def speech_ended(self) -> None:
        self.segments += 1
        self.open_start = None

    # -- messages -----------------------------------------------------------------------------
    def status(self, at: Moment, kind: str, message: str, **details: Any) -> Status:
        return Status(sample_index=at.sample_index, wall_time_ns=at.wall_time_ns, kind=kind, message=message,
                      state=at.state, details=jsonable(details))

    def source_status(self, at: Moment, st: SourceStatus) -> Status:
        """A change of the audio source's status as a status message (overflows and failures counted)."""
        if st.kind == "overflow":
            self.overflows += 1
        elif st.kind == "error":
            self.source_failed = True
        kind = st.kind if st.kind in SOURCE_KINDS else "error"
        return self.status(at, kind, st.message, **dict(st.details or {}))

    def heartbeat(self, at: Moment, now: float, interval_s: float, publisher) -> Heartbeat | None:
        """A heartbeat when ``interval_s`` has passed since the last one, else None."""
        if now - self.last_heartbeat < interval_s:
            return None
        self.last_heartbeat = now
        p = publisher
        return Heartbeat(sample_index=at.sample_index, wall_time_ns=at.wall_time_ns, state=at.state,
                         uptime_s=self.uptime_s(now), published=p.seq, dropped=p.dropped,
                         dropped_by_topic=dict(p.dropped_by_topic), overflows=self.overflows)

    def started(self, at: Moment, vad, source_name: str, events_endpoint: str, control_endpoint: str | None,
                cfg) -> Status:
        """The first status: version, model, source, endpoints and the config."""
        spec = vad.spec
        return self.status(at, "started", f"vadstream {__version__} started: model {spec.name} {spec.version}, "
                           f"source {source_name}", pid=os.getpid(), model=str(vad.model.path),
                           events_endpoint=events_endpoint, control_endpoint=control_endpoint,
                           config=cfg.to_dict())

    def config_changed(self, at: Moment, changes: live.Changes) -> Status:
        """A control request changed the config (also logged)."""
        log.info("control: %s", live.describe(changes))
        return self.status(at, "config", "changed by a control request: " + live.describe(changes),
                           changed={k: list(v) for k, v in changes.items()})

    def reloaded(self, at: Moment, path: str | None, changes: live.Changes, kept: list[str],
                 restart: list[str]) -> Status:
        """A reload of the config file: what changed, what control requests keep, what needs a restart
        (also logged)."""
        text = f"reloaded {path or 'defaults'}: " + (live.describe(changes) if changes else "no live changes")
        if kept:
            text += f"; kept from control requests: {', '.join(kept)}"
        if restart:
            text += f"; needs a restart: {', '.join(restart)}"
        log.info("%s", text)
        return self.status(at, "config", text, changed={k: list(v) for k, v in changes.items()},
                           restart_needed=restart, kept=kept, file=path)

    def reload_failed(self, at: Moment, exc: Exception) -> Status:
        """A reload that failed: the running config stays (also logged)."""
        text = str(exc) if isinstance(exc, ConfigError) else f"internal error: {type(exc).__name__}: {exc}"
        log.error("reload failed, keeping the running config: %s", text)
        return self.status(at, "error", f"reload failed, keeping the running config: {text}")

    def welcome(self, at: Moment, source_name: str, publisher) -> Status:
        """The ``welcome`` status a new ``vad.status`` subscriber gets: state, open segment, latest seq."""
        p = publisher
        return self.status(at, "welcome", f"welcome: {at.state} on {source_name}, {p.seq} message(s) "
                           "published so far", last_seq=p.seq - 1, in_speech=self.open_start is not None,
                           open_start_sample=self.open_start, segments=self.segments,
                           uptime_s=self.uptime_s(), subscriptions=p.subscriptions)

    def human(self, state: str, source_name: str, publisher) -> str:
        """One line for systemd's STATUS=."""
        p = publisher
        return (f"{state} on {source_name}; {self.segments} segment(s); published {p.seq}, "
                f"drop episodes {p.dropped}, overflows {self.overflows}")

    def stopping(self, at: Moment, why: str, publisher) -> Status:
        """The last status, ``stopping``, with the run's totals (``published`` counts itself)."""
        p = publisher
        return self.status(at, "stopping", f"stopping: {why}", audio_s=at.sample_index / SAMPLE_RATE_HZ,
                           segments=self.segments, published=p.seq + 1, dropped=p.dropped,
                           overflows=self.overflows, errors=self.errors)

    def log_totals(self, why: str, fed: int, publisher) -> None:
        """The run's totals in the log (after ``stopping`` went out)."""
        p = publisher
        log.info("stopping (%s): %.2f s of audio, %d segment(s), %d message(s) published, %d drop episode(s), "
                 "%d overflow(s), %d error(s)", why, fed / SAMPLE_RATE_HZ, self.segments, p.seq, p.dropped,
                 self.overflows, self.errors)

    def reply(self, at: Moment, *, stream, vad, source, publisher, audio_tap, cfg,
              control_endpoint: str | None) -> dict[str, Any]:
        """The control socket's ``status`` reply."""
        spec = vad.spec
        try:
            source_stats = source.stats()
        except Exception as exc:  # noqa: BLE001
            source_stats = {"error": str(exc)}
        return jsonable({
            "version": __version__, "pid": os.getpid(), "state": at.state, "ready": self.ready,
            "in_speech": stream.in_speech, "uptime_s": self.uptime_s(),
            "sample_index": at.sample_index, "audio_s": at.sample_index / SAMPLE_RATE_HZ, "segments": self.segments,
            "source": {"name": source.name, **source_stats},
            "overflows": self.overflows, "errors": self.errors,
            "publisher": publisher.stats(), "control_endpoint": control_endpoint,
            "audio": {"utterance_subscribed": audio_tap.utterances, "speech_subscribed": audio_tap.stream,
                      "history_samples": len(audio_tap.history or ()),
                      "history_capacity_samples": audio_tap.capacity_samples},
            "model": {"path": str(vad.model.path), "name": spec.name, "version": spec.version,
                      "hop_samples": stream.hop_samples, "lookahead_samples": vad.lookahead_samples,
                      "sample_rate_hz": SAMPLE_RATE_HZ},
            "config": cfg.to_dict(), "config_file": cfg.path,
        })

    # -- progress of a long unpaced file --------------------------------------------------------
    def start_progress(self, source_stats: dict[str, Any]) -> None:
        """Report progress for an unpaced file of at least ``PROGRESS_MIN_S``."""
        self.progress_step = 0
        self.progress_total = 0
        if source_stats.get("kind") == "file" and not source_stats.get("realtime", True) \
                and source_stats.get("duration_s", 0) >= PROGRESS_MIN_S:
            self.progress_total = int(source_stats["duration_s"] * SAMPLE_RATE_HZ)

    def progress(self, fed: int) -> None:
        """A log line at every tenth of the file (else nothing would show for minutes)."""
        total = self.progress_total
        if total and fed * 10 // total > self.progress_step:
            self.progress_step = fed * 10 // total
            if self.progress_step < 10:
                log.info("progress: %.1f of %.1f s of audio (%d %%), %d segment(s)", fed / SAMPLE_RATE_HZ,
                         total / SAMPLE_RATE_HZ, 10 * self.progress_step, self.segments)
