"""Process manager `{{name}}`: reacts to every new user. Replace the handler
with your own: `on_<event>` runs with the projections, `after_<event>` once
every listener has handled the event; `dispatch(...)` sends a command (grant
it in cascade.toml).

With `webhook-url` configured (`cascade plugin add {{name}}.wasm --config
webhook-url=URL --grant http=URL`), each new user is also POSTed there: the
host sends it after the handler's commit, with an `Idempotency-Key`, and
hands the answer to `on_effect_completed`."""

from cascade import config, info, post_json


def on_user_created(event, ctx):
    info(f"{{name}} saw user {event.stream_id}")


def after_user_created(event, ctx):
    url = config("webhook-url")
    if url is not None:
        post_json("user-webhook", url, event.stream_id)


def on_effect_completed(event, ctx):
    info(f"{{name}}: {event.payload['effect']} answered {event.payload['status']}")
