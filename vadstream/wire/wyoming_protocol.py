"""The Wyoming protocol at vadstream's edge, on the ``wyoming`` package (the reference implementation).

Wyoming (Rhasspy, Home Assistant) frames an event as one JSON header line, optional extra JSON
data and an optional binary payload; the ``wyoming`` package reads and writes that framing and
vadstream never re-implements it. This module adds what a daemon facing the network needs around
it, and the mapping of vadstream's speech events:

- :class:`Connection`: one peer, served through wyoming's ``AsyncEventHandler``. Events are read
  with wyoming's ``async_read_event`` through :class:`CheckedReader`, which checks each header
  before wyoming trusts it (a JSON object with a string ``type``; ``data_length`` and
  ``payload_length`` non-negative integers under the limits; a header that has begun, and the
  bytes it announces, arriving within ``max_lag_s``); writes must be taken within ``max_lag_s``.
  Whatever goes wrong with one peer (a malformed or oversized header, a payload length that lies,
  an unknown event type, a peer that vanishes mid-stream or never reads) ends that connection with
  one log line and, where the peer still listens, an ``error`` event; other connections never
  notice. ``describe`` is answered with ``info``, ``ping`` with ``pong``.
- :func:`voice_event`: a detector ``SpeechStart`` / ``SpeechEnd`` as ``voice-started`` /
  ``voice-stopped``: ``timestamp`` in ms of the stream (sample index / 16), plus vadstream's
  ``sample_index`` (16 kHz), ``probability``, and on stops ``start_sample`` and ``reason``.
- :func:`info_event`: the ``info`` answer (vadstream, its version, the model and its version).
- :func:`start_server`: a wyoming server for ``tcp://``, ``unix://`` (refusing a socket another
  program still serves) or ``stdio://``.

Importing this module needs the ``wyoming`` extra (``pip install 'vadstream[wyoming]'``); without
it :class:`WyomingMissing` (an ImportError) says so in one line. Nothing on the daemon's path
imports it unless a Wyoming service is asked for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import socket
import sys
import warnings
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import urlparse

from vadstream import __version__
from vadstream.stages.detector import SpeechEnd, SpeechStart
from vadstream.stages.samples import SAMPLE_RATE_HZ


class WyomingMissing(ImportError):
    """The ``wyoming`` package is not installed (one line saying how to get it)."""


try:
    with warnings.catch_warnings():  # wyoming.audio imports audioop, deprecated since Python 3.11
        warnings.simplefilter("ignore", DeprecationWarning)
        from wyoming.audio import AudioChunk, AudioChunkConverter, AudioFormat, AudioStart, AudioStop
        from wyoming.error import Error
        from wyoming.event import Event, async_get_stdin, async_get_stdout, async_read_event, async_write_event
        from wyoming.info import Artifact, Attribution, Describe, Info, MicProgram
        from wyoming.ping import Ping, Pong
        from wyoming.server import AsyncEventHandler, AsyncServer
        from wyoming.vad import VoiceStarted, VoiceStopped
except ImportError as _exc:
    raise WyomingMissing("the Wyoming services need the wyoming package: pip install 'vadstream[wyoming]' "
                         f"(or make setup-test); {_exc}") from None

__all__ = ["AudioChunk", "AudioChunkConverter", "AudioStart", "AudioStop", "Event"]  # for the services: wyoming's
# audio events, imported here once with audioop's deprecation warning silenced

MAX_HEADER_BYTES = 65536  # a header line, and its extra data: asyncio's StreamReader limit, which wyoming's servers use
MS_PER_SAMPLE = 1000 / SAMPLE_RATE_HZ
SELECT_PROGRAM = "select-program"  # wyoming >= 1.8: the client names the program it wants
ATTRIBUTION = Attribution(name="vadstream", url="")  # the project publishes no URL


class WyomingInputError(Exception):
    """What a peer did wrong, in one line; its connection is dropped."""

    def __init__(self, message: str, code: str = "bad-input"):
        super().__init__(message)
        self.code = code


class PeerGone(Exception):
    """The peer closed or reset the connection, or stopped reading; nothing more can be sent to it."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-connection limits (``[wyoming]`` in the config; docs/wyoming.md).

    Attributes:
        max_payload_bytes: the largest ``payload_length`` accepted.
        max_lag_s: a write not taken, or announced bytes not arriving, within this long drops the peer.
    """

    max_payload_bytes: int = 1_048_576
    max_lag_s: float = 2.0


def ms(sample_index: int) -> int:
    """A 16 kHz stream sample index as Wyoming's millisecond timestamp (exact for multiples of 16)."""
    return int(round(sample_index * MS_PER_SAMPLE))


