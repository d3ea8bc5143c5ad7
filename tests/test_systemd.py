"""systemd units (systemd-analyze verify, hardening traps) and the notify protocol of the real daemon
against an AF_UNIX datagram socket the test binds (as systemd would)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from daemon_util import RATE, DaemonProcess, s16le, write_wav

REPO = Path(__file__).resolve().parent.parent
UNITS = {"vadstream.service": False, "vadstream-user.service": True}  # name -> user unit


def unit_settings(name: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (REPO / "systemd" / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@pytest.mark.parametrize("name", UNITS)
def test_units_documentation_link_is_a_real_page(name):
    """Both units pointed at docs/daemon.md when it did not exist (issue 10, #10)."""
    (link,) = unit_settings(name)["Documentation"]
    assert link.startswith("file:///opt/vadstream/")  # where the README installs the repository
    page = REPO / link[len("file:///opt/vadstream/"):]
    assert page.is_file() and "RestartPreventExitStatus" in page.read_text()


@pytest.mark.parametrize("name", UNITS)
def test_units_keep_the_notify_contract_and_avoid_the_sound_traps(name):
    s = unit_settings(name)
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["Restart"] == ["on-failure"] and "2" in s["RestartPreventExitStatus"]
    assert int(s["WatchdogSec"][0]) >= 2
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["RuntimeDirectory"] == ["vadstream"]
    assert "yes" not in s.get("PrivateDevices", []), "PrivateDevices=yes hides /dev/snd"
    assert "yes" not in s.get("MemoryDenyWriteExecute", []), "breaks sounddevice's cffi callbacks"
    if not UNITS[name]:
        assert "char-alsa rw" in s["DeviceAllow"] and s["DevicePolicy"] == ["closed"]
        assert "audio" in s["SupplementaryGroups"]
        assert s["NoNewPrivileges"] == ["yes"] and s["ProtectSystem"] == ["strict"]


@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify(name, tmp_path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    vadstream = Path(sys.executable).parent / "vadstream"
    if not vadstream.is_file():
        pytest.skip(f"console script {vadstream} not installed (pip install -e .)")
    # verify checks that ExecStart exists: point it at this checkout's console script
    text = (REPO / "systemd" / name).read_text().replace("/opt/vadstream/.venv/bin/vadstream", str(vadstream))
    unit = tmp_path / name
    unit.write_text(text)
    cmd = [exe] + (["--user"] if UNITS[name] else []) + ["verify", str(unit)]
    runtime = tmp_path / "xdg"
    runtime.mkdir()
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    if result.returncode != 0 and "Failed to initialize manager" in result.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr
    problems = [line for line in result.stderr.splitlines() if name in line]
    assert problems == [], problems  # unknown keys, bad values: verify only warns about them


def notify_socket(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + path[1:] if path.startswith("@") else path)
    sock.settimeout(0.2)
    return sock


def collect(sock: socket.socket, until, timeout_s: float = 20.0) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not until(got):
        try:
            got.append(sock.recv(4096).decode())
        except socket.timeout:
            pass
    return got


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_daemon_speaks_the_notify_protocol(tmp_path, abstract):
    address = f"@vadstream-test-{os.getpid()}-{time.monotonic_ns()}" if abstract else str(tmp_path / "notify")
    sock = notify_socket(address)
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(1.5 * RATE)) / RATE)
    wav = write_wav(tmp_path / "tone.wav", tone.astype(np.float32))
    d = DaemonProcess(tmp_path, "--input", str(wav), env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"})
    try:
        got = collect(sock, lambda g: any("STOPPING=1" in m for m in g))
        assert d.wait(20) == 0, d.stderr()
    finally:
        d.kill()
        sock.close()
    ready = [i for i, m in enumerate(got) if "READY=1" in m.split("\n")]
    assert ready, got
    assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for m in got[ready[0]:]), got
    watchdogs = [i for i, m in enumerate(got) if m == "WATCHDOG=1"]
    # paced 1.5 s file, watchdog at half of 200 ms: several pings, from the processing loop
    assert len(watchdogs) >= 5, got
    assert "STOPPING=1" in got[-1].split("\n")


def test_ready_waits_for_the_first_audio_block(tmp_path):
    address = str(tmp_path / "notify")
    sock = notify_socket(address)
    d = DaemonProcess(tmp_path, "--input", "-", stdin=subprocess.PIPE, env={"NOTIFY_SOCKET": address})
    try:
        early = collect(sock, lambda g: False, timeout_s=2.5)  # started, but no audio yet
        assert not any("READY=1" in m for m in early), early
        d.proc.stdin.write(s16le(np.zeros(RATE // 10, np.float32)))
        d.proc.stdin.flush()
        got = collect(sock, lambda g: any("READY=1" in m for m in g), timeout_s=10)
        assert any("READY=1" in m for m in got), got
        d.proc.stdin.close()
        assert d.wait(10) == 0, d.stderr()
    finally:
        d.kill()
        sock.close()
