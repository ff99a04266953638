"""Stateful process manager `{{name}}`: counts new users. The state is saved
(as JSON) with the checkpoint; `cascade pm refresh {{name}}` rebuilds it from
history."""


def initial_state():
    return {"usersCreated": 0}


def on_user_created(state, event, ctx):
    state["usersCreated"] += 1
