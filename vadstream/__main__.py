import sys

from vadstream.commands.cli import main

sys.exit(main())
