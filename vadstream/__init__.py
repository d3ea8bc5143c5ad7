"""vadstream: real-time voice activity detection, microphone in, ZeroMQ speech events out.

The public API (``from vadstream import Stream, MultiStream, Vad, Detector, DetectorConfig``) is imported on
first use, so ``import vadstream.wire.client`` does not load ONNX Runtime.
"""

__version__ = "0.1.0"

_PUBLIC = {
    "Stream": "vadstream.stages.stream",
    "StreamOutput": "vadstream.stages.stream",
    "MultiStream": "vadstream.stages.multistream",
    "Vad": "vadstream.stages.vad",
    "Detector": "vadstream.stages.detector",
    "DetectorConfig": "vadstream.stages.detector",
    "SpeechStart": "vadstream.stages.detector",
    "SpeechEnd": "vadstream.stages.detector",
    "EndReason": "vadstream.stages.detector",
}

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vadstream' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
