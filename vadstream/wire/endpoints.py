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


def unreachable(endpoint: str, probe: bool = True) -> str | None:
    """Why nobody can be reached on an ``ipc://`` endpoint, as one line, or None.

    Tells apart what otherwise all looks like silence: no socket file (no daemon), a socket file
    or directory this user may not use (permission denied: not in the daemon's group), and, with
    ``probe``, a socket file with no process behind it (a stale file: the daemon is not running).
    None for other transports, abstract sockets, and a socket that accepts a connection."""
    import socket
    import stat

    if not endpoint.startswith("ipc://") or endpoint[len("ipc://"):].startswith("@"):
        return None
    path = endpoint[len("ipc://"):]
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"no daemon: {path} does not exist (start one: vadstream run, or systemctl start vadstream)"
    except PermissionError:
        parent = Path(path).parent
        return f"permission denied on the directory {parent} ({_who_may(parent)})"
    except OSError as exc:
        return f"cannot use {path}: {exc.strerror}"
    if not stat.S_ISSOCK(st.st_mode):
        return f"{path} is not a socket"
    denied = f"permission denied on the socket file {path} ({_who_may(Path(path))})"
    if not os.access(path, os.R_OK | os.W_OK):
        return denied
    if not probe:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(1.0)
    try:
        sock.connect(path)
    except ConnectionRefusedError:
        return f"no process behind {path}: a stale socket file (the daemon is not running)"
    except PermissionError:
        return denied
    except OSError as exc:
        return f"cannot connect to {path}: {exc.strerror}"
    finally:
        sock.close()
    return None


def _who_may(path: Path) -> str:
    """``mode 0660, owner root, group vadstream: add yourself to that group ...``"""
    import grp
    import pwd

    try:
        st = path.stat()
    except OSError:
        return "cannot be read"
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return (f"mode {st.st_mode & 0o777:04o}, owner {owner}, group {group}: add yourself to the group: "
            f"sudo usermod -aG {group} $USER, then log in again")
