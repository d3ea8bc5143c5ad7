import sys

from vadstream.cli import main

sys.exit(main())
