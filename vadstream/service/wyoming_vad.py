"""``vadstream wyoming``: a Wyoming VAD service, one :class:`Stream` per connection, all of them
stepped by one :class:`~vadstream.stages.multistream.MultiStream` (one model session, one ONNX
call for the chunks of every connection that arrived together: :class:`Batcher`).

A client sends ``audio-start``, ``audio-chunk`` s and ``audio-stop`` (any rate from 4 to 384 kHz,
8/16/24/32-bit, mono or stereo), and gets ``voice-started`` / ``voice-stopped`` whose
``timestamp`` is the segment boundary in ms from its ``audio-start`` (the same segments as
``vadstream file`` gives for that audio). Audio is converted to 16 kHz 16-bit mono by Wyoming's
own ``AudioChunkConverter``, as every Wyoming service converts it (stereo channels summed,
``audioop.ratecv`` resampling). ``audio-stop`` ends the stream as the end of a file does (an open
segment ends, reason ``end_of_input``); the next ``audio-start`` starts again at 0 ms. A chunk
without an ``audio-start`` starts a stream in the chunk's format. ``describe`` is answered with
``info``. Connections are independent: one's bad input or lag ends it alone
(:mod:`vadstream.wire.wyoming_protocol`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Callable, Hashable

import numpy as np

from vadstream.audio.blocks import INPUT_BOUNDS
from vadstream.service.config import Config
from vadstream.stages.multistream import MultiStream
from vadstream.stages.samples import SAMPLE_RATE_HZ
from vadstream.stages.stream import StreamOutput
from vadstream.wire.wyoming_protocol import (
    AudioChunk,
    AudioChunkConverter,
    AudioStart,
    AudioStop,
    Connection,
    Event,
    Limits,
    Registry,
    WyomingInputError,
    info_event,
    start_server,
    voice_event,
)

log = logging.getLogger("vadstream.wyoming")

RATE_BOUNDS_HZ = INPUT_BOUNDS["samplerate_hz"]  # the rates vadstream takes from files and devices
WIDTHS = (1, 2, 3, 4)  # bytes per sample audioop converts
CHANNELS = (1, 2)  # AudioChunkConverter makes mono from these only


class AudioInput:
    """One client's audio stream as 16 kHz mono int16, converted as Wyoming's AudioChunkConverter does."""

    def __init__(self, rate: object, width: object, channels: object):
        self.format = check_format(rate, width, channels)
        self._converter = AudioChunkConverter(rate=SAMPLE_RATE_HZ, width=2, channels=1)
        self.client_samples = 0  # at the client's rate

    def samples(self, chunk: AudioChunk) -> np.ndarray:
        fmt = check_format(chunk.rate, chunk.width, chunk.channels)
        if fmt != self.format:  # the client changed format mid-stream: a fresh resampler state
            self.format = fmt
            self._converter = AudioChunkConverter(rate=SAMPLE_RATE_HZ, width=2, channels=1)
        _, width, channels = fmt
        frame = width * channels
        if len(chunk.audio) % frame:
            raise WyomingInputError(f"audio-chunk of {len(chunk.audio)} bytes is not a whole number of "
                                    f"{width}-byte x {channels}-channel frames")
        self.client_samples += len(chunk.audio) // frame
        return np.frombuffer(self._converter.convert(chunk).audio, dtype="<i2")

    @property
    def seconds(self) -> float:
        return self.client_samples / self.format[0]


def check_format(rate: object, width: object, channels: object) -> tuple[int, int, int]:
    """``(rate, width, channels)`` of an audio event, or :class:`WyomingInputError` saying what is wrong."""
    low, high = RATE_BOUNDS_HZ
    for name, value, ok, allowed in (("rate", rate, lambda v: low <= v <= high, f"{low} to {high} Hz"),
                                     ("width", width, lambda v: v in WIDTHS, "1, 2, 3 or 4 bytes"),
                                     ("channels", channels, lambda v: v in CHANNELS, "1 or 2")):
        if isinstance(value, bool) or not isinstance(value, int) or not ok(value):
            raise WyomingInputError(f"audio {name} {value!r} is not supported: {allowed}", "bad-audio-format")
    return int(rate), int(width), int(channels)  # type: ignore[arg-type]


def audio_event(cls, event: Event):
    """``cls.from_event(event)`` (AudioStart, AudioChunk), missing fields as one line."""
    try:
        return cls.from_event(event)
    except KeyError as exc:
        raise WyomingInputError(f"{event.type} without {exc.args[0]!r}", "bad-audio-format") from None


class Batcher:
    """Steps one :class:`MultiStream` for all connections, from the event loop.

    A connection hands in its chunk and waits for its output; the first chunk of a step waits one
    turn of the event loop, so the chunks that other connections have ready join it, and every
    chunk that arrives while a step runs goes in the next one: one model call per step however
    many clients (more per step the busier the service), no added delay when idle. A connection
    waits for its answer before it reads its next event, so a step holds one chunk per stream."""

    def __init__(self, engine: MultiStream):
        self.engine = engine
        self._waiting: list[tuple[Hashable, np.ndarray, asyncio.Future]] = []
        self._task: asyncio.Future | None = None
        self.steps = 0
        self.chunks = 0

    async def process(self, stream_id: Hashable, samples: np.ndarray) -> StreamOutput:
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((stream_id, samples, future))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return await future

    async def _run(self) -> None:
        await asyncio.sleep(0)  # the chunks other connections have ready join this step
        while self._waiting:
            # a connection that went away meanwhile (server stopping) is not stepped
            batch = [w for w in self._waiting if not w[2].done() and w[0] in self.engine]
            self._waiting = []
            try:
                outs = self.engine.process([(stream_id, samples) for stream_id, samples, _ in batch])
            except Exception as exc:  # noqa: BLE001 - each connection reports it as its own internal error
                for _, _, future in batch:
                    future.set_exception(exc)
            else:
                self.steps += bool(batch)
                self.chunks += len(batch)
                for stream_id, _, future in batch:
                    if not future.done():
                        future.set_result(outs[stream_id])
            await asyncio.sleep(0)

    def stats(self) -> str:
        per_step = self.chunks / self.steps if self.steps else 0.0
        return f"{self.chunks} chunks in {self.steps} model steps ({per_step:.1f} per step)"


class VadConnection(Connection):
    """One client: its audio through its own stream of the shared :class:`MultiStream`; voice
    events back, in ms of its audio."""

    KNOWN = frozenset({"audio-start", "audio-chunk", "audio-stop"})
    SERVICE = "wyoming vad service"

    def __init__(self, reader, writer, *, batcher: Batcher, **kwargs):
        super().__init__(reader, writer, **kwargs)
        self._batcher = batcher
        self._engine = batcher.engine
        self.audio: AudioInput | None = None  # the open audio stream

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self in self._engine:  # its place in the engine is free again
                self._engine.remove(self)

    async def handle(self, event: Event) -> None:
        if AudioStart.is_type(event.type):
            await self._finish()
            start = audio_event(AudioStart, event)
            self._open(AudioInput(start.rate, start.width, start.channels))
        elif AudioChunk.is_type(event.type):
            chunk = audio_event(AudioChunk, event)
            if self.audio is None:
                self._open(AudioInput(chunk.rate, chunk.width, chunk.channels))
            await self._send(await self._batcher.process(self, self.audio.samples(chunk)))  # type: ignore[union-attr]
        elif AudioStop.is_type(event.type):
            await self._finish()

    def _open(self, audio: AudioInput) -> None:
        if self in self._engine:
            self._engine.stream(self).reset()
        else:  # at the first audio: describe-only clients take no place
            self._engine.add(self)
        self.audio = audio

    async def _finish(self) -> None:
        """End the open audio stream (as the end of a file): the last hops, an open segment's end."""
        if self.audio is not None:
            self.audio = None
            await self._send(self._engine.stream(self).close())

    async def _send(self, out: StreamOutput) -> None:
        for ev in out.events:
            await self.write_event(voice_event(ev))

    async def peer_closed(self) -> None:
        if self.audio is not None:
            self.log.warning("%s %s: closed the connection mid-stream, after %.2f s of audio without audio-stop",
                             self.SERVICE, self.peer, self.audio.seconds)

    def mid_stream(self) -> str:
        return f" mid-stream, after {self.audio.seconds:.2f} s of audio" if self.audio is not None else ""


