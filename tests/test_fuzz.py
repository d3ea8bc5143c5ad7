"""Fuzz suite (issue 10): every byte string a user or a peer can hand vadstream gives either a
result or one clear error line, never a traceback, and never stops a batch.

Targets: the WAV/RIFF reader (through ``vadstream file``'s own per-file call, so "never stops a
batch" is checked as the batch loop sees it), the stdin reader, the TOML config loader, and the
control socket's request parser with the real daemon's handler behind it.

``make test`` runs a bounded number of examples per target (hypothesis profile ``bounded``);
``make fuzz`` runs many more (profile ``fuzz``). Findings are recorded in docs/fuzzing.md.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from daemon_util import model_path
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from wav_bytes import chunk, fmt_body, riff, wav16k

pytestmark = pytest.mark.fuzz

settings.register_profile("bounded", max_examples=60, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("fuzz", max_examples=3000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("VADSTREAM_FUZZ_PROFILE", "bounded"))


def one_line(text: str) -> None:
    assert text and "\n" not in text and "Traceback" not in text, repr(text)


# -- WAV / RIFF -------------------------------------------------------------------------------------

INTERESTING_U32 = [0, 1, 2, 3, 15, 16, 17, 18, 40, 255, 4096, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]
RATES = [0, 1, 3999, 4000, 8000, 11025, 16000, 22050, 44100, 44101, 48000, 96000, 384000, 384001, 0xFFFFFFFF]


@st.composite
def wav_files(draw) -> bytes:
    """RIFF files built chunk by chunk, every header field chosen to hurt."""
    fmt = fmt_body(tag=draw(st.sampled_from([0, 1, 2, 3, 6, 7, 0xFFFE, 0xFFFF])),
                   channels=draw(st.sampled_from([0, 1, 2, 3, 8, 255, 1024, 1025, 65535])),
                   rate=draw(st.sampled_from(RATES)),
                   bits=draw(st.sampled_from([0, 1, 4, 8, 12, 16, 20, 24, 32, 33, 64, 65535])))
    if draw(st.booleans()):  # WAVE_FORMAT_EXTENSIBLE tail with a subformat
        fmt += struct.pack("<HHI", 22, 16, 3) + struct.pack("<H", draw(st.sampled_from([1, 3, 2]))) + b"\0" * 14
    fmt = fmt[: draw(st.integers(0, len(fmt)))] if draw(st.booleans()) else fmt
    samples = draw(st.binary(max_size=4000))
    size = st.one_of(st.none(), st.sampled_from(INTERESTING_U32), st.integers(0, 2**32 - 1))
    chunks = {
        "fmt": chunk(b"fmt ", fmt, draw(size)),
        "list": chunk(b"LIST", draw(st.binary(max_size=40)), draw(size)),
        "junk": chunk(draw(st.binary(min_size=4, max_size=4)), draw(st.binary(max_size=40)), draw(size)),
        "data": b"data" + struct.pack("<I", draw(st.sampled_from([len(samples)] + INTERESTING_U32))) + samples,
    }
    order = draw(st.permutations(list(chunks)))
    keep = draw(st.lists(st.sampled_from(order), min_size=0, max_size=4, unique=True))
    body = riff(*[chunks[k] for k in order if k in keep or k in ("fmt", "data")],
                size=draw(st.one_of(st.none(), st.sampled_from(INTERESTING_U32))))
    return body[: draw(st.integers(0, len(body)))] if draw(st.booleans()) else body


GOOD_WAV = wav16k(0.1 * np.sin(np.arange(3200) / 5.0))


@st.composite
def mutated_wavs(draw) -> bytes:
    """A valid WAV with a few bytes overwritten, inserted or cut."""
    data = bytearray(GOOD_WAV)
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, min(len(data), 64)))  # mostly the header
        op = draw(st.sampled_from(["set", "insert", "cut"]))
        if op == "set" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[pos: pos + draw(st.integers(1, 8))]
    return bytes(data)


any_audio_file = st.one_of(st.binary(max_size=600), wav_files(), mutated_wavs(),
                           st.builds(lambda b: b"RIFF" + b, st.binary(max_size=200)))


@pytest.fixture(scope="module")
def vad():
    from vadstream.stages.vad import Vad

    return Vad(model_path())


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@given(data=any_audio_file)
def test_any_file_gives_segments_or_one_line_the_batch_survives(data, vad, scratch):
    """What `vadstream file`'s batch loop runs per file: only the exceptions it catches (one line
    each, printed, next file) may come out; anything else would stop the batch with a traceback."""
    from vadstream.commands.file import AudioFileError, analyse
    from vadstream.stages.detector import DetectorConfig

    path = scratch / "fuzz.wav"
    path.write_bytes(data)
    t0 = time.monotonic()
    try:
        result, audio = analyse(path, vad, DetectorConfig(), keep_audio=True)
    except (AudioFileError, OSError, ValueError) as exc:
        one_line(str(exc))
        return
    finally:
        assert time.monotonic() - t0 < 10, "one small file took over 10 s"
    assert audio.dtype == np.float32 and np.isfinite(audio).all() and np.abs(audio).max(initial=0) <= 1.0
    assert result.probs.size == math.ceil(audio.size / vad.hop_samples) and np.isfinite(result.probs).all()


@given(data=any_audio_file)
def test_any_file_opens_as_a_source_or_one_line(data, scratch):
    """The daemon's `--input FILE`: SourceError with one line, or blocks of clean audio."""
    from vadstream.audio.blocks import SourceError, SourceSpec
    from vadstream.audio.sources import open_source

    path = scratch / "fuzz-src.wav"
    path.write_bytes(data)
    try:
        src = open_source(SourceSpec(input=str(path), realtime=False))
    except SourceError as exc:
        one_line(str(exc))
        return
    with src:
        src.start()
        n = 0
        while not src.finished:
            block = src.read(0.0)
            if block is not None:
                assert block.start_sample == n and np.isfinite(block.samples).all()
                n += block.samples.size
        for status in src.poll_status():
            one_line(status.message)


