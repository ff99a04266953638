"""Stateful process manager `user-counter`, in Python: counts users created
and updated, in the same state shape as the Rust one."""


def initial_state():
    return {"usersCreated": 0}


def on_user_created(state, event, ctx):
    state["usersCreated"] += 1


def on_user_updated(state, event, ctx):
    state["usersCreated"] += 1
