"""The daemon's configuration: one frozen object from defaults, a TOML file, then command-line flags.

Sections and keys (``docs/config.md`` and ``systemd/vadstream.toml`` document every key)::

    [input]     source, device, channel, realtime, block_ms, ring_s, samplerate_hz
    [model]     path
    [detector]  onset_threshold, offset_threshold, min_speech_ms, min_silence_ms, max_speech_s,
                speech_pad_ms   (vadstream.stages.detector.DetectorConfig and its validation)
    [publisher] endpoint, control_endpoint, sndhwm, prob, heartbeat_s, linger_ms, ipc_mode,
                wait_subscriber_s
    [audio]     pre_roll_ms, post_roll_ms   (speech audio topics, vadstream.wire.audio)
    [wyoming]   uri, speech_only, max_clients, max_lag_s, max_payload_bytes   (docs/wyoming.md)
    [logging]   level

Precedence: built-in defaults < the file < flags. Unknown sections or keys, wrong types and values
out of range raise :class:`ConfigError` whose message names the key, the value and what is
allowed. The file is ``--config PATH``, else ``/etc/vadstream/vadstream.toml`` when it exists.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any, Mapping

from vadstream.audio.blocks import INPUT_BOUNDS, SourceSpec
from vadstream.stages.detector import DetectorConfig
from vadstream.wire.endpoints import default_endpoint

DEFAULT_CONFIG_PATH = Path("/etc/vadstream/vadstream.toml")
MICROPHONE = "microphone"
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range (one clear line)."""


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """Where audio comes from.

    Attributes:
        source: ``"microphone"``, ``"-"`` (raw s16le mono 16 kHz on stdin) or a WAV file path.
        device: input device index or case-insensitive name substring (None: system default).
        channel: input channel to use (None: downmix all channels).
        realtime: pace file input in real time (False: as fast as possible).
        block_ms: audio block size handed to the pipeline, milliseconds.
        ring_s: capture ring buffer length, seconds.
        samplerate_hz: force the device rate in Hz (None: 16 kHz if the device can, else native).
    """

    source: str = MICROPHONE
    device: str | int | None = SourceSpec.device  # the other defaults are SourceSpec's: one place
    channel: int | None = SourceSpec.channel
    realtime: bool = SourceSpec.realtime
    block_ms: float = SourceSpec.block_ms
    ring_s: float = SourceSpec.ring_s
    samplerate_hz: int | None = SourceSpec.samplerate_hz

    @property
    def input(self) -> str | None:
        """The source as ``SourceSpec.input`` wants it: None for the microphone."""
        return None if self.source == MICROPHONE else self.source

    def source_spec(self):
        """The :class:`vadstream.audio.blocks.SourceSpec` these settings describe."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "source"}
        return SourceSpec(input=self.input, **fields)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Attributes:
        path: ONNX model file (None: the shipped ``models/vadstream.onnx``)."""

    path: str | None = None


@dataclasses.dataclass(frozen=True)
class PublisherConfig:
    """ZeroMQ sockets.

    Attributes:
        endpoint: PUB endpoint for events (None: ``ipc://`` in the runtime directory).
        control_endpoint: REP endpoint for status/config requests (None: beside the events
            socket, ``.../control``; ``"none"`` disables it).
        sndhwm: messages queued per subscriber before messages are dropped for it.
        prob: also publish one ``vad.prob`` message per hop.
        heartbeat_s: interval of ``vad.heartbeat`` messages, seconds.
        linger_ms: how long queued messages may still be delivered at exit, milliseconds.
        ipc_mode: permission bits of ``ipc://`` socket files (octal string, e.g. ``"0660"``).
        wait_subscriber_s: before reading input, wait up to this long for a first subscriber, so
            batch runs (a file with realtime off) lose no event to ZeroMQ's slow-joiner gap (0: no wait).
    """

    endpoint: str | None = None
    control_endpoint: str | None = None
    sndhwm: int = 1000
    prob: bool = False
    heartbeat_s: float = 1.0
    linger_ms: int = 500
    ipc_mode: str = "0660"
    wait_subscriber_s: float = 0.0

    BOUNDS = {"sndhwm": (1, 1_000_000), "heartbeat_s": (0.1, 3600.0), "linger_ms": (0, 10_000),
              "wait_subscriber_s": (0.0, 3600.0)}

    @property
    def ipc_mode_bits(self) -> int:
        return int(self.ipc_mode, 8)


