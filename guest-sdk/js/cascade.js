// Cascade's JavaScript SDK: write a plugin as exported functions: a process
// manager, a projection or an aggregate, told apart by what the module
// exports (see docs/javascript.md).
//
// Process managers and projections: every exported function `on<Event>` or `after<Event>` handles that event
// (`onUserCreated` handles `UserCreated`). A stateless handler takes
// `(event, ctx)`; a module that exports `initialState()` is stateful (per
// instance), and its handlers take `(state, event, ctx)` and change `state`
// in place: the state of the instance the event belongs to, which the host
// persists as JSON with the plugin's checkpoint. `instances()` may return
// rules (`byStreamId`, `byCorrelationId`, `byPayloadField`, `single`) saying
// which instance each event belongs to (default: its stream id). A handler
// can `complete()` its instance and `scheduleAfter` a timer, which comes back
// to `onTimerFired`. A projection also
// exports `collections()` and writes with `put`/`delete`. An aggregate exports
// NAME, COMMANDS, EVENTS (event name to JSON Schema), `handle(state, streamId,
// command, args)` returning a list of `event(...)` (or throwing `Rejected`),
// `apply(state, name, payload)` and optionally `initialState()`.
//
// Import this module as `cascade`; build.mjs points the import here and
// writes `host.js`: the `cascade:runtime` imports of the plugin's world (at
// the contract version in wit/), and for what its world lacks (`dispatch` in
// a projection) a function that throws, naming the kinds that may call it.

import {
  dispatch as hostDispatch,
  envelopeOf,
  log as hostLog,
  get as hostGet,
  find as hostFind,
  put as hostPut,
  remove as hostDelete,
  instanceId as hostInstanceId,
  instanceState,
  setInstanceState,
  completeInstance,
  scheduleTimer,
  cancelTimer as hostCancelTimer,
  configGet,
  requestEffect,
} from './host.js';

/** Thrown by `skipRefreshing(ctx)` to skip an event during a refresh. */
export class SkipRefreshing extends Error {}

/** The host refused a command at once (e.g. no capability granted). */
export class DispatchError extends Error {}

/** A read-model query the host refused. */
export class QueryError extends Error {}

/** A read-model write the host refused (collection not declared, body not an object). */
export class WriteError extends Error {}

/** The host refused a timer (no instances, a name or payload out of bounds). */
export class TimerError extends Error {}

/** The host refused an effect (a URL outside the plugin's grants, a malformed request). */
export class EffectError extends Error {}

/** Thrown by an aggregate's `handle` to reject a command; the message is the reason. */
export class Rejected extends Error {}

const payloadOf = (e) => (e && Object.prototype.hasOwnProperty.call(e, 'payload') ? e.payload : e);

