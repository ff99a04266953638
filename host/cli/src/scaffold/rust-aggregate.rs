//! Aggregate `{{name}}`: `create {title}` → `{{Struct}}Created {title}`. The
//! schema of each event is checked before anything is stored.

use cascade_sdk::{Aggregate, EventSchema, NewEvent, export_aggregate, new_event};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

struct {{Struct}};

#[derive(Default, Serialize, Deserialize)]
struct State {
    created: bool,
}

impl Aggregate for {{Struct}} {
    type State = State;
    const NAME: &'static str = "{{name}}";
    const COMMANDS: &'static [&'static str] = &["create"];

    fn events() -> Vec<EventSchema> {
        vec![EventSchema {
            name: "{{Struct}}Created",
            schema: json!({
                "type": "object",
                "properties": {"title": {"type": "string", "minLength": 1}},
                "required": ["title"],
                "additionalProperties": false
            }),
        }]
    }

    fn handle(state: &State, _id: &str, command: &str, args: Value) -> Result<Vec<NewEvent>, String> {
        match command {
            "create" if state.created => Err("already created".into()),
            "create" => Ok(vec![new_event("{{Struct}}Created", json!({"title": args["title"]}))]),
            other => Err(format!("unknown command `{other}`")),
        }
    }

    fn apply(state: &mut State, event: &str, _payload: Value) {
        if event == "{{Struct}}Created" {
            state.created = true;
        }
    }
}

export_aggregate!({{Struct}});