@dataclasses.dataclass(frozen=True)
class AudioConfig:
    """Speech audio on the ``audio.utterance`` / ``audio.speech`` topics (only cut while subscribed).

    Attributes:
        pre_roll_ms: audio sent before each segment's start. The default 500 ms is at least the
            detector's onset delay plus its speech padding: the labelled onset precedes the moment
            the detector decides by ~140 ms (median) to ~400 ms (90th percentile) at the shipped
            defaults (bench/RESULTS.md, "Detector defaults"), plus ``speech_pad_ms`` 30.
        post_roll_ms: audio an utterance carries after its segment's end. The default 150 ms keeps
            the utterance going out with the ``speech_end``: the end is decided ``min_silence_ms``
            (200) after the last speech hop, plus the model's 5-25 ms lookahead, and is padded by
            ``speech_pad_ms`` (30), so 170-195 ms past the end is already there. A longer post-roll
            delays the utterance until that audio has been captured.
    """

    pre_roll_ms: float = 500.0
    post_roll_ms: float = 150.0

    BOUNDS = {"pre_roll_ms": (0.0, 10_000.0), "post_roll_ms": (0.0, 10_000.0)}


@dataclasses.dataclass(frozen=True)
class WyomingConfig:
    """The Wyoming protocol (docs/wyoming.md): the daemon's microphone as a Wyoming mic service,
    and the limits every Wyoming connection has (also ``vadstream wyoming``'s).

    Attributes:
        uri: where ``vadstream run`` serves its microphone: ``tcp://HOST:PORT``, ``unix://PATH`` or
            ``stdio://`` (None: no Wyoming mic service; ``vadstream wyoming`` takes ``--uri`` instead).
        speech_only: send only speech audio (each segment with its pre-roll, as ``audio.speech``)
            instead of all the audio.
        max_clients: connections served at once; more are refused with an ``error`` event.
        max_lag_s: how far a client may fall behind, seconds: mic audio waiting for it, a write it
            does not take, or a payload its header announced that does not arrive; then it is dropped.
        max_payload_bytes: the largest payload (an audio chunk) a client may send.
    """

    uri: str | None = None
    speech_only: bool = False
    max_clients: int = 16
    max_lag_s: float = 2.0
    max_payload_bytes: int = 1_048_576

    BOUNDS = {"max_clients": (1, 256), "max_lag_s": (0.1, 60.0), "max_payload_bytes": (1024, 67_108_864)}


@dataclasses.dataclass(frozen=True)
class LoggingConfig:
    """Attributes:
        level: least severe level written to stderr: debug, info, warning or error."""

    level: str = "info"


@dataclasses.dataclass(frozen=True)
class Config:
    input: InputConfig = InputConfig()
    model: ModelConfig = ModelConfig()
    detector: DetectorConfig = DetectorConfig()
    publisher: PublisherConfig = PublisherConfig()
    audio: AudioConfig = AudioConfig()
    wyoming: WyomingConfig = WyomingConfig()
    logging: LoggingConfig = LoggingConfig()
    path: str | None = None  # the file it was read from, if any

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (for the status reply and status events)."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    def endpoints(self) -> tuple[str, str | None]:
        """The events endpoint and the control endpoint (None when disabled), defaults resolved."""
        events = self.publisher.endpoint or default_endpoint()
        control = self.publisher.control_endpoint
        if control is None:
            control = default_endpoint("control") if not events.startswith("ipc://") else \
                events.rsplit("/", 1)[0] + "/control"
        elif control.lower() == "none":
            control = None
        return events, control


SECTIONS: dict[str, type] = {
    "input": InputConfig,
    "model": ModelConfig,
    "detector": DetectorConfig,
    "publisher": PublisherConfig,
    "audio": AudioConfig,
    "wyoming": WyomingConfig,
    "logging": LoggingConfig,
}

# The one table of numeric limits (inclusive), per section: the input limits SourceSpec checks, the
# detector's (DetectorConfig checks them), the publisher's and the speech audio's. The loader reads
# every range here; an int lower bound means the key takes integers. docs/config.md lists them.
BOUNDS: dict[str, Mapping[str, tuple[float, float]]] = {
    "input": INPUT_BOUNDS,
    "detector": DetectorConfig.BOUNDS,
    "publisher": PublisherConfig.BOUNDS,
    "audio": AudioConfig.BOUNDS,
    "wyoming": WyomingConfig.BOUNDS,
}


# --- validation --------------------------------------------------------------------------------

def _num(key: str, value: Any, low: float, high: float, integer: bool = False) -> float | int:
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise ConfigError(f"{key} = {value!r} must be {kind} from {low} to {high}")
    if not low <= value <= high:
        raise ConfigError(f"{key} = {value!r} is out of range: allowed {low} to {high}")
    return value


