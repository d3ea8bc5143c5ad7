"""A private PulseAudio server for tests: a null sink whose monitor is the default source.

``PulseServer(tmp_dir, rate_hz=48000)`` starts ``pulseaudio`` (works as root: it warns, but
runs without ``--system``) with its own runtime, state and home directories, a native-protocol
socket in ``tmp_dir`` and a null sink ``vadstream_test`` (``rate_hz``, mono) whose monitor is the
default source. Audio played into the sink with :meth:`PulseServer.play` (``paplay``) comes out
of the monitor, which PortAudio sees through ALSA's pulse plugin (``libasound2-plugins``) as
the ``pulse`` and ``default`` devices. :meth:`PulseServer.env` is the environment a client
process needs; :func:`use_in_this_process` points this process's PortAudio at the server.

Fixtures: ``pulse_server`` (48 kHz sink) and ``pulse_server_16k`` (16 kHz sink). They skip,
with the reason, only when ``pulseaudio``/``paplay`` are not installed; any other failure to
start is a test failure with the server's log.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

SINK = "vadstream_test"


def pulse_missing() -> str | None:
    """Why the harness cannot run here, or None."""
    for tool in ("pulseaudio", "paplay", "pactl"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian: pulseaudio pulseaudio-utils)"
    return None


class PulseServer:
    """One private ``pulseaudio`` process; see the module docstring."""

    def __init__(self, tmp_dir: str | os.PathLike[str], rate_hz: int = 48000, channels: int = 1):
        self.dir = Path(tmp_dir)
        self.rate_hz = rate_hz
        self.channels = channels
        self.socket = self.dir / "native"
        self.log_path = self.dir / "pulseaudio.log"
        self.proc: subprocess.Popen | None = None
        for sub in ("run", "home", "state", "xdg"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        # No autospawn: a client must never start some other server when ours is gone.
        (self.dir / "client.conf").write_text("autospawn = no\n")

    def env(self, base: dict | None = None) -> dict:
        """Environment for a client of this server (PortAudio via ALSA, paplay, pactl)."""
        env = dict(os.environ if base is None else base)
        env.update({
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_CLIENTCONFIG": str(self.dir / "client.conf"),
            "PULSE_RUNTIME_PATH": str(self.dir / "run"),
        })
        return env

    def _server_env(self) -> dict:
        env = self.env()
        env.update({
            "HOME": str(self.dir / "home"),
            "XDG_RUNTIME_DIR": str(self.dir / "xdg"),
            "XDG_CONFIG_HOME": str(self.dir / "home" / ".config"),
            "PULSE_STATE_PATH": str(self.dir / "state"),
        })
        env.pop("PULSE_SERVER", None)
        return env

    def start(self, timeout_s: float = 15.0) -> "PulseServer":
        if self.socket.exists():
            self.socket.unlink()
        args = [
            "pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit",
            "--use-pid-file=no", "--disable-shm=yes", "--log-target=stderr", "--log-level=notice",
            f"--load=module-native-protocol-unix socket={self.socket} auth-anonymous=1",
            f"--load=module-null-sink sink_name={SINK} rate={self.rate_hz} channels={self.channels}"
            f" sink_properties=device.description=vadstream-test-sink",
            "--load=module-always-sink",
        ]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, env=self._server_env(), stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pulseaudio exited with {self.proc.returncode}: {self.log()}")
            if self.socket.exists() and self.pactl("info", check=False).returncode == 0:
                self.pactl("set-default-sink", SINK)
                self.pactl("set-default-source", f"{SINK}.monitor")
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pulseaudio did not come up in {timeout_s} s: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def pactl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["pactl", *args], env=self.env(), capture_output=True, text=True,
                              timeout=10, check=check)

    def play(self, wav: str | os.PathLike[str]) -> subprocess.Popen:
        """Start playing ``wav`` into the null sink (returns the ``paplay`` process)."""
        return subprocess.Popen(["paplay", f"--device={SINK}", "--latency-msec=200", str(wav)],
                                env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def play_and_wait(self, wav: str | os.PathLike[str], timeout_s: float = 60.0) -> None:
        p = self.play(wav)
        _, err = p.communicate(timeout=timeout_s)
        if p.returncode != 0:
            raise RuntimeError(f"paplay failed ({p.returncode}): {err.decode(errors='replace')}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def kill(self) -> None:
        """Kill the server abruptly (a device that vanishes)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> "PulseServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def use_in_this_process(server: PulseServer, monkeypatch) -> list[str]:
    """Point this process's PortAudio (via ALSA's pulse plugin) at ``server``.

    Sets the client environment, re-initialises PortAudio so it rescans devices, and checks that
    the ``pulse`` device is there. Returns the input device names PortAudio sees.
    """
    import sounddevice as sd

    for key, value in server.env({}).items():
        monkeypatch.setenv(key, value)
    sd._terminate()
    sd._initialize()
    names = [d["name"] for d in sd.query_devices() if d["max_input_channels"] > 0]
    if "pulse" not in names:
        pytest.fail(f"PortAudio does not see the 'pulse' device under the test server (inputs: "
                    f"{names}); is libasound2-plugins installed?")
    return names


def start_server(tmp_path_factory, rate_hz: int) -> PulseServer:
    """A started private PulseAudio server (skips the test without PulseAudio; fails if it cannot start)."""
    why = pulse_missing()
    if why:
        pytest.skip(why)
    server = PulseServer(tmp_path_factory.mktemp(f"pulse{rate_hz}"), rate_hz=rate_hz)
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    return server


def _server_in_this_process(tmp_path_factory, monkeypatch, rate_hz: int):
    server = start_server(tmp_path_factory, rate_hz)
    use_in_this_process(server, monkeypatch)
    yield server
    server.stop()
    _reset_portaudio()


@pytest.fixture
def pulse_server(tmp_path_factory, monkeypatch):
    """A running private PulseAudio server with a 48 kHz null sink; this process uses it."""
    yield from _server_in_this_process(tmp_path_factory, monkeypatch, 48000)


@pytest.fixture
def pulse_server_16k(tmp_path_factory, monkeypatch):
    """As ``pulse_server`` with a 16 kHz null sink."""
    yield from _server_in_this_process(tmp_path_factory, monkeypatch, 16000)


def _reset_portaudio() -> None:
    import sounddevice as sd

    try:
        sd._terminate()
        sd._initialize()
    except Exception:
        pass