# -- stdin -------------------------------------------------------------------------------------------

def read_stdin(data: bytes):
    from vadstream.audio.blocks import SourceSpec
    from vadstream.audio.stdin import StdinSource

    src = StdinSource(SourceSpec(input="-"), stream=io.BytesIO(data))
    src.start()
    parts, deadline = [], time.monotonic() + 10
    while not src.finished and time.monotonic() < deadline:
        block = src.read(0.05)
        if block is not None:
            parts.append(block.samples)
    assert src.finished, "stdin reader did not finish"
    statuses = src.poll_status()
    for s in statuses:
        one_line(s.message)
    x = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    assert np.isfinite(x).all() and np.abs(x).max(initial=0) <= 1.0
    return x, [s for s in statuses if s.kind == "error"]


@given(data=st.binary(max_size=3000))
def test_stdin_raw_bytes_are_all_audio(data):
    assume(not data.startswith(b"RIFF"))
    x, errors = read_stdin(data)
    assert errors == [] and x.size == len(data) // 2
    assert np.array_equal(x, np.frombuffer(data[: len(data) // 2 * 2], "<i2") / np.float32(32768))


@given(data=st.one_of(st.builds(lambda b: b"RIFF" + b, st.binary(max_size=300)), wav_files(), mutated_wavs()))
def test_stdin_wav_headers_give_audio_or_one_error(data):
    from vadstream.audio.stdin import _parse_wav_header

    x, errors = read_stdin(data)
    assert len(errors) <= 1
    if errors:
        assert x.size == 0
    elif not data.startswith(b"RIFF"):  # a mutation broke the magic: raw samples
        assert x.size == len(data) // 2
    else:  # a header saying s16le mono 16 kHz: the rest is audio
        offset, problem = _parse_wav_header(data)
        assert problem is None and offset > 0 and x.size == (len(data) - offset) // 2


def test_stdin_short_riff_prefix_is_not_an_odd_byte():
    """Found by the fuzz suite: under 64 bytes starting with b'RIFF' used to vanish with a
    misleading 'odd byte' warning; a header that is not a 16 kHz mono WAV is one error."""
    x, errors = read_stdin(b"RIFF" + b"\0" * 10)
    assert x.size == 0 and len(errors) == 1 and "not a WAV file" in errors[0].message


# -- TOML config -------------------------------------------------------------------------------------

SAMPLE_CONFIG = (Path(__file__).resolve().parent.parent / "systemd" / "vadstream.toml").read_bytes()


@st.composite
def config_texts(draw) -> bytes:
    text = bytearray(SAMPLE_CONFIG)
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(text)))
        text[pos:pos + draw(st.integers(0, 4))] = draw(st.binary(max_size=6))
    return bytes(text)


toml_scalars = st.one_of(st.integers(-2**70, 2**70), st.floats(allow_nan=True), st.booleans(),
                         st.text(max_size=20))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, int):
        return str(v)
    return json.dumps(v)  # a TOML basic string is a JSON string for these characters


