// Process manager `{{name}}`: reacts to every new user. Replace the handler
// with your own: `on<Event>` runs with the projections, `after<Event>` once
// every listener has handled the event; `dispatch(...)` sends a command
// (grant it in cascade.toml).
//
// With `webhook-url` configured (`cascade plugin add {{name}}.wasm --config
// webhook-url=URL --grant http=URL`), each new user is also POSTed there: the
// host sends it after the handler's commit, with an `Idempotency-Key`, and
// hands the answer to `onEffectCompleted`.
import { config, log, postJson } from 'cascade';

export function onUserCreated(event, ctx) {
  log('info', `{{name}} saw user ${event.streamId}`);
}

export function afterUserCreated(event, ctx) {
  const url = config('webhook-url');
  if (url !== undefined) postJson('user-webhook', url, event.streamId);
}

export function onEffectCompleted(event, ctx) {
  log('info', `{{name}}: ${event.payload.effect} answered ${event.payload.status}`);
}
