// Process manager `{{name}}`: reacts to every new user. Replace the handler
// with your own: `on<Event>` runs with the projections, `after<Event>` once
// every listener has handled the event; `dispatch(...)` sends a command
// (grant it in cascade.toml).
import { log } from 'cascade';

export function onUserCreated(event, ctx) {
  log('info', `{{name}} saw user ${event.streamId}`);
}