KEYS = {"input": ["source", "device", "channel", "realtime", "block_ms", "ring_s", "samplerate_hz"],
        "model": ["path"],
        "detector": ["onset_threshold", "offset_threshold", "min_speech_ms", "min_silence_ms", "max_speech_s",
                     "speech_pad_ms"],
        "publisher": ["endpoint", "control_endpoint", "sndhwm", "prob", "heartbeat_s", "linger_ms", "ipc_mode",
                      "wait_subscriber_s"],
        "logging": ["level"], "audio": ["pre_roll_ms", "post_roll_ms"], "bogus": ["x"]}


@st.composite
def config_documents(draw) -> bytes:
    lines = []
    for section in draw(st.lists(st.sampled_from(sorted(KEYS)), unique=True, max_size=4)):
        lines.append(f"[{section}]")
        for key in draw(st.lists(st.sampled_from(KEYS[section] + ["zz", "a\\nb"]), unique=True, max_size=4)):
            lines.append(f'"{key}" = {toml_value(draw(toml_scalars))}')
    return "\n".join(lines).encode()


@given(data=st.one_of(st.binary(max_size=300), config_texts(), config_documents()))
def test_any_config_file_loads_or_is_one_line(data, scratch):
    from vadstream.service import config

    path = scratch / "fuzz.toml"
    path.write_bytes(data)
    try:
        cfg = config.load_file(path)
    except config.ConfigError as exc:
        one_line(str(exc))
        assert str(exc).startswith(f"{path}: ") or str(exc).startswith("cannot read")
        return
    cfg.detector.validate()
    assert cfg.detector.offset_threshold <= cfg.detector.onset_threshold


# -- control requests ----------------------------------------------------------------------------------

json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                                     st.floats(allow_nan=True), st.text(max_size=10)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                           max_leaves=8)
DETECTOR_KEYS = KEYS["detector"]


@st.composite
def control_requests(draw) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "config"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    req = {"cmd": draw(st.sampled_from(["config", "status", "", "CONFIG", "x"]))}
    if draw(st.booleans()):
        req["detector"] = draw(st.one_of(
            json_values, st.dictionaries(st.sampled_from(DETECTOR_KEYS + ["nope"]), json_values, max_size=3),
            st.dictionaries(st.sampled_from(DETECTOR_KEYS), st.floats(-1, 2000), max_size=6)))
    if draw(st.booleans()):
        req["prob"] = draw(json_values)
    if draw(st.booleans()):
        req[draw(st.text(max_size=5))] = draw(json_values)
    return json.dumps(req).encode()


@pytest.fixture(scope="module")
def daemon(scratch):
    """The real daemon object (file source, sockets in a scratch directory), never run."""
    from vadstream.service import config
    from vadstream.service.daemon import Daemon

    wav = scratch / "control.wav"
    wav.write_bytes(GOOD_WAV)
    cfg = config.from_mapping({"input": {"source": str(wav)}, "model": {"path": str(model_path())},
                               "publisher": {"endpoint": f"ipc://{scratch}/ev", "linger_ms": 0}})
    d = Daemon(cfg)
    yield d
    d.control.close()
    d.publisher.close(0)
    d.source.close()


@given(raw=control_requests())
def test_any_control_request_gets_one_reply_and_the_config_stays_valid(raw, daemon):
    reply = daemon.control._serve(raw)
    json.dumps(reply)  # goes back over the socket as JSON
    assert isinstance(reply.get("ok"), bool)
    if not reply["ok"]:
        one_line(reply["error"])
        assert not reply["error"].startswith("internal error"), reply  # a handler bug, not a bad request
    daemon.cfg.detector.validate()
    assert daemon.stream.config == daemon.cfg.detector


# -- Wyoming events ----------------------------------------------------------------------------------

WYOMING_TYPES = ["audio-start", "audio-chunk", "audio-stop", "describe", "ping", "select-program", "transcribe",
                 "voice-started", "", "x" * 300]
WYOMING_ANSWERS = {"voice-started", "voice-stopped", "info", "pong", "error"}
FUZZ_MAX_PAYLOAD = 4096


