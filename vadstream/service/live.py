"""Configuration changes while the daemon runs: which keys apply at once, a control request's
``config`` command checked into a new :class:`Config`, and one line describing a change."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from vadstream.service import config
from vadstream.service.config import Config, ConfigError

# applied without a restart
LIVE_KEYS = ("detector.", "publisher.prob", "publisher.heartbeat_s", "audio.", "logging.level")

Changes = dict[str, tuple[Any, Any]]


class RequestRefused(ValueError):
    """A config request that cannot be applied; the message says why (sent back to the client)."""


def live_part(old: Config, new: Config) -> tuple[Config, Changes]:
    """``old`` with the live-changeable parts of ``new``, and what changed among them."""
    changes = {k: v for k, v in config.diff(old, new).items() if k.startswith(LIVE_KEYS)}
    merged = dataclasses.replace(old, detector=new.detector,
                                 publisher=dataclasses.replace(old.publisher, prob=new.publisher.prob,
                                                               heartbeat_s=new.publisher.heartbeat_s),
                                 audio=new.audio, logging=new.logging, path=new.path)
    return merged, changes


def restart_needed(old: Config, new: Config) -> list[str]:
    """Changed keys that only a restart applies."""
    return sorted(k for k in config.diff(old, new) if not k.startswith(LIVE_KEYS))


def from_request(cfg: Config, request: dict[str, Any]) -> Config:
    """The config a control request ``{"cmd": "config", "detector": {...}, "prob": bool}`` asks for."""
    unknown = sorted(set(request) - {"cmd", "detector", "prob"})
    if unknown:
        raise RequestRefused(f"unknown config field(s) {', '.join(unknown)}: allowed detector, prob")
    new = cfg
    if "detector" in request:
        values = request["detector"]
        if not isinstance(values, dict):
            raise RequestRefused('"detector" must be an object of detector keys, e.g. {"onset_threshold": 0.6}')
        try:
            new = config.from_mapping({"detector": values}, new)
        except ConfigError as exc:
            raise RequestRefused(str(exc)) from None
    if "prob" in request:
        if not isinstance(request["prob"], bool):
            raise RequestRefused(f"prob = {request['prob']!r} must be true or false")
        new = dataclasses.replace(new, publisher=dataclasses.replace(new.publisher, prob=request["prob"]))
    return new


def from_reload(running: Config, last_read: Config, new: Config) -> tuple[Config, list[str]]:
    """The config a reload gives: ``running`` with the live keys whose value in the file (or flags)
    changed since it was ``last_read``; and the live keys where ``running`` keeps a value set
    through the control socket that differs from the file's."""
    edited: dict[str, dict[str, Any]] = {}
    for key, (_, value) in config.diff(last_read, new).items():
        if key.startswith(LIVE_KEYS):
            section, name = key.split(".", 1)
            edited.setdefault(section, {})[name] = value
    try:
        merged = config.from_mapping(edited, running, path=new.path)
    except ConfigError as exc:
        raise ConfigError(f"{new.path}: {exc} (with the values set through the control socket)") from None
    kept = sorted(k for k in config.diff(merged, new) if k.startswith(LIVE_KEYS))
    return merged, kept


class LiveConfig:
    """The running config and the file's as last read (docs/config.md): a control request changes
    the running config; a reload applies the keys whose value in the file (or the flags) changed
    since it was last read, so a control change stays until the file changes the same key.

    Args:
        cfg: the config the daemon started with, read from the file and ``args``.
        args: the command line; its flags still win on each reload.
        apply: hands the new running config, and what changed, to the parts that use it.
    """

    def __init__(self, cfg: Config, args, apply: Callable[[Config, Changes], None]):
        self.running = cfg
        self.file = cfg
        self.args = args
        self._apply = apply

    def set(self, new: Config) -> Changes:
        """Apply the live-changeable parts of ``new``; what changed."""
        self.running, changes = live_part(self.running, new)
        self._apply(self.running, changes)
        return changes

    def request(self, request: dict[str, Any]) -> Changes:
        """Apply a control request's ``config`` command (RequestRefused: why not); what changed."""
        return self.set(from_request(self.running, request))

    def reload(self) -> tuple[Config, Changes, list[str], list[str]]:
        """Re-read the file (and flags) and apply what changed in it: the file's config, what
        changed, the keys control requests keep, the keys that need a restart. Raises (nothing
        applied) when the file cannot be loaded or conflicts with a kept value."""
        new = config.load(self.args)
        merged, kept = from_reload(self.running, self.file, new)
        restart = restart_needed(self.running, new)
        changes = self.set(merged)
        self.file = new
        return new, changes, kept, restart


def describe(changes: Changes) -> str:
    return ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())