def _ranged(section: str, key: str, value: Any) -> float | int:
    """``value`` checked against ``BOUNDS[section][key]``: an int when the range is of ints, else a float."""
    low, high = BOUNDS[section][key]
    integer = isinstance(low, int)
    value = _num(f"{section}.{key}", value, low, high, integer=integer)
    return int(value) if integer else float(value)


def _bounds(section: str, key: str) -> str:
    low, high = BOUNDS[section][key]
    return f"{low:g} to {high:g}"


def _str(key: str, value: Any, choices: tuple[str, ...] | None = None) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key} = {value!r} must be a string")
    if choices is not None and value.lower() not in choices:
        raise ConfigError(f"{key} = {value!r} is not allowed: choose one of {', '.join(choices)}")
    return value.lower() if choices is not None else value


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} = {value!r} must be true or false")
    return value


def _endpoint(key: str, value: Any, allow_none: bool = False) -> str | None:
    value = _str(key, value)
    if value == "":
        return None
    if allow_none and value.lower() == "none":
        return "none"
    if not value.startswith(("ipc://", "tcp://", "inproc://")):
        raise ConfigError(f"{key} = {value!r} is not a ZeroMQ endpoint: use ipc://PATH or tcp://HOST:PORT"
                          + (" (or \"none\")" if allow_none else ""))
    return value