@st.composite
def wyoming_events(draw) -> bytes:
    """One event: a header (real and bogus types, any data, lengths that fit, lie or overflow) and
    what follows it; cut short now and then."""
    data = draw(st.one_of(
        st.none(), json_values,
        st.fixed_dictionaries({}, optional={"rate": st.sampled_from([0, 1, 8000, 16000, 44100, 48000, 10**9, "16000"]),
                                            "width": st.sampled_from([0, 1, 2, 3, 4, 5, None]),
                                            "channels": st.sampled_from([0, 1, 2, 3, -1]),
                                            "timestamp": json_values, "name": json_values})))
    header: dict = {"type": draw(st.one_of(st.sampled_from(WYOMING_TYPES), json_values))}
    if data is not None:
        header["data"] = data
    payload = draw(st.binary(max_size=600))
    extra = draw(st.one_of(st.just(b""), st.binary(max_size=30), st.just(b'{"rate": 16000}')))
    sizes = st.one_of(st.none(), st.sampled_from([0, 1, 2, 3, FUZZ_MAX_PAYLOAD, FUZZ_MAX_PAYLOAD + 1, 2**40, -1,
                                                  "12", 1.5]))
    if payload or draw(st.booleans()):
        header["payload_length"] = draw(st.one_of(st.just(len(payload)), sizes))
    if extra or draw(st.booleans()):
        header["data_length"] = draw(st.one_of(st.just(len(extra)), sizes))
    line = json.dumps(header).encode() + b"\n"
    out = line + extra + payload
    return out[: draw(st.integers(0, len(out)))] if draw(st.integers(0, 9)) == 0 else out


wyoming_streams = st.one_of(st.binary(max_size=400), st.lists(wyoming_events(), max_size=6).map(b"".join))


@pytest.fixture(scope="module")
def wyoming_service():
    """``vadstream wyoming``'s server in this process (a thread with its loop), short limits; its log records."""
    pytest.importorskip("wyoming", reason="the wyoming extra is not installed (make test installs it)")
    import asyncio
    import logging
    import socket
    import threading

    from vadstream.service import config, wyoming_vad

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = config.from_mapping({"model": {"path": str(model_path())},
                               "wyoming": {"max_lag_s": 0.2, "max_payload_bytes": FUZZ_MAX_PAYLOAD}})
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("vadstream.wyoming")
    logger.addHandler(handler)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    up = threading.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(
        wyoming_vad.serve(f"tcp://127.0.0.1:{port}", cfg, stop, ready=lambda uri: up.set())), daemon=True)
    thread.start()
    assert up.wait(30), "the Wyoming service did not start"
    yield port, records
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    logger.removeHandler(handler)


def wyoming_exchange(port: int, data: bytes) -> list:
    """Send ``data`` then end the sending side; the events the service sent until it closed."""
    import socket

    from wyoming.event import read_event

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # dropped while we were sending
            pass
        got = b""
        try:
            while chunk := sock.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
    stream, events = io.BytesIO(got), []
    while (event := read_event(stream)) is not None:
        events.append(event)
    assert stream.tell() == len(got), f"unparseable bytes from the service: {got[stream.tell():][:80]!r}"
    return events


@given(data=wyoming_streams)
def test_any_wyoming_stream_gets_events_or_one_line_and_the_service_stays(data, wyoming_service):
    """What a Wyoming client sends: only well-formed answers come back (voice events in order,
    ``info``, ``pong``, or one ``error`` before the connection ends), every log line is one line
    and none is an internal error; the service then answers the next client."""
    port, records = wyoming_service
    del records[:]
    t0 = time.monotonic()
    events = wyoming_exchange(port, data)
    assert time.monotonic() - t0 < 5, "the service held a connection whose client had finished"
    kinds = [e.type for e in events]
    assert set(kinds) <= WYOMING_ANSWERS, kinds
    assert kinds.count("error") <= 1 and (not kinds or "error" not in kinds[:-1]), kinds
    voice = [k for k in kinds if k.startswith("voice-")]
    assert voice == ["voice-started", "voice-stopped"] * (len(voice) // 2) + ["voice-started"] * (len(voice) % 2)
    for e in events:
        if e.type == "error":
            one_line(e.data["text"])
            assert e.data["code"] != "internal-error", e.data
    for r in records:
        one_line(r.getMessage())
        assert "internal error" not in r.getMessage(), r.getMessage()
    assert [e.type for e in wyoming_exchange(port, b'{"type": "describe"}\n')] == ["info"]
