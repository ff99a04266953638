"""Cascade's Python SDK: write a plugin as plain functions.

A plugin is one Python module: a process manager, a projection or an
aggregate, told apart by what it defines (see ``docs/python.md``).

Process managers and projections: every top-level function named
``on_<event>`` or ``after_<event>`` handles that event (``on_user_created``
handles ``UserCreated``): ``on_`` handlers run in phase 1, ``after_``
handlers once every listener's ``on_`` handler has finished with the event.
A stateless handler takes ``(event, ctx)``; a module that defines
``initial_state()`` is stateful (per instance), and its handlers take
``(state, event, ctx)`` and change ``state`` (a dict) in place: the state of
the instance the event belongs to. The host persists each instance's state
as JSON with the plugin's checkpoint. ``instances()`` may return rules
(:func:`by_stream_id`, :func:`by_correlation_id`, :func:`by_payload_field`,
:func:`single`) saying which instance each event belongs to; by default its
stream id. A handler can :func:`complete` its instance and
:func:`schedule_after` a timer, which comes back to ``on_timer_fired``.

Build a module into a component with ``cascade_build.py`` (see
``docs/python.md``)::

    from cascade import dispatch

    def on_user_created(event, ctx):
        dispatch("accounts", event.stream_id, "open", {})

An exception a handler raises fails that call: the host gets its type,
message and traceback, drops what the call dispatched, and undoes its state
changes. ``skip_refreshing(ctx)`` skips the rest of a handler during a
refresh and does nothing live.

A **projection** defines ``collections()`` (a list of :func:`collection`) and
``on_<event>`` handlers that write documents with :func:`put` and
:func:`delete`. An **aggregate** defines ``NAME``, ``COMMANDS``, ``EVENTS``
(event name to JSON Schema), ``handle(state, stream_id, command, args)``
returning a list of :func:`event` (or raising :class:`Rejected`), and
``apply(state, name, payload)``; ``initial_state()`` is the state of a new
stream (``{}`` when not defined).
"""

import importlib
import json
import traceback

from componentize_py_types import Err


def _bound(interface):
    """A host interface the plugin's world imports, or None: a projection's
    world has no `commands`, an aggregate's only `log`."""
    try:
        return importlib.import_module(f"wit_world.imports.{interface}")
    except ImportError:
        return None


commands = _bound("commands")
event_envelope = _bound("event_envelope")
read_models = _bound("read_models")
read_model_writer = _bound("read_model_writer")
projection_types = _bound("projection_types")
types = _bound("types")
_log = _bound("log")
_instance = _bound("instance")
_timers = _bound("timers")
_config = _bound("config")
_effects = _bound("effects")
_instance_types = _bound("instance_types")

__all__ = [
    "by_correlation_id",
    "by_payload_field",
    "by_stream_id",
    "cancel_timer",
    "complete",
    "config",
    "instance_id",
    "schedule_after",
    "schedule_at",
    "single",
    "TimerError",
    "EffectError",
    "request",
    "post_json",
    "Context",
    "DispatchError",
    "Event",
    "QueryError",
    "Rejected",
    "SkipRefreshing",
    "WriteError",
    "collection",
    "debug",
    "delete",
    "dispatch",
    "error",
    "event",
    "find",
    "get",
    "info",
    "log",
    "put",
    "skip_refreshing",
    "warn",
]


class SkipRefreshing(Exception):
    """Raised by :func:`skip_refreshing` to skip an event during a refresh."""


class DispatchError(Exception):
    """The host refused a command at once (e.g. no capability granted)."""


class QueryError(Exception):
    """A read-model query the host refused (unknown collection, field not indexed)."""


class WriteError(Exception):
    """The host refused a read-model write (collection not declared, body not an object)."""


class TimerError(Exception):
    """The host refused a timer (no instances, a name or payload out of bounds)."""


class EffectError(Exception):
    """The host refused an effect (a URL outside the plugin's grants, a malformed request)."""


class Rejected(Exception):
    """Raised by an aggregate's ``handle`` to reject a command; the message is the reason."""


def _only(interface, what, kinds):
    if interface is None:
        raise RuntimeError(f"{what} is for {kinds}; this plugin's kind cannot call it")
    return interface


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
    _only(commands, "dispatch", "process managers")
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
    _only(read_models, "get", "process managers and projections")
    try:
        body = read_models.get(collection, id)
    except Err as refused:
        raise QueryError(str(refused.value)) from None
    return None if body is None else json.loads(body)


def find(collection, field, value):
    """Documents whose indexed ``field`` equals ``value``, as ``(id, dict)`` pairs."""
    _only(read_models, "find", "process managers and projections")
    try:
        docs = read_models.find(collection, field, json.dumps(value))
    except Err as refused:
        raise QueryError(str(refused.value)) from None
    return [(doc.id, json.loads(doc.body)) for doc in docs]


def collection(name, indexes=()):
    """A collection a projection owns, with the top-level fields ``find`` can search."""
    _only(projection_types, "collection", "projections")
    return projection_types.Collection(name, list(indexes))


def put(collection, id, document):
    """Write ``document`` (a dict) as ``id`` of ``collection``, replacing any previous one."""
    _only(read_model_writer, "put", "projections")
    try:
        read_model_writer.put(collection, id, json.dumps(document, separators=(",", ":")))
    except Err as refused:
        raise WriteError(refused.value) from None


def delete(collection, id):
    """Delete document ``id`` of ``collection``; deleting a missing one is fine."""
    _only(read_model_writer, "delete", "projections")
    try:
        read_model_writer.delete(collection, id)
    except Err as refused:
        raise WriteError(refused.value) from None


