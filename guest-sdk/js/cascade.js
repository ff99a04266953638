// Cascade's JavaScript SDK: write a process manager as exported functions.
//
// Every exported function `on<Event>` or `after<Event>` handles that event
// (`onUserCreated` handles `UserCreated`). A stateless handler takes
// `(event, ctx)`; a module that exports `initialState()` is stateful, and its
// handlers take `(state, event, ctx)` and change `state` in place; the host
// persists it as JSON with the plugin's checkpoint. Import this module as
// `cascade`; build.mjs points the import here and sets the version of the
// `cascade:runtime` imports below to the one in wit/. See docs/javascript.md.

import { dispatch as hostDispatch } from 'cascade:runtime/commands@0.2.0';
import { get as envelopeOf } from 'cascade:runtime/event-envelope@0.2.0';
import { log as hostLog } from 'cascade:runtime/log@0.2.0';
import { get as hostGet, find as hostFind } from 'cascade:runtime/read-models@0.2.0';

/** Thrown by `skipRefreshing(ctx)` to skip an event during a refresh. */
export class SkipRefreshing extends Error {}

/** The host refused a command at once (e.g. no capability granted). */
export class DispatchError extends Error {}

/** A read-model query the host refused. */
export class QueryError extends Error {}

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

/** Log at `level`: "debug", "info", "warn" or "error". */
export function log(level, message) {
  hostLog(level, String(message));
}

// What the generated component glue calls; not for plugin code.

let state;

export function __handle(handler, rawEvent, rawCtx, stateful) {
  try {
    const event = new Event(rawEvent);
    const ctx = { refreshing: rawCtx.refreshing };
    if (stateful) handler(state, event, ctx);
    else handler(event, ctx);
  } catch (e) {
    if (e instanceof SkipRefreshing) throw { payload: { tag: 'skip-refreshing' } };
    const text = e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ''}`.trimEnd() : String(e);
    throw { payload: { tag: 'failed', val: text } };
  }
}

export function __loadState(plugin, blob) {
  state = blob === undefined || blob === null ? plugin.initialState() : JSON.parse(new TextDecoder().decode(blob));
}

export function __saveState() {
  return new TextEncoder().encode(JSON.stringify(state));
}
