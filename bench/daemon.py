"""Daemon latency and cost (sections daemon): placeholder until the daemon and harness land."""

from __future__ import annotations

from pathlib import Path

from . import report


def run(args) -> list[str]:
    md = ("## Through the real daemon\n\nNot measured yet: needs `vadstream run` and the PulseAudio "
          "harness `tests/pulse.py`.\n")
    report.save_section(Path(args.out), "daemon", {"measured": False}, md, report.command_line())
    return [md]
