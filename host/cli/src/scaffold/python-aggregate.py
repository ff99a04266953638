"""Aggregate `{{name}}`: `create {title}` makes `{{Struct}}Created {title}`.
The host checks every event against its schema before anything is stored."""

from cascade import Rejected, event

NAME = "{{name}}"
COMMANDS = ["create"]
EVENTS = {
    "{{Struct}}Created": {
        "type": "object",
        "properties": {"title": {"type": "string", "minLength": 1}},
        "required": ["title"],
        "additionalProperties": False,
    },
}


def initial_state():
    return {"created": False}


def handle(state, stream_id, command, args):
    if command == "create":
        if state["created"]:
            raise Rejected("already created")
        return [event("{{Struct}}Created", {"title": args.get("title")})]
    raise Rejected(f"unknown command `{command}`")


def apply(state, name, payload):
    if name == "{{Struct}}Created":
        state["created"] = True
