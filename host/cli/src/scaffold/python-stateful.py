"""Per-instance process manager `{{name}}`: one instance per user (the
event's stream id), counting the user's updates. Each instance's state is
saved (as JSON) with the checkpoint; `cascade pm instances {{name}}` lists
them and `cascade pm refresh {{name}}` rebuilds them from history."""


def initial_state():
    return {"name": "", "updates": 0}


def on_user_created(user, event, ctx):
    user["name"] = event.payload["name"]


def on_user_updated(user, event, ctx):
    user["updates"] += 1
