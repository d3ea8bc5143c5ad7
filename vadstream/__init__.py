"""vadstream: real-time voice activity detection, microphone in, ZeroMQ speech events out."""

__version__ = "0.1.0"

from vadstream.stages.detector import Detector, DetectorConfig  # noqa: E402
from vadstream.stages.vad import Vad  # noqa: E402

__all__ = ["Vad", "Detector", "DetectorConfig", "__version__"]
