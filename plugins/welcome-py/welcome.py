"""Process manager `welcome`, in Python: every new user gets an account
with the same id."""

from cascade import dispatch


def on_user_created(event, ctx):
    dispatch("accounts", event.stream_id, "open", {})