async def serve(uri: str, cfg: Config, stop: asyncio.Event, ready: Callable[[str], None] | None = None) -> None:
    """Serve the VAD service on ``uri`` until ``stop`` is set (or, on ``stdio://``, the peer leaves)."""
    engine = MultiStream(cfg.model.path, cfg.detector)  # the model loads once, now: a bad one fails at start
    batcher = Batcher(engine)
    spec = engine.spec
    w = cfg.wyoming
    info = info_event(spec.name, spec.version)
    limits = Limits(max_payload_bytes=w.max_payload_bytes, max_lag_s=w.max_lag_s)
    registry = Registry(w.max_clients)

    def connection(reader, writer) -> VadConnection:
        return VadConnection(reader, writer, batcher=batcher, info=info, limits=limits, registry=registry, log=log)

    server = await start_server(uri, connection, socket_mode=cfg.publisher.ipc_mode_bits)
    how = "one model call per step for all clients" if engine.batched else \
        "one model session per client: the model is not batch-dynamic"
    log.info("serving Wyoming voice activity detection on %s (model %s %s, up to %d clients, %s)", uri, spec.name,
             spec.version, w.max_clients, how)
    if ready is not None:
        ready(uri)
    if asyncio.iscoroutine(server):  # stdio: one peer, until it leaves or a stop signal
        task = asyncio.ensure_future(server)
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for t in (task, stopping):
            t.cancel()
        return
    try:
        await stop.wait()
    finally:
        await server.stop()  # type: ignore[union-attr]
        log.info("stopped: %s; %s", registry.stats(), batcher.stats())


def run(uri: str, cfg: Config, ready: Callable[[str], None] | None = None) -> None:
    """:func:`serve` until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(uri, cfg, stop, ready)

    asyncio.run(main())