/** An event as a handler sees it; numbers are Numbers, `payload` is parsed JSON. */
export class Event {
  #raw;
  #payload;
  constructor(raw) {
    this.#raw = raw;
    this.position = Number(raw.position);
    this.name = raw.name;
    this.streamType = raw.streamType;
    this.streamId = raw.streamId;
    this.streamVersion = Number(raw.streamVersion);
    this.createdAt = Number(raw.createdAt);
  }
  /** The JSON payload, parsed on first use. */
  get payload() {
    if (this.#payload === undefined) this.#payload = JSON.parse(this.#raw.payload);
    return this.#payload;
  }
  /** Metadata, actor, causation and correlation id (one host call). */
  envelope() {
    const env = envelopeOf(this.#raw.position);
    if (env === undefined || env === null) return null;
    return {
      metadata: JSON.parse(env.metadata),
      actorId: env.actorId ?? null,
      causationId: env.causationId,
      correlationId: env.correlationId,
    };
  }
}

/** Queue a command; the host runs it after every listener handled the event. */
export function dispatch(streamType, streamId, command, args = {}, actorId = undefined) {
  try {
    hostDispatch({ streamType, streamId, name: command, args: JSON.stringify(args), actorId });
  } catch (e) {
    throw new DispatchError(String(payloadOf(e)));
  }
}

/** Skip the rest of this handler during a refresh; a no-op live. */
export function skipRefreshing(ctx) {
  if (ctx.refreshing) throw new SkipRefreshing('skip: refreshing');
}

/** One read-model document, or null. */
export function get(collection, id) {
  let body;
  try {
    body = hostGet(collection, id);
  } catch (e) {
    throw new QueryError(JSON.stringify(payloadOf(e)));
  }
  return body === undefined || body === null ? null : JSON.parse(body);
}

/** Documents whose indexed `field` equals `value`, as [id, document] pairs. */
export function find(collection, field, value) {
  try {
    return hostFind(collection, field, JSON.stringify(value)).map((d) => [d.id, JSON.parse(d.body)]);
  } catch (e) {
    throw new QueryError(JSON.stringify(payloadOf(e)));
  }
}

/** A collection a projection owns, with the top-level fields `find` can search. */
export function collection(name, indexes = []) {
  return { name, indexes: [...indexes] };
}

/** Write `document` as `id` of `collection`, replacing any previous one. */
export function put(collection, id, document) {
  try {
    hostPut(collection, id, JSON.stringify(document));
  } catch (e) {
    throw new WriteError(String(payloadOf(e)));
  }
}

/** Delete document `id` of `collection`; deleting a missing one is fine. */
export function remove(collection, id) {
  try {
    hostDelete(collection, id);
  } catch (e) {
    throw new WriteError(String(payloadOf(e)));
  }
}

const rule = (event, key, starts) => ({ event, key, starts: starts !== false });

/** `event` belongs to the instance named by its stream id (`*`: every event). */
export const byStreamId = (event, { starts } = {}) => rule(event, { tag: 'stream-id' }, starts);

/** `event` belongs to the instance named by its correlation id. */
export const byCorrelationId = (event, { starts } = {}) => rule(event, { tag: 'correlation-id' }, starts);

/** `event` belongs to the instance named by its payload's top-level `field`. */
export const byPayloadField = (event, field, { starts } = {}) =>
  rule(event, { tag: 'payload-field', val: field }, starts);

/** `event` belongs to the one instance `singleton` (`single('*')`: every event). */
export const single = (event, { starts } = {}) => rule(event, { tag: 'single' }, starts);

/** The id of the instance the current handler call belongs to. */
export function instanceId() {
  return hostInstanceId();
}

/** Complete the current instance: its state and timers go with this call. */
export function complete() {
  completeInstance();
}

/** Schedule timer `name` of the current instance `millis` after the handled
 * event's time; it comes back as `TimerFired` to `onTimerFired`. */
export function scheduleAfter(name, millis, payload = {}) {
  schedule(name, 'after', millis, payload);
}

/** Schedule timer `name` at `at` (milliseconds since the Unix epoch). */
export function scheduleAt(name, at, payload = {}) {
  schedule(name, 'at', at, payload);
}

function schedule(name, tag, millis, payload) {
  if (!Number.isFinite(millis) || millis < 0) throw new TimerError(`timer \`${name}\`: ${millis} is not a time in milliseconds`);
  try {
    scheduleTimer(name, { tag, val: BigInt(Math.trunc(millis)) }, JSON.stringify(payload));
  } catch (e) {
    throw new TimerError(String(payloadOf(e)));
  }
}

/** Cancel timer `name` of the current instance; a missing one is fine. */
export function cancelTimer(name) {
  hostCancelTimer(name);
}

/** The manifest's `[config]` value `key`, or `fallback` when it is not set. */
export function config(key, fallback = undefined) {
  const value = configGet(key);
  return value === undefined || value === null ? fallback : JSON.parse(value);
}

/** Request an HTTP call as effect `name`: `{ method, url, headers, body }`
 * (headers an object, body a string or bytes). The host performs it after
 * this handler's commit (never during a refresh) with an `Idempotency-Key`
 * that is the same on every attempt; the outcome comes back as
 * `EffectCompleted` to `onEffectCompleted`. Throws `EffectError` when refused. */
export function request(name, { method = 'GET', url, headers = {}, body = '' }) {
  const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : new Uint8Array(body);
  try {
    requestEffect(name, { method, url, headers: Object.entries(headers).map(([k, v]) => [k, String(v)]), body: bytes });
  } catch (e) {
    throw new EffectError(String(payloadOf(e)));
  }
}

/** `request` of a `POST` with `payload` as its JSON body. */
export function postJson(name, url, payload, headers = {}) {
  request(name, { method: 'POST', url, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(payload) });
}

/** An event an aggregate's `handle` decides on: its name and payload. */
export function event(name, payload) {
  return { name, payload };
}

/** Log at `level`: "debug", "info", "warn" or "error". */
export function log(level, message) {
  hostLog(level, String(message));
}

// What the generated component glue calls; not for plugin code.

// With `plugin` (a stateful one): the handler gets the state of the call's
// instance, handed back to the host when it changed.
export function __handle(handler, rawEvent, rawCtx, plugin = undefined) {
  try {
    const event = new Event(rawEvent);
    const ctx = { refreshing: rawCtx.refreshing };
    if (plugin) {
      const stored = instanceState();
      const before = stored === undefined || stored === null ? undefined : new TextDecoder().decode(stored);
      const state = before === undefined ? plugin.initialState() : JSON.parse(before);
      handler(state, event, ctx);
      const after = JSON.stringify(state);
      if (after !== before) setInstanceState(new TextEncoder().encode(after));
    } else handler(event, ctx);
  } catch (e) {
    if (e instanceof SkipRefreshing) throw { payload: { tag: 'skip-refreshing' } };
    throw { payload: { tag: 'failed', val: describeFailure(e) } };
  }
}

const describeFailure = (e) => (e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ''}`.trimEnd() : String(e));

export function __collections(plugin) {
  return plugin.collections().map((c) => ({ name: c.name, indexes: [...c.indexes] }));
}

export function __describe(plugin) {
  return {
    name: plugin.NAME,
    events: Object.entries(plugin.EVENTS).map(([name, schema]) => ({ name, schema: JSON.stringify(schema) })),
    commands: [...plugin.COMMANDS],
  };
}

// Decide, then fold the decided events into the state: one call per command.
export function __decide(plugin, blob, streamId, command, args) {
  try {
    const state =
      blob === undefined || blob === null
        ? plugin.initialState
          ? plugin.initialState()
          : {}
        : JSON.parse(new TextDecoder().decode(blob));
    const events = [];
    for (const { name, payload } of plugin.handle(state, streamId, command, JSON.parse(args)) ?? []) {
      plugin.apply(state, name, payload);
      events.push({ name, payload: JSON.stringify(payload) });
    }
    return { events, state: new TextEncoder().encode(JSON.stringify(state)) };
  } catch (e) {
    // A rejection is its message; a bug rejects the command with its stack.
    throw { payload: e instanceof Rejected ? e.message : describeFailure(e) };
  }
}

export function __instances(plugin) {
  return plugin.instances ? [...plugin.instances()] : [];
}
