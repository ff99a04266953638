//! The `users` aggregate: `create {name}` → `UserCreated {name}`,
//! `update {age}` → `UserUpdated {age}`.

use cascade_sdk::{Aggregate, EventSchema, NewEvent, export_aggregate, new_event};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

struct Users;

#[derive(Default, Serialize, Deserialize)]
struct User {
    created: bool,
}

impl Aggregate for Users {
    type State = User;
    const NAME: &'static str = "users";
    const COMMANDS: &'static [&'static str] = &["create", "update"];

    fn events() -> Vec<EventSchema> {
        vec![
            EventSchema {
                name: "UserCreated",
                schema: json!({
                    "type": "object",
                    "properties": {"name": {"type": "string", "minLength": 1}},
                    "required": ["name"],
                    "additionalProperties": false
                }),
            },
            EventSchema {
                name: "UserUpdated",
                schema: json!({
                    "type": "object",
                    "properties": {"age": {"type": "integer", "minimum": 0}},
                    "required": ["age"],
                    "additionalProperties": false
                }),
            },
        ]
    }

    fn handle(user: &User, _id: &str, command: &str, args: Value) -> Result<Vec<NewEvent>, String> {
        match command {
            "create" if user.created => Err("user already exists".into()),
            "create" => Ok(vec![new_event("UserCreated", json!({"name": args["name"]}))]),
            "update" if !user.created => Err("user does not exist".into()),
            "update" => Ok(vec![new_event("UserUpdated", json!({"age": args["age"]}))]),
            other => Err(format!("unknown command `{other}`")),
        }
    }

    fn apply(user: &mut User, event: &str, _payload: Value) {
        if event == "UserCreated" {
            user.created = true;
        }
    }
}

export_aggregate!(Users);
