//! The `project` aggregate: `create {name, groupId}` → `ProjectCreated`,
//! `update {name}` → `ProjectUpdated {name}`, `delete {}` → `ProjectDeleted`.

use cascade_sdk::{Aggregate, EventSchema, NewEvent, export_aggregate, new_event};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

struct Project;

#[derive(Default, Serialize, Deserialize)]
struct State {
    exists: bool,
}

impl Aggregate for Project {
    type State = State;
    const NAME: &'static str = "project";
    const COMMANDS: &'static [&'static str] = &["create", "update", "delete"];

    fn events() -> Vec<EventSchema> {
        vec![
            EventSchema {
                name: "ProjectCreated",
                schema: json!({
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "groupId": {"type": "string", "minLength": 1}
                    },
                    "required": ["name", "groupId"],
                    "additionalProperties": false
                }),
            },
            EventSchema {
                name: "ProjectUpdated",
                schema: json!({
                    "type": "object",
                    "properties": {"name": {"type": "string", "minLength": 1}},
                    "required": ["name"],
                    "additionalProperties": false
                }),
            },
            EventSchema {
                name: "ProjectDeleted",
                schema: json!({"type": "object", "additionalProperties": false}),
            },
        ]
    }

    fn handle(project: &State, id: &str, command: &str, args: Value) -> Result<Vec<NewEvent>, String> {
        match command {
            "create" if project.exists => Err(format!("project {id} already exists")),
            "create" => Ok(vec![new_event(
                "ProjectCreated",
                json!({"name": args["name"], "groupId": args["groupId"]}),
            )]),
            _ if !project.exists => Err(format!("project {id} does not exist")),
            "update" => Ok(vec![new_event("ProjectUpdated", json!({"name": args["name"]}))]),
            "delete" => Ok(vec![new_event("ProjectDeleted", json!({}))]),
            other => Err(format!("unknown command `{other}`")),
        }
    }

    fn apply(project: &mut State, event: &str, _payload: Value) {
        project.exists = event != "ProjectDeleted";
    }
}

export_aggregate!(Project);
