//! The `group` aggregate: `create {name}` → `GroupCreated {name}`,
//! `delete {}` → `GroupDeleted {}`.

use cascade_sdk::{Aggregate, EventSchema, NewEvent, export_aggregate, new_event};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

struct Group;

#[derive(Default, Serialize, Deserialize)]
struct State {
    exists: bool,
}

impl Aggregate for Group {
    type State = State;
    const NAME: &'static str = "group";
    const COMMANDS: &'static [&'static str] = &["create", "delete"];

    fn events() -> Vec<EventSchema> {
        vec![
            EventSchema {
                name: "GroupCreated",
                schema: json!({
                    "type": "object",
                    "properties": {"name": {"type": "string", "minLength": 1}},
                    "required": ["name"],
                    "additionalProperties": false
                }),
            },
            EventSchema {
                name: "GroupDeleted",
                schema: json!({"type": "object", "additionalProperties": false}),
            },
        ]
    }

    fn handle(group: &State, id: &str, command: &str, args: Value) -> Result<Vec<NewEvent>, String> {
        match command {
            "create" if group.exists => Err(format!("group {id} already exists")),
            "create" => Ok(vec![new_event("GroupCreated", json!({"name": args["name"]}))]),
            "delete" if !group.exists => Err(format!("group {id} does not exist")),
            "delete" => Ok(vec![new_event("GroupDeleted", json!({}))]),
            other => Err(format!("unknown command `{other}`")),
        }
    }

    fn apply(group: &mut State, event: &str, _payload: Value) {
        group.exists = event == "GroupCreated";
    }
}

export_aggregate!(Group);
