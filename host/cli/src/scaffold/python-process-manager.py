"""Process manager `{{name}}`: reacts to every new user. Replace the handler
with your own: `on_<event>` runs with the projections, `after_<event>` once
every listener has handled the event; `dispatch(...)` sends a command (grant
it in cascade.toml)."""

from cascade import info


def on_user_created(event, ctx):
    info(f"{{name}} saw user {event.stream_id}")
