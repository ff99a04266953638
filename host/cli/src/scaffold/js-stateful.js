// Per-instance process manager `{{name}}`: one instance per user (the event's
// stream id), counting the user's updates. Each instance's state is saved (as
// JSON) with the checkpoint; `cascade pm instances {{name}}` lists them and
// `cascade pm refresh {{name}}` rebuilds them from history.

export function initialState() {
  return { name: '', updates: 0 };
}

export function onUserCreated(user, event, ctx) {
  user.name = event.payload.name;
}

export function onUserUpdated(user, event, ctx) {
  user.updates += 1;
}
