"""The daemon's log lines: one line per record on stderr, ``vadstream: <level>: <text>``, or with
``<N>`` syslog priority prefixes when stderr is the systemd journal."""

from __future__ import annotations

import logging
import os
import sys


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