# --- reading ------------------------------------------------------------------------------------

def _byte_count(header: dict[str, Any], key: str, limit: int, setting: str) -> None:
    value = header.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WyomingInputError(f"{key} {value!r} is not a byte count")
    if value > limit:
        raise WyomingInputError(f"{key} {value} is over the limit of {limit} bytes{setting}", "too-large")


def check_header(line: bytes, max_payload_bytes: int) -> dict[str, Any]:
    """The header line as a dict, checked before wyoming acts on it; else :class:`WyomingInputError`."""
    try:
        header = json.loads(line)
    except ValueError:  # not JSON, or not UTF-8
        raise WyomingInputError(f"malformed header (not JSON): {line[:40]!r}") from None
    if not isinstance(header, dict):
        raise WyomingInputError(f"malformed header: a JSON {type(header).__name__}, not an object")
    kind = header.get("type")
    if not isinstance(kind, str) or not kind or not kind.isprintable():
        raise WyomingInputError(f"malformed header: no event type (\"type\" is {kind!r})")
    if not isinstance(header.get("data", {}), dict):
        raise WyomingInputError(f"malformed {kind!r} header: \"data\" is not a JSON object")
    _byte_count(header, "data_length", MAX_HEADER_BYTES, "")
    _byte_count(header, "payload_length", max_payload_bytes, " (wyoming.max_payload_bytes)")
    return header


class CheckedReader:
    """The two calls wyoming's ``async_read_event`` makes on a StreamReader, with vadstream's checks:
    each header line is checked (:func:`check_header`) before wyoming reads what it announces, and
    the announced bytes must arrive within ``max_lag_s``."""

    def __init__(self, reader: asyncio.StreamReader, limits: Limits):
        self.reader = reader
        self.limits = limits
        self.eof = False
        self.header: dict[str, Any] = {}

    def feed_eof(self) -> None:  # wyoming's AsyncEventHandler.stop() calls it
        self.reader.feed_eof()

    async def readline(self) -> bytes:
        """The next header line: waits as long as it takes for its first byte (an idle peer is
        fine), then the rest must come within ``max_lag_s``."""
        try:
            line = await self.reader.read(1)
            if line:
                line += await asyncio.wait_for(self.reader.readline(), self.limits.max_lag_s)
        except ValueError:  # asyncio's LimitOverrunError: no newline within the reader's limit
            raise WyomingInputError(f"header line over {MAX_HEADER_BYTES} bytes", "too-large") from None
        except asyncio.TimeoutError:
            raise WyomingInputError(f"a header did not end (no newline) within {self.limits.max_lag_s:g} s",
                                    "timeout") from None
        except (ConnectionError, OSError) as exc:
            raise PeerGone(f"connection lost ({type(exc).__name__})") from None
        if not line:
            self.eof = True
            return line
        if not line.endswith(b"\n"):
            raise PeerGone(f"connection closed in the middle of a header ({len(line)} bytes of it came)")
        self.header = check_header(line, self.limits.max_payload_bytes)
        return line

    async def readexactly(self, n: int) -> bytes:
        kind = self.header.get("type")
        try:
            return await asyncio.wait_for(self.reader.readexactly(n), self.limits.max_lag_s)
        except asyncio.IncompleteReadError as exc:
            raise PeerGone(f"connection closed {len(exc.partial)} bytes into the {n} bytes its {kind!r} header "
                           "announced") from None
        except asyncio.TimeoutError:
            raise WyomingInputError(f"the {n} bytes its {kind!r} header announced did not arrive within "
                                    f"{self.limits.max_lag_s:g} s (a payload_length that lies?)", "timeout") from None
        except (ConnectionError, OSError) as exc:
            raise PeerGone(f"connection lost in a payload ({type(exc).__name__})") from None


