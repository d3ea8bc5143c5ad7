"""Config: defaults, TOML file, flag precedence, and errors that name the key, value and range."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from vadstream.service import config
from vadstream.service.config import Config, ConfigError

REPO = Path(__file__).resolve().parent.parent


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return parser.parse_args(argv)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "vadstream.toml"
    path.write_text(text)
    return path


def test_defaults_without_file(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    cfg = config.load(parse([]))
    assert cfg == Config()
    assert cfg.input.input is None and cfg.input.realtime is True
    assert cfg.detector.onset_threshold == 0.9 and cfg.detector.offset_threshold == 0.65
    assert cfg.publisher.prob is False and cfg.publisher.heartbeat_s == 1.0
    assert cfg.publisher.ipc_mode_bits == 0o660


def test_default_file_is_used_when_present(monkeypatch, tmp_path):
    path = write(tmp_path, "[detector]\nonset_threshold = 0.7\n")
    monkeypatch.setattr(config, "DEFAULT_CONFIG_PATH", path)
    cfg = config.load(parse([]))
    assert cfg.detector.onset_threshold == 0.7 and cfg.path == str(path)


def test_file_then_flags(tmp_path):
    path = write(tmp_path, """
[input]
source = "-"
device = "USB"
channel = 1
realtime = true
[model]
path = "/x/model.onnx"
[detector]
onset_threshold = 0.6
offset_threshold = 0.4
min_silence_ms = 300
[publisher]
endpoint = "tcp://127.0.0.1:5555"
prob = true
sndhwm = 50
[logging]
level = "debug"
""")
    cfg = config.load(parse(["--config", str(path), "--onset", "0.8", "--no-realtime", "--device", "3",
                             "--endpoint", "ipc:///tmp/x/events"]))
    assert cfg.input.source == "-" and cfg.input.input == "-"
    assert cfg.input.device == 3 and cfg.input.channel == 1 and cfg.input.realtime is False
    assert cfg.model.path == "/x/model.onnx"
    assert cfg.detector.onset_threshold == 0.8 and cfg.detector.offset_threshold == 0.4
    assert cfg.detector.min_silence_ms == 300.0
    assert cfg.publisher.endpoint == "ipc:///tmp/x/events" and cfg.publisher.prob and cfg.publisher.sndhwm == 50
    assert cfg.logging.level == "debug"
    assert cfg.endpoints() == ("ipc:///tmp/x/events", "ipc:///tmp/x/control")


@pytest.mark.parametrize("text, words", [
    ("[detector]\nonset_threshold = 1.5\n", ["detector.onset_threshold", "1.5", "0.0 to 1.0"]),
    ("[detector]\nonset = 0.5\n", ["unknown key detector.onset", "onset_threshold"]),
    ("[detector]\nonset_threshold = 0.3\n", ["offset_threshold", "0.65", "onset_threshold"]),
    ("[input]\nblock_ms = 0\n", ["input.block_ms", "0", "1.0 to 1000.0"]),
    ("[input]\nrealtime = \"yes\"\n", ["input.realtime", "'yes'", "true or false"]),
    ("[input]\nchannel = \"left\"\n", ["input.channel", "'left'", "downmix"]),
    ("[input]\nsamplerate_hz = 100\n", ["input.samplerate_hz", "100", "4000 to 384000"]),
    ("[publisher]\nsndhwm = 0\n", ["publisher.sndhwm", "0", "1 to 1000000"]),
    ("[publisher]\nsndhwm = 2.5\n", ["publisher.sndhwm", "2.5", "integer"]),
    ("[publisher]\nendpoint = \"http://x\"\n", ["publisher.endpoint", "http://x", "tcp://"]),
    ("[publisher]\nipc_mode = \"999\"\n", ["publisher.ipc_mode", "999", "octal"]),
    ("[logging]\nlevel = \"loud\"\n", ["logging.level", "loud", "debug, info, warning, error"]),
    ("[output]\nx = 1\n", ["unknown section [output]", "input, model, detector"]),
    ("[detector\n", ["invalid TOML"]),
])
def test_bad_file_values_name_key_value_and_range(tmp_path, text, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        config.load(parse(["--config", str(path)]))
    message = str(err.value)
    assert str(path) in message
    for word in words:
        assert word in message
    assert "\n" not in message


def test_bad_flag_values_are_errors_too(tmp_path):
    with pytest.raises(ConfigError, match=r"command line: detector.min_silence_ms = -5.0 is out of range"):
        config.load(parse(["--config", str(write(tmp_path, "")), "--min-silence-ms", "-5"]))
    with pytest.raises(ConfigError, match=r"publisher.control_endpoint"):
        config.load(parse(["--config", str(write(tmp_path, "")), "--control-endpoint", "nowhere"]))


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(parse(["--config", str(tmp_path / "nope.toml")]))


def test_default_endpoints_follow_the_runtime_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setattr(config.os, "geteuid", lambda: 1000)
    assert Config().endpoints() == (f"ipc://{tmp_path}/vadstream/events", f"ipc://{tmp_path}/vadstream/control")
    monkeypatch.setattr(config.os, "geteuid", lambda: 0)
    assert Config().endpoints() == ("ipc:///run/vadstream/events", "ipc:///run/vadstream/control")
    monkeypatch.setattr(config.os, "geteuid", lambda: 1000)
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert Config().endpoints()[0] == "ipc:///run/vadstream/events"
    # tcp events keep control local; "none" disables control
    cfg = config.from_mapping({"publisher": {"endpoint": "tcp://127.0.0.1:5555"}})
    assert cfg.endpoints() == ("tcp://127.0.0.1:5555", "ipc:///run/vadstream/control")
    cfg = config.from_mapping({"publisher": {"control_endpoint": "none"}})
    assert cfg.endpoints()[1] is None


def test_diff_reports_changed_keys():
    a = Config()
    b = config.from_mapping({"detector": {"onset_threshold": 0.7}, "publisher": {"prob": True}})
    assert config.diff(a, b) == {"detector.onset_threshold": (0.9, 0.7), "publisher.prob": (False, True)}
    assert config.diff(a, a) == {}


def test_shipped_example_config_is_valid_and_documents_every_key():
    example = REPO / "systemd" / "vadstream.toml"
    if not example.is_file():
        pytest.skip("systemd/vadstream.toml not written yet")
    cfg = config.load_file(example)
    assert cfg == config.dataclasses.replace(Config(), path=str(example))  # the example states the defaults
    text = example.read_text()
    for section, cls in config.SECTIONS.items():
        assert f"[{section}]" in text
        for field in config.dataclasses.fields(cls):
            assert f"{field.name} =" in text, f"{section}.{field.name} missing from the example"


def _limit(x: float) -> str:
    return str(int(x)) if x == int(x) else str(x)


def test_every_numeric_key_is_checked_against_the_one_bounds_table():
    """Each range in config.BOUNDS is what the loader accepts and refuses, and what docs/config.md says."""
    docs = (Path(__file__).resolve().parent.parent / "docs" / "config.md").read_text()
    for section, bounds in config.BOUNDS.items():
        assert set(bounds) <= {f.name for f in config.dataclasses.fields(config.SECTIONS[section])}, section
        for key, (low, high) in bounds.items():
            integer = isinstance(low, int)
            step = 1 if integer else 0.01
            both = ("onset_threshold", "offset_threshold") if key in ("onset_threshold", "offset_threshold") \
                else (key,)  # offset must not exceed onset: move them together
            for value in (low, high):
                cfg = config.from_mapping({section: {k: value for k in both}})
                got = getattr(getattr(cfg, section), key)
                assert got == value and type(got) is (int if integer else float), (section, key, value)
            for value in (low - step, high + step):
                with pytest.raises(ConfigError, match=rf"{section}\.{key} = .* out of range"):
                    config.from_mapping({section: {key: value}})
            if (section, key) not in (("input", "device"), ("detector", "offset_threshold")):
                row = next(line for line in docs.splitlines() if line.startswith(f"| `{key}` |"))
                assert f"{_limit(low)}..{_limit(high)}" in row, (section, key, row)


def test_input_bounds_are_one_table_for_the_config_file_and_source_spec():
    """Every input limit is in INPUT_BOUNDS; the TOML loader and SourceSpec accept and refuse the same values."""
    from vadstream.audio.blocks import INPUT_BOUNDS, SourceError, SourceSpec

    for key, (low, high) in INPUT_BOUNDS.items():
        integer = isinstance(low, int)
        step = 1 if integer else 0.01
        for value in (low, high):
            cfg = config.from_mapping({"input": {key: value}})
            spec = cfg.input.source_spec()
            assert getattr(spec, key) == value, key
        for value in (low - step, high + step):
            if key == "samplerate_hz" and value == low - step:
                value = low - 1000  # 0 means auto
            with pytest.raises(ConfigError, match=f"input.{key}"):
                config.from_mapping({"input": {key: value}})
            with pytest.raises(SourceError, match=key):
                SourceSpec(**{key: value})
