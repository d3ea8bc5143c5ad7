"""vadstream: real-time voice activity detection, microphone in, ZeroMQ speech events out.

Each command module exposes ``add_arguments(parser)`` and ``main(args) -> int`` and keeps its
module-level imports light (torch, matplotlib, sounddevice are imported inside ``main``).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vadstream import __version__

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("vadstream.service.daemon", "run the daemon: audio in, ZeroMQ speech events out"),
    "listen": ("vadstream.commands.listen", "subscribe to a running daemon and print its events"),
    "record": ("vadstream.commands.record", "write each utterance the daemon publishes as a WAV + JSON file"),
    "devices": ("vadstream.commands.devices", "list audio input devices and their default rates"),
    "file": ("vadstream.commands.file", "find speech segments in audio files"),
    "monitor": ("vadstream.commands.monitor", "live terminal view of speech probability and state"),
    "wyoming": ("vadstream.commands.wyoming", "serve voice activity detection over the Wyoming protocol "
                "(Home Assistant, Rhasspy; needs the 'wyoming' extra)"),
    "train": ("vadstream.training.train", "train a model (needs the 'train' extra)"),
    "evaluate": ("vadstream.evaluation.command", "evaluate models against peers on held-out data"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported, so one command's import cost or
    breakage never reaches another (``vadstream run`` does not import torch or matplotlib)."""
    parser = argparse.ArgumentParser(prog="vadstream", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"vadstream {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(cmd)
            cmd.set_defaults(_main=module.main)
    return parser


def _command_in(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_in(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    try:
        return int(args._main(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