async def read_event(reader: CheckedReader) -> Event | None:
    """The next event (wyoming's own reader), or None when the peer closed the connection cleanly."""
    try:
        event = await async_read_event(reader)  # type: ignore[arg-type]  # it calls readline/readexactly only
    except (TypeError, AttributeError, KeyError) as exc:
        raise WyomingInputError(f"malformed event: {type(exc).__name__}: {exc}") from None
    if event is None and not reader.eof:  # wyoming returns None for a ValueError too
        raise WyomingInputError(f"malformed {reader.header.get('type')!r} event: its extra data is not a JSON object")
    if event is not None and not isinstance(event.data, dict):
        raise WyomingInputError(f"malformed {event.type!r} event: its data is not a JSON object")
    return event


# --- one connection -------------------------------------------------------------------------------

def peer_name(writer: asyncio.StreamWriter, number: int) -> str:
    """``client HOST:PORT`` (tcp), ``client #N`` (unix: its sockets have no names) or ``stdio``."""
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"client {peer[0]}:{peer[1]}"
    return "stdio" if writer.get_extra_info("socket") is None else f"client #{number}"


class Registry:
    """The connections of one server, at most ``max_clients`` at once."""

    def __init__(self, max_clients: int):
        self.max_clients = max_clients
        self.connections: set[Connection] = set()
        self.served = 0  # connections admitted so far
        self.refused = 0
        self.dropped = 0  # connections ended for bad input or lag

    def admit(self, connection: "Connection") -> bool:
        if len(self.connections) >= self.max_clients:
            self.refused += 1
            return False
        self.connections.add(connection)
        self.served += 1
        return True

    def stats(self) -> dict[str, int]:
        return {"clients": len(self.connections), "served": self.served, "refused": self.refused,
                "dropped": self.dropped, "max_clients": self.max_clients}