def _check_input(v: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in v.items():
        k = f"input.{key}"
        if key == "source":
            value = _str(k, value)
            out[key] = MICROPHONE if value in ("", "mic", MICROPHONE) else value
        elif key == "device":
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ConfigError(f"{k} = {value!r} must be a device index (integer >= 0) or a name substring")
            if isinstance(value, int):
                out[key] = _ranged("input", key, value)
            else:
                out[key] = value if value.strip() else None
        elif key == "channel":
            if isinstance(value, str) and value.lower() == "downmix":
                out[key] = None
            else:
                if isinstance(value, str):
                    raise ConfigError(f"{k} = {value!r} must be \"downmix\" or a channel index from "
                                      f"{_bounds('input', key)}")
                out[key] = _ranged("input", key, value)
        elif key == "realtime":
            out[key] = _bool(k, value)
        elif key == "samplerate_hz" and value == 0:
            out[key] = None
        elif key in BOUNDS["input"]:  # block_ms, ring_s, samplerate_hz
            out[key] = _ranged("input", key, value)
        else:
            _unknown("input", key)
    return out


def _check_model(v: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in v.items():
        if key == "path":
            value = _str("model.path", value)
            out[key] = value or None
        else:
            _unknown("model", key)
    return out


def _check_numbers(section: str, v: dict[str, Any]) -> dict[str, Any]:
    """A section whose keys are all numbers with a range in ``BOUNDS``."""
    out: dict[str, Any] = {}
    for key, value in v.items():
        if key not in BOUNDS[section]:
            _unknown(section, key)
        out[key] = _ranged(section, key, value)
    return out


def _check_detector(v: dict[str, Any]) -> dict[str, Any]:
    return _check_numbers("detector", v)


def _check_publisher(v: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in v.items():
        k = f"publisher.{key}"
        if key == "endpoint":
            out[key] = _endpoint(k, value)
        elif key == "control_endpoint":
            out[key] = _endpoint(k, value, allow_none=True)
        elif key in BOUNDS["publisher"]:  # sndhwm, heartbeat_s, linger_ms, wait_subscriber_s
            out[key] = _ranged("publisher", key, value)
        elif key == "prob":
            out[key] = _bool(k, value)
        elif key == "ipc_mode":
            text = _str(k, value)
            try:
                bits = int(text, 8)
            except ValueError:
                bits = -1
            if not 0 <= bits <= 0o777:
                raise ConfigError(f"{k} = {value!r} must be octal permission bits from \"0000\" to \"0777\"")
            out[key] = text
        else:
            _unknown("publisher", key)
    return out


def _check_audio(v: dict[str, Any]) -> dict[str, Any]:
    return _check_numbers("audio", v)


def wyoming_uri(key: str, value: Any) -> str | None:
    """A Wyoming URI (``tcp://HOST:PORT``, ``unix://PATH``, ``stdio://``); "" is None (off)."""
    text = _str(key, value)
    if text == "":
        return None
    scheme, _, rest = text.partition("://")
    host, _, port = rest.rpartition(":")
    ok = {"tcp": bool(host) and port.isdigit() and 0 < int(port) < 65536, "unix": bool(rest),
          "stdio": rest == ""}.get(scheme, False)
    if not ok:
        raise ConfigError(f"{key} = {value!r} is not a Wyoming URI: use tcp://HOST:PORT, unix://PATH or stdio://")
    return text


def _check_wyoming(v: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in v.items():
        k = f"wyoming.{key}"
        if key == "uri":
            out[key] = wyoming_uri(k, value)
        elif key == "speech_only":
            out[key] = _bool(k, value)
        elif key in BOUNDS["wyoming"]:  # max_clients, max_lag_s, max_payload_bytes
            out[key] = _ranged("wyoming", key, value)
        else:
            _unknown("wyoming", key)
    return out


def _check_logging(v: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in v.items():
        if key == "level":
            out[key] = _str("logging.level", value, LOG_LEVELS)
        else:
            _unknown("logging", key)
    return out


_CHECKS = {
    "input": _check_input,
    "model": _check_model,
    "detector": _check_detector,
    "publisher": _check_publisher,
    "audio": _check_audio,
    "wyoming": _check_wyoming,
    "logging": _check_logging,
}


def _shown(name: Any) -> str:
    """A key or section name for a one-line message (quoted when it holds odd characters)."""
    return name if isinstance(name, str) and name.isprintable() and name else repr(name)


def _unknown(section: str, key: str) -> None:
    allowed = [f.name for f in dataclasses.fields(SECTIONS[section])]
    raise ConfigError(f"unknown key {section}.{_shown(key)}: allowed keys in [{section}] are {', '.join(allowed)}")


def from_mapping(data: Mapping[str, Any], base: Config | None = None, path: str | None = None) -> Config:
    """Apply ``{section: {key: value}}`` on top of ``base`` (defaults), validating every value."""
    cfg = base or Config()
    sections = {name: getattr(cfg, name) for name in SECTIONS}
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown section [{_shown(section)}]: allowed sections are {', '.join(SECTIONS)}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"[{section}] must be a table of keys, got {values!r}")
        changes = _CHECKS[section](dict(values))
        try:
            sections[section] = dataclasses.replace(sections[section], **changes)
        except ValueError as exc:  # DetectorConfig's cross-field checks
            raise ConfigError(str(exc)) from None
    return Config(**sections, path=path if path is not None else cfg.path)


def load_file(path: str | os.PathLike[str], base: Config | None = None) -> Config:
    """Read a TOML file on top of ``base``; errors name the file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{p}: not UTF-8: byte 0x{raw[exc.start]:02x} on line {line} (TOML files are UTF-8; "
                          "re-save the file as UTF-8)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    try:
        return from_mapping(data, base, path=str(p))
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None


# --- command-line flags ------------------------------------------------------------------------

# argparse dest -> (section, key); flags default to None so only the given ones override.
FLAG_KEYS: dict[str, tuple[str, str]] = {
    "input": ("input", "source"),
    "device": ("input", "device"),
    "channel": ("input", "channel"),
    "realtime": ("input", "realtime"),
    "block_ms": ("input", "block_ms"),
    "samplerate_hz": ("input", "samplerate_hz"),
    "model": ("model", "path"),
    "onset_threshold": ("detector", "onset_threshold"),
    "offset_threshold": ("detector", "offset_threshold"),
    "min_speech_ms": ("detector", "min_speech_ms"),
    "min_silence_ms": ("detector", "min_silence_ms"),
    "max_speech_s": ("detector", "max_speech_s"),
    "speech_pad_ms": ("detector", "speech_pad_ms"),
    "endpoint": ("publisher", "endpoint"),
    "control_endpoint": ("publisher", "control_endpoint"),
    "hwm": ("publisher", "sndhwm"),
    "prob": ("publisher", "prob"),
    "heartbeat_s": ("publisher", "heartbeat_s"),
    "wait_subscriber_s": ("publisher", "wait_subscriber_s"),
    "pre_roll_ms": ("audio", "pre_roll_ms"),
    "post_roll_ms": ("audio", "post_roll_ms"),
    "wyoming": ("wyoming", "uri"),
    "wyoming_speech_only": ("wyoming", "speech_only"),
    "log_level": ("logging", "level"),
}


def add_arguments(parser) -> None:
    """The configuration flags of ``vadstream run`` (each overrides the file's key)."""
    _D = DetectorConfig()
    g = parser.add_argument_group("configuration (flags override the config file)")
    g.add_argument("--config", metavar="FILE",
                   help=f"TOML config file (default: {DEFAULT_CONFIG_PATH} when it exists)")
    g.add_argument("--input", metavar="SRC",
                   help="'microphone' (default), '-' for s16le 16 kHz mono on stdin, or a WAV file")
    g.add_argument("--device", metavar="DEV", help="input device index or name substring")
    g.add_argument("--channel", metavar="N", help="input channel index, or 'downmix' (default)")
    g.add_argument("--no-realtime", dest="realtime", action="store_const", const=False,
                   help="process file input as fast as possible instead of in real time")
    g.add_argument("--block-ms", type=float, metavar="MS", help="audio block size in ms")
    g.add_argument("--samplerate", dest="samplerate_hz", type=int, metavar="HZ", help="force the device rate")
    g.add_argument("--model", metavar="PATH", help="ONNX model file (default: the shipped model)")
    g.add_argument("--onset", dest="onset_threshold", type=float, metavar="P",
                   help=f"probability that starts candidate speech (default {_D.onset_threshold:g})")
    g.add_argument("--offset", dest="offset_threshold", type=float, metavar="P",
                   help=f"probability below which speech counts as a pause (default {_D.offset_threshold:g})")
    g.add_argument("--min-speech-ms", type=float, metavar="MS",
                   help=f"speech needed before speech_start (default {_D.min_speech_ms:g})")
    g.add_argument("--min-silence-ms", type=float, metavar="MS",
                   help=f"pause needed before speech_end (default {_D.min_silence_ms:g})")
    g.add_argument("--max-speech-s", type=float, metavar="S",
                   help=f"split segments longer than this (default {_D.max_speech_s:g}; 0 = never)")
    g.add_argument("--speech-pad-ms", type=float, metavar="MS",
                   help=f"padding around each segment (default {_D.speech_pad_ms:g})")
    g.add_argument("--endpoint", metavar="EP", help="events endpoint (ipc://PATH or tcp://HOST:PORT)")
    g.add_argument("--control-endpoint", metavar="EP", help="control endpoint, or 'none'")
    g.add_argument("--hwm", type=int, metavar="N", help="send high-water mark per subscriber")
    g.add_argument("--prob", action="store_const", const=True, help="publish per-hop probabilities (vad.prob)")
    g.add_argument("--heartbeat-s", type=float, metavar="S", help="heartbeat interval in seconds")
    g.add_argument("--wait-subscriber", dest="wait_subscriber_s", type=float, metavar="S",
                   help="wait up to S seconds for a first subscriber before reading input")
    _A = AudioConfig()
    g.add_argument("--pre-roll-ms", type=float, metavar="MS",
                   help=f"speech audio topics: audio before each segment (default {_A.pre_roll_ms:g})")
    g.add_argument("--post-roll-ms", type=float, metavar="MS",
                   help=f"audio.utterance: audio after each segment (default {_A.post_roll_ms:g})")
    g.add_argument("--wyoming", metavar="URI",
                   help="also serve the microphone as a Wyoming mic service with voice events (tcp://HOST:PORT, "
                        "unix://PATH or stdio://; needs the wyoming extra)")
    g.add_argument("--wyoming-speech-only", action="store_const", const=True,
                   help="the Wyoming mic service sends only speech audio, each segment with its pre-roll")
    g.add_argument("--log-level", metavar="LEVEL", help="debug, info, warning or error")


def flag_overrides(args) -> dict[str, dict[str, Any]]:
    """The flags that were given, as ``{section: {key: value}}``."""
    out: dict[str, dict[str, Any]] = {}
    for dest, (section, key) in FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if dest == "device" and isinstance(value, str) and value.isdigit():
            value = int(value)
        if dest == "channel" and isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)
        out.setdefault(section, {})[key] = value
    return out


def config_path(args) -> Path | None:
    """The file to read: ``--config`` or the default when it exists."""
    given = getattr(args, "config", None)
    if given:
        return Path(given)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def load(args=None) -> Config:
    """Defaults, then the config file, then the flags in ``args`` (an argparse namespace)."""
    path = config_path(args) if args is not None else None
    cfg = load_file(path) if path is not None else Config()
    if args is not None:
        try:
            cfg = from_mapping(flag_overrides(args), cfg)
        except ConfigError as exc:
            raise ConfigError(f"command line: {exc}") from None
    return cfg


def diff(old: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """``{"section.key": (old, new)}`` for every value that differs."""
    changes: dict[str, tuple[Any, Any]] = {}
    a, b = old.to_dict(), new.to_dict()
    for section in SECTIONS:
        for key, value in b[section].items():
            if a[section].get(key) != value:
                changes[f"{section}.{key}"] = (a[section].get(key), value)
    return changes
