"""Hand-built RIFF/WAVE bytes with any chunk sizes, for the damaged-file and fuzz tests."""

from __future__ import annotations

import struct

import numpy as np


def fmt_body(tag: int = 1, channels: int = 1, rate: int = 16000, bits: int = 16) -> bytes:
    width = (bits + 7) // 8
    byte_rate, block_align = (rate * width * channels) & 0xFFFFFFFF, (width * channels) & 0xFFFF
    return struct.pack("<HHIIHH", tag, channels, rate, byte_rate, block_align, bits)


def chunk(cid: bytes, body: bytes, size: int | None = None) -> bytes:
    """A chunk whose header declares ``size`` (default: the body's length), padded to even length."""
    declared = len(body) if size is None else size
    return cid + struct.pack("<I", declared & 0xFFFFFFFF) + body + (b"\0" if len(body) % 2 else b"")


def riff(*chunks: bytes, size: int | None = None) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) if size is None else size) + body


def pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1.0, 32767 / 32768) * 32768.0).astype("<i2").tobytes()


def wav16k(x: np.ndarray, *, fmt_size: int | None = None, list_size: int | None = None,
           data_size: int | None = None, extra: bytes = b"") -> bytes:
    """16-bit mono 16 kHz WAV of ``x``; optional LIST chunk; any chunk may declare a false size;
    ``extra`` bytes are appended to the data (an odd count makes a partial sample)."""
    parts = [chunk(b"fmt ", fmt_body(), fmt_size)]
    if list_size is not None:
        parts.append(chunk(b"LIST", b"INFOISFT\x06\0\0\0vadst\0", list_size))
    data = pcm16(x) + extra
    parts.append(b"data" + struct.pack("<I", (len(data) if data_size is None else data_size) & 0xFFFFFFFF) + data)
    return riff(*parts)
