"""``open_source(spec)``: the microphone, stdin or a file, as ``SourceSpec.input`` says."""

from __future__ import annotations

from vadstream.audio.blocks import Source, SourceSpec
from vadstream.audio.files import FileSource
from vadstream.audio.stdin import StdinSource


def open_source(spec: SourceSpec) -> Source:
    """The source ``spec`` describes; raises :class:`SourceError` (one line) if it cannot be used."""
    if spec.input is None:
        from vadstream.audio.capture import CaptureSource

        return CaptureSource(spec)
    if spec.input == "-":
        return StdinSource(spec)
    return FileSource(spec)
