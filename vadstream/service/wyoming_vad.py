"""``vadstream wyoming``: a Wyoming VAD service, one :class:`Stream` per connection.

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
from typing import Callable

import numpy as np

from vadstream.audio.blocks import INPUT_BOUNDS
from vadstream.service.config import Config
from vadstream.stages.samples import SAMPLE_RATE_HZ
from vadstream.stages.stream import Stream, StreamOutput
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


class VadConnection(Connection):
    """One client: its audio through its own :class:`Stream`; voice events back, in ms of its audio."""

    KNOWN = frozenset({"audio-start", "audio-chunk", "audio-stop"})
    SERVICE = "wyoming vad service"

    def __init__(self, reader, writer, *, new_stream: Callable[[], Stream], **kwargs):
        super().__init__(reader, writer, **kwargs)
        self._new_stream = new_stream
        self.stream: Stream | None = None  # made at the first audio (describe-only clients load no model)
        self.audio: AudioInput | None = None  # the open audio stream

    async def handle(self, event: Event) -> None:
        if AudioStart.is_type(event.type):
            await self._finish()
            start = audio_event(AudioStart, event)
            self._open(AudioInput(start.rate, start.width, start.channels))
        elif AudioChunk.is_type(event.type):
            chunk = audio_event(AudioChunk, event)
            if self.audio is None:
                self._open(AudioInput(chunk.rate, chunk.width, chunk.channels))
            await self._send(self.stream.process(self.audio.samples(chunk)))  # type: ignore[union-attr]
        elif AudioStop.is_type(event.type):
            await self._finish()

    def _open(self, audio: AudioInput) -> None:
        if self.stream is None:
            self.stream = self._new_stream()
        self.stream.reset()
        self.audio = audio

    async def _finish(self) -> None:
        """End the open audio stream (as the end of a file): the last hops, an open segment's end."""
        if self.audio is not None and self.stream is not None:
            self.audio = None
            await self._send(self.stream.close())

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
    probe = Stream(cfg.model.path, cfg.detector)  # load the model once now: a bad one fails at start, not per client
    spec = probe.vad.spec
    w = cfg.wyoming
    info = info_event(spec.name, spec.version)
    limits = Limits(max_payload_bytes=w.max_payload_bytes, max_lag_s=w.max_lag_s)
    registry = Registry(w.max_clients)

    def new_stream() -> Stream:
        return Stream(cfg.model.path, cfg.detector)

    def connection(reader, writer) -> VadConnection:
        return VadConnection(reader, writer, new_stream=new_stream, info=info, limits=limits, registry=registry,
                             log=log)

    server = await start_server(uri, connection, socket_mode=cfg.publisher.ipc_mode_bits)
    log.info("serving Wyoming voice activity detection on %s (model %s %s, up to %d clients)", uri, spec.name,
             spec.version, w.max_clients)
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
        log.info("stopped: %s", registry.stats())


def run(uri: str, cfg: Config, ready: Callable[[str], None] | None = None) -> None:
    """:func:`serve` until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(uri, cfg, stop, ready)

    asyncio.run(main())
