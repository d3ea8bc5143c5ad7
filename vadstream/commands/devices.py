"""``vadstream devices``: list audio inputs with their channels, default rate and 16 kHz support.

The index or a unique part of the name is what ``vadstream run --device`` takes. ``16k`` says
whether PortAudio accepts the device at 16 kHz; ``no`` means the daemon opens it at its
default rate and resamples (with an anti-alias filter) to 16 kHz.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object per input device")


def list_inputs() -> list[dict]:
    """Input devices: index, name, host API, channels, default rate, whether 16 kHz opens, default."""
    import sounddevice as sd

    from vadstream.audio.capture import default_input_index, input_devices

    hostapis = sd.query_hostapis()
    default = default_input_index(sd)
    out = []
    for d in input_devices(sd):
        try:
            sd.check_input_settings(device=d["index"], channels=1, dtype="float32", samplerate=16000)
            ok16 = True
        except Exception:  # sd.PortAudioError / ValueError: rate or channels refused
            ok16 = False
        out.append({
            "index": d["index"], "name": d["name"], "hostapi": hostapis[d["hostapi"]]["name"],
            "channels": d["max_input_channels"], "default_rate_hz": d["default_samplerate"],
            "opens_at_16k": ok16, "default": d["index"] == default,
        })
    return out


def main(args: argparse.Namespace) -> int:
    try:
        import sounddevice  # noqa: F401
    except OSError as exc:  # the PortAudio library itself is missing
        print(f"vadstream devices: PortAudio is not available ({exc}); install libportaudio2", file=sys.stderr)
        return 1
    inputs = list_inputs()
    if not inputs:
        print("vadstream devices: PortAudio found no audio input devices. Check that a microphone is "
              "plugged in, that this user can read /dev/snd (group 'audio'), or that a PulseAudio/"
              "PipeWire server is running for this user.", file=sys.stderr)
        return 1
    if args.json:
        for d in inputs:
            print(json.dumps(d))
        return 0
    width = max(len(d["name"]) for d in inputs)
    print(f"  {'idx':>3}  {'name':<{width}}  {'host API':<10} {'ch':>3} {'default Hz':>10}  16k")
    for d in inputs:
        mark = "*" if d["default"] else " "
        print(f"{mark} {d['index']:>3}  {d['name']:<{width}}  {d['hostapi']:<10} {d['channels']:>3} "
              f"{d['default_rate_hz']:>10.0f}  {'yes' if d['opens_at_16k'] else 'no'}")
    print("* = default input. Use `vadstream run --device INDEX` or a unique part of the name; "
          "16k 'no' = opened at the default rate and resampled.")
    return 0
