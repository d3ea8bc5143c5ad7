"""Control socket: a REP socket answering JSON requests, polled without blocking by the daemon loop.

Requests (a JSON object, or the bare word ``status``)::

    {"cmd": "status"}                                   -> {"ok": true, "status": {...}}
    {"cmd": "config"}                                   -> {"ok": true, "detector": {...}, ...}
    {"cmd": "config", "detector": {"onset_threshold": 0.6}}  -> the new values, applied at once
    {"cmd": "config", "prob": true}                     -> switch the vad.prob stream on/off

Errors come back as ``{"ok": false, "error": "one line"}``; a bad request never stops the daemon.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

import zmq

from vadstream.wire.publisher import bind

log = logging.getLogger("vadstream.wire.control")
MAX_REQUEST_BYTES = 65536  # larger requests are answered with an error
DROP_REQUEST_BYTES = 16 * 1024 * 1024  # ZeroMQ drops the connection of a client sending more than this

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class RequestError(ValueError):
    """The request cannot be served; the message goes back to the client."""


class ControlServer:
    """Answers requests with ``handler(request) -> reply``; call :meth:`poll` from the owning thread."""

    def __init__(self, endpoint: str, handler: Handler, *, ipc_mode: int = 0o660,
                 context: zmq.Context | None = None):
        self.endpoint = endpoint
        self.handler = handler
        self.requests = 0
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        # Requests up to DROP_REQUEST_BYTES are received so that an oversized one gets an answer
        # (ZeroMQ silently disconnects a peer beyond MAXMSGSIZE, and its REQ would wait forever).
        self._sock.setsockopt(zmq.MAXMSGSIZE, DROP_REQUEST_BYTES)
        self.last_endpoint = bind(self._sock, endpoint, ipc_mode)

    def poll(self, max_requests: int = 8) -> int:
        """Serve the requests already waiting (at most ``max_requests``); never blocks."""
        served = 0
        while served < max_requests:
            try:
                raw = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            reply = self._serve(raw)
            try:
                self._sock.send(json.dumps(reply, default=str).encode(), zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                log.warning("control: reply not sent: %s", exc)
            served += 1
        self.requests += served
        return served

    def _serve(self, raw: bytes) -> dict[str, Any]:
        if len(raw) > MAX_REQUEST_BYTES:
            return {"ok": False, "error": f"request of {len(raw)} bytes is over the limit of {MAX_REQUEST_BYTES} bytes"}
        try:
            text = raw.decode().strip()
            request = {"cmd": text} if text in ("status", "config") else json.loads(text)
            if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
                raise RequestError('request must be a JSON object with a "cmd" string, e.g. {"cmd": "status"}')
            reply = self.handler(request)
            return {"ok": True, **reply}
        except (RequestError, ValueError, UnicodeDecodeError) as exc:
            return {"ok": False, "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
        except Exception as exc:  # noqa: BLE001 - a handler bug must not kill the daemon
            log.error("control: request failed: %s: %s", type(exc).__name__, exc)
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}

    def close(self) -> None:
        self._sock.close(0)
