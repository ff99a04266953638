// Process manager `welcome`, in JavaScript: every new user gets an account
// with the same id.
import { dispatch } from 'cascade';

export function onUserCreated(event, ctx) {
  dispatch('accounts', event.streamId, 'open', {});
}
