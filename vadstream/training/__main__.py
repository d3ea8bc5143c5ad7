"""``python -m vadstream.training [train|evaluate] ...``: the training commands without the daemon CLI."""

import sys

from vadstream.commands.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not argv or argv[0] not in ("train", "evaluate"):
        argv = ["train", *argv]
    sys.exit(main(argv))
