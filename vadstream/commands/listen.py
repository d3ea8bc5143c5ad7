"""``vadstream listen``: subscribe to a running daemon and print its events.

Human-readable lines by default, or one JSON object per line with ``--json``. Speech and status
messages are shown; ``--heartbeat`` and ``--prob`` add those topics, ``--all`` shows everything.
Missed messages (``seq`` gaps) are reported on stderr. ``--status`` asks the control socket for
the daemon's status instead and prints it as JSON.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

from vadstream.service import config


def add_arguments(parser) -> None:
    parser.add_argument("--endpoint", metavar="EP", help="events endpoint (default: from --config, else the "
                        "runtime directory's ipc socket)")
    parser.add_argument("--control-endpoint", metavar="EP", help="control endpoint for --status")
    parser.add_argument("--config", metavar="FILE", help="read the endpoints from this daemon config file")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    parser.add_argument("--heartbeat", action="store_true", help="also show vad.heartbeat")
    parser.add_argument("--prob", action="store_true", help="also show vad.prob (the daemon must publish it)")
    parser.add_argument("--all", action="store_true", help="show every topic")
    parser.add_argument("--count", type=int, metavar="N", help="exit after N messages")
    parser.add_argument("--timeout", type=float, metavar="S", help="exit (status 1) if nothing arrives for S seconds")
    parser.add_argument("--status", action="store_true", help="print the daemon's status (control socket) and exit")


def topics(args) -> list[str]:
    if args.all:
        return ["vad."]
    out = ["vad.speech_start", "vad.speech_end", "vad.status"]
    if args.heartbeat:
        out.append("vad.heartbeat")
    if args.prob:
        out.append("vad.prob")
    return out


def format_event(m) -> str:
    """One line for humans: local wall time, type, stream time and the type's key fields."""
    wall = datetime.fromtimestamp(m.wall_time_ns / 1e9).strftime("%H:%M:%S.%f")[:-3]
    head = f"{wall}  {m.TYPE:<12} t={m.time_s:9.3f}s"
    if m.TYPE == "speech_start":
        tail = f"p={m.probability:.2f}"
    elif m.TYPE == "speech_end":
        tail = f"p={m.probability:.2f} duration={m.duration_s:.3f}s reason={m.reason}"
    elif m.TYPE == "status":
        # messages may already start with their kind ("stopping: received SIGTERM"): say it once
        text = m.message[len(m.kind) + 1:].lstrip() if m.message.startswith(f"{m.kind}:") else m.message
        tail = f"{m.kind}: {text}"
    elif m.TYPE == "heartbeat":
        tail = f"state={m.state} uptime={m.uptime_s:.0f}s published={m.published} dropped={m.dropped} " \
               f"overflows={m.overflows}"
    else:
        tail = f"p={m.probability:.3f}"
    return f"{head}  {tail}  [{m.source} #{m.seq}]"


def _endpoints(args) -> tuple[str, str | None]:
    cfg = config.load_file(args.config) if args.config else config.Config()
    events, control = cfg.endpoints()
    return args.endpoint or events, args.control_endpoint or control


def main(args) -> int:
    from vadstream.wire.client import ControlError, Subscriber, request

    try:
        events_ep, control_ep = _endpoints(args)
    except config.ConfigError as exc:
        print(f"vadstream listen: error: {exc}", file=sys.stderr)
        return 2
    if args.status:
        try:
            reply = request(control_ep, "status")
        except ControlError as exc:
            print(f"vadstream listen: error: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(reply["status"], indent=2))
        return 0

    def on_gap(gap) -> None:
        print(f"vadstream listen: missed {gap.missing} {gap.topic} message(s) "
              f"(topic_seq {gap.expected_seq}..{gap.got_seq - 1})",
              file=sys.stderr, flush=True)

    def on_invalid(text: str) -> None:
        print(f"vadstream listen: invalid message skipped: {text}", file=sys.stderr, flush=True)

    from vadstream.wire.endpoints import unreachable

    problem = unreachable(events_ep)
    if problem and problem.startswith("permission denied"):  # waiting would be silence forever
        print(f"vadstream listen: error: {problem}", file=sys.stderr)
        return 1
    if problem:  # no daemon yet, or a stale socket file: say so, and wait for one to start
        print(f"vadstream listen: {problem}; waiting for a daemon", file=sys.stderr, flush=True)
    shown = 0
    if not args.json:
        print(f"listening on {events_ep} ({', '.join(topics(args))})", file=sys.stderr, flush=True)
    try:
        with Subscriber(events_ep, topics(args), on_gap=on_gap, on_invalid=on_invalid) as sub:
            while args.count is None or shown < args.count:
                message = sub.receive(args.timeout)
                if message is None:
                    print(f"vadstream listen: nothing received for {args.timeout} s from {events_ep}",
                          file=sys.stderr)
                    return 1
                if args.json:
                    print(json.dumps(message.to_dict(), separators=(",", ":")), flush=True)
                else:
                    print(format_event(message), flush=True)
                shown += 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `vadstream listen | head`
        return 0
    return 0


if __name__ == "__main__":
    import argparse

    _parser = argparse.ArgumentParser(prog="vadstream listen", description=__doc__.splitlines()[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
