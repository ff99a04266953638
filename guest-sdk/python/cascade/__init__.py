"""Cascade's Python SDK: write a process manager as plain functions.

A plugin is one Python module. Every top-level function named
``on_<event>`` or ``after_<event>`` handles that event (``on_user_created``
handles ``UserCreated``): ``on_`` handlers run in phase 1, ``after_``
handlers once every listener's ``on_`` handler has finished with the event.
A stateless handler takes ``(event, ctx)``; a module that defines
``initial_state()`` is stateful, and its handlers take ``(state, event, ctx)``
and change ``state`` (a dict) in place. The host persists the state as JSON
with the plugin's checkpoint.

Build a module into a component with ``cascade_build.py`` (see
``docs/python.md``)::

    from cascade import dispatch

    def on_user_created(event, ctx):
        dispatch("accounts", event.stream_id, "open", {})

An exception a handler raises fails that call: the host gets its type,
message and traceback, drops what the call dispatched, and undoes its state
changes. ``skip_refreshing(ctx)`` skips the rest of a handler during a
refresh and does nothing live.
"""

import json
import traceback

from componentize_py_types import Err
from wit_world.imports import commands, event_envelope, read_models, types
from wit_world.imports import log as _log

__all__ = [
    "Context",
    "DispatchError",
    "Event",
    "QueryError",
    "SkipRefreshing",
    "debug",
    "dispatch",
    "error",
    "find",
    "get",
    "info",
    "log",
    "skip_refreshing",
    "warn",
]


class SkipRefreshing(Exception):
    """Raised by :func:`skip_refreshing` to skip an event during a refresh."""


class DispatchError(Exception):
    """The host refused a command at once (e.g. no capability granted)."""


class QueryError(Exception):
    """A read-model query the host refused (unknown collection, field not indexed)."""


class Event:
    """An event as a handler sees it; ``payload`` is the parsed JSON."""

    __slots__ = ("_raw", "_payload")

    def __init__(self, raw):
        self._raw = raw
        self._payload = None

    position = property(lambda self: self._raw.position)
    name = property(lambda self: self._raw.name)
    stream_type = property(lambda self: self._raw.stream_type)
    stream_id = property(lambda self: self._raw.stream_id)
    stream_version = property(lambda self: self._raw.stream_version)
    created_at = property(lambda self: self._raw.created_at)

    @property
    def payload(self):
        """The JSON payload as Python values (parsed once, on first use)."""
        if self._payload is None:
            self._payload = json.loads(self._raw.payload)
        return self._payload

    def envelope(self):
        """Metadata, actor, causation and correlation id (one host call), as a dict."""
        env = event_envelope.get(self._raw.position)
        if env is None:
            return None
        return {
            "metadata": json.loads(env.metadata),
            "actor_id": env.actor_id,
            "causation_id": env.causation_id,
            "correlation_id": env.correlation_id,
        }

    def __repr__(self):
        return f"Event({self.name} #{self.position} {self.stream_type}:{self.stream_id})"


class Context:
    """Call context: ``refreshing`` is true while a refresh replays history."""

    __slots__ = ("refreshing",)

    def __init__(self, raw):
        self.refreshing = raw.refreshing


def dispatch(stream_type, stream_id, command, args=None, actor=None):
    """Queue a command; the host runs it after every listener handled the event.

    Raises :class:`DispatchError` when the host refuses it at once.
    """
    cmd = types.Command(stream_type, stream_id, command, json.dumps(args if args is not None else {}), actor)
    try:
        commands.dispatch(cmd)
    except Err as refused:
        raise DispatchError(refused.value) from None


def skip_refreshing(ctx):
    """Skip the rest of this handler during a refresh; a no-op live."""
    if ctx.refreshing:
        raise SkipRefreshing()


def get(collection, id):
    """One read-model document as a dict, or None."""
    try:
        body = read_models.get(collection, id)
    except Err as refused:
        raise QueryError(str(refused.value)) from None
    return None if body is None else json.loads(body)


def find(collection, field, value):
    """Documents whose indexed ``field`` equals ``value``, as ``(id, dict)`` pairs."""
    try:
        docs = read_models.find(collection, field, json.dumps(value))
    except Err as refused:
        raise QueryError(str(refused.value)) from None
    return [(doc.id, json.loads(doc.body)) for doc in docs]


_LEVELS = {
    "debug": _log.Level.DEBUG,
    "info": _log.Level.INFO,
    "warn": _log.Level.WARN,
    "error": _log.Level.ERROR,
}


def log(level, message):
    """Log ``message`` at ``level`` ("debug", "info", "warn" or "error")."""
    _log.log(_LEVELS[level], str(message))


def debug(message):
    log("debug", message)


def info(message):
    log("info", message)


def warn(message):
    log("warn", message)


def error(message):
    log("error", message)


# What the generated component glue calls; not for plugin code.

_state = None


def _failure(exc):
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    trace = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
    return types.HandlerError_Failed(f"{text}\n{trace}" if trace else text)


def _handle(handler, raw_event, raw_ctx, stateful):
    try:
        event, ctx = Event(raw_event), Context(raw_ctx)
        if stateful:
            handler(_state, event, ctx)
        else:
            handler(event, ctx)
    except SkipRefreshing:
        raise Err(types.HandlerError_SkipRefreshing())
    except Exception as exc:  # every failure becomes the call's error
        raise Err(_failure(exc))


def _load_state(module, blob):
    global _state
    _state = json.loads(blob) if blob is not None else module.initial_state()


def _save_state():
    return json.dumps(_state, separators=(",", ":")).encode()
