"""systemd's notify protocol without a dependency: one datagram per message to ``$NOTIFY_SOCKET``.

``READY=1`` once the first audio block has been processed, ``WATCHDOG=1`` from the processing
loop (so a stuck loop is noticed), ``STATUS=...`` for ``systemctl status``, ``STOPPING=1`` at
shutdown. A leading ``@`` in ``NOTIFY_SOCKET`` names a socket in the abstract namespace. Outside
systemd (no ``NOTIFY_SOCKET``) every call is a cheap no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("vadstream.service.sdnotify")


class Notifier:
    """Sends notify messages; watchdog pings are rate-limited to half of ``WATCHDOG_USEC``."""

    def __init__(self, address: str | None = None, watchdog_usec: int | None = None):
        self.address = address
        self.watchdog_interval_s: float | None = watchdog_usec / 2e6 if watchdog_usec else None
        self._sock: socket.socket | None = None
        self._last_watchdog = 0.0
        self._last_status = ""
        self._failed = False
        if address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._target = "\0" + address[1:] if address.startswith("@") else address

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Notifier":
        """The notifier systemd asked for (``NOTIFY_SOCKET``, ``WATCHDOG_USEC``, ``WATCHDOG_PID``)."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        usec = None
        try:
            if env.get("WATCHDOG_USEC"):
                pid = env.get("WATCHDOG_PID")
                if not pid or int(pid) == os.getpid():
                    usec = int(env["WATCHDOG_USEC"])
        except ValueError:
            log.warning("ignoring a malformed WATCHDOG_USEC/WATCHDOG_PID")
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; False (logged once) if it could not be sent."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode(), self._target)
            return True
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("cannot notify systemd at %s: %s", self.address, exc.strerror or exc)
            return False

    def ready(self, status: str | None = None) -> bool:
        fields = ["READY=1"] + ([f"STATUS={status}"] if status else [])
        if status:
            self._last_status = status
        return self.send(*fields)

    def status(self, text: str) -> bool:
        """``STATUS=text``, only when it changed."""
        if text == self._last_status:
            return True
        self._last_status = text
        return self.send(f"STATUS={text}")

    def watchdog(self, now: float | None = None) -> bool:
        """``WATCHDOG=1`` if the watchdog is on and half its interval has passed since the last one."""
        if self._sock is None or self.watchdog_interval_s is None:
            return False
        now = time.monotonic() if now is None else now
        if now - self._last_watchdog < self.watchdog_interval_s:
            return False
        self._last_watchdog = now
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        return self.send("RELOADING=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
