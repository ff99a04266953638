"""Projection `{{name}}`: one document per user in collection `{{name}}`,
indexed by `name`. Read it with `cascade read {{name}}`."""

from cascade import collection, put


def collections():
    return [collection("{{name}}", ["name"])]


def on_user_created(event, ctx):
    put("{{name}}", event.stream_id, {"name": event.payload["name"]})
