"""Stateful process manager `user-counter`, in Python: counts users created
and updated in one instance (`singleton`), in the same state shape as the
Rust one."""

from cascade import single


def initial_state():
    return {"usersCreated": 0}


def instances():
    return [single("*")]


def on_user_created(state, event, ctx):
    state["usersCreated"] += 1


def on_user_updated(state, event, ctx):
    state["usersCreated"] += 1
