"""``vadstream wyoming``: voice activity detection as a Wyoming service (Home Assistant, Rhasspy).

Clients send audio (``audio-start``, ``audio-chunk`` s, ``audio-stop``) and get ``voice-started`` /
``voice-stopped`` back, in ms of their audio: :mod:`vadstream.service.wyoming_vad`. The model and
detector settings are the daemon's (``--config``, ``[model]``, ``[detector]``, and the connection
limits of ``[wyoming]``), the flags override them. Needs the ``wyoming`` extra. Exit status 0
after SIGTERM/SIGINT (or the end of stdin with ``stdio://``), 1 when it cannot serve, 2 for a
configuration error.
"""

from __future__ import annotations

import argparse
import logging
import sys

from vadstream.commands.file import add_detector_arguments

DEFAULT_URI = "tcp://127.0.0.1:10700"
log = logging.getLogger("vadstream.wyoming")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uri", default=DEFAULT_URI,
                        help=f"where to serve: tcp://HOST:PORT, unix://PATH or stdio:// (default {DEFAULT_URI})")
    parser.add_argument("--max-clients", type=int, metavar="N", help="connections served at once (default 16)")
    parser.add_argument("--log-level", metavar="LEVEL", help="debug, info, warning or error")
    add_detector_arguments(parser)


def load(args: argparse.Namespace):
    """The daemon's config (file, then flags), with this command's ``--max-clients``; ConfigError if bad."""
    from vadstream.service import config

    cfg = config.load(args)
    if args.max_clients is not None:
        try:
            cfg = config.from_mapping({"wyoming": {"max_clients": args.max_clients}}, cfg)
        except config.ConfigError as exc:
            raise config.ConfigError(f"command line: {exc}") from None
    config.wyoming_uri("--uri", args.uri)
    return cfg


def main(args: argparse.Namespace) -> int:
    from vadstream.service.config import ConfigError
    from vadstream.service.logs import setup_logging

    setup_logging("info")
    try:
        cfg = load(args)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    setup_logging(cfg.logging.level)
    try:
        from vadstream.service import wyoming_vad
    except ImportError as exc:  # the wyoming extra is missing: WyomingMissing says how to get it
        log.error("%s", exc)
        return 2
    from vadstream.service.sdnotify import Notifier
    from vadstream.stages.model import ModelError

    notifier = Notifier.from_env()
    try:
        wyoming_vad.run(args.uri, cfg, ready=lambda uri: notifier.ready(f"serving Wyoming on {uri}"))
    except (ModelError, OSError) as exc:
        log.error("%s", exc)
        return 1
    finally:
        notifier.stopping()
        notifier.close()
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="vadstream wyoming", description=__doc__.splitlines()[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
