"""Where the daemon's sockets are when no endpoint is configured: ``ipc://`` files in the
runtime directory (``$XDG_RUNTIME_DIR/vadstream`` for a user, ``/run/vadstream`` for root)."""

from __future__ import annotations

import os
from pathlib import Path

SYSTEM_RUNTIME_DIR = Path("/run/vadstream")


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/vadstream`` for a user, ``/run/vadstream`` for root or without it."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if os.geteuid() == 0 or not xdg:
        return SYSTEM_RUNTIME_DIR
    return Path(xdg) / "vadstream"


def default_endpoint(name: str = "events") -> str:
    """``ipc://<runtime dir>/<name>`` (``events`` or ``control``)."""
    return f"ipc://{runtime_dir() / name}"
