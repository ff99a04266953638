//! The `inventory` aggregate, keyed by order id: `reserve {items}` →
//! `InventoryReserved {items}`.

use cascade_sdk::{Aggregate, EventSchema, NewEvent, export_aggregate, new_event};
use serde_json::{Value, json};

struct Inventory;

impl Aggregate for Inventory {
    type State = ();
    const NAME: &'static str = "inventory";
    const COMMANDS: &'static [&'static str] = &["reserve"];

    fn events() -> Vec<EventSchema> {
        vec![EventSchema {
            name: "InventoryReserved",
            schema: json!({
                "type": "object",
                "properties": {"items": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
                "required": ["items"],
                "additionalProperties": false
            }),
        }]
    }

    fn handle(_: &(), _order: &str, command: &str, args: Value) -> Result<Vec<NewEvent>, String> {
        match command {
            "reserve" => Ok(vec![new_event("InventoryReserved", json!({"items": args["items"]}))]),
            other => Err(format!("unknown command `{other}`")),
        }
    }

    fn apply(_: &mut (), _event: &str, _payload: Value) {}
}

export_aggregate!(Inventory);
