"""The daemon's log lines: one line per record on stderr, ``vadstream: <level>: <text>``, or with
``<N>`` syslog priority prefixes when stderr is the systemd journal."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading


class LineFormatter(logging.Formatter):
    """One line per record; ``<N>`` syslog priority prefixes when stderr is the journal."""

    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def __init__(self, journal: bool):
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage().replace("\n", " | ")
        if self.journal:
            return f"<{self.PRIORITY.get(record.levelno, 6)}>{text}"
        return f"vadstream: {record.levelname.lower()}: {text}"


def stderr_is_journal() -> bool:
    """True when systemd connected stderr to the journal (``$JOURNAL_STREAM`` names it)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(v) for v in stream.split(":"))
        st = os.fstat(sys.stderr.fileno())
        return st.st_dev == dev and st.st_ino == ino
    except (ValueError, OSError):
        return False


def setup_logging(level: str) -> None:
    """Log ``level`` and above to stderr (replaces a handler an earlier call installed)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_vadstream", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter(stderr_is_journal()))
    handler._vadstream = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())


# PortAudio's ALSA host API and ALSA itself print straight to file descriptor 2 when a device
# goes away (a dozen "Expression '...' failed in 'src/hostapi/alsa/pa_linux_alsa.c'" lines per
# loss); the daemon already says it in one line (status "lost").
NATIVE_NOISE = re.compile(r"^(Expression '.*' failed in '.*', line: \d+|ALSA lib |PaAlsaStream|"
                          r"Cannot connect to server socket|jack server is not running|JackShmReadWritePtr)")
native_log = logging.getLogger("vadstream.native")


def filter_native_stderr() -> None:
    """Route what C libraries write to fd 2 through a thread that drops PortAudio's and ALSA's
    device-loss messages (kept at debug level) and passes everything else on unchanged.

    Python's own stderr (log lines, tracebacks) moves to a duplicate of the original stderr, so
    it never waits on the thread. Call once, before :func:`setup_logging`, in the daemon only."""
    real = os.dup(2)
    read_end, write_end = os.pipe()
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = open(real, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)

    def pump() -> None:
        with open(read_end, "rb") as pipe:
            for raw in pipe:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if NATIVE_NOISE.match(line):
                    native_log.debug("%s", line)
                else:
                    os.write(real, raw)

    threading.Thread(target=pump, name="vadstream-native-stderr", daemon=True).start()
