"""The daemon's steps around its loop: refuse a socket another daemon still serves, wait for a
first subscriber while control requests are answered, the signals the loop acts on, and closing
every part at the end."""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from vadstream.wire.control import ControlServer
    from vadstream.wire.publisher import Publisher

log = logging.getLogger("vadstream")

WAIT_NOTE_EVERY_S = 5.0  # --wait-subscriber: a log line this often while nobody has subscribed
WAIT_POLL_S = 0.01


class Signals:
    """SIGTERM and SIGINT ask the loop to stop, SIGHUP to reload; the handlers only note it (the loop acts)."""

    def __init__(self) -> None:
        self.stop: str | None = None  # the name of the signal that asked to stop
        self.reload = False

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        if signum == signal.SIGHUP:
            self.reload = True
        else:
            self.stop = signal.Signals(signum).name


def refuse_if_running(events_endpoint: str, control_endpoint: str | None) -> None:
    """ZeroMQ would silently take over an ipc socket file another daemon still serves: OSError."""
    from vadstream.wire.client import ControlError, request

    ep = events_endpoint
    if not ep.startswith("ipc://") or not os.path.exists(ep[len("ipc://"):]) or not control_endpoint:
        return
    try:
        other = request(control_endpoint, "status", timeout_s=0.3)["status"]
    except (ControlError, ValueError, OSError):
        return  # a stale file from a crashed run: take it over
    raise OSError(f"another vadstream (pid {other.get('pid')}) is already publishing on {ep}; stop it or "
                  "choose another --endpoint")


def wait_for_subscriber(publisher: Publisher, control: ControlServer | None, wait_s: float,
                        stopped: Callable[[], bool], endpoint: str, *, file_input: bool) -> None:
    """Up to ``wait_s``: wait for a first subscription on ``endpoint`` or ``stopped()``; control
    requests are answered meanwhile. A file or stdin (``file_input``) nobody hears is said once."""
    if wait_s > 0:
        log.info("waiting up to %g s for a subscriber on %s", wait_s, endpoint)
    t0 = time.monotonic()
    next_note = t0 + WAIT_NOTE_EVERY_S
    while publisher.subscriptions == 0 and not stopped() and time.monotonic() < t0 + wait_s:
        publisher.poll()
        if control is not None:
            control.poll()
        time.sleep(WAIT_POLL_S)
        if time.monotonic() >= next_note:
            next_note += WAIT_NOTE_EVERY_S
            log.info("still waiting for a subscriber on %s (%.0f s left)", endpoint, t0 + wait_s - time.monotonic())
    if wait_s > 0 and publisher.subscriptions:
        log.info("a subscriber connected after %.2f s", time.monotonic() - t0)
    elif wait_s > 0 and not stopped():
        log.warning("no subscriber after %g s: starting anyway", wait_s)
    if publisher.subscriptions == 0 and file_input:
        log.warning("nobody is listening on %s: messages published before a subscriber connects are lost "
                    "(--wait-subscriber S waits for one)", endpoint)


def close_all(parts: list[tuple[str, Callable[[], object] | None]]) -> None:
    """Close each ``(name, close)`` part in order (None: not there); a failure is one warning, the
    next part is still closed."""
    for name, close in parts:
        try:
            if close is not None:
                close()
        except Exception as exc:  # noqa: BLE001
            log.warning("closing the %s failed: %s", name, exc)
