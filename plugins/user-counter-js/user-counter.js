// Stateful process manager `user-counter`, in JavaScript: counts users
// created and updated, in the same state shape as the Rust one.

export function initialState() {
  return { usersCreated: 0 };
}

export function onUserCreated(state, event, ctx) {
  state.usersCreated += 1;
}

export function onUserUpdated(state, event, ctx) {
  state.usersCreated += 1;
}
