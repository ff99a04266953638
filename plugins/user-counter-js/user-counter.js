// Stateful process manager `user-counter`, in JavaScript: counts users
// created and updated in one instance (`singleton`), in the same state shape
// as the Rust one.
import { single } from 'cascade';

export function initialState() {
  return { usersCreated: 0 };
}

export function instances() {
  return [single('*')];
}

export function onUserCreated(state, event, ctx) {
  state.usersCreated += 1;
}

export function onUserUpdated(state, event, ctx) {
  state.usersCreated += 1;
}
