// Aggregate `{{name}}`: `create {title}` makes `{{Struct}}Created {title}`.
// The host checks every event against its schema before anything is stored.
import { Rejected, event } from 'cascade';

export const NAME = '{{name}}';
export const COMMANDS = ['create'];
export const EVENTS = {
  {{Struct}}Created: {
    type: 'object',
    properties: { title: { type: 'string', minLength: 1 } },
    required: ['title'],
    additionalProperties: false,
  },
};

export function initialState() {
  return { created: false };
}

export function handle(state, streamId, command, args) {
  if (command === 'create') {
    if (state.created) throw new Rejected('already created');
    return [event('{{Struct}}Created', { title: args.title ?? null })];
  }
  throw new Rejected(`unknown command \`${command}\``);
}

export function apply(state, name, payload) {
  if (name === '{{Struct}}Created') state.created = true;
}