class Connection(AsyncEventHandler):
    """One Wyoming peer; subclasses implement :meth:`handle` for the events of their service.

    ``KNOWN`` are the event types the service takes besides ``describe``, ``ping`` and
    ``select-program``; any other type ends the connection (a peer speaking another domain is
    misconfigured: it is told so instead of being ignored)."""

    KNOWN: frozenset[str] = frozenset()
    SERVICE = "wyoming"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, info: Event,
                 limits: Limits, registry: Registry, log: logging.Logger):
        super().__init__(reader, writer)
        self.reader = CheckedReader(reader, limits)  # type: ignore[assignment]
        self.info = info
        self.limits = limits
        self.registry = registry
        self.log = log
        self.peer = peer_name(writer, registry.served + registry.refused + 1)
        self.closed = False
        self.failure: Exception | None = None

    async def run(self) -> None:
        """Serve the peer until it leaves or goes wrong (one log line then); never raises."""
        if not self.registry.admit(self):
            self.log.warning("%s %s: refused: %d clients already (wyoming.max_clients)", self.SERVICE, self.peer,
                             self.registry.max_clients)
            await self._tell(f"refused: {self.registry.max_clients} clients already", "too-many-clients")
            self._close()
            return
        self.log.debug("%s %s: connected", self.SERVICE, self.peer)
        self._is_running = True  # AsyncEventHandler.stop() (the server stopping) clears it
        try:
            await self.started()
            await self._serve()
        except asyncio.CancelledError:
            pass  # the server is stopping
        except Exception as exc:  # noqa: BLE001 - reported below: one connection's trouble stays its own
            self.failure = self.failure or exc
        finally:
            self.registry.connections.discard(self)
            if self.failure is not None:
                await self._report(self.failure)
            await self.disconnect()
            self._close()

    async def _serve(self) -> None:
        while not self.closed:
            event = await read_event(self.reader)  # type: ignore[arg-type]
            if self.failure is not None:  # fail() was called meanwhile
                return
            if event is None:
                if self._is_running:  # the peer's doing, not the server stopping
                    await self.peer_closed()
                return
            if not await self.handle_event(event):
                return

    def fail(self, exc: Exception) -> None:
        """End the connection from another task (e.g. a sender that found the peer not reading);
        :meth:`run` reports ``exc`` as the connection's one log line."""
        if self.failure is None:
            self.failure = exc
        self._close()  # the read loop sees the end of the stream

    async def _report(self, exc: Exception) -> None:
        if isinstance(exc, (WyomingInputError, PeerGone)):
            self.registry.dropped += 1
            self.log.warning("%s %s: %s%s; connection dropped", self.SERVICE, self.peer, exc,
                             self.mid_stream() if isinstance(exc, PeerGone) else "")
            if isinstance(exc, WyomingInputError):
                await self._tell(str(exc), exc.code)
        else:  # a bug in vadstream: one line, details at debug level
            self.log.error("%s %s: internal error: %s: %s; connection dropped", self.SERVICE, self.peer,
                           type(exc).__name__, exc)
            self.log.debug("traceback", exc_info=exc)
            await self._tell("internal error", "internal-error")

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(self.info)
        elif Ping.is_type(event.type):
            await self.write_event(Pong(text=Ping.from_event(event).text).event())
        elif event.type == SELECT_PROGRAM:
            name = event.data.get("name")
            if name != "vadstream":
                raise WyomingInputError(f"select-program {name!r}: this service has one program, 'vadstream'",
                                        "unknown-program")
        elif event.type in self.KNOWN:
            await self.handle(event)
        else:
            takes = ", ".join(sorted({"describe", "ping", SELECT_PROGRAM} | self.KNOWN))
            raise WyomingInputError(f"unknown event type {event.type!r} (the {self.SERVICE} takes {takes})",
                                    "unknown-event")
        return True

    async def write_event(self, event: Event) -> None:
        """Send ``event``; a peer that does not take it within ``max_lag_s`` is gone (:class:`PeerGone`)."""
        try:
            await asyncio.wait_for(async_write_event(event, self.writer), self.limits.max_lag_s)
        except asyncio.TimeoutError:
            raise PeerGone(f"not reading: a write waited over {self.limits.max_lag_s:g} s "
                           "(wyoming.max_lag_s)") from None
        except (ConnectionError, OSError, RuntimeError) as exc:  # RuntimeError: the transport is closing
            raise PeerGone(f"connection lost while sending ({type(exc).__name__})") from None

    # -- for subclasses ------------------------------------------------------------------------
    async def started(self) -> None:
        """The connection was admitted (before its first event is read)."""

    async def handle(self, event: Event) -> None:
        """One event of a type in ``KNOWN``; raise :class:`WyomingInputError` for bad content."""

    async def peer_closed(self) -> None:
        """The peer closed the connection cleanly (log what it left unfinished)."""

    def mid_stream(self) -> str:
        """Words for a log line about a lost peer: what it was in the middle of ('' if nothing)."""
        return ""

    # -- helpers -------------------------------------------------------------------------------
    async def _tell(self, text: str, code: str) -> None:
        """A last ``error`` event to a peer that may still listen (never waits long, never raises)."""
        try:
            await asyncio.wait_for(async_write_event(Error(text=text, code=code).event(), self.writer), 0.5)
        except Exception:  # noqa: BLE001 - it is going away anyway
            pass

    def _close(self) -> None:
        self.closed = True
        transport = self.writer.transport
        try:
            if transport.get_write_buffer_size():
                transport.abort()  # what it did not read is dropped with it: memory is freed now
            else:
                self.writer.close()
        except Exception:  # noqa: BLE001
            pass


# --- events -------------------------------------------------------------------------------------

