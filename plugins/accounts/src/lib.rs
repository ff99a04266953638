//! The `accounts` aggregate: `open {}` → `AccountOpened {userId}`, where the
//! account's stream id is the user's id.

use cascade_sdk::{Aggregate, EventSchema, NewEvent, export_aggregate, new_event};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

struct Accounts;

#[derive(Default, Serialize, Deserialize)]
struct Account {
    open: bool,
}

impl Aggregate for Accounts {
    type State = Account;
    const NAME: &'static str = "accounts";
    const COMMANDS: &'static [&'static str] = &["open"];

    fn events() -> Vec<EventSchema> {
        vec![EventSchema {
            name: "AccountOpened",
            schema: json!({
                "type": "object",
                "properties": {"userId": {"type": "string"}},
                "required": ["userId"],
                "additionalProperties": false
            }),
        }]
    }

    fn handle(account: &Account, id: &str, command: &str, _args: Value) -> Result<Vec<NewEvent>, String> {
        match command {
            "open" if account.open => Err("account is already open".into()),
            "open" => Ok(vec![new_event("AccountOpened", json!({"userId": id}))]),
            other => Err(format!("unknown command `{other}`")),
        }
    }

    fn apply(account: &mut Account, event: &str, _payload: Value) {
        if event == "AccountOpened" {
            account.open = true;
        }
    }
}

export_aggregate!(Accounts);
