"""LiveConfig, in process and without timing: a reload applies what changed in the file (or the
flags) since it was last read, a control request's change stays until the file changes the same
key, and a failed reload changes nothing (docs/config.md). The daemon's end to end run of the same
promise, with signals and sockets, is in test_daemon_faults.py."""

from __future__ import annotations

import argparse

import pytest

from vadstream.service import config, live
from vadstream.service.config import Config, ConfigError


def start(tmp_path, text: str, *argv: str) -> tuple[live.LiveConfig, list, object]:
    path = tmp_path / "vadstream.toml"
    path.write_text(text)
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    args = parser.parse_args(["--config", str(path), *argv])
    applied: list[tuple[Config, live.Changes]] = []
    return live.LiveConfig(config.load(args), args, lambda cfg, changes: applied.append((cfg, changes))), applied, path


def test_control_changes_stay_until_the_file_changes_the_key(tmp_path):
    head = "[detector]\noffset_threshold = 0.3\n"
    lc, applied, path = start(tmp_path, head + "onset_threshold = 0.9\nmin_silence_ms = 2000\n")
    assert lc.request({"cmd": "config", "detector": {"onset_threshold": 0.7, "offset_threshold": 0.6}}) == {
        "detector.onset_threshold": (0.9, 0.7), "detector.offset_threshold": (0.3, 0.6)}
    assert applied[-1][0] is lc.running
    path.write_text(head + "onset_threshold = 0.9\nmin_silence_ms = 1500\n")
    new, changes, kept, restart = lc.reload()
    assert changes == {"detector.min_silence_ms": (2000.0, 1500.0)} and restart == []
    assert kept == ["detector.offset_threshold", "detector.onset_threshold"]
    d = lc.running.detector
    assert (d.onset_threshold, d.offset_threshold, d.min_silence_ms) == (0.7, 0.6, 1500.0)
    assert lc.file is new and new.detector.onset_threshold == 0.9
    path.write_text(head + "onset_threshold = 0.8\nmin_silence_ms = 1500\n")
    _, changes, kept, _ = lc.reload()
    assert changes == {"detector.onset_threshold": (0.7, 0.8)} and kept == ["detector.offset_threshold"]
    assert (lc.running.detector.onset_threshold, lc.running.detector.offset_threshold) == (0.8, 0.6)


def test_a_failed_reload_changes_nothing(tmp_path):
    lc, applied, path = start(tmp_path, "[detector]\nonset_threshold = 0.9\noffset_threshold = 0.3\n")
    lc.request({"cmd": "config", "detector": {"offset_threshold": 0.6}})
    running, file_cfg, n = lc.running, lc.file, len(applied)
    path.write_text("[detector]\nonset_threshold = 0.5\noffset_threshold = 0.3\n")  # below the kept offset
    with pytest.raises(ConfigError, match="with the values set through the control socket"):
        lc.reload()
    path.write_text("[detector]\nonset_threshold = 7\n")
    with pytest.raises(ConfigError, match="out of range"):
        lc.reload()
    assert (lc.running, lc.file, len(applied)) == (running, file_cfg, n)


def test_flags_still_win_and_other_keys_need_a_restart(tmp_path):
    lc, _, path = start(tmp_path, "[detector]\nonset_threshold = 0.9\n", "--onset", "0.8")
    assert lc.running.detector.onset_threshold == 0.8
    path.write_text("[detector]\nonset_threshold = 0.7\n[input]\nblock_ms = 40\n")
    _, changes, kept, restart = lc.reload()
    assert changes == {} and kept == [] and restart == ["input.block_ms"]
    assert lc.running.detector.onset_threshold == 0.8 and lc.running.input.block_ms != 40
