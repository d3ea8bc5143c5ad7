"""Runtime dependencies are what the daemon imports: the daemon, ``vadstream file`` and a Stream run
without scipy, python_speech_features, torch or matplotlib (setup.cfg keeps them in the extras)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import numpy as np
from vadstream import Stream
from vadstream.service import daemon
from vadstream.commands import cli, file, listen, monitor
from vadstream.wire import client
out = Stream().run(np.zeros(16000, np.float32))
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"scipy", "python_speech_features", "torch", "matplotlib",
                                                           "sklearn", "soundfile"})
print(out.probs.size, heavy)
"""


def test_the_runtime_path_imports_no_optional_package():
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split(maxsplit=1) == ["50", "[]\n"]
