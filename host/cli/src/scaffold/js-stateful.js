// Stateful process manager `{{name}}`: counts new users. The state is saved
// (as JSON) with the checkpoint; `cascade pm refresh {{name}}` rebuilds it
// from history.

export function initialState() {
  return { usersCreated: 0 };
}

export function onUserCreated(state, event, ctx) {
  state.usersCreated += 1;
}
