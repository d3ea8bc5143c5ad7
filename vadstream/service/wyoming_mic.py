"""The daemon's microphone as a Wyoming mic service, with voice events in the same stream.

:class:`MicService` runs wyoming's server in its own thread (an asyncio loop), so the daemon's
processing loop never waits on a client. The daemon hands it, from its own thread, what it already
has: the audio it feeds the model (:meth:`MicService.audio`), the detector's events
(:meth:`MicService.events`) and, with ``speech_only``, the ``audio.speech`` chunks of its audio
tap (:meth:`MicService.speech`); nothing is captured twice. Each client gets, in order:

- all audio (default): ``audio-start`` (timestamp of its first sample), then every block as an
  ``audio-chunk`` (16 kHz, 16-bit, mono: the samples the model was given, bit for bit for a 16 kHz
  16-bit device), with ``voice-started`` / ``voice-stopped`` where the detector decided them;
  ``audio-stop`` and a new ``audio-start`` where the stream restarts (a device lost and back);
  ``audio-stop`` when the daemon stops.
- ``speech_only``: per segment ``audio-start``, ``voice-started``, the chunks from the pre-roll on,
  ``voice-stopped``, ``audio-stop``; nothing between segments.

Timestamps are ms of the daemon's stream (``sample_index / 16``, the ``sample_index`` of the
ZeroMQ events; each event also carries ``sample_index``). A client that falls ``max_lag_s``
behind (or holds ``MAX_QUEUE_BYTES``) is dropped with one log line; the others and the daemon go on.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import socket
import threading
import time
from typing import Iterable

import numpy as np

from vadstream.service.config import WyomingConfig
from vadstream.stages.detector import Event as DetectorEvent
from vadstream.stages.samples import SAMPLE_RATE_HZ, to_int16
from vadstream.wire.audio import SpeechAudio
from vadstream.wire.wyoming_protocol import (
    AudioChunk,
    AudioStart,
    AudioStop,
    Connection,
    Event,
    Limits,
    PeerGone,
    Registry,
    info_event,
    ms,
    start_server,
    voice_event,
    voice_started,
    voice_stopped,
)

log = logging.getLogger("vadstream.wyoming")

MAX_QUEUE_BYTES = 8 * 1024 * 1024  # audio queued for one client, whatever max_lag_s allows (4 min of 16 kHz)
# Audio in flight per client below the queue: the socket's send buffer (the kernel doubles it) and
# asyncio's write buffer, about 1 s of 16 kHz audio each; so a client that stops reading is noticed
# in seconds (not after the kernel's autotuned 4 MB) and costs little memory meanwhile.
SEND_BUFFER_BYTES = 32768
START_TIMEOUT_S = 10.0


def _audio_start(sample_index: int) -> Event:
    event = AudioStart(rate=SAMPLE_RATE_HZ, width=2, channels=1, timestamp=ms(sample_index)).event()
    event.data["sample_index"] = int(sample_index)
    return event


def _audio_stop(sample_index: int) -> Event:
    event = AudioStop(timestamp=ms(sample_index)).event()
    event.data["sample_index"] = int(sample_index)
    return event


def _chunk(sample_index: int, pcm: bytes) -> Event:
    event = AudioChunk(rate=SAMPLE_RATE_HZ, width=2, channels=1, audio=pcm, timestamp=ms(sample_index)).event()
    event.data["sample_index"] = int(sample_index)
    return event


class MicConnection(Connection):
    """One client of the mic service: a queue of events and a task sending them."""

    SERVICE = "wyoming mic service"

    def __init__(self, reader, writer, *, speech_only: bool, **kwargs):
        super().__init__(reader, writer, **kwargs)
        self.speech_only = speech_only
        self.queue: collections.deque[tuple[float, Event, int]] = collections.deque()  # (queued at, event, bytes)
        self.queued_bytes = 0
        self._wake = asyncio.Event()
        self._sender: asyncio.Task | None = None
        self.next_sample: int | None = None  # all audio: where the next chunk should start (None: not started)
        self.segment: int | None = None  # speech only: start_sample of the segment being sent
        self.speech_to = 0  # speech only: the end of the audio sent

    async def started(self) -> None:
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        self.writer.transport.set_write_buffer_limits(high=SEND_BUFFER_BYTES)
        self._sender = asyncio.create_task(self._send_queued())

    async def disconnect(self) -> None:
        if self._sender is not None:
            self._sender.cancel()

    # -- what the service gives each client -------------------------------------------------------
    def push(self, event: Event, nbytes: int = 0) -> None:
        if self.closed:
            return
        now = time.monotonic()
        self.queue.append((now, event, nbytes))
        self.queued_bytes += nbytes
        waited = now - self.queue[0][0]
        if waited > self.limits.max_lag_s or self.queued_bytes > MAX_QUEUE_BYTES:
            self.fail(PeerGone(f"not reading: {self.queued_bytes // 2 / SAMPLE_RATE_HZ:.1f} s of audio waiting, "
                               f"the oldest for {waited:.1f} s (wyoming.max_lag_s {self.limits.max_lag_s:g})"))
            self.queue.clear()
            self.queued_bytes = 0
            return
        self._wake.set()

    def audio(self, start_sample: int, n: int, chunk: Event) -> None:
        if self.next_sample != start_sample:
            if self.next_sample is not None:  # the stream restarted (a device lost and back)
                self.push(_audio_stop(self.next_sample))
            self.push(_audio_start(start_sample))
        self.push(chunk, 2 * n)
        self.next_sample = start_sample + n

    def speech(self, m: SpeechAudio, chunk: Event | None) -> None:
        self.speech_to = m.end_of_audio
        if m.final:
            if self.segment == m.segment_start:
                self.push(voice_stopped(m.end_sample, m.segment_start, m.reason))
                self.push(_audio_stop(m.sample_index))
                self.segment = None
            return
        if self.segment != m.segment_start:  # a new segment (or joined in the middle of one)
            if self.segment is not None:
                self.push(_audio_stop(m.sample_index))
            self.push(_audio_start(m.sample_index))
            self.push(voice_started(m.segment_start))
            self.segment = m.segment_start
        if chunk is not None:
            self.push(chunk, 2 * m.num_samples)

    def end(self) -> None:
        """The daemon stops: close the open audio stream (its segment's end was sent before, if it had one)."""
        if self.segment is not None:
            self.push(_audio_stop(self.speech_to))
            self.segment = None
        if self.next_sample is not None:
            self.push(_audio_stop(self.next_sample))
            self.next_sample = None

    async def _send_queued(self) -> None:
        try:
            while True:
                while not self.queue:
                    self._wake.clear()
                    await self._wake.wait()
                _, event, nbytes = self.queue[0]
                await self.write_event(event)
                if self.queue:  # fail() may have emptied it meanwhile
                    self.queue.popleft()
                    self.queued_bytes -= nbytes
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - PeerGone, or a bug: run() reports it in one line
            self.fail(exc)

    async def drained(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.queue and not self.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.01)


class MicService:
    """The Wyoming mic service of one daemon; every public method is called from the daemon's thread.

    Args:
        cfg: the ``[wyoming]`` settings (``uri`` must be set).
        model_name, model_version: for the ``info`` answer.
        source_name: the daemon's audio source, for the ``info`` answer.
        socket_mode: permission bits of a ``unix://`` socket file.

    Raises OSError (one line) when it cannot serve ``cfg.uri``.
    """

    def __init__(self, cfg: WyomingConfig, *, model_name: str, model_version: str, source_name: str,
                 socket_mode: int | None = None):
        self.cfg = cfg
        self.uri = cfg.uri
        self.registry = Registry(cfg.max_clients)
        self._limits = Limits(max_payload_bytes=cfg.max_payload_bytes, max_lag_s=cfg.max_lag_s)
        self._info = info_event(model_name, model_version,
                                mic_description=f"vadstream microphone ({source_name}) with voice activity detection")
        self._server = None
        self._stdio_task: asyncio.Future | None = None
        self._loop = asyncio.new_event_loop()
        started: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(started, socket_mode), name="vadstream-wyoming",
                                        daemon=True)
        self._thread.start()
        try:
            started.result(START_TIMEOUT_S)
        except BaseException:
            self._thread.join(2)
            raise
        log.info("serving the microphone over Wyoming on %s (%s, up to %d clients)", self.uri,
                 "speech only, with pre-roll" if cfg.speech_only else "all audio", cfg.max_clients)

    # -- the loop thread ----------------------------------------------------------------------------
    def _run(self, started: concurrent.futures.Future, socket_mode: int | None) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            server = self._loop.run_until_complete(start_server(self.uri, self._connection, socket_mode=socket_mode))
        except BaseException as exc:  # noqa: BLE001 - handed to the daemon's thread
            started.set_exception(exc)
            self._loop.close()
            return
        if asyncio.iscoroutine(server):  # stdio://: the one peer on stdin/stdout
            self._stdio_task = self._loop.create_task(server)
        else:
            self._server = server
        started.set_result(None)
        self._loop.run_forever()
        self._loop.close()

    def _connection(self, reader, writer) -> MicConnection:
        return MicConnection(reader, writer, speech_only=self.cfg.speech_only, info=self._info, limits=self._limits,
                             registry=self.registry, log=log)

    def _clients(self) -> list[MicConnection]:
        return list(self.registry.connections)  # type: ignore[arg-type]

    def _call(self, fn, *args) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the service stopped
            pass

    # -- from the daemon ------------------------------------------------------------------------------
    @property
    def clients(self) -> int:
        return len(self.registry.connections)

    @property
    def wants_audio(self) -> bool:
        """Someone takes all audio: hand over every block (:meth:`audio`)."""
        return not self.cfg.speech_only and self.clients > 0

    @property
    def wants_speech(self) -> bool:
        """Someone takes speech audio only: the audio tap must cut ``audio.speech`` chunks (:meth:`speech`)."""
        return self.cfg.speech_only and self.clients > 0

    def audio(self, start_sample: int, samples: np.ndarray) -> None:
        """The float32 audio fed to the model at stream sample ``start_sample``."""
        self._call(self._audio, int(start_sample), samples.size, to_int16(samples).tobytes())

    def _audio(self, start_sample: int, n: int, pcm: bytes) -> None:
        chunk = _chunk(start_sample, pcm)
        for c in self._clients():
            if not c.speech_only:
                c.audio(start_sample, n, chunk)

    def events(self, events: Iterable[DetectorEvent]) -> None:
        """The detector's events (for the all-audio clients; speech-only ones follow the speech chunks)."""
        if self.wants_audio:
            wanted = [voice_event(e) for e in events]  # type: ignore[arg-type]
            if wanted:
                self._call(self._events, wanted)

    def _events(self, events: list[Event]) -> None:
        for c in self._clients():
            if not c.speech_only:
                for e in events:
                    c.push(e)

    def speech(self, messages: Iterable[object]) -> None:
        """The audio tap's ``audio.speech`` chunks (other messages are ignored)."""
        if self.wants_speech:
            chunks = [m for m in messages if isinstance(m, SpeechAudio)]
            if chunks:
                self._call(self._speech, chunks)

    def _speech(self, chunks: list[SpeechAudio]) -> None:
        for m in chunks:
            chunk = _chunk(m.sample_index, m.samples.astype("<i2").tobytes()) if m.num_samples else None
            for c in self._clients():
                if c.speech_only:
                    c.speech(m, chunk)

    def stats(self) -> dict:
        return {"uri": self.uri, "speech_only": self.cfg.speech_only, **self.registry.stats()}

    def close(self, timeout_s: float = 1.0) -> None:
        """End every client's audio stream, give them up to ``timeout_s`` to take it, stop serving."""
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._stop(timeout_s), self._loop).result(timeout_s + 3)
        except (concurrent.futures.TimeoutError, RuntimeError) as exc:
            log.warning("the Wyoming mic service did not stop cleanly: %s", exc or type(exc).__name__)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(2)

    async def _stop(self, timeout_s: float) -> None:
        clients = self._clients()
        for c in clients:
            c.end()
        await asyncio.gather(*(c.drained(timeout_s) for c in clients))
        if self._server is not None:
            await self._server.stop()
        if self._stdio_task is not None:
            self._stdio_task.cancel()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
