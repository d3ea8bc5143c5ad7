"""sd_notify over real AF_UNIX datagram sockets (a path and the abstract namespace)."""

from __future__ import annotations

import os
import socket

import pytest

from vadstream.service.sdnotify import Notifier


def receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    sock.settimeout(2)
    return sock


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_messages_arrive_as_datagrams(tmp_path, abstract):
    address = f"@vadstream-test-{os.getpid()}" if abstract else str(tmp_path / "notify")
    sock = receiver(address)
    n = Notifier.from_env({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"})
    assert n.enabled and n.watchdog_interval_s == pytest.approx(0.1)
    assert n.ready("listening")
    assert sock.recv(4096) == b"READY=1\nSTATUS=listening"
    assert n.watchdog(now=1000.0)
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert not n.watchdog(now=1000.05)  # rate-limited to half the interval
    assert n.watchdog(now=1000.11)
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert n.status("speaking")
    assert sock.recv(4096) == b"STATUS=speaking"
    assert n.status("speaking")  # unchanged: nothing sent
    n.stopping("bye")
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=bye"
    n.close()
    sock.close()


def test_no_socket_means_no_op():
    n = Notifier.from_env({})
    assert not n.enabled
    assert not n.ready("x") and not n.watchdog() and not n.send("X=1")


def test_watchdog_only_when_asked_for_this_pid(tmp_path):
    address = str(tmp_path / "notify")
    assert Notifier.from_env({"NOTIFY_SOCKET": address}).watchdog_interval_s is None
    other = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier.from_env(other).watchdog_interval_s is None
    mine = {**other, "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_env(mine).watchdog_interval_s == pytest.approx(0.5)


def test_unreachable_socket_does_not_raise(tmp_path):
    n = Notifier(str(tmp_path / "nobody-listens"))
    assert n.enabled and not n.ready("x")