def voice_started(sample_index: int, probability: float | None = None) -> Event:
    """``voice-started`` at 16 kHz stream sample ``sample_index`` (``timestamp`` in ms, and the sample)."""
    out = VoiceStarted(timestamp=ms(sample_index)).event()
    out.data["sample_index"] = int(sample_index)
    if probability is not None:
        out.data["probability"] = round(float(probability), 4)
    return out


def voice_stopped(sample_index: int, start_sample: int, reason: str) -> Event:
    """``voice-stopped`` at ``sample_index``, for the segment that started at ``start_sample``."""
    out = VoiceStopped(timestamp=ms(sample_index)).event()
    out.data.update(sample_index=int(sample_index), start_sample=int(start_sample), reason=str(reason))
    return out


def voice_event(event: SpeechStart | SpeechEnd) -> Event:
    """A detector event (16 kHz stream sample indices) as Wyoming's ``voice-started`` / ``voice-stopped``."""
    if isinstance(event, SpeechStart):
        return voice_started(event.sample_index, event.probability)
    return voice_stopped(event.sample_index, event.start_sample, getattr(event.reason, "value", event.reason))


def info_event(model_name: str, model_version: str, *, mic_description: str | None = None) -> Event:
    """The ``info`` answer to ``describe``: a ``vad`` program (vadstream, its version and its model;
    Wyoming's Info has no VAD list, so it is an extra key that other clients ignore) and, for the
    daemon's microphone, a ``mic`` program giving its format (16 kHz, 16-bit, mono)."""
    model = Artifact(name=model_name, attribution=ATTRIBUTION, installed=True,
                     description=f"vadstream model {model_name} {model_version}", version=model_version)
    mic = []
    if mic_description is not None:
        mic = [MicProgram(name="vadstream", attribution=ATTRIBUTION, installed=True, description=mic_description,
                          version=__version__, mic_format=AudioFormat(rate=SAMPLE_RATE_HZ, width=2, channels=1))]
    event = Info(mic=mic).event()
    event.data["vad"] = [{"name": "vadstream", "attribution": ATTRIBUTION.to_dict(), "installed": True,
                          "description": f"vadstream {__version__}: voice activity detection "
                                         f"(model {model_name} {model_version})",
                          "version": __version__, "models": [model.to_dict()]}]
    return event


# --- serving --------------------------------------------------------------------------------------

Factory = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Connection]


def _refuse_if_served(path: Path) -> None:
    """wyoming's unix server unlinks an existing socket file: refuse one another program still serves."""
    if not path.exists():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.3)
        probe.connect(str(path))
    except OSError:
        return  # a stale file from a crashed run: wyoming replaces it
    finally:
        probe.close()
    raise OSError(f"another program is serving unix://{path}; stop it or choose another URI")


async def start_server(uri: str, factory: Factory, *, socket_mode: int | None = None) -> AsyncServer | Awaitable[None]:
    """Serve ``uri``: for ``tcp://`` and ``unix://`` a started wyoming server (``await server.stop()``
    to end it); for ``stdio://`` a coroutine serving the one peer on stdin/stdout until it ends.
    ``socket_mode``: permission bits of a ``unix://`` socket file. OSError says in one line why not."""
    parsed = urlparse(uri)
    if parsed.scheme == "stdio":
        return _serve_stdio(factory)
    try:
        server = AsyncServer.from_uri(uri)
    except ValueError as exc:
        raise OSError(f"cannot serve Wyoming on {uri}: {exc}") from None
    try:
        if parsed.scheme == "unix":
            path = Path(parsed.path)
            _refuse_if_served(path)
            path.parent.mkdir(parents=True, exist_ok=True)
        await server.start(factory)
        if parsed.scheme == "unix" and socket_mode is not None:
            os.chmod(parsed.path, socket_mode)
    except OSError as exc:
        raise OSError(f"cannot serve Wyoming on {uri}: {exc.strerror or exc}") from None
    return server


async def _serve_stdio(factory: Factory) -> None:
    reader = await async_get_stdin()
    writer = await async_get_stdout()
    sys.stdout = sys.stderr  # stdout carries events now: a stray print must not corrupt them
    await factory(reader, writer).run()
