// Projection `{{name}}`: one document per user in collection `{{name}}`,
// indexed by `name`. Read it with `cascade read {{name}}`.
import { collection, put } from 'cascade';

export function collections() {
  return [collection('{{name}}', ['name'])];
}

export function onUserCreated(event, ctx) {
  put('{{name}}', event.streamId, { name: event.payload.name });
}