def _rule(event, key, starts):
    _only(_instance_types, "instance rules", "stateful process managers (define initial_state)")
    return _instance_types.InstanceRule(event, key, bool(starts))


def by_stream_id(event, starts=True):
    """``event`` belongs to the instance named by its stream id (``*``: every event)."""
    return _rule(event, _instance_types.InstanceKey_StreamId(), starts)


def by_correlation_id(event, starts=True):
    """``event`` belongs to the instance named by its correlation id."""
    return _rule(event, _instance_types.InstanceKey_CorrelationId(), starts)


def by_payload_field(event, field, starts=True):
    """``event`` belongs to the instance named by its payload's top-level ``field``."""
    return _rule(event, _instance_types.InstanceKey_PayloadField(field), starts)


def single(event, starts=True):
    """``event`` belongs to the one instance ``singleton`` (``single("*")``: every event)."""
    return _rule(event, _instance_types.InstanceKey_Single(), starts)


def instance_id():
    """The id of the instance the current handler call belongs to."""
    return _only(_instance, "instance_id", "process managers").id()


def complete():
    """Complete the current instance: its state and timers go with this call."""
    _only(_instance, "complete", "process managers").complete()


def schedule_after(name, millis, payload=None):
    """Schedule timer ``name`` of the current instance ``millis`` after the
    handled event's time; it comes back as ``TimerFired`` to ``on_timer_fired``.

    Raises :class:`TimerError` when the host refuses it.
    """
    _schedule(name, "after", millis, payload)


def schedule_at(name, at, payload=None):
    """Schedule timer ``name`` at ``at`` (milliseconds since the Unix epoch)."""
    _schedule(name, "at", at, payload)


def _schedule(name, kind, millis, payload):
    _only(_timers, "timers", "process managers")
    if not isinstance(millis, (int, float)) or millis < 0:
        raise TimerError(f"timer `{name}`: {millis!r} is not a time in milliseconds")
    due = (_timers.Due_After if kind == "after" else _timers.Due_At)(int(millis))
    try:
        _timers.schedule(name, due, json.dumps(payload if payload is not None else {}))
    except Err as refused:
        raise TimerError(refused.value) from None


def cancel_timer(name):
    """Cancel timer ``name`` of the current instance; a missing one is fine."""
    _only(_timers, "cancel_timer", "process managers").cancel(name)


def config(key, default=None):
    """The manifest's ``[config]`` value ``key``, or ``default`` when it is not set."""
    value = _only(_config, "config", "process managers").get(key)
    return default if value is None else json.loads(value)


def request(name, method, url, headers=None, body=b""):
    """Request an HTTP call as effect ``name``: performed by the host after
    this handler's commit (never during a refresh), with an ``Idempotency-Key``
    that is the same on every attempt; the outcome comes back as
    ``EffectCompleted`` to ``on_effect_completed``.

    Raises :class:`EffectError` when the host refuses it.
    """
    effects = _only(_effects, "request", "process managers")
    if isinstance(body, str):
        body = body.encode()
    headers = [(str(k), str(v)) for k, v in (headers or {}).items()]
    try:
        effects.request(name, effects.HttpRequest(method=method, url=url, headers=headers, body=bytes(body)))
    except Err as refused:
        raise EffectError(refused.value) from None


def post_json(name, url, payload, headers=None):
    """:func:`request` of a ``POST`` with ``payload`` as its JSON body."""
    headers = {"content-type": "application/json", **(headers or {})}
    request(name, "POST", url, headers, json.dumps(payload))


def event(name, payload):
    """An event an aggregate's ``handle`` decides on: its name and payload (a dict)."""
    return (name, payload)


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


def _describe_failure(exc):
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    trace = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
    return f"{text}\n{trace}" if trace else text


def _failure(exc):
    return types.HandlerError_Failed(_describe_failure(exc))


def _handle(handler, raw_event, raw_ctx, module=None):
    """Call ``handler``; with ``module`` (a stateful plugin), with the state
    of the call's instance, handed back to the host when it changed."""
    try:
        event, ctx = Event(raw_event), Context(raw_ctx)
        if module is not None:
            stored = _instance.state()
            state = json.loads(stored) if stored is not None else module.initial_state()
            handler(state, event, ctx)
            blob = json.dumps(state, separators=(",", ":")).encode()
            if blob != stored:
                _instance.set_state(blob)
        else:
            handler(event, ctx)
    except SkipRefreshing:
        raise Err(types.HandlerError_SkipRefreshing())
    except Exception as exc:  # every failure becomes the call's error
        raise Err(_failure(exc))


def _instances(module):
    return list(module.instances()) if hasattr(module, "instances") else []


def _collections(module):
    return list(module.collections())


def _describe(module, exports):
    """The aggregate's description, from the module's NAME, EVENTS and COMMANDS."""
    events = [
        exports.EventDeclaration(name, json.dumps(schema, separators=(",", ":")))
        for name, schema in module.EVENTS.items()
    ]
    return exports.Description(module.NAME, events, list(module.COMMANDS))


def _decide(module, exports, blob, stream_id, command, args):
    """Decide, then fold the decided events into the state: one call per command."""
    try:
        if blob is not None:
            state = json.loads(blob)
        elif hasattr(module, "initial_state"):
            state = module.initial_state()
        else:
            state = {}
        decided = []
        for name, payload in module.handle(state, stream_id, command, json.loads(args)) or []:
            module.apply(state, name, payload)
            decided.append(exports.NewEvent(name, json.dumps(payload, separators=(",", ":"))))
        return exports.Decision(decided, json.dumps(state, separators=(",", ":")).encode())
    except Rejected as rejected:
        raise Err(str(rejected))
    except Exception as exc:  # a bug rejects the command with its traceback
        raise Err(_describe_failure(exc))
